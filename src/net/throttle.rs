//! Failed guesses of a token, counted per client address: past
//! [`MAX_FAILURES`] in a [`WINDOW`], that address is answered 429 with
//! `Retry-After` until the window ends, whatever it sends. On the admin
//! listener (the admin and metrics tokens, the console login), where a
//! client could otherwise try thousands of tokens a second on one
//! connection.
//!
//! IPv6 addresses count by their /64 (one host can hold a whole /64); the
//! table is bounded, the oldest windows dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed guesses an address may make in one window.
pub const MAX_FAILURES: u32 = 20;
/// How long a window lasts, from an address's first failure.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once.
const MAX_PEERS: usize = 4096;

/// See the module docs.
#[derive(Default)]
pub struct Throttle {
    /// Failures and when their window began, by address.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// `Err(retry_after)` while `ip` is over its failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&bucket(ip)) {
            Some((n, since)) if *n >= MAX_FAILURES && since.elapsed() < WINDOW => {
                Err(WINDOW.saturating_sub(since.elapsed()))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed guess from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_PEERS {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
            if map.len() >= MAX_PEERS
                && let Some(oldest) = map.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(bucket(ip)).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// The address failures count under: an IPv6 address's /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    }
}

/// The 429 for an address over its failures.
pub fn too_many(retry_after: Duration) -> http::Response<super::response::Body> {
    let mut r = super::response::error(
        http::StatusCode::TOO_MANY_REQUESTS,
        "admin.too_many_attempts",
        "too many wrong tokens from this address; wait for Retry-After seconds",
    );
    let secs = retry_after.as_secs().max(1).to_string();
    if let Ok(v) = http::HeaderValue::from_str(&secs) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_held_past_its_failures_and_others_are_not() {
        let t = Throttle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(t.check(a).is_ok());
            t.failed(a);
        }
        let wait = t.check(a).unwrap_err();
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(5));
        assert!(t.check("192.0.2.2".parse().unwrap()).is_ok());
        // One /64 is one client.
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            t.failed(v6);
        }
        assert!(t.check("2001:db8::ffff".parse().unwrap()).is_err());
        assert!(t.check("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = Throttle::default();
        for i in 0..(MAX_PEERS as u32 + 100) {
            t.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(t.failures.lock().unwrap().len() <= MAX_PEERS);
    }
}
