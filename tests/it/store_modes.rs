//! The Redis store past one node (docs/operations.md): the store
//! conformance suite on a three-node Redis Cluster (`redis-cli --cluster
//! create`) and on a master and replica behind `redis-server --sentinel`;
//! a sentinel failover followed; two `headgate serve` replicas over the
//! cluster sharing sessions and the replay guard.

use std::time::Duration;

use headgate::internals::config::{RedisSettings, RedisTopology};
use headgate::internals::session::{RedisStore, SessionStore as _, Source, Store};
use serde_json::json;

use crate::store::{conformance, session, settings};
use crate::support::*;

fn cluster_settings(c: &RedisCluster, prefix: &str) -> RedisSettings {
    let nodes = c.nodes.iter().map(|n| n.url()).collect();
    RedisSettings {
        topology: RedisTopology::Cluster(nodes),
        ..settings(&c.nodes[0], prefix, Duration::from_secs(5))
    }
}

fn sentinel_settings(s: &RedisSentinel, prefix: &str) -> RedisSettings {
    RedisSettings {
        topology: RedisTopology::Sentinel {
            sentinels: vec![format!("redis://127.0.0.1:{}", s.port)],
            master_name: "mymaster".into(),
        },
        ..settings(&s.master, prefix, Duration::from_secs(5))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_conformance() {
    let cluster = RedisCluster::start();
    let s = cluster_settings(&cluster, "conf:");
    conformance(
        "cluster",
        Box::new(move || Store::Redis(RedisStore::connect(&s).unwrap())),
    )
    .await;
    // The keys of the sessions spread over the nodes: a real cluster.
    let holding = (cluster.nodes.iter())
        .filter(|n| n.cli(&["dbsize"]).trim() != "0")
        .count();
    assert!(holding >= 2, "keys on {holding} node(s)");
}

/// A write or delete on one replica reaches the other's minute-long
/// cache within a pub/sub hop, on a cluster and behind a sentinel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_reaches_replicas_in_every_mode() {
    let minute = Duration::from_secs(60);
    let cluster = RedisCluster::start();
    let s = RedisSettings {
        cache_ttl: minute,
        ..cluster_settings(&cluster, "inv:")
    };
    crate::store::invalidation_reaches_replicas(s).await;
    let sentinel = RedisSentinel::start();
    let s = RedisSettings {
        cache_ttl: minute,
        ..sentinel_settings(&sentinel, "inv:")
    };
    crate::store::invalidation_reaches_replicas(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_store_conformance() {
    let sentinel = RedisSentinel::start();
    let s = sentinel_settings(&sentinel, "conf:");
    conformance(
        "sentinel",
        Box::new(move || Store::Redis(RedisStore::connect(&s).unwrap())),
    )
    .await;
}

/// The sentinel moves the master to the replica (`SENTINEL FAILOVER`):
/// the store finds the new master and writes there, and what was written
/// before is read back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed() {
    let sentinel = RedisSentinel::start();
    let store = Store::Redis(RedisStore::connect(&sentinel_settings(&sentinel, "fo:")).unwrap());
    let session = |v: &str| {
        session(
            json!({"call": {"v": v}}),
            Source::Admin,
            Duration::from_secs(600),
        )
    };
    let written = eventually(Duration::from_secs(5), || async {
        store.put("before", session("1")).await.is_ok()
    })
    .await;
    assert!(written, "the store reached the master");
    // Replication is asynchronous: a failover may lose what the replica
    // had not received yet (Redis's own window), so it starts once it has.
    let replicated = eventually(Duration::from_secs(5), || async {
        sentinel
            .replica
            .cli(&["exists", "fo:session:before"])
            .trim()
            == "1"
    })
    .await;
    assert!(replicated, "the replica received the write");
    let old = sentinel.master_port();
    assert_eq!(old, sentinel.master.port);
    // The sentinel promotes a replica it has fresh word of: asked again
    // until it has.
    let started = eventually(Duration::from_secs(30), || async {
        sentinel
            .sentinel(&["sentinel", "failover", "mymaster"])
            .contains("OK")
    })
    .await;
    assert!(started, "the sentinel would not fail over");
    let moved = eventually(Duration::from_secs(20), || async {
        sentinel.master_port() == sentinel.replica.port
    })
    .await;
    assert!(moved, "the sentinel promoted the replica");
    // Until the old master is told it is a replica it still takes writes
    // (Redis's own failover window; they are lost when it resyncs).
    let demoted = eventually(Duration::from_secs(20), || async {
        sentinel.master.cli(&["role"]).starts_with("slave")
    })
    .await;
    assert!(demoted, "the old master became a replica");
    // Writes reach the new master (the old one, now a replica, would
    // answer READONLY) within a few seconds.
    let followed = eventually(Duration::from_secs(10), || async {
        store.put("after", session("2")).await.is_ok()
    })
    .await;
    assert!(followed, "the store followed the failover");
    let on_new = sentinel.replica.cli(&["exists", "fo:session:after"]);
    assert_eq!(on_new.trim(), "1", "written on the new master");
    let before = store.get_fresh("before").await.unwrap();
    assert!(
        before.is_some(),
        "what was written before the failover is still read"
    );
}

/// Replicas over the cluster: a webhook replayed to another replica is
/// recognised; three replicas missing one session fetch it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_over_a_cluster_share_the_replay_guard_and_one_fetch() {
    let cluster = RedisCluster::start();
    let main = crate::replicas::config_over(&cluster.store("hg-cluster:"));
    crate::replicas::replay_across(&main).await;
    crate::replicas::one_fetch_across(&main).await;
}

/// The same behind the sentinel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_a_sentinel_share_the_replay_guard_and_one_fetch() {
    let sentinel = RedisSentinel::start();
    let main = crate::replicas::config_over(&sentinel.store("hg-sentinel:"));
    crate::replicas::replay_across(&main).await;
    crate::replicas::one_fetch_across(&main).await;
}

