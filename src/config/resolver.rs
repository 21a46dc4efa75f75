//! `[resolver]`: fetch an unknown session from the platform's API on a miss
//! (docs/configuration.md "`[resolver]`: fetch a session on a miss").

use std::time::Duration;

use http::HeaderName;

use super::diagnostics::Ctx;
use super::schema::RawResolver;
use crate::platform::Platform;
use crate::template::HeaderTemplate;

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
    pub platform: Option<Platform>,
    /// Deadline for one fetch.
    pub timeout: Duration,
    /// How long a failure is remembered.
    pub negative_ttl: Duration,
    /// TTL of fetched sessions.
    pub ttl: Duration,
    /// Refresh in the background when this little TTL is left.
    pub refresh_before: Duration,
}

/// Builds `[resolver]`: its URL and headers default to the platform's
/// "get call" API.
pub(super) fn resolver(
    ctx: &mut Ctx<'_>,
    raw: &RawResolver,
    default_ttl: Duration,
) -> Option<Resolver> {
    let platform = match &raw.platform {
        None => None,
        Some(p) => Some(ctx.platform(p.get_ref(), p.span().start)?),
    };
    let preset = platform.and_then(Platform::resolver);
    let def_url = preset.map(|p| p.url);
    let def_headers = preset.map_or(&[][..], |p| p.headers);
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
        let name = ctx.header_name(k, v.span().start)?;
        names.push(k.as_str());
        headers.push((name, ctx.template(v.get_ref(), v.span().start)?));
    }
    for &(k, v) in def_headers {
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
