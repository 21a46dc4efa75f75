//! A map sharded under read-write locks, for lookups on the request path
//! (credential slots, call timelines): a lookup costs a hash and a read
//! lock, with none of a general cache's per-read bookkeeping (recency
//! lists, frequency sketches, timer wheels). Entries go at sweeps, which
//! run as the map grows.
//!
//! In front of the shards, each thread remembers the entries it looked up
//! last ([`near`]): a worker serves a call's requests one after another,
//! and the shard's lookup (FNV-1a for the shard, a read lock, SipHash of
//! the key) is dearer on every request than a quick keyed hash and a probe
//! of the thread's map.
//! An entry is only ever removed by a sweep, which drops it only when no
//! one else holds it ([`drop_unheld`]), so a line whose `Weak` still
//! upgrades names the map's entry.

pub mod near;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Instant;

use near::Near;

const SHARDS: usize = 16;

/// Every this many inserts, one shard is swept.
const SWEEP_EVERY: usize = 256;

/// What a sweep asks of an entry.
pub trait Entry {
    /// Whether to keep it at a sweep at `now` (an entry someone holds is
    /// kept regardless).
    fn keep(&self, now: Instant) -> bool;

    /// When it was last used, for an entry that may be dropped to make
    /// room in a full shard (least recently used first); `None` (the
    /// default) for one that stays while `keep` says so.
    fn last_used(&self) -> Option<Instant> {
        None
    }
}

type Shard<V> = RwLock<HashMap<Box<[u8]>, Arc<V>>>;

/// The map.
pub struct Sharded<V> {
    shards: Vec<Shard<V>>,
    max: usize,
    inserted: AtomicUsize,
    /// The entries this thread looked up last.
    near: Near,
}

impl<V: Entry + Send + Sync + 'static> Sharded<V> {
    /// At most about `max` entries once sweeps have run.
    pub fn new(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            max,
            inserted: AtomicUsize::new(0),
            near: Near::default(),
        }
    }

    /// The entry for `key` this thread looked up last, if the map still
    /// holds it; else the hash to remember it under.
    fn near(&self, key: &[u8]) -> Result<Arc<V>, u64> {
        let hash = self.near.hash(key);
        self.near.get(hash, key, 0).ok_or(hash)
    }

    fn remember(&self, hash: u64, key: &[u8], entry: &Arc<V>) {
        self.near.remember(hash, key, 0, entry);
    }

    /// The shard by FNV-1a of the key: cheap, and a caller who crowds one
    /// shard only adds lock contention there; the map inside hashes with
    /// SipHash under a random key, so lookups stay O(1) whatever the keys.
    fn shard(&self, key: &[u8]) -> &Shard<V> {
        let h = fnv1a(key);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// The entry for `key`, if there is one.
    pub fn get(&self, key: &[u8]) -> Option<Arc<V>> {
        let hash = match self.near(key) {
            Ok(entry) => return Some(entry),
            Err(hash) => hash,
        };
        let entry = self.shard(key).read().ok()?.get(key).cloned()?;
        self.remember(hash, key, &entry);
        Some(entry)
    }

    /// The entry for `key`, made now if there is none.
    pub fn get_or_insert(&self, key: Vec<u8>, make: impl FnOnce() -> V) -> Arc<V> {
        let hash = match self.near(&key) {
            Ok(entry) => return entry,
            Err(hash) => hash,
        };
        let (entry, in_map) = self.insert(key.clone(), make);
        if in_map {
            self.remember(hash, &key, &entry);
        }
        entry
    }

    /// The entry `hint` names, if the map still holds it; else the entry
    /// for `key`, made now if there is none, and named by `hint` from now
    /// on (when it named none yet). `hint` must be kept for `key` only.
    pub fn get_or_insert_hinted(
        &self,
        key: &[u8],
        hint: &Hint,
        make: impl FnOnce() -> V,
    ) -> Arc<V> {
        if let Some(entry) = hint.get() {
            return entry;
        }
        if let Some(entry) = self.get(key) {
            hint.set(&entry);
            return entry;
        }
        let (entry, in_map) = self.insert(key.to_vec(), make);
        if in_map {
            hint.set(&entry);
        }
        entry
    }

    /// The entry for `key`, made now if there is none; and whether the
    /// map holds it.
    fn insert(&self, key: Vec<u8>, make: impl FnOnce() -> V) -> (Arc<V>, bool) {
        let n = self.inserted.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1
            && let Ok(mut map) = self.shards[(n / SWEEP_EVERY) % SHARDS].write()
        {
            sweep(&mut map, self.per_shard());
        }
        let Ok(mut map) = self.shard(&key).write() else {
            // A poisoned shard (a panic while it was held): serve from an
            // entry of this request's own rather than fail it.
            return (Arc::new(make()), false);
        };
        if map.len() >= self.per_shard() {
            sweep(&mut map, self.per_shard());
        }
        let entry = (map.entry(key.into_boxed_slice()))
            .or_insert_with(|| Arc::new(make()))
            .clone();
        (entry, true)
    }

    fn per_shard(&self) -> usize {
        (self.max / SHARDS).max(1)
    }
}

