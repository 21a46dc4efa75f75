//! `headgate check --explain ROUTE`: a route's effective settings, presets
//! applied, in the words of the config file and of what happens to a
//! call, never a secret (a Redis password is redacted; a route key is
//! named by its header only).

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{
    Config, Credential, CredentialKind, ErrorStyle, InboundAuth, OnError, OnUnknown, Route,
    StoreKind, redact_userinfo,
};

/// The lines `--explain` prints for `r`.
pub fn route(cfg: &Config, r: &Route) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {:<20} {value}", format!("{label}:"));
    };
    line(
        "platform",
        r.platform.map_or("(none)".into(), |p| p.name().into()),
    );
    line("upstream", r.upstream.to_string());
    let keys: Vec<String> = r.session_keys.iter().map(ToString::to_string).collect();
    line(
        "session_keys",
        format!("{} (the first present wins)", keys.join(", ")),
    );
    line("session_key_pattern", r.session_key_pattern.as_str().into());
    line("inbound_auth", inbound(&r.inbound_auth));
    line("on_unknown_session", on_unknown(r.on_unknown_session));
    line(
        "wait_for_session",
        match r.wait_for_session {
            d if d.is_zero() => "no wait".into(),
            d => format!("up to {} for its webhook or PUT", duration(d)),
        },
    );
    line(
        "error_style",
        match r.error_style {
            ErrorStyle::Json => "json (HTTP status and a JSON error body)".into(),
            ErrorStyle::JsonRpc => {
                "jsonrpc (a JSON-RPC error with the request's id, HTTP 200)".into()
            }
        },
    );
    line("body_limit", size(r.body_limit));
    for h in &r.headers {
        let on_error = match h.on_error {
            OnError::Reject => "if it cannot render, refuse the request (502)",
            OnError::Omit => "if it cannot render, send the request without it",
        };
        line(
            &format!("header {}", h.name),
            format!("{}  ({on_error})", h.template.source()),
        );
    }
    for c in &r.credentials {
        line(&format!("credential {}", c.name), credential(c));
    }
    if r.mcp.is_some() {
        line(
            "mcp",
            "tool policy on: denied tools refused and hidden from tools/list".into(),
        );
    }
    line("sessions from", sessions_from(cfg, r));
    line("on a miss", on_a_miss(cfg, r));
    out
}

/// Where a credential comes from: its kind and the token URL's host (or
/// the JWT's issuer and key id), never a secret.
fn credential(c: &Credential) -> String {
    let host = |u: &http::Uri| u.authority().map_or(String::new(), |a| a.to_string());
    let renew = format!("renewed {} before it expires", duration(c.refresh_before));
    match &c.kind {
        CredentialKind::ClientCredentials(o) => {
            format!(
                "client_credentials from {} (one token per scope/resource/audience; {renew})",
                host(&o.token_url)
            )
        }
        CredentialKind::RefreshToken { client, from } => format!(
            "refresh_token from {}: the caller's refresh token at {}, rotated ones written back ({renew})",
            host(&client.token_url),
            from.join(".")
        ),
        CredentialKind::TokenExchange { client, .. } => format!(
            "token_exchange (RFC 8693) at {}: one token per subject token ({renew})",
            host(&client.token_url)
        ),
        CredentialKind::IdJag { idp, client, .. } => format!(
            "id_jag: an Identity Assertion JWT from the IdP at {}, then a jwt-bearer grant at {}: one token per subject token ({renew})",
            host(&idp.token_url),
            host(&client.token_url)
        ),
        CredentialKind::Jwt(j) => {
            let key = j.key.as_ref().map_or("no key loaded".into(), |k| {
                format!("{:?} key {}", k.alg, k.kid)
            });
            format!(
                "jwt signed here for {} by {key}, valid {} ({renew}); public keys at /.well-known/jwks.json",
                j.audience,
                duration(j.ttl)
            )
        }
    }
}

fn inbound(a: &InboundAuth) -> String {
    match a {
        InboundAuth::None => "none (anyone who can reach the route may call)".into(),
        InboundAuth::Header { header, .. } => format!("header {header} must carry the route key"),
        InboundAuth::Platform { platform, .. } => format!("{platform} request signature"),
    }
}

fn on_unknown(o: OnUnknown) -> String {
    match o {
        OnUnknown::Reject => "reject (403 session.not_found)".into(),
        OnUnknown::Resolve => "resolve (fetch it through [resolver])".into(),
        OnUnknown::Pass => "pass (forward without injected headers)".into(),
    }
}

/// Where a route's sessions come from, as `--explain` shows it.
fn sessions_from(cfg: &Config, r: &Route) -> String {
    if let Some(ptr) = &r.vars_from_body {
        return format!(
            "the signed request body (vars_from_body = \"{ptr}\", bound as `call`); nothing is stored"
        );
    }
    let store = match &cfg.server.store {
        StoreKind::Memory => format!(
            "memory store of this process (max_sessions {})",
            cfg.server.max_sessions
        ),
        StoreKind::Redis(r) => format!(
            "redis store {} prefix `{}` (replica cache {}, served stale up to {} while Redis is down, timeout {})",
            redact_userinfo(&r.url),
            r.prefix,
            duration(r.cache_ttl),
            duration(r.stale_ttl),
            duration(r.timeout)
        ),
    };
    format!("{store}, default ttl {}", duration(cfg.server.ttl))
}

/// What an unknown session gets on this route.
fn on_a_miss(cfg: &Config, r: &Route) -> String {
    if r.vars_from_body.is_some() {
        return "never: every request carries its own call".into();
    }
    match (r.on_unknown_session, &cfg.resolver) {
        (OnUnknown::Reject, _) => "403 session.not_found (no fetch)".into(),
        (OnUnknown::Pass, _) => "forwarded without injected headers (no fetch)".into(),
        (OnUnknown::Resolve, None) => "no [resolver] configured".into(),
        (OnUnknown::Resolve, Some(res)) => format!(
            "{} {} (bound to `{}`, ttl {}, timeout {})",
            res.method,
            res.url.source(),
            res.bind,
            duration(res.ttl),
            duration(res.timeout)
        ),
    }
}

/// `2h`, `90s`, `800ms`: the way the config writes durations.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        ms if ms % 1000 != 0 => format!("{ms}ms"),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms => format!("{}s", ms / 1000),
    }
}

/// `10MiB`, `64KiB`, `512B`.
pub fn size(b: u64) -> String {
    match b {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_as_written_in_config() {
        let cases = [
            (7_200_000, "2h"),
            (90_000, "90s"),
            (300_000, "5m"),
            (800, "800ms"),
            (0, "0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(Duration::from_millis(ms)), want);
        }
        assert_eq!(size(10 << 20), "10MiB");
        assert_eq!(size(64 << 10), "64KiB");
        assert_eq!(size(1000), "1000B");
    }
}
