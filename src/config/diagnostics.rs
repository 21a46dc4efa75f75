//! Where config problems are collected: every error and warning of one
//! file, located at `path:line:column`, and the value parsers that report
//! into it (durations, sizes, secrets, templates, header names, choices).

use std::path::Path;
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::LoadMode;
use super::error::ConfigError;
use super::schema::TOP_LEVEL_KEYS;
use super::units::{parse_duration, parse_size};
use crate::platform::Platform;
use crate::secret::Secret;
use crate::template::HeaderTemplate;

/// One file being read: its text, and the problems found so far.
pub(super) struct Ctx<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub errors: &'a mut Vec<ConfigError>,
    pub warnings: &'a mut Vec<ConfigError>,
    pub mode: LoadMode,
    /// The environment variables read as secrets so far (every file's):
    /// `env_allow` may list none of them.
    pub secrets: &'a mut Vec<String>,
}

impl Ctx<'_> {
    pub fn err(&mut self, offset: usize, code: &'static str, msg: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.path, self.text, offset, code, msg));
    }

    pub fn warn(&mut self, offset: usize, code: &'static str, msg: impl Into<String>) {
        self.warnings
            .push(ConfigError::at(self.path, self.text, offset, code, msg));
    }

    /// A duration setting, or `default` when it is absent (or wrong).
    pub fn duration(&mut self, v: &Option<Spanned<String>>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|| {
                self.err(
                    s.span().start,
                    "config.invalid_duration",
                    format!(
                        "`{}` is not a duration of at most 365d; write e.g. `800ms`, `5s`, `2h`",
                        s.get_ref()
                    ),
                );
                default
            }),
        }
    }

    /// A size setting, or `default` when it is absent (or wrong).
    pub fn size(&mut self, v: &Option<Spanned<String>>, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => parse_size(s.get_ref()).unwrap_or_else(|| {
                self.err(
                    s.span().start,
                    "config.invalid_size",
                    format!(
                        "`{}` is not a size; write e.g. `64KiB`, `10MiB`",
                        s.get_ref()
                    ),
                );
                default
            }),
        }
    }

    /// One of `options` by name, or `default` when absent; anything else
    /// is `config.invalid_value` naming the choices.
    pub fn choice<T: Copy>(
        &mut self,
        v: Option<&Spanned<String>>,
        what: &str,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(s) = v else { return default };
        if let Some((_, t)) = options.iter().find(|(name, _)| name == s.get_ref()) {
            return *t;
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("`{n}`")).collect();
        let list = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        let msg = format!("{what} `{}` is not {list}", s.get_ref());
        self.err(s.span().start, "config.invalid_value", msg);
        default
    }

    /// A platform name, checked against the platforms headgate knows.
    pub fn platform(&mut self, name: &str, offset: usize) -> Option<Platform> {
        let p = Platform::from_name(name);
        if p.is_none() {
            let known = Platform::names();
            let msg = format!("unknown platform `{name}`; known: {known}");
            self.err(offset, "config.unknown_platform", msg);
        }
        p
    }

    /// Reads a secret from the environment (`serve`: required).
    pub fn secret(&mut self, env: &Spanned<String>) -> Option<Secret> {
        if !super::error::is_env_name(env.get_ref()) {
            // Not quoted: it may be the secret itself, pasted by mistake.
            let msg = "this must name an environment variable (letters, digits, `_`); the value given is not one and is not shown, as it may be the secret itself";
            self.err(env.span().start, "config.invalid_value", msg);
            return None;
        }
        self.secrets.push(env.get_ref().clone());
        match std::env::var(env.get_ref()) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                let msg = format!(
                    "environment variable `{}` is not set; export it before `headgate serve`",
                    env.get_ref()
                );
                match self.mode {
                    LoadMode::Serve | LoadMode::Check => {
                        self.err(env.span().start, "config.missing_secret", msg)
                    }
                    LoadMode::Offline => self.warn(env.span().start, "config.missing_secret", msg),
                }
                None
            }
        }
    }

    /// Compiles a template found in a TOML string starting at `offset`;
    /// template positions are mapped into the file.
    pub fn template(&mut self, src: &str, offset: usize) -> Option<HeaderTemplate> {
        match HeaderTemplate::compile(src) {
            Ok(t) => Some(t),
            Err(e) => {
                let span = e.span().unwrap_or(crate::template::Span::new(0, 0));
                self.template_err(offset, span, e.code(), e.message().to_string());
                None
            }
        }
    }

    /// An error at `span` of a template found in a TOML string starting
    /// at `offset`.
    pub fn template_err(
        &mut self,
        offset: usize,
        span: crate::template::Span,
        code: &'static str,
        msg: impl Into<String>,
    ) {
        // Skip the opening quote of a one-line string.
        let inner = (offset + 1 + span.start).min(self.text.len());
        self.err(inner, code, msg);
    }

    /// A header name as written in config (case-insensitive).
    pub fn header_name(&mut self, s: &str, offset: usize) -> Option<HeaderName> {
        match HeaderName::from_bytes(s.trim().to_ascii_lowercase().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.err(
                    offset,
                    "config.invalid_header_name",
                    format!("`{s}` is not a valid header name"),
                );
                None
            }
        }
    }
}

/// A TOML syntax or shape error at its location. A top-level key found
/// inside a table (a file appended after another's last `[table]`) says
/// where it belongs.
pub(super) fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let mut msg = e.message().trim().to_string();
    let misplaced = msg
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .filter(|k| TOP_LEVEL_KEYS.contains(k));
    if let Some(key) = misplaced {
        msg = format!(
            "`{key}` is inside a [table] here, but it belongs at the top level of headgate.toml: move it above the first `[…]` line"
        );
    }
    ConfigError::at(path, text, offset, "config.toml", msg)
}
