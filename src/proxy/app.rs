//! A running proxy: its shared state ([`App`]), start-up (config, store,
//! listeners, reload), and graceful shutdown on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::doors::admin::AdminCtx;
use super::server;
use crate::audit::{AuditLog, Recorder, SessionHasher};
use crate::config::reload::ReloadLog;
use crate::config::{self, Config, ConfigErrors, LoadMode};
use crate::console::Console;
use crate::credentials::CredentialsRuntime;
use crate::metrics::{Metrics, Outcome};
use crate::net::client::{self, HttpClient};
use crate::net::upstream::Upstreams;
use crate::session::Store;
use crate::session::resolver::ResolverRuntime;
use crate::session::webhooks::ReplayGuard;
use crate::telemetry::Exporter;

/// Shared state of a running proxy.
pub struct App {
    /// The live config; each request clones the `Arc` it starts with.
    pub config: watch::Receiver<Arc<Config>>,
    /// Sessions.
    pub store: Arc<Store>,
    /// Client for `https://` upstreams and resolver APIs.
    pub client: HttpClient,
    /// Pooled connections to `http://` upstreams (hyper's path).
    pub(crate) upstreams: Upstreams,
    /// The forwarding core's TLS to `https://` upstreams.
    pub(crate) core_tls: tokio_rustls::TlsConnector,
    /// Fetch-on-miss state.
    pub resolver: Arc<ResolverRuntime>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Webhook replay protection.
    pub replay: ReplayGuard,
    /// MCP requests: the audit trail and the per-session timelines.
    pub calls: Arc<Recorder>,
    /// Span export (`[tracing] otlp_endpoint`).
    pub telemetry: Option<Arc<Exporter>>,
    /// Tokens obtained for `[credentials]` (outlives reloads).
    pub credentials: Arc<CredentialsRuntime>,
    /// Every route's pinned tool definitions (`[mcp] pin_tools`).
    pub pins: Arc<crate::mcp::pins::Books>,
}

/// `headgate serve` options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Config directory.
    pub templates: PathBuf,
    /// Override `listen`.
    pub listen: Option<SocketAddr>,
    /// Override `admin_listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Watch the directory and reload on change (and SIGHUP).
    pub watch: bool,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config is invalid.
    #[error("{0}")]
    Config(ConfigErrors),
    /// A listener could not bind.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// TLS setup failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The admin API would be exposed without a token.
    #[error("the admin API on {0} is not loopback, so it needs a token: set {1}")]
    AdminExposed(SocketAddr, String),
    /// A store kind this build cannot run.
    #[error("{0}")]
    Store(String),
    /// A worker's runtime could not be built.
    #[error("cannot start a worker runtime: {0}")]
    Runtime(String),
    /// The span exporter could not be set up.
    #[error("{0}")]
    Telemetry(String),
}

/// A running proxy (for `serve` and in-process tests).
pub struct Running {
    /// Bound public address.
    pub listen: SocketAddr,
    /// Bound admin address.
    pub admin: SocketAddr,
    /// Shared state.
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
    _config_tx: Arc<watch::Sender<Arc<Config>>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests and streams finish up to the
    /// configured deadline, then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.done.await;
    }

    /// Publishes a config, as a reload would.
    pub fn config_sender(&self) -> Arc<watch::Sender<Arc<Config>>> {
        self._config_tx.clone()
    }
}

