//! A route file, `routes/<name>.toml` (docs/configuration.md "Configuration reference"):
//! the upstream, where the call id comes from, who may call, what to do
//! with an unknown call, and the headers to inject. The file as written is
//! [`RawRoute`](super::schema::RawRoute); [`compile`] checks it into a
//! [`Route`], whose [`Compiled`] part holds what the request path needs
//! that no file says.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::credentials::Credential;
pub use super::session_key::{KeyPattern, KeySource};
use crate::mcp::ToolPolicy;
use crate::platform::Platform;
use crate::secret::Secret;
use crate::template::HeaderTemplate;

/// Headers a template may never set: framing and connection management
/// belong to the proxy, and `mcp-session-id` to the MCP client and server.
const FORBIDDEN_TARGETS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "mcp-session-id",
];

/// The upstream that is headgate's own echo.
const BUILTIN_ECHO: &str = "builtin:echo";

/// How a route authenticates its caller.
#[derive(Debug, Clone)]
pub enum InboundAuth {
    /// Nobody is checked (a warning at start).
    None,
    /// A static header compared in constant time.
    Header {
        /// Header name.
        header: HeaderName,
        /// Expected value.
        secret: Secret,
    },
    /// A platform's request signature (Retell custom functions).
    Platform {
        /// Which platform's scheme.
        platform: Platform,
        /// Signing key.
        secret: Secret,
    },
}

/// What to do when the session is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnknown {
    /// 403 `session.not_found`.
    Reject,
    /// Fetch it through `[resolver]`.
    Resolve,
    /// Forward without injecting.
    Pass,
}

/// How proxy errors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error":{"code":…,"message":…}}` with the HTTP status.
    Json,
    /// A JSON-RPC error response (HTTP 200) carrying the request's id.
    JsonRpc,
}

/// A route's access log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    /// Through the log, in its format (`HEADGATE_LOG_FORMAT`).
    Default,
    /// None (a health-check route, say).
    Off,
    /// One JSON object per line on standard output, whatever the log's
    /// format.
    Json,
    /// One `key=value` line on standard output.
    Text,
}

/// What to do when one header fails to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Refuse the request (502 `template.render_failed`).
    Reject,
    /// Send the request without this header.
    Omit,
}

/// One injected header.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// Header name (lower case).
    pub name: HeaderName,
    /// Compiled template.
    pub template: HeaderTemplate,
    /// Failure policy.
    pub on_error: OnError,
    /// It renders the same for every request of a session: text and at
    /// least one variable (no filters, no tags), none under `request` or
    /// `credentials`. Its value may be kept with the session.
    pub per_session: bool,
}

/// The render-time roots that differ from one request of a session to
/// the next (docs/templates.md "Template language"); `session`, `env` and the
/// session's own variables do not (`env` is read with the config, whose
/// reload compiles every template anew).
const PER_REQUEST_ROOTS: [&str; 2] = ["request", "credentials"];

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Name, the first path segment. Held for the life of the process
    /// ([`intern`]): every request's timeline record and metrics name its
    /// route, and a shared count on the name was written by every worker on
    /// every request.
    pub name: &'static str,
    /// The file it came from.
    pub file: PathBuf,
    /// The real server.
    pub upstream: http::Uri,
    /// `upstream = "builtin:echo"`: answered in process by the echo, which
    /// shows the request as the upstream would get it (the quick start's
    /// upstream: it follows the listener wherever it binds).
    pub echo: bool,
    /// Session key sources, first present wins.
    pub session_keys: Vec<KeySource>,
    /// Keys must match this.
    pub session_key_pattern: KeyPattern,
    /// Caller authentication.
    pub inbound_auth: InboundAuth,
    /// Unknown session policy.
    pub on_unknown_session: OnUnknown,
    /// How long an unknown session may wait for its webhook or PUT.
    pub wait_for_session: Duration,
    /// Injected headers.
    pub headers: Vec<HeaderRule>,
    /// Removed before forwarding.
    pub strip: Vec<HeaderName>,
    /// Error body format.
    pub error_style: ErrorStyle,
    /// Request body limit.
    pub body_limit: u64,
    /// Render from this JSON pointer of the body (bound as `call`), no store.
    pub vars_from_body: Option<String>,
    /// Platform preset applied, if any.
    pub platform: Option<Platform>,
    /// `[mcp]`: which tools the route's callers may call.
    pub mcp: Option<Arc<ToolPolicy>>,
    /// `[mcp] budgets` and `max_result_bytes`.
    pub governance: Option<Arc<crate::mcp::governance::Governance>>,
    /// `access_log`: how its requests are logged.
    pub access_log: AccessLog,
    /// The credentials its templates use, obtained before rendering.
    pub credentials: Vec<Arc<Credential>>,
    /// What the request path needs that no file says (below).
    pub compiled: Compiled,
}

