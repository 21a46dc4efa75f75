//! MCP awareness: what a request on an MCP route asks the server to do
//! (its JSON-RPC method, the tool, prompt or resource it names), the
//! route's tool policy, and the `tools/list` filter that keeps a denied
//! tool out of the agent's sight.
//!
//! The view comes from the `Mcp-Method` / `Mcp-Name` headers (MCP revision
//! 2026-07-28 makes them mandatory) when present, else from the JSON-RPC
//! body (at most the first 64 KiB, which the proxy has read anyway; the
//! body is forwarded byte for byte). A body that is not JSON-RPC gives an
//! empty view: it passes, it is never a crash.

pub mod filter;
pub mod governance;
pub mod legacy;
pub mod pins;
pub mod policy;

use http::{HeaderMap, HeaderName};
use serde_json::Value;

pub use policy::ToolPolicy;

/// One JSON-RPC message of a request, as far as MCP policy cares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Call {
    /// `initialize`, `tools/list`, `tools/call`, …
    pub method: String,
    /// The tool of a `tools/call`, the prompt of a `prompts/get`.
    pub tool: Option<String>,
    /// The resource of a `resources/read`.
    pub uri: Option<String>,
}

impl Call {
    /// The name the `Mcp-Name` header carries for this call.
    fn name(&self) -> Option<&str> {
        self.tool.as_deref().or(self.uri.as_deref())
    }
}

/// Every MCP call one request carries: none (not JSON-RPC), one, or a
/// batch (JSON-RPC arrays, MCP 2025-03-26).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpView {
    /// The calls, in order.
    pub calls: Vec<Call>,
    /// The JSON-RPC id of a single message (a batch has none).
    pub id: Option<Value>,
    /// The request had a body this could not read as JSON-RPC (not JSON,
    /// a string it reads not UTF-8, cut short, a field twice): a route
    /// that limits tools refuses it, as its policy cannot see the call the
    /// server may run.
    pub unreadable: bool,
}

impl McpView {
    /// The first call's method (the one templates and metrics see).
    pub fn method(&self) -> Option<&str> {
        self.calls.first().map(|c| c.method.as_str())
    }

    /// The first call's tool or prompt name.
    pub fn tool(&self) -> Option<&str> {
        self.calls.first().and_then(|c| c.tool.as_deref())
    }

    /// Whether any call is `method`.
    pub fn has(&self, method: &str) -> bool {
        self.calls.iter().any(|c| c.method == method)
    }

    /// `request.mcp` for templates: `method`, `tool`, `uri` of the first
    /// call (absent keys when the request carries none).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(c) = self.calls.first() {
            m.insert("method".into(), Value::String(c.method.clone()));
            if let Some(t) = &c.tool {
                m.insert("tool".into(), Value::String(t.clone()));
            }
            if let Some(u) = &c.uri {
                m.insert("uri".into(), Value::String(u.clone()));
            }
        }
        Value::Object(m)
    }
}

/// Why a request's MCP view is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// The `Mcp-Method`/`Mcp-Name` headers name another call than the body:
    /// policy would judge one and the server run the other.
    #[error(
        "the Mcp-Method/Mcp-Name headers do not match the JSON-RPC body; send the same call in both"
    )]
    HeaderMismatch,
    /// The body is not JSON-RPC this can read, on a route whose policy
    /// must see the call.
    #[error(
        "this route limits tools and could not read the request body as JSON-RPC; send UTF-8 JSON: one message or a batch of them, each field once"
    )]
    UnreadableBody,
}

impl McpError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            McpError::HeaderMismatch => "mcp.header_mismatch",
            McpError::UnreadableBody => "mcp.unreadable_body",
        }
    }
}

/// MCP revision 2026-07-28's headers naming the call.
static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// What a request's MCP transport headers say, for its span
/// (`mcp.protocol.version`, `mcp.session.id`): read only while spans are
/// exported, each clipped as the audit trail clips client text.
#[derive(Debug, Clone, Default)]
pub struct TraceHeaders {
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<String>,
    /// `Mcp-Session-Id`, when the client sent one.
    pub session_id: Option<String>,
}

impl TraceHeaders {
    /// Reads them through `header` (a name's value, as text).
    pub fn read<'h>(header: impl Fn(&HeaderName) -> Option<&'h str>) -> Self {
        Self {
            protocol_version: header(&MCP_PROTOCOL_VERSION).map(crate::audit::clip),
            session_id: header(&MCP_SESSION_ID).map(crate::audit::clip),
        }
    }
}

/// The MCP view of a request from its headers and what was read of its
/// body (`None` when the body was not read).
pub fn view(headers: &HeaderMap, body: Option<&[u8]>) -> Result<McpView, McpError> {
    view_with(|name| headers.get(name).and_then(|v| v.to_str().ok()), body)
}

