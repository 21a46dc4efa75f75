//! Spreads the public listener's connections over the workers evenly.
//!
//! The kernel picks a worker's `SO_REUSEPORT` socket by a hash of the
//! connection's addresses, so a few long-lived keep-alive connections (a
//! voice platform's) land on one worker as often as not while another
//! idles: 64 connections split anywhere from 28/36 to 32/32 from one run to
//! the next. Envoy's `exact_balance` exists for the same reason. A worker
//! that accepts a connection while another has fewer open hands it over
//! before a byte is read; after that a connection never moves, so its
//! requests still cross no thread.

use std::net::SocketAddr;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// A connection handed by the worker that accepted it to another.
pub(super) struct Handed {
    pub stream: std::net::TcpStream,
    pub remote: SocketAddr,
    /// Its share of `max_connections`.
    pub slot: OwnedSemaphorePermit,
    pub open: Open,
}

/// Counts a connection among its worker's open ones while it lives.
pub(super) struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every worker's open connections and inbox.
pub(super) struct Spread {
    /// `headgate_worker_connections`, one gauge per worker.
    open: Vec<Gauge>,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
}

impl Spread {
    /// A spread over one worker per gauge, and each worker's inbox.
    pub fn new(open: Vec<Gauge>) -> (Self, Vec<mpsc::UnboundedReceiver<Handed>>) {
        let (inboxes, receivers) = open.iter().map(|_| mpsc::unbounded_channel()).unzip();
        (Self { open, inboxes }, receivers)
    }

    /// Which worker serves a connection worker `own` (from 0) accepted:
    /// `own` unless another has fewer open. Counted there from now on.
    pub fn place(&self, own: usize) -> (usize, Open) {
        let mut to = own.min(self.open.len() - 1);
        let mut fewest = self.open[to].get();
        for (i, g) in self.open.iter().enumerate() {
            let n = g.get();
            if n < fewest {
                (to, fewest) = (i, n);
            }
        }
        let g = &self.open[to];
        g.inc();
        (to, Open(g.clone()))
    }

    /// Gives a connection to worker `to`; a worker that has stopped
    /// (shutting down) does not take it, and it is closed.
    pub fn hand(&self, to: usize, handed: Handed) {
        let _ = self.inboxes[to].send(handed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(n: usize) -> (Spread, Vec<mpsc::UnboundedReceiver<Handed>>) {
        Spread::new((0..n).map(|_| Gauge::default()).collect())
    }

    #[test]
    fn connections_one_worker_accepts_are_spread_over_all() {
        let (s, _inboxes) = spread(3);
        let mut kept = Vec::new();
        let mut served = [0; 3];
        for _ in 0..9 {
            let (to, open) = s.place(1);
            served[to] += 1;
            kept.push(open);
        }
        assert_eq!(served, [3, 3, 3]);
        // The accepting worker keeps a connection on a tie.
        assert_eq!(s.place(1).0, 1);
    }

    #[test]
    fn a_closed_connection_makes_room_on_its_worker() {
        let (s, _inboxes) = spread(2);
        let (a, first) = s.place(0);
        let (b, _second) = s.place(0);
        assert_eq!((a, b), (0, 1));
        drop(first);
        assert_eq!(s.open[0].get(), 0);
        assert_eq!(s.place(1).0, 0);
    }
}
