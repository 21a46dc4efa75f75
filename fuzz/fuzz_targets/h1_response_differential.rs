//! The own HTTP/1.1 core's response framing against hyper's client, on
//! the same bytes (issue 19): where the own core reads a response (1xx
//! heads skipped, RFC 9112 §6.3 framing), hyper's client must read the
//! same status, header lines and body; where hyper refuses, the own core
//! must refuse too, unless its refusal is one of its deliberate
//! strictnesses (a malformed chunked body).
#![no_main]
use std::cell::RefCell;

use bytes::Bytes;
use headgate::net::h1::{self, Chunked, Framing, MAX_HEADERS};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, PartialEq, Eq)]
struct Read {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

#[derive(Debug)]
enum Verdict {
    Accepted(Read),
    Refused(&'static str),
    /// The bytes end before the response does, or it is not one this
    /// target compares (a 101).
    Skip,
}

const STRICTER: &[&str] = &[
    "chunk size with no digit",
    "bad byte in the chunk size",
    "bad byte in a chunk extension",
    "chunk size over 15 hex digits",
    "CRLF expected",
    "bare LF or NUL in a trailer",
    "trailer section too large",
    "malformed trailer field",
    // `3, 3`, which hyper reads as 3.
    "malformed Content-Length",
];

fn own(mut data: &[u8]) -> Verdict {
    loop {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match h1::parse_response(data, &mut storage, 64 << 10, false) {
            Ok(Some(h)) => h,
            Ok(None) => return Verdict::Skip,
            Err(r) => return Verdict::Refused(r.reason),
        };
        if head.status == 101 {
            return Verdict::Skip;
        }
        let rest = &data[head.len..];
        if head.status < 200 {
            data = rest;
            continue;
        }
        let body = match head.framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) if (n as usize) <= rest.len() => rest[..n as usize].to_vec(),
            Framing::Length(_) => return Verdict::Skip,
            Framing::Chunked => {
                let mut c = Chunked::new();
                let mut body = Vec::new();
                if let Err(e) = c.read(rest, |d| body.extend_from_slice(d)) {
                    return Verdict::Refused(e.0);
                }
                if !c.done() {
                    return Verdict::Skip;
                }
                body
            }
            Framing::UntilClose => rest.to_vec(),
        };
        let mut headers: Vec<(String, Vec<u8>)> = (head.headers.iter())
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        headers.sort();
        return Verdict::Accepted(Read {
            status: head.status,
            headers,
            body,
        });
    }
}

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
    );
}

/// hyper's client reading `data` as the answer to `GET /`.
fn hyper_reads(data: &[u8]) -> Option<Read> {
    let data = data.to_vec();
    RT.with_borrow(|rt| {
        rt.block_on(async {
            let (client, mut server) = tokio::io::duplex(1 << 20);
            let upstream = async move {
                let mut req = [0u8; 4096];
                let _ = server.read(&mut req).await;
                let _ = server.write_all(&data).await;
                let _ = server.shutdown().await;
                // Hold the read side open until the client is done.
                let mut sink = Vec::new();
                let _ = server.read_to_end(&mut sink).await;
            };
            let exchange = async move {
                let (mut tx, conn) = hyper::client::conn::http1::Builder::new()
                    .max_buf_size(64 << 10)
                    .handshake::<_, Empty<Bytes>>(TokioIo::new(client))
                    .await
                    .ok()?;
                tokio::spawn(conn);
                let req = http::Request::get("/").body(Empty::new()).ok()?;
                let resp = tx.send_request(req).await.ok()?;
                let (parts, body) = resp.into_parts();
                let body = body.collect().await.ok()?.to_bytes().to_vec();
                let mut headers: Vec<(String, Vec<u8>)> = (parts.headers.iter())
                    .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect();
                headers.sort();
                Some(Read {
                    status: parts.status.as_u16(),
                    headers,
                    body,
                })
            };
            let timed = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                let (_, read) = tokio::join!(upstream, exchange);
                read
            });
            timed.await.ok().flatten()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 8 << 10 {
        return;
    }
    let mine = own(data);
    if matches!(mine, Verdict::Skip) {
        return;
    }
    let theirs = hyper_reads(data);
    match (mine, theirs) {
        (Verdict::Accepted(a), Some(b)) => assert_eq!(a, b, "both read it, differently"),
        (Verdict::Accepted(a), None) => panic!("own core reads what hyper refuses: {a:?}"),
        (Verdict::Refused(why), Some(b)) => assert!(
            STRICTER.contains(&why),
            "own core refuses ({why}) what hyper reads as {b:?}"
        ),
        (Verdict::Refused(_), None) | (Verdict::Skip, _) => {}
    }
});