/// A mode without what it needs is a config error at its line, naming
/// what to write.
#[test]
fn check_names_what_a_mode_needs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "mode = \"cluster\"\n",
            "headgate.toml:3:8",
            "this mode needs `nodes`",
        ),
        (
            "mode = \"sentinel\"\nsentinels = [\"redis://127.0.0.1:26379\"]\n",
            "headgate.toml:3:8",
            "needs `master_name`",
        ),
        (
            "mode = \"cluster\"\nnodes = [\"redis://a:7000\"]\nprefix = \"{hg}:\"\n",
            "headgate.toml:3:8",
            "must not hold `{` or `}`",
        ),
        (
            "mode = \"ring\"\n",
            "headgate.toml:3:8",
            "`single`, `cluster` or `sentinel`",
        ),
        (
            "mode = \"cluster\"\nnodes = [\"http://a:7000\"]\n",
            "headgate.toml:4:10",
            "a Redis address is",
        ),
    ];
    for (store, at, says) in cases {
        write_config(
            dir.path(),
            &format!("[store]\nkind = \"redis\"\n{store}"),
            &[],
        );
        let (code, out, err) = check_with(dir.path(), &[], &[]);
        let text = format!("{out}{err}");
        assert!(
            code != 0 && text.contains(at) && text.contains(says),
            "{store}: {text}"
        );
    }
}

/// Slots move between nodes (`redis-cli --cluster reshard`, which
/// migrates their keys): the store follows the `MOVED` answers and reads
/// and writes every session as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharded_cluster_is_followed() {
    let cluster = RedisCluster::start();
    let store = Store::Redis(RedisStore::connect(&cluster_settings(&cluster, "mv:")).unwrap());
    let session = || {
        session(
            json!({"call": {"v": 1}}),
            Source::Admin,
            Duration::from_secs(600),
        )
    };
    for i in 0..60 {
        store.put(&format!("call-{i}"), session()).await.unwrap();
    }
    let id = |n: &RedisServer| n.cli(&["cluster", "myid"]).trim().to_string();
    let (from, to) = (id(&cluster.nodes[0]), id(&cluster.nodes[1]));
    let before = cluster.nodes[0].cli(&["dbsize"]);
    let out = std::process::Command::new("redis-cli")
        .args([
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{}", cluster.nodes[0].port),
        ])
        .args([
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            "5461",
            "--cluster-yes",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster.nodes[0].cli(&["dbsize"]).trim(),
        "0",
        "node 0 held {before} keys and gave them all away"
    );
    for i in 0..60 {
        let got = store.get_fresh(&format!("call-{i}")).await.unwrap();
        assert!(got.is_some(), "call-{i} lost after the reshard");
    }
    store.put("call-new", session()).await.unwrap();
    assert!(store.get_fresh("call-new").await.unwrap().is_some());
}
