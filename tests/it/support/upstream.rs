//! A recording upstream (what it received, SSE on demand) and a generic
//! loopback HTTP server for mock upstreams and platform APIs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body_len: usize,
    pub version: http::Version,
}

#[derive(Clone, Default)]
pub struct Upstream {
    pub addr: Option<SocketAddr>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Monotonic origin for SSE stamps.
    pub epoch: Option<Instant>,
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> UpBody {
    Full::new(s.into()).boxed()
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

/// Starts the recording upstream. Paths:
/// - `/sse?n=N&gap_ms=M`: N events, M ms apart, each `data: <micros since epoch>`
/// - `/slow?ms=M`: headers after M ms
/// - `/status/CODE`: that status (401 adds `WWW-Authenticate`)
/// - anything else: 200 with `{"ok":true}`; the body is read and counted.
pub async fn upstream() -> Upstream {
    let epoch = Instant::now();
    let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
    let log = seen.clone();
    let addr = http_server(move |req| serve_up(req, log.clone(), epoch)).await;
    Upstream {
        addr: Some(addr),
        seen,
        epoch: Some(epoch),
    }
}

/// Serves `handler` (HTTP/1.1 and h2c) on a free loopback port until the
/// test ends: the mock upstreams and platform APIs of the tests.
pub async fn http_server<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn param(q: Option<&str>, name: &str, default: u64) -> u64 {
    q.unwrap_or("")
        .split('&')
        .find_map(|p| {
            p.strip_prefix(&format!("{name}="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(default)
}

async fn serve_up(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    epoch: Instant,
) -> Response<UpBody> {
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|c| c.to_bytes().len())
        .unwrap_or(0);
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: parts.headers.clone(),
        body_len,
        version: parts.version,
    });
    let q = query.as_deref();
    if path.ends_with("/sse") {
        let n = param(q, "n", 5);
        let gap = param(q, "gap_ms", 20);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for i in 0..n {
                let stamp = epoch.elapsed().as_micros();
                let ev = format!("id: {i}\ndata: {stamp}\n\n");
                if tx.send(Ok(Frame::data(Bytes::from(ev)))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
        });
        let stream = tokio_stream_from(rx);
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        if let Some(sid) = parts.headers.get("mcp-session-id") {
            r.headers_mut().insert("mcp-session-id", sid.clone());
        }
        return r;
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_millis(param(q, "ms", 1000))).await;
    }
    if let Some(code) = path
        .rsplit_once("/status/")
        .and_then(|(_, c)| c.parse::<u16>().ok())
    {
        let mut r = Response::new(full("{}"));
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        if code == 401 {
            r.headers_mut()
                .insert("www-authenticate", "Bearer realm=\"crm\"".parse().unwrap());
        }
        return r;
    }
    let mut r = Response::new(full(r#"{"ok":true}"#));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("connection", "x-upstream-hop".parse().unwrap());
    r.headers_mut()
        .insert("x-upstream-hop", "1".parse().unwrap());
    if let Some(sid) = parts.headers.get("mcp-session-id") {
        r.headers_mut().insert("mcp-session-id", sid.clone());
    }
    r
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
