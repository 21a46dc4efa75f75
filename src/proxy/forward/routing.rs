//! The config and route a connection's requests run under. A connection's
//! requests mostly go to one route: looking the config up in its watch
//! (a read lock and an `Arc` clone) and the route in the config's map (a
//! hash of the name) for each request is work a connection can keep.
//! Here the connection keeps both and asks the watch only
//! whether the config changed (its version, one atomic load): a request
//! still runs under the config current when its head was read.

use std::sync::Arc;

use tokio::sync::watch;

use super::{MAX_HEAD, Next, Req, ReqHead};
use crate::config::{Config, InboundAuth, Route};
use crate::net::h1::{self, Framing};
use crate::proxy::doors::route::split_route;
use crate::proxy::exchange::RPC_PEEK;

/// See the module docs.
pub(super) struct Routing {
    rx: watch::Receiver<Arc<Config>>,
    cfg: Arc<Config>,
    /// The route the last request went to, under `cfg`.
    last: Option<Arc<Route>>,
}

impl Routing {
    pub fn new(config: &watch::Receiver<Arc<Config>>) -> Self {
        let mut rx = config.clone();
        let cfg = rx.borrow_and_update().clone();
        Self {
            rx,
            cfg,
            last: None,
        }
    }

    /// The current config.
    pub fn config(&mut self) -> &Arc<Config> {
        if !matches!(self.rx.has_changed(), Ok(false)) {
            self.cfg = self.rx.borrow_and_update().clone();
            self.last = None;
        }
        &self.cfg
    }

    /// The config and the route [`decide`] chose last, borrowed: a
    /// request clones no `Arc` of either (both are shared by every worker,
    /// and a count bumped on every request moves their line between
    /// cores).
    pub fn chosen(&self) -> Option<(&Config, &Route)> {
        Some((&self.cfg, self.last.as_deref()?))
    }

    /// Route `name` of the config [`Routing::config`] returned last.
    pub fn route(&mut self, name: &str) -> Option<&Arc<Route>> {
        if (self.last.as_ref()).is_none_or(|r| *r.name != *name) {
            self.last = Some(self.cfg.route(name)?.clone());
        }
        self.last.as_ref()
    }
}

/// Parses the head at the start of `buf` and decides who serves it.
pub(super) fn decide(buf: &[u8], routing: &mut Routing) -> Next {
    // HTTP/2 with prior knowledge (h2c) is hyper's.
    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
    if PREFACE.starts_with(&buf[..buf.len().min(PREFACE.len())]) {
        return if buf.len() >= PREFACE.len() {
            Next::HandOver
        } else {
            Next::Incomplete
        };
    }
    let mut storage = h1::storage();
    let head = match h1::parse_request(buf, &mut storage, MAX_HEAD) {
        Ok(Some(h)) => h,
        Ok(None) => return Next::Incomplete,
        Err(r) => return Next::Refuse(r),
    };
    let body = match head.framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => return Next::HandOver,
    };
    if head.minor == 0 || head.upgrade || head.expects_continue || !head.target.starts_with('/') {
        return Next::HandOver;
    }
    let trace_context = routing.config().server.trace_context;
    let t = head.target;
    let path = &t[..t.bytes().position(|b| b == b'?').unwrap_or(t.len())];
    let (name, rest) = split_route(path);
    let Some(route) = routing.route(name).filter(|r| serves(r, body)) else {
        return Next::HandOver;
    };
    let parsed = match reads_raw(route, trace_context) {
        true => h1::Spans::of(buf, &head).map(ReqHead::Raw),
        false => h1::to_parts(buf, &head).map(|p| ReqHead::Map(Box::new(p))),
    };
    // `rest` ends the path (and may be an empty literal, not in `buf`).
    let rest = h1::span_in(buf, path.as_bytes()).map(|p| p.end - rest.len()..p.end);
    let (Some(parsed), Some(rest)) = (parsed, rest) else {
        return Next::Refuse(h1::Refused {
            status: 400,
            reason: "malformed request head",
        });
    };
    let req = Req {
        head: parsed,
        head_request: head.method == "HEAD",
        rest,
        head_len: head.len,
        body,
        keep_alive: head.keep_alive,
    };
    Next::Serve(req)
}

/// Whether the core serves a request with a body of `body` bytes on
/// `route`: an `http://` or `https://` upstream, and not the debug echo. A route that
/// reads bodies (a platform's signature, variables or a key from the
/// body, a retry after a 401) gets its body read whole here, as on the
/// hyper path; one that only peeks (JSON-RPC ids, MCP calls) is served
/// when the body is within what it peeks at, so no more is held.
fn serves(route: &Route, body: u64) -> bool {
    route.upstream.authority().is_some()
        && !route.echo
        && (route.reads_body() || !route.peeks_body() || body <= RPC_PEEK as u64)
}

/// Whether the phases of `route` read its heads raw ([`ReqHead::Raw`]):
/// they read nothing a `HeaderMap` is needed for. A platform's signature
/// check reads hyper's map, and trace context writes into one.
fn reads_raw(route: &Route, trace_context: bool) -> bool {
    !matches!(route.inbound_auth, InboundAuth::Platform { .. }) && !trace_context
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upstream: &str) -> Arc<Config> {
        let route = format!("upstream = \"{upstream}\"\ninbound_auth = \"none\"\n");
        let cfg = crate::config::check_texts("", &[("a", &route), ("b", &route)]);
        Arc::new(cfg.unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn a_connection_sees_a_new_config_at_its_next_request() {
        let (tx, rx) = watch::channel(config("http://127.0.0.1:1/"));
        let mut r = Routing::new(&rx);
        r.config();
        let a = r.route("a").cloned();
        assert!(a.is_some_and(|a| Arc::ptr_eq(&a, &rx.borrow().routes["a"])));
        r.config();
        assert!(r.route("b").is_some_and(|b| b.name == "b"), "another route");
        assert!(r.route("c").is_none());
        let _ = tx.send(config("http://127.0.0.1:2/"));
        let cfg = r.config().clone();
        assert!(Arc::ptr_eq(&cfg, &rx.borrow()), "the new config");
        let b = r.route("b").cloned();
        assert!(
            b.is_some_and(|b| Arc::ptr_eq(&b, &cfg.routes["b"])),
            "its route"
        );
    }
}
