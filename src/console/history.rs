//! The overview's rates: the request and error counters sampled every few
//! seconds for the last minutes, so each route gets a small chart without
//! a time-series database.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{Metrics, RouteTotals, Totals};

/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(5);

/// Samples kept: five minutes.
pub const SLOTS: usize = 61;

/// The window the overview's "per second" figures average over.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Counter samples, oldest first.
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

/// One route's rates: over the last minute, and per sample interval for
/// the chart (oldest first).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rates {
    /// Requests per second over the last minute.
    pub requests: f64,
    /// Errors (status ≥ 400) per second over the last minute.
    pub errors: f64,
    /// (requests/s, errors/s) per interval.
    pub series: Vec<(f64, f64)>,
}

impl History {
    /// Adds a sample, dropping the oldest past five minutes.
    pub fn push(&self, at: Instant, totals: Totals) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() == SLOTS {
            s.pop_front();
        }
        s.push_back((at, totals));
    }

    /// Each route's rates, `now` being the current totals.
    pub fn rates(&self, now: &Totals) -> BTreeMap<String, Rates> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let at = Instant::now();
        let points: Vec<(Instant, &Totals)> = (s.iter().map(|(t, v)| (*t, v)))
            .chain(std::iter::once((at, now)))
            .collect();
        let base = points
            .iter()
            .find(|(t, _)| at.duration_since(*t) <= RATE_WINDOW)
            .copied();
        let mut out = BTreeMap::new();
        for (route, current) in &now.routes {
            let (requests, errors) = base.map_or((0.0, 0.0), |(t, old)| {
                per_second(route_at(old, route), *current, at.duration_since(t))
            });
            let series = (points.windows(2))
                .map(|w| {
                    let (a, b) = (route_at(w[0].1, route), route_at(w[1].1, route));
                    per_second(a, b, w[1].0.duration_since(w[0].0))
                })
                .collect();
            let rates = Rates {
                requests,
                errors,
                series,
            };
            out.insert(route.clone(), rates);
        }
        out
    }

    /// Refusals per code in the last five minutes (oldest sample to now).
    pub fn recent_codes(&self, now: &Totals) -> BTreeMap<String, u64> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let old = s.front().map(|(_, t)| &t.codes);
        (now.codes.iter())
            .map(|(code, n)| {
                let before = old.and_then(|o| o.get(code)).copied().unwrap_or(0);
                (code.clone(), n.saturating_sub(before))
            })
            .collect()
    }
}

fn route_at(t: &Totals, route: &str) -> RouteTotals {
    t.routes.get(route).copied().unwrap_or_default()
}

fn per_second(old: RouteTotals, new: RouteTotals, over: Duration) -> (f64, f64) {
    let secs = over.as_secs_f64();
    if secs < 0.5 {
        return (0.0, 0.0);
    }
    let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    (d(old.requests, new.requests), d(old.errors, new.errors))
}

/// Samples `metrics` into `history` every [`EVERY`] until the runtime
/// stops.
pub fn spawn_sampler(history: Arc<History>, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            history.push(Instant::now(), metrics.totals());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(route: &str, requests: u64, errors: u64) -> Totals {
        let mut t = Totals::default();
        t.routes
            .insert(route.into(), RouteTotals { requests, errors });
        t.codes.insert("session.not_found".into(), errors);
        t
    }

    #[test]
    fn rates_are_deltas_over_time() {
        let h = History::default();
        let t0 = Instant::now() - Duration::from_secs(10);
        h.push(t0, totals("crm", 100, 0));
        h.push(t0 + Duration::from_secs(5), totals("crm", 150, 5));
        let r = &h.rates(&totals("crm", 200, 10))["crm"];
        assert!((r.requests - 10.0).abs() < 0.5, "{r:?}");
        assert!((r.errors - 1.0).abs() < 0.1, "{r:?}");
        assert_eq!(r.series.len(), 2);
        assert!((r.series[0].0 - 10.0).abs() < 0.01);
        assert_eq!(
            h.recent_codes(&totals("crm", 0, 12))["session.not_found"],
            12
        );
    }

    #[test]
    fn keeps_five_minutes() {
        let h = History::default();
        for i in 0..100 {
            h.push(Instant::now(), totals("a", i, 0));
        }
        assert_eq!(h.samples.lock().unwrap().len(), SLOTS);
    }
}
