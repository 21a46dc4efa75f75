//! Reading and validating the config directory. Every problem is collected
//! (not just the first) and located as `path:line:column`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::units::{parse_duration, parse_size};
use super::*;
use crate::template::HeaderTemplate;

/// `check` reports missing secret variables as warnings (CI may not have
/// them); `serve` refuses to start without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `headgate check`.
    Check,
    /// `headgate serve`.
    Serve,
}

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

const DEFAULT_KEYS: &[&str] = &[
    "header:x-call-id",
    "header:x-chat-id",
    "header:x-session-id",
];
const DEFAULT_KEY_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    admin_token_env: Option<String>,
    #[serde(default)]
    env_allow: Vec<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    max_sessions: Option<u64>,
    max_store_bytes: Option<Spanned<String>>,
    max_session_bytes: Option<Spanned<String>>,
    body_limit: Option<Spanned<String>>,
    builtin_echo: Option<bool>,
    #[serde(default)]
    timeouts: BTreeMap<String, Spanned<String>>,
    store: Option<RawStore>,
    tls: Option<RawTls>,
    resolver: Option<RawResolver>,
    #[serde(default)]
    webhooks: BTreeMap<String, RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    prefix: Option<String>,
    cache_ttl: Option<Spanned<String>>,
    stale_ttl: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolver {
    platform: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    bind: Option<String>,
    pointer: Option<String>,
    timeout: Option<Spanned<String>>,
    negative_ttl: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    refresh_before: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    platform: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    hmac: Option<RawHmac>,
    tolerance: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHmac {
    algorithm: Option<String>,
    signature_header: Option<String>,
    timestamp_header: Option<String>,
    payload: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    upstream: Spanned<String>,
    platform: Option<Spanned<String>>,
    session_keys: Option<Spanned<Vec<Spanned<String>>>>,
    session_key_pattern: Option<Spanned<String>>,
    inbound_auth: Option<Spanned<toml::Value>>,
    on_unknown_session: Option<Spanned<String>>,
    wait_for_session: Option<Spanned<String>>,
    error_style: Option<Spanned<String>>,
    body_limit: Option<Spanned<String>>,
    vars_from_body: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<toml::Value>>,
    strip: Option<RawStrip>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrip {
    #[serde(default)]
    headers: Vec<Spanned<String>>,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
    warnings: &'a mut Vec<ConfigError>,
    mode: LoadMode,
}

impl Ctx<'_> {
    fn err(&mut self, offset: usize, code: &'static str, msg: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.path, self.text, offset, code, msg));
    }
    fn warn(&mut self, offset: usize, code: &'static str, msg: impl Into<String>) {
        self.warnings
            .push(ConfigError::at(self.path, self.text, offset, code, msg));
    }
    fn duration(&mut self, v: &Option<Spanned<String>>, default: Duration) -> Duration {
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
    fn size(&mut self, v: &Option<Spanned<String>>, default: u64) -> u64 {
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
    /// Reads a secret from the environment (`serve`: required).
    fn secret(&mut self, env: &Spanned<String>) -> Option<Secret> {
        match std::env::var(env.get_ref()) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                let msg = format!(
                    "environment variable `{}` is not set; export it before `headgate serve`",
                    env.get_ref()
                );
                match self.mode {
                    LoadMode::Serve => self.err(env.span().start, "config.missing_secret", msg),
                    LoadMode::Check => self.warn(env.span().start, "config.missing_secret", msg),
                }
                None
            }
        }
    }
    /// Compiles a template found in a TOML string starting at `offset`;
    /// template positions are mapped into the file.
    fn template(&mut self, src: &str, offset: usize) -> Option<HeaderTemplate> {
        match HeaderTemplate::compile(src) {
            Ok(t) => Some(t),
            Err(e) => {
                // Skip the opening quote of a one-line string.
                let inner = offset + 1 + e.span().map_or(0, |s| s.start);
                let inner = inner.min(self.text.len());
                self.err(inner, e.code(), e.message().to_string());
                None
            }
        }
    }
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let msg = e.message().trim().to_string();
    ConfigError::at(path, text, offset, "config.toml", msg)
}

/// Loads and validates `dir` (`headgate.toml` optional, `routes/*.toml`).
pub fn load_dir(dir: &Path, mode: LoadMode) -> Result<Config, ConfigErrors> {
    if !dir.is_dir() {
        return Err(ConfigErrors(vec![ConfigError::file(
            dir,
            "config.not_found",
            "config directory not found; pass --templates DIR or create templates/",
        )]));
    }
    let main_text = std::fs::read_to_string(dir.join("headgate.toml")).unwrap_or_default();
    let routes_dir = dir.join("routes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&routes_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(t) => routes.push((file, t)),
            Err(e) => errors.push(ConfigError::file(&file, "config.unreadable", e.to_string())),
        }
    }
    build(dir, &main_text, &routes, mode, errors)
}

