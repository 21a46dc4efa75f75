//! JavaScript's semantics for the values filters see: how LiquidJS turns a
//! value into a number, a string, a truthy test or an array, and the
//! string algorithms (`encodeURIComponent`, `trim`, `split`) it borrows
//! from JavaScript.

use base64::Engine as _;
use liquid_core::model::{ScalarCow, Value, ValueView};

use crate::print::{js_number, stringify_view};
use crate::value::view_to_json;

pub(super) fn s(v: &dyn ValueView) -> String {
    let mut out = String::new();
    stringify_view(v, &mut out);
    out
}

/// JavaScript `+value || 0`.
pub(super) fn num(v: &dyn ValueView) -> f64 {
    if let Some(sc) = v.as_scalar() {
        let n = match sc.type_name() {
            "boolean" => f64::from(u8::from(sc.to_bool().unwrap_or(false))),
            "whole number" => sc.to_integer().unwrap_or(0) as f64,
            "fractional number" => sc.to_float().unwrap_or(0.0),
            _ => parse_js_number(sc.to_kstr().as_str()),
        };
        if n.is_nan() { 0.0 } else { n }
    } else if let Some(a) = v.as_array() {
        match a.size() {
            0 => 0.0,
            1 => a.get(0).map_or(0.0, num),
            _ => 0.0,
        }
    } else {
        0.0
    }
}

pub(super) fn parse_js_number(t: &str) -> f64 {
    let t = t.trim_matches(|c: char| crate::syntax::is_blank(c) || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).map_or(f64::NAN, |v| v as f64);
    }
    match t {
        "Infinity" | "+Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ if t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
            t.parse::<f64>().unwrap_or(f64::NAN)
        }
        _ => f64::NAN,
    }
}

/// A JavaScript number as a `liquid` value (integral values stay integers
/// so that ranges and comparisons keep working).
pub(super) fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::scalar(n as i64)
    } else {
        Value::scalar(n)
    }
}

pub(super) fn is_falsy(v: &dyn ValueView) -> bool {
    v.is_nil()
        || matches!(v.as_scalar(), Some(sc) if sc.type_name() == "boolean" && sc.to_bool() == Some(false))
}

pub(super) fn is_string(v: &dyn ValueView) -> bool {
    matches!(v.as_scalar(), Some(sc) if sc.type_name() == "string")
}

/// LiquidJS `toArray`: nil → [], array → itself, anything else → [it].
pub(super) fn to_array(v: &dyn ValueView) -> Vec<Value> {
    if v.is_nil() {
        Vec::new()
    } else if let Some(a) = v.as_array() {
        a.values().map(|x| x.to_value()).collect()
    } else {
        vec![v.to_value()]
    }
}

/// JavaScript `String(x)` (differs from `stringify` for arrays and nil).
pub(super) fn js_string(v: &dyn ValueView, out: &mut String) {
    if let Some(a) = v.as_array() {
        for (i, x) in a.values().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if !x.is_nil() {
                js_string(x, out);
            }
        }
    } else if v.is_nil() {
        out.push_str("null");
    } else {
        stringify_view(v, out);
    }
}

