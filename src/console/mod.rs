//! The operator's console at `/ui` on the admin listener (docs/operations.md "The console"):
//! an overview of the routes, a call inspector and a template playground,
//! served by the binary itself as plain HTML forms and one stylesheet
//! (no script, no CDN: it works on an air-gapped host).
//!
//! Nothing here shows a secret: sessions appear as variable names, source
//! and TTL; requests as their audit fields; the playground's value is
//! redacted unless asked for.

pub mod auth;
mod calls;
pub mod history;
mod pages;
mod tools;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;

use crate::audit::Recorder;
use crate::config::Config;
use crate::config::reload::{ReloadLog, Reloaded};
use crate::mcp::pins::PinMode;
use crate::metrics::Metrics;
use crate::net::response::{self, Body, read_limited};
use crate::session::Store;
use crate::template::{HeaderTemplate, redact};
use auth::{Login, Logins, Role};
use pages::{Overview, Playground, RouteRow};

/// The console's own state: its logins, the counters' recent history and
/// the playground's renders in flight.
pub struct Console {
    /// Live logins.
    pub logins: Logins,
    /// Sampled counters, for the overview's rates.
    pub history: std::sync::Arc<history::History>,
    /// Playground renders at once: each runs on a blocking thread, never
    /// on the admin listener's event loop (which answers the probes).
    renders: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            logins: Logins::default(),
            history: Default::default(),
            renders: std::sync::Arc::new(tokio::sync::Semaphore::new(PLAYGROUND_RENDERS)),
        }
    }
}

/// Playground renders run at once; one more is told the playground is
/// busy rather than queued.
const PLAYGROUND_RENDERS: usize = 2;

/// How long the page waits for a playground render (the template's own
/// budgets end one well before).
const PLAYGROUND_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the console reads (all owned elsewhere).
pub struct Sources<'a> {
    /// The config serving.
    pub config: &'a Config,
    /// Sessions.
    pub store: &'a Store,
    /// Counters and gauges.
    pub metrics: &'a Metrics,
    /// Per-session request timelines.
    pub calls: &'a Recorder,
    /// Config generation and the last reload.
    pub reloads: &'a ReloadLog,
    /// Every route's pinned tool definitions.
    pub pins: &'a crate::mcp::pins::Books,
    /// Wrong tokens by address, and the client's: a refused login counts.
    pub guesses: (&'a crate::net::throttle::Throttle, std::net::IpAddr),
    /// The admin listener serves HTTPS: the cookie is `Secure` and
    /// `__Host-` prefixed, and a form's `Origin` must be `https`.
    pub tls: bool,
}

/// Largest form body the console reads.
const FORM_LIMIT: usize = 64 * 1024;

/// The stylesheet, embedded.
const CSS: &str = include_str!("console.css");

/// Handles a request under `/ui`.
pub async fn handle<B>(req: Request<B>, console: &Console, src: &Sources<'_>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let post = parts.method == Method::POST;
    if path == "/ui/console.css" {
        return css();
    }
    let scheme = if src.tls { "https" } else { "http" };
    // HTTP/2 names the host in `:authority`, not in a `Host` line.
    let host = (parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok()))
    .or(parts.uri.authority().map(|a| a.as_str()));
    if post && !same_origin(&parts.headers, (scheme, host)) {
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Refused",
                "a form from another site was refused (its Origin is not this console)",
                None,
            ),
        );
    }
    let cookie = parts
        .headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok());
    if post && path == "/ui/login" {
        return login(body, console, src).await;
    }
    let Some(login) = console.logins.find(src.config, cookie, src.tls) else {
        let open = src.config.server.admin_token.is_none();
        return match parts.method {
            Method::GET if path == "/ui" || path == "/ui/" => {
                html(StatusCode::OK, pages::login(None, open))
            }
            Method::GET => see_other("/ui"),
            _ => html(
                StatusCode::FORBIDDEN,
                pages::message(
                    "Logged out",
                    "your console login has ended; log in again",
                    None,
                ),
            ),
        };
    };
    let form = if post {
        match read_limited(body, FORM_LIMIT).await {
            Ok(b) => Form::parse(&b),
            Err(_) => {
                return html(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    pages::message("Too large", "that form is larger than 64 KiB", Some(&login)),
                );
            }
        }
    } else {
        Form::parse(parts.uri.query().unwrap_or("").as_bytes())
    };
    if post && !login.csrf_ok(form.get("csrf")) {
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Refused",
                "the form's CSRF token is missing or stale; reload the page and try again",
                Some(&login),
            ),
        );
    }
    route(&parts.method, path, &form, &login, cookie, console, src).await
}

