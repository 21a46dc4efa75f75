//! Configuration: `templates/headgate.toml` and `templates/routes/*.toml`,
//! loaded and validated whole (CONTRACT §2).
//!
//! A [`Config`] is immutable once loaded; reload builds a new one and swaps
//! it in only if it is valid (see [`reload`]).

mod error;
mod load;
pub mod reload;
pub mod units;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use regex::Regex;

pub use error::{ConfigError, ConfigErrors};
pub use load::{LoadMode, check_texts, load_dir};

use crate::template::HeaderTemplate;

/// Everything `serve` runs on.
#[derive(Debug)]
pub struct Config {
    /// The config directory.
    pub dir: PathBuf,
    /// Server-wide settings from `headgate.toml`.
    pub server: Server,
    /// Routes by name (`/<name>/…`).
    pub routes: HashMap<String, Arc<Route>>,
    /// Webhook endpoints by name (`/_hooks/<name>`).
    pub webhooks: HashMap<String, Arc<Webhook>>,
    /// The fetch-on-miss resolver, if configured.
    pub resolver: Option<Arc<Resolver>>,
    /// `env.NAME` values, only those listed in `env_allow`.
    pub env: Arc<serde_json::Value>,
    /// Problems that do not stop the proxy (printed by `check`, logged by `serve`).
    pub warnings: Vec<ConfigError>,
}

/// `headgate.toml` settings.
#[derive(Debug, Clone)]
pub struct Server {
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener (loopback by default).
    pub admin_listen: SocketAddr,
    /// Name of the environment variable holding the admin bearer token.
    pub admin_token_env: String,
    /// The admin token, if that variable is set.
    pub admin_token: Option<Secret>,
    /// Default session TTL.
    pub ttl: Duration,
    /// Most sessions kept in memory.
    pub max_sessions: u64,
    /// Most bytes of session data kept in memory.
    pub max_store_bytes: u64,
    /// Largest session object accepted from any source.
    pub max_session_bytes: usize,
    /// Default request body limit for routes.
    pub body_limit: u64,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Session store.
    pub store: StoreKind,
    /// Serve `/_echo`, an upstream that answers with what it received
    /// (for the quick start and for trying templates).
    pub builtin_echo: bool,
    /// Extra CA certificates trusted for upstreams (`[tls] ca_file`).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// Timeouts, nginx-style.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Upstream TCP/TLS connect.
    pub connect: Duration,
    /// Upstream response headers (504 after).
    pub response_headers: Duration,
    /// No byte in either direction of a streaming body for this long ends it.
    pub idle: Duration,
    /// Client request headers must arrive within this.
    pub header_read: Duration,
    /// Graceful shutdown deadline for in-flight requests and streams.
    pub shutdown: Duration,
}

/// Where sessions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process (default).
    Memory,
    /// Shared through Redis.
    Redis(RedisSettings),
}

/// `[store] kind = "redis"`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// Prefix of every key and of the invalidation channel.
    pub prefix: String,
    /// How long a replica serves a session from its own cache before asking
    /// Redis again; bounds how stale a replica can be if an invalidation
    /// message is lost.
    pub cache_ttl: Duration,
    /// How long past `cache_ttl` a cached session is still served while
    /// Redis cannot be reached.
    pub stale_ttl: Duration,
    /// Connect and per-command deadline; a miss while Redis is down fails
    /// after this with `store.unavailable`.
    pub timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    /// The URL may carry a password: only its host part is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_userinfo(&self.url))
            .field("prefix", &self.prefix)
            .field("cache_ttl", &self.cache_ttl)
            .field("stale_ttl", &self.stale_ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `redis://user:pw@host/0` → `redis://***@host/0`.
pub fn redact_userinfo(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() => {
            format!("{scheme}://***{}", &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A secret read from the environment: `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<Arc<str>>) -> Self {
        Self(v.into())
    }

    /// The value, for comparison or signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison; an empty secret matches nothing.
    pub fn matches(&self, other: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(other))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

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
        platform: String,
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
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Name, the first path segment.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The real server.
    pub upstream: http::Uri,
    /// Session key sources, first present wins.
    pub session_keys: Vec<KeySource>,
    /// Keys must match this.
    pub session_key_pattern: Regex,
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
    pub platform: Option<String>,
}

/// A webhook endpoint.
#[derive(Debug)]
pub struct Webhook {
    /// Name (`/_hooks/<name>`).
    pub name: String,
    /// Platform whose payloads it understands.
    pub platform: String,
    /// Signing secret (HMAC key, shared secret or bearer token).
    pub secret: Option<Secret>,
    /// Vapi HMAC plan.
    pub hmac: HmacPlan,
    /// Accepted clock skew for signed timestamps.
    pub tolerance: Duration,
    /// TTL for sessions it writes.
    pub ttl: Duration,
}

/// Vapi's configurable HMAC verification plan.
#[derive(Debug, Clone)]
pub struct HmacPlan {
    /// `sha256`, `sha512` or `sha1`.
    pub algorithm: String,
    /// Header carrying the signature.
    pub signature_header: HeaderName,
    /// Header carrying the timestamp (empty: none).
    pub timestamp_header: Option<HeaderName>,
    /// What is signed: `{timestamp}` and `{body}` are substituted.
    pub payload: String,
    /// `hex` or `base64`.
    pub encoding: String,
    /// Prefix before the signature (e.g. `sha256=`).
    pub prefix: String,
}

/// The fetch-on-miss resolver.
#[derive(Debug)]
pub struct Resolver {
    /// URL template (`session.id`, `env.*`).
    pub url: HeaderTemplate,
    /// HTTP method.
    pub method: http::Method,
    /// Request headers.
    pub headers: Vec<(HeaderName, HeaderTemplate)>,
    /// Root the response is bound to (`call`).
    pub bind: String,
    /// JSON pointer into the response to take (default: whole body).
    pub pointer: Option<String>,
    /// Platform view applied to the fetched object (e.g. `vapi`).
    pub platform: Option<String>,
    /// Deadline for one fetch.
    pub timeout: Duration,
    /// How long a failure is remembered.
    pub negative_ttl: Duration,
    /// TTL of fetched sessions.
    pub ttl: Duration,
    /// Refresh in the background when this little TTL is left.
    pub refresh_before: Duration,
}

impl Config {
    /// A route by name.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.get(name)
    }
}
