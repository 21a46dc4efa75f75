//! Connections to plain-HTTP upstreams: HTTP/1.1, kept alive and pooled per
//! authority, driven through hyper's connection API directly.
//!
//! Why not the general client (`super::client`)? On the hot path its pool
//! costs more than the rest of the request phases together (checkout keyed
//! by a SipHash of scheme and authority, a `Pooled` wrapper, connector
//! layers for TLS and ALPN). A proxy route talks to one upstream over
//! cleartext HTTP/1.1 in the common case, so that case gets a pool that is a
//! short list of idle connections behind a mutex (never held across an
//! `.await`). `https://` upstreams keep the general client (TLS, HTTP/2).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::response::Body;

use super::{POOL_IDLE_TIMEOUT as IDLE_TIMEOUT, POOL_MAX_IDLE as MAX_IDLE};

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection could not be opened in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The connection could not be opened.
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The exchange failed (reset, closed, bad response, request body error).
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// The pools of all plain-HTTP upstreams this process has talked to: one
/// set per public-listener worker, so a connection is only ever used by
/// the thread whose runtime drives it (no cross-thread wake-ups), plus one
/// for every other thread.
pub struct Upstreams {
    by_worker: Vec<RwLock<Hosts>>,
    connect_timeout: Duration,
}

/// One worker's pools, by upstream authority.
type Hosts = Vec<(Authority, Arc<Pool>)>;

thread_local! {
    /// The public-listener worker this thread is (0: none).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as public-listener worker `n` (from 1): its upstream
/// connections are its own.
pub fn set_worker(n: usize) {
    WORKER.with(|w| w.set(n));
}

/// Idle connections to one upstream, most recently used last.
struct Pool {
    idle: Mutex<Vec<Idle>>,
    /// Its `Host` header: the host, and the port unless it is 80.
    host: HeaderValue,
}

struct Idle {
    tx: SendRequest<Body>,
    since: Instant,
}

impl Upstreams {
    /// No connections yet, for `workers` workers; new ones give up after
    /// `connect_timeout`.
    pub fn new(connect_timeout: Duration, workers: usize) -> Self {
        Self {
            by_worker: (0..=workers).map(|_| RwLock::default()).collect(),
            connect_timeout,
        }
    }

    /// Sends `req` (origin-form URI; its `Host` header is set here) to
    /// `authority` over a pooled connection, or a new one. A request the
    /// pooled connection never got to write (it was closing) is sent again
    /// once on a new connection.
    pub async fn send(
        &self,
        authority: &Authority,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        let pool = self.pool(authority);
        req.headers_mut()
            .insert(http::header::HOST, pool.host.clone());
        let mut tx = match pool.checkout().await {
            Some(tx) => tx,
            None => self.connect(authority).await?,
        };
        let resp = match tx.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                Some(req) => {
                    tx = self.connect(authority).await?;
                    tx.send_request(req).await?
                }
                None => return Err(SendError::Http(e.into_error())),
            },
        };
        Ok(resp.map(|inner| PooledBody {
            inner,
            back: Some((tx, pool)),
        }))
    }

    fn pool(&self, authority: &Authority) -> Arc<Pool> {
        let found = |hosts: &[(Authority, Arc<Pool>)]| {
            hosts
                .iter()
                .find(|(a, _)| a == authority)
                .map(|(_, p)| p.clone())
        };
        let worker = WORKER.with(|w| w.get());
        let mine = self.by_worker.get(worker).unwrap_or(&self.by_worker[0]);
        if let Some(p) = found(&mine.read().unwrap_or_else(|e| e.into_inner())) {
            return p;
        }
        let mut hosts = mine.write().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = found(&hosts) {
            return p;
        }
        let host = match authority.port_u16() {
            Some(80) => authority.host(),
            _ => authority.as_str().rsplit('@').next().unwrap_or_default(),
        };
        let p = Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            host: HeaderValue::from_str(host).unwrap_or_else(|_| HeaderValue::from_static("")),
        });
        hosts.push((authority.clone(), p.clone()));
        p
    }

    async fn connect(&self, authority: &Authority) -> Result<SendRequest<Body>, SendError> {
        let stream = open(authority, self.connect_timeout).await?;
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}

impl Pool {
    /// The most recently used idle connection that is still open.
    async fn checkout(&self) -> Option<SendRequest<Body>> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if idle.since.elapsed() > IDLE_TIMEOUT || idle.tx.is_closed() {
                continue;
            }
            let mut tx = idle.tx;
            // Ready at once, or within the connection task's next turn after
            // the previous response ended; an error means it closed.
            if tx.ready().await.is_ok() {
                return Some(tx);
            }
        }
    }

    fn checkin(&self, tx: SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest are first: drop the expired ones while we hold the lock.
        let expired = idle
            .iter()
            .take_while(|i| now.duration_since(i.since) > IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { tx, since: now });
        }
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body that returns its connection to the pool
    /// once it has been read to the end (a body dropped early takes its
    /// connection with it: HTTP/1 cannot abandon half a response).
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        back: Option<(SendRequest<Body>, Arc<Pool>)>,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if http_body::Body::is_end_stream(&*this.inner) {
                give_back(this.back);
            }
        }
    }
}

/// The response was read to its end: its connection can take the next one.
fn give_back(back: &mut Option<(SendRequest<Body>, Arc<Pool>)>) {
    if let Some((tx, pool)) = back.take() {
        pool.checkin(tx);
    }
}

impl http_body::Body for PooledBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            give_back(this.back);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A new TLS connection to an `https://` upstream, TCP and handshake
/// within `timeout`, the certificate verified for the authority's host.
pub async fn open_tls(
    tls: &tokio_rustls::TlsConnector,
    authority: &Authority,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SendError> {
    let host = bare_host(authority);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
        SendError::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    let port = authority.port_u16().unwrap_or(443);
    let started = tokio::time::Instant::now();
    let tcp = open_at(host, port, timeout).await?;
    let left = timeout.saturating_sub(started.elapsed());
    tokio::time::timeout(left, tls.connect(name, tcp))
        .await
        .map_err(|_| SendError::ConnectTimeout)?
        .map_err(SendError::Connect)
}

/// A new TCP connection to a cleartext upstream, within `timeout`: no
/// Nagle delay, and TCP keep-alive probes (as the general client's
/// connector) so a host that vanished without closing is noticed, even
/// on a connection idle in a pool.
pub async fn open(authority: &Authority, timeout: Duration) -> Result<TcpStream, SendError> {
    open_at(
        bare_host(authority),
        authority.port_u16().unwrap_or(80),
        timeout,
    )
    .await
}

/// The authority's host as the resolver and a certificate name it:
/// `[::1]` is `::1`.
fn bare_host(authority: &Authority) -> &str {
    authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
}

async fn open_at(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, SendError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| SendError::ConnectTimeout)?
        .map_err(SendError::Connect)?;
    stream.set_nodelay(true).map_err(SendError::Connect)?;
    socket2::SockRef::from(&stream)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(super::client::TCP_KEEPALIVE))
        .map_err(SendError::Connect)?;
    Ok(stream)
}