/// The console's pages, once logged in (and, for a POST, CSRF-checked).
async fn route(
    method: &Method,
    path: &str,
    form: &Form,
    login: &Login,
    cookie: Option<&str>,
    console: &Console,
    src: &Sources<'_>,
) -> Response<Body> {
    let call_path = path.strip_prefix("/ui/calls/");
    // The metrics token opens what `/metrics` shows: the overview's
    // aggregate figures, nothing of a call and no playground.
    let overview_only = !matches!(
        (method, path),
        (&Method::GET, "/ui" | "/ui/") | (&Method::POST, "/ui/logout")
    );
    if login.role == Role::ReadOnly && overview_only {
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Read-only",
                "a read-only login shows the overview only (the figures /metrics has); log in with the admin token to inspect calls or use the playground",
                Some(login),
            ),
        );
    }
    match (method, path) {
        (&Method::GET, "/ui" | "/ui/") => html(
            StatusCode::OK,
            pages::overview(&overview(console, src), login),
        ),
        (&Method::POST, "/ui/logout") => {
            console.logins.logout(cookie, src.tls);
            let mut r = see_other("/ui");
            set_header(&mut r, header::SET_COOKIE, &auth::clear_cookie(src.tls));
            r
        }
        (&Method::GET, "/ui/calls") => match form.get("call").map(str::trim) {
            Some(id) if !id.is_empty() => see_other(&format!("/ui/calls/{}", path_segment(id))),
            _ => see_other("/ui"),
        },
        (&Method::GET, "/ui/playground") => html(
            StatusCode::OK,
            pages::playground(&Playground::default(), login),
        ),
        (&Method::POST, "/ui/playground") => {
            let (status, shown) = off_the_loop(form, console).await;
            html(status, pages::playground(&shown, login))
        }
        _ if path.starts_with("/ui/routes/") => {
            tools::handle(method, &path["/ui/routes/".len()..], login, src).await
        }
        (&Method::GET, _) if call_path.is_some_and(|p| !p.contains('/')) => {
            calls::inspect(call_path.unwrap_or_default(), login, src).await
        }
        (&Method::POST, _) if call_path.and_then(|p| p.strip_suffix("/end")).is_some() => {
            let id = call_path
                .and_then(|p| p.strip_suffix("/end"))
                .unwrap_or_default();
            calls::end_session(id, login, src).await
        }
        _ => html(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "no such console page", Some(login)),
        ),
    }
}

/// `POST /ui/login`: the cookie and the overview, or the form again.
async fn login<B>(body: B, console: &Console, src: &Sources<'_>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cfg = src.config;
    let open = cfg.server.admin_token.is_none();
    let form = match read_limited(body, FORM_LIMIT).await {
        Ok(b) => Form::parse(&b),
        Err(_) => {
            return html(
                StatusCode::PAYLOAD_TOO_LARGE,
                pages::login(Some("that form is too large"), open),
            );
        }
    };
    match console.logins.login(cfg, form.get("token").unwrap_or("")) {
        Ok((id, _)) => {
            let mut r = see_other("/ui");
            set_header(&mut r, header::SET_COOKIE, &auth::set_cookie(&id, src.tls));
            r
        }
        Err(e) => {
            tracing::info!(
                code = "console.login_refused",
                "console: a login was refused"
            );
            let (guesses, peer) = src.guesses;
            guesses.failed(peer);
            html(
                StatusCode::UNAUTHORIZED,
                pages::login(Some(&e.to_string()), open),
            )
        }
    }
}

/// The overview's data.
fn overview(console: &Console, src: &Sources<'_>) -> Overview {
    let totals = src.metrics.totals();
    let mut rates = console.history.rates(&totals);
    let recent = console.history.recent_codes(&totals);
    let mut routes: Vec<RouteRow> = (src.config.routes.values())
        .map(|r| RouteRow {
            name: r.name.to_string(),
            upstream: if r.echo {
                "built-in echo".into()
            } else {
                shown_uri(&r.upstream)
            },
            rates: rates.remove(r.name).unwrap_or_default(),
            pins: (r.governance.as_ref()).is_some_and(|g| g.pin_tools != PinMode::Off),
        })
        .collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let codes = (totals.codes.iter())
        .map(|(c, n)| (c.clone(), *n, recent.get(c).copied().unwrap_or(0)))
        .collect();
    let last_reload = src.reloads.last().map(|(at, r)| match r {
        Reloaded::Applied => (at, None),
        Reloaded::Rejected(errors) => (at, Some(errors)),
    });
    Overview {
        generation: src.reloads.generation(),
        last_reload,
        sessions: src.store.len(),
        open_streams: src.metrics.open_streams.get(),
        routes,
        codes,
    }
}

/// An upstream URI without any user:password it may carry.
fn shown_uri(u: &http::Uri) -> String {
    let host = u
        .authority()
        .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""));
    let scheme = u.scheme_str().unwrap_or("http");
    format!("{scheme}://{host}{}", u.path())
}

