//! What a hostile client and a new operator found (issue 16), each over
//! real sockets: re-spelled webhook replays, ids the admin API could never
//! address, traversal spellings and ambiguous requests sent raw, a client's
//! own broken body, JSON-RPC errors that keep their id and their outcome,
//! and the cause of a 502 in the log.

use std::time::Duration;

use crate::support::*;
use headgate::internals::platform::{sign_elevenlabs, sign_retell, sign_vapi};
use serde_json::{Value, json};

const HOOKS: &str = "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n\
    [webhooks.vapi]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n\
    [webhooks.retell]\nsecret_env = \"HG_TEST_RETELL_KEY\"\n\
    [webhooks.elevenlabs]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n\
    [webhooks.strict]\nplatform = \"vapi\"\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\nhmac = { required = true }\n";

const HEADERS: &str = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n";

/// A webhook delivery: its status and `outcome` (or error code).
async fn deliver(
    h: &headgate::internals::proxy::Running,
    hook: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    let mut rb = client()
        .post(format!("http://{}/_hooks/{hook}", h.listen))
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let what = v["outcome"]
        .as_str()
        .or(v["error"]["code"].as_str())
        .unwrap_or_default();
    (status, what.to_string())
}

/// The admin API's status for `GET /sessions/{id}`.
async fn session_status(h: &headgate::internals::proxy::Running, id: &str) -> u16 {
    client()
        .get(format!("http://{}/sessions/{id}", h.admin))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn vapi_headers(body: &str, spell: impl Fn(String) -> String) -> Vec<(&'static str, String)> {
    let ts = now_secs().to_string();
    let sig = spell(sign_vapi(WEBHOOK_SECRET, body.as_bytes(), &ts));
    vec![("x-signature", sig), ("x-timestamp", ts)]
}

#[tokio::test]
async fn a_respelled_replay_after_the_call_ended_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        HOOKS,
        &[("crm", &route("http://127.0.0.1:9", HEADERS))],
    );
    let h = start(dir.path()).await;

    // Vapi: stored, purged by end-of-call-report, then the first delivery
    // replayed with its hex signature in upper case.
    let started = json!({"message": {"type": "status-update", "status": "in-progress", "call": {"id": "vc-1", "assistantOverrides": {"variableValues": {"token": "tok-v"}}}}}).to_string();
    let ended =
        json!({"message": {"type": "end-of-call-report", "call": {"id": "vc-1"}}}).to_string();
    let first = vapi_headers(&started, |s| s);
    assert_eq!(
        deliver(&h, "vapi", &first, &started).await,
        (200, "stored".into())
    );
    let end = vapi_headers(&ended, |s| s);
    assert_eq!(
        deliver(&h, "vapi", &end, &ended).await,
        (200, "purged".into())
    );
    let upper: Vec<_> = first
        .iter()
        .map(|(k, v)| {
            (
                *k,
                if *k == "x-signature" {
                    v.to_uppercase()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    assert_eq!(
        deliver(&h, "vapi", &upper, &started).await,
        (200, "replayed".into())
    );
    assert_eq!(session_status(&h, "vc-1").await, 404, "the token came back");

    // Retell: the same with `,x=1` appended to the signature.
    let started = json!({"event": "call_started", "call": {"call_id": "rc-1", "metadata": {"token": "tok-r"}}}).to_string();
    let ended = json!({"event": "call_ended", "call": {"call_id": "rc-1"}}).to_string();
    let ms = now_secs() * 1000;
    let sig = sign_retell(RETELL_KEY, started.as_bytes(), ms);
    let h1 = [("x-retell-signature", sig.clone())];
    assert_eq!(
        deliver(&h, "retell", &h1, &started).await,
        (200, "stored".into())
    );
    let end = [(
        "x-retell-signature",
        sign_retell(RETELL_KEY, ended.as_bytes(), ms),
    )];
    assert_eq!(
        deliver(&h, "retell", &end, &ended).await,
        (200, "purged".into())
    );
    for spelled in [format!("{sig},x=1"), sig.replace(",d=", ", d=")] {
        let again = [("x-retell-signature", spelled)];
        assert_eq!(
            deliver(&h, "retell", &again, &started).await,
            (200, "replayed".into())
        );
    }
    assert_eq!(session_status(&h, "rc-1").await, 404);

    // ElevenLabs: an extra `v0=` is still the same delivery.
    let body =
        json!({"type": "post_call_transcription", "data": {"conversation_id": "ec-1"}}).to_string();
    let sig = sign_elevenlabs(WEBHOOK_SECRET, body.as_bytes(), now_secs());
    let once = [("elevenlabs-signature", sig.clone())];
    assert_eq!(
        deliver(&h, "elevenlabs", &once, &body).await,
        (200, "purged".into())
    );
    let twice = [("elevenlabs-signature", format!("{sig},v0=00ff"))];
    assert_eq!(
        deliver(&h, "elevenlabs", &twice, &body).await,
        (200, "replayed".into())
    );

    // A webhook that requires the HMAC plan refuses the plain secret.
    let plain = [("x-vapi-secret", WEBHOOK_SECRET.to_string())];
    assert_eq!(
        deliver(&h, "strict", &plain, &started).await,
        (401, "webhook.unauthorized".into())
    );
    h.shutdown().await;
}

#[tokio::test]
async fn webhook_ids_the_admin_api_could_not_address_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        HOOKS,
        &[("crm", &route("http://127.0.0.1:9", HEADERS))],
    );
    let h = start(dir.path()).await;
    let long = "a".repeat(10_000);
    for id in ["../../admin", long.as_str(), "id with space", "a\u{2028}b"] {
        let body = json!({"message": {"type": "status-update", "status": "in-progress", "call": {"id": id, "metadata": {"token": "t"}}}}).to_string();
        let got = deliver(&h, "vapi", &vapi_headers(&body, |s| s), &body).await;
        assert_eq!(got, (400, "session.key_invalid".into()), "{id:.20}");
    }
    let metrics = metrics_text(h.admin).await;
    assert!(
        metrics.contains("headgate_sessions 0"),
        "nothing stored:\n{metrics}"
    );
    h.shutdown().await;
}

/// The `headgate` binary in front of the recording upstream, with a
/// session `c1`.
async fn proxied(extra: &str) -> (tempfile::TempDir, Upstream, Served) {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = "";
    let routes = [
        ("crm", route(&up.url(), &format!("{extra}{HEADERS}"))),
        (
            "rpc",
            route(&up.url(), &format!("error_style = \"jsonrpc\"\n{HEADERS}")),
        ),
        (
            "dead",
            route(
                "http://127.0.0.1:9",
                &format!("error_style = \"jsonrpc\"\n{HEADERS}"),
            ),
        ),
    ];
    let routes: Vec<(&str, &str)> = routes.iter().map(|(n, r)| (*n, r.as_str())).collect();
    write_config(dir.path(), main, &routes);
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let h = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    let vars = json!({"call": {"metadata": {"token": "tok-c1"}}});
    assert_eq!(
        admin_call(&h, reqwest::Method::PUT, "c1", Some(&vars)).await,
        204
    );
    (dir, up, h)
}

async fn metrics(h: &Served) -> String {
    get_text(&client(), format!("http://{}/metrics", h.admin)).await
}

/// `text` without ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn traversal_spellings_and_ambiguous_requests_are_refused_raw() {
    let (_d, up, h) = proxied("").await;
    let key = format!("x-headgate-key: {ROUTE_KEY}\r\n");
    for path in [
        "/crm/..;/admin",
        "/crm/..%3B/admin",
        "/crm/..\\admin",
        "/crm/%252e%252e/admin",
        "/crm/%c0%ae%c0%ae/admin",
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{key}x-call-id: c1\r\nConnection: close\r\n\r\n"
        );
        let raw = raw_request(h.listen.parse().unwrap(), &req).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
        assert!(raw.contains("request.invalid_path"), "{path}: {raw}");
    }
    let two_ids = format!(
        "GET /crm/x HTTP/1.1\r\nHost: x\r\n{key}x-call-id: c1\r\nx-call-id: c2\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_request(h.listen.parse().unwrap(), &two_ids).await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("session.key_ambiguous"), "{raw}");
    let two_hosts = format!(
        "GET /crm/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n{key}x-call-id: c1\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_request(h.listen.parse().unwrap(), &two_hosts).await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("request.duplicate_header"), "{raw}");
    assert!(
        up.seen().is_empty(),
        "nothing was forwarded: {:?}",
        up.seen()
    );
}

#[tokio::test]
async fn a_broken_chunked_body_is_the_clients_fault_not_an_outage() {
    let (_d, _up, h) = proxied("").await;
    let head = format!(
        "POST /crm/x HTTP/1.1\r\nHost: x\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: c1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(1 << 20));
    for chunks in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-1\r\nhello\r\n0\r\n\r\n",
        ext.as_str(),
    ] {
        let raw = raw_bytes(
            h.listen.parse().unwrap(),
            format!("{head}{chunks}").as_bytes(),
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{:.60}: {raw}", chunks);
        assert!(raw.contains("request.invalid_body"), "{raw}");
    }
    let m = metrics(&h).await;
    assert!(
        m.contains("headgate_errors_total{route=\"crm\",code=\"request.invalid_body\"} 3"),
        "{m}"
    );
    assert!(!m.contains("upstream.unreachable"), "{m}");
}

#[tokio::test]
async fn json_rpc_errors_keep_the_id_and_record_the_real_outcome() {
    let (_d, _up, h) = proxied("").await;
    let c = client();
    let rpc = |route: &str, key: &str| {
        c.post(format!("http://{}/{route}/mcp", h.listen))
            .header("x-headgate-key", key.to_string())
            .header("x-call-id", "c1")
            .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}"#)
    };
    // The upstream is down: 502 inside, HTTP 200 outside, with the id.
    let r = rpc("dead", ROUTE_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 5, "{v}");
    assert_eq!(v["error"]["data"]["code"], "upstream.unreachable", "{v}");
    // A wrong route key: 401 inside.
    let r = rpc("rpc", "wrong").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["data"]["status"].clone()),
        (json!(5), json!(401))
    );
    let m = metrics(&h).await;
    for line in [
        "headgate_requests_total{route=\"dead\",status=\"502\"} 1",
        "headgate_requests_total{route=\"rpc\",status=\"401\"} 1",
        "headgate_errors_total{route=\"dead\",code=\"upstream.unreachable\"} 1",
        "headgate_errors_total{route=\"rpc\",code=\"auth.inbound_failed\"} 1",
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
    assert!(!m.contains("route=\"rpc\",status=\"200\""), "{m}");
}

