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
        let view = mcp::view_with(|n| head.header_str(n), body.read().map(|b| &b[..]))?;
        let policy = self.route.mcp.as_ref().filter(|p| !p.is_open());
        if policy.is_some() && view.unreadable {
            // What policy cannot read, a lenient server might still run.
            return Err(mcp::McpError::UnreadableBody.into());
        }
        let denied = policy.and_then(|p| p.denied(&view)).map(str::to_string);
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
    /// restricts tools, for a request that lists them.
    fn listing_policy(&self) -> Option<&Arc<ToolPolicy>> {
        match (&self.route.mcp, &self.mcp) {
            (Some(p), Some(view)) if !p.is_open() && view.has("tools/list") => Some(p),
            _ => None,
        }
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
        async move {
            match policy {
                Some(p) => mcp::filter::tools_list(resp, p).await,
                None => resp,
            }
        }
    }
}
