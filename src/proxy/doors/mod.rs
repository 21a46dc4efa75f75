//! The doors a request comes in by. On the public listener: a route
//! (`/<name>/…`), a platform webhook (`/_hooks/<name>`), the built-in echo
//! upstream (`/_echo`). On the admin listener: the admin API with
//! `/metrics`, `/healthz` and `/readyz`.

pub mod admin;
pub(crate) mod echo;
mod route;
mod webhook;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::App;
use super::exchange::Peer;
use crate::net::response::Body;

/// Handles one request on the public listener under the config it
/// arrived with (a reload never changes a request half-way).
pub async fn public(req: Request<Incoming>, app: Arc<App>, peer: Arc<Peer>) -> Response<Body> {
    let cfg = app.config.borrow().clone();
    let path = req.uri().path();
    if let Some(name) = path.strip_prefix("/_hooks/") {
        let name = name.to_string();
        return webhook::handle(req, &app, &cfg, &name).await;
    }
    if cfg.server.builtin_echo && (path == "/_echo" || path.starts_with("/_echo/")) {
        return echo::answer(&req);
    }
    route::handle(req, &app, &cfg, &peer).await
}
