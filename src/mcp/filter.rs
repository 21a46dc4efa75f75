//! `tools/list` results filtered to what a route allows, so an agent never
//! sees (and never tries) a tool it may not call. A plain JSON response is
//! rewritten whole; a `text/event-stream` response is rewritten event by
//! event: each event passes on the moment it is complete, and only an
//! event carrying a `tools/list` result is changed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;

use super::ToolPolicy;
use crate::net::body::Prefixed;
use crate::net::response::{self, Body};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest plain JSON `tools/list` response rewritten; a larger one passes
/// unfiltered with a warning (its tools are still refused when called).
const MAX_JSON: usize = 16 << 20;

/// `resp` with every `tools/list` result in it filtered by `policy`.
pub async fn tools_list(resp: Response<Body>, policy: Arc<ToolPolicy>) -> Response<Body> {
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("text/event-stream") {
        let (parts, body) = resp.into_parts();
        let filtered = SseFilter {
            inner: body,
            buf: BytesMut::new(),
            policy,
            done: false,
        };
        return Response::from_parts(parts, filtered.boxed());
    }
    if !ct.starts_with("application/json") {
        return resp;
    }
    let (mut parts, mut body) = resp.into_parts();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame.map(Frame::into_data) {
            Ok(Ok(data)) => buf.extend_from_slice(&data),
            Ok(Err(_trailers)) => {}
            Err(e) => {
                // What came, then the upstream's failure: never a clean end.
                let failed = StreamBody::new(futures_util::stream::iter([Err(e)]));
                let rest = Prefixed::new(buf.freeze(), failed);
                return Response::from_parts(parts, rest.boxed());
            }
        }
        if buf.len() > MAX_JSON {
            tracing::warn!("a tools/list response over 16 MiB passes unfiltered");
            return Response::from_parts(parts, Prefixed::new(buf.freeze(), body).boxed());
        }
    }
    let bytes = buf.freeze();
    let out = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => match filter_message(&mut v, &policy) {
            true => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            false => bytes,
        },
        Err(_) => bytes,
    };
    if let Ok(len) = HeaderValue::from_str(&out.len().to_string()) {
        parts.headers.insert(header::CONTENT_LENGTH, len);
    }
    Response::from_parts(parts, response::full(out))
}

/// Filters `result.tools` of a JSON-RPC response (or of each in a batch)
/// in place; true if anything was removed.
pub fn filter_message(msg: &mut Value, policy: &ToolPolicy) -> bool {
    match msg {
        Value::Array(items) => {
            // Every response of a batch, not just up to the first change.
            let mut changed = false;
            for m in items {
                changed |= filter_message(m, policy);
            }
            changed
        }
        Value::Object(_) => {
            let Some(Value::Array(tools)) = msg.pointer_mut("/result/tools") else {
                return false;
            };
            let before = tools.len();
            tools.retain(|t| {
                t.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| policy.allows(n))
            });
            tools.len() != before
        }
        _ => false,
    }
}

/// An event stream passed through event by event, `tools/list` results
/// filtered.
struct SseFilter {
    inner: Body,
    buf: BytesMut,
    policy: Arc<ToolPolicy>,
    done: bool,
}

impl http_body::Body for SseFilter {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.done = true;
                    let rest = self.buf.split().freeze();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.buf.extend_from_slice(&data);
                        let out = self.complete_events();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
            }
        }
    }
}

impl SseFilter {
    /// Takes every complete event off the buffer, filtered.
    fn complete_events(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.buf) {
            let event = self.buf.split_to(end);
            out.extend_from_slice(&filter_event(&event, &self.policy));
        }
        out.freeze()
    }
}

/// The end (terminator included) of the first complete event in `b`.
fn event_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        let rest = &b[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// One event (terminator included), with its data rewritten if it is a
/// `tools/list` result that loses tools; otherwise the bytes as they came.
fn filter_event(event: &[u8], policy: &ToolPolicy) -> Bytes {
    let Ok(text) = std::str::from_utf8(event) else {
        return Bytes::copy_from_slice(event);
    };
    let lines: Vec<&str> = text.lines().collect();
    let data: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    let mut msg = match serde_json::from_str::<Value>(&data.join("\n")) {
        Ok(v) if !data.is_empty() => v,
        _ => return Bytes::copy_from_slice(event),
    };
    if !filter_message(&mut msg, policy) {
        return Bytes::copy_from_slice(event);
    }
    let mut out = String::with_capacity(event.len());
    let mut wrote_data = false;
    for l in &lines {
        if l.starts_with("data:") {
            if !wrote_data {
                out.push_str("data: ");
                out.push_str(&msg.to_string());
                out.push('\n');
                wrote_data = true;
            }
        } else if !l.is_empty() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(globs: &[&str]) -> Arc<ToolPolicy> {
        let d: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
        Arc::new(ToolPolicy::new(&[], &d).unwrap())
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"search"},{"name":"delete_account"}],"nextCursor":"c2"}}"#;

    #[test]
    fn json_results_and_batches_are_filtered() {
        let p = deny(&["delete_*"]);
        let mut v: Value = serde_json::from_str(LIST).unwrap();
        assert!(filter_message(&mut v, &p));
        assert_eq!(
            v["result"]["tools"],
            serde_json::json!([{"name": "search"}])
        );
        assert_eq!(v["result"]["nextCursor"], "c2", "pagination kept");
        let mut batch: Value =
            serde_json::from_str(&format!("[{LIST},{{\"id\":3,\"result\":{{}}}}]")).unwrap();
        assert!(filter_message(&mut batch, &p));
        let mut other: Value = serde_json::from_str(r#"{"id":1,"result":{"content":[]}}"#).unwrap();
        assert!(!filter_message(&mut other, &p));
    }

    #[test]
    fn events_pass_unchanged_unless_they_carry_a_filtered_list() {
        let p = deny(&["delete_*"]);
        let progress = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        assert_eq!(&filter_event(progress, &p)[..], &progress[..]);
        let list = format!("event: message\nid: 7\ndata: {LIST}\r\n\r\n");
        let out = filter_event(list.as_bytes(), &p);
        let out = std::str::from_utf8(&out).unwrap();
        assert!(out.starts_with("event: message\nid: 7\ndata: {"), "{out}");
        assert!(
            out.ends_with("\n\n") && !out.contains("delete_account"),
            "{out}"
        );
        assert_eq!(event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(event_end(b"data: a\n"), None);
    }
}
