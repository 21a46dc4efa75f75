//! MCP revision 2026-07-28 through the proxy (docs/mcp.md "Which tools may an
//! agent call"), with the official Python SDK on both ends at that
//! revision: a `Mcp-Name` that disagrees with the body is answered 400 /
//! -32020 and the SDK's own recovery (re-list, send again) works through
//! the proxy; a tool whose name is not ASCII (sent encoded in `Mcp-Name`)
//! is reached, its denied twin refused by policy and not as a mismatch;
//! `Mcp-Param-*` reaches the server as sent; a `subscriptions/listen` event
//! comes through; the server's own errors pass through as it sent them.

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_on_2026_07_28_calls_through_the_proxy() {
    let ran = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let _server = python_server("mcp_modern_server.py", port, &[ran.path().as_os_str()]).await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://127.0.0.1:{port}/mcp"),
        "[mcp]\ndeny_tools = [\"admin*\"]\n[headers]\nx-tenant = \"<< call.tenant >>\"\n",
    );
    write_config(dir.path(), "", &[("orders", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "call-1", json!({"call": {"tenant": "acme"}})).await;

    let url = format!("http://{}/orders", h.listen);
    let out = tokio::process::Command::new(python())
        .arg(interop("mcp_modern_client.py"))
        .args([url.as_str(), "call-1", ROUTE_KEY])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout} {stderr}");
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    // The denied twin is not listed; the spoiled first call got 400 and
    // the SDK sent it again after re-listing; the encoded name reached
    // the tool.
    assert_eq!(
        v["tools"],
        json!(["forecast", "search_orders", "touch_tools", "weather/東京"]),
        "{v}"
    );
    assert_eq!(v["statuses"][0], 400, "{v}");
    assert_eq!(v["search"], "found shoes", "{v}");
    assert_eq!(v["weather"], "晴れ", "{v}");
    // `Mcp-Param-City` reached the server as the SDK sent it (encoded):
    // the server compares it with the body and would answer -32020.
    assert_eq!(v["params"], json!(["=?base64?5p2x5Lqs?="]), "{v}");
    assert_eq!(v["forecast"], "sunny in 東京", "{v}");
    let statuses = v["statuses"].as_array().unwrap();
    assert!(statuses[1..].iter().all(|s| s == 200), "{v}");
    // A `subscriptions/listen` event through the proxy.
    let listen_ms = v["listen_ms"].as_f64().unwrap();
    assert!(listen_ms < 100.0, "the listen event took {listen_ms} ms");
    assert!(
        v["sent_names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "=?base64?d2VhdGhlci/mnbHkuqw=?="),
        "the SDK did not encode the name: {v}"
    );
    let denied = &v["denied"];
    assert_eq!(denied["data"]["code"], "mcp.tool_denied", "{v}");
    assert!(
        denied["message"].as_str().unwrap().contains("admin/東京"),
        "{v}"
    );
    let on_server = std::fs::read_to_string(ran.path()).unwrap();
    assert_eq!(
        on_server, "search_orders\nweather/東京\nforecast\n",
        "what ran upstream"
    );
    h.shutdown().await;
}

/// The server's own 2026-07-28 errors (an unsupported revision: -32022;
/// a GET on a stateless server: 405) reach the client as the server sent
/// them: status and body alike, compared with the server asked directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_errors_pass_through() {
    let ran = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let _server = python_server("mcp_modern_server.py", port, &[ran.path().as_os_str()]).await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://127.0.0.1:{port}/mcp"),
        "[mcp]\ndeny_tools = [\"admin*\"]\n",
    );
    write_config(dir.path(), "", &[("orders", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "call-1", json!({"call": {}})).await;
    let c = client();
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let ask = |url: String, post: bool| {
        let b = if post {
            c.post(url).json(&body)
        } else {
            c.get(url)
        };
        b.header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "call-1")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2099-01-01")
            .header("mcp-method", "tools/list")
            .send()
    };
    for (post, status) in [(true, None), (false, Some(405))] {
        let direct = ask(format!("http://127.0.0.1:{port}/mcp"), post)
            .await
            .unwrap();
        let proxied = ask(format!("http://{}/orders", h.listen), post)
            .await
            .unwrap();
        assert_eq!(proxied.status(), direct.status(), "post: {post}");
        if let Some(s) = status {
            assert_eq!(proxied.status(), s);
        }
        let (d, p) = (direct.text().await.unwrap(), proxied.text().await.unwrap());
        assert_eq!(p, d, "post: {post}");
        if post {
            assert!(p.contains("-32022"), "{p}");
        }
    }
    h.shutdown().await;
}