/// Where an entry of another map (a session) keeps the entry a
/// [`Sharded`] map holds for the same key (its timeline), so that a request
/// which holds the one reaches the other from a line it has read already,
/// without a probe of the thread's near lines. Set once, by the first
/// lookup through it; a `Weak`, so it holds nothing the map dropped (an
/// entry goes only when no one holds it, see [`drop_unheld`], so a hint
/// that upgrades names the map's entry), and a hint whose entry was dropped
/// is only a miss. Empty when cloned: a clone is another entry's.
#[derive(Default)]
pub struct Hint(OnceLock<Weak<dyn Any + Send + Sync>>);

impl Hint {
    fn get<V: Any + Send + Sync>(&self) -> Option<Arc<V>> {
        self.0.get()?.upgrade()?.downcast::<V>().ok()
    }

    fn set<V: Any + Send + Sync>(&self, entry: &Arc<V>) {
        let entry: Arc<dyn Any + Send + Sync> = entry.clone();
        let _ = self.0.set(Arc::downgrade(&entry));
    }
}

impl Clone for Hint {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Drops what is neither held nor kept; then, if the shard is still full,
/// the least recently used of the entries that may go for room, down to
/// three quarters of `full` (so the next sweep is not at the next insert).
fn sweep<V: Entry>(map: &mut HashMap<Box<[u8]>, Arc<V>>, full: usize) {
    let now = Instant::now();
    let unkept: Vec<Box<[u8]>> = (map.iter())
        .filter(|(_, v)| Arc::strong_count(v) == 1 && !v.keep(now))
        .map(|(k, _)| k.clone())
        .collect();
    for k in unkept {
        drop_unheld(map, k);
    }
    if map.len() < full {
        return;
    }
    let mut by_age: Vec<(Instant, Box<[u8]>)> = (map.iter())
        .filter(|(_, v)| Arc::strong_count(v) == 1)
        .filter_map(|(k, v)| v.last_used().map(|t| (t, k.clone())))
        .collect();
    by_age.sort_unstable_by_key(|(t, _)| *t);
    let excess = map.len().saturating_sub(full * 3 / 4);
    for (_, k) in by_age.into_iter().take(excess) {
        drop_unheld(map, k);
    }
}

/// Removes `key`'s entry and drops it, unless someone holds it: a thread
/// may upgrade its near line at any moment, the shard's lock
/// notwithstanding, and `try_unwrap` settles the race atomically (once it
/// succeeds, no `Weak` upgrades; if an upgrade came first, the entry goes
/// back and stays the map's).
fn drop_unheld<V>(map: &mut HashMap<Box<[u8]>, Arc<V>>, key: Box<[u8]>) {
    if let Some(v) = map.remove(&key)
        && let Err(held) = Arc::try_unwrap(v)
    {
        map.insert(key, held);
    }
}

/// FNV-1a: stable across runs and cheap; enough to tell two declarations
/// apart, to spread keys over shards, or to find a handle among a bounded
/// set. Not for a map an attacker could fill.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(0xcbf2_9ce4_8422_2325, bytes)
}

