//! A `redis-server` of a test's own.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::wait::free_port;

/// `redis-cli -p PORT ARGS`: its output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `redis-server` of this test's own on a free loopback port, with an
/// append-only file fsynced on every write, so a kill -9 and restart keeps
/// the data, as a production Redis would.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Arguments beyond the port, bind and persistence ones.
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with `extra` arguments (`--cluster-enabled yes`,
    /// `--replicaof …`).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut r = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        r.restart();
        r
    }

    /// `redis-cli -p PORT ARGS`: its output.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: no shutdown, no goodbye to clients.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .args(["--loglevel", "warning", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server did not start ({e}): `apt-get install redis-server` (scripts/test.sh installs it)")
            });
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.ping() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `redis-server --cluster-enabled yes` nodes joined by
/// `redis-cli --cluster create` (no replicas): every slot served.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let started = Instant::now();
        // State ok, and every node's bus linked to every other (a message
        // published on one node reaches the others' subscribers over it).
        let meshed = |n: &RedisServer| {
            let links = n.cli(&["cluster", "nodes"]);
            n.cli(&["cluster", "info"]).contains("cluster_state:ok")
                && links.lines().filter(|l| l.contains(" connected")).count() == 3
        };
        while !nodes.iter().all(meshed) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the cluster did not reach state ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { nodes }
    }

    /// The `[store]` table of a cluster store over these nodes.
    pub fn store(&self, prefix: &str) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"redis://127.0.0.1:{}\"", n.port))
            .collect();
        format!(
            "[store]\nkind = \"redis\"\nmode = \"cluster\"\nnodes = [{}]\nprefix = \"{prefix}\"\n",
            nodes.join(", ")
        )
    }
}

/// A master, its replica and one `redis-server --sentinel` watching them
/// as `mymaster` (quorum 1, down after 1 s).
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl RedisSentinel {
    pub fn start() -> Self {
        // Without the delay a diskless full sync waits 5 s for more replicas.
        let master = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let at = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &at]);
        let started = Instant::now();
        while !replica
            .cli(&["info", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the replica did not sync"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (port, dir) = (free_port(), tempfile::tempdir().unwrap());
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {at} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .args(["--sentinel", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let s = Self {
            master,
            replica,
            port,
            dir,
            child,
        };
        let started = Instant::now();
        while !s
            .sentinel(&["sentinel", "replicas", "mymaster"])
            .contains("slave")
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the sentinel did not see the replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// `redis-cli -p SENTINEL_PORT ARGS`.
    pub fn sentinel(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> u16 {
        let out = self.sentinel(&["sentinel", "get-master-addr-by-name", "mymaster"]);
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The `[store]` table of a sentinel store.
    pub fn store(&self, prefix: &str) -> String {
        format!(
            "[store]\nkind = \"redis\"\nmode = \"sentinel\"\nsentinels = [\"redis://127.0.0.1:{}\"]\nmaster_name = \"mymaster\"\nprefix = \"{prefix}\"\n",
            self.port
        )
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}
