//! The transports a request's exchange runs over, pingora's `Session`
//! shape: how the request is read and its upstream exchange carried,
//! never which phase comes next. [`Exchange::run`] is the one sequencer
//! of the phases over either: the forwarding core
//! ([`crate::proxy::forward`]: HTTP/1.1, cleartext or TLS, to pooled
//! upstream connections) and hyper ([`HyperTransport`]: HTTP/2, h2c,
//! upgrades and what the core hands over, through hyper's client).

use http::request::Parts;
use http::{HeaderMap, Request, Response, Uri};
use hyper::body::Incoming;

use super::{Exchange, Found, InBody, ProxyError, inbound, outbound};
use crate::config::Route;
use crate::net::head::AnyHead;
use crate::net::response::Body;

/// What a transport's send came to.
pub(crate) enum Sent<A> {
    /// The client has (or is given) this answer.
    Answered(A),
    /// The upstream answered 401 and the request's obtained tokens were
    /// dropped ([`Exchange::held_back`]): nothing went to the client, and
    /// the request is sent once more with fresh ones.
    Refused,
}

/// One request's way in and out; see the module docs. Every method is a
/// step [`Exchange::run`] calls in its order.
pub(crate) trait Transport {
    /// What the client was answered with.
    type Answer;
    /// The inbound phase's read: the body, as far as the route reads it
    /// (its head already [`screen`](super::screen)ed).
    fn admit(&mut self, route: &Route) -> impl Future<Output = Result<InBody, ProxyError>> + Send;

    /// The request head and the path after the route's name.
    fn head(&self) -> (AnyHead<'_>, &str);

    /// The outbound phase: writes the upstream request's head, its header
    /// lines by [`outbound::put_headers`] with the call's rendered values.
    fn compose(&mut self, x: &mut Exchange<'_>, call: &Found) -> Result<(), ProxyError>;

    /// Keeps the request's head to send it once more after a 401 (its
    /// whole body the exchange keeps).
    fn keep(&mut self);

    /// The send phase: `body` (the client's, or the kept one on the
    /// retry) after the composed head, and the answer relayed. With
    /// `retry`, a 401 that dropped the tokens is held back
    /// ([`Sent::Refused`]).
    fn send(
        &mut self,
        x: &mut Exchange<'_>,
        call: &Found,
        body: InBody,
        retry: bool,
    ) -> impl Future<Output = Result<Sent<Self::Answer>, ProxyError>> + Send;

    /// Back to the kept head, for the second sending.
    fn rewind(&mut self) -> Result<(), ProxyError>;
}

/// A request hyper read, sent through hyper's client (or the direct pool
/// of cleartext upstreams) and answered as a `Response` hyper writes.
pub(crate) struct HyperTransport {
    parts: Parts,
    incoming: Option<Incoming>,
    rest: String,
    /// The upstream request's URI and headers, once composed.
    up: Option<(Uri, HeaderMap)>,
}

impl HyperTransport {
    /// For `req`, whose path after the route's name is `rest`.
    pub fn new(req: Request<Incoming>, rest: String) -> Self {
        let (parts, incoming) = req.into_parts();
        Self {
            parts,
            incoming: Some(incoming),
            rest,
            up: None,
        }
    }
}

impl Transport for HyperTransport {
    type Answer = Response<Body>;

    async fn admit(&mut self, route: &Route) -> Result<InBody, ProxyError> {
        let incoming = self
            .incoming
            .take()
            .ok_or(ProxyError::UpstreamUnreachable)?;
        inbound::admit(route, incoming).await
    }

    fn head(&self) -> (AnyHead<'_>, &str) {
        (AnyHead::Parts(&self.parts), &self.rest)
    }

    fn compose(&mut self, x: &mut Exchange<'_>, call: &Found) -> Result<(), ProxyError> {
        let absolute = outbound::direct_authority(x.route()).is_none();
        self.up = Some(x.upstream_map(&self.parts, &self.rest, call, absolute)?);
        Ok(())
    }

    /// hyper's head is never consumed: nothing to copy.
    fn keep(&mut self) {}

    async fn send(
        &mut self,
        x: &mut Exchange<'_>,
        call: &Found,
        body: InBody,
        retry: bool,
    ) -> Result<Sent<Response<Body>>, ProxyError> {
        let route = x.route();
        let (uri, headers) = self.up.take().ok_or(ProxyError::UpstreamUnreachable)?;
        let body = body.into_upstream(route.body_limit);
        let up = outbound::request(self.parts.method.clone(), uri, headers, body);
        if route.echo {
            return Ok(Sent::Answered(crate::proxy::doors::echo::answer(&up)));
        }
        let direct = outbound::direct_authority(route);
        let resp = x.send(direct, up, call).await?;
        if x.held_back(resp.status(), retry) {
            return Ok(Sent::Refused);
        }
        Ok(Sent::Answered(x.filter_response(resp).await))
    }

    fn rewind(&mut self) -> Result<(), ProxyError> {
        Ok(())
    }
}
