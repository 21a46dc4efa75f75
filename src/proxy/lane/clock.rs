//! One timer per connection. Every wait on a connection (the next request
//! head, the upstream's response head, a body read) has a deadline; a
//! `Sleep` of its own per wait was registered in tokio's timer wheel and
//! removed again on every request, about 1.5k instructions a request
//! (callgrind). Here one `Sleep` serves them all: a wait only records its
//! deadline, and the timer moves only when it fires before the deadline
//! (it is then set to it) or when a wait needs an earlier one than the
//! timer is set to. A keep-alive connection moves it about once per
//! timeout period, not once per request.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// See the module docs.
pub(super) struct Clock {
    timer: Pin<Box<Sleep>>,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
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
        }
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = &mut self.timer => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    // Set for an earlier wait: on to this one's deadline.
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
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
}
