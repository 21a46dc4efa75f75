//! Interop with real MCP software: the official MCP Python SDK client talks
//! Streamable HTTP through headgate (sending `X-Call-Id` as Vapi does) to a
//! real bearer-auth MCP server (fastmcp). Two users at once, each must get
//! only their own data, and progress notifications must stream through as
//! they happen.
//!
//! Needs `.venv` with `tests/interop/requirements.txt` (scripts/test.sh).

use std::path::PathBuf;

use crate::support::*;
use serde_json::{Value, json};

async fn run_client(url: &str, call_id: &str, key: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let out = tokio::process::Command::new(python())
        .arg(dir.join("mcp_client.py"))
        .args([url, call_id, key])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client for {call_id} failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("client output: {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sdk_through_headgate_to_fastmcp_two_users() {
    let port = free_port();
    let server = python_server("mcp_server.py", port, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://127.0.0.1:{port}/mcp"),
        "platform = \"vapi\"\nerror_style = \"jsonrpc\"\n[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(dir.path(), "", &[("crm", &r)]);
    let h = start(dir.path()).await;
    put_session(
        &h,
        "call-alice",
        json!({"call": {"metadata": {"token": "tok-alice-7c1"}}}),
    )
    .await;
    put_session(
        &h,
        "call-bob",
        json!({"call": {"metadata": {"token": "tok-bob-93e"}}}),
    )
    .await;
    let url = format!("http://{}/crm", h.listen);

    let (alice, bob) = tokio::join!(
        run_client(&url, "call-alice", ROUTE_KEY),
        run_client(&url, "call-bob", ROUTE_KEY)
    );
    assert_eq!(alice["data"], "orders of alice: 3");
    assert_eq!(bob["data"], "orders of bob: 7");
    assert_eq!(alice["tools"], json!(["my_data", "slow_report"]));

    for who in [&alice, &bob] {
        let rep = &who["report"];
        assert_eq!(rep["text"], "report done");
        let times: Vec<f64> = rep["progress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let done = rep["done"].as_f64().unwrap();
        assert_eq!(times.len(), 4, "{rep}");
        // Streamed as they happen: ~300 ms apart, the first long before the result.
        assert!(
            times[0] < done - 0.6,
            "first progress at {} s, result at {done} s: buffered ({rep})",
            times[0]
        );
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] > 0.15,
                "progress notifications arrived together: {times:?}"
            );
        }
    }

    // An unregistered call gets nothing from the server, not someone else's data.
    let status = client()
        .post(&url)
        .header("x-call-id", "call-mallory")
        .header("x-headgate-key", ROUTE_KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    let v: Value = status.json().await.unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["data"]["code"], "session.not_found");

    h.shutdown().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_sdks_and_headgate_agree() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let main = "builtin_echo = true\n[webhooks.vapi]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n[webhooks.retell]\nsecret_env = \"HG_TEST_RETELL_KEY\"\n[webhooks.elevenlabs]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n";
    let r = route(
        &format!("http://127.0.0.1:{port}/_echo"),
        "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(dir.path(), main, &[("echo", &r)]);
    let h = headgate::internals::proxy::start(headgate::internals::proxy::ServeOptions {
        templates: dir.path().to_path_buf(),
        listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        watch: false,
    })
    .await
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/platform_sdks.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("{stdout}\n{stderr}"));
    assert_eq!(v["failures"], json!([]), "SDK and headgate disagree: {v}");
    assert!(v["checks"].as_u64().unwrap() >= 14, "{v}");
    h.shutdown().await;
}
