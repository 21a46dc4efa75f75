//! MCP awareness: a route's tool policy with the official MCP Python SDK
//! client and a real fastmcp server (the denied tool is invisible in
//! `tools/list`, answered `mcp.tool_denied`, and never runs on the server),
//! and raw requests for the header/body mismatch, batches, non-JSON bodies
//! and the `request.mcp` view templates read.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_tool_is_invisible_refused_and_never_runs() {
    let ran = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let _server = python_server("mcp_policy_server.py", port, &[ran.path().as_os_str()]).await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://127.0.0.1:{port}/mcp"),
        "[mcp]\ndeny_tools = [\"delete_*\", \"admin_*\"]\n[headers]\nx-tenant = \"<< call.tenant >>\"\n",
    );
    write_config(dir.path(), "", &[("orders", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "call-1", json!({"call": {"tenant": "acme"}})).await;

    let url = format!("http://{}/orders", h.listen);
    // The official Python and TypeScript SDK clients, one after the other.
    let clients = [
        (python(), interop("mcp_policy_client.py")),
        (PathBuf::from("node"), interop("node/mcp_policy_client.mjs")),
    ];
    for (i, (program, script)) in clients.iter().enumerate() {
        let out = tokio::process::Command::new(program)
            .arg(script)
            .args([url.as_str(), "call-1", ROUTE_KEY])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = script.display();
        assert!(out.status.success(), "{name}: {stdout} {stderr}");
        let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
        assert_eq!(
            v["tools"],
            json!(["get_order", "search_orders"]),
            "{name}: {v}"
        );
        assert_eq!(v["allowed"], "found shoes", "{name}");
        let denied = v["denied"].to_string();
        assert!(denied.contains("mcp.tool_denied"), "{name}: {v}");
        assert!(!denied.contains("\"ran\""), "the denied tool ran: {v}");
        let on_server = std::fs::read_to_string(ran.path()).unwrap();
        assert_eq!(on_server.lines().count(), i + 1, "{on_server}");
        assert!(
            on_server.lines().all(|l| l == "search_orders"),
            "{on_server}"
        );
    }

    let m = get_text(&client(), format!("http://{}/metrics", h.admin)).await;
    for line in [
        "headgate_mcp_requests_total{route=\"orders\",method=\"tools/call\",tool=\"delete_account\",outcome=\"denied\"} 2",
        "headgate_mcp_requests_total{route=\"orders\",method=\"tools/call\",tool=\"search_orders\",outcome=\"ok\"} 2",
        "headgate_mcp_requests_total{route=\"orders\",method=\"tools/list\",tool=\"\",outcome=\"ok\"} 2",
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
    h.shutdown().await;
}

/// A proxy with an MCP route in front of the recording upstream.
async fn mcp_route() -> (
    tempfile::TempDir,
    Upstream,
    headgate::internals::proxy::Running,
) {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &up.url(),
        "[mcp]\ndeny_tools = [\"delete_*\"]\n[headers]\nx-mcp = { template = \"<< request.mcp.method >>:<< request.mcp.tool | default: '-' >>\", on_error = \"omit\" }\n",
    );
    write_config(dir.path(), "", &[("m", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {}})).await;
    (dir, up, h)
}

#[tokio::test]
async fn mismatches_batches_and_non_json_bodies() {
    let (_d, up, h) = mcp_route().await;
    let c = client();
    let post = |body: &str| {
        c.post(format!("http://{}/m/mcp", h.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "c1")
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let call = |name: &str, id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}"}}}}"#
        )
    };

    // Headers that name another call than the body: 400 with MCP
    // 2026-07-28's HEADER_MISMATCH (-32020) and the request's id, on this
    // route whose errors are plain JSON too; not forwarded. A name in the
    // revision's encoded form that does not decode agrees with nothing.
    for name in ["search", "=?base64?ZGVsZXRlX2FsbA?="] {
        let r = post(&call("delete_all", 1))
            .header("mcp-method", "tools/call")
            .header("mcp-name", name)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], 1, "{v}");
        assert_eq!(v["error"]["code"], -32020, "{v}");
        assert_eq!(v["error"]["data"]["code"], "mcp.header_mismatch", "{v}");
    }
    // The same name encoded as the revision allows agrees with the body:
    // judged by policy (denied) rather than refused as a mismatch.
    let r = post(&call("delete_all", 2))
        .header("mcp-method", "tools/call")
        .header("mcp-name", "=?base64?ZGVsZXRlX2FsbA==?=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["data"]["code"], "mcp.tool_denied", "{v}");

    // One denied element refuses the batch.
    let batch = format!("[{},{}]", call("search", 2), call("delete_all", 3));
    let r = post(&batch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["data"]["code"], "mcp.tool_denied", "{v}");
    assert!(up.seen().is_empty(), "forwarded: {:?}", up.seen());

    // Allowed calls pass with their view in `request.mcp`.
    let r = post(&call("search", 4)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-mcp"], "tools/call:search");
    let forwarded = up.seen().len();

    // A route that limits tools refuses what its policy cannot read and a
    // lenient server might still run: not JSON; `params` twice (a
    // JavaScript server takes the last); a batch element that is not a
    // message; and a denied call past the first 64 KiB, which is read
    // whole and judged (it passed when only 64 KiB were peeked at).
    let twice = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"search"},"params":{"name":"delete_all"}}"#;
    let odd_batch = format!("[{},7]", call("search", 6));
    for body in ["this is not json", twice, &odd_batch] {
        let r = post(body).send().await.unwrap();
        assert_eq!(
            status_and_code(r).await,
            (400, "mcp.unreadable_body".into()),
            "{body}"
        );
    }
    let padded = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"arguments":{{"q":"{}"}},"name":"delete_all"}}}}"#,
        "x".repeat(100 << 10)
    );
    let r = post(&padded).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["data"]["code"], "mcp.tool_denied", "{v}");
    assert_eq!(up.seen().len(), forwarded, "none of these was forwarded");

    // Header-only view (MCP 2026-07-28) with a body too large to read.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"search","arguments":{{"q":"{}"}}}}}}"#,
        "x".repeat(100 << 10)
    );
    let r = post(&big)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "search")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().body_len, big.len(), "forwarded byte for byte");
    let r = post(&big.replace("search", "delete_me"))
        .header("mcp-method", "tools/call")
        .header("mcp-name", "delete_me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["data"]["code"], "mcp.tool_denied", "{v}");
    h.shutdown().await;
}

