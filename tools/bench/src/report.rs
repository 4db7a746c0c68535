//! The bench's report: figures for people, and the same as JSON for scripts.

use super::{BenchArgs, Pattern, Seen};
use crate::conn::BenchTransport;
use chitty::os::ProcSample;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::io::{self, Write};
use std::time::Duration;

/// The server's /proc samples: before connecting, once connected, at send start and end, and
/// after everybody left.
pub struct ServerSamples {
    pub before: ProcSample,
    pub connected: ProcSample,
    pub start: ProcSample,
    pub end: ProcSample,
    pub after: ProcSample,
}

pub struct Inputs<'a> {
    pub args: &'a BenchArgs,
    pub sent: u64,
    /// Direct messages sent to each target's participants.
    pub sent_to: Vec<u64>,
    pub expected: u64,
    pub elapsed: Duration,
    /// What each receiver saw, in participant order.
    pub seen: &'a [Seen],
    /// Whether each receiver's sequence of broadcasts differed from the others'.
    pub mismatched: &'a [bool],
    pub connect_us: &'a Histogram<u64>,
    pub connect_time: Duration,
    pub generator_cpu: Duration,
    /// The generator's CPU while connecting and catching up with the join notices.
    pub connect_generator_cpu: Duration,
    pub server: Option<ServerSamples>,
    pub cut_off: u64,
}

/// Percentiles of a histogram.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>, scale: f64) -> Self {
        let q = |q: f64| h.value_at_quantile(q) as f64 / scale;
        Percentiles {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / scale,
        }
    }
}

/// The server's side of the run.
#[derive(Debug, Serialize)]
pub struct ServerFigures {
    /// While connecting and catching up with the join notices (a join storm's cost).
    connect_cpu_seconds: f64,
    cpu_seconds: f64,
    cpu_per_delivery_us: f64,
    rss_before_kib: u64,
    rss_connected_kib: u64,
    rss_after_kib: u64,
    rss_per_connection_kib: f64,
}

/// One target's receivers: what they got and whether they agree with everybody else.
#[derive(Debug, Serialize)]
pub struct TargetFigures {
    /// The address, as given.
    target: String,
    receivers: u64,
    deliveries: u64,
    expected_deliveries: u64,
    losses: u64,
    /// Lamport times that did not increase, plus `lamport_disagreements`.
    ordering_anomalies: u64,
    /// Broadcasts whose Lamport time here differed from the one another receiver saw first.
    lamport_disagreements: u64,
    /// Receivers whose sequence of broadcasts differed from most receivers'.
    order_mismatches: u64,
    receiver_errors: u64,
}

impl TargetFigures {
    /// Target `t`'s figures: its receivers are participants `t`, `t + n`, `t + 2n`, ...
    fn of(i: &Inputs<'_>, t: usize) -> TargetFigures {
        let n = i.args.targets.len().max(1);
        let receivers = (0..i.args.clients).filter(|k| k % n == t).count() as u64;
        let here = || {
            i.seen
                .iter()
                .zip(i.mismatched)
                .filter(move |(s, _)| s.target == t)
        };
        let deliveries = here().map(|(s, _)| s.received).sum();
        let expected_deliveries = match i.args.pattern {
            Pattern::Broadcast => i.sent * receivers,
            Pattern::Direct => i.sent_to.get(t).copied().unwrap_or(0),
        };
        let lamport_disagreements = here().map(|(s, _)| s.disagreements).sum();
        TargetFigures {
            target: i.args.targets[t].clone(),
            receivers,
            deliveries,
            expected_deliveries,
            losses: expected_deliveries.saturating_sub(deliveries),
            ordering_anomalies: here().map(|(s, _)| s.anomalies).sum::<u64>()
                + lamport_disagreements,
            lamport_disagreements,
            order_mismatches: here().filter(|(_, m)| **m).count() as u64,
            receiver_errors: here().filter(|(s, _)| s.error.is_some()).count() as u64,
        }
    }
}

