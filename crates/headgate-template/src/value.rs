//! Session variables as the template engine sees them.
//!
//! Variables are kept as `serde_json::Value` (what the admin API, webhooks and
//! resolvers produce) and read in place by both render paths: the fast path
//! walks the JSON directly, the Liquid path sees it through [`JsonView`], a
//! zero-copy `liquid` view. Nothing is converted per request.
//!
//! LiquidJS semantics for missing values need one trick: a lookup of a missing
//! key yields [`UNDEFINED`] and raises a per-thread "miss" flag. Rendering is
//! synchronous, so the compiled template checks and clears that flag right
//! after every strictly evaluated reference (see `guard.rs`).

use std::fmt;
use std::sync::Arc;

use liquid_core::model::{
    ArrayView, DisplayCow, KStringCow, ObjectView, ScalarCow, State, Value as LValue, ValueView,
};
use ref_cast::RefCast;
use serde_json::Value as Json;

use super::guard::record_miss;
use super::print::stringify_json;

/// The variables a template renders from: session variables plus the
/// reserved roots `session`, `request` and `env` (docs/templates.md "Template language").
///
/// Implemented for `serde_json::Value` (an object's top-level keys are the
/// roots) and for [`Vars`].
pub trait Scope {
    /// The value bound to a root name, if any.
    fn root(&self, name: &str) -> Option<&Json>;
}

impl Scope for Json {
    fn root(&self, name: &str) -> Option<&Json> {
        self.as_object().and_then(|m| m.get(name))
    }
}

impl Scope for serde_json::Map<String, Json> {
    fn root(&self, name: &str) -> Option<&Json> {
        self.get(name)
    }
}

impl<S: Scope + ?Sized> Scope for &S {
    fn root(&self, name: &str) -> Option<&Json> {
        (**self).root(name)
    }
}

/// A session's variables: a JSON object shared cheaply between requests.
///
/// `Debug` never shows values: they are credentials.
///
/// ```
/// let vars = headgate_template::Vars::from_json(serde_json::json!({"call": {"id": "c1"}})).unwrap();
/// assert_eq!(format!("{vars:?}"), "Vars { keys: [\"call\"] }");
/// ```
#[derive(Clone, Default)]
pub struct Vars(Arc<serde_json::Map<String, Json>>);

impl Vars {
    /// Wraps a JSON object; `None` if `value` is not an object.
    pub fn from_json(value: Json) -> Option<Self> {
        match value {
            Json::Object(map) => Some(Self(Arc::new(map))),
            _ => None,
        }
    }

    /// Wraps an object map.
    pub fn from_map(map: serde_json::Map<String, Json>) -> Self {
        Self(Arc::new(map))
    }

    /// The underlying object.
    pub fn as_map(&self) -> &serde_json::Map<String, Json> {
        &self.0
    }

    /// Top-level variable names (safe to show: names, never values).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl Scope for Vars {
    fn root(&self, name: &str) -> Option<&Json> {
        self.0.get(name)
    }
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vars")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What `Debug` prints for any value in the engine: values are secrets.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

static REDACTED: Redacted = Redacted;

/// A JSON value seen through `liquid`'s traits, without copying.
#[derive(RefCast)]
#[repr(transparent)]
pub(crate) struct JsonView(Json);

impl JsonView {
    pub(crate) fn new(v: &Json) -> &JsonView {
        JsonView::ref_cast(v)
    }
}

impl fmt::Debug for JsonView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Redacted.fmt(f)
    }
}

struct JsonDisplay<'a>(&'a Json);

impl fmt::Display for JsonDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        stringify_json(self.0, &mut s);
        f.write_str(&s)
    }
}

