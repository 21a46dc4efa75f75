//! One timer per connection. Every wait on a connection (the next request
//! head, the upstream's response head, a body read) has a deadline; a
//! `Sleep` of its own per wait was registered in tokio's timer wheel and
//! removed again on every request. Here one `Sleep` serves them all: a wait only records its
//! deadline, and the timer moves only when it fires before the deadline
//! (it is then set to it) or when a wait needs an earlier one than the
//! timer is set to. A keep-alive connection moves it about once per
//! timeout period, not once per request.
//!
//! Nor is the timer polled by every wait: once polled it holds the task's
//! waker until it fires, and its firing wakes the task; until then a wait
//! only asks whether it has fired (polling it anyway re-registered the
//! waker and took from the task's budget on every wait). A `Clock` serves the one task its connection runs in; a
//! wait from another task's context polls the timer again.

use std::pin::Pin;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// See the module docs.
pub(super) struct Clock {
    timer: Pin<Box<Sleep>>,
    /// The waker the timer holds: the one it was last polled with, until
    /// it fires (then `is_elapsed` says so) or is moved on after firing.
    armed: Option<Waker>,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            armed: None,
        }
    }

    /// `fut`'s output, or `None` if `after` passes first.
    pub async fn within<F: Future>(&mut self, after: Duration, fut: F) -> Option<F::Output> {
        self.until(Instant::now() + after, fut).await
    }

    /// `fut`'s output, or `None` if `deadline` passes first.
    pub async fn until<F: Future>(&mut self, deadline: Instant, fut: F) -> Option<F::Output> {
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
            // Polled again before the wait trusts it (rare: the timer
            // moves earlier about once per timeout period).
            self.armed = None;
        }
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            loop {
                let holds = (self.armed.as_ref()).is_some_and(|w| w.will_wake(cx.waker()));
                if holds && !self.timer.is_elapsed() {
                    return Poll::Pending;
                }
                if !holds {
                    self.armed = Some(cx.waker().clone());
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(None),
                    // Set for an earlier wait: on to this one's deadline,
                    // and polled again so it holds the waker (its firing
                    // gave the waker up).
                    Poll::Ready(()) => {
                        self.timer.as_mut().reset(deadline);
                        self.armed = None;
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_wait_ends_at_its_own_deadline() {
        let mut clock = Clock::new();
        let never = std::future::pending::<()>;
        // A short wait, then a long one: the timer fires early for the
        // second and is moved on, not taken for its end.
        let t = Instant::now();
        assert_eq!(clock.within(Duration::from_secs(1), never()).await, None);
        assert_eq!(t.elapsed(), Duration::from_secs(1));
        let t = Instant::now();
        clock.timer.as_mut().reset(t + Duration::from_secs(2));
        assert_eq!(clock.within(Duration::from_secs(5), never()).await, None);
        assert_eq!(t.elapsed(), Duration::from_secs(5));
        // A shorter wait than the timer is set to moves it earlier.
        clock
            .timer
            .as_mut()
            .reset(Instant::now() + Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(clock.within(Duration::from_secs(3), never()).await, None);
        assert_eq!(t.elapsed(), Duration::from_secs(3));
        // What completes first is returned, and the timer stays set.
        let done = clock.within(Duration::from_secs(3), async { 7 }).await;
        assert_eq!(done, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_does_not_poll_the_timer_still_ends_at_its_deadline() {
        let mut clock = Clock::new();
        let t = Instant::now();
        let deadline = t + Duration::from_secs(10);
        // The first wait polls the timer (set for 10 s) and ends early.
        let slept = clock.until(deadline, tokio::time::sleep(Duration::from_secs(1)));
        assert_eq!(slept.await, Some(()));
        // The second, for the same deadline, only asks whether it fired:
        // the timer must still wake the task at 10 s.
        let never = clock.until(deadline, std::future::pending::<()>());
        let ended = tokio::time::timeout(Duration::from_secs(60), never).await;
        assert_eq!(ended, Ok(None), "the armed timer never woke the wait");
        assert_eq!(t.elapsed(), Duration::from_secs(10));
        // Fired and taken: the next wait arms it again.
        let never = clock.within(Duration::from_secs(2), std::future::pending::<()>());
        let ended = tokio::time::timeout(Duration::from_secs(60), never).await;
        assert_eq!(ended, Ok(None));
        assert_eq!(t.elapsed(), Duration::from_secs(12));
    }
}
