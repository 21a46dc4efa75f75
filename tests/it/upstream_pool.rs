//! The pool of connections to `http://` upstreams, against a raw TCP
//! upstream that counts its connections and misbehaves on purpose: reuse,
//! upstreams that close idle connections, `Connection: close`, and a client
//! that walks away mid-response.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the raw upstream ends each exchange.
#[derive(Clone, Copy)]
enum Mode {
    /// Keep the connection for the next request.
    KeepAlive,
    /// Answer, then close the socket without saying so (an idle timeout of 0).
    CloseSilently,
    /// Answer with `Connection: close`, then close.
    ConnectionClose,
    /// Send the head and half the body, then hold the connection open.
    Stall,
}

struct Raw {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Every request head received, in order.
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A one-request-at-a-time HTTP/1.1 upstream; the response body names the
/// request path and the connection number, so a crossed wire shows.
async fn raw_upstream(mode: Mode) -> Raw {
    raw_upstream_on("127.0.0.1:0", mode).await
}

async fn raw_upstream_on(bind: &str, mode: Mode) -> Raw {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, hs) = (connections.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let hs = hs.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Read one request head (the tests send no bodies).
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    hs.lock().unwrap().push(head);
                    let body = format!("{path} on connection {n}");
                    let close = matches!(mode, Mode::ConnectionClose);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n",
                        if matches!(mode, Mode::Stall) {
                            body.len() * 2
                        } else {
                            body.len()
                        },
                        if close { "connection: close\r\n" } else { "" },
                    );
                    if s.write_all(resp.as_bytes()).await.is_err()
                        || s.write_all(body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                    match mode {
                        Mode::KeepAlive => {}
                        Mode::CloseSilently | Mode::ConnectionClose => return,
                        Mode::Stall => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Raw {
        addr,
        connections,
        heads,
    }
}

/// One worker: these tests count the connections of one pool, and each
/// worker has a pool of its own (`workers_keep_their_own_pools` below).
const MAIN: &str = "builtin_echo = false\nworkers = 1\n[timeouts]\nresponse_headers = \"2s\"\nconnect = \"1s\"\nidle = \"5s\"\n";

async fn through(mode: Mode) -> (tempfile::TempDir, Raw, headgate::internals::proxy::Running) {
    let raw = raw_upstream(mode).await;
    let authority = raw.addr.to_string();
    through_to(raw, &authority).await
}

/// headgate with route `r` forwarding to `http://<authority>/base`.
async fn through_to(
    raw: Raw,
    authority: &str,
) -> (tempfile::TempDir, Raw, headgate::internals::proxy::Running) {
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://{authority}/base"),
        "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    write_config(dir.path(), MAIN, &[("r", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t1"}}})).await;
    (dir, raw, h)
}

async fn get(
    c: &reqwest::Client,
    h: &headgate::internals::proxy::Running,
    i: usize,
) -> (u16, String) {
    let r = get_call(c, format!("http://{}/r/item/{i}", h.listen), "c1").await;
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The TCP keepalive time of this process's connection to `peer` (headgate
/// runs in process), if it has one with keepalive on.
#[allow(unsafe_code)]
fn keepalive_to(peer: std::net::SocketAddr) -> Option<Duration> {
    use std::os::fd::BorrowedFd;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // SAFETY: the descriptor is only queried (getpeername, getsockopt);
        // if another test closed it meanwhile, the query fails and it is
        // skipped. Nothing is read from or written to it, nor closed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        if sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer) {
            return sock
                .keepalive()
                .ok()
                .filter(|on| *on)
                .and_then(|_| sock.tcp_keepalive_time().ok());
        }
    }
    None
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let (_d, raw, h) = through(Mode::KeepAlive).await;
    let c = client();
    for i in 0..20 {
        let (status, body) = get(&c, &h, i).await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("/base/item/{i} on connection 1"));
    }
    assert_eq!(raw.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        keepalive_to(raw.addr),
        Some(headgate::internals::net::client::TCP_KEEPALIVE),
        "the pooled connection probes a silent upstream"
    );
    // Origin-form request line, the upstream's own Host, the token injected.
    let heads = raw.heads.lock().unwrap().clone();
    let first = heads[0].to_ascii_lowercase();
    assert!(
        first.starts_with("get /base/item/0 http/1.1\r\n"),
        "{first}"
    );
    assert!(
        first.contains(&format!("\r\nhost: {}\r\n", raw.addr)),
        "{first}"
    );
    assert!(
        first.contains("\r\nauthorization: bearer t1\r\n"),
        "{first}"
    );
}

