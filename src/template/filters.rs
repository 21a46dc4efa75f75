//! Filters, with LiquidJS's semantics.
//!
//! Ops copy templates from voice platforms, which run LiquidJS, so every
//! standard filter here behaves as LiquidJS does (e.g. `url_encode` turns a
//! space into `+`, `divided_by` is not integer division, numbers print as
//! JavaScript prints them). The `liquid` crate still parses and runs the
//! template; only the filter table is ours. `date` is the one exception: it
//! is the `liquid` crate's own (time zones differ between runtimes anyway).
//!
//! Names starting with `hg_` are internal: the compiler inserts them to get
//! LiquidJS's undefined-variable rules and output formatting; templates
//! cannot call them.

use std::cell::Cell;
use std::fmt;

use base64::Engine as _;
use hmac::Mac as _;
use liquid_core::model::{ScalarCow, Value, ValueView};
use liquid_core::parser::{FilterArguments, FilterReflection, ParameterReflection, ParseFilter};
use liquid_core::runtime::{Expression, Runtime};
use liquid_core::{Error, Filter, Result};
use sha2::Digest as _;

use super::error::ErrorKind;
#[cfg(test)]
use super::value::stringify_scalar;
use super::value::{js_number, stringify_view, take_miss, view_to_json};

/// Why the last render stopped, recorded by the internal filters (rendering
/// is synchronous, so a thread-local is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: ErrorKind,
    pub message: &'static str,
}

/// Loop iterations one render may run (all loops together).
pub(crate) const MAX_ITERATIONS: u32 = 10_000;
/// Largest range a `for` may walk.
pub(crate) const MAX_RANGE: f64 = 10_000.0;
/// Largest string or array any filter may produce.
pub(crate) const MAX_VALUE_BYTES: usize = 256 << 10;

thread_local! {
    static TICKS: Cell<u32> = const { Cell::new(0) };
    static CURRENT: Cell<u32> = const { Cell::new(u32::MAX) };
    static FAILURE: Cell<Option<Failure>> = const { Cell::new(None) };
}

pub(crate) fn reset_state() {
    TICKS.with(|t| t.set(0));
    CURRENT.with(|c| c.set(u32::MAX));
    FAILURE.with(|f| f.set(None));
    take_miss();
}

/// The reference being evaluated when rendering stopped, and why.
pub(crate) fn take_state() -> (Option<u32>, Option<Failure>) {
    let cur = CURRENT.with(|c| c.replace(u32::MAX));
    let fail = FAILURE.with(|f| f.take());
    (if cur == u32::MAX { None } else { Some(cur) }, fail)
}

fn fail(kind: ErrorKind, message: &'static str) -> Error {
    FAILURE.with(|f| f.set(Some(Failure { kind, message })));
    Error::with_msg(message)
}

/// Every filter a template may call.
pub(crate) const PUBLIC_FILTERS: &[&str] = &[
    "abs",
    "append",
    "at_least",
    "at_most",
    "base64_decode",
    "base64_encode",
    "base64_url_safe_encode",
    "capitalize",
    "ceil",
    "compact",
    "concat",
    "date",
    "default",
    "divided_by",
    "downcase",
    "escape",
    "escape_once",
    "first",
    "floor",
    "hmac_sha256",
    "join",
    "json",
    "last",
    "lstrip",
    "map",
    "minus",
    "modulo",
    "newline_to_br",
    "plus",
    "prepend",
    "remove",
    "remove_first",
    "replace",
    "replace_first",
    "reverse",
    "round",
    "rstrip",
    "sha256",
    "size",
    "slice",
    "sort",
    "sort_natural",
    "split",
    "strip",
    "strip_html",
    "strip_newlines",
    "times",
    "truncate",
    "truncatewords",
    "uniq",
    "upcase",
    "url_decode",
    "url_encode",
    "where",
];

/// Filters LiquidJS refuses to run without an argument.
pub(crate) const REQUIRES_ARGUMENT: &[&str] = &["append", "prepend"];

/// Internal filters the compiler inserts.
pub(crate) const INTERNAL_FILTERS: &[&str] = &[
    "hg_at",
    "hg_defined",
    "hg_void",
    "hg_out",
    "hg_range",
    "hg_tick",
];

