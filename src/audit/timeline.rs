//! The call timeline: the last requests of every live session, by route
//! kind, bounded in bytes as a whole.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{Record, SessionHasher};
use crate::shards::{Entry, Hint, Sharded};

/// Requests kept per session in the timeline: this many MCP requests, and
/// as many of other routes' (so a busy plain route never pushes a call's
/// MCP requests out of `GET /calls/{id}`).
pub const TIMELINE_LEN: usize = 100;

/// Room one kind's requests start with, on the session's first request of
/// that kind: most calls make fewer, and never move their entries. One
/// that outgrows it gets room for all it may keep ([`TIMELINE_LEN`]) in
/// one step (doubling on would move the entries again at each step; the
/// budget counts that room for every session anyway).
const FIRST_ROOM: usize = 16;

/// What a session's timeline is budgeted at: a hundred MCP records of
/// about 256 bytes and a hundred [`Plain`] ones of 64.
const CALLS_BYTES: u64 = (TIMELINE_LEN * (256 + 64)) as u64;

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
    pub(super) hash: String,
    ttl: Duration,
    inner: Mutex<Recent>,
}

struct Recent {
    mcp: Kept<Record>,
    plain: Kept<Plain>,
    /// The number the next request gets (both kinds count on one), so
    /// the two read back in the order they came.
    next: u64,
    used: Instant,
}

/// One kind's last [`TIMELINE_LEN`] requests, oldest first, each with the
/// number it came as.
struct Kept<T>(VecDeque<Numbered<T>>);

/// A kept request and the number it came as, starting a cache line: a
/// [`Plain`] one is then written to one line, not across two (the
/// queue's room would otherwise start wherever the allocator put it).
#[repr(align(64))]
struct Numbered<T>(u64, T);

impl<T> Kept<T> {
    fn push(&mut self, n: u64, item: T) {
        let q = &mut self.0;
        if q.len() == TIMELINE_LEN {
            q.pop_front();
        }
        if q.len() == q.capacity() {
            let room = if q.capacity() < FIRST_ROOM {
                FIRST_ROOM
            } else {
                TIMELINE_LEN
            };
            q.reserve_exact(room.saturating_sub(q.len()).max(1));
        }
        q.push_back(Numbered(n, item));
    }
}

/// A request without an MCP view, as the timeline keeps it: what the
/// console's call inspector shows of one (such a request has no method,
/// tool, id or session hash, and is never audited nor listed by `GET
/// /calls/{id}`), in one cache line rather than a [`Record`]'s four. A
/// plain route's every request adds one and drops its session's oldest,
/// so this is what it costs it.
#[derive(Clone, Copy)]
struct Plain {
    ts: SystemTime,
    route: &'static str,
    code: Option<&'static str>,
    /// NaN: the upstream was not reached.
    upstream_ms: f32,
    status: u16,
}

impl Plain {
    fn of(r: Record) -> Self {
        Self {
            ts: r.ts,
            route: r.route,
            code: r.code,
            upstream_ms: r.upstream_ms.map_or(f32::NAN, |ms| ms as f32),
            status: r.status,
        }
    }

    fn record(&self) -> Record {
        Record {
            ts: self.ts,
            route: self.route,
            session: String::new(),
            method: String::new(),
            tool: None,
            rpc_id: None,
            status: self.status,
            code: self.code,
            warning: None,
            upstream_ms: (!self.upstream_ms.is_nan()).then_some(f64::from(self.upstream_ms)),
            credentials: Vec::new(),
            mcp: false,
        }
    }
}

impl Recent {
    /// Both kinds' requests, in the order they came.
    fn records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.mcp.0.len() + self.plain.0.len());
        let (mut mcp, mut plain) = (self.mcp.0.iter().peekable(), self.plain.0.iter().peekable());
        loop {
            let mcp_first = match (mcp.peek(), plain.peek()) {
                (Some(Numbered(m, _)), Some(Numbered(p, _))) => m < p,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return out,
            };
            match mcp_first {
                true => out.extend(mcp.next().map(|Numbered(_, r)| r.clone())),
                false => out.extend(plain.next().map(|Numbered(_, p)| p.record())),
            }
        }
    }
}

impl Calls {
    /// Adds a request, dropping the oldest of its kind (MCP or not) past
    /// [`TIMELINE_LEN`] of that kind.
    pub(super) fn push(&self, record: Record, now: Instant) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let n = r.next;
        r.next += 1;
        match record.mcp {
            true => r.mcp.push(n, record),
            false => r.plain.push(n, Plain::of(record)),
        }
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