#[tokio::test]
async fn the_log_says_why_an_upstream_failed_and_records_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n",
        &[(
            "dead",
            &route(
                &format!("http://127.0.0.1:{port}"),
                &format!("error_style = \"jsonrpc\"\n{HEADERS}"),
            ),
        )],
    );
    let s = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[("RUST_LOG", "info")],
    );
    let put = admin_call(
        &s,
        reqwest::Method::PUT,
        "c9",
        Some(&json!({"call": {"metadata": {"token": "SECRET-tok-c9"}}})),
    )
    .await;
    assert_eq!(put, 204);
    let (status, v) = tool_call(&s, "dead", "x-call-id", "c9").await;
    assert_eq!(
        (status, v["error"]["data"]["code"].clone()),
        (200, json!("upstream.unreachable"))
    );
    let found = eventually(Duration::from_secs(5), || {
        let log = plain(&s.log.lock().unwrap());
        async move { log.contains("upstream failed") && log.contains("status=502") }
    })
    .await;
    let log = plain(&s.log.lock().unwrap());
    assert!(found, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("upstream failed"))
        .unwrap_or_default();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(
        line.to_lowercase().contains("refused"),
        "the OS error: {line}"
    );
    assert!(!log.contains("SECRET-tok-c9"), "{log}");
}

