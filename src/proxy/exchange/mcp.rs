//! The MCP phase, on routes that need it: the request's MCP view (its
//! headers must agree with its body), the route's tool policy (a denied
//! `tools/call` is answered here and never forwarded), and on the way back
//! the `tools/list` filter.

use std::sync::Arc;

use http::Response;

use super::Exchange;
use super::error::ProxyError;
use super::inbound::InBody;
use crate::mcp::{self, ToolPolicy};
use crate::net::head::Head;
use crate::net::response::Body;

impl Exchange<'_> {
    /// Reads the MCP view and applies the route's policy.
    pub(super) fn judge_mcp(&mut self, head: &dyn Head, body: &InBody) -> Result<(), ProxyError> {
        if !self.route.needs_mcp {
            return Ok(());
        }
        if self.timings.is_some() {
            let h = mcp::TraceHeaders::read(|n| head.header_str(n));
            self.mcp_headers = Some(Box::new(h));
        }
        let read = body.read().map(|b| &b[..]);
        let view = match mcp::view_with(|n| head.header_str(n), read) {
            Ok(view) => view,
            Err(e) => {
                // The refusal carries the request's id (read again: this
                // path is rare, the usual one reads the body once).
                if self.rpc_id.is_none() {
                    self.rpc_id = read.and_then(|b| mcp::from_body(b).id);
                }
                return Err(e.into());
            }
        };
        let policy = self.route.mcp.as_ref().filter(|p| !p.is_open());
        if policy.is_some() && view.unreadable {
            // What policy cannot read, a lenient server might still run.
            return Err(mcp::McpError::UnreadableBody.into());
        }
        let denied = policy.and_then(|p| p.denied(&view)).map(str::to_string);
        if policy.is_some() {
            self.legacy_stream = (head.query())
                .and_then(mcp::legacy::session_id)
                .map(str::to_string);
        }
        if self.rpc_id.is_none() {
            self.rpc_id = view.id.clone();
        }
        self.mcp = Some(view);
        match denied {
            Some(tool) => Err(ProxyError::ToolDenied(tool)),
            None => Ok(()),
        }
    }

    /// The tool policy the response is filtered by: on a route that
    /// restricts tools, for a request that lists them or one that carries
    /// no message (a GET stream: the legacy HTTP+SSE transport answers
    /// every request there, a `tools/list` among them).
    fn listing_policy(&self) -> Option<&Arc<ToolPolicy>> {
        match (&self.route.mcp, &self.mcp) {
            (Some(p), Some(view))
                if !p.is_open() && (view.has("tools/list") || view.method().is_none()) =>
            {
                Some(p)
            }
            _ => None,
        }
    }

    /// An error headgate answers a legacy HTTP+SSE POST goes down the
    /// client's event stream, where it waits for it, and the POST is
    /// answered 202 as the server would: `None` when the request is not
    /// such a POST or its stream is not open here.
    pub(super) fn answer_on_stream(&self, json: &[u8]) -> Option<Response<Body>> {
        let sid = self.legacy_stream.as_ref()?;
        let key = (
            self.route.name.clone(),
            self.session_key()?.to_string(),
            sid.clone(),
        );
        let json = std::str::from_utf8(json).ok()?;
        mcp::legacy::send(&key, json)
            .then(|| crate::net::response::status(http::StatusCode::ACCEPTED))
    }

    /// Whether [`Self::filter_response`] changes the response.
    pub(crate) fn filters_response(&self) -> bool {
        self.listing_policy().is_some()
    }

    /// The upstream's response, its `tools/list` results filtered when the
    /// route restricts tools.
    pub(crate) fn filter_response(
        &self,
        resp: Response<Body>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let policy = self.listing_policy().cloned();
        let owner = (self.session_key()).map(|k| (self.route.name.clone(), k.to_string()));
        async move {
            match policy {
                Some(p) => mcp::filter::tools_list(resp, p, owner).await,
                None => resp,
            }
        }
    }
}