/// Registers our filters on a `liquid` parser builder (after the stdlib, so
/// ours replace its same-named ones).
pub(crate) fn register(mut b: liquid::ParserBuilder) -> liquid::ParserBuilder {
    for name in PUBLIC_FILTERS.iter().chain(INTERNAL_FILTERS) {
        if *name != "date" {
            b = b.filter(JsFilter { name });
        }
    }
    b
}

#[derive(Clone)]
struct JsFilter {
    name: &'static str,
}

impl FilterReflection for JsFilter {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "LiquidJS-compatible filter"
    }
    fn positional_parameters(&self) -> &'static [ParameterReflection] {
        &[]
    }
    fn keyword_parameters(&self) -> &'static [ParameterReflection] {
        &[]
    }
}

impl ParseFilter for JsFilter {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        let args: Vec<Expression> = arguments.positional.collect();
        let kwargs: Vec<(String, Expression)> =
            arguments.keyword.map(|(k, v)| (k.to_string(), v)).collect();
        Ok(Box::new(Applied {
            name: self.name,
            args,
            kwargs,
        }))
    }
    fn reflection(&self) -> &dyn FilterReflection {
        self
    }
}

struct Applied {
    name: &'static str,
    args: Vec<Expression>,
    kwargs: Vec<(String, Expression)>,
}

impl fmt::Debug for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

fn s(v: &dyn ValueView) -> String {
    let mut out = String::new();
    stringify_view(v, &mut out);
    out
}

/// JavaScript `+value || 0`.
fn num(v: &dyn ValueView) -> f64 {
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

fn parse_js_number(t: &str) -> f64 {
    let t = t.trim_matches(|c: char| super::syntax::is_blank(c) || c == '\u{feff}');
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
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::scalar(n as i64)
    } else {
        Value::scalar(n)
    }
}

fn is_falsy(v: &dyn ValueView) -> bool {
    v.is_nil()
        || matches!(v.as_scalar(), Some(sc) if sc.type_name() == "boolean" && sc.to_bool() == Some(false))
}

fn is_string(v: &dyn ValueView) -> bool {
    matches!(v.as_scalar(), Some(sc) if sc.type_name() == "string")
}

/// LiquidJS `toArray`: nil → [], array → itself, anything else → [it].
fn to_array(v: &dyn ValueView) -> Vec<Value> {
    if v.is_nil() {
        Vec::new()
    } else if let Some(a) = v.as_array() {
        a.values().map(|x| x.to_value()).collect()
    } else {
        vec![v.to_value()]
    }
}

