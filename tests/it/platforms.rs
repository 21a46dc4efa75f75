//! Platform presets against the fixtures in `tests/fixtures/<platform>/`:
//! each platform's webhooks, signed its way, store and purge the session a
//! `platform = "…"` route then injects from; each resolver preset asks the
//! platform's get-call API exactly as that API expects (method, path,
//! credentials) and renders from what it returns.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::*;
use bytes::Bytes;
use headgate::internals::platform::{sign_elevenlabs, sign_retell, sign_vapi};
use http_body_util::Full;
use serde_json::{Value, json};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// (method, path, headers) of each request the mock platform API got.
type Calls = Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>;

/// The three platforms' get-call endpoints, answering with the fixtures.
async fn platform_api() -> (SocketAddr, Calls) {
    let calls: Calls = Default::default();
    let seen = calls.clone();
    let addr = http_server(move |req: http::Request<hyper::body::Incoming>| {
        let path = req.uri().path().to_string();
        seen.lock().unwrap().push((
            req.method().to_string(),
            path.clone(),
            req.headers().clone(),
        ));
        let body = if path.starts_with("/call/") {
            fixture("vapi/call.json")
        } else if path.starts_with("/v2/get-call/") {
            fixture("retell/get-call.json")
        } else if path.starts_with("/v1/convai/conversations/") {
            fixture("elevenlabs/conversation.json")
        } else {
            String::new()
        };
        let mut r = http::Response::new(Full::new(Bytes::from(body)));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        std::future::ready(r)
    })
    .await;
    (addr, calls)
}

const AUTH: &str = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"";

async fn hook(s: &Served, name: &str, headers: &[(&str, String)], body: String) -> u16 {
    let mut r = client().post(format!("http://{}/_hooks/{name}", s.listen));
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(body).send().await.unwrap().status().as_u16()
}

