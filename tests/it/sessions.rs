//! Sessions over real sockets: the admin API, platform webhooks and the
//! fetch-on-miss resolver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

const HEADERS: &str = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n";

/// Sends `rb`: its status and error code (`""` when none).
async fn outcome(rb: reqwest::RequestBuilder) -> (u16, String) {
    status_and_code(rb.send().await.unwrap()).await
}

/// Sends `rb`: its JSON body.
async fn json_of(rb: reqwest::RequestBuilder) -> Value {
    rb.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn admin_api_statuses_and_codes() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\nmax_session_bytes = \"2KiB\"\n",
        &[("crm", &route("http://127.0.0.1:9/", HEADERS))],
    );
    let h = start(dir.path()).await;
    let c = client();
    let base = format!("http://{}", h.admin);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let s = |p: &str| format!("/sessions/{p}");
    // A request to the admin API: without a token, or with the right one.
    let anon = |m: Method, path: &str| c.request(m, format!("{base}{path}"));
    let admin = |m: Method, path: &str| anon(m, path).header("authorization", &auth);

    let probe = |path: &str| outcome(anon(Method::GET, path));
    assert_eq!(probe("/healthz").await.0, 200, "healthz needs no token");
    assert_eq!(probe("/readyz").await.0, 200);
    let unauthorized = (401, "admin.unauthorized".to_string());
    let no_token = anon(Method::PUT, &s("a")).json(&json!({"call": {}}));
    assert_eq!(outcome(no_token).await, unauthorized);
    let wrong = anon(Method::PUT, &s("a"))
        .header("authorization", "Bearer wrong")
        .json(&json!({}));
    assert_eq!(outcome(wrong).await, unauthorized);
    assert_eq!(probe("/metrics").await.0, 401);

    let put = |id: &str, body: &str| outcome(admin(Method::PUT, &s(id)).body(body.to_string()));
    let stored = put("a", r#"{"call":{"metadata":{"token":"sekrit-tok"}}}"#).await;
    assert_eq!(stored.0, 204);
    let invalid = (400, "session.invalid".to_string());
    assert_eq!(put("a", "not json").await, invalid);
    assert_eq!(put("a", "[1,2]").await, invalid);
    assert_eq!(put("a", r#"{"session":{}}"#).await, invalid);
    let big = format!(r#"{{"call":{{"x":"{}"}}}}"#, "y".repeat(3000));
    assert_eq!(put("a", &big).await, (413, "session.too_large".into()));
    assert_eq!(
        put("bad%20id", "{}").await,
        (400, "session.key_invalid".into())
    );
    let ttl0 = admin(Method::PUT, &format!("{}?ttl=0", s("a"))).body("{}");
    assert_eq!(outcome(ttl0).await, (400, "session.invalid_ttl".into()));
    let ttl60 = admin(Method::PUT, &format!("{}?ttl=60", s("short"))).body(r#"{"call":{}}"#);
    assert_eq!(outcome(ttl60).await.0, 204);

    // GET shows names and TTL, never values.
    let r = admin(Method::GET, &s("a")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t = r.text().await.unwrap();
    assert!(!t.contains("sekrit"), "{t}");
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["variables"], json!(["call"]));
    assert!(v["ttl_seconds"].as_u64().unwrap() > 7000);
    let v = json_of(admin(Method::GET, &s("short"))).await;
    assert!(v["ttl_seconds"].as_u64().unwrap() <= 60);

    // PATCH deep-merges; 404 when absent.
    let patch = |id: &str, body: &str| outcome(admin(Method::PATCH, &s(id)).body(body.to_string()));
    let merged = patch(
        "a",
        r#"{"call":{"metadata":{"tenant":"acme"}},"user":{"id":1}}"#,
    )
    .await;
    assert_eq!(merged.0, 204);
    let v = json_of(admin(Method::GET, &s("a"))).await;
    assert_eq!(v["variables"], json!(["call", "user"]));
    assert_eq!(
        patch("missing", "{}").await,
        (404, "session.not_found".into())
    );
    assert_eq!(patch("a", "[]").await, invalid);

    // DELETE is idempotent.
    assert_eq!(outcome(admin(Method::DELETE, &s("a"))).await.0, 204);
    assert_eq!(outcome(admin(Method::DELETE, &s("a"))).await.0, 204);
    assert_eq!(
        outcome(admin(Method::GET, &s("a"))).await,
        (404, "session.not_found".into())
    );
    assert_eq!(outcome(admin(Method::POST, &s("a"))).await.0, 405);
    assert_eq!(
        outcome(admin(Method::GET, "/other")).await,
        (404, "route.not_found".into())
    );
    let m = admin(Method::GET, "/metrics").send().await.unwrap();
    let m = m.text().await.unwrap();
    assert!(m.contains("headgate_sessions"), "{m}");
    h.shutdown().await;
}

#[tokio::test]
async fn webhooks_store_purge_and_refuse_bad_signatures() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = "[webhooks.vapi]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n[webhooks.retell]\nsecret_env = \"HG_TEST_RETELL_KEY\"\n[webhooks.elevenlabs]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n";
    write_config(dir.path(), main, &[("crm", &route(&up.url(), HEADERS))]);
    let h = start(dir.path()).await;
    let c = client();
    let hook = |p: &str| format!("http://{}/_hooks/{p}", h.listen);
    let call = |id: &str| {
        client()
            .get(format!("http://{}/crm", h.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", id.to_string())
    };

    // Vapi: status-update stores the call with the call.metadata view.
    let body = json!({"message": {"type": "status-update", "status": "in-progress", "call": {"id": "vc-1", "assistantOverrides": {"variableValues": {"token": "from-vapi"}}}}}).to_string();
    let ts = now_secs().to_string();
    let sig = headgate::internals::platform::sign_vapi(WEBHOOK_SECRET, body.as_bytes(), &ts);
    let send = |sig: String, ts: String, body: String| {
        c.post(hook("vapi"))
            .header("x-signature", sig)
            .header("x-timestamp", ts)
            .body(body)
    };
    assert_eq!(
        status_and_code(
            send("00".repeat(32), ts.clone(), body.clone())
                .send()
                .await
                .unwrap()
        )
        .await,
        (401, "webhook.unauthorized".into())
    );
    assert_eq!(
        status_and_code(
            c.post(hook("vapi"))
                .body(body.clone())
                .send()
                .await
                .unwrap()
        )
        .await,
        (401, "webhook.unauthorized".into())
    );
    assert_eq!(
        call("vc-1").send().await.unwrap().status(),
        403,
        "a refused hook changed nothing"
    );
    let r = send(sig.clone(), ts.clone(), body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "stored");
    assert_eq!(call("vc-1").send().await.unwrap().status(), 200);
    assert_eq!(up.last().headers["authorization"], "Bearer from-vapi");

    // End of call purges; replaying the earlier delivery changes nothing.
    let end =
        json!({"message": {"type": "end-of-call-report", "call": {"id": "vc-1"}}}).to_string();
    let r = c
        .post(hook("vapi"))
        .header("x-vapi-secret", WEBHOOK_SECRET)
        .body(end)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "purged");
    assert_eq!(call("vc-1").send().await.unwrap().status(), 403);
    let r = send(sig, ts, body).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "replayed");
    assert_eq!(
        call("vc-1").send().await.unwrap().status(),
        403,
        "a replay must not resurrect the session"
    );

    // Retell: signed call_started stores, a stale signature is refused.
    let body = json!({"event": "call_started", "call": {"call_id": "rc-1", "metadata": {"token": "from-retell"}}}).to_string();
    let ms = now_secs() * 1000;
    let good = headgate::internals::platform::sign_retell(RETELL_KEY, body.as_bytes(), ms);
    let stale =
        headgate::internals::platform::sign_retell(RETELL_KEY, body.as_bytes(), ms - 3_600_000);
    assert_eq!(
        status_and_code(
            c.post(hook("retell"))
                .header("x-retell-signature", stale)
                .body(body.clone())
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        401
    );
    assert_eq!(
        c.post(hook("retell"))
            .header("x-retell-signature", good)
            .body(body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(call("rc-1").send().await.unwrap().status(), 200);
    assert_eq!(up.last().headers["authorization"], "Bearer from-retell");

    // ElevenLabs: a signed post-call webhook purges.
    put_session(&h, "el-1", json!({"call": {"metadata": {"token": "x"}}})).await;
    let body = json!({"type": "post_call_transcription", "event_timestamp": now_secs(), "data": {"conversation_id": "el-1", "agent_id": "a"}}).to_string();
    let sig =
        headgate::internals::platform::sign_elevenlabs(WEBHOOK_SECRET, body.as_bytes(), now_secs());
    let r = c
        .post(hook("elevenlabs"))
        .header("elevenlabs-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "purged");
    assert_eq!(call("el-1").send().await.unwrap().status(), 403);

    assert_eq!(
        status_and_code(c.post(hook("nope")).body("{}").send().await.unwrap()).await,
        (404, "route.not_found".into())
    );
    h.shutdown().await;
}

/// A local stand-in for a platform's get-call API: counts requests, can
/// fail on demand, and hands out a token that changes after a 401.
#[derive(Clone, Default)]
struct FakeApi {
    hits: Arc<AtomicUsize>,
    mode: Arc<AtomicU64>, // 0 ok, 1 fail 500, 2 garbage
    generation: Arc<AtomicU64>,
}

async fn fake_api(api: FakeApi) -> std::net::SocketAddr {
    http_server(move |req: hyper::Request<hyper::body::Incoming>| {
        let api = api.clone();
        async move {
            api.hits.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let auth_ok = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {API_KEY}"));
            let id = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let (status, body) = match (auth_ok, api.mode.load(Ordering::SeqCst)) {
                (false, _) => (401, "{}".to_string()),
                (true, 1) => (500, "{}".to_string()),
                (true, 2) => (200, "<html>not json".to_string()),
                _ => (
                    200,
                    json!({"id": id, "assistantOverrides": {"variableValues": {"token": format!("tok-{}", api.generation.load(Ordering::SeqCst))}}}).to_string(),
                ),
            };
            let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            r
        }
    })
    .await
}

/// A headgate whose `crm` route resolves unknown sessions from a local fake
/// of Vapi's get-call API; `resolver_extra` adds `[resolver]` settings.
async fn resolver_setup(
    resolver_extra: &str,
) -> (
    Upstream,
    FakeApi,
    tempfile::TempDir,
    headgate::internals::proxy::Running,
) {
    let up = upstream().await;
    let api = FakeApi::default();
    let api_addr = fake_api(api.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "env_allow = [\"HG_TEST_API_KEY\"]\n[resolver]\nplatform = \"vapi\"\nurl = \"http://{api_addr}/call/<< session.id | url_encode >>\"\nheaders = {{ authorization = \"Bearer << env.HG_TEST_API_KEY >>\" }}\n{resolver_extra}"
    );
    let r = route(
        &up.url(),
        &format!("on_unknown_session = \"resolve\"\n{HEADERS}"),
    );
    write_config(dir.path(), &main, &[("crm", &r)]);
    let h = start(dir.path()).await;
    (up, api, dir, h)
}

#[tokio::test]
async fn resolver_single_flight_failure_recovery_and_401_eviction() {
    let (up, api, _dir, h) = resolver_setup("timeout = \"2s\"\nnegative_ttl = \"300ms\"\n").await;
    let get = |id: &str, path: &str| {
        client()
            .get(format!("http://{}/crm{path}", h.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", id.to_string())
            .send()
    };

    // 100 concurrent misses for one call: one fetch.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let f = get("call-x", "");
        tasks.push(tokio::spawn(async move { f.await.unwrap().status() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        api.hits.load(Ordering::SeqCst),
        1,
        "single-flight: one request for 100 concurrent misses"
    );
    assert!(
        up.seen()
            .iter()
            .all(|s| s.headers["authorization"] == "Bearer tok-0"),
        "the Vapi view exposes variableValues as call.metadata"
    );

    // Cached: no new fetch.
    assert_eq!(get("call-x", "").await.unwrap().status(), 200);
    assert_eq!(api.hits.load(Ordering::SeqCst), 1);

    // Failure → 503, remembered briefly, then recovery.
    api.mode.store(1, Ordering::SeqCst);
    assert_eq!(
        status_and_code(get("call-y", "").await.unwrap()).await,
        (503, "resolver.unavailable".into())
    );
    assert_eq!(
        status_and_code(get("call-y", "").await.unwrap()).await,
        (503, "resolver.unavailable".into())
    );
    assert_eq!(
        api.hits.load(Ordering::SeqCst),
        2,
        "the failure is cached (negative_ttl)"
    );
    api.mode.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        status_and_code(get("call-y", "").await.unwrap()).await,
        (503, "resolver.unavailable".into()),
        "garbage is a failure too"
    );
    api.mode.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get("call-y", "").await.unwrap().status(), 200, "recovered");

    // Upstream 401 evicts the fetched session; the next call refetches a rotated token.
    api.generation.store(1, Ordering::SeqCst);
    assert_eq!(get("call-x", "/status/401").await.unwrap().status(), 401);
    let before = api.hits.load(Ordering::SeqCst);
    assert_eq!(get("call-x", "").await.unwrap().status(), 200);
    assert_eq!(api.hits.load(Ordering::SeqCst), before + 1);
    assert_eq!(up.last().headers["authorization"], "Bearer tok-1");

    // A key that would inject into the resolver URL never gets that far.
    assert_eq!(
        status_and_code(get("../admin", "").await.unwrap()).await,
        (400, "session.key_invalid".into())
    );
    h.shutdown().await;
}

#[tokio::test]
async fn resolver_refreshes_a_session_near_expiry_in_the_background() {
    let (up, api, _dir, h) = resolver_setup("ttl = \"3s\"\nrefresh_before = \"2500ms\"\n").await;
    let get = || {
        client()
            .get(format!("http://{}/crm", h.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "swr")
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(api.hits.load(Ordering::SeqCst), 1);
    assert_eq!(up.last().headers["authorization"], "Bearer tok-0");
    // Rotate the token; once less than refresh_before is left, a hit is
    // served from the cache at once and refreshed behind it.
    api.generation.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(
        up.last().headers["authorization"],
        "Bearer tok-0",
        "served stale while revalidating"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        api.hits.load(Ordering::SeqCst),
        2,
        "refreshed once in the background"
    );
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(up.last().headers["authorization"], "Bearer tok-1");
    h.shutdown().await;
}