/// [`view`] with the headers read through `header` (the value of a name,
/// as text): the forwarding core reads them from its raw head.
pub fn view_with<'h>(
    header: impl Fn(&HeaderName) -> Option<&'h str>,
    body: Option<&[u8]>,
) -> Result<McpView, McpError> {
    let from_body = body.map(from_body).unwrap_or_default();
    let (Some(method), name) = (header(&MCP_METHOD), header(&MCP_NAME)) else {
        return Ok(from_body);
    };
    let name = match name.map(header_text) {
        Some(None) => return Err(McpError::HeaderMismatch),
        decoded => decoded.flatten(),
    };
    let name = name.as_deref();
    if from_body.calls.is_empty() {
        let unreadable = from_body.unreadable;
        let call = Call {
            method: method.to_string(),
            tool: name
                .filter(|_| method != "resources/read")
                .map(str::to_string),
            uri: name
                .filter(|_| method == "resources/read")
                .map(str::to_string),
        };
        return Ok(McpView {
            calls: vec![call],
            id: None,
            unreadable,
        });
    }
    let agrees = |c: &Call| c.method == method && (name.is_none() || c.name() == name);
    if from_body.calls.iter().all(agrees) {
        Ok(from_body)
    } else {
        Err(McpError::HeaderMismatch)
    }
}

/// What an `Mcp-Name` or `Mcp-Param-*` value says: the value itself, or
/// the UTF-8 text it carries in MCP 2026-07-28's encoded form
/// `=?base64?<standard padded base64>?=` (how a client sends a name that
/// is not plain ASCII). `None` for an encoded form that does not decode
/// (bad or non-canonical base64, not UTF-8): it names no call, so it can
/// never agree with a body, as the SDKs' servers judge it.
pub fn header_text(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    use base64::Engine as _;
    let Some(payload) = raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Some(std::borrow::Cow::Borrowed(raw));
    };
    // The standard engine refuses missing padding and stray trailing
    // bits: only the canonical form the encoder writes decodes.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok().map(std::borrow::Cow::Owned)
}

/// The calls of a JSON-RPC body: one object or an array of them. Responses
/// and notifications without a `method` are skipped. Only the fields the
/// view needs are decoded (no `serde_json::Value` tree of the arguments).
/// A body with anything in it that does not decode so is
/// [`McpView::unreadable`]; so is a batch with an element that is not a
/// message, which a server might still run.
pub fn from_body(body: &[u8]) -> McpView {
    let unreadable = McpView {
        unreadable: true,
        ..McpView::default()
    };
    // The first byte says which shape to read (serde would also read a
    // struct from an array).
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => match decode::<Message<'_>>(body) {
            Ok(m) => McpView {
                id: m.id.clone(),
                calls: m.call().into_iter().collect(),
                unreadable: false,
            },
            Err(_) => unreadable,
        },
        Some(b'[') => match decode::<Vec<Object<Message<'_>>>>(body) {
            Ok(items) => McpView {
                calls: items.iter().filter_map(|m| m.0.call()).collect(),
                id: None,
                unreadable: false,
            },
            Err(_) => unreadable,
        },
        Some(_) => unreadable,
        None => McpView::default(),
    }
}

/// `body` decoded as text when it is UTF-8 throughout (the usual case):
/// read from a slice, serde_json checks every string it decodes again
/// (eight strings in a `tools/call`). Other bytes are read from the slice as before: it refuses
/// them in a string it decodes and passes over them in one it skips.
fn decode<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// The fields of one message the view reads; everything else is skipped.
#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    method: Option<MaybeStr<'a>>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
}

/// `T` read from a JSON object only: serde's derive also reads a struct
/// from an array, so a batch element `[{…}]` (a nested batch, which no
/// server should run, and some do) would pass as a message with no call.
struct Object<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC message (an object)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(serde::Deserialize)]
struct Params<'a> {
    #[serde(borrow, default)]
    name: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    uri: Option<MaybeStr<'a>>,
}

/// A string, or any other JSON value (which the view ignores), so that a
/// message with `"method": 5` is skipped rather than failing the body.
/// Read with one visitor: an untagged enum would first buffer the value.
enum MaybeStr<'a> {
    Str(std::borrow::Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for MaybeStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeStrVisitor(std::marker::PhantomData))
    }
}

