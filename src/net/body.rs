//! A streaming body pass-through with an idle timeout: frames are forwarded
//! the moment they arrive (nothing is buffered, so server-sent events reach
//! the client event by event), and a body that stays silent for longer than
//! the idle timeout is ended with an error so that connection closes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The idle timeout fired.
#[derive(Debug, thiserror::Error)]
#[error("body idle for longer than the idle timeout")]
pub struct IdleTimeout;

pin_project! {
    /// See the module docs.
    pub struct Streamed<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: Sleep,
        idle_for: Duration,
        open: Option<Gauge>,
    }

    impl<B> PinnedDrop for Streamed<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(g) = this.project().open.take() {
                g.dec();
            }
        }
    }
}

impl<B> Streamed<B> {
    /// Wraps `inner`; `open` (if given) is incremented now and decremented
    /// when the body ends or is dropped.
    pub fn new(inner: B, idle_for: Duration, open: Option<Gauge>) -> Self {
        if let Some(g) = &open {
            g.inc();
        }
        Self {
            inner,
            idle: tokio::time::sleep(idle_for),
            idle_for,
            open,
        }
    }
}

impl<B> Body for Streamed<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.as_mut().reset(Instant::now() + *this.idle_for);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                if let Some(g) = this.open.take() {
                    g.dec();
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body failed mid-stream (malformed chunked framing,
/// a connection cut short): the client's fault, not the upstream's, so the
/// proxy answers 400 rather than 502.
#[derive(Debug, thiserror::Error)]
#[error("the request body could not be read: {0}")]
pub struct ClientBodyError(#[source] BoxError);

pin_project! {
    /// A request body on its way upstream whose errors are marked as the
    /// client's ([`ClientBodyError`]).
    pub struct FromClient<B> {
        #[pin]
        inner: B,
    }
}

impl<B> FromClient<B> {
    /// Wraps the client's body.
    pub fn new(inner: B) -> Self {
        Self { inner }
    }
}

impl<B> Body for FromClient<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map_err(|e| ClientBodyError(e.into()))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Bytes already read from a body, then the rest of it.
    pub struct Prefixed<B> {
        prefix: Option<Bytes>,
        #[pin]
        inner: B,
    }
}

impl<B> Prefixed<B> {
    /// `prefix`, then what `inner` still yields.
    pub fn new(prefix: Bytes, inner: B) -> Self {
        Self {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            inner,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Prefixed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + extra);
        if let Some(u) = inner.upper() {
            hint.set_upper(u + extra);
        }
        hint
    }
}
