//! Faults: the upstream resets mid-stream, the resolver API hangs, the
//! store overflows under a flood of registrations. Each time the client gets
//! a clean answer and the proxy keeps serving.

use std::time::{Duration, Instant};

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEADERS: &str = "[headers]\nauthorization = \"Bearer << call.metadata.token >>\"\n";

/// An upstream that sends one SSE event and then drops the connection
/// without finishing the chunked body.
async fn dying_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(s);
            });
        }
    });
    addr
}

/// An API that accepts and never answers.
async fn hanging_api() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test]
async fn upstream_dying_mid_stream_ends_the_client_stream_and_the_proxy_keeps_serving() {
    let dying = dying_upstream().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "",
        &[
            ("dies", &route(&format!("http://{dying}/"), HEADERS)),
            ("ok", &route(&up.url(), HEADERS)),
        ],
    );
    let h = start(dir.path()).await;
    put_session(&h, "c1", json!({"call": {"metadata": {"token": "t"}}})).await;
    let c = client();
    let r = get_call(&c, format!("http://{}/dies/sse", h.listen), "c1").await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: 1\n\n");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                return true;
            }
        }
        false
    })
    .await
    .expect("the client stream hung after the upstream died");
    assert!(
        end,
        "a cut upstream stream must not look like a complete one"
    );
    for _ in 0..5 {
        let r = get_call(&c, format!("http://{}/ok", h.listen), "c1").await;
        assert_eq!(r.status(), 200, "the proxy keeps serving");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_hanging_resolver_api_is_cut_at_its_deadline() {
    let api = hanging_api().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "[resolver]\nurl = \"http://{api}/call/<< session.id >>\"\ntimeout = \"300ms\"\nnegative_ttl = \"1s\"\n"
    );
    write_config(
        dir.path(),
        &main,
        &[(
            "crm",
            &route(
                &up.url(),
                &format!("on_unknown_session = \"resolve\"\n{HEADERS}"),
            ),
        )],
    );
    let h = start(dir.path()).await;
    let c = client();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let req = c
            .get(format!("http://{}/crm", h.listen))
            .header("x-headgate-key", ROUTE_KEY)
            .header("x-call-id", "slow-call");
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 503);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "20 waiting callers took {took:?}; the deadline is 300 ms"
    );
    assert!(up.seen().is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_registrations_at_capacity_evicts_instead_of_failing() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "max_sessions = 200\n",
        &[("crm", &route(&up.url(), HEADERS))],
    );
    let h = start(dir.path()).await;
    let admin = h.admin;
    let listen = h.listen;
    // 2,000 registrations from 16 clients while calls keep flowing.
    let mut tasks = Vec::new();
    for w in 0..16 {
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut failures = 0;
            for i in 0..125 {
                let id = format!("flood-{w}-{i}");
                let r = c
                    .put(format!("http://{admin}/sessions/{id}"))
                    .json(&json!({"call": {"metadata": {"token": id}}}))
                    .send()
                    .await
                    .unwrap();
                failures += usize::from(r.status() != 204);
                let r = get_call(&c, format!("http://{listen}/crm"), &id).await;
                // Just registered: found unless already evicted by the flood.
                failures += usize::from(!matches!(r.status().as_u16(), 200 | 403));
            }
            failures
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            0,
            "no request failed for any other reason"
        );
    }
    // The store stayed within max_sessions.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let held: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("headgate_sessions "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        held <= 200.0,
        "{held} sessions held with max_sessions = 200"
    );
    // And it still serves a fresh registration.
    put_session(
        &h,
        "after",
        json!({"call": {"metadata": {"token": "fine"}}}),
    )
    .await;
    let r = get_call(&client(), format!("http://{listen}/crm"), "after").await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["authorization"], "Bearer fine");
    h.shutdown().await;
}