    /// Session `id`'s entry, made (and its hash computed) on first use;
    /// found through `hint` (the session's, when the request found one).
    pub(super) fn entry(
        &self,
        id: &str,
        hint: Option<&Hint>,
        hasher: &SessionHasher,
    ) -> Arc<Calls> {
        let make = || Calls {
            hash: hasher.hash(id),
            ttl: self.ttl,
            inner: Mutex::new(Recent {
                mcp: Kept(VecDeque::new()),
                plain: Kept(VecDeque::new()),
                next: 0,
                used: Instant::now(),
            }),
        };
        if let Some(hint) = hint {
            return self.calls.get_or_insert_hinted(id.as_bytes(), hint, make);
        }
        if let Some(e) = self.calls.get(id.as_bytes()) {
            return e;
        }
        self.calls.get_or_insert(id.as_bytes().to_vec(), make)
    }

    /// Session `id`'s requests on every route, oldest first (`None` once
    /// its entry idled past the TTL).
    pub fn get(&self, id: &str) -> Option<Vec<Record>> {
        let entry = self.calls.get(id.as_bytes())?;
        let r = entry.inner.lock().unwrap_or_else(|e| e.into_inner());
        (r.used + entry.ttl > Instant::now()).then(|| r.records())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::SystemTime;

    fn rec(i: u64) -> Record {
        Record {
            ts: SystemTime::UNIX_EPOCH,
            route: "crm",
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

    /// A request of a route without an MCP view, as `record` in
    /// `proxy/doors/route.rs` builds one: no session hash, method, tool or
    /// id.
    fn plain(i: u64) -> Record {
        Record {
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(i),
            session: String::new(),
            method: String::new(),
            tool: None,
            rpc_id: None,
            status: 201,
            code: Some("upstream.timeout"),
            upstream_ms: i.is_multiple_of(2).then_some(2.5),
            mcp: false,
            ..rec(i)
        }
    }

    #[test]
    fn the_timeline_keeps_the_last_hundred() {
        let t = Timeline::new(1 << 20, Duration::from_secs(60));
        let h = SessionHasher::new(b"k");
        for i in 0..150 {
            t.entry("c1", None, &h).push(rec(i), Instant::now());
        }
        let got = t.get("c1").unwrap();
        assert_eq!(got.len(), TIMELINE_LEN);
        let room = |t: &Timeline| {
            let e = t.entry("c1", None, &h);
            let r = e.inner.lock().unwrap();
            (r.mcp.0.capacity(), r.plain.0.capacity())
        };
        assert_eq!(
            room(&t).0,
            TIMELINE_LEN,
            "past its first room, all in one step"
        );
        assert_eq!(got[0].rpc_id, Some(Value::from(50)));
        assert!(t.get("c2").is_none());
        // Other routes' requests never push the MCP ones out.
        for i in 0..150 {
            t.entry("c1", None, &h)
                .push(plain(1000 + i), Instant::now());
        }
        let got = t.get("c1").unwrap();
        let mcp: Vec<_> = got.iter().filter(|r| r.mcp).collect();
        assert_eq!((got.len(), mcp.len()), (2 * TIMELINE_LEN, TIMELINE_LEN));
        assert_eq!(room(&t), (TIMELINE_LEN, TIMELINE_LEN), "and never more");
        assert_eq!(mcp[0].rpc_id, Some(Value::from(50)));
        let oldest = got.iter().find(|r| !r.mcp).unwrap();
        assert_eq!(
            oldest.ts,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1050)
        );
    }

    /// Both kinds read back in the order they came, a plain request as it
    /// was recorded (all the console shows of it).
    #[test]
    fn requests_of_both_kinds_read_back_in_order_and_whole() {
        let t = Timeline::new(1 << 20, Duration::from_secs(60));
        let h = SessionHasher::new(b"k");
        let sent: Vec<Record> = (0..40u64)
            .map(|i| {
                if i.is_multiple_of(3) {
                    rec(i)
                } else {
                    plain(i)
                }
            })
            .collect();
        for r in &sent {
            t.entry("c1", None, &h).push(r.clone(), Instant::now());
        }
        assert_eq!(t.get("c1").unwrap(), sent);
        let e = t.entry("c1", None, &h);
        assert_eq!(
            e.inner.lock().unwrap().plain.0.capacity(),
            TIMELINE_LEN,
            "26 outgrew the first room"
        );
        assert_eq!(std::mem::size_of::<Numbered<Plain>>(), 64, "one cache line");
        let r = e.inner.lock().unwrap();
        let mut slots = r.plain.0.iter().map(|s| std::ptr::from_ref(s) as usize);
        assert!(slots.all(|at| at % 64 == 0), "each its own line");
        assert!(
            std::mem::size_of::<Numbered<Record>>() <= 256,
            "as budgeted"
        );
    }
}
