//! Several replicas: two real `headgate serve` processes share one Redis.
//! A session registered on one is injected by the other; a PATCH and a
//! DELETE reach the other; Redis killed and restarted mid-test: calls in
//! progress keep their token, misses and writes get `store.unavailable`,
//! nobody panics, and everything works again after the restart.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

fn config(redis: &RedisServer) -> String {
    let store = format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"hg-test:\"\n",
        redis.url()
    );
    config_over(&store)
}

/// headgate.toml over `store` (a `[store]` table, any mode).
pub(crate) fn config_over(store: &str) -> String {
    format!(
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n{store}cache_ttl = \"30s\"\ntimeout = \"300ms\"\n"
    )
}

struct Replica {
    served: Served,
}

impl Replica {
    fn start(dir: &std::path::Path) -> Self {
        Self {
            served: serve(
                dir,
                &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                &[("RUST_LOG", "info")],
            ),
        }
    }

    async fn admin(&self, method: reqwest::Method, id: &str, body: Option<Value>) -> u16 {
        admin_call(&self.served, method, id, body.as_ref()).await
    }

    /// A tool call through this replica: (status, JSON body).
    async fn call(&self, id: &str) -> (u16, Value) {
        tool_call(&self.served, "crm", "x-call-id", id).await
    }

    fn alive(&mut self) -> bool {
        self.served.child.try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        self.served.log.lock().unwrap().clone()
    }
}

fn token(v: &str) -> Value {
    json!({"call": {"metadata": {"token": v}}})
}

#[tokio::test]
async fn two_replicas_share_sessions_through_redis() {
    let mut redis = RedisServer::start();
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &config(&redis),
        &[(
            "crm",
            &route(
                &up.url(),
                "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"",
            ),
        )],
    );
    let mut a = Replica::start(dir.path());
    let mut b = Replica::start(dir.path());
    let auth = |up: &Upstream| {
        up.last()
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
    };

    // Registered on A, injected by B.
    assert_eq!(
        a.admin(reqwest::Method::PUT, "call-1", Some(token("tok-1")))
            .await,
        204
    );
    let (status, _) = b.call("call-1").await;
    assert_eq!(status, 200);
    assert_eq!(auth(&up).as_deref(), Some("Bearer tok-1"));

    // B now caches it for 30 s; a PATCH on A must still reach it.
    assert_eq!(
        a.admin(reqwest::Method::PATCH, "call-1", Some(token("tok-2")))
            .await,
        204
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            b.call("call-1").await.0 == 200 && auth(&up).as_deref() == Some("Bearer tok-2")
        })
        .await,
        "the PATCH on A did not reach B"
    );

    // Deleted on B: A refuses it.
    a.call("call-1").await;
    assert_eq!(b.admin(reqwest::Method::DELETE, "call-1", None).await, 204);
    assert!(
        eventually(Duration::from_secs(3), || async {
            let (s, body) = a.call("call-1").await;
            s == 403 && body["error"]["code"] == "session.not_found"
        })
        .await,
        "A still serves a session deleted on B"
    );

    // Redis dies while a call is in progress on B. Registered on B
    // itself: A's announcement of a write can reach B after B has read
    // the new value, and B then drops its copy (it cannot tell the
    // message is for what it already holds), so with Redis gone a moment
    // later that call would get 503. A write that close to an outage is
    // not what this step is about; the reads across replicas are above.
    assert_eq!(
        b.admin(reqwest::Method::PUT, "live", Some(token("tok-live")))
            .await,
        204
    );
    assert_eq!(b.call("live").await.0, 200);
    redis.kill();
    for _ in 0..3 {
        let (s, _) = b.call("live").await;
        assert_eq!(s, 200, "a call in progress keeps its session");
        assert_eq!(auth(&up).as_deref(), Some("Bearer tok-live"));
    }
    let (s, body) = b.call("never-registered").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (503, Some("store.unavailable"))
    );
    assert_eq!(
        a.admin(reqwest::Method::PUT, "new", Some(token("tok-new")))
            .await,
        503
    );
    assert!(a.alive() && b.alive(), "a replica died with Redis");

    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.admin(reqwest::Method::PUT, "new", Some(token("tok-new")))
                .await
                == 204
        })
        .await,
        "A did not recover:\n{}",
        a.log()
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.call("new").await.0 == 200 && auth(&up).as_deref() == Some("Bearer tok-new")
        })
        .await,
        "B did not recover:\n{}",
        b.log()
    );
    assert!(a.alive() && b.alive());
    for log in [a.log(), b.log()] {
        assert!(!log.contains("panicked"), "{log}");
        for secret in ["tok-1", "tok-2", "tok-live", "tok-new", ADMIN_TOKEN] {
            assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
        }
    }
}

