//! Buffers lent to a request for as long as it runs, from a free list per
//! worker thread. Allocating and freeing the forwarding core's 8-16 KiB
//! buffers on every request cost more instructions than parsing the
//! request (glibc's large-chunk path and `malloc_consolidate`, callgrind);
//! lending them costs a thread-local push and pop. An idle keep-alive
//! connection holds none: memory grows with requests in flight, not with
//! open connections (nginx frees its buffers on idle connections too).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// A new buffer's capacity: a request or response head and the first
/// read of a body.
pub const SIZE: usize = 16 << 10;

/// A buffer that grew past this (a large body read whole) is freed, not
/// kept.
const KEEP_UP_TO: usize = 64 << 10;

/// The most free buffers a worker keeps.
const FREE_MAX: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A lent buffer: a `Vec<u8>`, returned emptied to its worker's free list
/// when dropped.
#[derive(Default)]
pub struct Lent(Vec<u8>);

/// A buffer of at least [`SIZE`] bytes, empty.
pub fn lend() -> Lent {
    let spare = FREE.try_with(|f| f.borrow_mut().pop()).ok().flatten();
    Lent(spare.unwrap_or_else(|| Vec::with_capacity(SIZE)))
}

impl Lent {
    /// Whether it holds a buffer (a default `Lent` holds none yet).
    pub fn is_lent(&self) -> bool {
        self.0.capacity() > 0
    }

    /// The buffer, for good (nothing goes back to the free list).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let cap = self.0.capacity();
        if !(SIZE..=KEEP_UP_TO).contains(&cap) {
            return;
        }
        let mut v = std::mem::take(&mut self.0);
        v.clear();
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < FREE_MAX {
                f.push(v);
            }
        });
    }
}

impl Deref for Lent {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_lent_again_empty_and_a_grown_one_is_not() {
        let mut a = lend();
        a.extend_from_slice(b"left over");
        let ptr = a.as_ptr();
        drop(a);
        let b = lend();
        assert_eq!(b.as_ptr(), ptr, "the same allocation");
        assert!(b.is_empty());
        drop(b);
        let mut big = lend();
        big.reserve(KEEP_UP_TO * 2);
        drop(big);
        let c = lend();
        assert!(
            c.capacity() <= KEEP_UP_TO,
            "the grown one was freed, not kept"
        );
        assert!(!Lent::default().is_lent());
    }
}
