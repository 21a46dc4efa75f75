//! The token slots by key: a sharded map read under a shared lock, swept
//! of slots that hold nothing usable as it grows. A request's lookup costs
//! a hash and a read lock, with none of a general cache's per-read
//! bookkeeping (recency lists, frequency sketches).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::Slot;

const SHARDS: usize = 16;

/// A slot whose token expired this long ago (and that nobody is using)
/// goes at the next sweep of its shard.
const STALE: Duration = Duration::from_secs(60);

/// Every this many new slots, one shard is swept.
const SWEEP_EVERY: usize = 256;

type Shard = RwLock<HashMap<Box<[u8]>, Arc<Slot>>>;

pub(super) struct Slots {
    shards: Vec<Shard>,
    max: usize,
    inserted: AtomicUsize,
}

impl Slots {
    /// At most about `max` slots once sweeps have run.
    pub(super) fn new(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            max,
            inserted: AtomicUsize::new(0),
        }
    }

    /// The shard by FNV-1a of the key: cheap, and a caller who crowds one
    /// shard only adds lock contention there; the map inside hashes with
    /// SipHash under a random key, so lookups stay O(1) whatever the keys.
    fn shard(&self, key: &[u8]) -> &Shard {
        let h = crate::config::credentials::fnv1a(key);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// The slot for `key`, if there is one.
    pub(super) fn get(&self, key: &[u8]) -> Option<Arc<Slot>> {
        self.shard(key).read().ok()?.get(key).cloned()
    }

    /// The slot for `key`, made now if there is none.
    pub(super) fn get_or_insert(&self, key: Vec<u8>, make: impl FnOnce() -> Slot) -> Arc<Slot> {
        let n = self.inserted.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(&self.shards[(n / SWEEP_EVERY) % SHARDS]);
        }
        let shard = self.shard(&key);
        let Ok(mut map) = shard.write() else {
            // A poisoned shard (a panic while it was held): serve from a
            // slot of this request's own rather than fail it.
            return Arc::new(make());
        };
        if map.len() >= self.max / SHARDS {
            sweep_map(&mut map);
        }
        map.entry(key.into_boxed_slice())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    fn sweep(&self, shard: &Shard) {
        if let Ok(mut map) = shard.write() {
            sweep_map(&mut map);
        }
    }
}

/// Drops the slots nobody holds whose token is gone or long expired; if
/// the shard is still full of live ones, it keeps them (each is a token
/// in use, and bounded by the callers' sessions).
fn sweep_map(map: &mut HashMap<Box<[u8]>, Arc<Slot>>) {
    let now = Instant::now();
    map.retain(|_, slot| Arc::strong_count(slot) > 1 || slot.live_at(now, STALE));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Slot {
        Slot {
            token: std::sync::Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            hits: Default::default(),
        }
    }

    #[test]
    fn lookups_find_inserts_and_sweeps_drop_only_unheld_empty_slots() {
        let slots = Slots::new(1_000);
        assert!(slots.get(b"a").is_none());
        let a = slots.get_or_insert(b"a".to_vec(), slot);
        let again = slots.get_or_insert(b"a".to_vec(), || panic!("made twice"));
        assert!(Arc::ptr_eq(&a, &again));
        assert!(slots.get(b"a").is_some_and(|s| Arc::ptr_eq(&s, &a)));
        let mut map = HashMap::new();
        map.insert(b"held".to_vec().into_boxed_slice(), a.clone());
        map.insert(b"idle".to_vec().into_boxed_slice(), Arc::new(slot()));
        sweep_map(&mut map);
        let kept: Vec<_> = map.keys().map(|k| k.to_vec()).collect();
        assert_eq!(
            kept,
            [b"held".to_vec()],
            "an empty slot nobody holds goes; one in use stays"
        );
    }
}
