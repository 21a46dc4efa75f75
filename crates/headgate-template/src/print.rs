//! How values print: as LiquidJS prints them (JavaScript's `String(x)`),
//! so a header renders the same text a platform's LiquidJS would.

use liquid_core::model::{ScalarCow, ValueView};
use serde_json::Value as Json;

/// Formats a number the way JavaScript's `String(n)` does, so that output
/// matches LiquidJS (`3.0` renders `3`, `1e21` renders `1e+21`).
pub(crate) fn js_number(n: f64, out: &mut String) {
    use std::fmt::Write;
    if n.is_nan() {
        out.push_str("NaN");
    } else if n.is_infinite() {
        out.push_str(if n > 0.0 { "Infinity" } else { "-Infinity" });
    } else if n == 0.0 {
        out.push('0');
    } else if n.fract() == 0.0 && n.abs() < 1e21 {
        let _ = write!(out, "{}", n as i128);
    } else {
        let abs = n.abs();
        if (1e-6..1e21).contains(&abs) {
            let _ = write!(out, "{n}");
        } else {
            // Rust prints `1.5e21`/`1e-7`; JavaScript prints `1.5e+21`/`1e-7`.
            let s = format!("{n:e}");
            match s.split_once('e') {
                Some((mantissa, exp)) if !exp.starts_with('-') => {
                    let _ = write!(out, "{mantissa}e+{exp}");
                }
                _ => out.push_str(&s),
            }
        }
    }
}

fn json_number(n: &serde_json::Number, out: &mut String) {
    use std::fmt::Write;
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        js_number(n.as_f64().unwrap_or(f64::NAN), out);
    }
}

/// Appends a JSON value as LiquidJS outputs it (`stringify`): strings as
/// they are, `null` as nothing, arrays concatenated, objects as
/// `[object Object]`.
pub(crate) fn stringify_json(v: &Json, out: &mut String) {
    match v {
        Json::Null => {}
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => json_number(n, out),
        Json::String(s) => out.push_str(s),
        Json::Array(a) => a.iter().for_each(|x| stringify_json(x, out)),
        Json::Object(_) => out.push_str("[object Object]"),
    }
}

/// Appends any `liquid` value as LiquidJS outputs it.
pub(crate) fn stringify_view(v: &dyn ValueView, out: &mut String) {
    if v.is_nil() {
        return;
    }
    if let Some(a) = v.as_array() {
        for x in a.values() {
            stringify_view(x, out);
        }
    } else if let Some(s) = v.as_scalar() {
        stringify_scalar(&s, out);
    } else if v.is_object() {
        out.push_str("[object Object]");
    } else if v.as_state().is_none() {
        out.push_str(v.to_kstr().as_str());
    }
}

pub(crate) fn stringify_scalar(s: &ScalarCow<'_>, out: &mut String) {
    use std::fmt::Write;
    // Order matters: bools and strings first, integers before floats.
    if let Some(b) = s.to_bool().filter(|_| s.type_name() == "boolean") {
        out.push_str(if b { "true" } else { "false" });
    } else if s.type_name() == "whole number" {
        let _ = write!(out, "{}", s.to_integer().unwrap_or_default());
    } else if s.type_name() == "fractional number" {
        js_number(s.to_float().unwrap_or(f64::NAN), out);
    } else {
        out.push_str(s.to_kstr().as_str());
    }
}
