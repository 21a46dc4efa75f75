//! Header values rendered from one session, kept with it. A call's tool
//! calls render the same templates from the same variables: a template
//! that reads only the session (no `request.*`, no `credentials.*`)
//! renders the same bytes each time, and the session's next request
//! copies them instead of rendering again (no lookups, no value check).
//!
//! A `Session` is never changed in place (a write stores a new one), so
//! what is kept here is always what its variables render. Templates are
//! told apart by [`HeaderTemplate::id`](crate::template::HeaderTemplate::id),
//! new for every compile: after a reload the old values are never used.

use std::sync::{Mutex, OnceLock};

use crate::template::Vars;

/// The most values one session keeps.
const MAX_VALUES: usize = 8;

/// The most bytes of values one session keeps.
pub const MAX_BYTES: usize = 4 << 10;

/// Nor more bytes than this many per byte of the session's variables
/// (as JSON): the hot tier weighs a decoded session with this share in
/// ([`decoded_weight`](super::store)), so `max_store_bytes` bounds kept
/// values too. A template that repeats a variable or adds long text may
/// render more than that: its value is then rendered every time.
pub const PER_JSON_BYTE: usize = 2;

/// See the module docs. Empty when cloned: a clone is the start of a new
/// session, whose variables may differ. Sixteen bytes until a value is
/// kept: a `Session` is held by value in the store's write futures, and a
/// connection's future is as large as the largest of those it may await
/// (the lock and list inline made an idle connection 288 bytes larger).
#[derive(Default)]
pub struct Renders(OnceLock<Box<Mutex<Kept>>>);

#[derive(Default)]
struct Kept {
    /// Bytes values may take, from the variables' size on first use.
    room: Option<usize>,
    values: Vec<(u64, Box<[u8]>)>,
}

impl Renders {
    /// Appends the value kept for template `id` to `out`; `false` (and
    /// `out` untouched) when there is none.
    pub fn put(&self, id: u64, out: &mut Vec<u8>) -> bool {
        let Some(Ok(kept)) = self.0.get().map(|k| k.lock()) else {
            return false;
        };
        match kept.values.iter().find(|(t, _)| *t == id) {
            Some((_, v)) => {
                out.extend_from_slice(v);
                true
            }
            None => false,
        }
    }

    /// Keeps `value` as what template `id` renders from `vars` (this
    /// session's), while there is room.
    pub fn keep(&self, id: u64, value: &[u8], vars: &Vars) {
        let Ok(mut kept) = self.0.get_or_init(Box::default).lock() else {
            return;
        };
        let room = *kept
            .room
            .get_or_insert_with(|| (super::vars_size(vars) * PER_JSON_BYTE).min(MAX_BYTES));
        let used: usize = kept.values.iter().map(|(_, v)| v.len()).sum();
        if kept.values.len() < MAX_VALUES
            && used + value.len() <= room
            && kept.values.iter().all(|(t, _)| *t != id)
        {
            kept.values.push((id, value.into()));
        }
    }
}

impl Clone for Renders {
    fn clone(&self) -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bytes_in_a_session() {
        assert_eq!(std::mem::size_of::<Renders>(), 16);
    }

    #[test]
    fn keeps_values_by_template_within_bounds_and_not_across_clones() {
        let vars = |v: serde_json::Value| Vars::from_json(v).expect("an object");
        let small = vars(serde_json::json!({"call": {"token": "a".repeat(40)}}));
        let r = Renders::default();
        let mut out = b"authorization: ".to_vec();
        assert!(!r.put(1, &mut out));
        assert_eq!(out, b"authorization: ");
        r.keep(1, b"Bearer a", &small);
        r.keep(1, b"Bearer b", &small);
        assert!(r.put(1, &mut out));
        assert_eq!(out, b"authorization: Bearer a", "the first value stays");
        // A clone starts empty.
        assert!(!r.clone().put(1, &mut Vec::new()));
        // Bounded by count.
        for id in 2..20 {
            r.keep(id, b"v", &small);
        }
        assert!(r.put(MAX_VALUES as u64, &mut Vec::new()));
        assert!(!r.put(MAX_VALUES as u64 + 1, &mut Vec::new()));
        // By twice the variables' size.
        let room = super::super::vars_size(&small) * PER_JSON_BYTE;
        let sized = Renders::default();
        sized.keep(1, &vec![b'x'; room - 10], &small);
        sized.keep(2, &[b'y'; 11], &small);
        assert!(sized.put(1, &mut Vec::new()));
        assert!(!sized.put(2, &mut Vec::new()));
        // And by MAX_BYTES whatever the variables.
        let large = vars(serde_json::json!({"call": {"token": "a".repeat(MAX_BYTES)}}));
        let big = Renders::default();
        big.keep(1, &vec![b'x'; MAX_BYTES], &large);
        big.keep(2, b"y", &large);
        assert!(big.put(1, &mut Vec::new()));
        assert!(!big.put(2, &mut Vec::new()));
    }
}