/// Everything the bench measured.
#[derive(Debug, Serialize)]
pub struct Report {
    transport: BenchTransport,
    pattern: Pattern,
    clients: usize,
    senders: usize,
    stalled: usize,
    rate_per_sender: u64,
    window_per_sender: u64,
    /// What paced senders should have sent in the time given (absent when not paced).
    planned_messages: Option<u64>,
    size: usize,
    seconds: f64,
    messages_sent: u64,
    deliveries: u64,
    expected_deliveries: u64,
    losses: u64,
    deliveries_per_second: f64,
    latency_ms: Percentiles,
    /// Lamport times that did not increase at a receiver, plus `lamport_disagreements`.
    ordering_anomalies: u64,
    /// Broadcasts whose Lamport time at a receiver differed from the one another receiver saw
    /// first on it (counted at each receiver that differed).
    lamport_disagreements: u64,
    /// Receivers whose sequence of broadcasts (times and content) differed from most
    /// receivers' at some count they share.
    order_mismatches: u64,
    receiver_errors: u64,
    slow_consumers_cut_off: u64,
    /// The same figures for each target, in the order given.
    targets: Vec<TargetFigures>,
    connect_ms: Percentiles,
    connect_seconds_total: f64,
    generator_cpu_seconds: f64,
    connect_generator_cpu_seconds: f64,
    generator_cpu_per_delivery_us: f64,
    server: Option<ServerFigures>,
}

