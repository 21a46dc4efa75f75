//! Who called what: one record per MCP request, written as a JSON line to
//! the audit file (`[audit] path`) and kept per session for the admin
//! API's `GET /calls/{id}`.
//!
//! A record names the session by a keyed hash, never by its id (a call id
//! is bearer-ish: with the route key it acts as that call), and carries no
//! header value, variable or token. Writing happens off the request path:
//! records go through a bounded channel to a writer task; when the channel
//! is full the record is dropped and counted, never waited for. The file
//! is reopened on SIGHUP, so logrotate's `create` works.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hmac::Mac as _;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::config::audit::Sink;
use crate::shards::{Entry, Sharded};

/// One MCP request, as the audit line and the call timeline show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Record {
    /// When the request arrived (written as RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub ts: SystemTime,
    /// Route name.
    pub route: Arc<str>,
    /// The session, as a keyed hash (`""` when no key was found).
    pub session: String,
    /// JSON-RPC method (`""` when the body was not JSON-RPC).
    pub method: String,
    /// Tool or prompt name, if any.
    pub tool: Option<String>,
    /// The request's JSON-RPC id, if any.
    pub rpc_id: Option<Value>,
    /// The outcome status (the error's, on a JSON-RPC route).
    pub status: u16,
    /// headgate's error code, if it refused or failed the request.
    pub code: Option<&'static str>,
    /// A code the request passed with and is reported by (a changed tool
    /// called under `pin_tools = "warn"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
    /// Time to the upstream's response head, if it was reached.
    pub upstream_ms: Option<f64>,
    /// Credentials obtained for the request (names, never values).
    pub credentials: Vec<String>,
    /// Whether it came by an MCP route (audited, and listed by `GET
    /// /calls/{id}`); other routes' requests are kept only for the
    /// console's call inspector.
    #[serde(skip)]
    pub mcp: bool,
}

/// The most bytes of a client-chosen field (tool, method, a string
/// JSON-RPC id) an audit line or a timeline keeps: a client could
/// otherwise write megabytes into the audit file per request.
pub const MAX_FIELD_BYTES: usize = 128;

/// `s` cut to [`MAX_FIELD_BYTES`] at a character boundary, `…` marking a
/// cut.
pub fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_string();
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A JSON-RPC id as recorded: a string id [`clip`]ped, a number as it
/// is, anything longer (not a valid id) dropped.
pub fn clip_id(id: Value) -> Option<Value> {
    match id {
        Value::String(s) => Some(Value::String(clip(&s))),
        v if v.to_string().len() <= MAX_FIELD_BYTES => Some(v),
        _ => None,
    }
}

/// Requests kept per session in the timeline: this many MCP requests, and
/// as many of other routes' (so a busy plain route never pushes a call's
/// MCP requests out of `GET /calls/{id}`).
pub const TIMELINE_LEN: usize = 100;

/// Room a session's timeline starts with: most calls make fewer tool
/// calls, and never move their records (growing from four, 4 → 8 → 16,
/// copied every record twice). Well inside the budget below. A timeline that outgrows it
/// gets room for all it may keep ([`FULL_RECORDS`]) in one step: doubling
/// on to 128 moved 112 records of a long call; the budget counts that room for
/// every session anyway.
const FIRST_RECORDS: usize = 16;

/// All a timeline keeps: [`TIMELINE_LEN`] requests of each kind.
const FULL_RECORDS: usize = 2 * TIMELINE_LEN;

/// What a session's timeline is budgeted at: twice a hundred records of
/// about 256 bytes.
const CALLS_BYTES: u64 = (FULL_RECORDS * 256) as u64;

/// The last [`TIMELINE_LEN`] requests of every live session, bounded in
/// bytes as a whole (the least recently used sessions go first); an entry
/// lives as long as a session does (`ttl` after its last request), so a
/// call can be looked at during it and right after it ended. A sharded
/// map rather than a cache: a request's lookup costs a hash and a read
/// lock.
pub struct Timeline {
    calls: Sharded<Calls>,
    ttl: Duration,
}

/// One session's entry: its keyed hash (computed once, not per request)
/// and its recent requests.
pub struct Calls {
    hash: String,
    ttl: Duration,
    inner: Mutex<Recent>,
}