#[tokio::test]
async fn an_upstream_that_closes_idle_connections_costs_no_request() {
    for mode in [Mode::CloseSilently, Mode::ConnectionClose] {
        let (_d, raw, h) = through(mode).await;
        let c = client();
        for i in 0..10 {
            let (status, body) = get(&c, &h, i).await;
            assert_eq!(status, 200, "request {i}: {body}");
            assert!(body.starts_with(&format!("/base/item/{i} on connection")));
            // Let the close reach the pooled connection, as between calls.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(raw.connections.load(Ordering::SeqCst), 10);
    }
}

#[tokio::test]
async fn a_connection_left_mid_response_is_not_reused() {
    let (_d, raw, h) = through(Mode::Stall).await;
    // The client reads the head, then walks away from the half-sent body.
    let r = get_call(&client(), format!("http://{}/r/item/0", h.listen), "c1").await;
    assert_eq!(r.status(), 200);
    drop(r);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The next request must not be written behind the unfinished response.
    let r = get_call(&client(), format!("http://{}/r/item/1", h.listen), "c1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(raw.connections.load(Ordering::SeqCst), 2);
    assert_eq!(raw.heads.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_answer() {
    let (_d, raw, h) = through(Mode::KeepAlive).await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (c, listen) = (c.clone(), h.listen);
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let n = i * 100 + round;
                let r = get_call(&c, format!("http://{listen}/r/item/{n}"), "c1").await;
                let body = r.text().await.unwrap();
                assert!(
                    body.starts_with(&format!("/base/item/{n} on")),
                    "{n}: {body}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Connections were reused: at most one per concurrent client.
    let opened = raw.connections.load(Ordering::SeqCst);
    assert!(
        opened <= 64,
        "{opened} connections for 64 concurrent clients"
    );
    assert_eq!(raw.heads.lock().unwrap().len(), 320);
}

/// One request through a route to `http://<authority>/base` reaches `raw`,
/// with `authority` as its Host.
async fn one_request_reaches(raw: Raw, authority: &str) {
    let (_d, raw, h) = through_to(raw, authority).await;
    let (status, body) = get(&client(), &h, 1).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "/base/item/1 on connection 1")
    );
    let head = raw.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        head.contains(&format!("\r\nhost: {authority}\r\n")),
        "{head}"
    );
}

#[tokio::test]
async fn upstreams_by_name_and_by_ipv6_literal() {
    // A name that resolves to more than one address (::1 and 127.0.0.1 on
    // most machines): every address is tried, whichever the upstream is on.
    let raw = raw_upstream(Mode::KeepAlive).await;
    let authority = format!("localhost:{}", raw.addr.port());
    one_request_reaches(raw, &authority).await;

    // `[::1]` is connected to as `::1`, and sent as `[::1]:port` in Host.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine: the [::1] half is not run");
        return;
    }
    let raw = raw_upstream_on("[::1]:0", Mode::KeepAlive).await;
    let authority = raw.addr.to_string();
    one_request_reaches(raw, &authority).await;
}

/// With several workers, each has its own pool: sequential requests on
/// fresh client connections (which the kernel spreads over the workers'
/// sockets) are all answered, over one upstream connection per worker
/// that served them, never more.
#[tokio::test]
async fn workers_keep_their_own_pools() {
    let raw = raw_upstream(Mode::KeepAlive).await;
    let dir = tempfile::tempdir().unwrap();
    let r = route(
        &format!("http://{}/base", raw.addr),
        "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n",
    );
    let main = MAIN.replace("workers = 1", "workers = 4");
    write_config(dir.path(), &main, &[("r", &r)]);
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t1"}}})).await;
    for i in 0..40 {
        // A new client each time: a new connection, on whichever worker.
        let (status, body) = get(&client(), &h, i).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(body.starts_with(&format!("/base/item/{i} on connection")));
    }
    let opened = raw.connections.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&opened),
        "{opened} upstream connections for 40 requests over 4 workers"
    );
}
