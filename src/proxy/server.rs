//! Accept loops for both listeners: HTTP/1.1 and h2c (auto-detected), or
//! HTTPS with ALPN on the public one; a header read timeout against
//! slowloris, and graceful shutdown.
//!
//! The public listener is served by `workers` threads, each with its own
//! current-thread runtime, `SO_REUSEPORT` socket and upstream pool: a
//! connection, its upstream connection and every task of its requests stay
//! on one thread (nginx's shape; no work-stealing, no cross-thread
//! wake-ups). The admin listener runs on the caller's runtime.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::App;
use super::doors::{
    self,
    admin::{self, AdminCtx},
};
use super::exchange::Peer;
use super::lane;
use crate::config::server::Core;
use crate::net::h1::rewind::Rewind;

pub(super) struct Listeners {
    /// The public listener's sockets, one per worker (`SO_REUSEPORT`).
    pub public: Vec<std::net::TcpListener>,
    pub admin: TcpListener,
    /// HTTPS on the public listener (`[tls] cert_file`).
    pub tls: Option<TlsAcceptor>,
}

fn builder(header_read: Duration) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .max_buf_size(64 << 10);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 << 10);
    b
}

/// What every worker shares.
#[derive(Clone)]
struct Shared {
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    /// `max_connections`, across all workers.
    slots: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    deadline: Duration,
    header_read: Duration,
}

/// Runs the workers on their threads and the admin listener here, until
/// `shutdown`; then drains both.
pub(super) async fn run(
    listeners: Listeners,
    workers: Vec<tokio::runtime::Runtime>,
    app: Arc<App>,
    admin_ctx: Arc<AdminCtx>,
    shutdown: watch::Receiver<bool>,
    (deadline, header_read): (Duration, Duration),
) {
    let max = app.config.borrow().server.max_connections;
    let max = max.unwrap_or_else(crate::net::limits::default_max_connections);
    let shared = Shared {
        app,
        tls: listeners.tls,
        slots: Arc::new(Semaphore::new(
            max.min(Semaphore::MAX_PERMITS as u64) as usize
        )),
        shutdown: shutdown.clone(),
        deadline,
        header_read,
    };
    let mut stopped = Vec::new();
    for (n, (runtime, listener)) in workers.into_iter().zip(listeners.public).enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("headgate-worker-{}", n + 1))
            .spawn(move || {
                crate::net::upstream::set_worker(n + 1);
                runtime.block_on(public(listener, shared));
                let _ = tx.send(());
            });
        match spawned {
            Ok(_) => stopped.push(rx),
            Err(e) => tracing::error!("cannot start public-listener worker {}: {e}", n + 1),
        }
    }
    admin(listeners.admin, admin_ctx, shutdown, deadline, header_read).await;
    for rx in stopped {
        let _ = rx.await;
    }
}

/// One worker's accept loop on its own socket, then its drain.
async fn public(listener: std::net::TcpListener, s: Shared) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("a public-listener worker cannot use its socket: {e}");
            return;
        }
    };
    let graceful = GracefulShutdown::new();
    let b = builder(s.header_read);
    let mut shutdown = s.shutdown.clone();
    let own_core = s.app.config.borrow().server.core == Core::Own;
    // Every connection the own core serves holds a receiver: the drain
    // waits for them all to be dropped.
    let (live, _) = watch::channel(());
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, remote)) = accepted else {
                    // Out of file descriptors and the like: back off briefly.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                // Over max_connections: closed at once, before any byte
                // is read, and counted.
                let Ok(slot) = s.slots.clone().try_acquire_owned() else {
                    s.app.metrics.connections_refused.inc();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let app = s.app.clone();
                let trusted = app.config.borrow().server.trusted_proxies.iter().any(|c| c.contains(remote.ip()));
                let peer = Arc::new(Peer::new(remote, trusted, s.tls.is_some()));
                let lane_peer = peer.clone();
                let svc = service_fn(move |req| {
                    let app = app.clone();
                    let peer = peer.clone();
                    async move { Ok::<_, Infallible>(doors::public(req, app, peer).await) }
                });
                let Some(tls) = s.tls.clone() else {
                    if own_core {
                        let client = lane::Client {
                            stream,
                            app: s.app.clone(),
                            peer: lane_peer,
                            header_read: s.header_read,
                            shutdown: s.shutdown.clone(),
                        };
                        let (b, watcher, live) = (b.clone(), graceful.watcher(), live.subscribe());
                        tokio::spawn(async move {
                            if let lane::Ended::HandOver(stream, read) = client.serve().await {
                                let io = TokioIo::new(Rewind::new(read, stream));
                                let conn = b.serve_connection_with_upgrades(io, svc).into_owned();
                                let _ = watcher.watch(conn).await;
                            }
                            drop((slot, live));
                        });
                        continue;
                    }
                    let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                        drop(slot);
                    });
                    continue;
                };
                // The handshake runs on the connection's own task, within
                // the header-read timeout, so a slow one holds up no one.
                let (b, watcher, header_read) = (b.clone(), graceful.watcher(), s.header_read);
                tokio::spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(header_read, tls.accept(stream)).await else {
                        return;
                    };
                    let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    let _ = watcher.watch(conn).await;
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    let lanes = live.closed();
    drain(graceful, s.deadline, lanes).await;
}

/// The admin listener's accept loop, then its drain.
async fn admin(
    listener: TcpListener,
    ctx: Arc<AdminCtx>,
    mut shutdown: watch::Receiver<bool>,
    deadline: Duration,
    header_read: Duration,
) {
    let graceful = GracefulShutdown::new();
    let b = builder(header_read);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let ctx = ctx.clone();
                let svc = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(admin::handle(req, &ctx).await) }
                });
                let conn = b.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    drop(listener);
    drain(graceful, deadline, std::future::ready(())).await;
}

/// Waits for in-flight requests and streams (hyper's connections and
/// `also`), up to `deadline`.
async fn drain(graceful: GracefulShutdown, deadline: Duration, also: impl Future<Output = ()>) {
    let both = async {
        graceful.shutdown().await;
        also.await;
    };
    if tokio::time::timeout(deadline, both).await.is_err() {
        tracing::warn!(
            "shutdown deadline of {deadline:?} passed; closing the remaining connections"
        );
    }
}