/// JavaScript `String(x)` (differs from `stringify` for arrays and nil).
fn js_string(v: &dyn ValueView, out: &mut String) {
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

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// `encodeURIComponent`.
fn encode_uri_component(s: &str) -> String {
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
fn decode_uri_component(s: &str) -> Option<String> {
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

fn js_trim_start(s: &str) -> &str {
    s.trim_start_matches(is_js_space)
}

fn js_trim_end(s: &str) -> &str {
    s.trim_end_matches(is_js_space)
}

/// JavaScript's `\s` / `trim()` whitespace.
fn is_js_space(c: char) -> bool {
    super::syntax::is_blank(c) || c == '\u{feff}'
}

/// LiquidJS `orderedCompare`: nil sorts last; numbers numerically, strings
/// by UTF-16 code units.
fn ordered_cmp(a: &Value, b: &Value, fold: bool) -> std::cmp::Ordering {
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
fn read_path(item: &Value, prop: &str) -> Value {
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
fn js_equals(a: &Value, b: &Value) -> bool {
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

fn json_string(v: &dyn ValueView, indent: usize) -> String {
    let mut out = String::new();
    write_json(&view_to_json(v), indent, 0, &mut out);
    out
}

/// `JSON.stringify(value, null, indent)` with JavaScript number formatting.
fn write_json(v: &serde_json::Value, indent: usize, depth: usize, out: &mut String) {
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
fn base64_decode(t: &str) -> Option<String> {
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

fn strip_html(st: &str) -> String {
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

fn round(v: f64, places: f64) -> f64 {
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

impl Filter for Applied {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(a.evaluate(runtime)?.to_value());
        }
        let out = self.apply(input, runtime, &args)?;
        let too_big = match &out {
            Value::Scalar(sc) => sc.to_kstr().len() > MAX_VALUE_BYTES,
            Value::Array(a) => a.len() > MAX_VALUE_BYTES / 8,
            _ => false,
        };
        if too_big {
            return Err(fail(
                ErrorKind::RenderFailed,
                "a filter produced a value larger than 256 KiB",
            ));
        }
        Ok(out)
    }
}

impl Applied {
    fn apply(&self, input: &dyn ValueView, runtime: &dyn Runtime, args: &[Value]) -> Result<Value> {
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Nil);
        let sarg = |i: usize| args.get(i).map(|a| s(a)).unwrap_or_default();
        let has_arg = |i: usize| args.get(i).is_some_and(|a| !a.is_nil());
        let n = || num(input);
        let st = || s(input);
        Ok(match self.name {
            // Internal.
            "hg_tick" => {
                let t = TICKS.with(|t| {
                    let v = t.get() + 1;
                    t.set(v);
                    v
                });
                if t > MAX_ITERATIONS {
                    return Err(fail(
                        ErrorKind::RenderFailed,
                        "loops ran more than 10000 iterations",
                    ));
                }
                Value::Nil
            }
            "hg_range" => {
                let span = n() - num(&arg(0));
                if span > MAX_RANGE {
                    return Err(fail(
                        ErrorKind::RenderFailed,
                        "a `for` range is longer than 10000",
                    ));
                }
                Value::Nil
            }
            "hg_at" => {
                let id = args.first().map_or(u32::MAX, |a| num(a) as u32);
                CURRENT.with(|c| c.set(id));
                take_miss();
                Value::Nil
            }
            "hg_defined" => {
                if take_miss() {
                    return Err(fail(ErrorKind::UndefinedVariable, "undefined variable"));
                }
                input.to_value()
            }
            "hg_void" => Value::scalar(""),
            "hg_out" => Value::scalar(st()),

            // Math.
            "abs" => number(n().abs()),
            "ceil" => number(n().ceil()),
            "floor" => number(n().floor()),
            "at_least" => number(n().max(num(&arg(0)))),
            "at_most" => number(n().min(num(&arg(0)))),
            "plus" => number(n() + num(&arg(0))),
            "minus" => number(n() - num(&arg(0))),
            "times" => number(n() * num(&arg(0))),
            "divided_by" => {
                let q = n() / num(&arg(0));
                number(if num(&arg(1)) != 0.0 { q.floor() } else { q })
            }
            "modulo" => {
                let d = num(&arg(0));
                number(((n() % d) + d) % d)
            }
            "round" => number(round(n(), num(&arg(0)))),

            // Strings.
            "append" => Value::scalar(st() + &sarg(0)),
            "prepend" => Value::scalar(sarg(0) + &st()),
            "downcase" => Value::scalar(st().to_lowercase()),
            "upcase" => Value::scalar(st().to_uppercase()),
            "capitalize" => {
                let t = st();
                let mut c = t.chars();
                Value::scalar(match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase(),
                    None => String::new(),
                })
            }
            "strip" | "lstrip" | "rstrip" => {
                let t = st();
                let chars: Option<Vec<char>> = has_arg(0)
                    .then(|| sarg(0).chars().collect())
                    .filter(|c: &Vec<char>| !c.is_empty());
                let left = self.name != "rstrip";
                let right = self.name != "lstrip";
                let mut r: &str = &t;
                match &chars {
                    Some(set) => {
                        if left {
                            r = r.trim_start_matches(|c| set.contains(&c));
                        }
                        if right {
                            r = r.trim_end_matches(|c| set.contains(&c));
                        }
                    }
                    None => {
                        if left {
                            r = js_trim_start(r);
                        }
                        if right {
                            r = js_trim_end(r);
                        }
                    }
                }
                Value::scalar(r.to_string())
            }
            "remove" => Value::scalar(js_split(&st(), &sarg(0)).join("")),
            "replace" => Value::scalar(js_split(&st(), &sarg(0)).join(&sarg(1))),
            "remove_first" | "replace_first" => {
                let t = st();
                let pat = sarg(0);
                let rep = if self.name == "remove_first" {
                    String::new()
                } else {
                    sarg(1)
                };
                Value::scalar(t.replacen(&pat, &rep, 1))
            }
            "split" => {
                let mut parts = js_split(&st(), &sarg(0));
                while parts.last().is_some_and(String::is_empty) {
                    parts.pop();
                }
                Value::Array(parts.into_iter().map(Value::scalar).collect())
            }
            "strip_newlines" => Value::scalar(st().replace("\r\n", "").replace('\n', "")),
            "newline_to_br" => Value::scalar(st().replace("\r\n", "\n").replace('\n', "<br />\n")),
            "escape" => Value::scalar(escape(&st())),
            "escape_once" => Value::scalar(escape(&unescape(&st()))),
            "strip_html" => Value::scalar(strip_html(&st())),
            "truncate" => {
                let t = st();
                let l = if has_arg(0) { num(&arg(0)) } else { 50.0 };
                let o = if args.len() > 1 {
                    sarg(1)
                } else {
                    "...".to_string()
                };
                let cps = t.chars().count();
                if (cps as f64) <= l {
                    input.to_value()
                } else {
                    let keep = (l - o.chars().count() as f64).max(0.0) as usize;
                    Value::scalar(t.chars().take(keep).collect::<String>() + &o)
                }
            }
            "truncatewords" => {
                let t = st();
                let mut words = if has_arg(0) { num(&arg(0)) } else { 15.0 };
                let o = if args.len() > 1 {
                    sarg(1)
                } else {
                    "...".to_string()
                };
                let arr: Vec<&str> = split_ws(js_trim_start(&t));
                if words <= 0.0 {
                    words = 1.0;
                }
                let words = words as usize;
                let mut ret = arr
                    .iter()
                    .take(words)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                if arr.len() >= words {
                    ret.push_str(&o);
                }
                Value::scalar(ret)
            }
            "url_encode" => Value::scalar(encode_uri_component(&st()).replace("%20", "+")),
            "url_decode" => match decode_uri_component(&st().replace('+', " ")) {
                Some(d) => Value::scalar(d),
                None => {
                    return Err(fail(
                        ErrorKind::RenderFailed,
                        "url_decode: malformed percent-encoding",
                    ));
                }
            },
            "base64_encode" => {
                Value::scalar(base64::engine::general_purpose::STANDARD.encode(st()))
            }
            "base64_url_safe_encode" => {
                Value::scalar(base64::engine::general_purpose::URL_SAFE.encode(st()))
            }
            "base64_decode" => match base64_decode(&st()) {
                Some(d) => Value::scalar(d),
                None => {
                    return Err(fail(
                        ErrorKind::RenderFailed,
                        "base64_decode: input is not base64",
                    ));
                }
            },
            "sha256" => Value::scalar(hex(&sha2::Sha256::digest(st().as_bytes()))),
            "hmac_sha256" => {
                let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(sarg(0).as_bytes()) {
                    Ok(m) => m,
                    Err(_) => return Err(fail(ErrorKind::RenderFailed, "hmac_sha256: bad key")),
                };
                mac.update(st().as_bytes());
                Value::scalar(hex(&mac.finalize().into_bytes()))
            }
            "json" => {
                let indent = if has_arg(0) {
                    num(&arg(0)).clamp(0.0, 10.0) as usize
                } else {
                    0
                };
                Value::scalar(json_string(input, indent))
            }

            // Arrays and misc.
            "default" => {
                let allow_false = self.kwargs.iter().any(|(k, e)| {
                    k == "allow_false" && e.evaluate(runtime).is_ok_and(|v| !is_falsy(v.as_view()))
                });
                let use_default = if let Some(a) = input.as_array() {
                    a.size() == 0
                } else if is_string(input) {
                    st().is_empty()
                } else if allow_false && !input.is_nil() {
                    false
                } else {
                    is_falsy(input)
                };
                if use_default {
                    arg(0)
                } else {
                    input.to_value()
                }
            }
            "size" => {
                if is_string(input) {
                    Value::scalar(utf16_len(&st()) as i64)
                } else if let Some(a) = input.as_array() {
                    Value::scalar(a.size())
                } else {
                    Value::scalar(0i64)
                }
            }
            "first" | "last" => {
                let first = self.name == "first";
                if let Some(a) = input.as_array() {
                    let v = if first { a.first() } else { a.last() };
                    v.map_or(Value::Nil, |v| v.to_value())
                } else if is_string(input) {
                    let t: Vec<u16> = st().encode_utf16().collect();
                    let unit = if first { t.first() } else { t.last() };
                    unit.map_or(Value::Nil, |u| {
                        Value::scalar(String::from_utf16_lossy(&[*u]))
                    })
                } else {
                    Value::scalar("")
                }
            }
            "join" => {
                let sep = if has_arg(0) { sarg(0) } else { " ".to_string() };
                let mut out = String::new();
                for (i, x) in to_array(input).iter().enumerate() {
                    if i > 0 {
                        out.push_str(&sep);
                    }
                    if !x.is_nil() {
                        js_string(x, &mut out);
                    }
                }
                Value::scalar(out)
            }
            "reverse" => {
                let mut a = to_array(input);
                a.reverse();
                Value::Array(a)
            }
            "compact" => Value::Array(
                to_array(input)
                    .into_iter()
                    .filter(|x| !x.is_nil())
                    .collect(),
            ),
            "concat" => {
                let mut a = to_array(input);
                a.extend(to_array(&arg(0)));
                Value::Array(a)
            }
            "uniq" => {
                let mut seen: Vec<(String, String)> = Vec::new();
                let mut out = Vec::new();
                for x in to_array(input) {
                    if x.is_array() || x.is_object() {
                        out.push(x);
                        continue;
                    }
                    let key = (x.type_name().to_string(), s(&x));
                    if !seen.contains(&key) {
                        seen.push(key);
                        out.push(x);
                    }
                }
                Value::Array(out)
            }
            "sort" | "sort_natural" => {
                let fold = self.name == "sort_natural";
                let prop = has_arg(0).then(|| sarg(0));
                let mut a = to_array(input);
                a.sort_by(|x, y| match &prop {
                    Some(p) => ordered_cmp(&read_path(x, p), &read_path(y, p), fold),
                    None => ordered_cmp(x, y, fold),
                });
                Value::Array(a)
            }
            "map" => {
                let p = sarg(0);
                Value::Array(to_array(input).iter().map(|x| read_path(x, &p)).collect())
            }
            "where" => {
                let p = sarg(0);
                let expected = args.get(1).cloned();
                Value::Array(
                    to_array(input)
                        .into_iter()
                        .filter(|x| {
                            let v = read_path(x, &p);
                            match &expected {
                                None => !is_falsy(&v),
                                Some(e) => js_equals(&v, e),
                            }
                        })
                        .collect(),
                )
            }
            "slice" => {
                let begin = num(&arg(0));
                let len = if args.len() > 1 { num(&arg(1)) } else { 1.0 };
                if input.is_nil() {
                    Value::Array(Vec::new())
                } else if let Some(a) = input.as_array() {
                    let items: Vec<Value> = a.values().map(|x| x.to_value()).collect();
                    let begin = if begin < 0.0 {
                        items.len() as f64 + begin
                    } else {
                        begin
                    };
                    if begin < 0.0 || len < 0.0 {
                        Value::Array(Vec::new())
                    } else {
                        Value::Array(
                            items
                                .into_iter()
                                .skip(begin as usize)
                                .take(len as usize)
                                .collect(),
                        )
                    }
                } else {
                    let chars: Vec<char> = st().chars().collect();
                    let begin = if begin < 0.0 {
                        chars.len() as f64 + begin
                    } else {
                        begin
                    };
                    if begin < 0.0 || len < 0.0 {
                        Value::scalar("")
                    } else {
                        Value::scalar(
                            chars
                                .into_iter()
                                .skip(begin as usize)
                                .take(len as usize)
                                .collect::<String>(),
                        )
                    }
                }
            }
            other => {
                // Unreachable for templates: the compiler rejects unknown names.
                let _ = other;
                return Err(fail(ErrorKind::RenderFailed, "unknown filter"));
            }
        })
    }
}

/// JavaScript `String.prototype.split` with a string separator.
fn js_split(t: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        // Splits into UTF-16 units in JS; code points are the same for
        // everything outside the astral planes.
        return t.chars().map(String::from).collect();
    }
    t.split(sep).map(str::to_string).collect()
}

/// `str.split(/\s+/)`.
fn split_ws(t: &str) -> Vec<&str> {
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

fn escape(t: &str) -> String {
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

fn unescape(t: &str) -> String {
    t.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn hex(bytes: &[u8]) -> String {
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
        stringify_scalar(&sc, &mut out);
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
