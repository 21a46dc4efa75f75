//! One request as the audit line and the call timeline show it, its
//! client-chosen fields clipped.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

/// One MCP request, as the audit line and the call timeline show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Record {
    /// When the request arrived (written as RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub ts: SystemTime,
    /// Route name.
    pub route: &'static str,
    /// The session, as a keyed hash (`""` when no key was found).
    pub session: String,
    /// JSON-RPC method (`""` when the body was not JSON-RPC).
    pub method: String,
    /// Tool or prompt name, if any.
    pub tool: Option<String>,
    /// The request's JSON-RPC id, if any.
    pub rpc_id: Option<Value>,
    /// The outcome status (the error's, on a JSON-RPC route).
    pub status: u16,
    /// headgate's error code, if it refused or failed the request.
    pub code: Option<&'static str>,
    /// A code the request passed with and is reported by (a changed tool
    /// called under `pin_tools = "warn"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
    /// Time to the upstream's response head, if it was reached.
    pub upstream_ms: Option<f64>,
    /// Credentials obtained for the request (names, never values).
    pub credentials: Vec<String>,
    /// Whether it came by an MCP route (audited, and listed by `GET
    /// /calls/{id}`); other routes' requests are kept only for the
    /// console's call inspector.
    #[serde(skip)]
    pub mcp: bool,
}

/// The most bytes of a client-chosen field (tool, method, a string
/// JSON-RPC id) an audit line or a timeline keeps: a client could
/// otherwise write megabytes into the audit file per request.
pub const MAX_FIELD_BYTES: usize = 128;

/// `s` cut to [`MAX_FIELD_BYTES`] at a character boundary, `…` marking a
/// cut.
pub fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_string();
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A JSON-RPC id as recorded: a string id [`clip`]ped, a number as it
/// is, anything longer (not a valid id) dropped.
pub fn clip_id(id: Value) -> Option<Value> {
    match id {
        Value::String(s) => Some(Value::String(clip(&s))),
        v if v.to_string().len() <= MAX_FIELD_BYTES => Some(v),
        _ => None,
    }
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*t))
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-23T15:04:05.123Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_chosen_fields_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("search"), "search");
        let long = "é".repeat(100);
        let cut = clip(&long);
        assert!(
            cut.len() <= MAX_FIELD_BYTES + '…'.len_utf8() && cut.ends_with('…'),
            "{cut}"
        );
        assert_eq!(
            clip_id(Value::String("x".repeat(1 << 20)))
                .unwrap()
                .as_str()
                .unwrap()
                .len(),
            MAX_FIELD_BYTES + 3
        );
        assert_eq!(clip_id(serde_json::json!(7)), Some(serde_json::json!(7)));
        assert_eq!(clip_id(serde_json::json!({"a": "b".repeat(500)})), None);
        assert_eq!(clip_id(Value::Null), Some(Value::Null));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(format_rfc3339(SystemTime::now()).len(), 24);
        assert_eq!(
            format_rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
