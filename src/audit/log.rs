//! The audit trail's writer: a bounded queue to one task that appends
//! JSON lines to the sink and reopens it on SIGHUP.

use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use super::Record;
use crate::config::audit::Sink;

/// Lines waiting for the writer; more are dropped (and counted).
const CHANNEL: usize = 10_000;

/// The sending side of the audit trail.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Record>,
}

impl AuditLog {
    /// Starts the writer task for `sink`. Must be called inside a tokio
    /// runtime.
    pub fn start(sink: Sink) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        tokio::spawn(write_lines(sink, rx));
        Self { tx }
    }

    /// Queues `record`; false if the queue was full and it was dropped.
    pub fn record(&self, record: Record) -> bool {
        self.tx.try_send(record).is_ok()
    }
}

async fn write_lines(sink: Sink, mut rx: mpsc::Receiver<Record>) {
    let mut out = open(&sink).await;
    let mut hup = hangups();
    loop {
        tokio::select! {
            r = rx.recv() => {
                let Some(first) = r else { return };
                let mut batch = Vec::new();
                push_line(&mut batch, &first);
                while let Ok(more) = rx.try_recv() {
                    push_line(&mut batch, &more);
                }
                if let Some(w) = out.as_mut()
                    && let Err(e) = w.write_all(&batch).await
                {
                    tracing::warn!("audit: cannot write: {e}");
                }
                if let Some(w) = out.as_mut() {
                    let _ = w.flush().await;
                }
            }
            _ = recv_hup(&mut hup) => {
                out = open(&sink).await;
                tracing::info!("audit: reopened after SIGHUP");
            }
        }
    }
}

fn push_line(batch: &mut Vec<u8>, r: &Record) {
    if serde_json::to_writer(&mut *batch, r).is_ok() {
        batch.push(b'\n');
    }
}

type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

async fn open(sink: &Sink) -> Option<Writer> {
    match sink {
        Sink::Stdout => Some(Box::new(tokio::io::stdout())),
        Sink::File(p) => {
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await;
            match f {
                Ok(f) => Some(Box::new(f)),
                Err(e) => {
                    tracing::warn!("audit: cannot open {}: {e}", p.display());
                    None
                }
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn recv_hup(h: &mut Hangups) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv_hup(_: &mut Hangups) {
    std::future::pending::<()>().await
}
