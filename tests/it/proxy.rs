//! The proxy over real sockets: in-process headgate, in-process upstream.

use std::time::{Duration, Instant};

use crate::support::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

const MAIN: &str = "builtin_echo = false\n[timeouts]\nresponse_headers = \"1s\"\nconnect = \"1s\"\nshutdown = \"3s\"\nheader_read = \"500ms\"\n";

async fn setup(
    route_extra: &str,
) -> (
    tempfile::TempDir,
    Upstream,
    headgate::internals::proxy::Running,
) {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(&format!("{}/mcp", up.url()), route_extra);
    write_config(dir.path(), MAIN, &[("crm", &r)]);
    let h = start(dir.path()).await;
    (dir, up, h)
}

const HEADERS: &str = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\nx-tenant = \"<< call.metadata.tenant | default: 'public' >>\"\n";

fn url(h: &headgate::internals::proxy::Running, path: &str) -> String {
    format!("http://{}{path}", h.listen)
}

#[tokio::test]
async fn each_session_gets_its_own_token_concurrently() {
    let (_d, up, h) = setup(HEADERS).await;
    put_session(
        &h,
        "call-a",
        json!({"call": {"metadata": {"token": "tok-A", "tenant": "acme"}}}),
    )
    .await;
    put_session(
        &h,
        "call-b",
        json!({"call": {"metadata": {"token": "tok-B"}}}),
    )
    .await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let id = if i % 2 == 0 { "call-a" } else { "call-b" };
        let req = c
            .post(url(&h, "/crm"))
            .header("x-call-id", id)
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-req", i.to_string())
            .body("{}");
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 60);
    for s in seen {
        let id = s.headers["x-call-id"].to_str().unwrap();
        let auth = s.headers["authorization"].to_str().unwrap();
        let tenant = s.headers["x-tenant"].to_str().unwrap();
        match id {
            "call-a" => assert_eq!((auth, tenant), ("Bearer tok-A", "acme")),
            "call-b" => assert_eq!((auth, tenant), ("Bearer tok-B", "public")),
            other => panic!("unexpected call id {other}"),
        }
        assert!(
            s.headers.get("x-headgate-key").is_none(),
            "the route key must not reach the upstream"
        );
    }
    h.shutdown().await;
}

/// A session's values are kept with it once rendered; a session written
/// again renders from its new variables, on the next request already.
#[tokio::test]
async fn a_session_written_again_is_rendered_from_its_new_variables() {
    let (_d, up, h) = setup(HEADERS).await;
    let c = client();
    let send = || {
        c.post(url(&h, "/crm"))
            .header("x-call-id", "call-a")
            .header("x-headgate-key", ROUTE_KEY)
            .body("{}")
            .send()
    };
    for (token, tenant) in [("tok-1", "acme"), ("tok-2", "zenith"), ("tok-3", "acme")] {
        let vars = json!({"call": {"metadata": {"token": token, "tenant": tenant}}});
        put_session(&h, "call-a", vars).await;
        for _ in 0..3 {
            assert_eq!(send().await.unwrap().status(), 200);
            let last = up.last();
            let auth = last.headers["authorization"].to_str().unwrap();
            assert_eq!(auth, format!("Bearer {token}"));
            assert_eq!(last.headers["x-tenant"], tenant);
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn client_authorization_is_replaced_and_hop_by_hop_removed() {
    let (_d, up, h) = setup(&format!("{HEADERS}[strip]\nheaders = [\"x-internal\"]\n")).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "real"}}})).await;
    let r = client()
        .get(url(&h, "/crm/tools/list?x=1&y=%20z"))
        .header("x-call-id", "c1")
        .header("x-headgate-key", ROUTE_KEY)
        .header("authorization", "Bearer smuggled")
        .header("x-tenant", "evil")
        .header("connection", "x-hop-secret")
        .header("x-hop-secret", "should-not-pass")
        .header("x-internal", "strip-me")
        .header("mcp-session-id", "mcp-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-upstream-hop").is_none(),
        "response hop-by-hop headers named in Connection are removed"
    );
    assert_eq!(r.headers()["mcp-session-id"], "mcp-123");
    let s = up.last();
    assert_eq!(s.path, "/mcp/tools/list");
    assert_eq!(s.query.as_deref(), Some("x=1&y=%20z"));
    assert_eq!(s.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(s.headers["authorization"], "Bearer real");
    assert_eq!(s.headers["x-tenant"], "public");
    assert!(s.headers.get("x-hop-secret").is_none());
    assert!(s.headers.get("x-internal").is_none());
    assert_eq!(s.headers["mcp-session-id"], "mcp-123");
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(s.headers["host"], up.addr.unwrap().to_string().as_str());
    h.shutdown().await;
}