impl Report {
    pub fn build(i: Inputs<'_>) -> Report {
        let lamport_disagreements = i.seen.iter().map(|s| s.disagreements).sum::<u64>();
        let targets = (0..i.args.targets.len())
            .map(|t| TargetFigures::of(&i, t))
            .collect();
        let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for s in i.seen {
            let _ = latency.add(&s.latency_us);
        }
        let deliveries: u64 = i.seen.iter().map(|s| s.received).sum();
        let per_delivery = |d: Duration| {
            if deliveries == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1e6 / deliveries as f64
            }
        };
        let server = i.server.map(|s| ServerFigures {
            connect_cpu_seconds: s.connected.cpu.saturating_sub(s.before.cpu).as_secs_f64(),
            cpu_seconds: s.end.cpu.saturating_sub(s.start.cpu).as_secs_f64(),
            cpu_per_delivery_us: per_delivery(s.end.cpu.saturating_sub(s.start.cpu)),
            rss_before_kib: s.before.rss / 1024,
            rss_connected_kib: s.connected.rss / 1024,
            rss_after_kib: s.after.rss / 1024,
            rss_per_connection_kib: s.connected.rss.saturating_sub(s.before.rss) as f64
                / 1024.0
                / (i.args.clients + i.args.stall) as f64,
        });
        Report {
            transport: i.args.transport,
            pattern: i.args.pattern,
            clients: i.args.clients,
            senders: i.args.senders,
            stalled: i.args.stall,
            rate_per_sender: i.args.rate,
            window_per_sender: super::window(i.args),
            planned_messages: (i.args.rate > 0).then_some(
                (i.args.senders as f64 * i.args.rate as f64 * i.args.duration.as_secs_f64()) as u64,
            ),
            size: i.args.size,
            seconds: i.elapsed.as_secs_f64(),
            messages_sent: i.sent,
            deliveries,
            expected_deliveries: i.expected,
            losses: i.expected.saturating_sub(deliveries),
            deliveries_per_second: deliveries as f64 / i.elapsed.as_secs_f64().max(1e-9),
            latency_ms: Percentiles::of(&latency, 1000.0),
            ordering_anomalies: i.seen.iter().map(|s| s.anomalies).sum::<u64>()
                + lamport_disagreements,
            lamport_disagreements,
            order_mismatches: i.mismatched.iter().filter(|&&m| m).count() as u64,
            receiver_errors: i.seen.iter().filter(|s| s.error.is_some()).count() as u64,
            slow_consumers_cut_off: i.cut_off / i.args.clients.max(1) as u64,
            targets,
            connect_ms: Percentiles::of(i.connect_us, 1000.0),
            connect_seconds_total: i.connect_time.as_secs_f64(),
            generator_cpu_seconds: i.generator_cpu.as_secs_f64(),
            connect_generator_cpu_seconds: i.connect_generator_cpu.as_secs_f64(),
            generator_cpu_per_delivery_us: per_delivery(i.generator_cpu),
            server,
        }
    }

    pub fn human(&self, out: &mut impl Write) -> io::Result<()> {
        let l = &self.latency_ms;
        let c = &self.connect_ms;
        writeln!(
            out,
            "{:?} {:?}: {} clients, {} senders, {} stalled, rate {} msg/s per sender ({}), {} B{}",
            self.transport,
            self.pattern,
            self.clients,
            self.senders,
            self.stalled,
            self.rate_per_sender,
            if self.rate_per_sender == 0 {
                "as fast as the server takes"
            } else {
                "paced"
            },
            self.size,
            if self.rate_per_sender == 0 && self.senders > 0 {
                format!(", window {} per sender", self.window_per_sender)
            } else {
                String::new()
            }
        )?;
        writeln!(out, "  messages sent      {}", self.messages_sent)?;
        if let Some(planned) = self.planned_messages
            && self.messages_sent * 100 < planned * 98
        {
            writeln!(
                out,
                "  note               the senders fell behind their pace ({} of {} planned): \
                 the machine was saturated, so latency includes queueing",
                self.messages_sent, planned
            )?;
        }
        writeln!(
            out,
            "  deliveries         {} of {} expected ({} lost) in {:.2} s = {:.0}/s",
            self.deliveries,
            self.expected_deliveries,
            self.losses,
            self.seconds,
            self.deliveries_per_second
        )?;
        writeln!(
            out,
            "  latency (ms)       p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        writeln!(
            out,
            "  ordering           {} anomalies ({} Lamport disagreements), {} order mismatches, \
             {} receiver errors",
            self.ordering_anomalies,
            self.lamport_disagreements,
            self.order_mismatches,
            self.receiver_errors
        )?;
        if self.targets.len() > 1 {
            for t in &self.targets {
                writeln!(
                    out,
                    "  target {}: {} receivers, {} of {} deliveries ({} lost), {} anomalies \
                     ({} Lamport disagreements), {} order mismatches, {} receiver errors",
                    t.target,
                    t.receivers,
                    t.deliveries,
                    t.expected_deliveries,
                    t.losses,
                    t.ordering_anomalies,
                    t.lamport_disagreements,
                    t.order_mismatches,
                    t.receiver_errors
                )?;
            }
        }
        if self.stalled > 0 {
            writeln!(out, "  slow consumers cut {}", self.slow_consumers_cut_off)?;
        }
        writeln!(
            out,
            "  connect (ms)       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (all in {:.2} s)",
            c.p50, c.p90, c.p99, c.max, self.connect_seconds_total
        )?;
        write!(
            out,
            "  connect CPU        generator {:.2} s",
            self.connect_generator_cpu_seconds
        )?;
        if let Some(s) = &self.server {
            write!(out, ", server {:.2} s", s.connect_cpu_seconds)?;
        }
        writeln!(out, " (joins and every join notice)")?;
        writeln!(
            out,
            "  generator CPU      {:.2} s ({:.3} us per delivery)",
            self.generator_cpu_seconds, self.generator_cpu_per_delivery_us
        )?;
        if let Some(s) = &self.server {
            writeln!(
                out,
                "  server CPU         {:.2} s ({:.3} us per delivery)",
                s.cpu_seconds, s.cpu_per_delivery_us
            )?;
            writeln!(
                out,
                "  server RSS (KiB)   before {}  connected {}  after {}  ({:.1} KiB per connection)",
                s.rss_before_kib, s.rss_connected_kib, s.rss_after_kib, s.rss_per_connection_kib
            )?;
        }
        Ok(())
    }
}
