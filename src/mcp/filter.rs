//! `tools/list` results filtered to what a route allows, so an agent never
//! sees (and never tries) a tool it may not call, and `tools/call`
//! results cut to `max_result_bytes`, so a tool's answer fits the model. A JSON response is
//! rewritten whole; a `text/event-stream` response is rewritten event by
//! event: each event passes on the moment it is complete, and only an
//! event carrying a `tools/list` result is changed.
//!
//! It fails closed: what a client could read as a list but the filter
//! cannot (JSON it cannot parse, a body over [`MAX_JSON`], an encoding
//! the upstream applied although asked for `identity`) is replaced by a
//! JSON-RPC error (`mcp.unfilterable_response`), never passed on. Bytes
//! that are not UTF-8 are read as a lenient client reads them (U+FFFD),
//! and SSE lines end in CRLF, LF or CR (the event-stream grammar).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;

use super::ToolPolicy;
use super::governance::cut_result;
use crate::net::body::Prefixed;
use crate::net::response::{self, Body};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest JSON response, or SSE event, the filter reads: a larger one is
/// refused, since its tools could not be judged.
const MAX_JSON: usize = 16 << 20;

/// The error code of a response the filter could not read.
pub const UNFILTERABLE: &str = "mcp.unfilterable_response";

/// How a route rewrites the responses of one request: `tools/list`
/// results filtered by its tool policy, `tools/call` results' text cut to
/// `max_result_bytes`.
#[derive(Default)]
pub struct Rules {
    /// The tool policy `tools/list` results are filtered by.
    pub policy: Option<Arc<ToolPolicy>>,
    /// The route's pins `tools/list` results are judged by.
    pub pins: Option<(Arc<super::pins::Book>, super::pins::PinMode)>,
    /// The most text a `tools/call` result carries.
    pub max_result_bytes: Option<usize>,
    /// Counts each result cut.
    pub cut: Option<crate::metrics::Counter>,
}

/// `resp` rewritten by `rules`: every `tools/list` result in it filtered,
/// every `tools/call` result's text cut.
/// `owner` (route, session key): an event stream with an `endpoint`
/// event registers under it ([`super::legacy`]).
pub async fn rewrite(
    resp: Response<Body>,
    policy: Arc<Rules>,
    owner: Option<(&'static str, String)>,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    // The body changes length: the upstream's framing no longer holds.
    parts.headers.remove(header::CONTENT_LENGTH);
    let encoded = (parts.headers.get(header::CONTENT_ENCODING))
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        tracing::warn!(
            code = UNFILTERABLE,
            "an encoded tools/list response was refused (the upstream ignored Accept-Encoding: identity)"
        );
        parts.headers.remove(header::CONTENT_ENCODING);
        return Response::from_parts(parts, unfilterable_json());
    }
    let event_stream = (parts.headers.get(header::CONTENT_TYPE))
        .is_some_and(|v| starts_with_ignoring_case(v.as_bytes(), b"text/event-stream"));
    if event_stream {
        let filtered = SseFilter {
            inner: body,
            buf: BytesMut::new(),
            policy,
            done: false,
            owner,
            registered: None,
        };
        return Response::from_parts(parts, filtered.boxed());
    }
    json_body(parts, body, &policy).await
}

/// A whole JSON body, filtered; whatever its content type says, a body a
/// client could parse as JSON is judged as JSON.
async fn json_body(
    mut parts: http::response::Parts,
    mut body: Body,
    policy: &Rules,
) -> Response<Body> {
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
            tracing::warn!(
                code = UNFILTERABLE,
                "a tools/list response over 16 MiB was refused"
            );
            return Response::from_parts(parts, unfilterable_json());
        }
    }
    let out = match filter_data(&buf, policy) {
        Judged::Unchanged => buf.freeze(),
        Judged::Filtered(text) => Bytes::from(text),
        Judged::Unreadable => unfilterable_bytes(),
    };
    if let Ok(len) = HeaderValue::from_str(&out.len().to_string()) {
        parts.headers.insert(header::CONTENT_LENGTH, len);
    }
    Response::from_parts(parts, response::full(out))
}

