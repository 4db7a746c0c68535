//! `chittyctl bench`: a load generator that ships with the product, like `nats bench`.
//!
//! A crate of its own (chitty-bench) so that the runtime library, and so chittyd, links none of
//! what only the generator needs (HDR histograms, a progress bar, its protobuf scanner);
//! chittyctl depends on it and makes it a subcommand.
//!
//! It connects N participants (with bounded concurrency, timing each until its own join or
//! welcome arrives), lets S of them send for a while, and has every participant receive. Each
//! message carries its send time; receivers record end-to-end latency in an HDR histogram,
//! check the ordering contract (strictly increasing Lamport times; for broadcasts, the same
//! order as everybody else and the same Lamport time on each message: the `check` module) and
//! count what arrived. Given several targets (a cluster's nodes), participants and senders are
//! spread over them in turn, and the checks and the report span them. With `--server-pid` it
//! reads the server's CPU time and resident memory from /proc, so the report can give server
//! CPU per delivery and memory per connection.

mod check;
pub mod conn;
mod report;
mod wire;

use chitty::os;
use chitty::pb::chat_message::Kind;
use conn::{BenchTransport, Receiver};
use hdrhistogram::Histogram;
use report::Report;
use std::io::Write;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Senders broadcast to the room; every participant receives every message.
    Broadcast,
    /// Senders send direct messages one-way to the other participants.
    Direct,
}

/// Options of `chittyctl bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// chittyd's chat port; several (repeated or comma-separated) for the nodes of a cluster.
    ///
    /// With n targets, participant i connects to target i mod n (senders too, so that every
    /// node has some), --connect-rate applies to each address, and the ordering checks compare
    /// receivers across targets; the report gives each target's figures. One address given
    /// twice is one server, and so one room.
    #[arg(
        long = "target",
        default_value = "localhost:8080",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub targets: Vec<String>,
    /// Connect over TLS (to a chittyd run with --tls-cert), checking its certificate against
    /// the system's certificate authorities, or --ca.
    #[arg(long)]
    pub tls: bool,
    /// Trust this certificate authority (PEM) for the server's certificate, instead of the
    /// system's (ca.pem from chittyctl tls-cert). Implies --tls.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Which protocol the participants speak.
    #[arg(long, value_enum, default_value_t = BenchTransport::Grpc)]
    pub transport: BenchTransport,
    /// Broadcast to the room, or direct messages one-way.
    #[arg(long, value_enum, default_value_t = Pattern::Broadcast)]
    pub pattern: Pattern,
    /// Participants that connect and receive.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub clients: usize,
    /// How many of them send.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub senders: usize,
    /// Messages per second per sender; 0 sends as fast as the server takes them. Paced senders
    /// are spread evenly over the period (sender i starts i/(S x R) seconds in), so that they do
    /// not all send at the same instant.
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub rate: u64,
    /// How long the senders send (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "D")]
    pub duration: Duration,
    /// Message size in bytes (32 to 128; the send time is inside).
    #[arg(long, default_value_t = 50, value_name = "BYTES")]
    pub size: usize,
    /// Extra participants that join and then never read (slow-consumer isolation).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub stall: usize,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 64, value_name = "C")]
    pub connect_concurrency: usize,
    /// New connections per second to each target address while connecting; 0 opens them as
    /// fast as it can. The default stays below what chittyd accepts from one address (64 new
    /// connections per second, 256 open ones: its --new-connections-per-ip and
    /// --max-connections-per-ip); raise those on the server before raising this, or --clients
    /// beyond 256 per target.
    #[arg(long, default_value_t = DEFAULT_CONNECT_RATE, value_name = "N")]
    pub connect_rate: u32,
    /// chittyd's process id, to report its CPU per delivery and memory per connection. Several
    /// (comma-separated, or the option repeated) are summed: a cluster's nodes and its NATS
    /// server, whose CPU together is what a delivery costs.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Messages each sender may have in flight (sent but not yet delivered everywhere). With
    /// --rate 0 this is what "as fast as the server takes" means: a closed loop as deep as the
    /// server accepts without cutting anyone off. By default every receiver's share of the
    /// messages in flight is half of chittyd's default backlog (2048 of 4096): 2048 / S per
    /// sender for broadcasts, 2048 x receivers / S for direct messages.
    #[arg(long, value_name = "W")]
    pub window: Option<u64>,
    /// After the senders stop, how long to wait for the last deliveries.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "D")]
    pub drain_timeout: Duration,
}