/// What a route compiles to for the request path beyond what its file
/// declares: worked out once at load, from the declaration, so a request
/// never works it out again; and the slot its metric handles are kept in,
/// the one part written after load (on the route's first request).
#[derive(Debug, Default)]
pub struct Compiled {
    /// The header sources among its session keys: none may come twice,
    /// which one pass over the head checks for all of them.
    pub key_headers: crate::net::headers::Names,
    /// [`Route::own_header_names`], with their lengths: most client lines
    /// are forwarded on one test of their length.
    pub own_headers: crate::net::headers::Names,
    /// Whether requests need their MCP view: `[mcp]` is set or a template
    /// reads `request.mcp`. Other routes never parse it.
    pub needs_mcp: bool,
    /// Its metrics' handles, resolved on its first request.
    pub handles: crate::metrics::RouteHandles,
}

impl Route {
    /// The route's own names a client header line is left out of the
    /// upstream request for (all lowercase): its key header or platform
    /// signature header, `[strip]`, and every header a rule sets.
    pub fn own_header_names(&self) -> impl Iterator<Item = &str> {
        let auth = match &self.inbound_auth {
            InboundAuth::None => None,
            InboundAuth::Header { header, .. } => Some(header.as_str()),
            InboundAuth::Platform { platform, .. } => platform.request_signature(),
        };
        let rules = self.headers.iter().map(|r| r.name.as_str());
        let identity = self.limits_tools().then_some("accept-encoding");
        (auth.into_iter())
            .chain(self.strip.iter().map(http::HeaderName::as_str))
            .chain(rules)
            .chain(identity)
    }

    /// Whether `[mcp]` limits the tools callers may call or governs their
    /// calls (budgets, `max_result_bytes`): then calls are judged and
    /// `tools/list` results filtered (results cut), so its upstream
    /// requests ask for `Accept-Encoding: identity` (a compressed answer
    /// could not be read).
    pub fn limits_tools(&self) -> bool {
        self.mcp.as_ref().is_some_and(|p| !p.is_open()) || self.governance.is_some()
    }

    /// Whether the route reads the request body whole before forwarding:
    /// to check a signature over it, to look inside it, (with
    /// credentials) to send it again after an upstream 401, or (limiting
    /// tools) to judge every call in it: a call past the first 64 KiB
    /// would otherwise reach the server unjudged.
    pub fn reads_body(&self) -> bool {
        matches!(self.inbound_auth, InboundAuth::Platform { .. })
            || self.parses_body()
            || !self.credentials.is_empty()
            || self.limits_tools()
    }

    /// Whether the route reads any of the body before forwarding (all
    /// of it, or a peek).
    pub fn takes_body(&self) -> bool {
        self.reads_body() || self.peeks_body()
    }

    /// Whether the route reads the first 64 KiB of the body before
    /// forwarding: a JSON-RPC route (for the id of its errors) and an MCP
    /// route (for the call's method and tool).
    pub fn peeks_body(&self) -> bool {
        self.error_style == ErrorStyle::JsonRpc || self.compiled.needs_mcp
    }

    /// Whether the route looks inside the body: for its variables or its
    /// session key.
    pub fn parses_body(&self) -> bool {
        self.vars_from_body.is_some()
            || self
                .session_keys
                .iter()
                .any(|k| matches!(k, KeySource::Body(_)))
    }
}

mod compile;

pub(super) use compile::{Known, route};

#[cfg(test)]
mod tests;

/// `name` for the life of the process: one copy per distinct route name
/// ever loaded (reloads reuse it), so what holds a route's name holds no
/// count on it. Names are what ops declared, so the set is small and
/// bounded by the files they write.
pub fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let new: &'static str = Box::leak(name.into());
    names.insert(new);
    new
}