struct Recent {
    requests: VecDeque<Record>,
    /// How many of `requests` are MCP requests.
    mcp: usize,
    used: Instant,
}

impl Calls {
    /// Adds a request, dropping the oldest of its kind (MCP or not) past
    /// [`TIMELINE_LEN`] of that kind.
    fn push(&self, record: Record, now: Instant) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let same = match record.mcp {
            true => r.mcp,
            false => r.requests.len() - r.mcp,
        };
        if same == TIMELINE_LEN
            && let Some(i) = r.requests.iter().position(|x| x.mcp == record.mcp)
        {
            r.requests.remove(i);
            r.mcp -= usize::from(record.mcp);
        }
        r.mcp += usize::from(record.mcp);
        if r.requests.len() == r.requests.capacity() {
            let more = FULL_RECORDS.saturating_sub(r.requests.len()).max(1);
            r.requests.reserve_exact(more);
        }
        r.requests.push_back(record);
        r.used = now;
    }

    fn used(&self) -> Instant {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).used
    }
}

impl Entry for Calls {
    fn keep(&self, now: Instant) -> bool {
        self.used() + self.ttl > now
    }

    fn last_used(&self) -> Option<Instant> {
        Some(self.used())
    }
}

impl Timeline {
    /// At most about `max_bytes` of records, each session's kept `ttl`
    /// after its last request.
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        let sessions = (max_bytes / CALLS_BYTES).max(1) as usize;
        Self {
            calls: Sharded::new(sessions),
            ttl,
        }
    }

    /// Session `id`'s entry, made (and its hash computed) on first use.
    fn entry(&self, id: &str, hasher: &SessionHasher) -> Arc<Calls> {
        if let Some(e) = self.calls.get(id.as_bytes()) {
            return e;
        }
        self.calls.get_or_insert(id.as_bytes().to_vec(), || Calls {
            hash: hasher.hash(id),
            ttl: self.ttl,
            inner: Mutex::new(Recent {
                requests: VecDeque::with_capacity(FIRST_RECORDS),
                mcp: 0,
                used: Instant::now(),
            }),
        })
    }

    /// Session `id`'s requests on every route, oldest first (`None` once
    /// its entry idled past the TTL).
    pub fn get(&self, id: &str) -> Option<Vec<Record>> {
        let entry = self.calls.get(id.as_bytes())?;
        let r = entry.inner.lock().unwrap_or_else(|e| e.into_inner());
        (r.used + entry.ttl > Instant::now()).then(|| r.requests.iter().cloned().collect())
    }
}

/// The keyed hash that names a session in records: HMAC-SHA256 of the id
/// under the audit key, first 8 bytes in hex. Without the key, a known call
/// id cannot be matched to its records.
#[derive(Clone)]
pub struct SessionHasher {
    key: Arc<[u8]>,
}

impl SessionHasher {
    /// Hashes under `key`.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.into() }
    }

    /// Hashes under a key made for this process (hashes then match only
    /// within one run of one replica).
    pub fn random() -> Self {
        let key: [u8; 32] = std::array::from_fn(|_| rand_byte());
        Self::new(&key)
    }

    /// The hash of `id`.
    pub fn hash(&self, id: &str) -> String {
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        let out = mac.finalize().into_bytes();
        crate::hex::encode(&out[..8])
    }
}

impl std::fmt::Debug for SessionHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHasher(<key redacted>)")
    }
}

/// One secret random byte: SipHash under a fresh OS-seeded `RandomState`
/// key. Not `net::tracecontext`'s generator: trace ids are shown to every
/// upstream, and its state could be recovered from them; this key must not.
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u8
}

/// Where MCP requests are recorded: the audit trail (when `[audit]` is
/// set) and every session's timeline, under one session hasher.
pub struct Recorder {
    audit: Option<AuditLog>,
    /// The per-session timelines (`GET /calls/{id}`).
    pub timeline: Timeline,
    hasher: SessionHasher,
}

/// Timeline memory, all sessions together.
const TIMELINE_BYTES: u64 = 64 << 20;

impl Recorder {
    /// Records to `audit` (if any) and to timelines kept `ttl` after a
    /// session's last request; sessions named under `hasher`.
    pub fn new(audit: Option<AuditLog>, hasher: SessionHasher, ttl: Duration) -> Self {
        Self {
            audit,
            timeline: Timeline::new(TIMELINE_BYTES, ttl),
            hasher,
        }
    }