#[tokio::test]
async fn every_contract_error() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = "[timeouts]\nresponse_headers = \"300ms\"\nconnect = \"300ms\"\n";
    let crm = route(
        &format!("{}/mcp", up.url()),
        &format!("body_limit = \"1KiB\"\n{HEADERS}"),
    );
    let dead = route("http://127.0.0.1:9/", HEADERS);
    let resolve = route(
        &up.url(),
        &format!("on_unknown_session = \"resolve\"\n{HEADERS}"),
    );
    let main_resolver = format!(
        "{main}[resolver]\nurl = \"http://127.0.0.1:9/call/<< session.id >>\"\ntimeout = \"300ms\"\n"
    );
    write_config(
        dir.path(),
        &main_resolver,
        &[("crm", &crm), ("dead", &dead), ("res", &resolve)],
    );
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    put_session(&h, "no-token", json!({"call": {"metadata": {}}})).await;
    let c = client();
    let k = ("x-headgate-key", ROUTE_KEY);

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.get(url(&h, "/crm")).header("x-call-id", "c1"),
            401,
            "auth.inbound_failed",
        ),
        (
            c.get(url(&h, "/crm"))
                .header("x-call-id", "c1")
                .header("x-headgate-key", "wrong"),
            401,
            "auth.inbound_failed",
        ),
        (
            c.get(url(&h, "/crm")).header(k.0, k.1),
            400,
            "session.key_missing",
        ),
        (
            c.get(url(&h, "/crm"))
                .header(k.0, k.1)
                .header("x-call-id", "../etc/passwd"),
            400,
            "session.key_invalid",
        ),
        (
            c.get(url(&h, "/crm"))
                .header(k.0, k.1)
                .header("x-call-id", "unknown"),
            403,
            "session.not_found",
        ),
        (
            c.get(url(&h, "/nope/x")).header(k.0, k.1),
            404,
            "route.not_found",
        ),
        (
            c.post(url(&h, "/crm"))
                .header(k.0, k.1)
                .header("x-call-id", "c1")
                .body(vec![b'x'; 4096]),
            413,
            "request.too_large",
        ),
        (
            c.get(url(&h, "/crm"))
                .header(k.0, k.1)
                .header("x-call-id", "no-token"),
            502,
            "template.render_failed",
        ),
        (
            c.get(url(&h, "/dead"))
                .header(k.0, k.1)
                .header("x-call-id", "c1"),
            502,
            "upstream.unreachable",
        ),
        (
            c.get(url(&h, "/res"))
                .header(k.0, k.1)
                .header("x-call-id", "fresh"),
            503,
            "resolver.unavailable",
        ),
        (
            c.get(url(&h, "/crm/slow?ms=2000"))
                .header(k.0, k.1)
                .header("x-call-id", "c1"),
            504,
            "upstream.timeout",
        ),
    ];
    for (req, status, code) in cases {
        let (s, got) = status_and_code(req.send().await.unwrap()).await;
        assert_eq!((s, got.as_str()), (status, code));
    }
    // Dot segments, raw (HTTP clients normalise them away before sending).
    for path in ["/crm/a/%2e%2e/b", "/crm/../admin", "/crm/a/..%2f..%2fb"] {
        let raw = raw_request(h.listen, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: c1\r\nConnection: close\r\n\r\n")).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
        assert!(raw.contains("request.invalid_path"), "{raw}");
    }
    // The 502 message names the header and the variable, never a value.
    let r = c
        .get(url(&h, "/crm"))
        .header(k.0, k.1)
        .header("x-call-id", "no-token")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("call.metadata.token"), "{body}");
    // Upstream 401 passes through with its WWW-Authenticate.
    let r = c
        .get(url(&h, "/crm/status/401"))
        .header(k.0, k.1)
        .header("x-call-id", "c1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"crm\"");
    let metrics = get_text(&c, format!("http://{}/metrics", h.admin)).await;
    assert!(
        metrics.contains("headgate_upstream_unauthorized_total{route=\"crm\"} 1"),
        "{metrics}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn jsonrpc_error_style_carries_the_request_id() {
    let (_d, _up, h) = setup(&format!("error_style = \"jsonrpc\"\n{HEADERS}")).await;
    let r = client()
        .post(url(&h, "/crm"))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "unknown")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 42);
    assert_eq!(v["error"]["data"]["code"], "session.not_found");
    h.shutdown().await;
}

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    let (_d, up, h) = setup(HEADERS).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let r = client()
        .get(url(&h, "/crm/sse?n=6&gap_ms=150"))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "c1")
        .header("mcp-session-id", "s-1")
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["mcp-session-id"], "s-1");
    let epoch = up.epoch.unwrap();
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let mut lags = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let ev: String = buf.drain(..end + 2).collect();
            let sent: u128 = ev
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap()
                .parse()
                .unwrap();
            lags.push(epoch.elapsed().as_micros() - sent);
        }
    }
    assert_eq!(lags.len(), 6);
    // Each event arrives long before the upstream sends the next (150 ms later).
    for lag in &lags {
        assert!(
            *lag < 100_000,
            "an event waited {lag} µs: it was buffered, not streamed ({lags:?})"
        );
    }
    let s = up.last();
    assert_eq!(s.headers["last-event-id"], "3");
    assert_eq!(s.headers["authorization"], "Bearer t");
    h.shutdown().await;
}

