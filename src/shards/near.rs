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
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use super::Prehashed;

/// Lines one thread keeps, all owners together; past it, the map starts
/// over. At most about 8,192 × (the key + 200 bytes: the line, and the
/// emptied allocation its `Weak` may keep) per thread.
const LINES: usize = 8192;

/// One remembered lookup.
struct Line {
    owner: u64,
    key: Box<[u8]>,
    stamp: u32,
    entry: Weak<dyn Any + Send + Sync>,
}

thread_local! {
    /// This thread's lines, by [`quick_keyed`] hash of owner and key
    /// (computed once per lookup, not again by the map).
    static LINES_OF_THREAD: RefCell<HashMap<u64, Line, Prehashed>> = RefCell::new(HashMap::default());
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

/// One owner's lines (a map, a store), told from every other's.
pub struct Near {
    id: u64,
}

impl Default for Near {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl Near {
    /// The hash `key`'s line is kept under.
    pub fn hash(&self, key: &[u8]) -> u64 {
        quick_keyed().hash_one((self.id, key))
    }

    /// The entry remembered under `hash` for `key` at `stamp`, if its owner
    /// still holds it.
    pub fn get<V: Any + Send + Sync>(&self, hash: u64, key: &[u8], stamp: u32) -> Option<Arc<V>> {
        let found = LINES_OF_THREAD.try_with(|lines| {
            let lines = lines.borrow();
            let line = (lines.get(&hash))
                .filter(|l| l.owner == self.id && l.stamp == stamp && *l.key == *key)?;
            line.entry.upgrade()?.downcast::<V>().ok()
        });
        found.ok().flatten()
    }

    /// Remembers `entry` for `key`, read at `stamp`.
    pub fn remember<V: Any + Send + Sync>(
        &self,
        hash: u64,
        key: &[u8],
        stamp: u32,
        entry: &Arc<V>,
    ) {
        let entry: Arc<dyn Any + Send + Sync> = entry.clone();
        let line = Line {
            owner: self.id,
            key: key.into(),
            stamp,
            entry: Arc::downgrade(&entry),
        };
        let _ = LINES_OF_THREAD.try_with(|lines| {
            let mut lines = lines.borrow_mut();
            if lines.len() >= LINES {
                lines.clear();
            }
            lines.insert(hash, line);
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
        drop(entry);
        assert!(a.get::<u32>(h, b"k", 3).is_none(), "dropped by its owner");
    }
}