/// New connections per second by default: below chittyd's default per-address limit (64).
pub const DEFAULT_CONNECT_RATE: u32 = 50;

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// No participant could connect to `target` (every target's address, comma-separated, when
    /// none could connect anywhere).
    #[error("{why}")]
    Connect {
        /// The address (or addresses) that could not be reached.
        target: String,
        /// What went wrong.
        why: String,
    },
    /// Some participants connected and others were refused: most likely chittyd's
    /// per-address limits.
    #[error("{0}")]
    Refused(String),
    /// Reading /proc failed.
    #[error("reading /proc: {0}")]
    Proc(#[from] std::io::Error),
}

/// A value on a cache line of its own, so that writers of its neighbours do not slow its readers.
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Shared counters. Receivers count deliveries locally and add them to `delivered` (and their
/// own slot in `received`) in batches (at most `PUBLISH_EVERY` at a time, and always before they
/// wait for more), so that a sender waiting for its window always sees every delivery that has
/// arrived.
#[derive(Default)]
struct Shared {
    /// What each receiver has received so far: a broadcast is in flight until the slowest one
    /// has it, so no receiver ever has more than the window waiting for it.
    received: Vec<Padded<AtomicU64>>,
    /// Wakes senders waiting for their window to open.
    progress: tokio::sync::Notify,
    sent: Padded<AtomicU64>,
    delivered: Padded<AtomicU64>,
    /// Senders waiting on `progress`: receivers notify only when there are some.
    waiting: Padded<AtomicUsize>,
    caught_up: AtomicUsize,
    cut_off: AtomicU64,
    /// Numbers the run's messages across senders: a message's number identifies it at every
    /// receiver, for the Lamport table.
    numbered: AtomicU64,
    /// Direct messages sent to each target's participants: what that target should deliver.
    sent_to: Vec<AtomicU64>,
    /// Broadcasts only: the Lamport time each message carried, checked by every receiver.
    lamport: Option<check::LamportTable>,
}

/// The most deliveries a receiver counts before adding them to the shared count.
const PUBLISH_EVERY: u64 = 32;

impl Shared {
    /// Messages sent but not yet delivered everywhere (as far as the receivers have said): for
    /// broadcasts, not yet received by the slowest receiver; for direct messages, not yet
    /// received by their one recipient.
    fn in_flight(&self, pattern: Pattern) -> u64 {
        let delivered = match pattern {
            Pattern::Broadcast => self
                .received
                .iter()
                .map(|r| r.load(Ordering::SeqCst))
                .min()
                .unwrap_or(0),
            Pattern::Direct => self.delivered.load(Ordering::SeqCst),
        };
        self.sent.load(Ordering::SeqCst).saturating_sub(delivered)
    }

    /// Adds a receiver's uncounted deliveries to the shared counts, waking waiting senders.
    fn publish(&self, slot: usize, unpublished: &mut u64) {
        if *unpublished == 0 {
            return;
        }
        if let Some(r) = self.received.get(slot) {
            r.fetch_add(*unpublished, Ordering::SeqCst);
        }
        self.delivered.fetch_add(*unpublished, Ordering::SeqCst);
        *unpublished = 0;
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.progress.notify_waiters();
        }
    }
}

/// What one receiver saw.
struct Seen {
    /// Its participant number, and so its target (`slot % targets`).
    slot: usize,
    target: usize,
    latency_us: Histogram<u64>,
    received: u64,
    /// Frames whose Lamport time did not exceed the one before.
    anomalies: u64,
    /// Broadcasts whose Lamport time differed from the one another receiver saw on them.
    disagreements: u64,
    /// Its sequence of this run's broadcasts.
    trace: check::OrderTrace,
    error: Option<String>,
}

