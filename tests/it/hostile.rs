//! What a hostile client found on the new surfaces (issue 39, defects 3
//! and on), each through the real interfaces: forged metric samples and
//! unbounded audit lines from tool names, ids that become dot-segments,
//! the client's `Forwarded`, nested batches.

use crate::support::*;
use serde_json::{Value, json};

/// `promtool check metrics` on `text`: its verdict and what it said.
fn promtool(text: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be on PATH: scripts/test.sh installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A `tools/call` of `tool` on MCP route `mcp` of `h`, as session `call-1`.
async fn call_tool(h: &headgate::proxy::Running, tool: &str) -> u16 {
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
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(lines.lines().count(), 6, "{lines}");
    for l in lines.lines() {
        assert!(l.len() < 1024, "an audit line of {} bytes", l.len());
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v["tool"].as_str().unwrap().len() <= 131, "{v}");
    }
}
