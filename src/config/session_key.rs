//! Where a route finds the call's session key (`session_keys`) and what
//! a key must look like (`session_key_pattern`).

use std::fmt;

use http::HeaderName;
use regex::Regex;
use toml::Spanned;

use super::diagnostics::Ctx;
use super::schema::RawRoute;
use crate::platform::Platform;

const DEFAULT_KEY_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// Where a route finds the session key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `header:x-call-id`.
    Header(HeaderName),
    /// `query:NAME`.
    Query(String),
    /// `path:N`: the N-th segment (0-based) after the route prefix.
    Path(usize),
    /// `body:/json/pointer`.
    Body(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Header(h) => write!(f, "header:{h}"),
            KeySource::Query(q) => write!(f, "query:{q}"),
            KeySource::Path(n) => write!(f, "path:{n}"),
            KeySource::Body(p) => write!(f, "body:{p}"),
        }
    }
}

/// `session_keys`, or the platform's preset when absent.
pub(super) fn session_keys(
    ctx: &mut Ctx<'_>,
    raw: &RawRoute,
    platform: Platform,
) -> Vec<KeySource> {
    let Some(keys) = &raw.session_keys else {
        return platform
            .session_keys()
            .iter()
            .filter_map(|k| key_source(ctx, k, 0))
            .collect();
    };
    if keys.get_ref().is_empty() {
        ctx.err(
            keys.span().start,
            "config.invalid_session_key",
            "session_keys is empty: list at least one source",
        );
    }
    keys.get_ref()
        .iter()
        .filter_map(|k| key_source(ctx, k.get_ref(), k.span().start))
        .collect()
}

fn key_source(ctx: &mut Ctx<'_>, s: &str, offset: usize) -> Option<KeySource> {
    let source = match s.split_once(':') {
        Some(("header", h)) => return ctx.header_name(h, offset).map(KeySource::Header),
        Some(("query", q)) if !q.is_empty() => Some(KeySource::Query(q.to_string())),
        Some(("path", n)) => n.parse().ok().map(KeySource::Path),
        Some(("body", p)) if p.is_empty() || p.starts_with('/') => {
            Some(KeySource::Body(p.to_string()))
        }
        _ => None,
    };
    if source.is_none() {
        ctx.err(offset, "config.invalid_session_key", format!("`{s}` is not a session key source; write `header:NAME`, `query:NAME`, `path:N` or `body:/json/pointer`"));
    }
    source
}

/// `session_key_pattern`, compiled. The default is checked byte by byte:
/// a regex search on every request is far more machinery than a check
/// this simple needs.
#[derive(Debug, Clone)]
pub struct KeyPattern {
    regex: Regex,
    default: bool,
}

impl KeyPattern {
    /// Whether `key` matches.
    pub fn is_match(&self, key: &str) -> bool {
        match self.default {
            true => is_default_key(key),
            false => self.regex.is_match(key),
        }
    }

    /// The pattern as configured (or the default).
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

/// [`DEFAULT_KEY_PATTERN`], without the regex engine.
fn is_default_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

pub(super) fn key_pattern(ctx: &mut Ctx<'_>, raw: Option<&Spanned<String>>) -> Option<KeyPattern> {
    let src = raw.map_or(DEFAULT_KEY_PATTERN, |p| p.get_ref().as_str());
    match Regex::new(src) {
        Ok(regex) => Some(KeyPattern {
            regex,
            default: src == DEFAULT_KEY_PATTERN,
        }),
        Err(e) => {
            ctx.err(
                raw.map_or(0, |p| p.span().start),
                "config.invalid_pattern",
                format!("session_key_pattern is not a valid regex: {e}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_check_is_the_default_pattern() {
        let regex = Regex::new(DEFAULT_KEY_PATTERN).unwrap();
        let mut keys: Vec<String> = (0u32..0x250)
            .filter_map(char::from_u32)
            .flat_map(|c| [c.to_string(), format!("call-{c}"), format!("{c}id")])
            .collect();
        for n in [0, 1, 127, 128, 129, 300] {
            keys.push("a".repeat(n));
        }
        keys.extend(["abc\n", "\nabc", "a b", "call_8f2a-1:x.y", "日本", "é"].map(String::from));
        for k in &keys {
            assert_eq!(is_default_key(k), regex.is_match(k), "{k:?}");
        }
    }
}