/// The audit trail and the call timeline, on the real binary: one line
/// per MCP request with the session as a keyed hash, never the raw id or
/// a header value; `GET /calls/{id}` shows the same requests; after a
/// logrotate-style rename and SIGHUP, lines go to the new file.
#[tokio::test]
async fn every_mcp_request_is_audited_and_on_the_calls_timeline() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = "[audit]\npath = \"audit.jsonl\"\nsession_key_env = \"HG_TEST_WEBHOOK_SECRET\"\n";
    let r = route(
        &up.url(),
        "[mcp]\ndeny_tools = [\"delete_*\"]\n[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(dir.path(), main, &[("m", &r)]);
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    let vars = json!({"call": {"metadata": {"token": "SECRET-audit-token"}}});
    assert_eq!(
        admin_call(&s, reqwest::Method::PUT, "call-audit-1", Some(&vars)).await,
        204
    );
    let c = client();
    let post = |body: String| {
        c.post(format!("http://{}/m/mcp", s.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "call-audit-1")
            .body(body)
    };
    let call = |name: &str, id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}"}}}}"#
        )
    };
    assert_eq!(post(call("search", 1)).send().await.unwrap().status(), 200);
    assert_eq!(
        post(call("delete_all", 2)).send().await.unwrap().status(),
        200
    );

    let audit = dir.path().join("audit.jsonl");
    let lines = |path: std::path::PathBuf, n: usize| async move {
        let mut text = String::new();
        let ok = eventually(Duration::from_secs(5), || {
            let p = path.clone();
            async move { std::fs::read_to_string(&p).is_ok_and(|t| t.lines().count() >= n) }
        })
        .await;
        if ok {
            text = std::fs::read_to_string(&path).unwrap();
        }
        text
    };
    let text = lines(audit.clone(), 2).await;
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{text}");
    assert_eq!(
        (
            recs[0]["tool"].clone(),
            recs[0]["status"].clone(),
            recs[0]["rpc_id"].clone()
        ),
        (json!("search"), json!(200), json!(1))
    );
    assert_eq!(
        (recs[1]["code"].clone(), recs[1]["status"].clone()),
        (json!("mcp.tool_denied"), json!(403))
    );
    assert!(recs[0]["upstream_ms"].as_f64().is_some(), "{text}");
    assert!(
        recs[1]["upstream_ms"].is_null(),
        "a denied call never reached the upstream"
    );
    let hash = recs[0]["session"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 16);
    for secret in ["call-audit-1", "SECRET-audit-token", ROUTE_KEY] {
        assert!(
            !text.contains(secret),
            "{secret} in the audit trail:\n{text}"
        );
    }

    let t = get_text(&c, format!("http://{}/calls/call-audit-1", s.admin)).await;
    let v: Value = serde_json::from_str(&t).unwrap();
    let reqs = v["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 2, "{t}");
    assert_eq!(reqs[1]["code"], "mcp.tool_denied");
    assert_eq!(reqs[0]["session"], hash.as_str());
    assert!(!t.contains("SECRET-audit-token"), "{t}");

    // logrotate: rename, SIGHUP, new lines in a new file.
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).unwrap();
    s.hangup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(post(call("search", 3)).send().await.unwrap().status(), 200);
    let fresh = lines(audit, 1).await;
    assert!(fresh.contains("\"rpc_id\":3"), "{fresh}");
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        2
    );
}

