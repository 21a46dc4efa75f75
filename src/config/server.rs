//! `headgate.toml`'s server-wide settings: listeners, the admin token,
//! session limits, body limit and timeouts (docs/configuration.md "Configuration
//! reference").

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::audit::{self, AuditSettings};
use super::diagnostics::Ctx;
use super::schema::{RawServer, RawTimeouts};
use super::store::{StoreKind, store};
use super::tls;
use crate::net::cidr::Cidr;
use crate::net::host::AllowedHosts;
use crate::secret::Secret;

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
    /// The `Host` names the admin listener answers besides loopback names
    /// and IP literals (`admin_hosts`; the DNS-rebinding guard).
    pub admin_hosts: AllowedHosts,
    /// A read-only token for `GET /metrics` (`metrics_token_env`), so
    /// Prometheus never holds the token that can rewrite sessions.
    pub metrics_token: Option<Secret>,
    /// Peers whose `X-Forwarded-For` is appended to; from anyone else it
    /// is replaced by the peer's address.
    pub trusted_proxies: Vec<Cidr>,
    /// Most open connections on the public listener; more are closed at
    /// once and counted (default: what the descriptor limit allows).
    pub max_connections: Option<u64>,
    /// Threads serving the public listener, each with its own runtime,
    /// listening socket (`SO_REUSEPORT`) and upstream pool (default: one
    /// per core).
    pub workers: usize,
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
    /// `[tracing] propagate`: every upstream request carries a W3C
    /// `traceparent` (the caller's, or a new trace), and the access log its
    /// trace id.
    pub trace_context: bool,
    /// `[tracing] otlp_endpoint`: where spans are exported (OTLP/HTTP).
    pub otlp_endpoint: Option<String>,
    /// The MCP audit trail (`[audit]`), if configured.
    pub audit: Option<AuditSettings>,
    /// Extra CA certificates trusted for upstreams (`[tls] ca_file`).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// HTTPS on the public listener (`[tls] cert_file`, `key_file`).
    pub listener_tls: Option<tls::ListenerTls>,
    /// HTTPS on the admin listener too, with the same certificate
    /// (`[tls] admin = true`): the console's cookie is then `Secure` and
    /// `__Host-` prefixed.
    pub admin_tls: bool,
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

fn addr(ctx: &mut Ctx<'_>, v: &Option<Spanned<String>>, default: &str) -> std::net::SocketAddr {
    let fallback = default
        .parse()
        .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    match v {
        None => fallback,
        Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
            ctx.err(
                s.span().start,
                "config.invalid_address",
                format!(
                    "`{}` is not an address; write e.g. `127.0.0.1:8080` or `[::1]:8080`",
                    s.get_ref()
                ),
            );
            fallback
        }),
    }
}

/// The server-wide settings of `headgate.toml`.
pub(super) fn server_settings(ctx: &mut Ctx<'_>, raw: &RawServer) -> Server {
    let listen = addr(ctx, &raw.listen, "127.0.0.1:8080");
    let admin_listen = addr(ctx, &raw.admin_listen, "127.0.0.1:9090");
    let admin_token_env = raw
        .admin_token_env
        .clone()
        .unwrap_or_else(|| "HEADGATE_ADMIN_TOKEN".into());
    let admin_token = std::env::var(&admin_token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        ctx.warn(0, "config.weak_admin_token", format!("`{admin_token_env}` holds fewer than 16 bytes: an admin token that short can be guessed; use 32 random bytes (e.g. `openssl rand -hex 32`)"));
    }
    if admin_token.is_none() && !admin_listen.ip().is_loopback() {
        let offset = raw.admin_listen.as_ref().map_or(0, |s| s.span().start);
        ctx.err(offset, "config.admin_token_required", format!("the admin API listens on a non-loopback address, so it needs a token: set `{admin_token_env}`"));
    }
    let admin_hosts = admin_hosts(ctx, &raw.admin_hosts);
    let timeouts = timeouts(ctx, raw.timeouts.as_ref());
    let metrics_token = raw.metrics_token_env.as_ref().and_then(|e| ctx.secret(e));
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .filter_map(|c| {
            let parsed = Cidr::parse(c.get_ref());
            if parsed.is_none() {
                let msg = format!(
                    "`{}` is not an address or a network like `10.0.0.0/8`",
                    c.get_ref()
                );
                ctx.err(c.span().start, "config.invalid_value", msg);
            }
            parsed
        })
        .collect();
    let extra_roots = tls::extra_roots(ctx, raw.tls.as_ref().and_then(|t| t.ca_file.as_ref()));
    let store = store(ctx, raw.store.as_ref(), &extra_roots);
    let listener_tls = (raw.tls.as_ref())
        .and_then(|t| tls::listener(ctx, t.cert_file.as_ref(), t.key_file.as_ref()));
    let admin_tls = raw.tls.as_ref().and_then(|t| t.admin.as_ref());
    let admin_tls = match admin_tls {
        Some(a) if *a.get_ref() && listener_tls.is_none() => {
            let msg = "[tls] admin = true serves the admin listener with the public listener's certificate: set cert_file and key_file";
            ctx.err(a.span().start, "config.invalid_tls", msg);
            false
        }
        Some(a) => *a.get_ref(),
        None => false,
    };
    retired_core(raw.core.as_ref(), ctx);
    Server {
        listen,
        admin_listen,
        admin_token_env,
        admin_token,
        admin_hosts,
        metrics_token,
        trusted_proxies,
        max_connections: raw.max_connections.filter(|n| *n > 0),
        workers: raw
            .workers
            .map_or_else(default_workers, |n| n.clamp(1, 256) as usize),
        ttl: ctx.duration(&raw.ttl, Duration::from_secs(2 * 3600)),
        max_sessions: raw.max_sessions.unwrap_or(1_000_000),
        max_store_bytes: ctx.size(&raw.max_store_bytes, 1 << 30),
        max_session_bytes: ctx.size(&raw.max_session_bytes, 64 << 10) as usize,
        body_limit: ctx.size(&raw.body_limit, 10 << 20),
        timeouts,
        store,
        builtin_echo: raw.builtin_echo.unwrap_or(false),
        audit: raw.audit.as_ref().and_then(|a| audit::audit(ctx, a)),
        trace_context: raw
            .tracing
            .as_ref()
            .is_some_and(|t| t.propagate.unwrap_or(true)),
        otlp_endpoint: (raw.tracing.as_ref())
            .and_then(|t| otlp_endpoint(ctx, t.otlp_endpoint.as_ref())),
        extra_roots,
        listener_tls,
        admin_tls,
    }
}