/// What the filter made of a message's bytes.
enum Judged {
    /// Not a list that loses tools, or not JSON at all: as it came.
    Unchanged,
    /// Rewritten without the tools the policy denies.
    Filtered(String),
    /// JSON-looking (`{` or `[` first) but not parseable: refused.
    Unreadable,
}

/// Judges one JSON-RPC message (or batch) as a client would read it.
fn filter_data(data: &[u8], policy: &Rules) -> Judged {
    let text = String::from_utf8_lossy(data);
    let looks_json = matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
    let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
        return if looks_json {
            Judged::Unreadable
        } else {
            Judged::Unchanged
        };
    };
    // Repaired bytes are sent as the client would have read them.
    let repaired = matches!(text, std::borrow::Cow::Owned(_));
    match filter_message(&mut v, policy) || repaired {
        true => Judged::Filtered(v.to_string()),
        false => Judged::Unchanged,
    }
}

/// The JSON-RPC error that stands for a response the filter could not read.
fn unfilterable_bytes() -> Bytes {
    let v = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32000,
            "message": format!("{UNFILTERABLE}: the server's answer could not be checked against this route's [mcp] rules (tool policy, max_result_bytes)"),
            "data": { "code": UNFILTERABLE, "status": 502 }
        }
    });
    Bytes::from(v.to_string())
}

fn unfilterable_json() -> Body {
    response::full(unfilterable_bytes())
}

fn starts_with_ignoring_case(v: &[u8], prefix: &[u8]) -> bool {
    v.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Rewrites a JSON-RPC response (or each in a batch) in place by `rules`:
/// `result.tools` filtered, `result.content` texts cut; true if anything
/// changed.
pub fn filter_message(msg: &mut Value, policy: &Rules) -> bool {
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
            let mut changed = false;
            if let Some(max) = policy.max_result_bytes
                && cut_result(msg, max)
            {
                if let Some(c) = &policy.cut {
                    c.inc();
                }
                changed = true;
            }
            let last_page = msg.pointer("/result/nextCursor").is_none();
            let Some(Value::Array(tools)) = msg.pointer_mut("/result/tools") else {
                return changed;
            };
            if let Some(p) = &policy.policy {
                let before = tools.len();
                tools.retain(|t| {
                    t.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| p.allows(n))
                });
                changed |= tools.len() != before;
            }
            if let Some((book, mode)) = &policy.pins {
                changed |= book.list(tools, last_page, *mode);
            }
            changed
        }
        _ => false,
    }
}

/// An event stream passed through event by event, `tools/list` results
/// filtered.
struct SseFilter {
    inner: Body,
    buf: BytesMut,
    policy: Arc<Rules>,
    done: bool,
    /// Route and session key, for a legacy stream's registration: taken
    /// by the first event.
    owner: Option<(&'static str, String)>,
    /// Where headgate's own answers to this stream's POSTs arrive.
    registered: Option<super::legacy::Registered>,
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
            // Events of headgate's own go out between the upstream's:
            // only whole events ever leave the buffer.
            if let Some(r) = &mut self.registered
                && let Poll::Ready(Some(event)) = r.events.poll_recv(cx)
            {
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.done = true;
                    // An unfinished last event is judged as it stands.
                    let rest = self.buf.split().freeze();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(filter_event(&rest, &self.policy)))));
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
    /// Takes every complete event off the buffer, filtered. An event that
    /// grows past [`MAX_JSON`] ends the stream with the filter's error.
    fn complete_events(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.buf) {
            let event = self.buf.split_to(end);
            self.register(&event);
            out.extend_from_slice(&filter_event(&event, &self.policy));
        }
        if self.buf.len() > MAX_JSON {
            tracing::warn!(
                code = UNFILTERABLE,
                "an event over 16 MiB ended a filtered stream"
            );
            self.buf.clear();
            self.done = true;
            out.extend_from_slice(&sse_event(
                None,
                &String::from_utf8_lossy(&unfilterable_bytes()),
            ));
        }
        out.freeze()
    }
}