fn last_auth(up: &Upstream) -> String {
    up.last().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn webhooks_from_the_fixtures_store_and_purge_what_routes_inject() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n\
        [webhooks.vapi]\nplatform = \"vapi\"\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n\
        [webhooks.retell]\nplatform = \"retell\"\nsecret_env = \"HG_TEST_RETELL_KEY\"\n\
        [webhooks.elevenlabs]\nplatform = \"elevenlabs\"\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n";
    let vapi = route(&up.url(), &format!("platform = \"vapi\"\n{AUTH}"));
    let retell = route(&up.url(), &format!("platform = \"retell\"\n{AUTH}"));
    let eleven = route(&up.url(), &format!("platform = \"elevenlabs\"\n{AUTH}"));
    let livekit = route(&up.url(), &format!("platform = \"livekit\"\n{AUTH}"));
    let retell_fn = format!(
        "upstream = \"{}\"\nplatform = \"retell\"\ninbound_auth = {{ platform = \"retell\", secret_env = \"HG_TEST_RETELL_KEY\" }}\nvars_from_body = \"/call\"\n{AUTH}\n",
        up.url()
    );
    write_config(
        dir.path(),
        main,
        &[
            ("vapi", &vapi),
            ("retell", &retell),
            ("eleven", &eleven),
            ("retellfn", &retell_fn),
            ("livekit", &livekit),
        ],
    );
    let s = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[("RUST_LOG", "info")],
    );

    // Vapi: HMAC-signed status-update stores the call; the route reads the
    // token through the call.metadata view (variableValues win).
    let body = fixture("vapi/status-update.json");
    let ts = now_secs().to_string();
    let signed = |body: &str| {
        vec![
            (
                "x-signature",
                sign_vapi(WEBHOOK_SECRET, body.as_bytes(), &ts),
            ),
            ("x-timestamp", ts.clone()),
        ]
    };
    assert_eq!(hook(&s, "vapi", &signed(&body), body.clone()).await, 200);
    assert_eq!(
        tool_call(&s, "vapi", "x-call-id", "vapi-call-1").await.0,
        200
    );
    assert_eq!(last_auth(&up), "Bearer tok-vapi-hook");
    let body = fixture("vapi/end-of-call-report.json");
    assert_eq!(hook(&s, "vapi", &signed(&body), body.clone()).await, 200);
    let (status, err) = tool_call(&s, "vapi", "x-call-id", "vapi-call-1").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("session.not_found"))
    );

    // Retell: call_started stores, call_ended purges.
    let ms = now_secs() * 1000;
    let body = fixture("retell/call_started.json");
    let sig = sign_retell(RETELL_KEY, body.as_bytes(), ms);
    assert_eq!(
        hook(&s, "retell", &[("x-retell-signature", sig)], body).await,
        200
    );
    assert_eq!(
        tool_call(&s, "retell", "x-call-id", "retell-call-1")
            .await
            .0,
        200
    );
    assert_eq!(last_auth(&up), "Bearer tok-retell-hook");
    let body = fixture("retell/call_ended.json");
    let sig = sign_retell(RETELL_KEY, body.as_bytes(), ms);
    assert_eq!(
        hook(&s, "retell", &[("x-retell-signature", sig)], body).await,
        200
    );
    assert_eq!(
        tool_call(&s, "retell", "x-call-id", "retell-call-1")
            .await
            .0,
        403
    );

    // Retell custom function: key and variables from the signed body itself,
    // no store; the body reaches the upstream byte for byte.
    let body = fixture("retell/custom-function.json");
    let sig = sign_retell(RETELL_KEY, body.as_bytes(), ms);
    let r = client()
        .post(format!("http://{}/retellfn/tools", s.listen))
        .header("x-retell-signature", sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(last_auth(&up), "Bearer tok-retell-body");
    assert_eq!(up.last().body_len, body.len());

    // ElevenLabs: the post-call webhook purges a session the backend
    // registered for the conversation.
    let vars = json!({"call": {"metadata": {"token": "tok-el"}}});
    let put = admin_call(&s, reqwest::Method::PUT, "el-conv-1", Some(&vars)).await;
    assert_eq!(put, 204);
    assert_eq!(
        tool_call(&s, "eleven", "x-conversation-id", "el-conv-1")
            .await
            .0,
        200
    );
    assert_eq!(last_auth(&up), "Bearer tok-el");
    let body = fixture("elevenlabs/post_call_transcription.json")
        .replace("1732000300", &now_secs().to_string());
    let sig = sign_elevenlabs(WEBHOOK_SECRET, body.as_bytes(), now_secs());
    assert_eq!(
        hook(&s, "elevenlabs", &[("elevenlabs-signature", sig)], body).await,
        200
    );
    assert_eq!(
        tool_call(&s, "eleven", "x-conversation-id", "el-conv-1")
            .await
            .0,
        403
    );

    // LiveKit: the backend registers the room; the agent sends X-Session-Id.
    let vars: Value = serde_json::from_str(&fixture("livekit/register.json")).unwrap();
    let put = admin_call(&s, reqwest::Method::PUT, "room-5f1e", Some(&vars)).await;
    assert_eq!(put, 204);
    assert_eq!(
        tool_call(&s, "livekit", "x-session-id", "room-5f1e")
            .await
            .0,
        200
    );
    assert_eq!(last_auth(&up), "Bearer tok-livekit");
    let log = s.log.lock().unwrap().clone();
    for secret in [
        "tok-vapi-hook",
        "tok-retell-hook",
        "tok-retell-body",
        "tok-el",
        WEBHOOK_SECRET,
    ] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
}