#[tokio::test]
async fn delete_with_mcp_session_id_passes_through() {
    let (_d, up, h) = setup(HEADERS).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let r = client()
        .delete(url(&h, "/crm"))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "c1")
        .header("mcp-session-id", "sess-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = up.last();
    assert_eq!(s.method, "DELETE");
    assert_eq!(s.headers["mcp-session-id"], "sess-9");
    h.shutdown().await;
}

#[tokio::test]
async fn large_upload_is_streamed_through() {
    let (_d, up, h) = setup(&format!("body_limit = \"64MiB\"\n{HEADERS}")).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    // 16 MiB, chunked (no content-length), produced lazily.
    let chunks = futures_util::stream::iter(
        (0..256).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 64 << 10]))),
    );
    let r = client()
        .post(url(&h, "/crm/upload"))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "c1")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().body_len, 16 << 20);
    h.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_an_open_stream_finish() {
    let (_d, _up, h) = setup(HEADERS).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let r = get_call(&client(), url(&h, "/crm/sse?n=5&gap_ms=200"), "c1").await;
    let listen = h.listen;
    let started = Instant::now();
    let stopping = tokio::spawn(h.shutdown());
    let body = r.text().await.unwrap();
    assert_eq!(
        body.matches("data: ").count(),
        5,
        "the stream was cut: {body}"
    );
    stopping.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    // No new connections after shutdown.
    assert!(tokio::net::TcpStream::connect(listen).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_an_idle_keep_alive_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_d, _up, h) = setup(HEADERS).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let mut s = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    let req = format!(
        "GET /crm HTTP/1.1\r\nHost: x\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: c1\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 4096];
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&b[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Idle between requests: shutdown closes it, well before the 10 s the
    // head timer would.
    let started = Instant::now();
    let stopping = tokio::spawn(h.shutdown());
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the idle connection stayed open through shutdown"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    stopping.await.unwrap();
}

#[tokio::test]
async fn unknown_session_can_wait_for_its_registration() {
    let (_d, up, h) = setup(&format!("wait_for_session = \"2s\"\n{HEADERS}")).await;
    let admin = h.admin;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client()
            .put(format!("http://{admin}/sessions/late"))
            .json(&json!({"call": {"metadata": {"token": "arrived"}}}))
            .send()
            .await
            .unwrap();
    });
    let r = get_call(&client(), url(&h, "/crm"), "late").await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["authorization"], "Bearer arrived");
    let r = get_call(&client(), url(&h, "/crm"), "never").await;
    assert_eq!(r.status(), 403);
    h.shutdown().await;
}

#[tokio::test]
async fn pass_forwards_unknown_sessions_without_injection() {
    let (_d, up, h) = setup(&format!("on_unknown_session = \"pass\"\n{HEADERS}")).await;
    let r = client()
        .get(url(&h, "/crm"))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "stranger")
        .header("authorization", "Bearer smuggled")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        up.last().headers.get("authorization").is_none(),
        "a templated header is never taken from the client"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn omit_on_error_drops_only_that_header() {
    let extra = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\nx-optional = { template = \"<< call.metadata.missing >>\", on_error = \"omit\" }\n";
    let (_d, up, h) = setup(extra).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let r = client()
        .get(url(&h, "/crm"))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "c1")
        .header("x-optional", "client-value")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = up.last();
    assert_eq!(s.headers["authorization"], "Bearer t");
    assert!(s.headers.get("x-optional").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn request_and_session_roots_render() {
    let extra = "session_keys = [\"query:call\", \"path:0\"]\n[headers]\nx-who = \"<< session.id >>/<< request.method >>/<< request.headers['x-trace'] | default: 'none' >>\"\n";
    let (_d, up, h) = setup(extra).await;
    put_session(&h, "q1", json!({"call": {}})).await;
    put_session(&h, "p1", json!({"call": {}})).await;
    let c = client();
    let r = c
        .post(url(&h, "/crm/x?call=q1"))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-trace", "tr-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-who"], "q1/POST/tr-1");
    let r = c
        .get(url(&h, "/crm/p1/tools"))
        .header("x-headgate-key", ROUTE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-who"], "p1/GET/none");
    h.shutdown().await;
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_d, up, h) = setup(HEADERS).await;
    let mut s = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    s.write_all(b"GET /crm HTTP/1.1\r\nHost: x\r\nx-call-id: c1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The proxy closes the connection once `header_read` (500 ms) passes.
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection was held open past the header timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(up.seen().is_empty(), "nothing reached the upstream");
    h.shutdown().await;
}

#[tokio::test]
async fn a_silent_stream_is_closed_after_the_idle_timeout() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[timeouts]\nidle = \"300ms\"\n",
        &[("crm", &route(&format!("{}/mcp", up.url()), HEADERS))],
    );
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let r = get_call(&client(), url(&h, "/crm/sse?n=3&gap_ms=2000"), "c1").await;
    let started = Instant::now();
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("data: "));
    // The upstream waits 2 s before the next event; the proxy gives up after 300 ms.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut ended_with_error = false;
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                ended_with_error = true;
                break;
            }
        }
        ended_with_error
    })
    .await
    .expect("the stream was not closed");
    assert!(rest, "an idle stream ends with an error, not a clean end");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "closed after {took:?}, not the 300 ms idle timeout"
    );
    h.shutdown().await;
}

