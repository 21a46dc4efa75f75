//! Reload on SIGHUP and on file change: the new config is validated whole
//! and swapped in only if it is valid; otherwise the running one keeps
//! serving and the errors are logged with their locations. Requests hold an
//! `Arc` of the config they started with, so in-flight requests finish on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Config, LoadMode, load_dir};

/// Outcome of one reload attempt, for logs, metrics and the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new config is serving.
    Applied,
    /// It had errors (each with its file:line:column); the old config
    /// keeps serving.
    Rejected(Vec<String>),
}

impl Reloaded {
    /// `applied` or `rejected`, the metric's label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Reloaded::Applied => "applied",
            Reloaded::Rejected(_) => "rejected",
        }
    }
}

/// The config generation serving (1 at start, +1 per applied reload) and
/// the last reload attempt, for the console.
#[derive(Debug, Default)]
pub struct ReloadLog {
    generation: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<Option<(std::time::SystemTime, Reloaded)>>,
}

impl ReloadLog {
    /// A log whose first config is generation 1.
    pub fn new() -> Self {
        let log = Self::default();
        log.generation
            .store(1, std::sync::atomic::Ordering::Relaxed);
        log
    }

    /// Notes a reload attempt.
    pub fn note(&self, outcome: Reloaded) {
        if outcome == Reloaded::Applied {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some((std::time::SystemTime::now(), outcome));
    }

    /// The generation serving.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// When the last reload was tried and how it went (`None` before any).
    pub fn last(&self) -> Option<(std::time::SystemTime, Reloaded)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Loads `dir` and publishes it on `tx` if valid.
pub fn reload_once(dir: &std::path::Path, tx: &watch::Sender<Arc<Config>>) -> Reloaded {
    match load_dir(dir, LoadMode::Serve) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                tracing::warn!(code = w.code, "{w}");
            }
            tx.send_replace(Arc::new(cfg));
            tracing::info!(dir = %dir.display(), "config reloaded");
            Reloaded::Applied
        }
        Err(errs) => {
            for e in &errs.0 {
                tracing::error!(
                    code = e.code,
                    "config reload rejected, still serving the previous config: {e}"
                );
            }
            Reloaded::Rejected(errs.0.iter().map(ToString::to_string).collect())
        }
    }
}

/// Reloads on SIGHUP, and on file changes in `dir` when `watch_files`;
/// runs until the sender is dropped. `on_reload` is told each outcome.
pub async fn watch_config(
    dir: PathBuf,
    watch_files: bool,
    tx: Arc<watch::Sender<Arc<Config>>>,
    on_reload: impl Fn(Reloaded) + Send + 'static,
) {
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<()>(16);
    // Kept alive for the loop's lifetime; `None` when not watching files.
    let _watcher = if watch_files {
        file_watcher(&dir, ev_tx.clone())
    } else {
        None
    };
    #[cfg(unix)]
    {
        let ev_tx = ev_tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                if ev_tx.send(()).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(ev_tx);
    while ev_rx.recv().await.is_some() {
        // Editors write files in several steps: let them settle.
        tokio::time::sleep(Duration::from_millis(150)).await;
        while ev_rx.try_recv().is_ok() {}
        if tx.is_closed() {
            return;
        }
        let outcome = reload_once(&dir, &tx);
        on_reload(outcome);
    }
}

/// A `notify` watcher that pokes `ev_tx` on every change under `dir`.
fn file_watcher(
    dir: &std::path::Path,
    ev_tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = ev_tx.try_send(());
        }
    });
    match watcher {
        Ok(mut w) => match w.watch(dir, notify::RecursiveMode::Recursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} for changes ({e}); reload with SIGHUP",
                    dir.display()
                );
                None
            }
        },
        Err(e) => {
            tracing::warn!("file watching unavailable ({e}); reload with SIGHUP");
            None
        }
    }
}
