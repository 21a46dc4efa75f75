//! `[audit]`: where the MCP audit trail goes (docs/mcp.md "Which tools may an
//! agent call").

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::diagnostics::Ctx;
use super::schema::RawAudit;
use crate::secret::Secret;

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Standard output (`path = "-"`).
    Stdout,
    /// A file, appended to and reopened on SIGHUP.
    File(PathBuf),
}

/// `[audit]` settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The file (relative to the config directory) or standard output.
    pub sink: Sink,
    /// The key that names sessions in records (`session_key_env`); a key
    /// made at start when unset.
    pub session_key: Option<Secret>,
}

/// Builds `[audit]`.
pub(super) fn audit(ctx: &mut Ctx<'_>, raw: &RawAudit) -> Option<AuditSettings> {
    let path: &Spanned<String> = &raw.path;
    let sink = match path.get_ref().as_str() {
        "" => {
            let msg = "audit path is empty; write a file name or \"-\" for standard output";
            ctx.err(path.span().start, "config.invalid_value", msg);
            return None;
        }
        "-" => Sink::Stdout,
        p => Sink::File(ctx.path.parent().unwrap_or(Path::new(".")).join(p)),
    };
    let session_key = raw.session_key_env.as_ref().and_then(|env| ctx.secret(env));
    Some(AuditSettings { sink, session_key })
}