/// [`playground`] on a blocking thread, at most [`PLAYGROUND_RENDERS`] at
/// once and waited for at most [`PLAYGROUND_WAIT`]: a hostile template
/// from any login can then neither stall the admin listener (its probes
/// included) nor take every thread.
async fn off_the_loop(form: &Form, console: &Console) -> (StatusCode, Playground) {
    let template = form.get("template").unwrap_or("").to_string();
    let vars = form.get("vars").unwrap_or("").to_string();
    let reveal = form.get("reveal").is_some();
    let refused = |template: String, vars: String, why: &str| Playground {
        template,
        vars,
        reveal,
        outcome: Some(Err(why.to_string())),
    };
    let Ok(permit) = console.renders.clone().try_acquire_owned() else {
        let why = "console.busy: other playground renders are running; try again in a moment";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            refused(template, vars, why),
        );
    };
    let (t, v) = (template.clone(), vars.clone());
    let render = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        playground(t, v, reveal)
    });
    match tokio::time::timeout(PLAYGROUND_WAIT, render).await {
        Ok(Ok(shown)) => (StatusCode::OK, shown),
        _ => {
            let why = "console.busy: the render did not finish in time";
            (
                StatusCode::SERVICE_UNAVAILABLE,
                refused(template, vars, why),
            )
        }
    }
}

/// The playground's render: the value redacted unless `reveal`, or the
/// error with a caret under its column.
fn playground(template: String, vars_text: String, reveal: bool) -> Playground {
    let vars = if vars_text.trim().is_empty() {
        Ok(Value::Object(Default::default()))
    } else {
        serde_json::from_str::<Value>(&vars_text)
    };
    let outcome = match vars {
        Err(e) => Err(vars_error(&vars_text, &e)),
        Ok(v) if !v.is_object() => Err("variables must be a JSON object".into()),
        Ok(v) => HeaderTemplate::compile(&template)
            .and_then(|t| t.render_string(&v))
            .map(|s| if reveal { s } else { redact(&s) })
            .map_err(|e| e.display_with_source()),
    };
    Playground {
        template,
        vars: vars_text,
        reveal,
        outcome: Some(outcome),
    }
}

/// A JSON error in the variables, with a caret under its column.
fn vars_error(text: &str, e: &serde_json::Error) -> String {
    let line = text.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
    format!(
        "vars {}:{}: the variables are not JSON: {e}\n  {line}\n  {}^",
        e.line(),
        e.column(),
        " ".repeat(e.column().saturating_sub(1))
    )
}

/// The characters a call id keeps in a URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `id` percent-encoded for a path segment.
pub(crate) fn path_segment(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

/// A POST is from this console's own pages. Both signals must agree:
/// `Sec-Fetch-Site` (sent by every current browser), when present, says
/// `same-origin` (or `none`: typed by the user); and `Origin`, when
/// present, is exactly `scheme://Host` (`scheme`: the listener's own), or
/// `null` from a browser that also sent `Sec-Fetch-Site` (a page with a
/// no-referrer policy). A rebound name passes both, so the `Host` itself
/// is allow-listed before any console code runs (`net::host`).
fn same_origin(h: &http::HeaderMap, (scheme, host): (&str, Option<&str>)) -> bool {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let site = get("sec-fetch-site");
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    match (get("origin"), host) {
        (None, _) => true,
        (Some("null"), _) => site.is_some(),
        (Some(o), Some(host)) => o.split_once("://").is_some_and(|(sch, h)| {
            sch.eq_ignore_ascii_case(scheme) && h.eq_ignore_ascii_case(host)
        }),
        (Some(_), None) => false,
    }
}

/// A URL-encoded form (or query string), first value per name.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(b: &[u8]) -> Self {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let text = String::from_utf8_lossy(b);
        let pairs = (text.split('&'))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Self(pairs)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTML page, never cached, never framed, and with a policy that
/// allows no script at all.
fn html(status: StatusCode, body: String) -> Response<Body> {
    let csp = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    respond(
        status,
        body,
        &[
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Call ids are in the console's URLs: never send them anywhere.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
}

fn css() -> Response<Body> {
    respond(
        StatusCode::OK,
        CSS.to_string(),
        &[
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
    )
}

fn respond(
    status: StatusCode,
    body: String,
    headers: &[(header::HeaderName, &'static str)],
) -> Response<Body> {
    let mut r = response::text(status, body);
    for (name, value) in headers {
        r.headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    r
}

fn see_other(to: &str) -> Response<Body> {
    let mut r = response::status(StatusCode::SEE_OTHER);
    set_header(&mut r, header::LOCATION, to);
    set_header(&mut r, header::CACHE_CONTROL, "no-store");
    r
}

fn set_header(r: &mut Response<Body>, name: header::HeaderName, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        r.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests;
