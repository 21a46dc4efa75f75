//! The forwarding core's keep-alive connections to cleartext upstreams:
//! one pool per worker thread, so no lock and no cross-thread wake-up. A
//! connection goes back only when its last response was read exactly to
//! its end with no byte left over; anything else is closed.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::wire::Wire;

use crate::net::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE};

/// A connection to an upstream, with the authority it is to (kept with
/// it so a check-in allocates nothing).
pub struct Pooled {
    /// `host:port`.
    pub authority: Box<str>,
    /// The connection.
    pub stream: Wire,
}

struct Idle {
    conn: Pooled,
    /// When it stops being handed out: compared, not subtracted, at each
    /// checkout (a `duration_since` per idle connection on every
    /// checkout is arithmetic the comparison does not need).
    until: Instant,
}

thread_local! {
    /// This worker's idle connections, most recently used last.
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

/// An idle connection to `authority` that has not timed out by `now`, if
/// any.
pub fn checkout(authority: &str, tls: bool, now: Instant) -> Option<Pooled> {
    IDLE.with_borrow_mut(|idle| {
        idle.retain(|c| c.until > now);
        let i = idle
            .iter()
            .rposition(|c| &*c.conn.authority == authority && c.conn.stream.is_tls() == tls)?;
        Some(idle.remove(i).conn)
    })
}

/// How long an idle connection is reused when its server did not say
/// (`Keep-Alive: timeout=`): under the 5 s Node.js and uvicorn close idle
/// connections after, so the server does not close one just as a request
/// is written to it.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(4);

/// How long before the server's own `Keep-Alive: timeout=` an idle
/// connection stops being reused.
const MARGIN: Duration = Duration::from_secs(1);

/// How long a connection whose server said `Keep-Alive: timeout=N` (in
/// seconds; `None`: it said nothing) is reused while idle: a second less
/// than the server keeps it, [`DEFAULT_IDLE`] when it did not say, and
/// never over [`POOL_IDLE_TIMEOUT`].
pub fn idle_for(server_timeout: Option<u64>) -> Duration {
    server_timeout
        .map_or(DEFAULT_IDLE, |n| {
            Duration::from_secs(n).saturating_sub(MARGIN)
        })
        .min(POOL_IDLE_TIMEOUT)
}

/// Gives `conn` back for the next request to its authority, idle from
/// `since` (a clock read the caller took before its response ended: an
/// earlier one only shortens the idle time allowed, and takes no read of
/// its own) for at most `idle` ([`idle_for`]).
pub fn checkin(conn: Pooled, since: Instant, idle_time: Duration) {
    if idle_time.is_zero() {
        return;
    }
    IDLE.with_borrow_mut(|idle| {
        if idle.len() >= POOL_MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            until: since + idle_time,
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_follows_the_servers_keep_alive_timeout() {
        assert_eq!(idle_for(None), DEFAULT_IDLE);
        assert_eq!(idle_for(Some(5)), Duration::from_secs(4));
        assert_eq!(idle_for(Some(1)), Duration::ZERO);
        assert_eq!(idle_for(Some(0)), Duration::ZERO);
        assert_eq!(idle_for(Some(100_000)), POOL_IDLE_TIMEOUT);
    }
}
