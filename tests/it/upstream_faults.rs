//! Requests the forwarding core must not lose (issue 40, "no request
//! lost"): a burst to a small HTTP/1.0 server with a listen backlog of 5,
//! and an HTTP/1.1 server that closes keep-alive connections idle for
//! 50 ms without saying so. Through the real binary.

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// headgate in front of `upstream`, route `r` (no key), session `call-1`.
async fn proxy_to(upstream: &str) -> (tempfile::TempDir, Served) {
    proxy_with(upstream, "").await
}

/// [`proxy_to`] with `main` as headgate.toml.
async fn proxy_with(upstream: &str, main: &str) -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let r = format!(
        "upstream = \"{upstream}\"\ninbound_auth = \"none\"\non_unknown_session = \"pass\"\n"
    );
    write_config(dir.path(), main, &[("r", &r)]);
    let s = serve(dir.path(), &FREE_PORTS, &[]);
    (dir, s)
}

/// A POST of a 2-byte body written as a client that sends head and body
/// separately does, on its own connection: the status line's code.
async fn post_in_two_writes(addr: &str) -> u16 {
    let Ok(mut c) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let head = "POST /r/x HTTP/1.1\r\nHost: p\r\nx-call-id: call-1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n";
    if c.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    if c.write_all(b"{}").await.is_err() {
        return 0;
    }
    let mut out = Vec::new();
    // Above headgate's deadlines below: delayed is not lost.
    let _ = tokio::time::timeout(Duration::from_secs(90), c.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The deadlines of nginx's defaults, with which nginx answered all 150.
/// A full backlog drops a burst's SYNs, and the kernel resends them all
/// together at 1, 3, 7 and 15 s, so how many the server admits within
/// headgate's default 5 s `connect` depends on how fast a loaded machine
/// runs its accept loop. A loaded CI run failed this test with the 5 s
/// default; `connect = "1500ms"` here shows how: `502
/// upstream.unreachable` at 1.5 s, the deadline doing its work. What this
/// test holds is what headgate itself controls: nothing reset or dropped.
const NGINX_DEADLINES: &str = "[timeouts]\nconnect = \"60s\"\nresponse_headers = \"60s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_server_with_a_backlog_of_5_loses_nothing() {
    let port = free_port();
    let _server = python_server("backlog_server.py", port, &[]).await;
    let upstream = format!("http://127.0.0.1:{port}");
    let (_dir, s) = proxy_with(&upstream, NGINX_DEADLINES).await;
    let mut ok = 0;
    for _ in 0..3 {
        let all = (0..50).map(|_| post_in_two_writes(&s.listen));
        let codes = futures_util::future::join_all(all).await;
        ok += codes.iter().filter(|c| **c == 200).count();
    }
    let log = s.log.lock().unwrap();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" status=200 "))
        .collect();
    assert_eq!(ok, 150, "{failed:#?}");
}

/// An HTTP/1.1 server that closes a keep-alive connection 50 ms after
/// its last response, and says nothing about it.
async fn closing_idle_server() -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                b.http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(50));
                let _ = b.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_idle_connections_loses_no_request() {
    let up = closing_idle_server().await;
    let (_dir, s) = proxy_to(&format!("http://{up}")).await;
    let c = client();
    let mut failed = Vec::new();
    for i in 0..150u64 {
        let r = c
            .post(format!("http://{}/r/x", s.listen))
            .header("x-call-id", "call-1")
            .body("{}")
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => {}
            other => failed.push((i, other.map(|r| r.status().as_u16()))),
        }
        // 40 to 60 ms apart: around the server's 50 ms.
        tokio::time::sleep(Duration::from_millis(40 + (i * 7) % 21)).await;
    }
    assert!(failed.is_empty(), "{failed:?}\n{}", s.log.lock().unwrap());
}

/// A server that answers one request per connection and closes the
/// connection when the next request arrives on it, answering nothing
/// (an idle connection closed just as a request reached it): each such
/// request is sent once more on a new connection, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_closed_as_the_request_arrives_is_retried_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                for answered in [true, false] {
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    got.clear();
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if answered {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        let _ = c.write_all(ok).await;
                    }
                }
                // The second request: closed unanswered.
            });
        }
    });
    let (_dir, s) = proxy_to(&format!("http://{up}")).await;
    let c = client();
    for i in 0..20 {
        let r = c
            .get(format!("http://{}/r/x", s.listen))
            .header("x-call-id", "call-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}: {}", s.log.lock().unwrap());
    }
    // The first on a fresh connection; each later one on a reused
    // connection twice (the closed attempt, then a new connection): 39,
    // a little fewer when the client's connection moved to the other
    // worker (whose pool had none to reuse).
    let seen = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!((30..=39).contains(&seen), "{seen}");
}

/// An upstream that answers with `head` (nothing, or a response head and
/// an event), then holds the connection: when it sees the connection end.
pub(crate) async fn holding_upstream(
    head: &'static [u8],
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<std::time::Instant>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = c.write_all(head).await;
                // Held: no answer (or no more events) until the end.
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = tx.send(std::time::Instant::now()).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_closes_the_upstream_request_at_once() {
    let sse: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
f\r\ndata: started\n\n\r\n";
    for (what, head) in [
        ("a call waiting for its answer", &b""[..]),
        ("an event stream", sse),
    ] {
        let (up, mut ended) = holding_upstream(head).await;
        let (_dir, s) = proxy_to(&format!("http://{up}")).await;
        let mut c = tokio::net::TcpStream::connect(&s.listen).await.unwrap();
        let req =
            "POST /r/x HTTP/1.1\r\nHost: p\r\nx-call-id: call-1\r\nContent-Length: 2\r\n\r\n{}";
        c.write_all(req.as_bytes()).await.unwrap();
        if !head.is_empty() {
            let mut first = vec![0u8; 1024];
            let n = c.read(&mut first).await.unwrap();
            assert!(
                String::from_utf8_lossy(&first[..n]).contains("200"),
                "{what}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let closed = std::time::Instant::now();
        drop(c);
        let seen = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await;
        let at = seen
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{what}: the upstream never saw the end"));
        let after = at.saturating_duration_since(closed);
        assert!(
            after < Duration::from_millis(500),
            "{what}: the upstream saw the end {after:?} later"
        );
    }
}

/// SIGTERM while an event stream is open and idle: the stream ends within
/// a second and `serve` exits, instead of the drain waiting out its
/// deadline for a stream that never ends by itself (both cores). A stream
/// still delivering goes on: `proxy::graceful_shutdown_lets_an_open_stream_finish`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_an_idle_event_stream_promptly() {
    let sse: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
f\r\ndata: started\n\n\r\n";
    let (up, mut ended) = holding_upstream(sse).await;
    let (_dir, mut s) = proxy_to(&format!("http://{up}")).await;
    let mut c = tokio::net::TcpStream::connect(&s.listen).await.unwrap();
    let req = "POST /r/x HTTP/1.1\r\nHost: p\r\nx-call-id: call-1\r\nContent-Length: 2\r\n\r\n{}";
    c.write_all(req.as_bytes()).await.unwrap();
    let mut first = vec![0u8; 1024];
    let n = c.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("data: started"));
    let pid = s.child.id().to_string();
    let signalled = std::time::Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The client's stream ends, the upstream request is closed, the
    // process exits: within the second of grace an idle stream gets (the
    // drain's deadline is 30 s).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the stream was not ended");
    let seen = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await;
    assert!(
        seen.ok().flatten().is_some(),
        "the upstream request stayed open"
    );
    let exited = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if s.child.try_wait().unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(exited.is_ok(), "serve did not exit");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
}