impl ValueView for JsonView {
    fn as_debug(&self) -> &dyn fmt::Debug {
        &REDACTED
    }
    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Owned(Box::new(JsonDisplay(&self.0)))
    }
    fn source(&self) -> DisplayCow<'_> {
        // `liquid` puts `source()` into error messages: never a value there.
        DisplayCow::Borrowed(&REDACTED)
    }
    fn type_name(&self) -> &'static str {
        match &self.0 {
            Json::Null => "nil",
            Json::Bool(_) => "boolean",
            Json::Number(n) if n.is_f64() => "fractional number",
            Json::Number(_) => "whole number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
    fn query_state(&self, state: State) -> bool {
        match state {
            State::Truthy => !matches!(self.0, Json::Null | Json::Bool(false)),
            State::DefaultValue | State::Empty => match &self.0 {
                Json::Null => true,
                Json::Bool(b) => !b && state == State::DefaultValue,
                Json::String(s) => s.is_empty(),
                Json::Array(a) => a.is_empty(),
                Json::Object(o) => o.is_empty(),
                Json::Number(_) => false,
            },
            State::Blank => match &self.0 {
                Json::Null | Json::Bool(false) => true,
                Json::String(s) => s.trim().is_empty(),
                Json::Array(a) => a.is_empty(),
                Json::Object(o) => o.is_empty(),
                _ => false,
            },
        }
    }
    fn to_kstr(&self) -> KStringCow<'_> {
        match &self.0 {
            Json::String(s) => KStringCow::from_ref(s),
            other => {
                let mut s = String::new();
                stringify_json(other, &mut s);
                KStringCow::from_string(s)
            }
        }
    }
    fn to_value(&self) -> LValue {
        json_to_liquid(&self.0)
    }
    fn as_scalar(&self) -> Option<ScalarCow<'_>> {
        match &self.0 {
            Json::Bool(b) => Some(ScalarCow::new(*b)),
            Json::Number(n) => Some(match n.as_i64() {
                Some(i) => ScalarCow::new(i),
                None => ScalarCow::new(n.as_f64().unwrap_or(f64::NAN)),
            }),
            Json::String(s) => Some(ScalarCow::new(s.as_str())),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&dyn ArrayView> {
        match self.0 {
            Json::Array(_) => Some(self),
            _ => None,
        }
    }
    fn as_object(&self) -> Option<&dyn ObjectView> {
        match self.0 {
            Json::Object(_) => Some(self),
            // LiquidJS reads any property of null as null, not an error.
            Json::Null => Some(self),
            _ => None,
        }
    }
    fn is_nil(&self) -> bool {
        self.0.is_null()
    }
}

impl ArrayView for JsonView {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        self.0.as_array().map_or(0, |a| a.len() as i64)
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match &self.0 {
            Json::Array(a) => Box::new(a.iter().map(|v| JsonView::new(v) as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn contains_key(&self, index: i64) -> bool {
        ArrayView::get(self, index).is_some()
    }
    fn get(&self, index: i64) -> Option<&dyn ValueView> {
        let a = self.0.as_array()?;
        let i = if index < 0 {
            a.len() as i64 + index
        } else {
            index
        };
        match usize::try_from(i).ok().and_then(|i| a.get(i)) {
            Some(v) => Some(JsonView::new(v)),
            None => {
                record_miss();
                Some(&UNDEFINED)
            }
        }
    }
}

impl ObjectView for JsonView {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        self.0.as_object().map_or(0, |o| o.len() as i64)
    }
    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        match &self.0 {
            Json::Object(o) => Box::new(o.keys().map(|k| KStringCow::from_ref(k))),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match &self.0 {
            Json::Object(o) => Box::new(o.values().map(|v| JsonView::new(v) as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        match &self.0 {
            Json::Object(o) => Box::new(
                o.iter()
                    .map(|(k, v)| (KStringCow::from_ref(k), JsonView::new(v) as &dyn ValueView)),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn contains_key(&self, _index: &str) -> bool {
        true
    }
    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        if self.0.is_null() {
            return Some(self);
        }
        match self.0.as_object().and_then(|o| o.get(index)) {
            Some(v) => Some(JsonView::new(v)),
            // Let `liquid` answer `.size` of an object itself.
            None if index == "size" => None,
            None => {
                record_miss();
                Some(&UNDEFINED)
            }
        }
    }
}

/// LiquidJS's `undefined`: falsy, renders as nothing, and any property of it
/// is undefined too (so lenient contexts such as `if a.b.c` work).
#[derive(Debug)]
pub(crate) struct Undefined;

pub(crate) static UNDEFINED: Undefined = Undefined;

impl ValueView for Undefined {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }
    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"")
    }
    fn source(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"undefined")
    }
    fn type_name(&self) -> &'static str {
        "nil"
    }
    fn query_state(&self, state: State) -> bool {
        !matches!(state, State::Truthy)
    }
    fn to_kstr(&self) -> KStringCow<'_> {
        KStringCow::from_static("")
    }
    fn to_value(&self) -> LValue {
        LValue::Nil
    }
    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
    fn is_nil(&self) -> bool {
        true
    }
}

impl ObjectView for Undefined {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        0
    }
    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        Box::new(std::iter::empty())
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        Box::new(std::iter::empty())
    }
    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        Box::new(std::iter::empty())
    }
    fn contains_key(&self, _index: &str) -> bool {
        true
    }
    fn get<'s>(&'s self, _index: &str) -> Option<&'s dyn ValueView> {
        record_miss();
        Some(&UNDEFINED)
    }
}

