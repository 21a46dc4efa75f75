//! An upstream that reads the bytes headgate sends as an HTTP/1.1 server
//! would, one request after another on each connection, and records every
//! request it parsed: so a test can count exactly what the upstream saw
//! (one request per client request, or a smuggled second one).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the upstream parsed it.
#[derive(Debug, Clone)]
pub struct RawSeen {
    /// The request line's target.
    pub target: String,
    /// Header lines (name lowercase, value), in order.
    pub headers: Vec<(String, String)>,
    /// The body, as framed by its `Content-Length`.
    pub body: Vec<u8>,
}

impl RawSeen {
    /// Every value of header `name` (lowercase).
    pub fn all(&self, name: &str) -> Vec<&str> {
        (self.headers.iter())
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The recording upstream: its address and what it parsed.
#[derive(Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<RawSeen>>>,
}

impl RawUpstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<RawSeen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Starts it: every request parsed is answered `200` with a 2-byte body,
/// keep-alive; bytes that are no request close the connection.
pub async fn raw_upstream() -> RawUpstream {
    raw_upstream_answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await
}

/// [`raw_upstream`] answering every request with `answer`, as written.
pub async fn raw_upstream_answering(answer: &'static [u8]) -> RawUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<RawSeen>>> = Default::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    while let Some((req, used)) = parse(&buf) {
                        buf.drain(..used);
                        log.lock().unwrap().push(req);
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    RawUpstream { addr, seen }
}

/// The request at the start of `buf` and its length, once all of it is in.
fn parse(buf: &[u8]) -> Option<(RawSeen, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).ok()? else {
        return None;
    };
    let headers: Vec<(String, String)> = (req.headers.iter())
        .map(|h| {
            let v = String::from_utf8_lossy(h.value).into_owned();
            (h.name.to_ascii_lowercase(), v)
        })
        .collect();
    let length: usize = (headers.iter())
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < len + length {
        return None;
    }
    let seen = RawSeen {
        target: req.path.unwrap_or_default().to_string(),
        headers,
        body: buf[len..len + length].to_vec(),
    };
    Some((seen, len + length))
}