/// Loads the config and starts both listeners.
pub async fn start(opts: ServeOptions) -> Result<Running, ServeError> {
    let cfg = load(&opts)?;
    let store = Store::open(&cfg.server).map_err(|e| ServeError::Store(e.to_string()))?;
    let connect_timeout = cfg.server.timeouts.connect;
    let client = client::build(connect_timeout, &cfg.server.extra_roots)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let core_tls =
        client::core_tls(&cfg.server.extra_roots).map_err(|e| ServeError::Tls(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let (listen_addr, admin_addr) = (cfg.server.listen, cfg.server.admin_listen);
    let workers = cfg.server.workers;
    let timeouts = cfg.server.timeouts.clone();
    let dir = cfg.dir.clone();
    let calls = Arc::new(recorder(&cfg));
    let telemetry = exporter(&cfg)?;
    let (config_tx, config_rx) = watch::channel(Arc::new(cfg));
    let config_tx = Arc::new(config_tx);
    let app = Arc::new(App {
        config: config_rx.clone(),
        store: store.clone(),
        resolver: Arc::new(ResolverRuntime::new(client.clone())),
        client: client.clone(),
        upstreams: Upstreams::new(connect_timeout, workers),
        core_tls,
        metrics: metrics.clone(),
        replay: ReplayGuard::default(),
        calls: calls.clone(),
        credentials: Arc::new(
            CredentialsRuntime::new(client.clone(), Some(store.clone()), metrics.clone())
                .with_telemetry(telemetry.clone()),
        ),
        telemetry,
        pins: Arc::new(crate::mcp::pins::Books::new(
            store.clone(),
            metrics.mcp_tools_held.clone(),
        )),
    });
    let tls = match &app.config.borrow().server.listener_tls {
        Some(t) => {
            Some(crate::net::tls::acceptor(&t.cert_file, &t.key_file).map_err(ServeError::Tls)?)
        }
        None => None,
    };
    let (public, listen) = crate::net::listen::reuseport(listen_addr, workers)
        .map_err(|e| ServeError::Bind(listen_addr, e))?;
    let runtimes = worker_runtimes(workers)?;
    let (admin, admin_bound) = bind(admin_addr).await?;
    let ready = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(ReloadLog::new());
    let console = Arc::new(Console::default());
    crate::console::history::spawn_sampler(console.history.clone(), metrics.clone());
    // `[tls] admin = true`: the admin listener on the same certificate.
    let admin_tls = tls.clone().filter(|_| app.config.borrow().server.admin_tls);
    let admin_ctx = Arc::new(AdminCtx {
        store: app.store.clone(),
        config: config_rx,
        metrics: metrics.clone(),
        ready: ready.clone(),
        calls,
        reloads: reloads.clone(),
        console,
        guesses: Default::default(),
        tls: admin_tls.is_some(),
        credentials: app.credentials.clone(),
        pins: app.pins.clone(),
    });
    app.credentials.follow_ends(&app.store);
    app.credentials.prefetch_at_start(&app.config.borrow());
    spawn_reload(dir, opts.watch, config_tx.clone(), metrics, reloads);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let done = tokio::spawn(server::run(
        server::Listeners {
            public,
            admin,
            admin_tls,
            tls,
        },
        runtimes,
        app.clone(),
        admin_ctx,
        shutdown_rx,
        (timeouts.shutdown, timeouts.header_read),
    ));
    ready.store(true, Ordering::Relaxed);
    let scheme = if app.config.borrow().server.listener_tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("listening on {listen} ({scheme}; admin on {admin_bound})");
    Ok(Running {
        listen,
        admin: admin_bound,
        app,
        shutdown: shutdown_tx,
        done,
        _config_tx: config_tx,
    })
}

/// The config with the command line's overrides, refused if the admin API
/// would be reachable from elsewhere without a token.
fn load(opts: &ServeOptions) -> Result<Config, ServeError> {
    let mut cfg = config::load_dir(&opts.templates, LoadMode::Serve).map_err(ServeError::Config)?;
    if let Some(l) = opts.listen {
        cfg.server.listen = l;
    }
    if let Some(a) = opts.admin_listen {
        cfg.server.admin_listen = a;
    }
    if cfg.server.admin_token.is_none() && !cfg.server.admin_listen.ip().is_loopback() {
        return Err(ServeError::AdminExposed(
            cfg.server.admin_listen,
            cfg.server.admin_token_env.clone(),
        ));
    }
    for w in &cfg.warnings {
        tracing::warn!(code = w.code, "{w}");
    }
    if cfg.server.admin_token.is_none() {
        tracing::warn!(
            "{} is not set: the admin API (loopback only) accepts requests without a token",
            cfg.server.admin_token_env
        );
    }
    Ok(cfg)
}

/// The MCP recorder `[audit]` asks for (its file is chosen at start; a
/// reload does not move it).
fn recorder(cfg: &Config) -> Recorder {
    let audit = cfg.server.audit.as_ref();
    let hasher = match audit.and_then(|a| a.session_key.as_ref()) {
        Some(k) => SessionHasher::new(k.expose().as_bytes()),
        None => SessionHasher::random(),
    };
    let log = audit.map(|a| AuditLog::start(a.sink.clone()));
    Recorder::new(log, hasher, cfg.server.ttl)
}

/// The span exporter `[tracing] otlp_endpoint` asks for, built on a
/// thread of its own (its HTTP client is a blocking one).
fn exporter(cfg: &Config) -> Result<Option<Arc<Exporter>>, ServeError> {
    let Some(endpoint) = cfg.server.otlp_endpoint.clone() else {
        return Ok(None);
    };
    let built = std::thread::spawn(move || Exporter::start(&endpoint))
        .join()
        .map_err(|_| ServeError::Telemetry("the OTLP exporter could not be built".into()))?;
    built
        .map(|e| Some(Arc::new(e)))
        .map_err(ServeError::Telemetry)
}

/// One current-thread runtime per public-listener worker.
fn worker_runtimes(workers: usize) -> Result<Vec<tokio::runtime::Runtime>, ServeError> {
    (0..workers.max(1))
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ServeError::Runtime(e.to_string()))
        })
        .collect()
}

/// A listener on `addr`, and the address it got (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind(addr, e))?;
    let bound = l.local_addr().map_err(|e| ServeError::Bind(addr, e))?;
    Ok((l, bound))
}

/// SIGHUP always reloads; `watch` adds reload on file change.
fn spawn_reload(
    dir: PathBuf,
    watch_files: bool,
    tx: Arc<watch::Sender<Arc<Config>>>,
    metrics: Arc<Metrics>,
    reloads: Arc<ReloadLog>,
) {
    tokio::spawn(async move {
        config::reload::watch_config(dir, watch_files, tx, move |o| {
            let outcome = o.outcome();
            metrics.reloads.get_or_create(&Outcome { outcome }).inc();
            reloads.note(o);
        })
        .await;
    });
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let running = start(opts).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: no new connections; waiting for in-flight requests and streams");
    let telemetry = running.app.telemetry.clone();
    running.shutdown().await;
    if let Some(t) = telemetry {
        let _ = tokio::task::spawn_blocking(move || t.flush()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