/// Headers past the 64 KiB read buffer, or more than hyper's 100 fields,
/// are refused with 431 before anything is rendered or forwarded; memory
/// stays bounded and the proxy keeps serving.
#[tokio::test]
async fn oversized_request_headers_are_refused() {
    let (_d, up, h) = setup(HEADERS).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let big = "a".repeat(100 << 10);
    let raw = raw_request(
        h.listen,
        &format!("GET /crm/x HTTP/1.1\r\nHost: x\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: c1\r\nx-big: {big}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        raw.starts_with("HTTP/1.1 431"),
        "one huge header: {raw:.200}"
    );
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let raw = raw_request(
        h.listen,
        &format!("GET /crm/x HTTP/1.1\r\nHost: x\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: c1\r\n{many}Connection: close\r\n\r\n"),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 431"), "200 headers: {raw:.200}");
    assert!(up.seen().is_empty(), "nothing oversized was forwarded");
    let ok = get_call(&client(), url(&h, "/crm/x"), "c1").await;
    assert_eq!(ok.status(), 200, "still serving");
}

/// Malformed HTTP gets a 4xx (400 from the parser, or the route's refusal
/// before any body is read) or a closed connection, is never forwarded, and
/// leaves the proxy serving.
#[tokio::test]
async fn malformed_http_is_refused() {
    let (_d, up, h) = setup(HEADERS).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    for raw in [
        "GARBAGE\r\n\r\n",
        "GET /crm/x HTTP/9.9\r\nHost: x\r\n\r\n",
        "GET /crm/x HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
        "GET /crm/x HTTP/1.1\r\nHost: x\r\nx-call-id: c1\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello",
        "GET /crm/x HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        "GET /crm/\u{0}x HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let got = raw_request(h.listen, raw).await;
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 4"),
            "{raw:?} → {got:.120}"
        );
    }
    assert!(up.seen().is_empty(), "nothing malformed was forwarded");
    let ok = get_call(&client(), url(&h, "/crm/x"), "c1").await;
    assert_eq!(ok.status(), 200, "still serving");
}

/// An error answered before anything is forwarded (here the route key)
/// leaves a keep-alive connection serving, as nginx and hyper do: the
/// platform's next tool call does not pay for a new connection. A body
/// still on its way is not waited for: answer, then close.
#[tokio::test]
async fn an_error_before_forwarding_keeps_the_connection() {
    let (_d, up, h) = setup(HEADERS).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let req = |key: &str, extra: &str| {
        format!(
            "POST /crm/x HTTP/1.1\r\nhost: x\r\nx-call-id: c1\r\nx-headgate-key: {key}\r\n{extra}content-length: 2\r\n\r\n{{}}"
        )
    };
    let pipelined = [
        req("wrong-key", ""),
        req(ROUTE_KEY, ""),
        req("wrong-key", ""),
        req(ROUTE_KEY, "connection: close\r\n"),
    ]
    .concat();
    let got = raw_request(h.listen, &pipelined).await;
    let statuses: Vec<&str> = (got.match_indices("HTTP/1.1 "))
        .map(|(i, _)| &got[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["401", "200", "401", "200"], "{got:.600}");
    assert_eq!(up.seen().len(), 2);

    let cut = "POST /crm/x HTTP/1.1\r\nhost: x\r\nx-call-id: c1\r\nx-headgate-key: wrong\r\ncontent-length: 100\r\n\r\n{";
    let started = Instant::now();
    let got = raw_request(h.listen, cut).await;
    assert!(got.starts_with("HTTP/1.1 401"), "{got:.200}");
    assert_eq!(got.matches("HTTP/1.1 ").count(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed, not waited on"
    );
}
