//! The call timeline: the last requests of every live session, by route
//! kind, bounded in bytes as a whole.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Record, SessionHasher};
use crate::shards::{Entry, Sharded};

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
    pub(super) hash: String,
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
    pub(super) fn push(&self, record: Record, now: Instant) {
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
    pub(super) fn entry(&self, id: &str, hasher: &SessionHasher) -> Arc<Calls> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::SystemTime;

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
}