/// `admin_hosts`: host names, each optionally `.`-prefixed (then its
/// subdomains too).
fn admin_hosts(ctx: &mut Ctx<'_>, raw: &[Spanned<String>]) -> AllowedHosts {
    let names: Vec<String> = raw.iter().map(|s| s.get_ref().clone()).collect();
    AllowedHosts::new(&names).unwrap_or_else(|bad| {
        let at = raw.iter().find(|s| *s.get_ref() == bad).map_or(0, |s| s.span().start);
        let msg = format!("`{bad}` is not a host name; write e.g. `headgate-admin` or `.internal.example` (that domain and its subdomains)");
        ctx.err(at, "config.invalid_value", msg);
        AllowedHosts::default()
    })
}

/// `[timeouts]`: nginx-style names, each with its default.
fn timeouts(ctx: &mut Ctx<'_>, t: Option<&RawTimeouts>) -> Timeouts {
    let none = RawTimeouts::default();
    let t = t.unwrap_or(&none);
    Timeouts {
        connect: ctx.duration(&t.connect, Duration::from_secs(5)),
        response_headers: ctx.duration(&t.response_headers, Duration::from_secs(30)),
        idle: ctx.duration(&t.idle, Duration::from_secs(300)),
        header_read: ctx.duration(&t.header_read, Duration::from_secs(10)),
        shutdown: ctx.duration(&t.shutdown, Duration::from_secs(30)),
    }
}

/// `[tracing] otlp_endpoint`: an `http://` or `https://` URL.
fn otlp_endpoint(ctx: &mut Ctx<'_>, v: Option<&Spanned<String>>) -> Option<String> {
    let v = v?;
    let ok = v
        .get_ref()
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if !ok {
        let msg = "otlp_endpoint must be the OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`";
        ctx.err(v.span().start, "config.invalid_value", msg);
        return None;
    }
    Some(v.get_ref().clone())
}

/// `core`, which chose between the forwarding core and hyper for HTTP/1.1,
/// is gone: HTTP/1.1, cleartext or TLS, is the forwarding core's, HTTP/2
/// hyper's. `core = "own"` asked for what now always happens (a warning);
/// any other value asked for what no longer exists (an error, so a
/// deployment that chose hyper learns it at its next check).
fn retired_core(core: Option<&Spanned<String>>, ctx: &mut Ctx<'_>) {
    const WHAT: &str = "HTTP/1.1 (cleartext and TLS) is served by the forwarding core and HTTP/2 by hyper; delete the line";
    match core {
        None => {}
        Some(c) if c.get_ref() == "own" => {
            ctx.warn(
                c.span().start,
                "config.retired",
                format!("`core` is no longer read: {WHAT}"),
            );
        }
        Some(c) => {
            let msg = format!("`core = \"{}\"` was removed: {WHAT}", c.get_ref());
            ctx.err(c.span().start, "config.retired", msg);
        }
    }
}

/// One public-listener worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
