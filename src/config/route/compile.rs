//! From a route file's declaration ([`RawRoute`]) to the [`Route`] it
//! compiles to, every problem placed at its file:line:column.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::{
    AccessLog, BUILTIN_ECHO, Compiled, ErrorStyle, FORBIDDEN_TARGETS, HeaderRule, InboundAuth,
    KeySource, OnError, OnUnknown, PER_REQUEST_ROOTS, Route,
};
use crate::config::LoadMode;
use crate::config::credentials::{self, Credential, Credentials};
use crate::config::diagnostics::Ctx;
use crate::config::schema::RawRoute;
use crate::config::server::Server;
use crate::config::session_key::{key_pattern, session_keys};
use crate::net::headers::Names;
use crate::platform::Platform;
use crate::secret::Secret;
use crate::template::HeaderTemplate;

/// What `headgate.toml` declared that a route may refer to.
pub(in crate::config) struct Known<'a> {
    pub server: &'a Server,
    pub has_resolver: bool,
    pub credentials: &'a Credentials,
}

/// Builds a route from its file; `None` if the file had errors (they are
/// in `ctx`).
pub(in crate::config) fn route(
    ctx: &mut Ctx<'_>,
    name: &str,
    file: &Path,
    raw: RawRoute,
    known: &Known<'_>,
) -> Option<Route> {
    let (server, has_resolver) = (known.server, known.has_resolver);
    let before = ctx.errors.len();
    let echo = raw.upstream.get_ref() == BUILTIN_ECHO;
    let upstream = match echo {
        true => Some(http::Uri::from_static("http://builtin.echo/")),
        false => upstream(ctx, &raw.upstream),
    };
    let platform = (raw.platform.as_ref()).and_then(|p| ctx.platform(p.get_ref(), p.span().start));
    let session_keys = session_keys(ctx, &raw, platform.unwrap_or(Platform::Generic));
    let session_key_pattern = key_pattern(ctx, raw.session_key_pattern.as_ref());
    let inbound_auth = inbound_auth(ctx, raw.inbound_auth.as_ref());
    let on_unknown_session = on_unknown(ctx, raw.on_unknown_session.as_ref(), has_resolver);
    let styles = [("json", ErrorStyle::Json), ("jsonrpc", ErrorStyle::JsonRpc)];
    let error_style = ctx.choice(
        raw.error_style.as_ref(),
        "error_style",
        &styles,
        ErrorStyle::Json,
    );
    let wait_for_session = ctx.duration(&raw.wait_for_session, Duration::ZERO);
    let body_limit = ctx.size(&raw.body_limit, server.body_limit);
    let logs = [
        ("off", AccessLog::Off),
        ("json", AccessLog::Json),
        ("text", AccessLog::Text),
    ];
    let access_log = ctx.choice(
        raw.access_log.as_ref(),
        "access_log",
        &logs,
        AccessLog::Default,
    );
    let (headers, credentials) = header_rules(ctx, &raw, known.credentials);
    let strip = match &raw.strip {
        None => Vec::new(),
        Some(s) => s
            .headers
            .iter()
            .filter_map(|h| ctx.header_name(h.get_ref(), h.span().start))
            .collect(),
    };
    if let Some(p) = &raw.vars_from_body {
        vars_from_body(ctx, p, inbound_auth.as_ref());
    }
    let mcp = (raw.mcp.as_ref()).and_then(|m| crate::config::mcp::tool_policy(ctx, m));
    let governance = (raw.mcp.as_ref()).and_then(|m| crate::config::mcp::governance(ctx, m));
    let needs_mcp = mcp.is_some() || headers.iter().any(|h| reads_mcp(&h.template));
    if ctx.errors.len() > before {
        return None;
    }
    let mut route = Route {
        name: super::intern(name),
        file: file.to_path_buf(),
        upstream: upstream?,
        echo,
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
        access_log,
        credentials,
        mcp,
        governance,
        compiled: Compiled {
            needs_mcp,
            ..Compiled::default()
        },
    };
    route.compiled.key_headers = Names::new(
        (route.session_keys.iter())
            .filter_map(|k| match k {
                KeySource::Header(h) => Some(h.clone()),
                _ => None,
            })
            .collect(),
    );
    let own =
        (route.own_header_names()).filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok());
    route.compiled.own_headers = Names::new(own.collect());
    Some(route)
}