/// The global scope handed to `liquid`: every root name resolves, to a
/// value or to [`UNDEFINED`] (recording a miss).
pub(crate) struct ScopeView<'a, S: Scope + ?Sized>(pub(crate) &'a S);

impl<S: Scope + ?Sized> fmt::Debug for ScopeView<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Redacted.fmt(f)
    }
}

impl<S: Scope + ?Sized> ValueView for ScopeView<'_, S> {
    fn as_debug(&self) -> &dyn fmt::Debug {
        &REDACTED
    }
    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"[object Object]")
    }
    fn source(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&REDACTED)
    }
    fn type_name(&self) -> &'static str {
        "object"
    }
    fn query_state(&self, state: State) -> bool {
        matches!(state, State::Truthy)
    }
    fn to_kstr(&self) -> KStringCow<'_> {
        KStringCow::from_static("[object Object]")
    }
    fn to_value(&self) -> LValue {
        LValue::Object(Default::default())
    }
    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
}

impl<S: Scope + ?Sized> ObjectView for ScopeView<'_, S> {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        0
    }
    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        Box::new(std::iter::empty())
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        Box::new(std::iter::empty())
    }
    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        Box::new(std::iter::empty())
    }
    fn contains_key(&self, _index: &str) -> bool {
        true
    }
    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        match self.0.root(index) {
            Some(v) => Some(JsonView::new(v)),
            None => {
                record_miss();
                Some(&UNDEFINED)
            }
        }
    }
}

/// Converts JSON into an owned `liquid` value (used when `liquid` copies a
/// value into a local, e.g. `assign`).
pub(crate) fn json_to_liquid(v: &Json) -> LValue {
    match v {
        Json::Null => LValue::Nil,
        Json::Bool(b) => LValue::scalar(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => LValue::scalar(i),
            None => LValue::scalar(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => LValue::scalar(s.clone()),
        Json::Array(a) => LValue::Array(a.iter().map(json_to_liquid).collect()),
        Json::Object(o) => LValue::Object(
            o.iter()
                .map(|(k, v)| (k.clone().into(), json_to_liquid(v)))
                .collect(),
        ),
    }
}

/// Converts a `liquid` value into JSON (for the `json` filter).
pub(crate) fn view_to_json(v: &dyn ValueView) -> Json {
    if v.is_nil() {
        return Json::Null;
    }
    if let Some(a) = v.as_array() {
        return Json::Array(a.values().map(view_to_json).collect());
    }
    if let Some(o) = v.as_object() {
        // `liquid` copies looked-up objects into hash maps, losing the
        // session's key order; sorting keeps the output deterministic.
        let mut entries: Vec<_> = o
            .iter()
            .map(|(k, v)| (k.to_string(), view_to_json(v)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        return Json::Object(entries.into_iter().collect());
    }
    if let Some(s) = v.as_scalar() {
        return match s.type_name() {
            "boolean" => Json::Bool(s.to_bool().unwrap_or(false)),
            "whole number" => Json::from(s.to_integer().unwrap_or_default()),
            "fractional number" => serde_json::Number::from_f64(s.to_float().unwrap_or(f64::NAN))
                .map_or(Json::Null, Json::Number),
            _ => Json::String(s.to_kstr().into_string()),
        };
    }
    Json::Null
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::print::js_number;

    fn js(n: f64) -> String {
        let mut s = String::new();
        js_number(n, &mut s);
        s
    }

    #[test]
    fn numbers_format_like_javascript() {
        assert_eq!(js(3.0), "3");
        assert_eq!(js(-2.5), "-2.5");
        assert_eq!(js(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(js(1e21), "1e+21");
        assert_eq!(js(1.5e-7), "1.5e-7");
        assert_eq!(js(123456789012.0), "123456789012");
        assert_eq!(js(f64::INFINITY), "Infinity");
        assert_eq!(js(-0.0), "0");
    }

    #[test]
    fn stringify_matches_liquidjs() {
        let mut s = String::new();
        stringify_json(
            &serde_json::json!([1, "a", null, true, {"k": 1}, [2.5]]),
            &mut s,
        );
        assert_eq!(s, "1atrue[object Object]2.5");
    }

    #[test]
    fn debug_of_vars_never_shows_values() {
        let v = Vars::from_json(serde_json::json!({"call": {"token": "sekrit-123"}})).unwrap();
        let d = format!("{v:?}");
        assert!(!d.contains("sekrit"), "{d}");
        assert!(d.contains("call"));
        assert_eq!(
            format!("{:?}", JsonView::new(&serde_json::json!("sekrit"))),
            "<redacted>"
        );
    }
}