pub(super) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// `encodeURIComponent`.
pub(super) fn encode_uri_component(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// `decodeURIComponent`: malformed escapes or UTF-8 are an error.
pub(super) fn decode_uri_component(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                b.len() >= i + 3 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

pub(super) fn js_trim_start(s: &str) -> &str {
    s.trim_start_matches(is_js_space)
}

pub(super) fn js_trim_end(s: &str) -> &str {
    s.trim_end_matches(is_js_space)
}

/// JavaScript's `\s` / `trim()` whitespace.
pub(super) fn is_js_space(c: char) -> bool {
    crate::syntax::is_blank(c) || c == '\u{feff}'
}

/// LiquidJS `orderedCompare`: nil sorts last; numbers numerically, strings
/// by UTF-16 code units.
pub(super) fn ordered_cmp(a: &Value, b: &Value, fold: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nil(), b.is_nil()) {
        (true, true) => return Equal,
        (true, false) => return Greater,
        (false, true) => return Less,
        _ => {}
    }
    let (sa, sb) = (a.as_scalar(), b.as_scalar());
    let numeric = |x: &Option<ScalarCow<'_>>| matches!(x, Some(sc) if matches!(sc.type_name(), "whole number" | "fractional number"));
    if !fold && numeric(&sa) && numeric(&sb) {
        return num(a).partial_cmp(&num(b)).unwrap_or(Equal);
    }
    let (mut x, mut y) = (s(a), s(b));
    if fold {
        x = x.to_lowercase();
        y = y.to_lowercase();
    }
    x.encode_utf16().cmp(y.encode_utf16())
}

/// Reads `prop` (dotted) from an item, as LiquidJS `_getFromScope` does.
pub(super) fn read_path(item: &Value, prop: &str) -> Value {
    let mut cur = item.clone();
    for key in prop.split('.') {
        let next = if let Some(o) = cur.as_object() {
            o.get(key).map(|v| v.to_value())
        } else if let Some(a) = cur.as_array() {
            match key {
                "size" => Some(Value::scalar(a.size())),
                "first" => a.first().map(|v| v.to_value()),
                "last" => a.last().map(|v| v.to_value()),
                _ => key
                    .parse::<i64>()
                    .ok()
                    .and_then(|i| a.get(i))
                    .map(|v| v.to_value()),
            }
        } else if is_string(&cur) && key == "size" {
            Some(Value::scalar(utf16_len(&s(&cur)) as i64))
        } else {
            None
        };
        match next {
            Some(v) => cur = v,
            None => return Value::Nil,
        }
    }
    cur
}

/// LiquidJS `equals` for the shapes `where` compares.
pub(super) fn js_equals(a: &Value, b: &Value) -> bool {
    if a.is_nil() || b.is_nil() {
        return a.is_nil() && b.is_nil();
    }
    match (a.as_scalar(), b.as_scalar()) {
        (Some(x), Some(y)) => {
            let num_x = matches!(x.type_name(), "whole number" | "fractional number");
            let num_y = matches!(y.type_name(), "whole number" | "fractional number");
            if num_x && num_y {
                num(a) == num(b)
            } else {
                x.type_name() == y.type_name() && x.to_kstr() == y.to_kstr()
            }
        }
        _ => false,
    }
}

pub(super) fn json_string(v: &dyn ValueView, indent: usize) -> String {
    let mut out = String::new();
    write_json(&view_to_json(v), indent, 0, &mut out);
    out
}

/// `JSON.stringify(value, null, indent)` with JavaScript number formatting.
pub(super) fn write_json(v: &serde_json::Value, indent: usize, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let nl = |out: &mut String, d: usize| {
        if indent > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(indent * d));
        }
    };
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                js_number(n.as_f64().unwrap_or(0.0), out);
            }
        }
        J::String(st) => out.push_str(&serde_json::to_string(st).unwrap_or_default()),
        J::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                write_json(x, indent, depth + 1, out);
            }
            if !a.is_empty() {
                nl(out, depth);
            }
            out.push(']');
        }
        J::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                if indent > 0 {
                    out.push(' ');
                }
                write_json(x, indent, depth + 1, out);
            }
            if !o.is_empty() {
                nl(out, depth);
            }
            out.push('}');
        }
    }
}

