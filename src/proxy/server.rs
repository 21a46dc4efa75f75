//! Accept loops for both listeners: HTTP/1.1 and h2c (auto-detected), or
//! HTTPS with ALPN on the public one; a header read timeout against
//! slowloris, and graceful shutdown.

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

pub(super) struct Listeners {
    pub public: TcpListener,
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

pub(super) async fn run(
    listeners: Listeners,
    app: Arc<App>,
    admin_ctx: Arc<AdminCtx>,
    mut shutdown: watch::Receiver<bool>,
    deadline: Duration,
    header_read: Duration,
) {
    let graceful = GracefulShutdown::new();
    let b = builder(header_read);
    let max = app.config.borrow().server.max_connections;
    let max = max.unwrap_or_else(crate::net::limits::default_max_connections);
    let slots = Arc::new(Semaphore::new(
        max.min(Semaphore::MAX_PERMITS as u64) as usize
    ));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listeners.public.accept() => {
                let Ok((stream, remote)) = accepted else {
                    // Out of file descriptors and the like: back off briefly.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                // Over max_connections: closed at once, before any byte
                // is read, and counted.
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    app.metrics.connections_refused.inc();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let trusted = app.config.borrow().server.trusted_proxies.iter().any(|c| c.contains(remote.ip()));
                let app = app.clone();
                let peer = Arc::new(Peer::new(remote, trusted, listeners.tls.is_some()));
                let svc = service_fn(move |req| {
                    let app = app.clone();
                    let peer = peer.clone();
                    async move { Ok::<_, Infallible>(doors::public(req, app, peer).await) }
                });
                let Some(tls) = listeners.tls.clone() else {
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
                let (b, watcher) = (b.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(header_read, tls.accept(stream)).await else {
                        return;
                    };
                    let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    let _ = watcher.watch(conn).await;
                    drop(slot);
                });
            }
            accepted = listeners.admin.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let ctx = admin_ctx.clone();
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
    drop(listeners);
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown deadline of {deadline:?} passed; closing the remaining connections"
        );
    }
}
