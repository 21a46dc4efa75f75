//! Accept loops for both listeners: HTTP/1.1 and h2c (auto-detected), or
//! HTTPS with ALPN on the public one; a header read timeout against
//! slowloris, and graceful shutdown. On the public listener HTTP/1.1,
//! cleartext or TLS, goes to the forwarding core ([`super::forward`]); HTTP/2
//! and what the core hands over, to hyper.
//!
//! The public listener is served by `workers` threads, each with its own
//! current-thread runtime, `SO_REUSEPORT` socket and upstream pool: a
//! connection, its upstream connection and every task of its requests stay
//! on one thread (nginx's shape; no work-stealing, no cross-thread
//! wake-ups). Only a new connection may cross, once, before a byte is read,
//! to even out the workers ([`super::spread`]). The admin listener runs on
//! the caller's runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::App;
use super::doors::{
    self,
    admin::{self, AdminCtx},
};
use super::exchange::Peer;
use super::forward;
use super::spread::{Handed, Open, Spread};
use crate::metrics::WorkerLabel;
use crate::net::h1::rewind::Rewind;
use crate::net::h1::wire::Wire;

pub(super) struct Listeners {
    /// The public listener's sockets, one per worker (`SO_REUSEPORT`).
    pub public: Vec<std::net::TcpListener>,
    pub admin: TcpListener,
    /// HTTPS on the public listener (`[tls] cert_file`).
    pub tls: Option<TlsAcceptor>,
    /// HTTPS on the admin listener (`[tls] admin = true`).
    pub admin_tls: Option<TlsAcceptor>,
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
    spread: Arc<Spread>,
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
    let gauges = (1..=workers.len())
        .map(|worker| {
            let label = WorkerLabel { worker };
            app.metrics.worker_connections.get_or_create(&label).clone()
        })
        .collect();
    let (spread, inboxes) = Spread::new(gauges);
    let shared = Shared {
        app,
        tls: listeners.tls,
        slots: Arc::new(Semaphore::new(
            max.min(Semaphore::MAX_PERMITS as u64) as usize
        )),
        spread: Arc::new(spread),
        shutdown: shutdown.clone(),
        deadline,
        header_read,
    };
    let mut stopped = Vec::new();
    let each = workers.into_iter().zip(listeners.public).zip(inboxes);
    for (n, ((runtime, listener), inbox)) in each.enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("headgate-worker-{}", n + 1))
            .spawn(move || {
                crate::net::upstream::set_worker(n + 1);
                crate::metrics::pin(n);
                runtime.block_on(public(n, listener, inbox, shared));
                let _ = tx.send(());
            });
        match spawned {
            Ok(_) => stopped.push(rx),
            Err(e) => tracing::error!("cannot start public-listener worker {}: {e}", n + 1),
        }
    }
    let admin_listener = (listeners.admin, listeners.admin_tls);
    admin(admin_listener, admin_ctx, shutdown, deadline, header_read).await;
    for rx in stopped {
        let _ = rx.await;
    }
}

/// Worker `n`'s accept loop on its own socket, and on the connections
/// other workers hand it ([`Spread`]); then its drain.
async fn public(
    n: usize,
    listener: std::net::TcpListener,
    mut inbox: mpsc::UnboundedReceiver<Handed>,
    s: Shared,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("a public-listener worker cannot use its socket: {e}");
            return;
        }
    };
    let mut shutdown = s.shutdown.clone();
    let w = Worker {
        b: builder(s.header_read),
        graceful: GracefulShutdown::new(),
        live: watch::channel(()).0,
        s,
    };
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
                let Ok(slot) = w.s.slots.clone().try_acquire_owned() else {
                    w.s.app.metrics.connections_refused.inc();
                    drop(stream);
                    continue;
                };
                let (to, open) = w.s.spread.place(n);
                if to == n {
                    w.serve(stream, remote, (slot, open));
                } else if let Ok(stream) = stream.into_std() {
                    w.s.spread.hand(to, Handed { stream, remote, slot, open });
                }
            }
            Some(h) = inbox.recv() => {
                if let Ok(stream) = TcpStream::from_std(h.stream) {
                    w.serve(stream, h.remote, (h.slot, h.open));
                }
            }
        }
    }
    drop((listener, inbox));
    let forwarding = w.live.closed();
    drain(w.graceful, w.s.deadline, forwarding).await;
}

