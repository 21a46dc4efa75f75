//! The call timeline: the last requests of every live session, by route
//! kind, bounded in bytes as a whole.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Record, SessionHasher};
use crate::shards::{Entry, Hint, Sharded};

/// Requests kept per session in the timeline: this many MCP requests, and
/// as many of other routes' (so a busy plain route never pushes a call's
/// MCP requests out of `GET /calls/{id}`).
pub const TIMELINE_LEN: usize = 100;

/// Room a session's MCP requests start with, on its first MCP request:
/// most calls make fewer, and never move their entries. One that outgrows
/// it gets room for all it may keep ([`TIMELINE_LEN`]) in one step
/// (doubling on would move the entries again at each step; the budget
/// counts that room for every session anyway). Plain requests have all
/// their room from the start ([`Ring`]).
const FIRST_ROOM: usize = 16;

/// What a session's timeline is budgeted at: a hundred MCP records of
/// about 256 bytes and a hundred [`Plain`] ones of 16.
const CALLS_BYTES: u64 = (TIMELINE_LEN * (256 + std::mem::size_of::<Plain>())) as u64;

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
///
/// `repr(C)`, the lock first: after the allocation's reference counts,
/// the lock and the head of [`Recent`], what a plain request reads and
/// writes is in the entry's first 128 bytes and one slot
/// (BENCHMARKS.md, "The call timeline's plain records").
#[repr(C)]
pub struct Calls {
    inner: Mutex<Recent>,
    ttl: Duration,
    pub(super) hash: String,
}

/// `repr(C)`, in the order a plain request reaches the fields: the line
/// it shares with the counts and the lock (`used`, `next`, `base_ms`),
/// the next (the ring's positions and the names), then the slots.
#[repr(C)]
struct Recent {
    used: Instant,
    /// The number the next request gets (both kinds count on one), so
    /// the two read back in the order they came.
    next: u64,
    /// The first plain request's arrival, in whole milliseconds since the
    /// Unix epoch ([`NO_BASE`] before it): a [`Plain`] keeps its own as an
    /// offset from it.
    base_ms: i64,
    ring: Ring,
    names: Names,
    plain: [Plain; TIMELINE_LEN],
    mcp: Kept,
}

/// `base_ms` before the first plain request (epoch milliseconds are
/// never negative).
const NO_BASE: i64 = i64::MIN;

/// The last [`TIMELINE_LEN`] MCP requests, oldest first.
struct Kept(VecDeque<Numbered>);

/// A kept MCP request and the number it came as, starting a cache line.
#[repr(align(64))]
struct Numbered(u64, Record);

impl Kept {
    fn push(&mut self, item: Numbered) {
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
        q.push_back(item);
    }
}

/// Where the last [`TIMELINE_LEN`] plain requests are in
/// [`Recent::plain`]: in the entry itself, with room for all of them from
/// the start (the budget counts it for every session anyway), so a push
/// writes where the entry already is, not in a buffer of its own
/// elsewhere. `head` and `len` count in a `u8`.
#[derive(Default)]
struct Ring {
    /// The oldest's slot.
    head: u8,
    len: u8,
}

const _: () = assert!(TIMELINE_LEN <= u8::MAX as usize);

/// A slot no request has used yet.
const EMPTY: Plain = Plain {
    n: 0,
    at_ms: 0,
    upstream_ms: f32::NAN,
    status: 0,
    route: UNNAMED,
    code: 0,
};

impl Ring {
    fn push(&mut self, slots: &mut [Plain; TIMELINE_LEN], p: Plain) {
        let (head, len) = (usize::from(self.head), usize::from(self.len));
        slots[(head + len) % TIMELINE_LEN] = p;
        if len < TIMELINE_LEN {
            self.len += 1;
        } else {
            self.head = ((head + 1) % TIMELINE_LEN) as u8;
        }
    }

    /// Oldest first.
    fn iter<'a>(&self, slots: &'a [Plain; TIMELINE_LEN]) -> impl Iterator<Item = &'a Plain> {
        let head = usize::from(self.head);
        (0..usize::from(self.len)).map(move |i| &slots[(head + i) % TIMELINE_LEN])
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }
}

