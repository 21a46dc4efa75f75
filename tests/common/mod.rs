//! Test harness: an in-process upstream that records what it receives and
//! can stream SSE, a config directory writer, and an in-process headgate.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body_len: usize,
}

#[derive(Clone, Default)]
pub struct Upstream {
    pub addr: Option<SocketAddr>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Monotonic origin for SSE stamps.
    pub epoch: Option<Instant>,
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> UpBody {
    Full::new(s.into()).boxed()
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

/// Starts the recording upstream. Paths:
/// - `/sse?n=N&gap_ms=M`: N events, M ms apart, each `data: <micros since epoch>`
/// - `/slow?ms=M`: headers after M ms
/// - `/status/CODE`: that status (401 adds `WWW-Authenticate`)
/// - anything else: 200 with `{"ok":true}`; the body is read and counted.
pub async fn upstream() -> Upstream {
    let epoch = Instant::now();
    let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
    let log = seen.clone();
    let addr = http_server(move |req| serve_up(req, log.clone(), epoch)).await;
    Upstream {
        addr: Some(addr),
        seen,
        epoch: Some(epoch),
    }
}

/// Serves `handler` (HTTP/1.1 and h2c) on a free loopback port until the
/// test ends: the mock upstreams and platform APIs of the tests.
pub async fn http_server<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Seconds since the Unix epoch (webhook timestamps).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn param(q: Option<&str>, name: &str, default: u64) -> u64 {
    q.unwrap_or("")
        .split('&')
        .find_map(|p| {
            p.strip_prefix(&format!("{name}="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(default)
}

async fn serve_up(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    epoch: Instant,
) -> Response<UpBody> {
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|c| c.to_bytes().len())
        .unwrap_or(0);
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: parts.headers.clone(),
        body_len,
    });
    let q = query.as_deref();
    if path.ends_with("/sse") {
        let n = param(q, "n", 5);
        let gap = param(q, "gap_ms", 20);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for i in 0..n {
                let stamp = epoch.elapsed().as_micros();
                let ev = format!("id: {i}\ndata: {stamp}\n\n");
                if tx.send(Ok(Frame::data(Bytes::from(ev)))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
        });
        let stream = tokio_stream_from(rx);
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        if let Some(sid) = parts.headers.get("mcp-session-id") {
            r.headers_mut().insert("mcp-session-id", sid.clone());
        }
        return r;
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_millis(param(q, "ms", 1000))).await;
    }
    if let Some(code) = path
        .rsplit_once("/status/")
        .and_then(|(_, c)| c.parse::<u16>().ok())
    {
        let mut r = Response::new(full("{}"));
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        if code == 401 {
            r.headers_mut()
                .insert("www-authenticate", "Bearer realm=\"crm\"".parse().unwrap());
        }
        return r;
    }
    let mut r = Response::new(full(r#"{"ok":true}"#));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("connection", "x-upstream-hop".parse().unwrap());
    r.headers_mut()
        .insert("x-upstream-hop", "1".parse().unwrap());
    if let Some(sid) = parts.headers.get("mcp-session-id") {
        r.headers_mut().insert("mcp-session-id", sid.clone());
    }
    r
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Writes a config directory: `headgate.toml` and `routes/<name>.toml`.
pub fn write_config(dir: &Path, main: &str, routes: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    std::fs::write(dir.join("headgate.toml"), main).unwrap();
    for (name, text) in routes {
        std::fs::write(dir.join("routes").join(format!("{name}.toml")), text).unwrap();
    }
}

/// Starts headgate in process on free ports.
pub async fn start(dir: &Path) -> headgate::proxy::Running {
    headgate::proxy::start(headgate::proxy::ServeOptions {
        templates: dir.to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        watch: false,
    })
    .await
    .unwrap_or_else(|e| panic!("headgate did not start: {e}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// GET through headgate as a platform would: the route key and `X-Call-Id`.
pub async fn get_call(
    c: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    call_id: &str,
) -> reqwest::Response {
    c.get(url)
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", call_id)
        .send()
        .await
        .unwrap()
}

/// PUT a session on the admin API.
pub async fn put_session(h: &headgate::proxy::Running, id: &str, vars: serde_json::Value) {
    let r = client()
        .put(format!("http://{}/sessions/{id}", h.admin))
        .json(&vars)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "PUT /sessions/{id}");
}

/// A route file body for `upstream`, keyed on X-Call-Id, with a route key.
pub fn route(upstream: &str, extra: &str) -> String {
    format!(
        "upstream = \"{upstream}\"\ninbound_auth = {{ header = \"x-headgate-key\", secret_env = \"HG_TEST_ROUTE_KEY\" }}\n{extra}\n"
    )
}

/// Secrets the tests use; `.cargo/config.toml` puts them in the test
/// environment (no `set_var` at run time).
pub const ROUTE_KEY: &str = "route-key-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-abcdef";
pub const WEBHOOK_SECRET: &str = "whsec-test-secret";
pub const RETELL_KEY: &str = "key_retell_test";
pub const API_KEY: &str = "api-key-for-resolver";

/// The real `headgate` binary.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_headgate"))
}

/// An admin API request with the admin token to `/sessions/{id}` of a
/// `headgate serve` child: its status.
pub async fn admin_call(
    s: &Served,
    method: reqwest::Method,
    id: &str,
    body: Option<&serde_json::Value>,
) -> u16 {
    let mut r = client()
        .request(method, format!("http://{}/sessions/{id}", s.admin))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.unwrap().status().as_u16()
}

/// A tool call (POST `/{route}/tools`) through a `headgate serve` child,
/// keyed by `key_header: id`: (status, JSON body).
pub async fn tool_call(
    s: &Served,
    route: &str,
    key_header: &str,
    id: &str,
) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("http://{}/{route}/tools", s.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header(key_header, id)
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A `headgate serve` child whose every output line is captured.
pub struct Served {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub listen: String,
    pub admin: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = bin();
    cmd.arg("serve")
        .arg("--templates")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut served = Served {
        child: cmd.spawn().unwrap(),
        log: Arc::new(Mutex::new(String::new())),
        listen: String::new(),
        admin: String::new(),
    };
    let pipes = [
        served
            .child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        served
            .child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let log = served.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let started = Instant::now();
    loop {
        let text = served.log.lock().unwrap().clone();
        if let Some(i) = text.find("listening on ") {
            let rest = &text[i + "listening on ".len()..];
            served.listen = rest.split_whitespace().next().unwrap().to_string();
            served.admin = rest
                .split("admin on ")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap()
                .to_string();
            return served;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "headgate did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test's own on a free loopback port, with an
/// append-only file fsynced on every write, so a kill -9 and restart keeps
/// the data, as a production Redis would.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.restart();
        r
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

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
