//! The console's pages as HTML, rendered on the server from plain data:
//! no script, so the page can hold nothing a script could leak, and every
//! value written is HTML-escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::auth::{Login, Role};
use super::history::{Rates, SLOTS};
use crate::audit::{Record, format_rfc3339};

/// What the overview shows.
pub struct Overview {
    /// Config generation serving.
    pub generation: u64,
    /// The last reload: when, and its errors (empty when applied).
    pub last_reload: Option<(SystemTime, Option<Vec<String>>)>,
    /// Sessions stored.
    pub sessions: u64,
    /// Open SSE streams.
    pub open_streams: i64,
    /// Every route, by name.
    pub routes: Vec<RouteRow>,
    /// headgate's refusals: (code, since start, last five minutes).
    pub codes: Vec<(String, u64, u64)>,
}

/// One route's line on the overview.
pub struct RouteRow {
    /// Name.
    pub name: String,
    /// Where it forwards (no credentials in it).
    pub upstream: String,
    /// Its rates.
    pub rates: Rates,
    /// It pins tool definitions: the name leads to its tools page.
    pub pins: bool,
}

/// What the call inspector shows.
pub struct CallPage {
    /// The call/session id asked for.
    pub id: String,
    /// The stored session, if any.
    pub session: Result<Option<SessionInfo>, String>,
    /// Its recent requests, oldest first.
    pub requests: Vec<Record>,
    /// Its counts against the routes' budgets.
    pub budgets: Vec<BudgetRow>,
}

/// One budget (`[mcp] budgets`) and what a call has counted against it.
pub struct BudgetRow {
    /// The route that sets it.
    pub route: String,
    /// The tool glob.
    pub glob: String,
    /// `tools/call`s counted (the refused ones over it included).
    pub counted: u64,
    /// Calls allowed.
    pub limit: u64,
}

/// A stored session, without its values.
pub struct SessionInfo {
    /// Variable paths (`call.metadata.token`), never their values.
    pub names: Vec<String>,
    /// `admin`, `webhook` or `resolver`.
    pub source: &'static str,
    /// Time to live left.
    pub ttl_left: Duration,
}

/// What the playground shows after a render.
#[derive(Default)]
pub struct Playground {
    /// The template as typed.
    pub template: String,
    /// The variables as typed.
    pub vars: String,
    /// Whether to show the value unredacted.
    pub reveal: bool,
    /// The outcome: the (redacted) value, or the error with its caret.
    pub outcome: Option<Result<String, String>>,
}

/// HTML-escapes `s`.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The navigation only an admin login has: the playground and the call
/// inspector (a read-only login sees the overview alone).
const ADMIN_NAV: &str = r#" <a href="/ui/playground">Playground</a>
<form class="call" method="get" action="/ui/calls"><input name="call" placeholder="call or session id" aria-label="call id" required> <button>Inspect</button></form>"#;

/// A page: title, the navigation of a logged-in user, the body.
pub(super) fn page(title: &str, login: Option<&Login>, body: &str) -> String {
    let nav = match login {
        Some(l) => {
            let (role, admin_only) = match l.role {
                Role::Admin => ("admin", ADMIN_NAV),
                Role::ReadOnly => ("read-only", ""),
            };
            format!(
                r#"<nav><a href="/ui">Overview</a>{admin_only}
<span class="who">{role}</span>
<form method="post" action="/ui/logout"><input type="hidden" name="csrf" value="{}"><button id="logout">Log out</button></form></nav>"#,
                esc(&l.csrf)
            )
        }
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · headgate</title><link rel="stylesheet" href="/ui/console.css"></head>
<body><header><h1>headgate</h1>{nav}</header><main>
{body}
</main></body></html>
"#,
        esc(title)
    )
}

/// The login form, with an error after a wrong token.
pub fn login(error: Option<&str>, open: bool) -> String {
    let err = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))
    });
    let hint = if open {
        "<p class=\"hint\">No admin token is set (the admin API is loopback-only): submit to enter.</p>"
    } else {
        "<p class=\"hint\">The admin token, or the read-only metrics token for a view without actions.</p>"
    };
    let body = format!(
        r#"<h2>Log in</h2>{err}
<form method="post" action="/ui/login" class="login">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button id="login">Log in</button></form>{hint}"#
    );
    page("Log in", None, &body)
}

