//! The admin API's view of pinned tool definitions (`[mcp] pin_tools`):
//! `GET /routes/{route}/tools` lists the pinned and the held ones (with
//! each held definition's diff), `POST /routes/{route}/tools/{name}/approve`
//! pins a held one.

use http::{Method, Response, StatusCode, header};
use serde_json::json;

use super::admin::AdminCtx;
use crate::config::Config;
use crate::mcp::pins::{Report, tools_path};
use crate::net::response::{self, Body};

/// Answers `/routes/…` (after the prefix `rest`).
pub(super) async fn handle(
    method: &Method,
    rest: &str,
    ctx: &AdminCtx,
    cfg: &Config,
) -> Response<Body> {
    let Some((route, tool)) = tools_path(rest) else {
        return response::error(
            StatusCode::NOT_FOUND,
            "route.not_found",
            "route paths: GET /routes/{route}/tools, POST /routes/{route}/tools/{name}/approve (a tool name percent-encoded)",
        );
    };
    let Some(r) = cfg.routes.get(route) else {
        return response::error(
            StatusCode::NOT_FOUND,
            "route.not_found",
            &format!(
                "no route `{route}` in the config serving; the names are the files in templates/routes/"
            ),
        );
    };
    let mode = r
        .governance
        .as_ref()
        .map(|g| g.pin_tools)
        .unwrap_or_default();
    match (method, tool) {
        (&Method::GET, None) => match ctx.store.pins(route).await {
            Ok(t) => {
                let mut v = json!(Report::of(&t));
                v["route"] = json!(route);
                v["pin_tools"] = json!(mode.name());
                response::json(StatusCode::OK, &v)
            }
            Err(e) => super::admin::session_error(&e),
        },
        (&Method::POST, Some(name)) => match ctx.pins.approve(r.name, &name).await {
            Ok(true) => {
                tracing::info!(code = "mcp.tool_approved", route = %route, tool = %crate::audit::clip(&name), "a held tool definition was approved");
                response::json(
                    StatusCode::OK,
                    &json!({"route": route, "tool": name, "approved": true}),
                )
            }
            Ok(false) => response::error(
                StatusCode::NOT_FOUND,
                "mcp.tool_not_held",
                &format!(
                    "route `{route}` holds no definition of `{name}`; GET /routes/{route}/tools lists the held ones"
                ),
            ),
            Err(e) => super::admin::session_error(&e),
        },
        _ => {
            let mut r = response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "admin.method_not_allowed",
                "use GET on /routes/{route}/tools, POST on /routes/{route}/tools/{name}/approve",
            );
            r.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("GET, POST"));
            r
        }
    }
}
