//! The call inspector (`/ui/calls/{id}`): a session's variable names
//! (never values), source and TTL, its counts against the routes'
//! budgets and its recent requests; an admin login can end it.

use http::{Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::auth::Login;
use super::pages::{self, CallPage, SessionInfo};
use super::{Sources, html, path_segment, see_other};
use crate::net::response::Body;
use crate::session::{SessionStore as _, check_id};

/// Variable names listed per session.
const MAX_NAMES: usize = 200;

/// `GET /ui/calls/{id}`.
pub(super) async fn inspect(raw: &str, login: &Login, src: &Sources<'_>) -> Response<Body> {
    let id = percent_decode_str(raw).decode_utf8_lossy().into_owned();
    if let Err(e) = check_id(&id) {
        return html(
            StatusCode::BAD_REQUEST,
            pages::message("Not a call id", &e.to_string(), Some(login)),
        );
    }
    let session = match src.store.get(&id).await {
        Ok(s) => Ok(s.map(|s| SessionInfo {
            names: variable_names(s.vars.as_map()),
            source: s.source.name(),
            ttl_left: s.ttl_left(),
        })),
        Err(e) => Err(format!("{}: {e}", e.code())),
    };
    let requests = src.calls.timeline.get(&id).unwrap_or_default();
    let budgets = budgets(&id, src).await;
    let call = CallPage {
        id,
        session,
        requests,
        budgets,
    };
    html(StatusCode::OK, pages::call(&call, login))
}

/// Every route's `[mcp] budgets` with what session `id` has counted
/// against each (a store that cannot be read shows none).
async fn budgets(id: &str, src: &Sources<'_>) -> Vec<pages::BudgetRow> {
    let mut routes: Vec<_> = (src.config.routes.values())
        .filter_map(|r| Some((&r.name, r.governance.as_ref()?)))
        .filter(|(_, g)| !g.budgets.is_empty())
        .collect();
    if routes.is_empty() {
        return Vec::new();
    }
    routes.sort_by_key(|(name, _)| *name);
    let spent = src.store.spent(id).await.unwrap_or_default();
    let rows = routes.into_iter().flat_map(|(route, g)| {
        g.budgets.iter().map(|b| pages::BudgetRow {
            route: route.to_string(),
            glob: b.glob.clone(),
            counted: spent.get(&b.glob).copied().unwrap_or(0),
            limit: b.limit,
        })
    });
    rows.collect()
}

/// `POST /ui/calls/{id}/end`: deletes the session (admin logins only:
/// [`super::route`] sends a read-only one away first).
pub(super) async fn end_session(raw: &str, login: &Login, src: &Sources<'_>) -> Response<Body> {
    let id = percent_decode_str(raw).decode_utf8_lossy().into_owned();
    if let Err(e) = check_id(&id) {
        return html(
            StatusCode::BAD_REQUEST,
            pages::message("Not a call id", &e.to_string(), Some(login)),
        );
    }
    match src.store.delete(&id).await {
        Ok(()) => see_other(&format!("/ui/calls/{}", path_segment(&id))),
        Err(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message("Not ended", &format!("{}: {e}", e.code()), Some(login)),
        ),
    }
}

/// Leaf paths of a session's variables (`call.metadata.token`), at most
/// [`MAX_NAMES`].
pub(super) fn variable_names(vars: &serde_json::Map<String, Value>) -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>, depth: usize) {
        if out.len() >= MAX_NAMES {
            return;
        }
        match v {
            Value::Object(m) if depth < 8 && !m.is_empty() => {
                for (k, child) in m {
                    walk(&join(prefix, k), child, out, depth + 1);
                }
            }
            Value::Array(_) => out.push(format!("{prefix}[]")),
            _ => out.push(prefix.to_string()),
        }
    }
    fn join(prefix: &str, k: &str) -> String {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    }
    let mut out = Vec::new();
    for (k, v) in vars {
        walk(k, v, &mut out, 1);
    }
    out
}