/// The names (routes, error codes) an entry's plain requests were
/// recorded with, each once: a [`Plain`] keeps their places. The first
/// [`FIRST_NAMES`] are held in place, in the entry's second cache line: a
/// call uses a route or two.
#[repr(C)]
struct Names {
    len: u8,
    first: [&'static str; FIRST_NAMES],
    more: Vec<&'static str>,
}

/// Names held in the entry itself.
const FIRST_NAMES: usize = 3;

impl Names {
    fn new() -> Self {
        Self {
            len: 0,
            first: [""; FIRST_NAMES],
            more: Vec::new(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        let held = usize::from(self.len).min(FIRST_NAMES);
        self.first[..held].iter().chain(&self.more).copied()
    }

    /// `name`'s place, added if new ([`UNNAMED`] once full). Found by its
    /// address first: a route's name is interned and a code is a literal,
    /// so a request need not read their bytes, elsewhere and cold.
    fn place(&mut self, name: &'static str) -> u8 {
        let found = (self.iter().position(|n| std::ptr::eq(n, name)))
            .or_else(|| self.iter().position(|n| n == name));
        if let Some(i) = found {
            return i as u8;
        }
        // Below UNNAMED, so that a code's place plus one is not UNNAMED.
        if usize::from(self.len) >= usize::from(UNNAMED) - 1 {
            return UNNAMED;
        }
        match self.first.get_mut(usize::from(self.len)) {
            Some(held) => *held = name,
            None => self.more.push(name),
        }
        self.len += 1;
        self.len - 1
    }

    fn name(&self, place: u8) -> &'static str {
        self.iter().nth(usize::from(place)).unwrap_or(UNNAMED_NAME)
    }
}

/// A request without an MCP view, as the timeline keeps it: what the
/// console's call inspector shows of one (such a request has no method,
/// tool, id or session hash, and is never audited nor listed by `GET
/// /calls/{id}`), in 16 bytes, four to a cache line. A plain route's
/// every request adds one to its session's [`Ring`], so this is what it
/// costs it.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Plain {
    /// The low half of the number it came as: compared with the MCP
    /// records' numbers in serial arithmetic (RFC 1982), exact while a
    /// call's kept records are fewer than 2^31 requests apart.
    n: u32,
    /// Arrival, in milliseconds after the entry's `base_ms` (before it,
    /// when negative; held within ±24 days of it).
    at_ms: i32,
    /// NaN: the upstream was not reached.
    upstream_ms: f32,
    status: u16,
    /// The route's place in the entry's `names` ([`UNNAMED`] past them).
    route: u8,
    /// The error code's place in `names` plus one; 0 for none.
    code: u8,
}

/// The place that stands for a name past the 254 an entry holds (a call
/// with more distinct routes and codes than that).
const UNNAMED: u8 = u8::MAX;

/// What a name past [`UNNAMED`] reads back as.
const UNNAMED_NAME: &str = "?";

/// Milliseconds since the Unix epoch, whole (0 before it).
fn epoch_ms(t: SystemTime) -> i64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether number `m` (an MCP record's) came before `p` (a plain one's
/// low half).
fn came_before(m: u64, p: u32) -> bool {
    ((m as u32).wrapping_sub(p) as i32) < 0
}

impl Recent {
    /// Adds `r`, numbered `n`, as a [`Plain`], dropping the oldest past
    /// [`TIMELINE_LEN`].
    fn push_plain(&mut self, n: u64, r: &Record) {
        let ts = epoch_ms(r.ts);
        if self.base_ms == NO_BASE {
            self.base_ms = ts;
        }
        let base = self.base_ms;
        let at_ms = ts
            .saturating_sub(base)
            .clamp(i32::MIN.into(), i32::MAX.into()) as i32;
        let code = (r.code).map_or(0, |c| self.names.place(c).saturating_add(1));
        let p = Plain {
            n: n as u32,
            at_ms,
            upstream_ms: r.upstream_ms.map_or(f32::NAN, |ms| ms as f32),
            status: r.status,
            route: self.names.place(r.route),
            code,
        };
        self.ring.push(&mut self.plain, p);
    }

    /// A kept [`Plain`] as the record it was made from.
    fn record(&self, p: &Plain) -> Record {
        // Set before the first plain record was made.
        let ms = self.base_ms.saturating_add(p.at_ms.into());
        let ts = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or_default());
        Record {
            ts,
            route: self.names.name(p.route),
            session: String::new(),
            method: String::new(),
            tool: None,
            rpc_id: None,
            status: p.status,
            code: p.code.checked_sub(1).map(|c| self.names.name(c)),
            warning: None,
            upstream_ms: (!p.upstream_ms.is_nan()).then_some(f64::from(p.upstream_ms)),
            credentials: Vec::new(),
            mcp: false,
        }
    }

    /// Both kinds' requests, in the order they came.
    fn records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.mcp.0.len() + self.ring.len());
        let mut mcp = self.mcp.0.iter().peekable();
        let mut plain = self.ring.iter(&self.plain).peekable();
        loop {
            let mcp_first = match (mcp.peek(), plain.peek()) {
                (Some(Numbered(m, _)), Some(p)) => came_before(*m, p.n),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return out,
            };
            match mcp_first {
                true => out.extend(mcp.next().map(|Numbered(_, r)| r.clone())),
                false => out.extend(plain.next().map(|p| self.record(p))),
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
            true => r.mcp.push(Numbered(n, record)),
            false => r.push_plain(n, &record),
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
            inner: Mutex::new(Recent {
                used: Instant::now(),
                next: 0,
                base_ms: NO_BASE,
                ring: Ring::default(),
                names: Names::new(),
                plain: [EMPTY; TIMELINE_LEN],
                mcp: Kept(VecDeque::new()),
            }),
            ttl: self.ttl,
            hash: hasher.hash(id),
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
            (r.mcp.0.capacity(), r.ring.len())
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
        assert_eq!(std::mem::size_of::<Plain>(), 16, "four to a cache line");
        assert_eq!(std::mem::align_of::<Plain>(), 16, "none across two");
        assert!(std::mem::size_of::<Numbered>() <= 256, "as budgeted");
    }

    /// What a plain request reaches besides its slot is in the entry's
    /// first 128 bytes, the fields it writes most in the first 64 with the
    /// reference counts and the lock (whether those are two lines or three
    /// is where the allocator starts the entry).
    #[test]
    fn a_plain_push_stays_in_the_entrys_first_lines() {
        let t = Timeline::new(1 << 20, Duration::from_secs(60));
        let e = t.entry("c1", None, &SessionHasher::new(b"k"));
        // `Arc`'s two counts come before what it holds.
        let start = Arc::as_ptr(&e) as usize - 2 * std::mem::size_of::<usize>();
        let r = e.inner.lock().unwrap();
        // Where a field ends, counted from the allocation's start.
        fn end<T>(start: usize, field: &T) -> usize {
            field as *const T as usize + std::mem::size_of_val(field) - start
        }
        let first = [
            end(start, &r.used),
            end(start, &r.next),
            end(start, &r.base_ms),
        ];
        assert!(first.iter().all(|&e| e <= 64), "{first:?}");
        assert!(end(start, &r.ring) <= 128 && end(start, &r.names.first) <= 128);
    }

    /// A name has one place whatever address it comes from (a reload
    /// interns its routes' names anew).
    #[test]
    fn a_name_is_found_by_its_bytes_too() {
        let mut names = Names::new();
        let again: &'static str = String::from("crm").leak();
        assert_eq!((names.place("crm"), names.place(again)), (0, 0));
        assert_eq!((names.place("hr"), names.len, names.name(1)), (1, 2, "hr"));
    }

    /// A plain request keeps its number's low half: the two kinds still
    /// read back in order across its wrap.
    #[test]
    fn the_order_holds_across_the_plain_numbers_wrap() {
        let t = Timeline::new(1 << 20, Duration::from_secs(60));
        let h = SessionHasher::new(b"k");
        let e = t.entry("c1", None, &h);
        e.inner.lock().unwrap().next = u64::from(u32::MAX) - 3;
        let sent: Vec<Record> = (0..12u64)
            .map(|i| if i % 4 == 1 { rec(i) } else { plain(i) })
            .collect();
        for r in &sent {
            e.push(r.clone(), Instant::now());
        }
        assert_eq!(t.get("c1").unwrap(), sent);
    }

    /// Times read back to the millisecond, before the first plain
    /// request's as after it; past the names an entry holds, a route
    /// reads back as `?` and nothing fails.
    #[test]
    fn plain_times_and_names_read_back() {
        let t = Timeline::new(1 << 20, Duration::from_secs(60));
        let h = SessionHasher::new(b"k");
        let e = t.entry("c1", None, &h);
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let first = Record {
            ts: at(1_700_000_000_123),
            ..plain(0)
        };
        let earlier = Record {
            ts: at(1_699_999_999_001),
            ..plain(1)
        };
        e.push(first.clone(), Instant::now());
        e.push(earlier.clone(), Instant::now());
        assert_eq!(t.get("c1").unwrap(), vec![first, earlier]);
        for i in 0..300 {
            let route: &'static str = crate::config::route::intern(&format!("r{i}"));
            e.push(
                Record {
                    route,
                    code: None,
                    ..plain(i)
                },
                Instant::now(),
            );
        }
        let got = t.get("c1").unwrap();
        assert_eq!(got.len(), TIMELINE_LEN);
        // 254 names: "crm", the code and 252 routes, r0 to r251.
        assert_eq!(got[0].route, "r200");
        assert_eq!(got[51].route, "r251");
        assert!(got[52..].iter().all(|r| r.route == UNNAMED_NAME));
        // A code past them reads back as `?` too, not as another name.
        e.push(
            Record {
                code: Some("upstream.unreachable"),
                ..plain(0)
            },
            Instant::now(),
        );
        let last = t.get("c1").unwrap().pop().unwrap();
        assert_eq!((last.route, last.code), ("crm", Some(UNNAMED_NAME)));
    }
}
