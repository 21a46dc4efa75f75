//! The console's totals, read back from the counters' own exposition.

use prometheus_client::registry::Registry;

use super::Metrics;

impl Metrics {
    /// Request totals per route (all, and those answered with a status of
    /// 400 or more) and refusal totals per headgate error code, read from
    /// the counters themselves (the console's rates are their deltas).
    pub fn totals(&self) -> Totals {
        let mut registry = Registry::default();
        registry.register("requests", "", self.requests.clone());
        registry.register("errors", "", self.errors.clone());
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        let mut totals = Totals::default();
        for (name, labels, value) in text.lines().filter_map(sample) {
            let label = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| v.clone());
            match name {
                "requests_total" => {
                    let t = totals
                        .routes
                        .entry(label("route").unwrap_or_default())
                        .or_default();
                    t.requests += value;
                    let status: u16 = label("status").and_then(|s| s.parse().ok()).unwrap_or(0);
                    if status >= 400 {
                        t.errors += value;
                    }
                }
                "errors_total" => {
                    *totals
                        .codes
                        .entry(label("code").unwrap_or_default())
                        .or_default() += value;
                }
                _ => {}
            }
        }
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

/// A sample's labels, as (name, unescaped value).
type Labels<'a> = Vec<(&'a str, String)>;

/// One sample line of the text format: name, labels, value.
pub(super) fn sample(line: &str) -> Option<(&str, Labels<'_>, u64)> {
    if line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()? as u64;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    Some((name, labels(rest.strip_suffix('}')?)?, value))
}

/// `a="x",b="y\"z"` → pairs, unescaping `\\`, `\"` and `\n`.
fn labels(mut s: &str) -> Option<Labels<'_>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key, value));
        s = rest[end + 1..].trim_start_matches(',');
    }
    Some(out)
}
