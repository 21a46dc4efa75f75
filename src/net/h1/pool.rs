//! The forwarding core's keep-alive connections to cleartext upstreams:
//! one pool per worker thread, so no lock and no cross-thread wake-up. A
//! connection goes back only when its last response was read exactly to
//! its end with no byte left over; anything else is closed.

use std::cell::RefCell;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::net::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE};

/// A connection to an upstream, with the authority it is to (kept with
/// it so a check-in allocates nothing).
pub struct Conn {
    /// `host:port`.
    pub authority: Box<str>,
    /// The connection.
    pub stream: TcpStream,
}

struct Idle {
    conn: Conn,
    /// When it stops being handed out: compared, not subtracted, at each
    /// checkout (a `duration_since` per idle connection cost about 130
    /// instructions a request, callgrind).
    until: Instant,
}

thread_local! {
    /// This worker's idle connections, most recently used last.
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

/// An idle connection to `authority` that has not timed out by `now`, if
/// any.
pub fn checkout(authority: &str, now: Instant) -> Option<Conn> {
    IDLE.with_borrow_mut(|idle| {
        idle.retain(|c| c.until > now);
        let i = idle.iter().rposition(|c| &*c.conn.authority == authority)?;
        Some(idle.remove(i).conn)
    })
}

/// Gives `conn` back for the next request to its authority, idle from
/// `since` (a clock read the caller took before its response ended: an
/// earlier one only shortens the idle time allowed, and takes no read of
/// its own).
pub fn checkin(conn: Conn, since: Instant) {
    IDLE.with_borrow_mut(|idle| {
        if idle.len() >= POOL_MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            until: since + POOL_IDLE_TIMEOUT,
        });
    });
}
