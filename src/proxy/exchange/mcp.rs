//! The MCP phase, on routes that need it: the request's MCP view (its
//! headers must agree with its body), the route's tool policy (a denied
//! `tools/call` is answered here and never forwarded), and on the way back
//! the `tools/list` filter.

use std::sync::Arc;

use http::Response;

use super::Exchange;
use super::error::ProxyError;
use super::inbound::InBody;
use crate::mcp::pins::{PinMode, Standing};
use crate::mcp::{self, ToolPolicy};
use crate::net::head::Head;
use crate::net::response::Body;

impl Exchange<'_> {
    /// Reads the MCP view and applies the route's policy.
    pub(super) fn judge_mcp(&mut self, head: &dyn Head, body: &InBody) -> Result<(), ProxyError> {
        if !self.route.compiled.needs_mcp {
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
        if (policy.is_some() || self.route.governance.is_some()) && view.unreadable {
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

    /// Each `tools/call` of the request judged against the route's pinned
    /// tool definitions (`pin_tools`): a changed or new tool is refused
    /// under `"hold"` and reported under `"warn"`. The route's table is
    /// read from the store when older than [`mcp::pins::REFRESH`]; a
    /// store that cannot be reached leaves the last table read in force.
    pub(super) async fn judge_pins(&mut self) -> Result<(), ProxyError> {
        let (Some(g), Some(view)) = (&self.route.governance, &self.mcp) else {
            return Ok(());
        };
        let mode = g.pin_tools;
        if mode == PinMode::Off || !view.has("tools/call") {
            return Ok(());
        }
        let book = self.app.pins.get(self.route.name);
        if let Err(e) = book.refresh().await {
            tracing::warn!(code = e.code(), route = %self.route.name, "pinned tool definitions could not be read; the last ones read apply: {e}");
        }
        let calls = view.calls.iter().filter(|c| c.method == "tools/call");
        for tool in calls.map(|c| c.tool.as_deref().unwrap_or("")) {
            if book.call(tool) == Standing::Pinned {
                continue;
            }
            if mode == PinMode::Hold {
                return Err(ProxyError::ToolChanged(crate::audit::clip(tool)));
            }
            self.warning = Some("mcp.tool_changed");
        }
        Ok(())
    }

    /// After the session is found: each `tools/call` of the request counted
    /// against its budget (`[mcp] budgets`), for the session, across
    /// replicas with the Redis store; the call over budget is answered
    /// here and never forwarded. Costs a route without budgets nothing.
    pub(super) async fn spend_budgets(
        &self,
        key: &str,
        session: Option<&Arc<crate::session::Session>>,
    ) -> Result<(), ProxyError> {
        let (Some(g), Some(view)) = (&self.route.governance, &self.mcp) else {
            return Ok(());
        };
        if g.budgets.is_empty() {
            return Ok(());
        }
        let ttl = session.map_or(self.cfg.server.ttl, |s| s.ttl_left());
        let calls = view.calls.iter().filter(|c| c.method == "tools/call");
        for tool in calls.map(|c| c.tool.as_deref().unwrap_or("")) {
            let Some(b) = g.budget(tool) else { continue };
            let spent = (self.app.store.spend(key, &b.glob, ttl).await)
                .map_err(|_| ProxyError::StoreUnavailable)?;
            if spent > b.limit {
                let route = crate::metrics::RouteLabel {
                    route: self.route.name.to_string(),
                };
                self.app
                    .metrics
                    .mcp_budget_exceeded
                    .get_or_create(&route)
                    .inc();
                let tool = crate::audit::clip(tool);
                return Err(ProxyError::BudgetExceeded {
                    tool,
                    limit: b.limit,
                });
            }
        }
        Ok(())
    }

    /// Whether the response may carry a `tools/list` result: the request
    /// lists tools, or carries no message (a GET stream: the legacy
    /// HTTP+SSE transport answers every request there).
    fn lists_tools(&self) -> bool {
        (self.mcp.as_ref()).is_some_and(|v| v.has("tools/list") || v.method().is_none())
    }

    /// The tool policy the response is filtered by, on a route that
    /// restricts tools.
    fn listing_policy(&self) -> Option<&Arc<ToolPolicy>> {
        let p = self.route.mcp.as_ref().filter(|p| !p.is_open())?;
        self.lists_tools().then_some(p)
    }

    /// The route's pins the response's tool lists are judged by.
    fn listing_pins(&self) -> Option<(Arc<mcp::pins::Book>, PinMode)> {
        let mode = self.route.governance.as_ref()?.pin_tools;
        let judged = mode != PinMode::Off && self.lists_tools();
        judged.then(|| (self.app.pins.get(self.route.name), mode))
    }

    /// An error headgate answers a legacy HTTP+SSE POST goes down the
    /// client's event stream, where it waits for it, and the POST is
    /// answered 202 as the server would: `None` when the request is not
    /// such a POST or its stream is not open here.
    pub(super) fn answer_on_stream(&self, json: &[u8]) -> Option<Response<Body>> {
        let sid = self.legacy_stream.as_ref()?;
        let key = (
            self.route.name,
            self.session_key()?.to_string(),
            sid.clone(),
        );
        let json = std::str::from_utf8(json).ok()?;
        mcp::legacy::send(&key, json)
            .then(|| crate::net::response::status(http::StatusCode::ACCEPTED))
    }

    /// The `max_result_bytes` the response's `tools/call` results are cut
    /// to, for a request that calls a tool.
    fn result_cap(&self) -> Option<usize> {
        let calls_a_tool = self.mcp.as_ref().is_some_and(|v| v.has("tools/call"));
        let cap = self.route.governance.as_ref()?.max_result_bytes;
        cap.filter(|_| calls_a_tool)
    }

    /// Whether [`Self::filter_response`] changes the response.
    pub(crate) fn filters_response(&self) -> bool {
        self.listing_policy().is_some()
            || self.result_cap().is_some()
            || self.listing_pins().is_some()
    }

    /// The upstream's response, its `tools/list` results filtered when the
    /// route restricts or pins tools and its `tools/call` results cut to
    /// `max_result_bytes`.
    pub(crate) fn filter_response(
        &self,
        resp: Response<Body>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let max_result_bytes = self.result_cap();
        let route = crate::metrics::RouteLabel {
            route: self.route.name.to_string(),
        };
        let rules = mcp::filter::Rules {
            policy: self.listing_policy().cloned(),
            pins: self.listing_pins(),
            max_result_bytes,
            cut: max_result_bytes.map(|_| {
                self.app
                    .metrics
                    .mcp_results_cut
                    .get_or_create(&route)
                    .clone()
            }),
        };
        let owner = (self.session_key()).map(|k| (self.route.name, k.to_string()));
        let rewrites =
            rules.policy.is_some() || rules.max_result_bytes.is_some() || rules.pins.is_some();
        async move {
            if let Some((book, _)) = &rules.pins
                && let Err(e) = book.refresh().await
            {
                tracing::warn!(
                    code = e.code(),
                    "pinned tool definitions could not be read; the last ones read apply: {e}"
                );
            }
            match rewrites {
                true => mcp::filter::rewrite(resp, Arc::new(rules), owner).await,
                false => resp,
            }
        }
    }
}
