//! `/_echo`: a built-in upstream that answers with what it received, so a
//! newcomer (and `curl`) can see the injected headers without a real server.
//! On only when `builtin_echo = true`.

use http::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::net::response::{self, Body};

/// Answers with the request's method, path, query and headers as JSON.
pub fn answer<B>(req: &Request<B>) -> Response<Body> {
    let mut headers = Map::new();
    for (k, v) in req.headers() {
        headers.insert(
            k.as_str().to_string(),
            Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        );
    }
    response::json(
        StatusCode::OK,
        &json!({
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "query": req.uri().query().unwrap_or(""),
            "headers": headers,
        }),
    )
}
