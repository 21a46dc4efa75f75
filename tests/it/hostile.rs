//! What a hostile client found on the new surfaces (issue 39, defects 3
//! and on), each through the real interfaces: forged metric samples and
//! unbounded audit lines from tool names, ids that become dot-segments,
//! the client's `Forwarded`, nested batches.

use crate::support::*;
use serde_json::{Value, json};

/// A `tools/call` of `tool` on MCP route `mcp` of `h`, as session `call-1`.
async fn call_tool(h: &headgate::internals::proxy::Running, tool: &str) -> u16 {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {}}});
    client()
        .post(format!("http://{}/mcp", h.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "call-1")
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn tool_names_cannot_forge_samples_or_grow_metrics_and_audit() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let main = format!("[audit]\npath = \"{}\"\n", audit.display());
    let r = route(&up.url(), "[mcp]\ndeny_tools = [\"delete_*\"]\n");
    write_config(dir.path(), &main, &[("mcp", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "call-1", json!({"call": {}})).await;
    let forged = "x\"} 1\nheadgate_requests_total{route=\"crm\",status=\"500\"} 123456789\n# EOF\n";
    assert_eq!(call_tool(&h, forged).await, 200);
    let huge = "t".repeat(1 << 20);
    for _ in 0..5 {
        assert_eq!(call_tool(&h, &huge).await, 200);
    }
    let text = get_text(&client(), format!("http://{}/metrics", h.admin)).await;
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("headgate_requests_total{route=\"crm\"")),
        "{text}"
    );
    assert!(text.len() < 256 << 10, "/metrics is {} bytes", text.len());
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool: {said}");
    h.shutdown().await;
    // The audit writer runs behind the requests: wait for its sixth line.
    let written = eventually(std::time::Duration::from_secs(5), || async {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.lines().count() >= 6)
    })
    .await;
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert!(written, "{lines}");
    assert_eq!(lines.lines().count(), 6, "{lines}");
    for l in lines.lines() {
        assert!(l.len() < 1024, "an audit line of {} bytes", l.len());
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v["tool"].as_str().unwrap().len() <= 131, "{v}");
    }
}

/// `.` and `..` as ids would become dot-segments in a resolver's URL
/// (`GET /call/..` with the resolver's API key): refused as keys and ids.
#[tokio::test]
async fn dot_segment_ids_never_reach_the_resolver_or_the_store() {
    let up = upstream().await;
    let api = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "[resolver]\nurl = \"{}/call/<< session.id | url_encode >>\"\n",
        api.url()
    );
    let r = route(&up.url(), "on_unknown_session = \"resolve\"\n");
    write_config(dir.path(), &main, &[("crm", &r)]);
    let h = start(dir.path()).await;
    let c = client();
    for id in [".", ".."] {
        let resp = get_call(&c, format!("http://{}/crm/x", h.listen), id).await;
        assert_eq!(
            status_and_code(resp).await,
            (400, "session.key_invalid".to_string()),
            "{id}"
        );
        // Raw: an HTTP client would resolve the dot-segment away.
        let put = format!(
            "PUT /sessions/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let raw = raw_request(h.admin, &put).await;
        assert!(
            raw.starts_with("HTTP/1.1 400") && raw.contains("session.key_invalid"),
            "PUT {id}: {raw}"
        );
    }
    assert!(
        api.seen().is_empty(),
        "the resolver was asked: {:?}",
        api.seen()
    );
    assert!(up.seen().is_empty());
    h.shutdown().await;
}

/// A batch element that is not a message (a nested batch) is refused on
/// a route that limits tools, never forwarded.
#[tokio::test]
async fn a_nested_batch_is_refused_not_forwarded() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(&up.url(), "[mcp]\ndeny_tools = [\"delete_*\"]\n");
    write_config(dir.path(), "", &[("mcp", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "call-1", json!({"call": {}})).await;
    let nested = json!([[{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "delete_account", "arguments": {}}}]]);
    let r = client()
        .post(format!("http://{}/mcp", h.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "call-1")
        .json(&nested)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("mcp.unreadable_body"));
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    h.shutdown().await;
}

/// `check` refuses an `env_allow` that lists a secret headgate reads
/// itself (templates could send it upstream), and never prints a secret
/// pasted into the TOML where a variable's name belongs.
#[test]
fn check_refuses_secrets_in_env_allow_and_never_prints_a_pasted_one() {
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        "http://127.0.0.1:9",
        "[headers]\nx-k = \"<< env.HG_TEST_ROUTE_KEY >>\"\n",
    );
    for main in [
        "env_allow = [\"HG_TEST_ROUTE_KEY\"]\n",
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\nenv_allow = [\"HG_TEST_ADMIN_TOKEN\"]\n",
    ] {
        write_config(dir.path(), main, &[("crm", &r)]);
        let (code, _, err) = check_with(dir.path(), &[], &[]);
        assert_ne!(code, 0, "{main}");
        assert!(
            err.contains("config.secret_in_env_allow") && err.contains("headgate.toml:"),
            "{err}"
        );
    }
    let pasted = "sk_live-9f8e7d6c5b4a/PASTED";
    for main in [
        format!("[webhooks.vapi]\nsecret_env = \"{pasted}\"\n"),
        format!(
            "[credentials.c]\nkind = \"client_credentials\"\ntoken_url = \"http://127.0.0.1:1/t\"\nclient_id = \"x\"\nclient_secret = \"{pasted}\"\n"
        ),
    ] {
        write_config(
            dir.path(),
            &main,
            &[("crm", &route("http://127.0.0.1:9", ""))],
        );
        let (code, out, err) = check_with(dir.path(), &[], &[]);
        assert_ne!(code, 0, "{main}");
        assert!(
            !out.contains("PASTED") && !err.contains("PASTED"),
            "{out}{err}"
        );
    }
}