/// Validates config given as text (`headgate.toml` and `(name, route
/// file)` pairs), as `check` would: for tools and fuzzing.
pub fn check_texts(main: &str, routes: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let dir = Path::new("<memory>");
    let routes: Vec<(PathBuf, String)> = routes
        .iter()
        .map(|(n, t)| (dir.join("routes").join(format!("{n}.toml")), t.to_string()))
        .collect();
    build(dir, main, &routes, LoadMode::Check, Vec::new())
}

fn build(
    dir: &Path,
    main_text: &str,
    route_files: &[(PathBuf, String)],
    mode: LoadMode,
    mut errors: Vec<ConfigError>,
) -> Result<Config, ConfigErrors> {
    let mut warnings = Vec::new();
    let main_path = dir.join("headgate.toml");
    let raw: RawServer = match toml::from_str(main_text) {
        Ok(r) => r,
        Err(e) => {
            errors.push(toml_error(&main_path, main_text, &e));
            RawServer::default()
        }
    };
    let mut ctx = Ctx {
        path: &main_path,
        text: main_text,
        errors: &mut errors,
        warnings: &mut warnings,
        mode,
    };
    let server = server_settings(&mut ctx, &raw);
    let env = env_object(&raw);
    let resolver = raw
        .resolver
        .as_ref()
        .and_then(|r| resolver(&mut ctx, r, server.ttl));
    let mut webhooks = HashMap::new();
    for (name, w) in &raw.webhooks {
        if let Some(hook) = webhook(&mut ctx, name, w, server.ttl) {
            webhooks.insert(name.clone(), Arc::new(hook));
        }
    }

    let mut routes = HashMap::new();
    if route_files.is_empty() {
        warnings.push(ConfigError::file(
            &dir.join("routes"),
            "config.no_routes",
            "no routes: add routes/<name>.toml",
        ));
    }
    for (file, text) in route_files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.is_empty()
            || name.starts_with('_')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errors.push(ConfigError::file(file, "config.invalid_route_name", "route file names must be letters, digits, `-`, `_` or `.`, not starting with `_` (reserved for /_hooks and /_echo)"));
            continue;
        }
        let raw: RawRoute = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                errors.push(toml_error(file, text, &e));
                continue;
            }
        };
        let mut ctx = Ctx {
            path: file,
            text,
            errors: &mut errors,
            warnings: &mut warnings,
            mode,
        };
        if let Some(r) = route(&mut ctx, &name, file, raw, &server, resolver.is_some()) {
            routes.insert(name, Arc::new(r));
        }
    }

    if errors.is_empty() {
        Ok(Config {
            dir: dir.to_path_buf(),
            server,
            routes,
            webhooks,
            resolver: resolver.map(Arc::new),
            env: Arc::new(env),
            warnings,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn env_object(raw: &RawServer) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for name in &raw.env_allow {
        if let Ok(v) = std::env::var(name.get_ref()) {
            m.insert(name.get_ref().clone(), serde_json::Value::String(v));
        }
    }
    serde_json::Value::Object(m)
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

fn server_settings(ctx: &mut Ctx<'_>, raw: &RawServer) -> Server {
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
    if admin_token.is_none() && !admin_listen.ip().is_loopback() {
        let offset = raw.admin_listen.as_ref().map_or(0, |s| s.span().start);
        ctx.err(offset, "config.admin_token_required", format!("the admin API listens on a non-loopback address, so it needs a token: set `{admin_token_env}`"));
    }
    let t = &raw.timeouts;
    let mut timeouts = Timeouts {
        connect: Duration::from_secs(5),
        response_headers: Duration::from_secs(30),
        idle: Duration::from_secs(300),
        header_read: Duration::from_secs(10),
        shutdown: Duration::from_secs(30),
    };
    for (k, v) in t {
        let slot = match k.as_str() {
            "connect" => &mut timeouts.connect,
            "response_headers" => &mut timeouts.response_headers,
            "idle" => &mut timeouts.idle,
            "header_read" => &mut timeouts.header_read,
            "shutdown" => &mut timeouts.shutdown,
            other => {
                ctx.err(v.span().start, "config.unknown_field", format!("unknown timeout `{other}`; known: connect, response_headers, idle, header_read, shutdown"));
                continue;
            }
        };
        *slot = ctx.duration(&Some(v.clone()), *slot);
    }
    let store = match &raw.store {
        None => StoreKind::Memory,
        Some(s) => match s.kind.get_ref().as_str() {
            "memory" => StoreKind::Memory,
            "redis" => {
                let url = match &s.url {
                    None => "redis://127.0.0.1:6379/0".to_string(),
                    Some(u) => {
                        if !u.get_ref().starts_with("redis://") {
                            ctx.err(
                                u.span().start,
                                "config.invalid_value",
                                "store url must be `redis://[user:password@]host:port/db` (TLS and unix sockets are not supported)",
                            );
                        }
                        u.get_ref().clone()
                    }
                };
                StoreKind::Redis(RedisSettings {
                    url,
                    prefix: s.prefix.clone().unwrap_or_else(|| "headgate:".into()),
                    cache_ttl: ctx.duration(&s.cache_ttl, Duration::from_secs(5)),
                    stale_ttl: ctx.duration(&s.stale_ttl, Duration::from_secs(900)),
                    timeout: ctx.duration(&s.timeout, Duration::from_secs(1)),
                })
            }
            other => {
                ctx.err(
                    s.kind.span().start,
                    "config.invalid_value",
                    format!("store kind `{other}` is not `memory` or `redis`"),
                );
                StoreKind::Memory
            }
        },
    };
    Server {
        listen,
        admin_listen,
        admin_token_env,
        admin_token,
        ttl: ctx.duration(&raw.ttl, Duration::from_secs(2 * 3600)),
        max_sessions: raw.max_sessions.unwrap_or(1_000_000),
        max_store_bytes: ctx.size(&raw.max_store_bytes, 1 << 30),
        max_session_bytes: ctx.size(&raw.max_session_bytes, 64 << 10) as usize,
        body_limit: ctx.size(&raw.body_limit, 10 << 20),
        timeouts,
        store,
        builtin_echo: raw.builtin_echo.unwrap_or(false),
        extra_roots: extra_roots(ctx, raw.tls.as_ref().and_then(|t| t.ca_file.as_ref())),
    }
}

/// Reads `[tls] ca_file` (PEM, one or more certificates).
fn extra_roots(
    ctx: &mut Ctx<'_>,
    file: Option<&Spanned<String>>,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let Some(f) = file else { return Vec::new() };
    let path = ctx
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join(f.get_ref());
    let certs: Result<Vec<_>, _> = match rustls::pki_types::CertificateDer::pem_file_iter(&path) {
        Ok(it) => it.collect(),
        Err(e) => Err(e),
    };
    match certs {
        Ok(c) if !c.is_empty() => c,
        _ => {
            ctx.err(
                f.span().start,
                "config.invalid_ca_file",
                format!(
                    "`{}` is not a readable PEM file of certificates",
                    path.display()
                ),
            );
            Vec::new()
        }
    }
}

fn header_name(ctx: &mut Ctx<'_>, s: &str, offset: usize) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.trim().to_ascii_lowercase().as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            ctx.err(
                offset,
                "config.invalid_header_name",
                format!("`{s}` is not a valid header name"),
            );
            None
        }
    }
}

