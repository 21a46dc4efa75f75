//! The webhook door: `POST /_hooks/<name>` on the public listener, where
//! platforms announce calls. Delivery itself is [`webhooks::deliver`].

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::config::Config;
use crate::metrics::{Outcome, RouteStatus};
use crate::net::response::{self, Body, ReadError, read_limited};
use crate::proxy::App;
use crate::proxy::exchange::error::session_status;
use crate::session::webhooks::{self, HookError, HookOutcome};

/// Largest webhook body read.
const MAX_BODY: usize = 1 << 20;

/// Handles one delivery to the webhook `name`.
pub(super) async fn handle(
    req: Request<Incoming>,
    app: &App,
    cfg: &Config,
    name: &str,
) -> Response<Body> {
    let Some(hook) = cfg.webhooks.get(name) else {
        return response::error(
            StatusCode::NOT_FOUND,
            "route.not_found",
            "no webhook with that name; configure [webhooks.<name>] in headgate.toml",
        );
    };
    if req.method() != http::Method::POST {
        return response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "webhook.method_not_allowed",
            "webhooks are POST",
        );
    }
    let (parts, body) = req.into_parts();
    let body = match read_limited(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return unreadable(e),
    };
    let (store, replay) = (&app.store, &app.replay);
    let max = cfg.server.max_session_bytes;
    let outcome = webhooks::deliver(hook, &parts.headers, &body, store, replay, max).await;
    if let Ok(HookOutcome::Stored(id)) = &outcome {
        let cfg = app.config.borrow().clone();
        app.credentials.prefetch_stored(&cfg, store, id);
    }
    let label = outcome.as_ref().map_or("rejected", |o| o.label());
    app.metrics
        .webhooks
        .get_or_create(&Outcome { outcome: label })
        .inc();
    let resp = match outcome {
        Ok(o) => response::json(StatusCode::OK, &json!({ "ok": true, "outcome": o.label() })),
        Err(e) => response::error(status(&e), e.code(), &e.to_string()),
    };
    let status = resp.status().as_u16();
    let route = "_hooks".into();
    app.metrics
        .requests
        .get_or_create(&RouteStatus { route, status })
        .inc();
    tracing::info!(hook = name, status, outcome = label, "webhook");
    resp
}

fn status(e: &HookError) -> StatusCode {
    match e {
        HookError::Unauthorized => StatusCode::UNAUTHORIZED,
        HookError::InvalidPayload(_) => StatusCode::BAD_REQUEST,
        HookError::Session(s) => match session_status(s) {
            // A webhook never asks for one session: a missing one is its
            // payload's fault.
            StatusCode::NOT_FOUND => StatusCode::BAD_REQUEST,
            other => other,
        },
    }
}

fn unreadable(e: ReadError) -> Response<Body> {
    match e {
        ReadError::TooLarge => response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            "webhook bodies are limited to 1 MiB",
        ),
        ReadError::Aborted => response::error(
            StatusCode::BAD_REQUEST,
            "request.aborted",
            "the request body was cut short",
        ),
    }
}
