//! A thread's near lines in front of shared maps: the entry a worker
//! looked up last for a key, held by a `Weak`. A worker serves one call's
//! requests one after another, so a lookup it repeats costs a quick keyed
//! hash and a probe of its own map, with no lock and none of the shared
//! map's bookkeeping. [`Sharded`](super::Sharded) maps (credential slots,
//! call timelines) and the in-memory session store
//! (`session::store::memo`) keep theirs here.
//!
//! A line is a hint, checked on every use, never the truth:
//! - it keeps a `Weak` to the entry, so what its owner dropped is gone
//!   here too (and no entry's data outlives the owner's bounds: a `Weak`
//!   keeps only the emptied allocation);
//! - it keeps the `stamp` its owner gave for the key before the owner was
//!   read (a write count), and answers only to that stamp, so a line older
//!   than a write never answers;
//! - it answers only to the owner that remembered it.
//!
//! Per-thread state: the lines are the thread's own (`thread_local!`), so
//! no lock guards them; no borrow is held across an `.await` (every access
//! is one synchronous call). Correctness does not rest on which thread a
//! task runs on: a line found on another thread is only a miss.

use std::any::Any;
use std::cell::RefCell;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use hashbrown::HashTable;

/// Lines one thread keeps, all owners together; past it, the map starts
/// over. At most about 8,192 × (a line, and the emptied allocation its
/// `Weak` may keep) per thread.
const LINES: usize = 8192;

/// The longest key a line holds. Keys are call ids: a UUID is 36 bytes,
/// the platforms' own ids shorter. A longer key gets no line (its lookups
/// go to the owner's map every time): holding it in place is what lets a
/// probe check the key in the line it already read, where a boxed key was
/// one more cold cache line per lookup.
pub const KEY_MAX: usize = 39;

/// One remembered lookup, in one cache line: its owner, the stamp, the
/// key and the `Weak`.
#[repr(align(64))]
struct Line {
    owner: u32,
    stamp: u32,
    len: u8,
    key: [u8; KEY_MAX],
    entry: Weak<dyn Any + Send + Sync>,
}

impl Line {
    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.len)]
    }

    fn is(&self, owner: u32, key: &[u8]) -> bool {
        self.owner == owner && self.key() == key
    }
}

thread_local! {
    /// This thread's lines, by [`quick_keyed`] hash of owner and key
    /// (computed once per lookup; again only when the table grows).
    static LINES_OF_THREAD: RefCell<HashTable<Line>> = const { RefCell::new(HashTable::new()) };
}

/// One hash seed for the process, random at start. foldhash rather than
/// SipHash (far cheaper on a short call id): only keys an owner holds get
/// a line, and a thread keeps a bounded number of them, so a caller who
/// guessed colliding keys would only make its own lookups miss the
/// thread's map.
fn quick_keyed() -> &'static foldhash::fast::RandomState {
    static KEY: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    KEY.get_or_init(foldhash::fast::RandomState::default)
}

fn hash_of(owner: u32, key: &[u8]) -> u64 {
    quick_keyed().hash_one((owner, key))
}

/// One owner's lines (a map, a store), told from every other's.
pub struct Near {
    id: u32,
}

impl Default for Near {
    fn default() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl Near {
    /// The hash `key`'s line is kept under.
    pub fn hash(&self, key: &[u8]) -> u64 {
        hash_of(self.id, key)
    }

    /// The entry remembered under `hash` for `key` at `stamp`, if its owner
    /// still holds it.
    pub fn get<V: Any + Send + Sync>(&self, hash: u64, key: &[u8], stamp: u32) -> Option<Arc<V>> {
        if key.len() > KEY_MAX {
            // It can have no line: no probe.
            return None;
        }
        let found = LINES_OF_THREAD.try_with(|lines| {
            let lines = lines.borrow();
            let line = (lines.find(hash, |l| l.is(self.id, key))).filter(|l| l.stamp == stamp)?;
            line.entry.upgrade()?.downcast::<V>().ok()
        });
        found.ok().flatten()
    }

    /// Remembers `entry` for `key`, read at `stamp` (nothing, for a key
    /// longer than [`KEY_MAX`]).
    pub fn remember<V: Any + Send + Sync>(
        &self,
        hash: u64,
        key: &[u8],
        stamp: u32,
        entry: &Arc<V>,
    ) {
        if key.len() > KEY_MAX {
            return;
        }
        let entry: Arc<dyn Any + Send + Sync> = entry.clone();
        let mut line = Line {
            owner: self.id,
            stamp,
            // At most KEY_MAX, checked above.
            len: key.len() as u8,
            key: [0; KEY_MAX],
            entry: Arc::downgrade(&entry),
        };
        line.key[..key.len()].copy_from_slice(key);
        let _ = LINES_OF_THREAD.try_with(|lines| {
            let mut lines = lines.borrow_mut();
            if lines.len() >= LINES {
                lines.clear();
            }
            let rehash = |l: &Line| hash_of(l.owner, l.key());
            match lines.entry(hash, |l| l.is(self.id, key), rehash) {
                hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = line,
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(line);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_answers_its_owner_its_key_and_its_stamp_only() {
        let (a, b) = (Near::default(), Near::default());
        let entry = Arc::new(7u32);
        let h = a.hash(b"k");
        a.remember(h, b"k", 3, &entry);
        assert_eq!(a.get::<u32>(h, b"k", 3).as_deref(), Some(&7));
        assert!(a.get::<u32>(h, b"k", 4).is_none(), "a later stamp");
        assert!(a.get::<u64>(h, b"k", 3).is_none(), "another type");
        assert!(b.get::<u32>(h, b"k", 3).is_none(), "another owner");
        assert!(b.get::<u32>(b.hash(b"k"), b"k", 3).is_none());
        a.remember(h, b"k", 4, &entry);
        assert_eq!(
            a.get::<u32>(h, b"k", 4).as_deref(),
            Some(&7),
            "a line replaced"
        );
        assert!(a.get::<u32>(h, b"k", 3).is_none(), "the replaced line");
        drop(entry);
        assert!(a.get::<u32>(h, b"k", 4).is_none(), "dropped by its owner");
    }

    #[test]
    fn a_line_is_one_cache_line_and_a_long_key_gets_none() {
        assert_eq!(std::mem::size_of::<Line>(), 64);
        let a = Near::default();
        let entry = Arc::new(1u8);
        // Each length of its own byte: the 40-byte key's first 39 bytes
        // must not be the 39-byte key held before it, which a probe under
        // the longer key's hash finds when their tags match (1 run in 128).
        for (len, byte) in [(KEY_MAX, b'a'), (KEY_MAX + 1, b'b'), (300, b'c')] {
            let key = vec![byte; len];
            let h = a.hash(&key);
            a.remember(h, &key, 0, &entry);
            let held = a.get::<u8>(h, &key, 0).is_some();
            assert_eq!(held, len <= KEY_MAX, "{len}");
            // A key that shares the held one's first bytes is not it.
            assert!(a.get::<u8>(h, &key[..len - 1], 0).is_none());
        }
    }
}
