//! The doors a request comes in by. On the public listener: a route
//! (`/<name>/…`), a platform webhook (`/_hooks/<name>`), the built-in echo
//! upstream (`/_echo`), the JWKS of headgate's own JWTs
//! (`/.well-known/jwks.json`). On the admin listener: the admin API with
//! `/metrics`, `/healthz` and `/readyz`.

pub mod admin;
pub(crate) mod echo;
pub(crate) mod route;
mod tools;
mod webhook;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::App;
use super::exchange::Peer;
use crate::net::response;
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
    if path == JWKS_PATH && cfg.has_jwt() {
        return jwks(&cfg.jwks);
    }
    if cfg.server.builtin_echo && (path == "/_echo" || path.starts_with("/_echo/")) {
        return echo::answer(&req);
    }
    route::handle(req, &app, &cfg, &peer).await
}

/// Where verifiers find the public keys of `kind = "jwt"` credentials.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The JWKS, cacheable for five minutes (rotations keep the previous keys
/// listed for longer than that).
fn jwks(body: &bytes::Bytes) -> Response<Body> {
    let mut r = Response::new(response::full(body.clone()));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    r
}
