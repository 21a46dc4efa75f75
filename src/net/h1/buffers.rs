//! Buffers (and the lists of where a head's lines lie) lent to a request
//! for as long as it runs, from a free list per worker thread. Allocating
//! and freeing the forwarding core's 8-16 KiB buffers on every request
//! cost more than parsing the request (glibc's large-chunk path and
//! `malloc_consolidate`); lending them costs a thread-local push and
//! pop. An idle keep-alive
//! connection holds none: memory grows with requests in flight, not with
//! open connections (nginx frees its buffers on idle connections too).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// A new buffer's capacity: a request or response head and the first
/// read of a body.
pub const SIZE: usize = 16 << 10;

/// The most free buffers a worker keeps.
const FREE_MAX: usize = 64;

/// What a worker's free list holds.
type Free<T> = RefCell<Vec<Vec<T>>>;

/// An element of vectors lent from a free list per worker thread.
pub trait Lend: Sized + 'static {
    /// The free list.
    const FREE: &'static LocalKey<Free<Self>>;
    /// A new vector's capacity.
    const SIZE: usize;
    /// A vector that grew past this is freed, not kept.
    const KEEP_UP_TO: usize;
}

thread_local! {
    static FREE_BYTES: Free<u8> = const { RefCell::new(Vec::new()) };
}

/// The forwarding core's buffers.
impl Lend for u8 {
    const FREE: &'static LocalKey<Free<u8>> = &FREE_BYTES;
    const SIZE: usize = SIZE;
    /// A large body read whole.
    const KEEP_UP_TO: usize = 64 << 10;
}

/// A lent buffer: a `Vec`, returned emptied to its worker's free list
/// when dropped.
#[derive(Default)]
pub struct Lent<T: Lend = u8>(Vec<T>);

/// A buffer of at least [`SIZE`] bytes, empty.
pub fn lend() -> Lent {
    lend_of()
}

/// A vector of at least `T::SIZE` elements, empty.
pub fn lend_of<T: Lend>() -> Lent<T> {
    let spare = T::FREE.try_with(|f| f.borrow_mut().pop()).ok().flatten();
    Lent(spare.unwrap_or_else(|| Vec::with_capacity(T::SIZE)))
}

impl<T: Lend> Lent<T> {
    /// Whether it holds a buffer (a default `Lent` holds none yet).
    pub fn is_lent(&self) -> bool {
        self.0.capacity() > 0
    }

    /// The buffer, for good (nothing goes back to the free list).
    pub fn take(&mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }
}

impl<T: Lend> Drop for Lent<T> {
    fn drop(&mut self) {
        let cap = self.0.capacity();
        if !(T::SIZE..=T::KEEP_UP_TO).contains(&cap) {
            return;
        }
        let mut v = std::mem::take(&mut self.0);
        v.clear();
        let _ = T::FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < FREE_MAX {
                f.push(v);
            }
        });
    }
}

impl<T: Lend> Deref for Lent<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Lend> DerefMut for Lent<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

/// Its length only: a lent buffer holds a request as it came, secrets
/// and all.
impl<T: Lend> std::fmt::Debug for Lent<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent").field("len", &self.0.len()).finish()
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
        big.reserve(<u8 as Lend>::KEEP_UP_TO * 2);
        drop(big);
        let c = lend();
        assert!(
            c.capacity() <= <u8 as Lend>::KEEP_UP_TO,
            "the grown one was freed, not kept"
        );
        assert!(!Lent::<u8>::default().is_lent());
    }

    #[test]
    fn a_lent_buffer_debugs_as_its_length_only() {
        let mut secret = lend();
        secret.extend_from_slice(b"authorization: Bearer tok-secret");
        assert_eq!(format!("{secret:?}"), "Lent { len: 32 }");
    }
}