struct MaybeStrVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for MaybeStrVisitor<'a> {
    type Value = MaybeStr<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeStr::Str(std::borrow::Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MaybeStr::Str(std::borrow::Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(MaybeStr::Str(std::borrow::Cow::Owned(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeStr::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeStr::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeStr::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeStr::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(MaybeStr::Other)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(MaybeStr::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(MaybeStr::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(MaybeStr::Other)
    }
}

impl MaybeStr<'_> {
    fn text(&self) -> Option<String> {
        match self {
            MaybeStr::Str(s) => Some(s.to_string()),
            MaybeStr::Other => None,
        }
    }
}

impl Message<'_> {
    fn call(&self) -> Option<Call> {
        let method = self.method.as_ref()?.text()?;
        let params = self.params.as_ref();
        let name = || {
            params
                .and_then(|p| p.name.as_ref())
                .and_then(MaybeStr::text)
        };
        let uri = || params.and_then(|p| p.uri.as_ref()).and_then(MaybeStr::text);
        let (tool, uri) = match method.as_str() {
            "tools/call" | "prompts/get" => (name(), None),
            "resources/read" => (None, uri()),
            _ => (None, None),
        };
        Some(Call { method, tool, uri })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn views_come_from_the_body_or_the_headers() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}"#;
        let v = view(&HeaderMap::new(), Some(body)).unwrap();
        assert_eq!((v.method(), v.tool()), (Some("tools/call"), Some("search")));
        let both = h(&[("mcp-method", "tools/call"), ("mcp-name", "search")]);
        assert_eq!(view(&both, Some(body)).unwrap(), v);
        let only_headers = view(&both, None).unwrap();
        assert_eq!(only_headers.tool(), Some("search"));
        let read = view(
            &h(&[("mcp-method", "resources/read"), ("mcp-name", "file:///a")]),
            None,
        );
        assert_eq!(read.unwrap().calls[0].uri.as_deref(), Some("file:///a"));
    }

    /// What a route that limits tools must refuse: a call its policy
    /// cannot read but a lenient server might still run (the last of two
    /// `params`, a body cut at the 64 KiB once peeked at, a batch element
    /// that is not a message). An empty body, messages without a call,
    /// and bytes that are not UTF-8 in a string the view skips (read from
    /// the slice, the call still seen) are not.
    #[test]
    fn bodies_policy_cannot_read_are_unreadable_and_nothing_else_is() {
        let unreadable: [&[u8]; 8] = [
            br#"[[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}]]"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},["tools/call",1]]"#,
            br#"{"method":"tools/call","params":{"name":"search"},"params":{"name":"delete_all"}}"#,
            br#"{"method":"tools/call","params":{"name":"delete_all","arguments":{"q":"xx"#,
            br#"[{"method":"tools/call","params":{"name":"search"}},7]"#,
            br#"[{"method":"tools/call","params":{"name":"a"},"params":{"name":"delete_all"}}]"#,
            b"not json",
            b"\"a string\"",
        ];
        for body in unreadable {
            let v = from_body(body);
            assert!(
                v.unreadable && v.calls.is_empty(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let readable: [&[u8]; 4] = [
            b"",
            b" \r\n ",
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            br#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
        ];
        for body in readable {
            assert!(
                !from_body(body).unreadable,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let not_utf8 = b"{\"method\":\"tools/call\",\"params\":{\"name\":\"delete_all\",\"arguments\":{\"x\":\"\xff\"}}}";
        assert_eq!(from_body(not_utf8).tool(), Some("delete_all"));
        // The headers' view keeps the mark: a route that limits tools
        // still refuses.
        let both = h(&[("mcp-method", "tools/call"), ("mcp-name", "search")]);
        assert!(view(&both, Some(unreadable[0])).unwrap().unreadable);
    }

    #[test]
    fn headers_that_disagree_with_the_body_are_refused() {
        let body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}"#;
        for headers in [
            h(&[("mcp-method", "tools/call"), ("mcp-name", "search")]),
            h(&[("mcp-method", "tools/list")]),
        ] {
            assert_eq!(view(&headers, Some(body)), Err(McpError::HeaderMismatch));
        }
    }

    /// The SDK's encoding of a name that is not plain ASCII: decoded
    /// before it is compared with the body, and for a header-only view;
    /// a sentinel that does not decode agrees with nothing.
    #[test]
    fn encoded_names_are_decoded_before_they_are_compared() {
        // `weather/東京`, as the MCP Python SDK 2.3 encodes it.
        let encoded = "=?base64?d2VhdGhlci/mnbHkuqw=?=";
        assert_eq!(header_text(encoded).as_deref(), Some("weather/東京"));
        assert_eq!(header_text("search").as_deref(), Some("search"));
        for bad in [
            "=?base64?d2VhdGhlci/mnbHkuqw?=",
            "=?base64?d2VhdGhlci/mnbHkuqx=?=",
            "=?base64?/w==?=",
            "=?base64?!!!!?=",
        ] {
            assert_eq!(header_text(bad), None, "{bad}");
        }
        let body =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"weather/東京"}}"#;
        let headers = h(&[("mcp-method", "tools/call"), ("mcp-name", encoded)]);
        let v = view(&headers, Some(body.as_bytes())).unwrap();
        assert_eq!(v.tool(), Some("weather/東京"));
        assert_eq!(view(&headers, None).unwrap().tool(), Some("weather/東京"));
        let raw = h(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?/w==?="),
        ]);
        for body in [Some(body.as_bytes()), None] {
            assert_eq!(view(&raw, body), Err(McpError::HeaderMismatch));
        }
    }

    #[test]
    fn batches_non_json_and_responses() {
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}},{"jsonrpc":"2.0","id":3,"result":{}}]"#;
        let v = from_body(batch);
        assert_eq!(v.calls.len(), 2);
        assert!(v.has("tools/call"));
        for junk in [&b""[..], b"{\"method\": 5}"] {
            assert_eq!(from_body(junk), McpView::default());
        }
        for junk in [&b"not json"[..], b"[1,2]", b"null"] {
            assert!(from_body(junk).unreadable);
        }
    }
}