/// A signed Vapi webhook delivered to `r`: (status, outcome).
async fn hook(r: &Replica, body: &str, ts: &str) -> (u16, String) {
    let sig = headgate::internals::platform::sign_vapi(WEBHOOK_SECRET, body.as_bytes(), ts);
    let resp = client()
        .post(format!("http://{}/_hooks/vapi", r.served.listen))
        .header("x-signature", sig)
        .header("x-timestamp", ts)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        v["outcome"].as_str().unwrap_or_default().to_string(),
    )
}

/// A captured webhook replayed to another replica after the call ended
/// changes nothing there either: the replay guard lives in Redis.
#[tokio::test]
async fn a_replay_to_another_replica_is_recognised() {
    let redis = RedisServer::start();
    replay_across(&config(&redis)).await;
}

/// [`a_replay_to_another_replica_is_recognised`] over the store `main`
/// configures.
pub(crate) async fn replay_across(main: &str) {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!("{main}[webhooks.vapi]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n");
    let headers = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"";
    write_config(dir.path(), &main, &[("crm", &route(&up.url(), headers))]);
    let a = Replica::start(dir.path());
    let b = Replica::start(dir.path());

    let started = json!({"message": {"type": "status-update", "status": "in-progress", "call": {"id": "rep-1", "metadata": {"token": "tok-replayed"}}}}).to_string();
    let ended =
        json!({"message": {"type": "end-of-call-report", "call": {"id": "rep-1"}}}).to_string();
    let ts = now_secs().to_string();
    assert_eq!(hook(&a, &started, &ts).await, (200, "stored".into()));
    assert_eq!(b.call("rep-1").await.0, 200);
    assert_eq!(hook(&a, &ended, &ts).await, (200, "purged".into()));
    assert_eq!(hook(&b, &started, &ts).await, (200, "replayed".into()));
    assert_eq!(hook(&a, &started, &ts).await, (200, "replayed".into()));
    // The purge reaches b's cache within a pub/sub hop (on a cluster the
    // first message over a new bus link has taken ~40 ms).
    let refused = eventually(Duration::from_secs(2), || async {
        b.call("rep-1").await.0 == 403
    })
    .await;
    assert!(refused, "the purged token is back on b");
    let (status, _) = a.call("rep-1").await;
    assert_eq!(status, 403);
}

/// Three replicas, 50 concurrent misses each for one session the resolver
/// fetches: the platform API sees one request, and every request is
/// served with the fetched token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fetch_a_missing_session_once_between_them() {
    let redis = RedisServer::start();
    one_fetch_across(&config(&redis)).await;
}

/// [`replicas_fetch_a_missing_session_once_between_them`] over the store
/// `main` configures.
pub(crate) async fn one_fetch_across(main: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let up = upstream().await;
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let api = http_server(move |_req: http::Request<hyper::body::Incoming>| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            // What the API answers becomes the session's `call`.
            let body = json!({"metadata": {"token": "tok-fetched"}}).to_string();
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "{main}[resolver]\nurl = \"http://{api}/call/<< session.id >>\"\ntimeout = \"2s\"\n"
    );
    let r = route(
        &up.url(),
        "on_unknown_session = \"resolve\"\n[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(dir.path(), &main, &[("crm", &r)]);
    let replicas: Vec<Replica> = (0..3).map(|_| Replica::start(dir.path())).collect();
    let calls = replicas
        .iter()
        .flat_map(|r| (0..50).map(move |_| r.call("call-missing")));
    let answers = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).take(2).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the platform API was asked more than once"
    );
    assert!(
        up.seen()
            .iter()
            .all(|s| s.headers["authorization"] == "Bearer tok-fetched")
    );
}
