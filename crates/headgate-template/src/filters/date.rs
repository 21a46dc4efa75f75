//! `date: format`: strftime formatting, for the dates JavaScript platforms
//! emit as well as the ones the `liquid` crate reads.
//!
//! LiquidJS passes its input to JavaScript's `Date`, so ISO 8601 as
//! `toISOString()` writes it (`2026-01-15T10:00:00.000Z`), with an offset
//! (`+02:00`) or none, and a bare date (`2026-01-15`, midnight UTC) all
//! parse. A time without an offset is taken as UTC, the time zone headgate
//! runs in. Input that is no date comes back unchanged, as in LiquidJS.

use std::sync::OnceLock;

use liquid_core::Result;
use liquid_core::model::{DateTime, Value};
use regex::Regex;

use super::Invocation;
use crate::error::ErrorKind;
use crate::guard::fail;

/// `date: format`.
pub(super) fn date(c: &Invocation<'_>) -> Result<Value> {
    let format = c.sarg(0);
    let parsed = c
        .input
        .as_scalar()
        .and_then(|s| s.to_date_time())
        .or_else(|| iso8601(&c.st()));
    match parsed {
        Some(d) if !format.is_empty() => d
            .format(&format)
            .map(Value::scalar)
            .map_err(|_| fail(ErrorKind::RenderFailed, "date: invalid format string")),
        _ => Ok(c.input.to_value()),
    }
}

/// An ISO 8601 date or date-time, rewritten into the form `liquid` reads
/// (`2026-01-15 10:00:00.000 +0000`).
fn iso8601(s: &str) -> Option<DateTime> {
    static ISO: OnceLock<Option<Regex>> = OnceLock::new();
    let re = ISO
        .get_or_init(|| {
            Regex::new(
                r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(:\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$",
            )
            .ok()
        })
        .as_ref()?;
    let m = re.captures(s.trim())?;
    let day = m.get(1)?.as_str();
    let hm = m.get(2).map_or("00:00", |x| x.as_str());
    let secs = m.get(3).map_or(":00", |x| x.as_str());
    let offset = match m.get(4).map(|x| x.as_str()) {
        None | Some("Z") => "+0000".to_string(),
        Some(o) => o.replace(':', ""),
    };
    DateTime::from_str(&format!("{day} {hm}{secs} {offset}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(s: &str) -> Option<String> {
        iso8601(s).and_then(|d| d.format("%Y-%m-%d %H:%M:%S %z").ok())
    }

    #[test]
    fn javascript_dates_parse() {
        let z = Some("2026-01-15 10:00:00 +0000".to_string());
        assert_eq!(ymd("2026-01-15T10:00:00Z"), z);
        assert_eq!(ymd("2026-01-15T10:00:00.000Z"), z);
        assert_eq!(ymd("2026-01-15T10:00:00"), z);
        assert_eq!(ymd("2026-01-15T10:00Z"), z);
        assert_eq!(
            ymd("2026-01-15T12:00:00+02:00"),
            Some("2026-01-15 12:00:00 +0200".to_string())
        );
        assert_eq!(
            ymd("2026-01-15"),
            Some("2026-01-15 00:00:00 +0000".to_string())
        );
        assert_eq!(ymd("15 Jan 2026"), None);
        assert_eq!(ymd("2026-13-45"), None);
    }
}
