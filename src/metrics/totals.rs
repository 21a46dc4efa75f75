//! The console's totals, read from the counters' own handles.

use super::Metrics;

impl Metrics {
    /// Request totals per route (all, and those answered with a status of
    /// 400 or more) and refusal totals per headgate error code, read from
    /// the counters themselves (the console's rates are their deltas).
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        self.request_handles.each(|labels, count| {
            let [route, status] = labels else { return };
            let t = totals.routes.entry(route.to_string()).or_default();
            t.requests += count.get();
            if status.parse::<u16>().is_ok_and(|s| s >= 400) {
                t.errors += count.get();
            }
        });
        self.error_handles.each(|labels, count| {
            if let [_, code] = labels {
                *totals.codes.entry(code.to_string()).or_default() += count.get();
            }
        });
        totals
    }
}

/// Counter totals for the console (see [`Metrics::totals`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    /// By route name.
    pub routes: std::collections::BTreeMap<String, RouteTotals>,
    /// Refusals by headgate error code.
    pub codes: std::collections::BTreeMap<String, u64>,
}

/// One route's request totals.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct RouteTotals {
    /// Every request.
    pub requests: u64,
    /// Requests answered with a status of 400 or more.
    pub errors: u64,
}