/// `[tracing]`: the upstream always receives a W3C `traceparent` (the
/// caller's, or a new trace), and the access line carries its trace id.
#[tokio::test]
async fn trace_context_reaches_the_upstream_and_the_access_log() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[tracing]\n",
        &[("m", &route(&up.url(), "[headers]\nx-t = \"1\"\n"))],
    );
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(
        dir.path(),
        &args,
        &[("RUST_LOG", "info"), ("HEADGATE_LOG_FORMAT", "json")],
    );
    assert_eq!(
        admin_call(&s, reqwest::Method::PUT, "t1", Some(&json!({"call": {}}))).await,
        204
    );
    let c = client();
    let get = |tp: Option<&str>| {
        let mut rb = c
            .get(format!("http://{}/m/x", s.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "t1");
        if let Some(tp) = tp {
            rb = rb.header("traceparent", tp);
        }
        rb.send()
    };
    assert_eq!(get(None).await.unwrap().status(), 200);
    let started = up.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = started.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[1].len(), parts[2].len()),
        (4, "00", 32, 16),
        "{started}"
    );
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(get(Some(given)).await.unwrap().status(), 200);
    assert_eq!(up.last().headers["traceparent"], given);
    let found = eventually(Duration::from_secs(5), || {
        let log = s.log.lock().unwrap().clone();
        let want = parts[1].to_string();
        async move { log.contains(&want) && log.contains("4bf92f3577b34da6a3ce929d0e0e4736") }
    })
    .await;
    assert!(found, "{}", s.log.lock().unwrap());
}

