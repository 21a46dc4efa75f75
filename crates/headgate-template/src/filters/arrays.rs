//! Array and value filters.

use liquid_core::Result;
use liquid_core::model::{Value, ValueView};

use super::Invocation;
use super::js::{
    is_falsy, is_string, js_equals, js_string, num, ordered_cmp, read_path, s, to_array, utf16_len,
};

/// `default: fallback[, allow_false: true]`: the fallback for an empty
/// string or array, `nil`, `false` and undefined.
pub(super) fn default(c: &Invocation<'_>) -> Result<Value> {
    let allow_false = c.kwargs.iter().any(|(k, e)| {
        k == "allow_false" && e.evaluate(c.runtime).is_ok_and(|v| !is_falsy(v.as_view()))
    });
    let input = c.input;
    let use_default = if let Some(a) = input.as_array() {
        a.size() == 0
    } else if is_string(input) {
        c.st().is_empty()
    } else if allow_false && !input.is_nil() {
        false
    } else {
        is_falsy(input)
    };
    Ok(if use_default {
        c.arg(0)
    } else {
        input.to_value()
    })
}

/// `size`: UTF-16 length of a string, length of an array, else 0.
pub(super) fn size(c: &Invocation<'_>) -> Result<Value> {
    Ok(if is_string(c.input) {
        Value::scalar(utf16_len(&c.st()) as i64)
    } else if let Some(a) = c.input.as_array() {
        Value::scalar(a.size())
    } else {
        Value::scalar(0i64)
    })
}

/// `first` and `last`: of an array, or the first/last UTF-16 unit of a
/// string.
pub(super) fn first_or_last(c: &Invocation<'_>) -> Result<Value> {
    let first = c.name == "first";
    Ok(if let Some(a) = c.input.as_array() {
        let v = if first { a.first() } else { a.last() };
        v.map_or(Value::Nil, |v| v.to_value())
    } else if is_string(c.input) {
        let t: Vec<u16> = c.st().encode_utf16().collect();
        let unit = if first { t.first() } else { t.last() };
        unit.map_or(Value::Nil, |u| {
            Value::scalar(String::from_utf16_lossy(&[*u]))
        })
    } else {
        Value::scalar("")
    })
}

/// `join[: separator]` (a space by default); `nil` items print as nothing.
pub(super) fn join(c: &Invocation<'_>) -> Result<Value> {
    let sep = if c.has_arg(0) {
        c.sarg(0)
    } else {
        " ".to_string()
    };
    let mut out = String::new();
    for (i, x) in to_array(c.input).iter().enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        if !x.is_nil() {
            js_string(x, &mut out);
        }
    }
    Ok(Value::scalar(out))
}

/// `reverse`.
pub(super) fn reverse(c: &Invocation<'_>) -> Result<Value> {
    let mut a = to_array(c.input);
    a.reverse();
    Ok(Value::Array(a))
}

/// `compact`: `nil` items removed.
pub(super) fn compact(c: &Invocation<'_>) -> Result<Value> {
    let a = to_array(c.input).into_iter().filter(|x| !x.is_nil());
    Ok(Value::Array(a.collect()))
}

/// `concat: array`.
pub(super) fn concat(c: &Invocation<'_>) -> Result<Value> {
    let mut a = to_array(c.input);
    a.extend(to_array(&c.arg(0)));
    Ok(Value::Array(a))
}

/// `uniq`: the first of equal scalars kept; arrays and objects all kept.
pub(super) fn uniq(c: &Invocation<'_>) -> Result<Value> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for x in to_array(c.input) {
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
    Ok(Value::Array(out))
}

/// `sort[: property]` and `sort_natural[: property]` (case-folded).
pub(super) fn sort(c: &Invocation<'_>) -> Result<Value> {
    let fold = c.name == "sort_natural";
    let prop = c.has_arg(0).then(|| c.sarg(0));
    let mut a = to_array(c.input);
    a.sort_by(|x, y| match &prop {
        Some(p) => ordered_cmp(&read_path(x, p), &read_path(y, p), fold),
        None => ordered_cmp(x, y, fold),
    });
    Ok(Value::Array(a))
}

/// `map: property`.
pub(super) fn map(c: &Invocation<'_>) -> Result<Value> {
    let p = c.sarg(0);
    let a = to_array(c.input).iter().map(|x| read_path(x, &p)).collect();
    Ok(Value::Array(a))
}

/// `where: property[, value]`: items whose property is truthy, or equals
/// the value.
pub(super) fn where_(c: &Invocation<'_>) -> Result<Value> {
    let p = c.sarg(0);
    let expected = c.args.get(1).cloned();
    let kept = to_array(c.input).into_iter().filter(|x| {
        let v = read_path(x, &p);
        match &expected {
            None => !is_falsy(&v),
            Some(e) => js_equals(&v, e),
        }
    });
    Ok(Value::Array(kept.collect()))
}

/// `slice: begin[, length]` of an array or a string (negative `begin`
/// counts from the end).
pub(super) fn slice(c: &Invocation<'_>) -> Result<Value> {
    let begin = num(&c.arg(0));
    let len = if c.args.len() > 1 {
        num(&c.arg(1))
    } else {
        1.0
    };
    if c.input.is_nil() {
        return Ok(Value::Array(Vec::new()));
    }
    if let Some(a) = c.input.as_array() {
        let items: Vec<Value> = a.values().map(|x| x.to_value()).collect();
        return Ok(match window(items.len(), begin, len) {
            Some((from, n)) => Value::Array(items.into_iter().skip(from).take(n).collect()),
            None => Value::Array(Vec::new()),
        });
    }
    let chars: Vec<char> = c.st().chars().collect();
    Ok(match window(chars.len(), begin, len) {
        Some((from, n)) => Value::scalar(chars.into_iter().skip(from).take(n).collect::<String>()),
        None => Value::scalar(""),
    })
}

/// Where a slice of `len` items starts and how many it takes; `None` when
/// it is empty by LiquidJS's rules.
fn window(len: usize, begin: f64, n: f64) -> Option<(usize, usize)> {
    let begin = if begin < 0.0 {
        len as f64 + begin
    } else {
        begin
    };
    (begin >= 0.0 && n >= 0.0).then_some((begin as usize, n as usize))
}