/// LiquidJS `isBase64` followed by a lenient decode.
pub(super) fn base64_decode(t: &str) -> Option<String> {
    let mut s: String = t
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' '))
        .collect();
    if s.len().is_multiple_of(4) {
        if s.ends_with("==") {
            s.truncate(s.len() - 2);
        } else if s.ends_with('=') {
            s.truncate(s.len() - 1);
        }
    }
    if s.len() % 4 == 1
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    {
        return None;
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let bytes = engine.decode(s.as_bytes()).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

pub(super) fn strip_html(st: &str) -> String {
    let blocks: [(&str, &str); 4] = [
        ("<script", "</script>"),
        ("<style", "</style>"),
        ("<!--", "-->"),
        ("<", ">"),
    ];
    let mut alive = [true; 4];
    let mut out = String::new();
    let mut i = 0;
    while i < st.len() {
        let Some(rel) = st[i..].find('<') else {
            out.push_str(&st[i..]);
            return out;
        };
        let lt = i + rel;
        out.push_str(&st[i..lt]);
        for (k, (open, close)) in blocks.iter().enumerate() {
            if !alive[k] || !st[lt..].starts_with(open) {
                continue;
            }
            match st[lt + open.len()..].find(close) {
                Some(e) => {
                    i = lt + open.len() + e + close.len();
                    break;
                }
                None => alive[k] = false,
            }
        }
        if i <= lt {
            out.push_str(&st[lt..]);
            return out;
        }
    }
    out
}

pub(super) fn round(v: f64, places: f64) -> f64 {
    // LiquidJS shifts the decimal point through the string form, avoiding
    // binary rounding error (`1.005 | round: 2` is 1.01).
    fn shift(n: f64, e: f64) -> f64 {
        let mut t = String::new();
        js_number(n, &mut t);
        let (m, p) = t.split_once('e').unwrap_or((&t, "0"));
        let p: f64 = p.parse().unwrap_or(0.0);
        format!("{m}e{}", p + e).parse().unwrap_or(f64::NAN)
    }
    let scaled = shift(v.abs(), places);
    if scaled.is_nan() || scaled > 9007199254740991.0 {
        return v;
    }
    let r = shift((scaled + 0.5).floor(), -places);
    if v < 0.0 { -r } else { r }
}

/// JavaScript `String.prototype.split` with a string separator.
pub(super) fn js_split(t: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        // Splits into UTF-16 units in JS; code points are the same for
        // everything outside the astral planes.
        return t.chars().map(String::from).collect();
    }
    t.split(sep).map(str::to_string).collect()
}

/// `str.split(/\s+/)`.
pub(super) fn split_ws(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_ws = false;
    for (i, c) in t.char_indices() {
        if is_js_space(c) {
            if !in_ws {
                out.push(&t[start..i]);
                in_ws = true;
            }
        } else if in_ws {
            start = i;
            in_ws = false;
        }
    }
    out.push(if in_ws { "" } else { &t[start..] });
    out
}

pub(super) fn escape(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn unescape(t: &str) -> String {
    t.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Formats a scalar for messages in tests.
#[cfg(test)]
pub(crate) fn scalar_text(v: &Value) -> String {
    let mut out = String::new();
    if let Some(sc) = v.as_scalar() {
        crate::print::stringify_scalar(&sc, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_matches_liquidjs() {
        assert_eq!(round(1.005, 2.0), 1.01);
        assert_eq!(round(2.5, 0.0), 3.0);
        assert_eq!(round(-2.5, 0.0), -3.0);
        assert_eq!(round(1234.5678, -2.0), 1200.0);
    }

    #[test]
    fn uri_component_encoding() {
        assert_eq!(encode_uri_component("a b&c/é!*"), "a%20b%26c%2F%C3%A9!*");
        assert_eq!(decode_uri_component("a%20b%2F"), Some("a b/".into()));
        assert_eq!(decode_uri_component("%zz"), None);
        assert_eq!(decode_uri_component("%C3"), None);
    }

    #[test]
    fn base64_decode_follows_liquidjs_validation() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some("hello"));
        assert_eq!(base64_decode("aGVsbG8").as_deref(), Some("hello"));
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("a*b="), None);
    }

    #[test]
    fn split_ws_like_regex() {
        assert_eq!(split_ws("a  b c "), vec!["a", "b", "c", ""]);
        assert_eq!(split_ws(""), vec![""]);
    }

    #[test]
    fn number_values_keep_integers() {
        assert_eq!(scalar_text(&number(3.0)), "3");
        assert_eq!(scalar_text(&number(2.5)), "2.5");
    }
}
