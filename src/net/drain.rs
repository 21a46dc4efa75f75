//! Event streams during a graceful drain. An SSE or `subscriptions/listen`
//! stream never ends by itself: left alone, the drain would wait out its
//! whole deadline for it. Once shutdown begins, a stream may go on while
//! it delivers, and ends once it has been idle for [`STREAM_GRACE`] (the
//! client reconnects, to another replica). Both the forwarding core's
//! relay and hyper's path follow this rule.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, header};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::watch;

use super::response::Body;

/// How long an event stream may wait for its next bytes once shutdown has
/// begun.
pub const STREAM_GRACE: Duration = Duration::from_secs(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// `resp` as it is, or, when it is an event stream, with a body that ends
/// once shutdown (`stop` turning true) has begun and the stream is idle
/// for [`STREAM_GRACE`].
pub fn ends_when_idle_at_shutdown(
    resp: Response<Body>,
    stop: &watch::Receiver<bool>,
) -> Response<Body> {
    let is_stream = (resp.headers().get(header::CONTENT_TYPE))
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return resp;
    }
    let mut rx = stop.clone();
    let stop: Stop = Box::pin(async move {
        let _ = rx.wait_for(|s| *s).await;
    });
    resp.map(|inner| {
        Draining {
            inner,
            // Behind a lock only to make the body `Sync`: polled by one task.
            stop: Mutex::new(Some(stop)),
            idle: None,
        }
        .boxed()
    })
}

struct Draining {
    inner: Body,
    stop: Mutex<Option<Stop>>,
    /// Set once shutdown has begun: when the stream's wait runs out.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Draining {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.idle.is_none() {
            let begun = match self.stop.get_mut() {
                Ok(Some(stop)) => stop.as_mut().poll(cx).is_ready(),
                _ => false,
            };
            if begun {
                self.idle = Some(Box::pin(tokio::time::sleep(STREAM_GRACE)));
            }
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(idle) = &mut self.idle {
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + STREAM_GRACE);
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let ran_out =
                    (self.idle.as_mut()).is_some_and(|idle| idle.as_mut().poll(cx).is_ready());
                if ran_out {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }
        }
    }
}
