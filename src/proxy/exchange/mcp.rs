//! The MCP phase, on routes that need it: the request's MCP view (its
//! headers must agree with its body), the route's tool policy (a denied
//! `tools/call` is answered here and never forwarded), and on the way back
//! the `tools/list` filter.

use http::Response;
use http::request::Parts;

use super::Exchange;
use super::error::ProxyError;
use super::inbound::InBody;
use crate::mcp;
use crate::net::response::Body;

impl Exchange<'_> {
    /// Reads the MCP view and applies the route's policy.
    pub(super) fn judge_mcp(&mut self, parts: &Parts, body: &InBody) -> Result<(), ProxyError> {
        if !self.route.needs_mcp {
            return Ok(());
        }
        let view = mcp::view(&parts.headers, body.read().map(|b| &b[..]))?;
        let denied = (self.route.mcp.as_ref())
            .and_then(|p| p.denied(&view))
            .map(str::to_string);
        if self.rpc_id.is_none() {
            self.rpc_id = view.id.clone();
        }
        self.mcp = Some(view);
        match denied {
            Some(tool) => Err(ProxyError::ToolDenied(tool)),
            None => Ok(()),
        }
    }

    /// The upstream's response, its `tools/list` results filtered when the
    /// route restricts tools.
    pub(super) fn filter_response(
        &self,
        resp: Response<Body>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let policy = match (&self.route.mcp, &self.mcp) {
            (Some(p), Some(view)) if !p.is_open() && view.has("tools/list") => Some(p.clone()),
            _ => None,
        };
        async move {
            match policy {
                Some(p) => mcp::filter::tools_list(resp, p).await,
                None => resp,
            }
        }
    }
}