fn platform_keys(platform: &str) -> &'static [&'static str] {
    match platform {
        "elevenlabs" => &["header:x-conversation-id", "header:x-session-id"],
        "retell" => &["body:/call/call_id", "header:x-call-id"],
        "livekit" => &["header:x-session-id"],
        _ => DEFAULT_KEYS,
    }
}

const PLATFORMS: &[&str] = &["vapi", "elevenlabs", "retell", "livekit", "generic"];

fn key_source(ctx: &mut Ctx<'_>, s: &str, offset: usize) -> Option<KeySource> {
    let bad = |ctx: &mut Ctx<'_>| {
        ctx.err(offset, "config.invalid_session_key", format!("`{s}` is not a session key source; write `header:NAME`, `query:NAME`, `path:N` or `body:/json/pointer`"));
        None
    };
    match s.split_once(':') {
        Some(("header", h)) => header_name(ctx, h, offset).map(KeySource::Header),
        Some(("query", q)) if !q.is_empty() => Some(KeySource::Query(q.to_string())),
        Some(("path", n)) => match n.parse() {
            Ok(n) => Some(KeySource::Path(n)),
            Err(_) => bad(ctx),
        },
        Some(("body", p)) if p.is_empty() || p.starts_with('/') => {
            Some(KeySource::Body(p.to_string()))
        }
        _ => bad(ctx),
    }
}

