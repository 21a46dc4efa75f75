//! Pinned tool definitions (`[mcp] pin_tools`), per route: what the store
//! holds for them, and the memory store's copy. A definition is kept as
//! its canonical JSON (so a held one can be shown beside the pinned one);
//! the rules that decide what is pinned or held live in `mcp::pins`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// One route's pins as the store holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinTable {
    /// Tool name → the definition approved for it (canonical JSON).
    pub pinned: BTreeMap<String, String>,
    /// Tool name → a definition seen since that is not the pinned one
    /// (changed, or a tool new after the first listing), until approved.
    pub held: BTreeMap<String, String>,
    /// The route's first complete listing (its last page) has been
    /// recorded: from now on an unknown tool is new.
    pub sealed: bool,
}

/// What judging one listing adds to a route's table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PinWrites {
    /// First definitions: written unless the store has one for the name
    /// already (the first replica to record a tool wins).
    pub pinned: Vec<(String, String)>,
    /// Definitions held (replacing an earlier held one of the name).
    pub held: Vec<(String, String)>,
    /// Held tools that are back to their pinned definition.
    pub cleared: Vec<String>,
    /// The listing's last page was seen.
    pub seal: bool,
}

impl PinWrites {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.pinned.is_empty() && self.held.is_empty() && self.cleared.is_empty() && !self.seal
    }
}

impl PinTable {
    /// Applies `w` as the store does: a pinned name is never overwritten.
    pub fn apply(&mut self, w: &PinWrites) {
        for (name, def) in &w.pinned {
            self.pinned
                .entry(name.clone())
                .or_insert_with(|| def.clone());
        }
        for (name, def) in &w.held {
            self.held.insert(name.clone(), def.clone());
        }
        for name in &w.cleared {
            self.held.remove(name);
        }
        self.sealed |= w.seal;
    }

    /// Moves `name`'s held definition to pinned; false if none is held.
    pub fn approve(&mut self, name: &str) -> bool {
        match self.held.remove(name) {
            Some(def) => {
                self.pinned.insert(name.to_string(), def);
                true
            }
            None => false,
        }
    }
}

/// The memory store's pins: every route's table in one map (a route
/// lists its tools rarely; nothing here is on a tool call's path).
#[derive(Default)]
pub(crate) struct MemoryPins(Mutex<HashMap<String, PinTable>>);

impl MemoryPins {
    fn with<T>(&self, route: &str, f: impl FnOnce(&mut PinTable) -> T) -> T {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(route.to_string()).or_default())
    }

    pub(crate) fn table(&self, route: &str) -> PinTable {
        self.with(route, |t| t.clone())
    }

    pub(crate) fn record(&self, route: &str, w: &PinWrites) {
        self.with(route, |t| t.apply(w));
    }

    pub(crate) fn approve(&self, route: &str, name: &str) -> bool {
        self.with(route, |t| t.approve(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pin_wins_and_approval_moves_the_held_definition() {
        let mut t = PinTable::default();
        let first = PinWrites {
            pinned: vec![("a".into(), "1".into())],
            seal: true,
            ..Default::default()
        };
        t.apply(&first);
        t.apply(&PinWrites {
            pinned: vec![("a".into(), "2".into())],
            held: vec![("b".into(), "3".into())],
            ..Default::default()
        });
        assert_eq!(t.pinned["a"], "1", "a pinned name is never overwritten");
        assert!(t.sealed && t.held["b"] == "3");
        assert!(!t.approve("a"), "only a held tool is approved");
        assert!(t.approve("b"));
        assert_eq!((t.pinned["b"].as_str(), t.held.len()), ("3", 0));
    }
}