impl SseFilter {
    /// Registers the stream when its first event is a legacy `endpoint`
    /// event (the legacy transport sends it first; later events are not
    /// looked at for it).
    fn register(&mut self, event: &[u8]) {
        let Some((route, key)) = self.owner.take() else {
            return;
        };
        let fields: Vec<&[u8]> = lines(event).map(|(l, _)| l).collect();
        let is_endpoint = (fields.iter()).any(|l| field(l, b"event") == Some(b"endpoint"));
        let sid = (fields.iter())
            .find_map(|l| field(l, b"data"))
            .and_then(|d| std::str::from_utf8(d.trim_ascii()).ok())
            .and_then(super::legacy::session_id);
        if let (true, Some(sid)) = (is_endpoint, sid) {
            self.registered = super::legacy::register((route, key, sid.to_string()));
        }
    }
}

/// The lines of `b` and where each ends (its terminator included): CRLF,
/// LF or CR. A CR last in `b` may be the first half of a CRLF, so the line
/// it ends is not complete yet.
fn lines(b: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = &b[at..];
        let i = rest.iter().position(|c| *c == b'\n' || *c == b'\r')?;
        let len = match (rest[i], rest.get(i + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', None) => return None,
            _ => 1,
        };
        let line = &rest[..i];
        at += i + len;
        Some((line, at))
    })
}

/// The end (terminator included) of the first complete event in `b`: the
/// end of its first empty line.
fn event_end(b: &[u8]) -> Option<usize> {
    lines(b)
        .find(|(line, _)| line.is_empty())
        .map(|(_, end)| end)
}

/// One event (terminator included), with its data rewritten if it is a
/// `tools/list` result that loses tools (or JSON the filter cannot read);
/// otherwise the bytes as they came.
fn filter_event(event: &[u8], policy: &Rules) -> Bytes {
    let fields: Vec<&[u8]> = lines(event)
        .map(|(l, _)| l)
        .chain(last_line(event))
        .collect();
    let data: Vec<&[u8]> = (fields.iter()).filter_map(|l| field(l, b"data")).collect();
    if data.is_empty() {
        return Bytes::copy_from_slice(event);
    }
    let text = match filter_data(&data.join(&b'\n'), policy) {
        Judged::Unchanged => return Bytes::copy_from_slice(event),
        Judged::Filtered(text) => text,
        Judged::Unreadable => String::from_utf8_lossy(&unfilterable_bytes()).into_owned(),
    };
    let kept: Vec<&[u8]> = (fields.iter().copied())
        .filter(|l| !l.is_empty() && field(l, b"data").is_none())
        .collect();
    sse_event(Some(&kept), &text)
}

