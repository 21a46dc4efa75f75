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
        settle(&mut ev_rx).await;
        if tx.is_closed() {
            return;
        }
        let outcome = reload_once(&dir, &tx);
        on_reload(outcome);
    }
}

fn root_of(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A change is followed by others while an editor (or `cp -r`) writes:
/// waits until [`QUIET`] passes with none, at most [`SETTLE_MAX`].
async fn settle(ev_rx: &mut tokio::sync::mpsc::Receiver<()>) {
    let until = tokio::time::Instant::now() + SETTLE_MAX;
    loop {
        tokio::time::sleep(QUIET).await;
        let mut more = false;
        while ev_rx.try_recv().is_ok() {
            more = true;
        }
        if !more || tokio::time::Instant::now() >= until {
            return;
        }
    }
}

/// How long the config's files must stay unchanged before a reload.
const QUIET: Duration = Duration::from_millis(200);
/// The longest a stream of changes delays a reload.
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// Whether a change to `path` (under the config directory `dir`) can
/// change the config: `headgate.toml`, a route file, or a key or
/// certificate a declaration points at (`.pem`, `.key`, `.crt`, `.der`,
/// `.jwk`). A log, an audit file or an editor's swap file written there
/// is not, and reloaded nothing (a log written in the folder reloaded
/// every 150 ms).
pub fn is_config_file(dir: &std::path::Path, path: &std::path::Path) -> bool {
    let Ok(rel) = path.strip_prefix(dir) else {
        return false;
    };
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let in_routes = rel.parent() == Some(std::path::Path::new("routes"));
    rel == std::path::Path::new("headgate.toml")
        || (in_routes && ext == "toml" && !name.starts_with('.'))
        || ["pem", "key", "crt", "der", "jwk"].contains(&ext)
}

/// A `notify` watcher that pokes `ev_tx` on every change under `dir` to
/// a file the config reads ([`is_config_file`]).
fn file_watcher(
    dir: &std::path::Path,
    ev_tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    // Events name absolute paths; so must the directory they are under.
    let watched = root_of(dir);
    let root = watched.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| is_config_file(&root, p))
        {
            let _ = ev_tx.try_send(());
        }
    });
    match watcher {
        Ok(mut w) => match w.watch(&watched, notify::RecursiveMode::Recursive) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_the_config_reads_count() {
        let dir = std::path::Path::new("/etc/headgate");
        for yes in [
            "headgate.toml",
            "routes/crm.toml",
            "keys/crm.pem",
            "tls/cert.crt",
        ] {
            assert!(is_config_file(dir, &dir.join(yes)), "{yes}");
        }
        for no in [
            "headgate.log",
            "audit.jsonl",
            "routes/.crm.toml.swp",
            "routes/crm.toml~",
            "routes/old/crm.toml",
            "notes.toml",
        ] {
            assert!(!is_config_file(dir, &dir.join(no)), "{no}");
        }
        assert!(!is_config_file(
            dir,
            std::path::Path::new("/elsewhere/headgate.toml")
        ));
    }
}
