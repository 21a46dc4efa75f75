//! The error phase: the one map from a failure to its response
//! (docs/operations.md "Errors"), and the JSON-RPC id an error on an MCP route must carry. Each
//! error knows its status, its stable code and which side failed; none
//! carries a secret.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::config::ErrorStyle;
use crate::credentials::CredentialError;
use crate::mcp::McpError;
use crate::net::response::{self, Body};
use crate::session::SessionError;

/// Which side of the proxy a failure belongs to (as pingora labels them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller sent something we refuse.
    Downstream,
    /// The real server failed.
    Upstream,
    /// Our own machinery (templates, store, resolver).
    Internal,
}

/// A refusal or failure answered by the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Inbound auth header missing or wrong.
    #[error("inbound authentication failed: send the route's key header")]
    InboundAuth,
    /// No session key in the request.
    #[error("no session key found; send one of: {0}")]
    KeyMissing(String),
    /// Key present but fails the pattern.
    #[error("the session key does not match session_key_pattern")]
    KeyInvalid,
    /// Unknown session and the route rejects unknown sessions.
    #[error(
        "unknown session: register it (PUT /sessions/{{id}}) or let a platform webhook do so before the call"
    )]
    SessionNotFound,
    /// No route for the path.
    #[error("no route for this path; routes are served at /<route name>/…")]
    RouteNotFound,
    /// Body over the route's limit.
    #[error("request body is larger than the route's body_limit")]
    TooLarge,
    /// The request path contains `.` or `..` segments.
    #[error("the request path contains `.` or `..` segments")]
    InvalidPath,
    /// A header template failed.
    #[error("header `{header}` could not be rendered: {detail}")]
    RenderFailed {
        /// Header name.
        header: String,
        /// The template error (code and variable name only).
        detail: String,
    },
    /// Upstream connect failed.
    #[error("the upstream could not be reached")]
    UpstreamUnreachable,
    /// No upstream response headers in time.
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    /// Resolver failed and nothing is cached.
    #[error("the session resolver is unavailable; try again shortly")]
    ResolverUnavailable,
    /// The session store cannot be reached.
    #[error("the session store is unavailable")]
    StoreUnavailable,
    /// The request body was malformed where the route needs to read it.
    #[error("{0}")]
    BadBody(&'static str),
    /// The request's head is not one a proxy may forward as it is.
    #[error("{0}")]
    Malformed(&'static str),
    /// The forwarding core could not read the request's head as
    /// HTTP/1.1 (400), or it is larger than it reads (431).
    #[error("{0}")]
    BadHead(crate::net::h1::Refused),
    /// A header that must appear once appeared more than once (`Host`, a
    /// session-key header): which value counts would be a guess.
    #[error("the request has more than one `{0}` header; send it once")]
    Ambiguous(&'static str),
    /// The MCP view of the request is refused (headers against body).
    #[error("{0}")]
    Mcp(#[from] McpError),
    /// The route's `[mcp]` policy does not allow this tool.
    #[error(
        "this route does not allow the tool `{0}`; the agent should use another tool or tell the caller it cannot do this"
    )]
    ToolDenied(String),
    /// The tool differs from the route's pinned definition, or is new
    /// since its tools were pinned (`pin_tools = "hold"`).
    #[error(
        "the tool `{0}` changed (or is new) since this route's tools were pinned and is held until an operator approves it; the agent should use another tool or tell the caller it cannot do this now"
    )]
    ToolChanged(String),
    /// The call has used up its budget for this tool (`[mcp] budgets`).
    #[error(
        "this call has used `{tool}` as many times as it may ({limit}); the agent should tell the caller it cannot do that again on this call"
    )]
    BudgetExceeded {
        /// The tool called.
        tool: String,
        /// The budget of its glob.
        limit: u64,
    },
    /// A session-key header appeared more than once.
    #[error("the request has more than one session-key header `{0}`; send it once")]
    KeyAmbiguous(String),
    /// A credential the route's templates use could not be obtained.
    #[error("{0}")]
    Credential(#[from] CredentialError),
}

