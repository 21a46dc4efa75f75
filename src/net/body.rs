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