    /// The keyed hash a record names session `id` by.
    pub fn session_hash(&self, id: &str) -> String {
        self.hasher.hash(id)
    }

    /// Records one request of session `id` (if it got that far), built by
    /// `build` from the session's keyed hash: to the session's timeline,
    /// and to the audit trail when it is an MCP request. False if the
    /// audit queue was full and the line was dropped.
    pub fn record(
        &self,
        id: Option<&str>,
        now: Instant,
        build: impl FnOnce(&str) -> Record,
    ) -> bool {
        let entry = id.map(|id| self.timeline.entry(id, &self.hasher));
        let record = build(entry.as_ref().map_or("", |e| e.hash.as_str()));
        let audited = self.audit.as_ref().filter(|_| record.mcp);
        let written = audited.is_none_or(|a| a.record(record.clone()));
        if let Some(e) = entry {
            e.push(record, now);
        }
        written
    }
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*t))
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-23T15:04:05.123Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_chosen_fields_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("search"), "search");
        let long = "é".repeat(100);
        let cut = clip(&long);
        assert!(
            cut.len() <= MAX_FIELD_BYTES + '…'.len_utf8() && cut.ends_with('…'),
            "{cut}"
        );
        assert_eq!(
            clip_id(Value::String("x".repeat(1 << 20)))
                .unwrap()
                .as_str()
                .unwrap()
                .len(),
            MAX_FIELD_BYTES + 3
        );
        assert_eq!(clip_id(serde_json::json!(7)), Some(serde_json::json!(7)));
        assert_eq!(clip_id(serde_json::json!({"a": "b".repeat(500)})), None);
        assert_eq!(clip_id(Value::Null), Some(Value::Null));
    }

    fn rec(i: u64) -> Record {
        Record {
            ts: SystemTime::UNIX_EPOCH,
            route: "crm".into(),
            session: "ab".into(),
            method: "tools/call".into(),
            tool: Some("search".into()),
            rpc_id: Some(Value::from(i)),
            status: 200,
            code: None,
            warning: None,
            upstream_ms: Some(1.5),
            credentials: Vec::new(),
            mcp: true,
        }
    }

    #[test]
    fn the_timeline_keeps_the_last_hundred() {
        let t = Timeline::new(1 << 20, Duration::from_secs(60));
        let h = SessionHasher::new(b"k");
        for i in 0..150 {
            t.entry("c1", &h).push(rec(i), Instant::now());
        }
        let got = t.get("c1").unwrap();
        assert_eq!(got.len(), TIMELINE_LEN);
        let room = |t: &Timeline| t.entry("c1", &h).inner.lock().unwrap().requests.capacity();
        assert_eq!(
            room(&t),
            FULL_RECORDS,
            "past its first room, all in one step"
        );
        assert_eq!(got[0].rpc_id, Some(Value::from(50)));
        assert!(t.get("c2").is_none());
        // Other routes' requests never push the MCP ones out.
        for i in 0..150 {
            let other = Record {
                mcp: false,
                ..rec(1000 + i)
            };
            t.entry("c1", &h).push(other, Instant::now());
        }
        let got = t.get("c1").unwrap();
        let mcp: Vec<_> = got.iter().filter(|r| r.mcp).collect();
        assert_eq!((got.len(), mcp.len()), (FULL_RECORDS, TIMELINE_LEN));
        assert_eq!(room(&t), FULL_RECORDS, "and never more");
        assert_eq!(mcp[0].rpc_id, Some(Value::from(50)));
        assert_eq!(
            got.iter().find(|r| !r.mcp).unwrap().rpc_id,
            Some(Value::from(1050))
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(format_rfc3339(SystemTime::now()).len(), 24);
        assert_eq!(
            format_rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn session_hashes_are_keyed() {
        let a = SessionHasher::new(b"key-a");
        let b = SessionHasher::new(b"key-b");
        assert_eq!(a.hash("call-1"), a.hash("call-1"));
        assert_ne!(a.hash("call-1"), b.hash("call-1"));
        assert_eq!(a.hash("call-1").len(), 16);
        assert!(!format!("{a:?}").contains("key-a"));
    }
}
