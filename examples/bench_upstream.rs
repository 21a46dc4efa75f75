//! The upstream for `bench/load.sh`: answers a small static JSON body and
//! checks that every request carries the right token for its call
//! (`Authorization: Bearer tok-<x-call-id>`), counting mismatches.
//! `GET /_stats` returns `{"ok":N,"mismatch":M}`; `GET /sse?n=N&gap_ms=M`
//! streams N events stamped with the sender's clock in nanoseconds.
//! `POST /token` is a token endpoint for the credential row: an RFC 8693
//! exchange of the session's `subject_token=tok-call-N` answers the access
//! token `tok-call-N` for the same caller, so the checked token is the
//! same as a session's.
//!
//! `cargo run --release --example bench_upstream -- 127.0.0.1:18000`;
//! with a PEM certificate chain and key after the address it serves
//! HTTPS (ALPN `http/1.1`, as every proxy in the comparison speaks to it).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    mismatch: AtomicU64,
}

/// The token endpoint: `tok-<caller>` for an hour, for the subject token
/// `tok-<caller>` (or `<caller>`).
async fn token(req: Request<Incoming>) -> Response<Body> {
    let form = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form = String::from_utf8_lossy(&form);
    let subject = form
        .split('&')
        .find_map(|p| p.strip_prefix("subject_token="))
        .unwrap_or("");
    let subject = subject.strip_prefix("tok-").unwrap_or(subject);
    let body = format!(
        "{{\"access_token\":\"tok-{subject}\",\"token_type\":\"Bearer\",\"expires_in\":3600,\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\"}}"
    );
    Response::new(Full::new(Bytes::from(body)).boxed())
}

/// Wall-clock nanoseconds: the measuring client runs on the same machine
/// and reads the same clock, so arrival minus stamp is the relay latency.
fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

async fn handle(req: Request<Incoming>, stats: Arc<Stats>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path.ends_with("/_stats") {
        let body = format!(
            "{{\"ok\":{},\"mismatch\":{}}}",
            stats.ok.load(Ordering::Relaxed),
            stats.mismatch.load(Ordering::Relaxed)
        );
        return Response::new(Full::new(Bytes::from(body)).boxed());
    }
    if path == "/token" {
        return token(req).await;
    }
    let id = req
        .headers()
        .get("x-call-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let good = !id.is_empty() && auth.strip_prefix("Bearer tok-") == Some(id);
    if good {
        stats.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.mismatch.fetch_add(1, Ordering::Relaxed);
    }
    if path.ends_with("/sse") {
        let q = req.uri().query().unwrap_or("").to_string();
        let get = |k: &str, d: u64| {
            q.split('&')
                .find_map(|p| {
                    p.strip_prefix(&format!("{k}="))
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(d)
        };
        let (n, gap) = (get("n", 300), get("gap_ms", 5));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(8);
        tokio::spawn(async move {
            for i in 0..n {
                let ev = format!("id: {i}\ndata: {}\n\n", now_ns());
                if tx.send(Ok(Frame::data(Bytes::from(ev)))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
        });
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert(
            "content-type",
            "text/event-stream"
                .parse()
                .unwrap_or(http::HeaderValue::from_static("text/event-stream")),
        );
        r.headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-cache"));
        return r;
    }
    let mut r = Response::new(
        Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#,
        ))
        .boxed(),
    );
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18000".into());
    let tls = match (std::env::args().nth(2), std::env::args().nth(3)) {
        (Some(cert), Some(key)) => Some(acceptor(&cert, &key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let stats = Arc::new(Stats::default());
    eprintln!("bench upstream on {addr} (TLS: {})", tls.is_some());
    loop {
        let (s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        let stats = stats.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let stats = stats.clone();
                async move { Ok::<_, Infallible>(handle(req, stats).await) }
            });
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(s), svc).await;
                }
                Some(tls) => {
                    if let Ok(s) = tls.accept(s).await {
                        let _ = http.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
            }
        });
    }
}

/// TLS with the PEM chain in `cert` and key in `key`, ALPN `http/1.1`.
fn acceptor(cert: &str, key: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(&e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
