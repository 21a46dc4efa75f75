//! Shutdown, as an idle connection waits for it. A connection races every
//! wait for the next request head against shutdown; polling the watch's
//! wait on each wake-up re-registered it with the watch's `Notify` on
//! every request. Here the wait is polled once,
//! then holds the task's waker until shutdown wakes it; until then a poll
//! only reads the watch's version.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

/// See the module docs. Serves the one task its connection runs in; a
/// poll from another task's context polls the wait again.
pub(super) struct Stop {
    /// Done when shutdown begins (or its sender is gone).
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Asked whether shutdown began, without polling `wait`.
    rx: watch::Receiver<bool>,
    /// The waker `wait` holds since it was last polled.
    armed: Option<Waker>,
}

impl Stop {
    pub fn new(shutdown: &watch::Receiver<bool>) -> Self {
        let mut rx = shutdown.clone();
        Self {
            wait: Box::pin(async move {
                let _ = rx.changed().await;
            }),
            rx: shutdown.clone(),
            armed: None,
        }
    }

    /// Whether shutdown has begun, read from the watch's version alone:
    /// no lock (a `borrow` takes the watch's read lock, an atomic count
    /// every worker's connections would bump once a request).
    pub fn begun(&self) -> bool {
        !matches!(self.rx.has_changed(), Ok(false))
    }

    /// Ready once shutdown has begun.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let holds = (self.armed.as_ref()).is_some_and(|w| w.will_wake(cx.waker()));
        if holds && matches!(self.rx.has_changed(), Ok(false)) {
            return Poll::Pending;
        }
        if !holds {
            self.armed = Some(cx.waker().clone());
        }
        self.wait.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_stop_polled_once_is_woken_by_shutdown_and_then_ready() {
        let (tx, rx) = watch::channel(false);
        let mut stop = Stop::new(&rx);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(stop.poll(&mut cx).is_pending());
        assert!(stop.poll(&mut cx).is_pending(), "asked, not polled again");
        assert!(!stop.begun());
        let _ = tx.send(true);
        assert!(stop.begun());
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the wait held the waker");
        assert!(stop.poll(&mut cx).is_ready());
    }

    #[test]
    fn a_stop_whose_sender_is_gone_is_ready() {
        let (tx, rx) = watch::channel(false);
        let mut stop = Stop::new(&rx);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(stop.poll(&mut cx).is_pending());
        drop(tx);
        assert!(stop.begun());
        assert!(stop.poll(&mut cx).is_ready());
    }
}
