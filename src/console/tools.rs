//! The console's page of a route's pinned tool definitions
//! (`/ui/routes/{route}/tools`): the pinned tools, and each held one with
//! a readable diff from its pinned definition and an Approve button
//! (admin logins only; the form carries the CSRF token like the others).

use std::fmt::Write as _;

use http::{Method, Response, StatusCode};

use super::auth::Login;
use super::pages::{self, esc};
use super::{Sources, html, path_segment, see_other};
use crate::mcp::pins::{Report, tools_path};
use crate::net::response::Body;

/// `GET /ui/routes/{route}/tools`, `POST …/tools/{name}/approve` (after
/// the prefix `/ui/routes/`).
pub(super) async fn handle(
    method: &Method,
    rest: &str,
    login: &Login,
    src: &Sources<'_>,
) -> Response<Body> {
    let found = tools_path(rest).and_then(|(route, tool)| {
        let r = src.config.routes.get(route)?;
        Some((r.name, tool))
    });
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "no such route's tools", Some(login)),
        )
    };
    let Some((route, tool)) = found else {
        return not_found();
    };
    let failed = |e: crate::session::SessionError| {
        html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message("Unavailable", &format!("{}: {e}", e.code()), Some(login)),
        )
    };
    match (method, tool) {
        (&Method::GET, None) => match src.store.pins(route).await {
            Ok(t) => html(StatusCode::OK, page(route, &Report::of(&t), login)),
            Err(e) => failed(e),
        },
        (&Method::POST, Some(name)) => match src.pins.approve(route, &name).await {
            Ok(_) => see_other(&format!("/ui/routes/{}/tools", path_segment(route))),
            Err(e) => failed(e),
        },
        _ => not_found(),
    }
}

/// The page: held tools first (what needs the operator), then the pinned.
fn page(route: &str, r: &Report, login: &Login) -> String {
    let mut b = format!("<h2>Tools of route <code>{}</code></h2>", esc(route));
    if !r.sealed && r.pinned.is_empty() {
        b.push_str(
            "<p class=\"hint\">No tools pinned yet: the route's first tools/list pins them.</p>",
        );
    }
    let _ = write!(b, r#"<h3>Held ({})</h3>"#, r.held.len());
    if r.held.is_empty() {
        b.push_str(r#"<p id="none-held">No tool is held.</p>"#);
    }
    for h in &r.held {
        let kind = if h.pinned_sha256.is_some() {
            "changed"
        } else {
            "new"
        };
        let _ = write!(
            b,
            r#"<section class="held" data-tool="{n}"><h4><code>{n}</code> <span class="bad">{kind}</span> <code>{}</code></h4><pre class="diff">{}</pre>
<form method="post" action="/ui/routes/{}/tools/{}/approve"><input type="hidden" name="csrf" value="{}"><button class="approve">Approve</button></form></section>"#,
            &h.sha256[..12],
            diff_html(&h.diff),
            path_segment(route),
            path_segment(&h.name),
            esc(&login.csrf),
            n = esc(&h.name),
        );
    }
    let _ = write!(
        b,
        r#"<h3>Pinned ({})</h3><table id="pinned"><thead><tr><th>Tool</th><th>SHA-256</th></tr></thead><tbody>"#,
        r.pinned.len()
    );
    for p in &r.pinned {
        let _ = write!(
            b,
            r#"<tr><td><code>{}</code></td><td><code>{}</code></td></tr>"#,
            esc(&p.name),
            &p.sha256
        );
    }
    b.push_str("</tbody></table>");
    pages::page(&format!("Tools of {route}"), Some(login), &b)
}

/// A diff's lines, escaped, added and removed ones marked for the
/// stylesheet.
fn diff_html(diff: &str) -> String {
    diff.lines()
        .map(|l| match l.as_bytes().first() {
            Some(b'+') => format!("<ins>{}</ins>\n", esc(l)),
            Some(b'-') => format!("<del>{}</del>\n", esc(l)),
            _ => format!("{}\n", esc(l)),
        })
        .collect()
}
