//! One conformance suite for every session store: the in-memory store and
//! the Redis store (against a real `redis-server` this test starts) must
//! behave the same. Then what only a shared store does: replicas see each
//! other's writes, deletions reach every replica, and a Redis outage is
//! survived.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{RedisServer, eventually};
use headgate::internals::config::RedisSettings;
use headgate::internals::session::store::{PinTable, PinWrites};
use headgate::internals::session::{MemoryStore, RedisStore, Session, SessionStore, Source, Store};
use headgate::template::Vars;
use serde_json::{Map, Value, json};

pub(crate) fn session(vars: Value, source: Source, ttl: Duration) -> Session {
    Session::new(Vars::from_json(vars).unwrap(), source, ttl)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn token(s: &Session) -> Value {
    s.vars.as_map()["call"]["metadata"]["token"].clone()
}

const MIN: Duration = Duration::from_secs(60);

/// A second handle on the same sessions: for memory the same store, for
/// Redis another replica (another process would be no different).
pub(crate) type Replica = Box<dyn Fn() -> Store>;

pub(crate) async fn conformance(name: &str, replica: Replica) {
    let a = replica();
    let b = replica();

    // Absent, put, get, replace, delete.
    assert!(a.get("nobody").await.unwrap().is_none(), "{name}: absent");
    a.delete("nobody").await.unwrap();
    a.put(
        "c1",
        session(
            json!({"call": {"metadata": {"token": "t1"}}}),
            Source::Webhook,
            MIN,
        ),
    )
    .await
    .unwrap();
    let got = b.get("c1").await.unwrap().expect("written session is read");
    assert_eq!(token(&got), "t1", "{name}");
    assert_eq!(got.source, Source::Webhook, "{name}: source kept");
    assert!(got.ttl_left() <= MIN && got.ttl_left() > MIN - Duration::from_secs(5));
    a.put(
        "c1",
        session(
            json!({"call": {"metadata": {"token": "t2"}}}),
            Source::Admin,
            MIN,
        ),
    )
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            b.get("c1")
                .await
                .unwrap()
                .is_some_and(|s| token(&s) == "t2")
        })
        .await,
        "{name}: a replace is seen"
    );
    a.delete("c1").await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            b.get("c1").await.unwrap().is_none()
        })
        .await,
        "{name}: a delete is seen"
    );

    // TTL is per entry.
    a.put(
        "short",
        session(json!({"x": 1}), Source::Admin, Duration::from_millis(300)),
    )
    .await
    .unwrap();
    a.put("long", session(json!({"x": 2}), Source::Admin, MIN))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.run_pending_tasks().await;
    b.run_pending_tasks().await;
    assert!(
        a.get("short").await.unwrap().is_none(),
        "{name}: expired entry"
    );
    assert!(b.get("short").await.unwrap().is_none(), "{name}: expired");
    assert!(a.get("long").await.unwrap().is_some(), "{name}: live entry");

    // PATCH: absent, deep merge, expiry kept, limits, resolver → admin.
    assert!(!a.patch("nobody", Map::new(), 10_000).await.unwrap());
    a.put(
        "p",
        session(
            json!({"call": {"metadata": {"token": "t"}}}),
            Source::Resolver,
            Duration::from_secs(30),
        ),
    )
    .await
    .unwrap();
    assert!(
        b.patch(
            "p",
            obj(json!({"call": {"metadata": {"tenant": "acme"}}, "user": {"id": 7}})),
            10_000
        )
        .await
        .unwrap()
    );
    let got = b.get("p").await.unwrap().unwrap();
    assert_eq!(
        Value::Object(got.vars.as_map().clone()),
        json!({"call": {"metadata": {"token": "t", "tenant": "acme"}}, "user": {"id": 7}}),
        "{name}: deep merge"
    );
    assert!(
        got.ttl_left() <= Duration::from_secs(30),
        "{name}: expiry kept"
    );
    assert_eq!(got.source, Source::Admin, "{name}: patched resolver data");
    assert!(
        eventually(Duration::from_secs(2), || async {
            a.get("p")
                .await
                .unwrap()
                .is_some_and(|s| s.vars.as_map().contains_key("user"))
        })
        .await,
        "{name}: the other handle sees the patch"
    );
    let err = a
        .patch("p", obj(json!({"x": "y".repeat(20_000)})), 10_000)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "session.too_large", "{name}");
    assert_eq!(
        token(&b.get("p").await.unwrap().unwrap()),
        "t",
        "{name}: a refused patch changes nothing"
    );

    // Concurrent patches from two handles: none is lost.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.patch("p", obj(json!({"fields": {format!("f{i}"): i}})), 100_000)
                .await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap(), "{name}: patch applied");
    }
    assert!(
        eventually(Duration::from_secs(2), || async {
            a.get("p")
                .await
                .unwrap()
                .is_some_and(|s| s.vars.as_map()["fields"].as_object().unwrap().len() == 20)
        })
        .await,
        "{name}: all 20 concurrent patches kept"
    );

    // Budget counters: counted through one handle, read through the other.
    for want in 1..=2 {
        assert_eq!(
            a.spend("counted", "send_*", MIN).await.unwrap(),
            want,
            "{name}"
        );
    }
    b.spend("counted", "*", MIN).await.unwrap();
    let spent = b.spent("counted").await.unwrap();
    assert_eq!(
        (spent["send_*"], spent["*"], spent.len()),
        (2, 1, 2),
        "{name}"
    );
    assert!(a.spent("uncounted").await.unwrap().is_empty(), "{name}");

    // Pinned tool definitions: the first to record a tool wins, what one
    // handle holds the other reads, an approval moves it (atomically).
    let first = PinWrites {
        pinned: vec![("send_sms".into(), "v1".into())],
        seal: true,
        ..Default::default()
    };
    a.record_pins("crm", &first).await.unwrap();
    let later = PinWrites {
        pinned: vec![("send_sms".into(), "v2".into())],
        held: vec![
            ("send_sms".into(), "v2".into()),
            ("weather/東京".into(), "w".into()),
        ],
        ..Default::default()
    };
    b.record_pins("crm", &later).await.unwrap();
    let t = a.pins("crm").await.unwrap();
    assert_eq!(
        t.pinned["send_sms"], "v1",
        "{name}: a pin is never overwritten"
    );
    assert!(t.sealed && t.held.len() == 2, "{name}: {t:?}");
    assert!(
        b.pins("other").await.unwrap() == PinTable::default(),
        "{name}: per route"
    );
    assert!(b.approve_pin("crm", "weather/東京").await.unwrap());
    assert!(
        !a.approve_pin("crm", "weather/東京").await.unwrap(),
        "{name}: approved once"
    );
    let t = a.pins("crm").await.unwrap();
    assert_eq!(
        (t.pinned["weather/東京"].as_str(), t.held.len()),
        ("w", 1),
        "{name}"
    );

    // Locks across handles (the memory store has one process: it grants).
    if name != "memory" {
        let hold = Duration::from_secs(5);
        let token = a
            .try_lock("resolve:x", hold)
            .await
            .unwrap()
            .expect("free lock");
        assert!(
            b.try_lock("resolve:x", hold).await.unwrap().is_none(),
            "{name}: held"
        );
        a.unlock("resolve:x", &token).await;
        assert!(
            b.try_lock("resolve:x", hold).await.unwrap().is_some(),
            "{name}: released"
        );
    }

    // wait_for sees a write made through the other handle.
    let writer = b.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .put("late", session(json!({"x": 1}), Source::Webhook, MIN))
            .await
            .unwrap();
    });
    let waited = a.wait_for("late", Duration::from_secs(3)).await.unwrap();
    assert!(waited.is_some(), "{name}: wait_for saw the late write");
    assert!(
        a.wait_for("never", Duration::from_millis(50))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn memory_store_conformance() {
    let store = MemoryStore::new(10_000, 64 << 20);
    conformance("memory", Box::new(move || Store::Memory(store.clone()))).await;
}

pub(crate) fn settings(redis: &RedisServer, prefix: &str, cache_ttl: Duration) -> RedisSettings {
    RedisSettings {
        url: redis.url(),
        prefix: prefix.into(),
        cache_ttl,
        stale_ttl: Duration::from_secs(600),
        timeout: Duration::from_millis(500),
        encryption_keys: Vec::new(),
        tls: Default::default(),
        topology: Default::default(),
    }
}

#[tokio::test]
async fn redis_store_conformance() {
    let redis = RedisServer::start();
    let s = settings(&redis, "conf:", Duration::from_secs(5));
    conformance(
        "redis",
        Box::new(move || Store::Redis(RedisStore::connect(&s).unwrap())),
    )
    .await;
}

/// The same contract with sessions sealed at rest (AES-256-GCM).
#[tokio::test]
async fn redis_store_conformance_encrypted() {
    let redis = RedisServer::start();
    let mut s = settings(&redis, "sealed:", Duration::from_secs(5));
    let key = headgate::internals::config::EncryptionKey::new("k1", vec![7; 32]);
    s.encryption_keys = vec![key];
    conformance(
        "redis sealed",
        Box::new(move || Store::Redis(RedisStore::connect(&s).unwrap())),
    )
    .await;
}

/// Invalidation is what makes a replica drop its cached copy: with a cache
/// TTL of a minute, the change must still arrive within a pub/sub hop.
#[tokio::test]
async fn replicas_drop_their_cached_copy_when_another_writes() {
    let redis = RedisServer::start();
    invalidation_reaches_replicas(settings(&redis, "inv:", MIN)).await;
}

/// [`replicas_drop_their_cached_copy_when_another_writes`] over `s`
/// (any mode).
pub(crate) async fn invalidation_reaches_replicas(s: RedisSettings) {
    let a = RedisStore::connect(&s).unwrap();
    let b = RedisStore::connect(&s).unwrap();
    // Let both subscriptions come up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.put(
        "k",
        session(
            json!({"call": {"metadata": {"token": "old"}}}),
            Source::Admin,
            MIN,
        ),
    )
    .await
    .unwrap();
    assert_eq!(token(&b.get("k").await.unwrap().unwrap()), "old");
    // A read that overlaps an invalidation message is not cached (it may
    // be stale); on a fresh cluster the put's own message can land late.
    let cached = eventually(Duration::from_secs(2), || async {
        b.get("k").await.unwrap();
        b.entry_count_after_maintenance().await == 1
    })
    .await;
    assert!(cached, "b caches it");

    a.patch(
        "k",
        obj(json!({"call": {"metadata": {"token": "new"}}})),
        10_000,
    )
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            token(&b.get("k").await.unwrap().unwrap()) == "new"
        })
        .await,
        "b still serves the old token a minute-long cache would keep"
    );
    a.delete("k").await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            b.get("k").await.unwrap().is_none()
        })
        .await,
        "b still serves a deleted session"
    );
}

