//! The `tools/list` filter against servers that answer in shapes it once
//! misread (issue 39, defect 5): gzip, a content type in capitals, a 0xFF
//! byte, events ending in LF then CRLF, and the legacy HTTP+SSE transport,
//! with the official Python SDK client and fastmcp behind headgate. The
//! client never sees the denied tool, and the denied call is answered
//! where the client waits for it.

use crate::support::*;
use serde_json::{Value, json};

/// Runs `client` (a script of tests/interop) against route `name` of a
/// headgate in front of `mcp_hostile_server.py MODE`: its JSON report
/// and the tools that ran on the server.
async fn through(mode: &str, name: &str, path: &str, client: &str) -> (Value, String) {
    let ran = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let args = [ran.path().as_os_str(), mode.as_ref()];
    let _server = python_server("mcp_hostile_server.py", port, &args).await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://127.0.0.1:{port}{path}"),
        "[mcp]\ndeny_tools = [\"delete_*\", \"admin_*\"]\n",
    );
    write_config(dir.path(), "", &[(name, &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "call-1", json!({"call": {}})).await;
    let url = match mode {
        "legacy" => format!("http://{}/{name}/sse", h.listen),
        _ => format!("http://{}/{name}", h.listen),
    };
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(python())
            .arg(interop(client))
            .args([url.as_str(), "call-1", ROUTE_KEY])
            .output(),
    )
    .await
    .expect("the client finished")
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{mode}: {stdout} {stderr}");
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    h.shutdown().await;
    (v, std::fs::read_to_string(ran.path()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_denied_tool_stays_invisible_however_the_server_answers() {
    for mode in ["gzip", "case", "ff", "crlf"] {
        let (v, ran) = through(mode, "orders", "/mcp", "mcp_policy_client.py").await;
        assert_eq!(
            v["tools"],
            json!(["get_order", "search_orders"]),
            "{mode}: {v}"
        );
        assert_eq!(v["allowed"], "found shoes", "{mode}: {v}");
        assert!(
            v["denied"].to_string().contains("mcp.tool_denied"),
            "{mode}: {v}"
        );
        assert_eq!(ran.lines().collect::<Vec<_>>(), ["search_orders"], "{mode}");
    }
}

/// The legacy transport answers on the GET stream: the list there is
/// filtered, and the denied call's error goes down that stream too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_sse_transport_is_filtered_and_answered_on_its_stream() {
    // The server's endpoint event names `/messages/?session_id=…`: the
    // route is named so that the client's POSTs land on it.
    let (v, ran) = through("legacy", "messages", "/messages", "mcp_legacy_client.py").await;
    assert_eq!(v["tools"], json!(["get_order", "search_orders"]), "{v}");
    assert_eq!(v["allowed"], "found shoes", "{v}");
    assert!(v["denied"].to_string().contains("mcp.tool_denied"), "{v}");
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["search_orders"]);
}