impl ProxyError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::InboundAuth => "auth.inbound_failed",
            ProxyError::KeyMissing(_) => "session.key_missing",
            ProxyError::KeyInvalid => "session.key_invalid",
            ProxyError::SessionNotFound => "session.not_found",
            ProxyError::RouteNotFound => "route.not_found",
            ProxyError::TooLarge => "request.too_large",
            ProxyError::InvalidPath => "request.invalid_path",
            ProxyError::RenderFailed { .. } => "template.render_failed",
            ProxyError::UpstreamUnreachable => "upstream.unreachable",
            ProxyError::UpstreamTimeout => "upstream.timeout",
            ProxyError::ResolverUnavailable => "resolver.unavailable",
            ProxyError::StoreUnavailable => "store.unavailable",
            ProxyError::BadBody(_) => "request.invalid_body",
            ProxyError::Malformed(_) | ProxyError::BadHead(_) => "request.malformed",
            ProxyError::Ambiguous(_) => "request.duplicate_header",
            ProxyError::Mcp(e) => e.code(),
            ProxyError::ToolDenied(_) => "mcp.tool_denied",
            ProxyError::ToolChanged(_) => "mcp.tool_changed",
            ProxyError::BudgetExceeded { .. } => "mcp.budget_exceeded",
            ProxyError::KeyAmbiguous(_) => "session.key_ambiguous",
            ProxyError::Credential(e) => e.code(),
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::InboundAuth => StatusCode::UNAUTHORIZED,
            ProxyError::BadHead(r) => {
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ProxyError::KeyMissing(_)
            | ProxyError::KeyInvalid
            | ProxyError::InvalidPath
            | ProxyError::BadBody(_)
            | ProxyError::Malformed(_)
            | ProxyError::Ambiguous(_)
            | ProxyError::Mcp(_)
            | ProxyError::KeyAmbiguous(_) => StatusCode::BAD_REQUEST,
            ProxyError::ToolDenied(_) | ProxyError::ToolChanged(_) => StatusCode::FORBIDDEN,
            ProxyError::BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::SessionNotFound => StatusCode::FORBIDDEN,
            ProxyError::RouteNotFound => StatusCode::NOT_FOUND,
            ProxyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RenderFailed { .. } | ProxyError::UpstreamUnreachable => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ResolverUnavailable | ProxyError::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Credential(CredentialError::Unavailable { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Credential(CredentialError::Rejected { .. }) => StatusCode::FORBIDDEN,
        }
    }

    /// Who failed.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::UpstreamUnreachable | ProxyError::UpstreamTimeout => Side::Upstream,
            ProxyError::RenderFailed { .. }
            | ProxyError::ResolverUnavailable
            | ProxyError::StoreUnavailable
            | ProxyError::Credential(CredentialError::Unavailable { .. }) => Side::Internal,
            _ => Side::Downstream,
        }
    }

    /// The style this error is answered in on a route answering `route`'s:
    /// a denied or held tool, a spent budget and a header mismatch are answered as
    /// the MCP client expects (JSON-RPC, so the agent can say it, or the SDK re-list and
    /// send again), whatever the route's style.
    pub fn style(&self, route: ErrorStyle) -> ErrorStyle {
        match self {
            ProxyError::ToolDenied(_)
            | ProxyError::ToolChanged(_)
            | ProxyError::BudgetExceeded { .. }
            | ProxyError::Mcp(McpError::HeaderMismatch) => ErrorStyle::JsonRpc,
            _ => route,
        }
    }

    /// The JSON-RPC error code: MCP 2026-07-28's HEADER_MISMATCH (-32020)
    /// for headers that disagree with the body, the implementation-defined
    /// server error (-32000) for everything else.
    pub fn rpc_code(&self) -> i64 {
        match self {
            ProxyError::Mcp(McpError::HeaderMismatch) => -32020,
            _ => -32000,
        }
    }

    /// The HTTP status a JSON-RPC answer goes with: 200, so the agent
    /// reads the error as the tool's, except a header mismatch, which MCP
    /// 2026-07-28 answers with 400.
    fn rpc_status(&self) -> StatusCode {
        match self {
            ProxyError::Mcp(McpError::HeaderMismatch) => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        }
    }

    /// The response in the route's style. `rpc_id` is the JSON-RPC id of
    /// the request, when it could be read.
    pub fn to_response(&self, style: ErrorStyle, rpc_id: Option<Value>) -> Response<Body> {
        let mut r = match (style, rpc_id) {
            (ErrorStyle::JsonRpc, Some(id)) => {
                response::json(self.rpc_status(), &self.to_response_json(id))
            }
            _ => response::error(self.status(), self.code(), &self.to_string()),
        };
        if matches!(self, ProxyError::InboundAuth) {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("headgate-key"),
            );
        }
        r
    }
}

impl ProxyError {
    /// The JSON-RPC error response for the request with id `id`.
    pub fn to_response_json(&self, id: Value) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": self.rpc_code(),
                "message": format!("{}: {}", self.code(), self),
                "data": { "code": self.code(), "status": self.status().as_u16() }
            }
        })
    }
}

/// The status a session failure is answered with, on every door that
/// writes or reads sessions (admin API, webhooks).
pub fn session_status(e: &SessionError) -> StatusCode {
    match e {
        SessionError::Invalid(_) | SessionError::InvalidId => StatusCode::BAD_REQUEST,
        SessionError::TooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
        SessionError::NotFound => StatusCode::NOT_FOUND,
        SessionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The `id` of a JSON-RPC request body, `null` when it has none.
pub fn rpc_id(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null)
}