trait Count {
    async fn entry_count_after_maintenance(&self) -> u64;
}

impl Count for RedisStore {
    async fn entry_count_after_maintenance(&self) -> u64 {
        self.run_pending_tasks().await;
        self.entry_count()
    }
}

/// A replica whose local cache is full still keeps a new call's copy (the
/// least recently used copy goes): that copy is what serves the call
/// through a Redis outage. Under moka's default admission (TinyLFU) the
/// new key, read less often than the copies it would evict, was refused,
/// and the call failed with `store.unavailable` once Redis went away.
#[tokio::test]
async fn a_full_local_cache_keeps_a_new_calls_copy_for_an_outage() {
    let mut redis = RedisServer::start();
    let s = settings(&redis, "full:", Duration::from_millis(300));
    let a = RedisStore::connect(&s).unwrap();
    let call = |t: &str| {
        let vars = json!({"call": {"metadata": {"token": t}}});
        session(vars, Source::Admin, MIN)
    };
    // Room for about seven such sessions (each weighs some 750 bytes).
    let b = RedisStore::connect_bounded(&s, 6_000).unwrap();
    for i in 0..10 {
        let id = format!("old{i}");
        a.put(&id, call(&format!("t{i}"))).await.unwrap();
        for _ in 0..5 {
            assert!(b.get(&id).await.unwrap().is_some());
        }
        b.run_pending_tasks().await;
    }
    a.put("new", call("t-new")).await.unwrap();
    assert!(b.get("new").await.unwrap().is_some());
    b.run_pending_tasks().await;

    redis.kill();
    // Past cache_ttl: b asks Redis, fails, and falls back to its copy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = b.get("new").await.expect("the new call's copy serves it");
    assert_eq!(token(&got.unwrap()), "t-new");
}