fn route(
    ctx: &mut Ctx<'_>,
    name: &str,
    file: &Path,
    raw: RawRoute,
    server: &Server,
    has_resolver: bool,
) -> Option<Route> {
    let before = ctx.errors.len();
    let upstream_s = raw.upstream.get_ref();
    let upstream: Option<http::Uri> = match upstream_s.parse::<http::Uri>() {
        Ok(u)
            if matches!(u.scheme_str(), Some("http") | Some("https"))
                && u.authority().is_some() =>
        {
            if u.scheme_str() == Some("http") {
                let host = u.host().unwrap_or_default().trim_matches(['[', ']']);
                let local = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback() || is_private(&ip));
                if !local {
                    ctx.warn(raw.upstream.span().start, "config.plain_http_upstream", "upstream is plain HTTP on a public address: injected credentials would cross the network unencrypted; use https://");
                }
            }
            Some(u)
        }
        _ => {
            ctx.err(
                raw.upstream.span().start,
                "config.invalid_upstream",
                format!("`{upstream_s}` is not an http:// or https:// URL"),
            );
            None
        }
    };

    let platform = raw.platform.as_ref().map(|p| p.get_ref().clone());
    if let Some(p) = &raw.platform
        && !PLATFORMS.contains(&p.get_ref().as_str())
    {
        ctx.err(
            p.span().start,
            "config.unknown_platform",
            format!(
                "unknown platform `{}`; known: {}",
                p.get_ref(),
                PLATFORMS.join(", ")
            ),
        );
    }
    let mut session_keys = Vec::new();
    match &raw.session_keys {
        Some(keys) => {
            for k in keys.get_ref() {
                if let Some(s) = key_source(ctx, k.get_ref(), k.span().start) {
                    session_keys.push(s);
                }
            }
            if keys.get_ref().is_empty() {
                ctx.err(
                    keys.span().start,
                    "config.invalid_session_key",
                    "session_keys is empty: list at least one source",
                );
            }
        }
        None => {
            for k in platform_keys(platform.as_deref().unwrap_or("generic")) {
                if let Some(s) = key_source(ctx, k, 0) {
                    session_keys.push(s);
                }
            }
        }
    }
    let pattern_src = raw
        .session_key_pattern
        .as_ref()
        .map_or(DEFAULT_KEY_PATTERN, |p| p.get_ref().as_str());
    let session_key_pattern = match Regex::new(pattern_src) {
        Ok(r) => Some(r),
        Err(e) => {
            let off = raw
                .session_key_pattern
                .as_ref()
                .map_or(0, |p| p.span().start);
            ctx.err(
                off,
                "config.invalid_pattern",
                format!("session_key_pattern is not a valid regex: {e}"),
            );
            None
        }
    };

    let inbound_auth = match &raw.inbound_auth {
        None => {
            ctx.err(0, "config.inbound_auth_required", "inbound_auth is required: set `inbound_auth = { header = \"x-headgate-key\", secret_env = \"HEADGATE_ROUTE_KEY\" }`, or `inbound_auth = \"none\"` to accept anyone");
            None
        }
        Some(v) => {
            let off = v.span().start;
            match v.get_ref() {
                toml::Value::String(s) if s == "none" => {
                    ctx.warn(off, "config.inbound_auth_off", "inbound auth is off: anyone who can reach this route and knows a session id gets that session's credentials injected");
                    Some(InboundAuth::None)
                }
                toml::Value::Table(t) => {
                    let secret_env = t.get("secret_env").and_then(|v| v.as_str());
                    let unknown: Vec<_> = t
                        .keys()
                        .filter(|k| !["header", "secret_env", "platform"].contains(&k.as_str()))
                        .cloned()
                        .collect();
                    if !unknown.is_empty() {
                        ctx.err(
                            off,
                            "config.unknown_field",
                            format!("unknown inbound_auth field(s): {}", unknown.join(", ")),
                        );
                    }
                    match (
                        secret_env,
                        t.get("header").and_then(|v| v.as_str()),
                        t.get("platform").and_then(|v| v.as_str()),
                    ) {
                        (Some(env), Some(h), None) => {
                            let header = header_name(ctx, h, off);
                            let secret = ctx.secret(&Spanned::new(off..off, env.to_string()));
                            match (header, secret) {
                                (Some(header), Some(secret)) => {
                                    Some(InboundAuth::Header { header, secret })
                                }
                                // `check` without the secret: validate the rest as configured.
                                (Some(header), None) if ctx.mode == LoadMode::Check => {
                                    Some(InboundAuth::Header {
                                        header,
                                        secret: Secret::new(""),
                                    })
                                }
                                _ => None,
                            }
                        }
                        (Some(env), None, Some(p)) => {
                            if p != "retell" {
                                ctx.err(off, "config.unknown_platform", format!("inbound_auth by signature supports platform \"retell\", not `{p}`"));
                            }
                            match ctx.secret(&Spanned::new(off..off, env.to_string())) {
                                Some(secret) => Some(InboundAuth::Platform {
                                    platform: p.to_string(),
                                    secret,
                                }),
                                None if ctx.mode == LoadMode::Check => {
                                    Some(InboundAuth::Platform {
                                        platform: p.to_string(),
                                        secret: Secret::new(""),
                                    })
                                }
                                None => None,
                            }
                        }
                        _ => {
                            ctx.err(off, "config.invalid_inbound_auth", "inbound_auth needs `header` and `secret_env` (or `platform` and `secret_env`), or the string \"none\"");
                            None
                        }
                    }
                }
                _ => {
                    ctx.err(
                        off,
                        "config.invalid_inbound_auth",
                        "inbound_auth must be a table or \"none\"",
                    );
                    None
                }
            }
        }
    };

    let on_unknown_session = match raw
        .on_unknown_session
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span().start))
    {
        None | Some(("reject", _)) => OnUnknown::Reject,
        Some(("resolve", off)) => {
            if !has_resolver {
                ctx.err(
                    off,
                    "config.resolver_missing",
                    "on_unknown_session = \"resolve\" needs a [resolver] section in headgate.toml",
                );
            }
            OnUnknown::Resolve
        }
        Some(("pass", _)) => OnUnknown::Pass,
        Some((other, off)) => {
            ctx.err(
                off,
                "config.invalid_value",
                format!("on_unknown_session `{other}` is not `reject`, `resolve` or `pass`"),
            );
            OnUnknown::Reject
        }
    };
    let error_style = match raw
        .error_style
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span().start))
    {
        None | Some(("json", _)) => ErrorStyle::Json,
        Some(("jsonrpc", _)) => ErrorStyle::JsonRpc,
        Some((other, off)) => {
            ctx.err(
                off,
                "config.invalid_value",
                format!("error_style `{other}` is not `json` or `jsonrpc`"),
            );
            ErrorStyle::Json
        }
    };
    let wait_for_session = ctx.duration(&raw.wait_for_session, Duration::ZERO);
    let body_limit = ctx.size(&raw.body_limit, server.body_limit);

    let mut headers = Vec::new();
    for (hname, v) in &raw.headers {
        let off = v.span().start;
        let Some(name) = header_name(ctx, hname, off) else {
            continue;
        };
        if FORBIDDEN_TARGETS.contains(&name.as_str()) {
            ctx.err(
                off,
                "config.forbidden_header",
                format!("`{name}` is managed by the proxy and cannot be templated"),
            );
            continue;
        }
        let (src, on_error, src_off) = match v.get_ref() {
            toml::Value::String(s) => (s.clone(), OnError::Reject, off),
            toml::Value::Table(t) => {
                let Some(s) = t.get("template").and_then(|v| v.as_str()) else {
                    ctx.err(
                        off,
                        "config.invalid_header",
                        "a header table needs `template = \"…\"`",
                    );
                    continue;
                };
                let on_error = match t.get("on_error").and_then(|v| v.as_str()) {
                    None | Some("reject") => OnError::Reject,
                    Some("omit") => OnError::Omit,
                    Some(o) => {
                        ctx.err(
                            off,
                            "config.invalid_value",
                            format!("on_error `{o}` is not `reject` or `omit`"),
                        );
                        OnError::Reject
                    }
                };
                let inner = ctx.text[off..].find("template").map_or(off, |i| {
                    off + i + ctx.text[off + i..].find(['"', '\'']).unwrap_or(0)
                });
                (s.to_string(), on_error, inner)
            }
            _ => {
                ctx.err(off, "config.invalid_header", "a header must be a template string or `{ template = \"…\", on_error = \"omit\" }`");
                continue;
            }
        };
        if let Some(template) = ctx.template(&src, src_off) {
            headers.push(HeaderRule {
                name,
                template,
                on_error,
            });
        }
    }

    let mut strip = Vec::new();
    if let Some(s) = &raw.strip {
        for h in &s.headers {
            if let Some(n) = header_name(ctx, h.get_ref(), h.span().start) {
                strip.push(n);
            }
        }
    }
    if let Some(p) = &raw.vars_from_body {
        if !p.get_ref().is_empty() && !p.get_ref().starts_with('/') {
            ctx.err(
                p.span().start,
                "config.invalid_pointer",
                "vars_from_body must be a JSON pointer such as \"/call\"",
            );
        }
        if !matches!(inbound_auth, Some(InboundAuth::Platform { .. })) {
            ctx.err(p.span().start, "config.unsigned_body_vars", "vars_from_body needs a signature check (inbound_auth = { platform = \"retell\", … }): an unsigned body could carry any credentials");
        }
    }

    if ctx.errors.len() > before {
        return None;
    }
    Some(Route {
        name: name.to_string(),
        file: file.to_path_buf(),
        upstream: upstream?,
        session_keys,
        session_key_pattern: session_key_pattern?,
        inbound_auth: inbound_auth?,
        on_unknown_session,
        wait_for_session,
        headers,
        strip,
        error_style,
        body_limit,
        vars_from_body: raw.vars_from_body.map(|v| v.into_inner()),
        platform,
    })
}

fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn webhook(
    ctx: &mut Ctx<'_>,
    name: &str,
    raw: &RawWebhook,
    default_ttl: Duration,
) -> Option<Webhook> {
    let platform = raw
        .platform
        .as_ref()
        .map_or_else(|| name.to_string(), |p| p.get_ref().clone());
    if !PLATFORMS.contains(&platform.as_str()) {
        let off = raw.platform.as_ref().map_or(0, |p| p.span().start);
        ctx.err(
            off,
            "config.unknown_platform",
            format!(
                "unknown webhook platform `{platform}`; known: {}",
                PLATFORMS.join(", ")
            ),
        );
        return None;
    }
    let secret = match &raw.secret_env {
        Some(env) => ctx.secret(env),
        None => {
            ctx.err(0, "config.webhook_secret_required", format!("[webhooks.{name}] needs `secret_env`: unsigned webhooks would let anyone register credentials"));
            None
        }
    };
    let h = raw.hmac.as_ref();
    let get = |f: fn(&RawHmac) -> &Option<String>| h.and_then(|h| f(h).clone());
    let (def_sig, def_ts, def_payload) = match platform.as_str() {
        "elevenlabs" => ("elevenlabs-signature", "", "{timestamp}.{body}"),
        "retell" => ("x-retell-signature", "", "{body}{timestamp}"),
        _ => ("x-signature", "x-timestamp", "{timestamp}.{body}"),
    };
    let signature_header = get(|h| &h.signature_header).unwrap_or_else(|| def_sig.to_string());
    let timestamp_header = get(|h| &h.timestamp_header).unwrap_or_else(|| def_ts.to_string());
    let hmac = HmacPlan {
        algorithm: get(|h| &h.algorithm).unwrap_or_else(|| "sha256".into()),
        signature_header: header_name(ctx, &signature_header, 0)?,
        timestamp_header: if timestamp_header.is_empty() {
            None
        } else {
            Some(header_name(ctx, &timestamp_header, 0)?)
        },
        payload: get(|h| &h.payload).unwrap_or_else(|| def_payload.into()),
        encoding: get(|h| &h.encoding).unwrap_or_else(|| "hex".into()),
        prefix: get(|h| &h.prefix).unwrap_or_default(),
    };
    if !["sha256", "sha512", "sha1"].contains(&hmac.algorithm.as_str()) {
        ctx.err(
            0,
            "config.invalid_value",
            format!("[webhooks.{name}] hmac.algorithm must be sha256, sha512 or sha1"),
        );
    }
    if !["hex", "base64"].contains(&hmac.encoding.as_str()) {
        ctx.err(
            0,
            "config.invalid_value",
            format!("[webhooks.{name}] hmac.encoding must be hex or base64"),
        );
    }
    let default_tol = if platform == "retell" {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(1800)
    };
    let tolerance = ctx.duration(&raw.tolerance, default_tol);
    let ttl = ctx.duration(&raw.ttl, default_ttl);
    if ctx.mode == LoadMode::Serve && secret.is_none() {
        return None;
    }
    Some(Webhook {
        name: name.to_string(),
        platform,
        secret,
        hmac,
        tolerance,
        ttl,
    })
}