/// The value of an event-stream line that is field `name` (`name:`, then
/// one optional space, as the event-stream grammar reads it).
fn field<'l>(line: &'l [u8], name: &[u8]) -> Option<&'l [u8]> {
    let value = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The bytes after the last line end of an event cut short (the stream
/// ended inside it), if any.
fn last_line(event: &[u8]) -> Option<&[u8]> {
    let consumed = lines(event).last().map_or(0, |(_, end)| end);
    let rest = &event[consumed..];
    (!rest.is_empty()).then_some(rest)
}

/// An event of the non-data fields `kept` (as they came, bytes that are
/// not UTF-8 repaired) and one `data:` line, LF-terminated.
fn sse_event(kept: Option<&[&[u8]]>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 64);
    for l in kept.unwrap_or_default() {
        out.push_str(&String::from_utf8_lossy(l));
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(globs: &[&str]) -> Arc<Rules> {
        let d: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
        let policy = Some(Arc::new(ToolPolicy::new(&[], &d).unwrap()));
        Arc::new(Rules {
            policy,
            ..Rules::default()
        })
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"search"},{"name":"delete_account"}],"nextCursor":"c2","ttlMs":60000,"cacheScope":"public"}}"#;

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
        // MCP 2026-07-28's cache hints stay as the server sent them: the
        // route's policy is the same for every session.
        assert_eq!(v["result"]["ttlMs"], 60000);
        assert_eq!(v["result"]["cacheScope"], "public");
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
        // Every line ending the event-stream grammar knows, mixed.
        assert_eq!(event_end(b"data: a\n\r\ndata: b"), Some(10));
        assert_eq!(event_end(b"data: a\r\rx"), Some(9));
        assert_eq!(
            event_end(b"data: a\r\n\r"),
            None,
            "a CR last may be half a CRLF"
        );
        assert_eq!(event_end(b"data: a\r\n\r\n"), Some(11));
        // A field's value after one optional space, either way.
        assert_eq!(field(b"event:endpoint", b"event"), Some(&b"endpoint"[..]));
        assert_eq!(field(b"event: endpoint", b"event"), Some(&b"endpoint"[..]));
        assert_eq!(field(b"data:  x", b"data"), Some(&b" x"[..]));
        assert_eq!(field(b"datum: x", b"data"), None);
    }

    /// A filtered event stream that came with a `Content-Length` goes on
    /// without it (hyper closed such a response with nothing sent), and a
    /// compressed response is refused, never passed unread.
    #[tokio::test]
    async fn framing_and_encodings_the_filter_changes_or_refuses() {
        let p = deny(&["delete_*"]);
        let event = format!("data: {LIST}\n\n");
        let mut r = Response::new(response::full(Bytes::from(event.clone())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(event.len()));
        let out = rewrite(r, p.clone(), None).await;
        assert!(out.headers().get(header::CONTENT_LENGTH).is_none());
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("delete_account"));
        let mut r = Response::new(response::full(Bytes::from_static(b"\x1f\x8b...")));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let out = rewrite(r, p, None).await;
        assert!(out.headers().get(header::CONTENT_ENCODING).is_none());
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(UNFILTERABLE));
    }

    /// What a lenient client reads as a list is what the filter judges:
    /// bytes that are not UTF-8, lines ending in LF then CRLF, JSON it
    /// cannot parse (refused), whatever the content type.
    #[test]
    fn what_a_client_could_read_as_a_list_is_filtered_or_refused() {
        let p = deny(&["delete_*"]);
        let bad_utf8 = LIST
            .replace("\"search\"", "\"search\",\"description\":\"\u{1}\"")
            .into_bytes();
        let mut with_ff = bad_utf8.clone();
        let at = with_ff.iter().position(|b| *b == 1).unwrap();
        with_ff[at] = 0xFF;
        for event in [
            [b"data: ".as_slice(), &with_ff, b"\n\r\n"].concat(),
            [
                b"event: message\r".as_slice(),
                b"data: ",
                LIST.as_bytes(),
                b"\r\rdata: next",
            ]
            .concat(),
        ] {
            let end = event_end(&event).expect("a complete event");
            let out = filter_event(&event[..end], &p);
            let out = String::from_utf8_lossy(&out);
            assert!(
                !out.contains("delete_account") && out.contains("search"),
                "{out}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let out = filter_event(format!("data: {deep}\n\n").as_bytes(), &p);
        assert!(String::from_utf8_lossy(&out).contains(UNFILTERABLE));
        assert!(
            matches!(filter_data(&with_ff, &p), Judged::Filtered(t) if !t.contains("delete_account"))
        );
        assert!(matches!(filter_data(b"not json", &p), Judged::Unchanged));
        assert!(matches!(
            filter_data(b"{\"tools\": [", &p),
            Judged::Unreadable
        ));
        // A stream cut inside an event: its lines are judged all the same.
        let cut = format!("data: {LIST}");
        let out = filter_event(cut.as_bytes(), &p);
        assert!(!String::from_utf8_lossy(&out).contains("delete_account"));
    }
}