/// What each resolver preset sends: a GET to the platform's get-call path
/// with the platform's credential header, and nothing else secret.
#[tokio::test]
async fn resolver_presets_ask_each_platform_api_the_way_it_expects() {
    let (api, calls) = platform_api().await;
    let up = upstream().await;
    // (platform, env var, key header, id, the path the API serves, credential header, expected token)
    let cases = [
        (
            "vapi",
            "VAPI_API_KEY",
            "x-call-id",
            "vapi-call-2",
            "/call/vapi-call-2",
            ("authorization", "Bearer key-vapi"),
            "tok-vapi-api",
        ),
        (
            "retell",
            "RETELL_API_KEY",
            "x-call-id",
            "retell-call-2",
            "/v2/get-call/retell-call-2",
            ("authorization", "Bearer key-retell"),
            "tok-retell-api",
        ),
        (
            "elevenlabs",
            "ELEVENLABS_API_KEY",
            "x-conversation-id",
            "el-conv-2",
            "/v1/convai/conversations/el-conv-2",
            ("xi-api-key", "key-el"),
            "tok-el-api",
        ),
    ];
    for (platform, env, key_header, id, path, (cred_name, cred_value), token) in cases {
        let dir = tempfile::tempdir().unwrap();
        // Only the host is redirected to the mock; method, headers and the
        // path shape are the preset's (the preset's own URL is checked by
        // `preset_urls_are_the_platforms_own` below).
        let api_path = path.rsplit_once('/').unwrap().0;
        let main = format!(
            "env_allow = [\"{env}\"]\n[resolver]\nplatform = \"{platform}\"\nurl = \"http://{api}{api_path}/<< session.id | url_encode >>\"\n"
        );
        let token_tpl = if platform == "elevenlabs" {
            "[headers]\nauthorization = \"Bearer << call.conversation_initiation_client_data.dynamic_variables.token >>\""
        } else {
            AUTH
        };
        let r = route(
            &up.url(),
            &format!("platform = \"{platform}\"\non_unknown_session = \"resolve\"\n{token_tpl}"),
        );
        write_config(dir.path(), &main, &[("t", &r)]);
        let key = cred_value.rsplit(' ').next().unwrap();
        let s = serve(
            dir.path(),
            &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
            &[("RUST_LOG", "info"), (env, key)],
        );
        calls.lock().unwrap().clear();
        let (status, body) = tool_call(&s, "t", key_header, id).await;
        assert_eq!(status, 200, "{platform}: {body}");
        assert_eq!(last_auth(&up), format!("Bearer {token}"), "{platform}");
        let got = calls.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{platform}: one fetch");
        let (method, got_path, headers) = &got[0];
        assert_eq!(
            (method.as_str(), got_path.as_str()),
            ("GET", path),
            "{platform}"
        );
        assert_eq!(
            headers.get(cred_name).and_then(|v| v.to_str().ok()),
            Some(cred_value),
            "{platform}: credential header"
        );
        for leaked in ["x-headgate-key", "x-call-id", "x-conversation-id"] {
            assert!(
                headers.get(leaked).is_none(),
                "{platform}: {leaked} sent to the API"
            );
        }
        let log = s.log.lock().unwrap().clone();
        assert!(
            !log.contains(key) && !log.contains(token),
            "{platform}: secret in the log"
        );
    }
}

#[test]
fn preset_urls_are_the_platforms_own() {
    for (platform, env, url, (name, value)) in [
        (
            "vapi",
            "VAPI_API_KEY",
            "https://api.vapi.ai/call/c%3A1",
            ("authorization", "Bearer K"),
        ),
        (
            "retell",
            "RETELL_API_KEY",
            "https://api.retellai.com/v2/get-call/c%3A1",
            ("authorization", "Bearer K"),
        ),
        (
            "elevenlabs",
            "ELEVENLABS_API_KEY",
            "https://api.elevenlabs.io/v1/convai/conversations/c%3A1",
            ("xi-api-key", "K"),
        ),
    ] {
        let main = format!("env_allow = [\"{env}\"]\n[resolver]\nplatform = \"{platform}\"\n");
        let cfg = headgate::internals::config::check_texts(&main, &[]).unwrap();
        let r = cfg.resolver.as_ref().expect("a resolver");
        let scope = json!({"session": {"id": "c:1"}, "env": {env: "K"}});
        assert_eq!(r.url.render(&scope).unwrap(), url, "{platform}");
        assert_eq!(r.method, http::Method::GET);
        let headers: Vec<_> = r
            .headers
            .iter()
            .map(|(n, t)| (n.as_str().to_string(), t.render(&scope).unwrap()))
            .collect();
        assert_eq!(
            headers,
            [(name.to_string(), http::HeaderValue::from_static(value))],
            "{platform}"
        );
    }
}
