//! Config errors, printed as `path:line:column: code: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A message as one line: a log event per line, whatever a parser wrote.
fn one_line(m: String) -> String {
    if m.contains(['\n', '\r']) {
        m.split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        m
    }
}

/// One problem in the config directory.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// File the problem is in.
    pub path: PathBuf,
    /// 1-based line (0 when the whole file is meant).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Stable code, e.g. `config.invalid_template`.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// The offending line of the file, for the caret display.
    pub source_line: Option<String>,
}

impl ConfigError {
    /// An error at a byte offset of a file's text.
    pub fn at(
        path: &Path,
        text: &str,
        offset: usize,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        Self {
            path: path.to_path_buf(),
            line,
            column,
            code,
            message: one_line(message.into()),
            source_line: Some(redact_line(&text[line_start..line_end])),
        }
    }

    /// An error about a whole file (or directory).
    pub fn file(path: &Path, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            code,
            message: one_line(message.into()),
            source_line: None,
        }
    }

    /// The error, the offending line and a caret under the column.
    pub fn display_with_source(&self) -> String {
        let mut out = self.to_string();
        if let (Some(line), true) = (&self.source_line, self.column > 0) {
            out.push_str(&format!("\n  {}\n  {}^", line, " ".repeat(self.column - 1)));
        }
        out
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.code,
                self.message
            )
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.path.display(),
                self.code,
                self.message
            )
        }
    }
}

/// A config line as an error shows it: a quoted value under a key that
/// names a secret (`…secret…`, `…token…`, `…password…`, `…key…`) is
/// shown as `<redacted>` unless it is an environment variable's name, the
/// value such keys should hold: a secret pasted there by mistake never
/// reaches a terminal or a log.
pub fn redact_line(line: &str) -> String {
    let Some((key, value)) = line.split_once('=') else {
        return line.to_string();
    };
    let k = key.to_ascii_lowercase();
    let secretish = ["secret", "token", "password", "passwd", "key"]
        .iter()
        .any(|w| k.contains(w));
    let v = value.trim();
    let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
    if !secretish || !quoted || is_env_name(&v[1..v.len() - 1]) {
        return line.to_string();
    }
    format!("{key}= \"<redacted>\"")
}

/// Whether `s` can be an environment variable's name: letters, digits and
/// `_`, not starting with a digit.
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// All problems found in one load: the config is used only if there are none.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} config error(s); first: {}", .0.len(), .0.first().map(|e| e.to_string()).unwrap_or_default())]
pub struct ConfigErrors(pub Vec<ConfigError>);