/// `[tracing] otlp_endpoint`: the request's spans reach a real OTLP/HTTP
/// receiver (decoded with the official `opentelemetry-proto` package) with
/// their parent/child links, in the caller's trace; the upstream received
/// a `traceparent` in that trace whose parent is headgate's upstream span;
/// no attribute carries a header value, token or raw session id.
#[tokio::test]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    let spans_file = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let _receiver = python_server("otlp_receiver.py", port, &[spans_file.path().as_os_str()]).await;
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\n");
    let r = route(
        &up.url(),
        "[mcp]\ndeny_tools = [\"delete_*\"]\n[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(dir.path(), &main, &[("m", &r)]);
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    let vars = json!({"call": {"metadata": {"token": "SECRET-otlp-token"}}});
    assert_eq!(
        admin_call(&s, reqwest::Method::PUT, "call-otlp", Some(&vars)).await,
        204
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = client()
        .post(format!("http://{}/m/mcp", s.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "call-otlp")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-session-id", "mcp-sess-9")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A denied call: its span says why (`error.type`).
    let denied = client()
        .post(format!("http://{}/m/mcp", s.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "call-otlp")
        .body(
            r#"{"jsonrpc":"2.0","id":"d-2","method":"tools/call","params":{"name":"delete_all"}}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 200);
    let sent = up.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");
    let hop = sent.split('-').nth(2).unwrap().to_string();

    let path = spans_file.path().to_path_buf();
    let got = eventually(Duration::from_secs(10), || {
        let p = path.clone();
        async move { std::fs::read_to_string(&p).is_ok_and(|t| t.lines().count() >= 4) }
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(got, "spans: {text}");
    let spans: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |name: &str| spans.iter().find(|s| s["name"] == name).cloned().unwrap();
    // Named and attributed as OpenTelemetry's MCP conventions say.
    let (req, lookup, upstream_span) = (
        by("tools/call search"),
        by("session lookup"),
        by("upstream"),
    );
    for s in [&req, &lookup, &upstream_span] {
        assert_eq!(s["trace_id"], trace, "{s}");
        assert_eq!(s["service"], "headgate");
    }
    assert_eq!(
        req["parent_span_id"], "00f067aa0ba902b7",
        "the caller's span is the parent"
    );
    assert_eq!(lookup["parent_span_id"], req["span_id"]);
    assert_eq!(upstream_span["parent_span_id"], req["span_id"]);
    assert_eq!(
        upstream_span["span_id"],
        hop.as_str(),
        "the upstream's parent is headgate's span"
    );
    assert_eq!(req["attributes"]["headgate.route"], "m");
    let a = &req["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "search");
    assert_eq!(a["jsonrpc.request.id"], "1");
    assert_eq!(a["mcp.protocol.version"], "2026-07-28");
    assert_eq!(a["mcp.session.id"], "mcp-sess-9");
    assert_eq!(a["http.response.status_code"], 200);
    assert!(a.get("error.type").is_none(), "{req}");
    let d = by("tools/call delete_all");
    assert_eq!(d["attributes"]["error.type"], "mcp.tool_denied", "{d}");
    assert_eq!(d["attributes"]["jsonrpc.request.id"], "\"d-2\"", "{d}");
    for secret in ["SECRET-otlp-token", "call-otlp", ROUTE_KEY] {
        assert!(!text.contains(secret), "{secret} in spans: {text}");
    }
}

/// An unreachable collector costs requests nothing: they succeed, at
/// once (the exporter sends from its own thread and drops what it cannot).
#[tokio::test]
async fn a_dead_collector_never_slows_or_fails_a_request() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:{}/v1/traces\"\n",
        free_port()
    );
    write_config(
        dir.path(),
        &main,
        &[("m", &route(&up.url(), "[headers]\nx-a = \"1\"\n"))],
    );
    let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let s = serve(dir.path(), &args, &[("RUST_LOG", "info")]);
    assert_eq!(
        admin_call(&s, reqwest::Method::PUT, "c", Some(&json!({"call": {}}))).await,
        204
    );
    let c = client();
    let started = Instant::now();
    for _ in 0..50 {
        let r = c
            .get(format!("http://{}/m/x", s.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "c")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A `tools/list` answered over SSE, between other events: the list is
/// filtered, every other event passes untouched and undelayed (each
/// arrives about when the server sent it), and the MCP session headers
/// reach the server as the client sent them.
#[tokio::test]
async fn an_sse_tools_list_is_filtered_without_delaying_other_events() {
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let addr = http_server(move |req: http::Request<hyper::body::Incoming>| {
        let seen = s2.clone();
        async move {
            let h = req.headers();
            let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap_or_default().to_string());
            seen.lock().unwrap().push((get("mcp-session-id"), get("last-event-id")));
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
            tokio::spawn(async move {
                let events = [
                    "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n".to_string(),
                    "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"tools\":[{\"name\":\"search\"},{\"name\":\"delete_account\"}]}}\n\n".to_string(),
                    "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n".to_string(),
                ];
                for ev in events {
                    // An event split over two writes must still be judged whole.
                    let (a, b) = ev.split_at(ev.len() / 2);
                    let _ = tx.send(Ok(Frame::data(Bytes::from(a.to_string())))).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = tx.send(Ok(Frame::data(Bytes::from(b.to_string())))).await;
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
            });
            let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
            let mut r = http::Response::new(StreamBody::new(stream));
            r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://{addr}/mcp"),
        "[mcp]\ndeny_tools = [\"delete_*\"]\n[headers]\nx-a = \"1\"\n",
    );
    write_config(dir.path(), "", &[("m", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {}})).await;
    let resp = client()
        .post(format!("http://{}/m/mcp", h.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "c1")
        .header("mcp-session-id", "sess-42")
        .header("last-event-id", "7")
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    let sent = Instant::now();
    let mut stream = resp.bytes_stream();
    let mut arrived = Vec::new();
    let mut text = String::new();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        arrived.push((sent.elapsed().as_millis(), text.matches("\n\n").count()));
    }
    assert_eq!(text.matches("\n\n").count(), 3, "{text}");
    assert!(
        text.contains("search") && !text.contains("delete_account"),
        "{text}"
    );
    assert!(text.contains("notifications/progress") && text.contains("notifications/message"));
    let first = arrived.iter().find(|(_, n)| *n >= 1).unwrap().0;
    let second = arrived.iter().find(|(_, n)| *n >= 2).unwrap().0;
    assert!(first < 300, "the first event waited: {arrived:?}");
    assert!(second < 700, "the list waited: {arrived:?}");
    assert_eq!(
        seen.lock().unwrap()[0],
        (Some("sess-42".into()), Some("7".into())),
        "Mcp-Session-Id and Last-Event-ID pass through untouched"
    );
    h.shutdown().await;
}

/// A raw upstream answering every request with a `tools/list` result
/// framed as the path says: `/length` (`Content-Length`, connection kept),
/// `/chunked` (two chunks) or `/close` (no length: read until close).
async fn framed_tools_list_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"search"},{"name":"delete_account"}]}}"#;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                loop {
                    // One request at a time: its head, then its body.
                    let mut buf = [0u8; 4096];
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = (text[..end].lines())
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if req.len() < end + 4 + len {
                        continue;
                    }
                    req.drain(..end + 4 + len);
                    let ct = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";
                    let (half_a, half_b) = body.split_at(body.len() / 2);
                    let path = text.split(' ').nth(1).unwrap_or("").to_string();
                    let answer = match path.as_str() {
                        "/chunked" => format!(
                            "{ct}transfer-encoding: chunked\r\n\r\n{:x}\r\n{half_a}\r\n{:x}\r\n{half_b}\r\n0\r\n\r\n",
                            half_a.len(),
                            half_b.len()
                        ),
                        "/close" => format!("{ct}\r\n{body}"),
                        _ => format!("{ct}content-length: {}\r\n\r\n{body}", body.len()),
                    };
                    let _ = s.write_all(answer.as_bytes()).await;
                    if path == "/close" {
                        let _ = s.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A plain JSON `tools/list` is filtered whatever the upstream's framing,
/// and the client gets a body as long as it is told: the denied tool is
/// gone, nothing else.
#[tokio::test]
async fn a_json_tools_list_is_filtered_whatever_its_framing() {
    let addr = framed_tools_list_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://{addr}"),
        "[mcp]\ndeny_tools = [\"delete_*\"]\n[headers]\nx-a = \"1\"\n",
    );
    write_config(dir.path(), "", &[("m", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {}})).await;
    let c = client();
    for round in 0..2 {
        for framing in ["length", "chunked", "close"] {
            let resp = c
                .post(format!("http://{}/m/{framing}", h.listen))
                .header("x-headgate-key", ROUTE_KEY)
                .header("x-call-id", "c1")
                .header("content-type", "application/json")
                .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{framing}");
            let v: Value = resp
                .json()
                .await
                .unwrap_or_else(|e| panic!("{framing}: {e}"));
            assert_eq!(
                v["result"]["tools"],
                json!([{"name": "search"}]),
                "{framing}, round {round}"
            );
            assert_eq!(v["id"], 5);
        }
    }
    h.shutdown().await;
}
