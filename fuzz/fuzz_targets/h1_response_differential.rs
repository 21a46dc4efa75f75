//! The own HTTP/1.1 core's response framing against hyper's client, on
//! the same bytes (issue 19): where the own core reads a response (1xx
//! heads skipped, RFC 9112 §6.3 framing), hyper's client must read the
//! same status, header lines and body; where hyper refuses, the own core
//! must refuse too, unless its refusal is one of its deliberate
//! strictnesses (a malformed chunked body).
#![no_main]
use bytes::Bytes;
use headgate::internals::net::h1::{self, Framing};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common/differential.rs"]
mod differential;
use differential::Verdict;

#[derive(Debug, PartialEq, Eq)]
struct Read {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

const STRICTER: &[&str] = &[
    // `3, 3`, which hyper reads as 3.
    "malformed Content-Length",
];

fn own(mut data: &[u8]) -> Verdict<Read> {
    loop {
        let mut storage = h1::storage();
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
            Framing::Chunked => match differential::dechunk(rest) {
                Ok(Some(body)) => body,
                Ok(None) => return Verdict::Skip,
                Err(why) => return Verdict::Refused(why),
            },
            Framing::UntilClose => rest.to_vec(),
        };
        let headers = differential::lines(head.headers.iter().map(|h| (h.name, h.value)));
        return Verdict::Accepted(Read {
            status: head.status,
            headers,
            body,
        });
    }
}

/// hyper's client reading `data` as the answer to `GET /`.
fn hyper_reads(data: &[u8]) -> Option<Read> {
    let data = data.to_vec();
    differential::run(async {
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
            let headers = differential::lines(
                parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_bytes())),
            );
            Some(Read {
                status: parts.status.as_u16(),
                headers,
                body,
            })
        };
        let (_, read) = tokio::join!(upstream, exchange);
        read
    })
}

fuzz_target!(|data: &[u8]| {
    differential::judge(data, own, hyper_reads, STRICTER);
});