/// The overview.
pub fn overview(o: &Overview, login: &Login) -> String {
    let mut b = String::new();
    let reload = match &o.last_reload {
        None => "none since start".to_string(),
        Some((at, None)) => format!("applied at {}", format_rfc3339(*at)),
        Some((at, Some(errors))) => {
            let list: String = errors
                .iter()
                .map(|e| format!("<li><code>{}</code></li>", esc(e)))
                .collect();
            format!(
                r#"<span class="bad">rejected</span> at {} (the previous config keeps serving)<ul class="reload-errors">{list}</ul>"#,
                format_rfc3339(*at)
            )
        }
    };
    let _ = write!(
        b,
        r#"<section class="facts"><dl>
<dt>Config generation</dt><dd id="generation">{}</dd>
<dt>Last reload</dt><dd id="reload">{reload}</dd>
<dt>Sessions stored</dt><dd id="sessions">{}</dd>
<dt>Open SSE streams</dt><dd id="streams">{}</dd></dl></section>"#,
        o.generation, o.sessions, o.open_streams
    );
    b.push_str(
        r#"<h2>Routes</h2><table id="routes"><thead><tr><th>Route</th><th>Upstream</th><th>req/s (1 min)</th><th>errors/s</th><th>last 5 min</th></tr></thead><tbody>"#,
    );
    for r in &o.routes {
        let name = match r.pins {
            true => format!(
                r#"<a href="/ui/routes/{}/tools">{}</a>"#,
                super::path_segment(&r.name),
                esc(&r.name)
            ),
            false => esc(&r.name),
        };
        let _ = write!(
            b,
            r#"<tr data-route="{n}"><td class="route">{name}</td><td><code>{}</code></td><td class="num">{:.2}</td><td class="num">{:.2}</td><td>{}</td></tr>"#,
            esc(&r.upstream),
            r.rates.requests,
            r.rates.errors,
            chart(&r.rates.series),
            n = esc(&r.name),
        );
    }
    b.push_str("</tbody></table>");
    b.push_str(r#"<h2>Errors by code</h2><table id="codes"><thead><tr><th>Code</th><th>since start</th><th>last 5 min</th></tr></thead><tbody>"#);
    if o.codes.is_empty() {
        b.push_str(r#"<tr><td colspan="3">none</td></tr>"#);
    }
    for (code, total, recent) in &o.codes {
        let _ = write!(
            b,
            r#"<tr><td><code>{}</code></td><td class="num">{total}</td><td class="num">{recent}</td></tr>"#,
            esc(code)
        );
    }
    b.push_str("</tbody></table>");
    page("Overview", Some(login), &b)
}

/// A small SVG bar chart of (requests/s, errors/s) per sample interval,
/// newest on the right, errors drawn over requests.
fn chart(series: &[(f64, f64)]) -> String {
    const W: f64 = 240.0;
    const H: f64 = 36.0;
    if series.is_empty() {
        return r#"<span class="hint">collecting…</span>"#.into();
    }
    let max = series.iter().map(|p| p.0.max(p.1)).fold(0.0, f64::max);
    let slots = (SLOTS - 1).max(series.len());
    let step = W / slots as f64;
    let mut bars = String::new();
    for (i, p) in series.iter().enumerate() {
        let x = W - (series.len() - i) as f64 * step;
        for (class, v) in [("req", p.0), ("err", p.1)] {
            let h = if max > 0.0 { v / max * (H - 1.0) } else { 0.0 };
            if h > 0.0 {
                let _ = write!(
                    bars,
                    r#"<rect class="{class}" x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"/>"#,
                    H - h,
                    (step - 0.5).max(0.5)
                );
            }
        }
    }
    format!(
        r#"<svg class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="requests and errors per second, peak {max:.1}/s"><line class="axis" x1="0" y1="{H}" x2="{W}" y2="{H}"/>{bars}</svg>"#
    )
}

/// The call inspector.
pub fn call(c: &CallPage, login: &Login) -> String {
    let mut b = format!(r#"<h2>Call <code id="call-id">{}</code></h2>"#, esc(&c.id));
    match &c.session {
        Ok(Some(s)) => {
            let names: String = (s.names.iter())
                .map(|n| format!("<li><code>{}</code></li>", esc(n)))
                .collect();
            let _ = write!(
                b,
                r#"<section class="facts"><dl><dt>Source</dt><dd id="source">{}</dd><dt>TTL left</dt><dd id="ttl">{} s</dd></dl>
<h3>Variables (names only)</h3><ul id="variables">{names}</ul></section>"#,
                s.source,
                s.ttl_left.as_secs()
            );
            if login.role == Role::Admin {
                let _ = write!(
                    b,
                    r#"<form method="post" action="/ui/calls/{}/end"><input type="hidden" name="csrf" value="{}"><button id="end">End this session</button></form>"#,
                    esc(&super::path_segment(&c.id)),
                    esc(&login.csrf)
                );
            }
        }
        Ok(None) => b.push_str(
            r#"<p id="no-session">No session is stored under this id (it ended, expired, or was never registered).</p>"#,
        ),
        Err(e) => {
            let _ = write!(b, r#"<p class="error">{}</p>"#, esc(e));
        }
    }
    if !c.budgets.is_empty() {
        b.push_str(r#"<h3>Budgets</h3><table id="budgets"><thead><tr><th>Route</th><th>Tools</th><th>Calls</th><th>Budget</th></tr></thead><tbody>"#);
        for r in &c.budgets {
            let over = if r.counted > r.limit {
                r#" class="bad""#
            } else {
                ""
            };
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td><code>{}</code></td><td class="num"{over}>{}</td><td class="num">{}</td></tr>"#,
                esc(&r.route),
                esc(&r.glob),
                r.counted,
                r.limit,
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str(r#"<h3>Recent requests</h3><table id="requests"><thead><tr><th>Time</th><th>Route</th><th>MCP method</th><th>Tool</th><th>Status</th><th>Error code</th><th>Upstream ms</th></tr></thead><tbody>"#);
    if c.requests.is_empty() {
        b.push_str(r#"<tr><td colspan="7">none recorded</td></tr>"#);
    }
    for r in c.requests.iter().rev() {
        let _ = write!(
            b,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td><code>{}</code></td><td class="num">{}</td></tr>"#,
            format_rfc3339(r.ts),
            esc(r.route),
            esc(&r.method),
            esc(r.tool.as_deref().unwrap_or("")),
            r.status,
            esc(r.code.unwrap_or("")),
            r.upstream_ms.map_or(String::new(), |ms| format!("{ms:.1}")),
        );
    }
    b.push_str("</tbody></table>");
    page("Call", Some(login), &b)
}

/// The template playground.
pub fn playground(p: &Playground, login: &Login) -> String {
    let outcome = match &p.outcome {
        None => String::new(),
        Some(Ok(v)) => format!(r#"<h3>Rendered</h3><pre id="rendered">{}</pre>"#, esc(v)),
        Some(Err(e)) => format!(
            r#"<h3>Error</h3><pre id="render-error" class="error">{}</pre>"#,
            esc(e)
        ),
    };
    let body = format!(
        r#"<h2>Template playground</h2>
<form method="post" action="/ui/playground" class="playground">
<input type="hidden" name="csrf" value="{}">
<label>Template <textarea name="template" rows="3" spellcheck="false">{}</textarea></label>
<label>Variables (JSON) <textarea name="vars" rows="8" spellcheck="false">{}</textarea></label>
<label class="inline"><input type="checkbox" name="reveal" value="1"{}> show the value unredacted</label>
<button id="render">Render</button></form>{outcome}
<p class="hint">The proxy's own renderer; redacted by default, as <code>headgate render --redact</code>.</p>"#,
        esc(&login.csrf),
        esc(&p.template),
        esc(&p.vars),
        if p.reveal { " checked" } else { "" },
    );
    page("Playground", Some(login), &body)
}

/// A short page for a refusal or a missing page.
pub fn message(title: &str, text: &str, login: Option<&Login>) -> String {
    page(
        title,
        login,
        &format!("<h2>{}</h2><p>{}</p>", esc(title), esc(text)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_chart_scales_to_its_peak() {
        let svg = chart(&[(0.0, 0.0), (10.0, 5.0)]);
        assert!(
            svg.contains(r#"<rect class="req" x="236.0" y="1.0" width="3.5" height="35.0"/>"#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<rect class="err" x="236.0" y="18.5""#),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("peak 10.0/s"));
        assert!(chart(&[]).contains("collecting"));
    }
}