/// FNV-1a continued from `h`, for keys made of several parts.
pub fn fnv1a_from(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// For a map whose keys are hashes already (FNV-1a of bounded label
/// sets, or a keyed SipHash computed once): used as they are, not hashed
/// again on every lookup.
pub type Prehashed = std::hash::BuildHasherDefault<KeyIsHash>;

/// See [`Prehashed`].
#[derive(Default)]
pub struct KeyIsHash(u64);

impl std::hash::Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct E {
        keep: bool,
        used: Option<Instant>,
    }

    impl Entry for E {
        fn keep(&self, _: Instant) -> bool {
            self.keep
        }
        fn last_used(&self) -> Option<Instant> {
            self.used
        }
    }

    #[test]
    fn sweeps_drop_unheld_unkept_entries_then_the_oldest_for_room() {
        let t0 = Instant::now();
        let mut map: HashMap<Box<[u8]>, Arc<E>> = HashMap::new();
        let mut put = |k: &str, keep, used| {
            let e = Arc::new(E { keep, used });
            map.insert(k.as_bytes().into(), e.clone());
            e
        };
        let _held = put("held", false, None);
        put("gone", false, None);
        put("stays", true, None);
        for i in 0..5 {
            put(&format!("lru{i}"), true, Some(t0 + Duration::from_secs(i)));
        }
        sweep(&mut map, 8);
        assert!(map.contains_key(&b"held"[..]) && !map.contains_key(&b"gone"[..]));
        assert_eq!(map.len(), 7, "under `full`: nothing dropped for room");
        sweep(&mut map, 4);
        let mut kept: Vec<_> = map
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            ["held", "lru4", "stays"],
            "the oldest went first, down to 3/4 of full"
        );
    }

    #[test]
    fn an_entry_upgraded_between_the_check_and_the_drop_stays_the_maps() {
        // The race a thread's line opens: the sweep saw the entry unheld,
        // then a `Weak` upgraded before it went.
        let mut map: HashMap<Box<[u8]>, Arc<E>> = HashMap::new();
        let e = Arc::new(E {
            keep: false,
            used: None,
        });
        let line = Arc::downgrade(&e);
        map.insert(b"k"[..].into(), e);
        let upgraded = line.upgrade();
        drop_unheld(&mut map, b"k"[..].into());
        let kept = map.get(&b"k"[..]).cloned();
        assert!(kept.is_some_and(|k| upgraded.is_some_and(|u| Arc::ptr_eq(&k, &u))));
        drop_unheld(&mut map, b"k"[..].into());
        assert!(
            map.is_empty() && line.upgrade().is_none(),
            "unheld: dropped"
        );
    }

    #[test]
    fn lookups_find_inserts() {
        let m: Sharded<E> = Sharded::new(1_000);
        assert!(m.get(b"a").is_none());
        let a = m.get_or_insert(b"a".to_vec(), || E {
            keep: true,
            used: None,
        });
        let again = m.get_or_insert(b"a".to_vec(), || panic!("made twice"));
        assert!(Arc::ptr_eq(&a, &again));
        assert!(m.get(b"a").is_some_and(|s| Arc::ptr_eq(&s, &a)));
    }

    #[test]
    fn a_thread_never_finds_an_entry_the_map_no_longer_holds() {
        // One entry per shard: each insert into a full shard sweeps it.
        let m: Sharded<E> = Sharded::new(SHARDS);
        let gone = |keep| E { keep, used: None };
        let a = Arc::downgrade(&m.get_or_insert(b"a".to_vec(), || gone(false)));
        assert!(m.get(b"a").is_some(), "looked up from this thread's lines");
        for i in 0..64 {
            m.get_or_insert(format!("k{i}").into_bytes(), || gone(true));
        }
        assert!(a.upgrade().is_none(), "a sweep dropped it");
        assert!(m.get(b"a").is_none());
        let again = m.get_or_insert(b"a".to_vec(), || gone(true));
        assert!(m.get(b"a").is_some_and(|s| Arc::ptr_eq(&s, &again)));
        let other: Sharded<E> = Sharded::new(SHARDS);
        assert!(
            other.get(b"a").is_none(),
            "another map's line is not this one's"
        );
    }

    #[test]
    fn a_hint_names_the_maps_entry_and_is_only_a_miss_once_it_was_dropped() {
        let m: Sharded<E> = Sharded::new(SHARDS);
        let gone = |keep| E { keep, used: None };
        let hint = Hint::default();
        let a = m.get_or_insert_hinted(b"a", &hint, || gone(false));
        let again = m.get_or_insert_hinted(b"a", &hint, || panic!("made twice"));
        assert!(Arc::ptr_eq(&a, &again));
        assert!(m.get(b"a").is_some_and(|e| Arc::ptr_eq(&e, &a)));
        assert!(
            Hint::clone(&hint).get::<E>().is_none(),
            "a clone names nothing"
        );
        assert!(hint.get::<u8>().is_none(), "another type");
        // Dropped by a sweep: the hint names nothing, the map makes anew.
        let weak = Arc::downgrade(&a);
        drop((a, again));
        for i in 0..64 {
            m.get_or_insert(format!("k{i}").into_bytes(), || gone(true));
        }
        assert!(weak.upgrade().is_none() && hint.get::<E>().is_none());
        let new = m.get_or_insert_hinted(b"a", &hint, || gone(true));
        assert!(m.get(b"a").is_some_and(|e| Arc::ptr_eq(&e, &new)));
    }
}
