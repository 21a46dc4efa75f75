//! HTTP/1.1 over TLS on the forwarding core (issue 40): `https://`
//! upstreams spoken to over HTTP/1.1 on pooled TLS connections, TLS
//! clients served by the core (HTTP/2 clients still by hyper), and a TLS
//! client that goes away cancelling its request upstream, whether it sends
//! `close_notify` or just closes.

use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN_ROUTE: &str = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n";

/// headgate with `main` and route `secure` to `upstream`, `front`'s
/// certificate trusted, session `c1` registered.
async fn proxy(
    main: &str,
    upstream: &str,
    front: Option<&TlsFront>,
) -> (tempfile::TempDir, headgate::internals::proxy::Running) {
    let dir = tempfile::tempdir().unwrap();
    let mut main = main.to_string();
    if let Some(front) = front {
        std::fs::write(dir.path().join("ca.pem"), &front.ca_pem).unwrap();
        main.push_str("ca_file = \"ca.pem\"\n");
    }
    let r = route(upstream, TOKEN_ROUTE);
    write_config(dir.path(), &main, &[("secure", &r)]);
    let h = start(dir.path()).await;
    let vars = json!({"call": {"metadata": {"token": "over-tls"}}});
    put_session(&h, "c1", vars).await;
    (dir, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_gets_http11_on_one_verified_reused_connection() {
    let up = upstream().await;
    let front = tls_front(up.addr.unwrap(), &[b"h2", b"http/1.1"]).await;
    let upstream_url = format!("{}/mcp", front.url());
    // One worker: upstream pools are per worker, so a second connection
    // from the client (as a loaded machine sometimes brings) could land on
    // the other worker, whose pool has none yet: a second handshake, by
    // design.
    let (_dir, h) = proxy("workers = 1\n[tls]\n", &upstream_url, Some(&front)).await;
    let c = client();
    let url = format!("http://{}/secure", h.listen);
    for _ in 0..5 {
        let resp = (c.post(&url).header("x-headgate-key", ROUTE_KEY))
            .header("x-call-id", "c1")
            .body("{\"jsonrpc\":\"2.0\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        // Read to its end, so the client reuses its connection.
        resp.bytes().await.unwrap();
    }
    // An event stream over TLS arrives event by event.
    let started = Instant::now();
    let mut resp = get_call(&c, format!("{url}/sse?n=3&gap_ms=250"), "c1").await;
    let mut first = None;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        first.get_or_insert((started.elapsed(), chunk));
    }
    let total = started.elapsed();
    let (first_at, first) = first.expect("no event");
    assert!(String::from_utf8_lossy(&first).contains("id: 0"));
    assert!(
        first_at + Duration::from_millis(350) < total,
        "the first event came at {first_at:?}, the stream ended at {total:?}"
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 6);
    for s in &seen {
        assert_eq!(s.version, http::Version::HTTP_11, "{}", s.path);
        assert_eq!(s.headers["authorization"], "Bearer over-tls");
        assert_eq!(
            s.headers["host"],
            format!("localhost:{}", front.addr.port())
        );
    }
    assert_eq!(seen[0].body_len, 17);
    assert_eq!(front.handshakes(), 1, "the connection was not reused");
    h.shutdown().await;

    // Without the CA the certificate is refused: 502, nothing sent.
    let (_dir2, h2) = proxy("", &upstream_url, None).await;
    let resp = get_call(&c, format!("http://{}/secure", h2.listen), "c1").await;
    assert_eq!(
        status_and_code(resp).await,
        (502, "upstream.unreachable".into())
    );
    assert_eq!(
        up.seen().len(),
        6,
        "a request went to an unverified upstream"
    );
    h2.shutdown().await;
}

/// HTTPS on both sides: an HTTP/1.1 client's requests, on one kept-alive
/// TLS connection, reach an `https://` upstream over HTTP/1.1 (the core
/// served them: hyper's path lets ALPN pick h2 upstream); an h2 client is
/// still served, by hyper, over h2 to the same upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_are_served_by_the_core_and_h2_ones_by_hyper() {
    let up = upstream().await;
    let front = tls_front(up.addr.unwrap(), &[b"h2", b"http/1.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let root = listener_cert(dir.path());
    std::fs::write(dir.path().join("ca.pem"), &front.ca_pem).unwrap();
    let main = format!("{LISTENER_TLS}ca_file = \"ca.pem\"\n");
    let r = route(&format!("{}/mcp", front.url()), TOKEN_ROUTE);
    write_config(dir.path(), &main, &[("secure", &r)]);
    let h = start(dir.path()).await;
    put_session(
        &h,
        "c1",
        json!({"call": {"metadata": {"token": "over-tls"}}}),
    )
    .await;

    let tls = tls_connect(h.listen, client_config(&root, &[b"http/1.1"])).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = vec![b'x'; 10 << 10];
    for (method, body) in [("GET", vec![]), ("POST", body), ("GET", vec![])] {
        let req = hyper::Request::builder()
            .method(method)
            .uri("/secure/tools")
            .header("host", "localhost")
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "c1")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        // Kept alive: the same connection is ready for the next request.
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_11);
        resp.into_body().collect().await.unwrap();
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].body_len, 10 << 10);
    for s in &seen {
        assert_eq!(s.version, http::Version::HTTP_11);
        assert_eq!(s.headers["authorization"], "Bearer over-tls");
        assert_eq!(s.headers["x-forwarded-proto"], "https");
    }

    let tls = tls_connect(h.listen, client_config(&root, &[b"h2"])).await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!(
            "https://localhost:{}/secure/tools",
            h.listen.port()
        ))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "c1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, http::Version::HTTP_2)
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        seen[3].version,
        http::Version::HTTP_2,
        "hyper's client, by ALPN"
    );
    h.shutdown().await;
}

/// A TLS client that gives up (with `close_notify`, or closing the TCP
/// connection without it) while its call waits, or while its event stream
/// is open: the upstream request is closed within 0.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_gives_up_closes_the_upstream_request() {
    let sse: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
f\r\ndata: started\n\n\r\n";
    for (what, head) in [("a waiting call", &b""[..]), ("an event stream", sse)] {
        for notify in [true, false] {
            let (up, mut ended) = crate::upstream_faults::holding_upstream(head).await;
            let dir = tempfile::tempdir().unwrap();
            let root = listener_cert(dir.path());
            let r = route(&format!("http://{up}"), TOKEN_ROUTE);
            write_config(dir.path(), LISTENER_TLS, &[("secure", &r)]);
            let h = start(dir.path()).await;
            put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
            let mut tls = tls_connect(h.listen, client_config(&root, &[b"http/1.1"])).await;
            let req = format!(
                "POST /secure/x HTTP/1.1\r\nHost: p\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: c1\r\nContent-Length: 2\r\n\r\n{{}}"
            );
            tls.write_all(req.as_bytes()).await.unwrap();
            if !head.is_empty() {
                let mut first = vec![0u8; 1024];
                let n = tls.read(&mut first).await.unwrap();
                assert!(
                    String::from_utf8_lossy(&first[..n]).contains("200"),
                    "{what}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let closed = Instant::now();
            if notify {
                tls.shutdown().await.unwrap();
            }
            drop(tls);
            let seen = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await;
            let at = seen
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("{what} (close_notify {notify}): never ended upstream"));
            let after = at.saturating_duration_since(closed);
            assert!(
                after < Duration::from_millis(500),
                "{what} (close_notify {notify}): ended upstream {after:?} later"
            );
            h.shutdown().await;
        }
    }
}
