//! The handle cache: a metric's handle found by its label values without
//! the family's hashing and label copies.

use super::Counter;

/// Handles of labelled metrics, found by one FNV-1a over their label
/// values instead of a family's SipHash and label copies (collisions are
/// kept side by side). Callers add label sets from bounded sets only:
/// configured routes, status codes, and at most 200 tools per route.
pub(super) struct Handles<M>(
    pub(super)  std::sync::RwLock<
        std::collections::HashMap<u64, Vec<Labelled<M>>, crate::shards::Prehashed>,
    >,
);

/// A handle and the label values it was made for.
type Labelled<M> = (Box<[Box<str>]>, M);

impl<M> Default for Handles<M> {
    fn default() -> Self {
        Self(Default::default())
    }
}

impl<M> Handles<M> {
    pub(super) fn key(parts: &[&str]) -> u64 {
        use crate::shards::fnv1a_from;
        (parts.iter()).fold(0xcbf2_9ce4_8422_2325, |h, part| {
            fnv1a_from(h, part.as_bytes()) ^ 0xff
        })
    }

    /// Runs `act` on the handle for `parts`; false if there is none yet.
    pub(super) fn with(&self, key: u64, parts: &[&str], act: impl FnOnce(&M)) -> bool {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        let found = (map.get(&key)).and_then(|v| {
            v.iter()
                .find(|(labels, _)| labels.iter().map(|l| &**l).eq(parts.iter().copied()))
        });
        if let Some((_, m)) = found {
            act(m);
        }
        found.is_some()
    }

    pub(super) fn insert(&self, key: u64, parts: &[&str], m: M) {
        let labels = parts.iter().map(|p| Box::from(*p)).collect();
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().push((labels, m));
    }

    /// Calls `f` on every handle with its label values.
    pub(super) fn each(&self, mut f: impl FnMut(&[Box<str>], &M)) {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        for (labels, m) in map.values().flatten() {
            f(labels, m);
        }
    }
}

impl Handles<Counter> {
    /// The counter for `parts`, made by `make` (from its family) and kept
    /// on first use.
    pub(super) fn counter(&self, parts: &[&str], make: impl FnOnce() -> Counter) -> Counter {
        let key = Self::key(parts);
        let mut found = None;
        self.with(key, parts, |c| found = Some(c.clone()));
        if let Some(c) = found {
            return c;
        }
        let c = make();
        self.insert(key, parts, c.clone());
        c
    }
}
