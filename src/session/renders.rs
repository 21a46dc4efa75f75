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

use std::sync::OnceLock;

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
///
/// A list of values, each set once: a reader only loads (no lock, whose
/// word a reader would write: a session's lines are most often cold by
/// its next request, a thousand other calls' requests having run
/// between), and the first value is one allocation away, in it when short.
#[derive(Default)]
pub struct Renders(OnceLock<Box<Node>>);

/// One template's value, or that its value did not fit (so it is
/// rendered every time, and not weighed again); then the next template's.
/// Two cache lines, the value's bytes in them when it is short (a token
/// of up to [`INLINE`] bytes with its scheme): a request reads one
/// allocation, not the node and then its value's.
#[repr(align(64))]
struct Node {
    id: u64,
    next: OnceLock<Box<Node>>,
    value: Value,
}

/// The longest value held in its node.
const INLINE: usize = 102;

enum Value {
    /// Did not fit the session's room.
    Unfit,
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Box<[u8]>),
}

impl Value {
    fn of(v: &[u8]) -> Self {
        let mut bytes = [0; INLINE];
        match bytes.get_mut(..v.len()) {
            Some(room) => {
                room.copy_from_slice(v);
                // At most INLINE, below 256.
                let len = v.len() as u8;
                Value::Inline { len, bytes }
            }
            None => Value::Heap(v.into()),
        }
    }

    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Unfit => None,
            Value::Inline { len, bytes } => Some(&bytes[..usize::from(*len)]),
            Value::Heap(v) => Some(v),
        }
    }
}

impl Renders {
    /// Appends the value kept for template `id` to `out`; `false` (and
    /// `out` untouched) when there is none.
    pub fn put(&self, id: u64, out: &mut Vec<u8>) -> bool {
        let found = self.nodes().find(|n| n.id == id);
        let Some(v) = found.and_then(|n| n.value.bytes()) else {
            return false;
        };
        out.extend_from_slice(v);
        true
    }

    /// The kept nodes, first kept first.
    fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::successors(self.0.get(), |n| n.next.get()).map(|n| &**n)
    }

    /// Keeps `value` as what template `id` renders from `vars` (this
    /// session's), while there is room: at most [`MAX_VALUES`] templates
    /// (one whose value did not fit counts), and as many bytes as the
    /// variables' size allows. The first value kept for an id stays.
    pub fn keep(&self, id: u64, value: &[u8], vars: &Vars) {
        let (mut at, mut count, mut used) = (&self.0, 0, 0);
        loop {
            if let Some(node) = at.get() {
                if node.id == id {
                    return;
                }
                count += 1;
                used += node.value.bytes().map_or(0, <[u8]>::len);
                at = &node.next;
                continue;
            }
            if count >= MAX_VALUES {
                return;
            }
            let room = (super::vars_size(vars) * PER_JSON_BYTE).min(MAX_BYTES);
            let value = match used + value.len() <= room {
                true => Value::of(value),
                false => Value::Unfit,
            };
            let node = Box::new(Node {
                id,
                value,
                next: OnceLock::new(),
            });
            // Another request of the session may have set `at` since it
            // was read: then walk on from its node.
            if at.set(node).is_ok() {
                return;
            }
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
    fn sixteen_bytes_in_a_session_and_two_lines_a_value() {
        assert_eq!(std::mem::size_of::<Renders>(), 16);
        assert_eq!(std::mem::size_of::<Node>(), 128);
    }

    #[test]
    fn short_values_in_their_node_long_ones_beside_it() {
        let vars = Vars::from_json(serde_json::json!({"call": {"token": "a".repeat(400)}}))
            .expect("an object");
        let r = Renders::default();
        for (id, len) in [
            (1, 0),
            (2, INLINE - 1),
            (3, INLINE),
            (4, INLINE + 1),
            (5, 300),
        ] {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            r.keep(id, &value, &vars);
            let mut out = b"x: ".to_vec();
            assert!(r.put(id, &mut out), "{len}");
            assert_eq!(&out[3..], value, "{len}");
        }
        for node in r.nodes() {
            let inline = matches!(node.value, Value::Inline { .. });
            assert_eq!(
                inline,
                node.value.bytes().is_some_and(|v| v.len() <= INLINE)
            );
        }
    }

    /// Requests of one session keeping values at once each keep an id
    /// once, its first value, and no more ids than the bound.
    #[test]
    fn writers_at_once_keep_each_id_once_within_the_bound() {
        let vars = Vars::from_json(serde_json::json!({"call": {"token": "a".repeat(200)}}))
            .expect("an object");
        let r = std::sync::Arc::new(Renders::default());
        let writers: Vec<_> = (0..8u8)
            .map(|w| {
                let (r, vars) = (std::sync::Arc::clone(&r), vars.clone());
                std::thread::spawn(move || {
                    for id in 1..=20u64 {
                        r.keep(id, &[w; 4], &vars);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("a writer");
        }
        let mut ids: Vec<u64> = r.nodes().map(|n| n.id).collect();
        let kept = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!((kept, ids.len()), (MAX_VALUES, MAX_VALUES), "each id once");
        for id in ids {
            let mut out = Vec::new();
            assert!(r.put(id, &mut out));
            assert!(
                out.len() == 4 && out.iter().all(|b| *b == out[0]),
                "one writer's value"
            );
        }
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
