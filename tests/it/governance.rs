//! Governance for a live call (docs/mcp.md "Governing a live call"), with the official MCP
//! Python SDK client and a fastmcp server: a per-call budget stops the
//! 4th `send_sms` of one call (the server ran 3) while another call has
//! its own; two replicas over one redis-server share one budget; a tool
//! answering 1 MiB of text through `max_result_bytes = "16KiB"` reaches
//! the client cut and marked, as valid JSON-RPC, in JSON and in SSE.

use serde_json::{Value, json};

use crate::support::*;

/// The SDK client's calls through `url` as `call_id`: one JSON object per
/// call (`text`, or `code` and `message`).
pub(crate) async fn calls(url: &str, call_id: &str, calls: Value) -> Vec<Value> {
    let out = tokio::process::Command::new(python())
        .arg(interop("mcp_calls_client.py"))
        .args([url, call_id, ROUTE_KEY, &calls.to_string()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout} {stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// A fastmcp server in `mode` (`json` or `sse`) behind headgate with
/// `extra` in its route's `[mcp]` table: the route's URL, what the server
/// ran, and the children to keep alive.
async fn governed(
    mode: &str,
    mcp: &str,
) -> (
    String,
    tempfile::NamedTempFile,
    Served,
    tempfile::TempDir,
    tokio::process::Child,
) {
    let ran = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let args = [ran.path().as_os_str(), mode.as_ref()];
    let server = python_server("mcp_governed_server.py", port, &args).await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://127.0.0.1:{port}/mcp"),
        &format!("[mcp]\n{mcp}\n"),
    );
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n",
        &[("crm", &r)],
    );
    let hg = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[],
    );
    for id in ["call-1", "call-2"] {
        assert_eq!(
            admin_call(&hg, reqwest::Method::PUT, id, Some(&json!({"call": {}}))).await,
            204
        );
    }
    (format!("http://{}/crm", hg.listen), ran, hg, dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fourth_send_of_a_call_is_refused_and_never_runs() {
    let budgets = "budgets = { \"send_*\" = 3, \"*\" = 50 }";
    let (url, ran, hg, _dir, _server) = governed("sse", budgets).await;
    let sms = json!(["send_sms", {"to": "+15550100", "text": "hi"}]);
    let got = calls(
        &url,
        "call-1",
        json!([sms, sms, sms, sms, ["report", {"size": 3}]]),
    )
    .await;
    for r in &got[..3] {
        assert_eq!(r["text"], "sent to +15550100", "{got:?}");
    }
    assert_eq!(got[3]["code"], "mcp.budget_exceeded", "{got:?}");
    let said = got[3]["message"].as_str().unwrap();
    assert!(said.contains("cannot do that again on this call"), "{said}");
    assert_eq!(got[4]["text"], "rrr", "another tool's budget is its own");
    // Another call has a budget of its own.
    let other = calls(&url, "call-2", json!([sms])).await;
    assert_eq!(other[0]["text"], "sent to +15550100");
    let on_server = std::fs::read_to_string(ran.path()).unwrap();
    assert_eq!(on_server.lines().count(), 4, "{on_server}");

    let m = metrics_text(&hg.admin).await;
    let line = "headgate_mcp_budget_exceeded_total{route=\"crm\"} 1";
    assert!(m.contains(line), "{line} missing:\n{m}");
    // The call inspector shows each budget's count (the refused call
    // counted) against its limit.
    let cookie = crate::console::log_in(&hg.admin, ADMIN_TOKEN).await;
    let (status, call) = crate::console::page(&hg.admin, &cookie, "/ui/calls/call-1").await;
    assert_eq!(status, 200);
    let row = |glob: &str, counted: u64, limit: u64, class: &str| {
        format!(
            "<tr><td>crm</td><td><code>{glob}</code></td><td class=\"num\"{class}>{counted}</td><td class=\"num\">{limit}</td></tr>"
        )
    };
    assert!(
        call.contains(&row("send_*", 4, 3, " class=\"bad\"")),
        "{call}"
    );
    assert!(call.contains(&row("*", 1, 50, "")), "{call}");
    // A deleted call's counts go with it.
    assert_eq!(
        admin_call(&hg, reqwest::Method::DELETE, "call-1", None).await,
        204
    );
    assert_eq!(
        admin_call(
            &hg,
            reqwest::Method::PUT,
            "call-1",
            Some(&json!({"call": {}}))
        )
        .await,
        204
    );
    let again = calls(&url, "call-1", json!([sms])).await;
    assert_eq!(again[0]["text"], "sent to +15550100", "{again:?}");
}

/// `max_result_bytes`: 1 MiB of text reaches the SDK client cut to 16 KiB
/// and marked, in a JSON response and in an event stream alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_is_cut_to_fit_in_json_and_sse() {
    for mode in ["json", "sse"] {
        let (url, _ran, hg, _dir, _server) = governed(mode, "max_result_bytes = \"16KiB\"").await;
        let got = calls(
            &url,
            "call-1",
            json!([["report", {"size": 1 << 20}], ["report", {"size": 10}]]),
        )
        .await;
        let text = got[0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: {got:?}"));
        let removed = (1 << 20) - (16 << 10);
        assert_eq!(
            text.len(),
            (16 << 10) + format!("… [cut by headgate: {removed} bytes]").len(),
            "{mode}"
        );
        assert!(
            text.ends_with(&format!("… [cut by headgate: {removed} bytes]")),
            "{mode}"
        );
        assert_eq!(
            got[1]["text"],
            "r".repeat(10),
            "{mode}: a small result is untouched"
        );
        let m = metrics_text(&hg.admin).await;
        let line = "headgate_mcp_results_cut_total{route=\"crm\"} 1";
        assert!(m.contains(line), "{mode}: {line} missing:\n{m}");
    }
}

/// Two replicas over one redis-server count one budget per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_budget_through_redis() {
    let redis = RedisServer::start();
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"hg-budget:\"\n",
        redis.url()
    );
    let r = route(&up.url(), "[mcp]\nbudgets = { \"send_*\" = 3 }\n");
    write_config(dir.path(), &main, &[("crm", &r)]);
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let (a, b) = (serve(dir.path(), &args, &[]), serve(dir.path(), &args, &[]));
    assert_eq!(
        admin_call(
            &a,
            reqwest::Method::PUT,
            "call-1",
            Some(&json!({"call": {}}))
        )
        .await,
        204
    );
    let send = |s: &Served, id: u32| {
        client()
            .post(format!("http://{}/crm/mcp", s.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "call-1")
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "send_sms"}}))
            .send()
    };
    let mut codes = Vec::new();
    for (i, s) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let v: Value = send(s, i as u32).await.unwrap().json().await.unwrap();
        codes.push(
            v["error"]["data"]["code"]
                .as_str()
                .unwrap_or("ok")
                .to_string(),
        );
    }
    assert_eq!(
        codes,
        [
            "ok",
            "ok",
            "ok",
            "mcp.budget_exceeded",
            "mcp.budget_exceeded"
        ]
    );
    assert_eq!(
        up.seen().len(),
        3,
        "only the calls within budget were forwarded"
    );
}
