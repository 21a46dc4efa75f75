//! Request smuggling through the forwarding core (issue 39, hole 1): a
//! `Connection` header that lists a framing header is refused before
//! anything reaches the upstream, and every request the upstream parses
//! is exactly one the client sent, framed by headgate. Raw sockets against
//! the real binary and an upstream that parses bytes as a server would.

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEADERS: &str = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n";

/// A config dir with route `scoped` (key and injection) and `open`
/// (`inbound_auth = "none"`) to `up`; headgate serving it.
fn serve_routes(up: &str) -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let open = format!("upstream = \"{up}\"\ninbound_auth = \"none\"\n{HEADERS}");
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n",
        &[("scoped", &route(up, HEADERS)), ("open", &open)],
    );
    let s = serve(dir.path(), &FREE_PORTS, &[]);
    (dir, s)
}

/// Registers session `id` with token `token` on `s`'s admin API.
async fn register(s: &Served, id: &str, token: &str) {
    let body = serde_json::json!({"call": {"metadata": {"token": token}}});
    assert_eq!(
        admin_call(s, reqwest::Method::PUT, id, Some(&body)).await,
        204
    );
}

/// A POST to `path` whose `Connection` line is `connection`, carrying
/// `body` (a request of the attacker's) under its `Content-Length`.
fn attack(path: &str, connection: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: proxy\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: call-attacker\r\n\
Connection: {connection}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `req` over a new connection and reads one response back.
async fn exchange(addr: &str, req: &str) -> String {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut c).await
}

/// Reads one response (head and a `Content-Length` body) off `s`.
async fn read_response(s: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = (head.lines())
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return String::from_utf8_lossy(&got[..end + 4 + len]).into_owned();
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_connection_header_listing_framing_is_refused_and_nothing_reaches_the_upstream() {
    let up = raw_upstream().await;
    let (_dir, s) = serve_routes(&up.url());
    register(&s, "call-attacker", "tok-attacker").await;
    let inner = "GET /admin/../internal/secret HTTP/1.1\r\nHost: admin.internal\r\n\r\n";
    for path in ["/scoped/anything", "/open/anything"] {
        for connection in [
            "content-length",
            "keep-alive, Content-Length",
            "Transfer-Encoding",
            "close, host",
        ] {
            let raw = exchange(&s.listen, &attack(path, connection, inner)).await;
            assert!(
                raw.starts_with("HTTP/1.1 400"),
                "{path} {connection}: {raw}"
            );
            assert!(
                raw.contains("request.malformed"),
                "{path} {connection}: {raw}"
            );
        }
    }
    assert!(up.seen().is_empty(), "the upstream saw {:?}", up.seen());
}

#[tokio::test]
async fn the_next_callers_request_never_becomes_an_attackers_body() {
    let up = raw_upstream().await;
    let (_dir, s) = serve_routes(&up.url());
    for (id, tok) in [
        ("call-attacker", "tok-attacker"),
        ("call-victim", "tok-victim-secret"),
    ] {
        register(&s, id, tok).await;
    }
    // An unfinished inner request on a pooled upstream connection: were
    // the outer one framed by the client's list, the victim's request
    // would become its body.
    let inner = "POST /scoped/collect HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n";
    for _ in 0..3 {
        let raw = exchange(&s.listen, &attack("/scoped/a", "content-length", inner)).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
        let victim = format!(
            "POST /scoped/victim HTTP/1.1\r\nHost: proxy\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: call-victim\r\n\
Content-Length: 7\r\nConnection: close\r\n\r\nvictim!"
        );
        let raw = exchange(&s.listen, &victim).await;
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for r in &seen {
        assert_eq!(r.target, "/victim");
        assert_eq!(r.body, b"victim!");
        assert_eq!(r.all("authorization"), ["Bearer tok-victim-secret"]);
    }
}

#[tokio::test]
async fn each_client_request_is_exactly_one_upstream_request_framed_by_headgate() {
    let up = raw_upstream().await;
    let (_dir, s) = serve_routes(&up.url());
    register(&s, "call-1", "tok-1").await;
    let mut c = tokio::net::TcpStream::connect(s.listen.as_str())
        .await
        .unwrap();
    // Bodies that read as requests, an empty one, and `Connection` lines
    // listing ordinary hop-by-hop names: each one request upstream, its
    // length the body's.
    let bodies = [
        "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        String::new(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}".to_string(),
    ];
    for (i, b) in bodies.iter().enumerate() {
        let req = format!(
            "POST /scoped/r{i} HTTP/1.1\r\nHost: proxy\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: call-1\r\n\
Connection: keep-alive, x-hop\r\nx-hop: 1\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
        c.write_all(req.as_bytes()).await.unwrap();
        let resp = read_response(&mut c).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), bodies.len(), "{seen:?}");
    for (i, (r, b)) in seen.iter().zip(&bodies).enumerate() {
        assert_eq!(r.target, format!("/r{i}"));
        assert_eq!(r.body, b.as_bytes());
        assert_eq!(r.all("content-length"), [b.len().to_string()]);
        assert!(r.all("x-hop").is_empty(), "{r:?}");
    }
}

#[tokio::test]
async fn an_http11_request_without_host_is_refused() {
    let up = raw_upstream().await;
    let (_dir, s) = serve_routes(&up.url());
    let req = format!(
        "GET /scoped/x HTTP/1.1\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: call-1\r\n\r\n"
    );
    let raw = exchange(&s.listen, &req).await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("request.malformed"), "{raw}");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_204_is_relayed_without_content_length() {
    let up = raw_upstream_answering(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await;
    let (_dir, s) = serve_routes(&up.url());
    register(&s, "call-1", "tok-1").await;
    let req = format!(
        "DELETE /scoped/x HTTP/1.1\r\nHost: p\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: call-1\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_request(s.listen.parse().unwrap(), &req).await;
    assert!(raw.starts_with("HTTP/1.1 204"), "{raw}");
    assert!(
        !raw.to_ascii_lowercase().contains("content-length"),
        "{raw}"
    );
}

/// The client's `Forwarded` is replaced as its `X-Forwarded-*` are: the
/// upstream sees this hop's element alone (the peer is no trusted proxy).
#[tokio::test]
async fn the_clients_forwarded_header_is_replaced() {
    let up = raw_upstream().await;
    let (_dir, s) = serve_routes(&up.url());
    register(&s, "call-1", "tok-1").await;
    let req = format!(
        "GET /scoped/x HTTP/1.1\r\nHost: proxy.example\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: call-1\r\n\
Forwarded: for=203.0.113.9;host=admin.internal;proto=https\r\nforwarded: for=198.51.100.1\r\n\r\n"
    );
    let raw = exchange(&s.listen, &req).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let seen = up.seen();
    assert_eq!(
        seen[0].all("forwarded"),
        ["for=127.0.0.1;proto=http;host=\"proxy.example\""]
    );
}
