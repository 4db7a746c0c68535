//! What chittyd counts, as one snapshot type: each figure with its name, help text, kind and
//! value. The hub, the edge and the audit writer each add their own figures to a [`Snapshot`];
//! the admin `Stats` call, the Prometheus exposition and `chittyctl stats` all render that one
//! list, so every counter is named in exactly one place (where it is kept).
//!
//! This module is below everything else (it imports nothing from chitty), so any layer can
//! record into it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Whether a figure only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (until a restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One figure. `name` is stable: it is the key in `chittyctl stats --json`, and with a
/// `chitty_` prefix the Prometheus metric name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// Snake case; counters end in `_total`.
    pub name: &'static str,
    /// One sentence for people.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The value when the snapshot was taken.
    pub value: u64,
}

/// A histogram's state when the snapshot was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// As for [`Metric::name`].
    pub name: &'static str,
    /// One sentence for people.
    pub help: &'static str,
    /// Upper bounds in seconds with the cumulative count at or below each (the last is +Inf).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, in seconds.
    pub sum: f64,
}

/// Every figure at one moment, in the order they were added.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Counters and gauges.
    pub metrics: Vec<Metric>,
    /// Histograms (Prometheus only; they have no single value).
    pub histograms: Vec<HistogramSample>,
}

impl Snapshot {
    /// Adds a counter.
    pub fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.push(name, help, Kind::Counter, value);
    }

    /// Adds a gauge.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.push(name, help, Kind::Gauge, value);
    }

    fn push(&mut self, name: &'static str, help: &'static str, kind: Kind, value: u64) {
        self.metrics.push(Metric {
            name,
            help,
            kind,
            value,
        });
    }

    /// The value of the figure called `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// Upper bounds (seconds) of the histogram's buckets: 1 µs to 100 ms.
const BUCKETS: [f64; 11] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1,
];

/// A fixed-bucket histogram updated with relaxed atomics: cheap enough for the hot path.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative), plus one for +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Its state now, under `name`.
    pub fn sample(&self, name: &'static str, help: &'static str) -> HistogramSample {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, bound) in BUCKETS.iter().chain([&f64::INFINITY]).enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        HistogramSample {
            name,
            help,
            buckets,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_cumulatively() {
        let h = Histogram::default();
        h.observe(Duration::from_nanos(500));
        h.observe(Duration::from_micros(7));
        h.observe(Duration::from_secs(1));
        let s = h.sample("x_seconds", "x");
        assert_eq!(s.buckets[0], (1e-6, 1));
        assert_eq!(s.buckets[2], (1e-5, 2));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 3)));
        assert!((s.sum - 1.0000075).abs() < 1e-9, "{}", s.sum);
    }
}
