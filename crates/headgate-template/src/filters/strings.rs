//! String filters.

use liquid_core::Result;
use liquid_core::model::Value;

use super::Invocation;
use super::js::{self, js_split, js_trim_end, js_trim_start, num, split_ws};

/// `append: s`.
pub(super) fn append(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(c.st() + &c.sarg(0)))
}

/// `prepend: s`.
pub(super) fn prepend(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(c.sarg(0) + &c.st()))
}

/// `downcase`.
pub(super) fn downcase(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(c.st().to_lowercase()))
}

/// `upcase`.
pub(super) fn upcase(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(c.st().to_uppercase()))
}

/// `capitalize`: the first character upper case, the rest lower case.
pub(super) fn capitalize(c: &Invocation<'_>) -> Result<Value> {
    let t = c.st();
    let mut chars = t.chars();
    Ok(Value::scalar(match chars.next() {
        Some(f) => f.to_uppercase().collect::<String>() + &chars.as_str().to_lowercase(),
        None => String::new(),
    }))
}

/// `strip`, `lstrip`, `rstrip` `[: characters]`: JavaScript whitespace, or
/// the given characters, removed from both ends, the left or the right.
pub(super) fn strip(c: &Invocation<'_>) -> Result<Value> {
    let t = c.st();
    let set: Option<Vec<char>> = c
        .has_arg(0)
        .then(|| c.sarg(0).chars().collect())
        .filter(|s: &Vec<char>| !s.is_empty());
    let left = c.name != "rstrip";
    let right = c.name != "lstrip";
    let mut r: &str = &t;
    match &set {
        Some(set) => {
            if left {
                r = r.trim_start_matches(|ch| set.contains(&ch));
            }
            if right {
                r = r.trim_end_matches(|ch| set.contains(&ch));
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
    Ok(Value::scalar(r.to_string()))
}

/// `remove: s`: every occurrence removed.
pub(super) fn remove(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(js_split(&c.st(), &c.sarg(0)).join("")))
}

/// `replace: s, with`: every occurrence replaced.
pub(super) fn replace(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(
        js_split(&c.st(), &c.sarg(0)).join(&c.sarg(1)),
    ))
}

/// `remove_first: s` and `replace_first: s, with`: the first occurrence.
pub(super) fn replace_first(c: &Invocation<'_>) -> Result<Value> {
    let with = match c.name {
        "remove_first" => String::new(),
        _ => c.sarg(1),
    };
    Ok(Value::scalar(c.st().replacen(&c.sarg(0), &with, 1)))
}

/// `split: separator`, trailing empty pieces dropped (as LiquidJS does).
pub(super) fn split(c: &Invocation<'_>) -> Result<Value> {
    let mut parts = js_split(&c.st(), &c.sarg(0));
    while parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    Ok(Value::Array(parts.into_iter().map(Value::scalar).collect()))
}

/// `strip_newlines`.
pub(super) fn strip_newlines(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(c.st().replace("\r\n", "").replace('\n', "")))
}

/// `newline_to_br`.
pub(super) fn newline_to_br(c: &Invocation<'_>) -> Result<Value> {
    let t = c.st().replace("\r\n", "\n").replace('\n', "<br />\n");
    Ok(Value::scalar(t))
}

/// `escape`: HTML-escaped.
pub(super) fn escape(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(js::escape(&c.st())))
}

/// `escape_once`: HTML-escaped without escaping entities again.
pub(super) fn escape_once(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(js::escape(&js::unescape(&c.st()))))
}

/// `strip_html`: tags, scripts, styles and comments removed.
pub(super) fn strip_html(c: &Invocation<'_>) -> Result<Value> {
    Ok(Value::scalar(js::strip_html(&c.st())))
}

/// `truncate[: length[, ellipsis]]`: at most `length` characters (50),
/// ellipsis (`...`) included.
pub(super) fn truncate(c: &Invocation<'_>) -> Result<Value> {
    let t = c.st();
    let l = if c.has_arg(0) { num(&c.arg(0)) } else { 50.0 };
    let o = if c.args.len() > 1 {
        c.sarg(1)
    } else {
        "...".to_string()
    };
    if (t.chars().count() as f64) <= l {
        return Ok(c.input.to_value());
    }
    let keep = (l - o.chars().count() as f64).max(0.0) as usize;
    Ok(Value::scalar(t.chars().take(keep).collect::<String>() + &o))
}

/// `truncatewords[: words[, ellipsis]]`: at most `words` words (15).
pub(super) fn truncatewords(c: &Invocation<'_>) -> Result<Value> {
    let t = c.st();
    let words = if c.has_arg(0) { num(&c.arg(0)) } else { 15.0 };
    let o = if c.args.len() > 1 {
        c.sarg(1)
    } else {
        "...".to_string()
    };
    let arr: Vec<&str> = split_ws(js_trim_start(&t));
    let words = if words <= 0.0 { 1 } else { words as usize };
    let mut ret = arr
        .iter()
        .take(words)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if arr.len() >= words {
        ret.push_str(&o);
    }
    Ok(Value::scalar(ret))
}