/// `upstream`: an `http://` or `https://` URL; plain HTTP to a public
/// address is a warning (credentials would cross the network in clear).
fn upstream(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<http::Uri> {
    let s = raw.get_ref();
    let off = raw.span().start;
    let u = match s.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => u,
        _ => {
            let msg = format!("`{s}` is not an http:// or https:// URL (or \"builtin:echo\")");
            ctx.err(off, "config.invalid_upstream", msg);
            return None;
        }
    };
    if u.scheme_str() == Some("http") {
        let host = u.host().unwrap_or_default().trim_matches(['[', ']']);
        let local = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || is_private(&ip));
        if !local {
            ctx.warn(off, "config.plain_http_upstream", "upstream is plain HTTP on a public address: injected credentials would cross the network unencrypted; use https://");
        }
    }
    Some(u)
}

fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// `inbound_auth`: `"none"`, `{ header, secret_env }` or
/// `{ platform, secret_env }`. Offline, without the secret set, the rest
/// is still validated as configured.
fn inbound_auth(ctx: &mut Ctx<'_>, raw: Option<&Spanned<toml::Value>>) -> Option<InboundAuth> {
    let Some(v) = raw else {
        ctx.err(0, "config.inbound_auth_required", "inbound_auth is required: set `inbound_auth = { header = \"x-headgate-key\", secret_env = \"HEADGATE_ROUTE_KEY\" }`, or `inbound_auth = \"none\"` to accept anyone");
        return None;
    };
    let off = v.span().start;
    let t = match v.get_ref() {
        toml::Value::String(s) if s == "none" => {
            ctx.warn(off, "config.inbound_auth_off", "inbound auth is off: anyone who can reach this route and knows a session id gets that session's credentials injected");
            return Some(InboundAuth::None);
        }
        toml::Value::Table(t) => t,
        _ => {
            let msg = "inbound_auth must be a table or \"none\"";
            ctx.err(off, "config.invalid_inbound_auth", msg);
            return None;
        }
    };
    let unknown: Vec<_> = t
        .keys()
        .filter(|k| !["header", "secret_env", "platform"].contains(&k.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let msg = format!("unknown inbound_auth field(s): {}", unknown.join(", "));
        ctx.err(off, "config.unknown_field", msg);
    }
    let field = |name: &str| t.get(name).and_then(|v| v.as_str());
    let (header, platform) = match (field("secret_env"), field("header"), field("platform")) {
        (Some(_), Some(h), None) => (ctx.header_name(h, off), None),
        (Some(_), None, Some(p)) => (None, signing_platform(ctx, p, off)),
        _ => {
            ctx.err(off, "config.invalid_inbound_auth", "inbound_auth needs `header` and `secret_env` (or `platform` and `secret_env`), or the string \"none\"");
            return None;
        }
    };
    let env = Spanned::new(off..off, field("secret_env")?.to_string());
    let secret = match ctx.secret(&env) {
        Some(s) => s,
        None if ctx.mode == LoadMode::Offline => Secret::new(""),
        None => return None,
    };
    Some(match (header, platform) {
        (Some(header), _) => InboundAuth::Header { header, secret },
        (None, Some(platform)) => InboundAuth::Platform { platform, secret },
        (None, None) => return None,
    })
}

/// A platform that signs its tool-call requests.
fn signing_platform(ctx: &mut Ctx<'_>, name: &str, off: usize) -> Option<Platform> {
    let p = Platform::from_name(name).filter(|p| p.request_signature().is_some());
    if p.is_none() {
        ctx.err(
            off,
            "config.unknown_platform",
            format!("inbound_auth by signature supports platform \"retell\", not `{name}`"),
        );
    }
    p
}

fn on_unknown(ctx: &mut Ctx<'_>, raw: Option<&Spanned<String>>, has_resolver: bool) -> OnUnknown {
    let options = [
        ("reject", OnUnknown::Reject),
        ("resolve", OnUnknown::Resolve),
        ("pass", OnUnknown::Pass),
    ];
    let v = ctx.choice(raw, "on_unknown_session", &options, OnUnknown::Reject);
    if let (OnUnknown::Resolve, Some(s), false) = (v, raw, has_resolver) {
        ctx.err(
            s.span().start,
            "config.resolver_missing",
            "on_unknown_session = \"resolve\" needs a [resolver] section in headgate.toml",
        );
    }
    v
}

/// `[headers]`: each value a template string, or `{ template, on_error }`;
/// and the credentials they read.
fn header_rules(
    ctx: &mut Ctx<'_>,
    raw: &RawRoute,
    declared: &Credentials,
) -> (Vec<HeaderRule>, Vec<Arc<Credential>>) {
    let mut rules = Vec::new();
    let mut used: Vec<Arc<Credential>> = Vec::new();
    for (hname, v) in &raw.headers {
        let off = v.span().start;
        let Some(name) = ctx.header_name(hname, off) else {
            continue;
        };
        if rules.iter().any(|r: &HeaderRule| r.name == name) {
            let msg =
                format!("`{name}` is set twice (header names are case-insensitive); keep one");
            ctx.err(off, "config.duplicate_header", msg);
            continue;
        }
        if FORBIDDEN_TARGETS.contains(&name.as_str()) {
            ctx.err(
                off,
                "config.forbidden_header",
                format!("`{name}` is managed by the proxy and cannot be templated"),
            );
            continue;
        }
        let Some((src, on_error, src_off)) = header_value(ctx, v) else {
            continue;
        };
        if let Some(template) = ctx.template(&src, src_off) {
            credentials_used(ctx, &template, src_off, declared, &mut used);
            // Plain text renders as fast as a kept copy: not kept.
            let per_session = template.is_fast_path()
                && template.roots().next().is_some()
                && template.roots().all(|r| !PER_REQUEST_ROOTS.contains(&r));
            rules.push(HeaderRule {
                name,
                template,
                on_error,
                per_session,
            });
        }
    }
    (rules, used)
}

/// Adds the credentials `t` reads to `used`; a credential that is not
/// declared is an error where the template names it.
fn credentials_used(
    ctx: &mut Ctx<'_>,
    t: &HeaderTemplate,
    off: usize,
    declared: &Credentials,
    used: &mut Vec<Arc<Credential>>,
) {
    for (key, span) in t.keys_under(credentials::ROOT) {
        let Some(name) = key else {
            let msg = "read a credential as `credentials.NAME.access_token`";
            ctx.template_err(off, span, "config.unknown_credential", msg);
            continue;
        };
        match declared.get(name) {
            Some(c) if used.iter().any(|u| Arc::ptr_eq(u, c)) => {}
            Some(c) => used.push(c.clone()),
            None => {
                let msg = format!(
                    "credential `{name}` is not declared: add [credentials.{name}] to headgate.toml"
                );
                ctx.template_err(off, span, "config.unknown_credential", msg);
            }
        }
    }
}

/// One `[headers]` value: its template source, failure policy and where
/// the template starts in the file.
fn header_value(ctx: &mut Ctx<'_>, v: &Spanned<toml::Value>) -> Option<(String, OnError, usize)> {
    let off = v.span().start;
    match v.get_ref() {
        toml::Value::String(s) => Some((s.clone(), OnError::Reject, off)),
        toml::Value::Table(t) => {
            let Some(s) = t.get("template").and_then(|v| v.as_str()) else {
                let msg = "a header table needs `template = \"…\"`";
                ctx.err(off, "config.invalid_header", msg);
                return None;
            };
            let policy = t
                .get("on_error")
                .and_then(|v| v.as_str())
                .map(|o| Spanned::new(off..off, o.to_string()));
            let options = [("reject", OnError::Reject), ("omit", OnError::Omit)];
            let on_error = ctx.choice(policy.as_ref(), "on_error", &options, OnError::Reject);
            let inner = ctx.text[off..].find("template").map_or(off, |i| {
                off + i + ctx.text[off + i..].find(['"', '\'']).unwrap_or(0)
            });
            Some((s.to_string(), on_error, inner))
        }
        _ => {
            ctx.err(
                off,
                "config.invalid_header",
                "a header must be a template string or `{ template = \"…\", on_error = \"omit\" }`",
            );
            None
        }
    }
}

/// `vars_from_body` is a JSON pointer, and only trusted on a signed body.
fn vars_from_body(ctx: &mut Ctx<'_>, p: &Spanned<String>, auth: Option<&InboundAuth>) {
    if !p.get_ref().is_empty() && !p.get_ref().starts_with('/') {
        ctx.err(
            p.span().start,
            "config.invalid_pointer",
            "vars_from_body must be a JSON pointer such as \"/call\"",
        );
    }
    if !matches!(auth, Some(InboundAuth::Platform { .. })) {
        ctx.err(p.span().start, "config.unsigned_body_vars", "vars_from_body needs a signature check (inbound_auth = { platform = \"retell\", … }): an unsigned body could carry any credentials");
    }
}

/// Whether a template reads `request.mcp`, or `request` whole (an index,
/// an `assign` of it), which could reach it.
pub(super) fn reads_mcp(t: &HeaderTemplate) -> bool {
    t.keys_under("request")
        .any(|(key, _)| key.is_none_or(|k| k == "mcp"))
}