/// The marker broadcast that tells a receiver it has caught up with the joins. One is sent
/// through each target, and each receiver waits for its own target's: in a cluster every
/// receiver sees them all, but it has seen every join once it sees the one sent after them
/// through its own node; nodes that do not share a room still each get theirs.
const GO: &str = "bench: go";

fn go(target: usize) -> String {
    format!("{GO} {target}")
}

/// Participants once connected: their sending halves, split by role, with their numbers.
struct Connected {
    senders: Vec<(usize, conn::Sender)>,
    /// Receivers that do not send. A gRPC stream whose request side ends is a leave: their
    /// sending halves are kept open.
    quiet: Vec<(usize, conn::Sender)>,
    stalled: Vec<(conn::Sender, Receiver)>,
    /// User ids, by participant number.
    ids: Vec<u64>,
    connect_us: Histogram<u64>,
}

/// Runs the bench and prints its report (`--json` or human).
pub async fn run(args: &BenchArgs, json: bool, out: &mut impl Write) -> Result<(), BenchError> {
    validate(args)?;
    let limit = os::raise_open_files_limit().unwrap_or(0);
    let needed = (args.clients + args.stall) as u64 + 64;
    if limit != 0 && limit < needed {
        return Err(BenchError::Usage(format!(
            "{needed} descriptors needed but the open-files limit is {limit} (ulimit -n)"
        )));
    }
    let tls = (args.tls || args.ca.is_some()).then(|| chitty::client::ClientTls {
        ca: args.ca.clone(),
    });
    let targets = args
        .targets
        .iter()
        .map(|t| conn::Target::new(t, tls.clone(), args.transport))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BenchError::Usage)?;
    let base = Instant::now();
    // Distinct per process and per second, so concurrent or back-to-back runs do not collide.
    let run_id = (std::process::id() % 10_000) * 100
        + (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 100) as u32);
    let shared = Arc::new(Shared {
        received: (0..args.clients).map(|_| Padded::default()).collect(),
        sent_to: targets.iter().map(|_| AtomicU64::new(0)).collect(),
        lamport: (args.pattern == Pattern::Broadcast).then(check::LamportTable::default),
        ..Shared::default()
    });
    let stop = CancellationToken::new();
    let progress = progress_bar();
    let server_before = server_sample(&args.server_pid)?;
    let self_before = os::sample(None)?;

    // Connect everybody, receivers running from the start (join notices flood everyone).
    let total = args.clients + args.stall;
    let n = targets.len();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut connecting = JoinSet::new();
    let connect_started = Instant::now();
    let room = args.transport == BenchTransport::Grpc || args.pattern == Pattern::Broadcast;
    // One pace per address: a target given twice is one server, whose per-address limit the
    // two share.
    let pace_of: Vec<usize> = args
        .targets
        .iter()
        .map(|t| args.targets.iter().position(|u| u == t).unwrap_or(0))
        .collect();
    let mut paces: Vec<_> = (0..n).map(|_| pace(args.connect_rate)).collect();
    for i in 0..total {
        if let Some(pace) = &mut paces[pace_of[i % n]] {
            pace.tick().await;
        }
        let gate = Arc::clone(&gate);
        let target = targets[i % n].clone();
        let transport = args.transport;
        let clients = args.clients;
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let name = format!("b{run_id}-{i}");
            let started = Instant::now();
            let joined = async {
                let (tx, mut rx) = conn::connect(
                    transport,
                    &target,
                    room.then_some(name.as_str()),
                    i >= clients,
                )
                .await?;
                // Connected means: our own join has come back, or, for a user outside the
                // room, the welcome (which comes first either way).
                let id = loop {
                    match rx.next().await? {
                        Some(r) if r.kind == Kind::Welcome && !room => break r.sender_id,
                        Some(r) if r.kind == Kind::Join && r.subject == name => break r.sender_id,
                        Some(r) if r.kind == Kind::Error => return Err(r.text.into_owned()),
                        Some(_) => continue,
                        None => return Err("the server ended the stream while joining".into()),
                    }
                };
                Ok::<_, String>((id, started.elapsed(), tx, rx))
            };
            (i, joined.await)
        });
    }
    let mut connected = Connected {
        senders: Vec::new(),
        quiet: Vec::new(),
        stalled: Vec::new(),
        ids: vec![0; total],
        connect_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds"),
    };
    let mut receivers = JoinSet::new();
    // (participant, why), in the order they failed.
    let mut failures = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        let (i, (id, took, tx, rx)) = match joined {
            Ok((i, Ok(c))) => (i, c),
            Ok((i, Err(e))) => {
                failures.push((Some(i), e));
                continue;
            }
            Err(e) => {
                failures.push((None, e.to_string()));
                continue;
            }
        };
        let _ = connected.connect_us.record(took.as_micros() as u64);
        connected.ids[i] = id;
        if i >= args.clients {
            connected.stalled.push((tx, rx));
            continue;
        }
        if i < args.senders {
            connected.senders.push((i, tx));
        } else {
            connected.quiet.push((i, tx));
        }
        let listener = Listener {
            slot: i,
            target: i % n,
            me: id,
            go: go(i % n),
        };
        receivers.spawn(receive(
            listener,
            rx,
            Arc::clone(&shared),
            stop.child_token(),
            base,
            run_id,
        ));
        progress.set_message(format!(
            "connected {}/{total}",
            connected.ids.iter().filter(|&&x| x != 0).count()
        ));
    }
    let connect_time = connect_started.elapsed();
    if !failures.is_empty() {
        stop.cancel();
        return Err(connect_failure(args, &failures, total));
    }

    // Wait until every receiver has caught up with the joins: one marker broadcast per target,
    // which all of that target's receivers must see before the clock starts.
    if room {
        for t in 0..n {
            let marker = connected
                .senders
                .iter_mut()
                .chain(connected.quiet.iter_mut())
                .find(|(i, _)| i % n == t);
            if let Some((_, tx)) = marker {
                tx.send(&go(t), 0)
                    .await
                    .map_err(|why| BenchError::Connect {
                        target: args.targets[t].clone(),
                        why,
                    })?;
            }
        }
        let deadline = Instant::now() + args.drain_timeout.max(Duration::from_secs(30));
        while shared.caught_up.load(Ordering::Relaxed) < args.clients && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // Idle memory is read once everybody has caught up (nothing left queued for anyone).
    let server_connected = server_sample(&args.server_pid)?;
    let self_connected = os::sample(None)?;

    // Send.
    let server_start = server_sample(&args.server_pid)?;
    let self_start = os::sample(None)?;
    let started = Instant::now();
    let recipients: Arc<Vec<u64>> = Arc::new(connected.ids[args.senders..args.clients].to_vec());
    let mut sending = JoinSet::new();
    for (i, mut tx) in std::mem::take(&mut connected.senders) {
        let shared = Arc::clone(&shared);
        let recipients = Arc::clone(&recipients);
        let (rate, duration, size, pattern) = (args.rate, args.duration, args.size, args.pattern);
        let senders = args.senders;
        let in_flight_limit = window(args).max(1) * senders as u64;
        sending.spawn(async move {
            // Paced senders start evenly spread over one period, sender i at i/(S x R) seconds.
            let mut ticker = (rate > 0).then(|| {
                let period = Duration::from_secs_f64(1.0 / rate as f64);
                let phase = period.mul_f64(i as f64 / senders as f64);
                let first = tokio::time::Instant::from_std(started) + phase;
                let mut t = tokio::time::interval_at(first, period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut n_sent: u64 = 0;
            while started.elapsed() < duration {
                if let Some(t) = &mut ticker {
                    t.tick().await;
                    if started.elapsed() >= duration {
                        break;
                    }
                }
                // Until the window opens, or the time is up: a receiver that stopped receiving
                // (cut off, or on a node that never delivers some messages) keeps it shut.
                while shared.in_flight(pattern) >= in_flight_limit && started.elapsed() < duration {
                    // Register before saying so and looking again: a receiver that publishes
                    // after the look sees `waiting` and wakes this one.
                    let mut notified = pin!(shared.progress.notified());
                    notified.as_mut().enable();
                    shared.waiting.fetch_add(1, Ordering::SeqCst);
                    if shared.in_flight(pattern) >= in_flight_limit {
                        let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
                    }
                    shared.waiting.fetch_sub(1, Ordering::SeqCst);
                }
                if started.elapsed() >= duration {
                    break;
                }
                let (recipient, slot) = match pattern {
                    Pattern::Broadcast => (0, 0),
                    Pattern::Direct if recipients.is_empty() => break,
                    Pattern::Direct => {
                        let k = (i + n_sent as usize * senders) % recipients.len();
                        (recipients[k], senders + k)
                    }
                };
                let number = shared.numbered.fetch_add(1, Ordering::Relaxed);
                if let Some(table) = &shared.lamport {
                    table.prepare(number);
                }
                let text = payload(base.elapsed().as_nanos() as u64, i, number, run_id, size);
                if tx.send(&text, recipient).await.is_err() {
                    break;
                }
                shared.sent.fetch_add(1, Ordering::Relaxed);
                if pattern == Pattern::Direct
                    && let Some(to) = shared.sent_to.get(slot % shared.sent_to.len().max(1))
                {
                    to.fetch_add(1, Ordering::Relaxed);
                }
                n_sent += 1;
            }
            tx
        });
    }
    let mut keep_alive = Vec::new();
    while !sending.is_empty() {
        tokio::select! {
            Some(done) = sending.join_next() => if let Ok(tx) = done { keep_alive.push(tx) },
            () = tokio::time::sleep(Duration::from_millis(250)) => tick(&progress, &shared, started),
        }
    }
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected = match args.pattern {
        Pattern::Broadcast => sent * args.clients as u64,
        Pattern::Direct => sent,
    };
    // Drain: until everything arrived, or nothing has for the drain timeout.
    let mut last = (shared.delivered.load(Ordering::Relaxed), Instant::now());
    loop {
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered >= expected {
            break;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > args.drain_timeout {
            break;
        }
        tick(&progress, &shared, started);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let self_end = os::sample(None)?;
    let server_end = server_sample(&args.server_pid)?;
    progress.finish_and_clear();

    stop.cancel();
    let mut seen = Vec::new();
    while let Some(r) = receivers.join_next().await {
        if let Ok(s) = r {
            seen.push(s);
        }
    }
    drop(keep_alive);
    drop(connected.quiet);
    drop(connected.stalled);
    let server_after = server_sample(&args.server_pid)?;

    seen.sort_by_key(|s| s.slot);
    let mismatched = match args.pattern {
        Pattern::Broadcast => check::mismatched(&seen.iter().map(|s| &s.trace).collect::<Vec<_>>()),
        Pattern::Direct => vec![false; seen.len()],
    };
    let report = Report::build(report::Inputs {
        args,
        sent,
        sent_to: shared
            .sent_to
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect(),
        expected,
        elapsed,
        seen: &seen,
        mismatched: &mismatched,
        connect_us: &connected.connect_us,
        connect_time,
        generator_cpu: self_end.cpu.saturating_sub(self_start.cpu),
        connect_generator_cpu: self_connected.cpu.saturating_sub(self_before.cpu),
        server: server_before
            .zip(server_connected)
            .zip(server_start.zip(server_end))
            .map(
                |((before, connected), (start, end))| report::ServerSamples {
                    before,
                    connected,
                    start,
                    end,
                    after: server_after.unwrap_or(end),
                },
            ),
        cut_off: shared.cut_off.load(Ordering::Relaxed),
    });
    let written = if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        )
    } else {
        report.human(out)
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(BenchError::Proc(e));
    }
    Ok(())
}

/// The connect pace for one address: `rate` new connections per second, or none.
fn pace(rate: u32) -> Option<tokio::time::Interval> {
    (rate > 0).then(|| {
        let mut pace = tokio::time::interval(Duration::from_secs(1) / rate);
        // After a stall, go on at the rate rather than catching up in a burst.
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pace
    })
}

/// Why the run stops when some participants could not connect (`failures`: participant, if
/// known, and why): nobody could, some target let nobody in, or the servers refused some
/// (most likely their per-address limits).
fn connect_failure(
    args: &BenchArgs,
    failures: &[(Option<usize>, String)],
    total: usize,
) -> BenchError {
    let first = &failures[0].1;
    let what = format!(
        "{} of {total} participants could not connect; first error: {first}",
        failures.len()
    );
    if failures.len() == total {
        return BenchError::Connect {
            target: args.targets.join(","),
            why: what,
        };
    }
    let n = args.targets.len();
    for (t, target) in args.targets.iter().enumerate() {
        let assigned = (0..total).filter(|i| i % n == t).count();
        let mut failed = failures
            .iter()
            .filter(|(i, _)| i.is_some_and(|i| i % n == t));
        let count = failed.clone().count();
        if assigned > 0 && count == assigned {
            let why = failed.next().map_or(first, |(_, e)| e);
            return BenchError::Connect {
                target: target.clone(),
                why: format!(
                    "none of the {assigned} participants for {target} could connect; \
                     first error: {why}"
                ),
            };
        }
    }
    BenchError::Refused(format!(
        "{what}. chittyd refuses connections beyond its per-address limits (by default 64 \
         new connections per second and 256 open ones: --new-connections-per-ip, \
         --max-connections-per-ip; its log says \"refused a connection\" when it does): \
         lower --connect-rate (now {}) or --clients, or raise those limits on the server",
        args.connect_rate
    ))
}

/// Each receiver may have this many of the messages in flight waiting for it: half of
/// chittyd's default backlog, so a closed loop never runs anyone into the slow-consumer rule.
const IN_FLIGHT_PER_RECEIVER: u64 = chitty::hub::HubConfig::DEFAULT_BACKLOG as u64 / 2;

/// The in-flight window per sender: `--window`, or the deepest one that keeps every receiver's
/// share at `IN_FLIGHT_PER_RECEIVER`.
pub fn window(args: &BenchArgs) -> u64 {
    args.window.unwrap_or_else(|| {
        let senders = args.senders.max(1) as u64;
        let share = match args.pattern {
            Pattern::Broadcast => IN_FLIGHT_PER_RECEIVER,
            Pattern::Direct => {
                IN_FLIGHT_PER_RECEIVER * args.clients.saturating_sub(args.senders).max(1) as u64
            }
        };
        (share / senders).max(1)
    })
}

fn validate(args: &BenchArgs) -> Result<(), BenchError> {
    let usage = |m: &str| Err(BenchError::Usage(m.to_owned()));
    if args.targets.iter().any(|t| t.trim().is_empty()) {
        return usage("--target: an empty address (HOST:PORT expected)");
    }
    if args.clients == 0 {
        return usage("--clients must be at least 1");
    }
    if args.senders > args.clients {
        return usage("--senders cannot exceed --clients");
    }
    if !(32..=128).contains(&args.size) {
        return usage("--size must be 32 to 128 bytes (messages are at most 128 characters)");
    }
    if args.pattern == Pattern::Direct && args.senders >= args.clients {
        return usage(
            "--pattern direct needs some clients that do not send (--senders < --clients)",
        );
    }
    Ok(())
}

/// A message carrying its send time (nanoseconds since the bench's start), sender, number in
/// the run (across senders, so that it names the message at every receiver) and the run's tag
/// (so two benches against one server count only their own), padded to `size`.
fn payload(sent_ns: u64, sender: usize, number: u64, run: u32, size: usize) -> String {
    let mut text = format!("{sent_ns:x}.{sender:x}.{number:x}.{run:x}.");
    while text.len() < size {
        text.push('x');
    }
    text
}

/// What one of this run's messages says about itself.
#[derive(Debug, PartialEq, Eq)]
struct Tag {
    sent_ns: u64,
    number: u64,
}

/// The send time and number of one of this run's messages (`None` for anything else).
fn tag(text: &str, run: u32) -> Option<Tag> {
    let mut parts = text.split('.');
    let sent_ns = u64::from_str_radix(parts.next()?, 16).ok()?;
    let number = u64::from_str_radix(parts.nth(1)?, 16).ok()?;
    let tag = parts.next()?;
    (u32::from_str_radix(tag, 16).ok()? == run).then_some(Tag { sent_ns, number })
}

/// Who a receiving task is.
struct Listener {
    /// Its participant number (its slot in `Shared::received`).
    slot: usize,
    /// Which target it is connected to.
    target: usize,
    /// Its user id.
    me: u64,
    /// The marker that tells it it has caught up with the joins.
    go: String,
}

/// One participant's receiving task: reads until `stop`, checking and counting what arrives.
async fn receive(
    who: Listener,
    mut rx: Receiver,
    shared: Arc<Shared>,
    stop: CancellationToken,
    base: Instant,
    run: u32,
) -> Seen {
    let (slot, me) = (who.slot, who.me);
    let mut seen = Seen {
        slot,
        target: who.target,
        latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds"),
        received: 0,
        anomalies: 0,
        disagreements: 0,
        trace: check::OrderTrace::default(),
        error: None,
    };
    let mut last = 0;
    // Deliveries not yet added to `shared.delivered`.
    let mut unpublished = 0;
    let mut cancelled = pin!(stop.cancelled());
    'receiving: while !stop.is_cancelled() {
        // Everything already received, without waiting.
        loop {
            let r = match rx.try_next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    seen.error = Some(e);
                    break 'receiving;
                }
            };
            if r.timestamp <= last {
                seen.anomalies += 1;
            }
            last = r.timestamp;
            match r.kind {
                // The server's copy of a direct message this participant sent: not a delivery.
                Kind::Direct if r.sender_id == me => {}
                Kind::Message | Kind::Direct => {
                    if r.text == who.go {
                        shared.caught_up.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(m) = tag(&r.text, run) {
                        let now = base.elapsed().as_nanos() as u64;
                        let _ = seen.latency_us.record(now.saturating_sub(m.sent_ns) / 1000);
                        seen.received += 1;
                        if let Some(table) = &shared.lamport {
                            seen.trace.push(r.timestamp, m.sent_ns, m.number);
                            if !table.agrees(m.number, r.timestamp) {
                                seen.disagreements += 1;
                            }
                        }
                        unpublished += 1;
                        if unpublished >= PUBLISH_EVERY {
                            shared.publish(slot, &mut unpublished);
                        }
                    }
                }
                Kind::Leave if r.text.contains("too slow") => {
                    shared.cut_off.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        // Then wait for more, publishing the count first if that means waiting at all.
        let mut fill = pin!(rx.fill());
        let more = std::future::poll_fn(|cx| {
            if let Poll::Ready(more) = fill.as_mut().poll(cx) {
                return Poll::Ready(Some(more));
            }
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            shared.publish(slot, &mut unpublished);
            Poll::Pending
        })
        .await;
        match more {
            None | Some(Ok(false)) => break,
            Some(Ok(true)) => {}
            Some(Err(e)) => {
                seen.error = Some(e);
                break;
            }
        }
    }
    shared.publish(slot, &mut unpublished);
    seen.trace.finish();
    seen
}

fn progress_bar() -> indicatif::ProgressBar {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

fn tick(bar: &indicatif::ProgressBar, shared: &Shared, started: Instant) {
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let rate = delivered as f64 / started.elapsed().as_secs_f64().max(1e-9);
    bar.set_message(format!(
        "sent {}  delivered {delivered}  ({rate:.0} deliveries/s)",
        shared.sent.load(Ordering::Relaxed)
    ));
}

/// The summed CPU and memory of the server's processes, `None` without any.
fn server_sample(pids: &[u32]) -> std::io::Result<Option<os::ProcSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = os::ProcSample::default();
    for &pid in pids {
        let s = os::sample(Some(pid))?;
        sum.cpu += s.cpu;
        sum.rss += s.rss;
    }
    Ok(Some(sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_send_time_number_and_size() {
        let p = payload(0x1234_5678_9abc, 3, 42, 77, 50);
        assert_eq!(p.len(), 50);
        let tagged = Tag {
            sent_ns: 0x1234_5678_9abc,
            number: 42,
        };
        assert_eq!(tag(&p, 77), Some(tagged));
        assert_eq!(tag(&p, 78), None, "another run's message");
        assert_eq!(tag("bench: go 0", 77), None);
        assert!(chitty::hub::rules::check_text(&p).is_ok());
        let p = payload(u64::MAX, 9999, u64::MAX, u32::MAX, 32);
        assert!(p.len() <= 128 && chitty::hub::rules::check_text(&p).is_ok());
    }
}
