//! Counters and histograms written per thread, summed when read.
//!
//! Every request counts itself in a few metrics (its route's requests, its
//! upstream latency, its session lookup). One atomic word written by every
//! worker moves its cache line from core to core on nearly every request,
//! and a histogram behind a lock moves two (the lock with its sum, and the
//! bucket). Here each metric keeps one stripe per core, each stripe on
//! lines of its own: a worker writes only its own stripe, whose lines stay
//! in its core's cache, and a scrape adds the stripes up (the kernel's
//! per-CPU counters, Envoy's per-worker stats).
//!
//! Per-thread state: which stripe a thread writes ([`pin`]ned for the
//! public-listener workers, one each; any other thread takes one in turn).
//! Correctness does not rest on it: stripes are atomics, so threads that
//! share one still count exactly; only their lines move again.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Atomic;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A counter whose increments go to the calling thread's stripe.
pub type Counter = prometheus_client::metrics::counter::Counter<u64, Striped>;

thread_local! {
    /// This thread's stripe, once it has one.
    static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Writes this thread's increments to stripe `n` (modulo the stripes):
/// public-listener worker `n` (from 0) has a stripe no other worker
/// shares, as long as there are no more workers than cores.
pub fn pin(n: usize) {
    STRIPE.with(|s| s.set(Some(n & (stripes() - 1))));
}

/// Stripes per metric: the cores, rounded up to a power of two, at most
/// 16 (a worker per core is the default; past 16 a stripe's line is
/// shared by two workers, which only costs them its moves).
fn stripes() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.next_power_of_two().min(16)
    })
}

/// This thread's element of `stripes` (one per stripe).
fn mine<T>(stripes: &[T]) -> &T {
    // `stripe()` is below `stripes()`, the slices' length.
    &stripes[stripe().min(stripes.len() - 1)]
}

/// The stripe this thread writes, kept already masked to the number of
/// stripes (a power of two), so that a count costs no division.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    STRIPE.with(|s| match s.get() {
        Some(n) => n,
        None => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) & (stripes() - 1);
            s.set(Some(n));
            n
        }
    })
}

/// One stripe's counter, on a line of its own.
#[derive(Default)]
#[repr(align(64))]
struct Cell64(AtomicU64);

/// A counter's stripes (see the module docs).
pub struct Striped(Box<[Cell64]>);

impl Default for Striped {
    fn default() -> Self {
        Self((0..stripes()).map(|_| Cell64::default()).collect())
    }
}

impl Atomic<u64> for Striped {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    /// The stripe's old value, not the counter's.
    fn inc_by(&self, v: u64) -> u64 {
        mine(&self.0).0.fetch_add(v, Ordering::Relaxed)
    }

    fn get(&self) -> u64 {
        (self.0.iter()).fold(0, |n, c| n.wrapping_add(c.0.load(Ordering::Relaxed)))
    }
}

impl std::fmt::Debug for Striped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Striped({})", self.get())
    }
}

/// Buckets a histogram may have, the last (`+Inf`) included.
const MAX_BUCKETS: usize = 17;

/// One stripe of a histogram: its sum (an `f64`'s bits) and its buckets'
/// counts, lines of its own. Its count is its buckets' sum, so a scrape
/// during an observation never shows a count the buckets disagree with.
#[repr(align(64))]
struct Lane {
    sum: AtomicU64,
    buckets: [AtomicU64; MAX_BUCKETS],
}

/// A histogram whose observations go to the calling thread's stripe;
/// clones share it. Exposed as `prometheus_client`'s `Histogram` is.
#[derive(Clone)]
pub struct Histogram(Arc<Lanes>);

struct Lanes {
    /// Upper bounds, ascending; the last is `f64::MAX` (`+Inf`).
    bounds: Box<[f64]>,
    lanes: Box<[Lane]>,
}

impl Histogram {
    /// Buckets with these upper bounds (ascending), and `+Inf`; bounds
    /// past the first `MAX_BUCKETS - 1` are left out.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds = (bounds.into_iter().take(MAX_BUCKETS - 1))
            .chain([f64::MAX])
            .collect();
        let lane = || Lane {
            sum: AtomicU64::new(0f64.to_bits()),
            buckets: Default::default(),
        };
        let lanes = (0..stripes()).map(|_| lane()).collect();
        Self(Arc::new(Lanes { bounds, lanes }))
    }

    /// Counts `v` in the first bucket whose bound is at least `v`; a NaN
    /// or `+∞` has none and is not counted (`prometheus_client`'s
    /// adds it to the count and the sum, and to no bucket).
    pub fn observe(&self, v: f64) {
        let h = &*self.0;
        let Some(i) = h.bounds.iter().position(|b| *b >= v) else {
            return;
        };
        let lane = mine(&h.lanes);
        // Only this thread writes its stripe but for threads sharing it,
        // so the exchange almost always succeeds at once.
        let _ = (lane.sum).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
        lane.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The sum, the count and each bucket's own count (not cumulative),
    /// all stripes together.
    fn totals(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let h = &*self.0;
        let mut buckets: Vec<(f64, u64)> = h.bounds.iter().map(|b| (*b, 0)).collect();
        let mut sum = 0.0;
        for lane in &h.lanes {
            sum += f64::from_bits(lane.sum.load(Ordering::Relaxed));
            for ((_, n), c) in buckets.iter_mut().zip(&lane.buckets) {
                *n += c.load(Ordering::Relaxed);
            }
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        (sum, count, buckets)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.totals();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sum, count, _) = self.totals();
        write!(f, "Histogram(count {count}, sum {sum})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;
    use prometheus_client::registry::Registry;

    fn text(r: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, r).unwrap();
        out
    }

    #[test]
    fn threads_on_every_stripe_count_exactly() {
        let c = Counter::default();
        let h = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        std::thread::scope(|s| {
            for t in 0..6 {
                let (c, h) = (c.clone(), h.clone());
                s.spawn(move || {
                    pin(t);
                    for i in 0..10_000u32 {
                        c.inc();
                        h.observe(f64::from(i % 4) * 0.001);
                    }
                });
            }
        });
        assert_eq!(c.get(), 60_000);
        let (sum, count, buckets) = h.totals();
        assert_eq!(count, 60_000);
        assert_eq!(
            buckets.iter().map(|b| b.1).collect::<Vec<_>>(),
            [30_000, 15_000, 15_000, 0, 0]
        );
        assert!((sum - 90.0).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn a_nan_or_plus_infinity_is_not_counted() {
        let h = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        for v in [f64::NAN, f64::INFINITY, 0.002] {
            h.observe(v);
        }
        let (sum, count, _) = h.totals();
        assert_eq!((sum, count), (0.002, 1));
    }

    /// Scraped, it reads exactly as the crate's own histogram does.
    #[test]
    fn exposed_as_the_crates_histogram_is() {
        let bounds = || exponential_buckets(0.0005, 2.0, 16);
        let (ours, theirs) = (Histogram::new(bounds()), {
            prometheus_client::metrics::histogram::Histogram::new(bounds())
        });
        for v in [0.0001, 0.0005, 0.003, 0.2, 7.5, 40.0, 1e9] {
            ours.observe(v);
            theirs.observe(v);
        }
        let (mut a, mut b) = (Registry::default(), Registry::default());
        a.register("t", "h", ours);
        b.register("t", "h", theirs);
        assert_eq!(text(&a), text(&b));
        assert!(text(&a).contains("t_count 7\n"), "{}", text(&a));
    }
}