#[test]
fn check_refuses_what_serve_would_and_templates_that_could_never_render() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "",
        &[(
            "r",
            "upstream = \"http://127.0.0.1:1\"\ninbound_auth = \"none\"\n[headers]\nx-a = \"<% for i in (1..100000) %>x<% endfor %>\"\nX-B = \"1\"\nx-b = \"2\"\n",
        )],
    );
    let (code, _, err) = check_with(dir.path(), &[], &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("r.toml:4:"), "{err}");
    assert!(err.contains("template.too_large"), "{err}");
    assert!(err.contains("config.duplicate_header"), "{err}");

    // An unset secret: an error for `check` as for `serve`.
    write_config(
        dir.path(),
        "",
        &[(
            "r",
            "upstream = \"http://127.0.0.1:1\"\ninbound_auth = { header = \"x-k\", secret_env = \"HG_TEST_NEVER_SET\" }\n",
        )],
    );
    let (code, _, err) = check_with(dir.path(), &[], &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("config.missing_secret"), "{err}");
    let out = bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--templates",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));

    // A short admin token is a warning.
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_SHORT\"\n",
        &[(
            "r",
            "upstream = \"http://127.0.0.1:1\"\ninbound_auth = \"none\"\n",
        )],
    );
    let args = ["check".as_ref(), dir.path().as_os_str()];
    let (code, text, _) = run_bin(&args, &[("HG_TEST_SHORT", "short")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("config.weak_admin_token"), "{text}");
    assert!(
        !text.contains("short\n") && !text.contains("`short`"),
        "{text}"
    );
}