fn resolver(ctx: &mut Ctx<'_>, raw: &RawResolver, default_ttl: Duration) -> Option<Resolver> {
    let platform = raw.platform.as_ref().map(|p| p.get_ref().clone());
    let (def_url, def_headers): (Option<&str>, &[(&str, &str)]) = match platform.as_deref() {
        Some("vapi") => (
            Some("https://api.vapi.ai/call/<< session.id | url_encode >>"),
            &[("authorization", "Bearer << env.VAPI_API_KEY >>")],
        ),
        Some("retell") => (
            Some("https://api.retellai.com/v2/get-call/<< session.id | url_encode >>"),
            &[("authorization", "Bearer << env.RETELL_API_KEY >>")],
        ),
        Some("elevenlabs") => (
            Some("https://api.elevenlabs.io/v1/convai/conversations/<< session.id | url_encode >>"),
            &[("xi-api-key", "<< env.ELEVENLABS_API_KEY >>")],
        ),
        _ => (None, &[]),
    };
    let url = match (&raw.url, def_url) {
        (Some(u), _) => ctx.template(u.get_ref(), u.span().start)?,
        (None, Some(d)) => ctx.template(d, 0)?,
        (None, None) => {
            ctx.err(
                0,
                "config.resolver_url_required",
                "[resolver] needs `url` (or `platform = \"vapi\"`, …)",
            );
            return None;
        }
    };
    let mut headers = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (k, v) in &raw.headers {
        let name = header_name(ctx, k, v.span().start)?;
        names.push(k.as_str());
        headers.push((name, ctx.template(v.get_ref(), v.span().start)?));
    }
    for (k, v) in def_headers {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(k)) {
            headers.push((HeaderName::from_static(k), ctx.template(v, 0)?));
        }
    }
    let method = match &raw.method {
        None => http::Method::GET,
        Some(m) => m
            .get_ref()
            .to_ascii_uppercase()
            .parse()
            .unwrap_or_else(|_| {
                ctx.err(
                    m.span().start,
                    "config.invalid_value",
                    "resolver method is not an HTTP method",
                );
                http::Method::GET
            }),
    };
    Some(Resolver {
        url,
        method,
        headers,
        bind: raw.bind.clone().unwrap_or_else(|| "call".into()),
        pointer: raw.pointer.clone(),
        platform,
        timeout: ctx.duration(&raw.timeout, Duration::from_secs(3)),
        negative_ttl: ctx.duration(&raw.negative_ttl, Duration::from_secs(5)),
        ttl: ctx.duration(&raw.ttl, default_ttl),
        refresh_before: ctx.duration(&raw.refresh_before, Duration::from_secs(60)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_store_settings_default_and_override() {
        let c = check_texts("[store]\nkind = \"redis\"\n", &[]).unwrap();
        let StoreKind::Redis(r) = &c.server.store else {
            panic!("not redis")
        };
        assert_eq!(r.url, "redis://127.0.0.1:6379/0");
        assert_eq!(r.prefix, "headgate:");
        assert_eq!(r.cache_ttl, Duration::from_secs(5));
        let c = check_texts(
            "[store]\nkind = \"redis\"\nurl = \"redis://:pw-secret@10.0.0.5:6380/2\"\nprefix = \"hg:\"\ncache_ttl = \"2s\"\nstale_ttl = \"1m\"\ntimeout = \"250ms\"\n",
            &[],
        )
        .unwrap();
        let StoreKind::Redis(r) = &c.server.store else {
            panic!("not redis")
        };
        assert_eq!(
            (r.prefix.as_str(), r.cache_ttl, r.stale_ttl, r.timeout),
            (
                "hg:",
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_millis(250)
            )
        );
        let shown = format!("{:?}", c.server);
        assert!(!shown.contains("pw-secret"), "{shown}");
        assert!(shown.contains("redis://***@10.0.0.5:6380/2"), "{shown}");
    }

    #[test]
    fn redis_store_errors_point_at_the_value() {
        let e = check_texts(
            "[store]\nkind = \"redis\"\nurl = \"rediss://x\"\ncache_ttl = \"soon\"\n",
            &[],
        )
        .unwrap_err();
        let found: Vec<_> = e.0.iter().map(|e| (e.line, e.code)).collect();
        assert_eq!(
            found,
            [(3, "config.invalid_value"), (4, "config.invalid_duration")]
        );
    }

    /// The route_config fuzz target's find: a duration too large for
    /// `Duration` panicked the loader. Every duration setting, in the main
    /// file and in a route, is now an error at its line instead.
    #[test]
    fn durations_too_long_are_errors_not_panics() {
        let huge = "\"99999999999999999999\"";
        let main = format!(
            "ttl = {huge}\n[timeouts]\nidle = {huge}\n[store]\nkind = \"redis\"\ncache_ttl = \"366d\"\n\
             [resolver]\nurl = \"http://127.0.0.1:1/<< session.id >>\"\nnegative_ttl = {huge}\n\
             [webhooks.vapi]\nsecret_env = \"S\"\ntolerance = {huge}\n"
        );
        let route = format!(
            "upstream = \"http://127.0.0.1:1\"\ninbound_auth = \"none\"\nwait_for_session = {huge}\n"
        );
        let e = check_texts(&main, &[("r", &route)]).unwrap_err();
        let mut found: Vec<_> =
            e.0.iter()
                .map(|e| {
                    (
                        e.path.file_name().unwrap().to_string_lossy().into_owned(),
                        e.line,
                        e.code,
                    )
                })
                .collect();
        found.sort();
        let want = [
            ("headgate.toml", 1),
            ("headgate.toml", 3),
            ("headgate.toml", 6),
            ("headgate.toml", 9),
            ("headgate.toml", 12),
            ("r.toml", 3),
        ]
        .map(|(f, l)| (f.to_string(), l, "config.invalid_duration"));
        assert_eq!(found, want);
    }
}