/// Redis killed: cached sessions are still served (calls in progress keep
/// working), a miss and a write fail with `store.unavailable`, nothing
/// panics; after the restart everything works again without intervention.
#[tokio::test]
async fn redis_outage_serves_cached_sessions_and_recovers() {
    let mut redis = RedisServer::start();
    let s = settings(&redis, "out:", Duration::from_millis(200));
    let a = RedisStore::connect(&s).unwrap();
    let b = RedisStore::connect(&s).unwrap();
    a.put(
        "live",
        session(
            json!({"call": {"metadata": {"token": "t"}}}),
            Source::Admin,
            MIN,
        ),
    )
    .await
    .unwrap();
    assert!(b.get("live").await.unwrap().is_some());

    redis.kill();
    // Past cache_ttl: b must ask Redis, fail, and fall back to its copy.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..3 {
        let got = b.get("live").await.expect("a cached session survives");
        assert_eq!(token(&got.unwrap()), "t");
    }
    let miss = b.get("unknown").await.unwrap_err();
    assert_eq!(miss.code(), "store.unavailable");
    let write = a
        .put("new", session(json!({"x": 1}), Source::Admin, MIN))
        .await
        .unwrap_err();
    assert_eq!(write.code(), "store.unavailable");
    assert_eq!(
        a.patch("live", obj(json!({"x": 1})), 10_000)
            .await
            .unwrap_err()
            .code(),
        "store.unavailable"
    );

    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.put("new", session(json!({"x": 2}), Source::Admin, MIN))
                .await
                .is_ok()
        })
        .await,
        "writes recover after the restart"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.get("new").await.is_ok_and(|s| s.is_some())
        })
        .await,
        "reads recover after the restart"
    );
    // The append-only file kept what was written before the crash.
    assert!(b.get("live").await.unwrap().is_some());
}
