//! 10,000 concurrent keep-alive connections through the real binary: every
//! one is opened and held, every one gets its token injected, twice, with
//! no error, and the proxy's memory stays bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 10_000;

/// One request on an open connection; returns the status and the body.
async fn exchange(conn: &mut BufReader<TcpStream>, id: usize) -> std::io::Result<(u16, Vec<u8>)> {
    let req = format!(
        "GET /crm/tools HTTP/1.1\r\nHost: x\r\nx-headgate-key: {ROUTE_KEY}\r\nx-call-id: call-{}\r\n\r\n",
        id % 100
    );
    conn.get_mut().write_all(req.as_bytes()).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    conn.read_exact(&mut body).await?;
    Ok((status, body))
}

fn assert_no_errors(errors: &[String]) {
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_keep_alive_connections() {
    // The test holds 10,000 client sockets; `headgate serve` raises its own.
    let limit = headgate::internals::net::limits::raise_fd_limit();
    assert!(
        limit as usize > CONNECTIONS + 2_000,
        "the hard file limit ({limit}) is too low for {CONNECTIONS} connections"
    );
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n",
        &[(
            "crm",
            &route(
                &up.url(),
                "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"",
            ),
        )],
    );
    let mut served = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[(
            "RUST_LOG",
            "warn,headgate::proxy=info,headgate::proxy::doors::route=warn",
        )],
    );
    let pid = served.child.id();
    for i in 0..100 {
        let vars = serde_json::json!({"call": {"metadata": {"token": format!("tok-{i}")}}});
        let id = format!("call-{i}");
        let put = admin_call(&served, reqwest::Method::PUT, &id, Some(&vars)).await;
        assert_eq!(put, 204);
    }
    let rss_before = rss_kib(pid);
    let addr: SocketAddr = served.listen.parse().unwrap();

    // Open all 10,000 and keep them; each makes a first request as it opens,
    // at most 1,000 in flight at a time. `HG_TEST_IN_FLIGHT` sets fewer:
    // the RSS then counts less of the requests' buffers, which the
    // allocator keeps as its high-water mark (BENCHMARKS.md measures both).
    let in_flight = std::env::var("HG_TEST_IN_FLIGHT").ok();
    let in_flight = in_flight.and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let gate = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for id in 0..CONNECTIONS {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let mut conn = BufReader::new(TcpStream::connect(addr).await?);
            let first = exchange(&mut conn, id).await?;
            drop(permit);
            Ok::<_, std::io::Error>((conn, first))
        }));
    }
    let mut conns = Vec::with_capacity(CONNECTIONS);
    let mut errors = Vec::new();
    for (id, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok((conn, (200, body))) if body == br#"{"ok":true}"# => conns.push((id, conn)),
            Ok((_, (status, body))) => errors.push(format!(
                "call {id}: {status} {}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => errors.push(format!("call {id}: {e}")),
        }
    }
    assert_no_errors(&errors);
    assert_eq!(conns.len(), CONNECTIONS);
    let rss_held = rss_kib(pid);

    // All 10,000 still open: a second request on every one of them.
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for (id, mut conn) in conns {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            exchange(&mut conn, id).await.map(|r| (r, conn))
        }));
    }
    let mut held = Vec::with_capacity(CONNECTIONS);
    for t in tasks {
        match t.await.unwrap() {
            Ok(((200, _), conn)) => held.push(conn),
            Ok(((status, _), _)) => errors.push(format!("second request: {status}")),
            Err(e) => errors.push(format!("second request: {e}")),
        }
    }
    assert_no_errors(&errors);
    assert_eq!(held.len(), CONNECTIONS, "every connection was kept alive");

    // Every request carried its own session's token.
    let seen = up.seen();
    assert_eq!(seen.len(), 2 * CONNECTIONS);
    let wrong = seen
        .iter()
        .filter(|s| {
            let id = s.headers["x-call-id"]
                .to_str()
                .unwrap()
                .trim_start_matches("call-");
            s.headers["authorization"].to_str().unwrap() != format!("Bearer tok-{id}")
        })
        .count();
    assert_eq!(wrong, 0, "requests with the wrong token");

    eprintln!(
        "headgate RSS: {} MiB before, {} MiB holding {CONNECTIONS} connections",
        rss_before / 1024,
        rss_held / 1024
    );
    assert!(
        rss_held < 512 * 1024,
        "{} MiB for {CONNECTIONS} idle connections",
        rss_held / 1024
    );
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "headgate exited"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