/// One worker's way of serving the connections it takes.
struct Worker {
    s: Shared,
    b: Builder<TokioExecutor>,
    graceful: GracefulShutdown,
    /// Every connection the forwarding core serves holds a receiver: the drain
    /// waits for them all to be dropped.
    live: watch::Sender<()>,
}

impl Worker {
    /// Serves a connection on a task of its own; `held` (its share of
    /// `max_connections`, its place among the worker's open ones) is
    /// released when it ends.
    fn serve(&self, stream: TcpStream, remote: SocketAddr, held: (OwnedSemaphorePermit, Open)) {
        let _ = stream.set_nodelay(true);
        let app = self.s.app.clone();
        let trusted = app
            .config
            .borrow()
            .server
            .trusted_proxies
            .iter()
            .any(|c| c.contains(remote.ip()));
        let peer = Arc::new(Peer::new(remote, trusted, self.s.tls.is_some()));
        let core_peer = peer.clone();
        let stop = self.s.shutdown.clone();
        let svc = service_fn(move |req| {
            let app = app.clone();
            let peer = peer.clone();
            let stop = stop.clone();
            async move {
                let resp = doors::public(req, app, peer).await;
                Ok::<_, Infallible>(crate::net::drain::ends_when_idle_at_shutdown(resp, &stop))
            }
        });
        let b = self.b.clone();
        let watcher = self.graceful.watcher();
        // The forwarding core serves HTTP/1.1, cleartext or TLS; hyper
        // serves HTTP/2 (ALPN `h2`) and whatever the core hands over.
        let (app, header_read) = (self.s.app.clone(), self.s.header_read);
        let shutdown = self.s.shutdown.clone();
        let client = move |stream| forward::Client {
            stream,
            app,
            peer: core_peer,
            header_read,
            shutdown,
        };
        let live = self.live.subscribe();
        let tls = self.s.tls.clone();
        tokio::spawn(async move {
            // The handshake runs on the connection's own task, within the
            // header-read timeout, so a slow one holds up no one.
            let wire: Wire = match tls {
                None => stream.into(),
                Some(tls) => match tokio::time::timeout(header_read, tls.accept(stream)).await {
                    Ok(Ok(s)) => s.into(),
                    _ => return,
                },
            };
            let (wire, read) = match wire.speaks_h2() {
                true => (wire, Vec::new()),
                false => match client(wire).serve().await {
                    forward::Ended::HandOver(wire, read) => (wire, read),
                    forward::Ended::Closed => return drop((held, live)),
                },
            };
            drop(live);
            let io = TokioIo::new(Rewind::new(read, wire));
            let conn = b.serve_connection_with_upgrades(io, svc).into_owned();
            let _ = watcher.watch(conn).await;
            drop(held);
        });
    }
}

/// The admin listener's accept loop (HTTPS when it has an acceptor),
/// then its drain.
async fn admin(
    (listener, tls): (TcpListener, Option<TlsAcceptor>),
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
                let Ok((stream, remote)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let ctx = ctx.clone();
                let svc = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(admin::handle(req, &ctx, remote.ip()).await) }
                });
                let (b, watcher, tls) = (b.clone(), graceful.watcher(), tls.clone());
                tokio::spawn(async move {
                    let Some(tls) = tls else {
                        let conn = b.serve_connection(TokioIo::new(stream), svc).into_owned();
                        let _ = watcher.watch(conn).await;
                        return;
                    };
                    // The handshake within the header timeout, as a
                    // request head must arrive.
                    let Ok(Ok(stream)) = tokio::time::timeout(header_read, tls.accept(stream)).await else {
                        return;
                    };
                    let conn = b.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let _ = watcher.watch(conn).await;
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
