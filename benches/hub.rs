//! Micro-benchmarks of the hot path: the hub's fan-out (cost per delivery for 10, 1,000 and
//! 10,000 participants), the Lamport clock under contention, and encoding one outgoing message.
//! Run with `cargo bench --bench hub`; BENCHMARKS.md records the figures.

use chitty::audit::Auditor;
use chitty::clock::LamportClock;
use chitty::hub::outbox::{MAX_RUN_BYTES, OutboxReader};
use chitty::hub::wire::Delivery;
use chitty::hub::{Event, Hub, HubConfig, SessionHandle, Transport};
use chitty::pb::chat_message::Kind;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// A room of `n` gRPC participants and their writers' ends.
fn room(n: usize) -> (Arc<Hub>, Vec<SessionHandle>, Vec<OutboxReader>) {
    let hub = Hub::new(
        HubConfig {
            backlog: 1 << 16,
            max_participants: n + 1,
            rate: None,
            ..HubConfig::default()
        },
        Auditor::disabled(),
    );
    let mut sessions = Vec::new();
    let mut readers = Vec::new();
    for i in 0..n {
        let (tx, rx) = hub.outbox(Transport::Grpc);
        let mut s = SessionHandle::new(Arc::clone(&hub), Transport::Grpc, format!("p{i}"), tx);
        s.handle(
            0,
            Event::Join {
                username: &format!("p{i}"),
            },
        );
        sessions.push(s);
        readers.push(rx);
    }
    drain(&mut readers);
    (hub, sessions, readers)
}

/// Every writer takes what is waiting, copying it into a reused buffer as the gRPC writer
/// copies frames into its chunk.
fn drain(readers: &mut [OutboxReader]) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut chunk = Vec::with_capacity(64 * 1024);
    for r in readers {
        while r
            .poll_take(&mut cx, MAX_RUN_BYTES, |frame| {
                chunk.extend_from_slice(frame)
            })
            .is_ready()
            && !chunk.is_empty()
        {
            black_box(&chunk);
            chunk.clear();
        }
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in [10usize, 1_000, 10_000] {
        let (_hub, mut sessions, mut readers) = room(n);
        let text = "x".repeat(50);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // Writers drain every 32 messages; their copying is part of the cost.
                    let round = (iters - done).min(32);
                    let start = Instant::now();
                    for _ in 0..round {
                        sessions[0].handle(
                            0,
                            Event::Message {
                                username: "",
                                text: black_box(&text),
                                recipient: 0,
                            },
                        );
                    }
                    drain(&mut readers);
                    spent += start.elapsed();
                    done += round;
                }
                spent
            });
        });
    }
    group.finish();
}

fn clock(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock");
    group.bench_function("observe, uncontended", |b| {
        let clock = LamportClock::new();
        let mut remote = 0;
        b.iter(|| {
            remote += 1;
            black_box(clock.observe(black_box(remote)))
        });
    });
    group.bench_function("observe, two threads", |b| {
        b.iter_custom(|iters| {
            let clock = Arc::new(LamportClock::new());
            let start = Instant::now();
            let other = {
                let clock = Arc::clone(&clock);
                std::thread::spawn(move || {
                    for i in 0..iters {
                        black_box(clock.observe(i));
                    }
                })
            };
            for i in 0..iters {
                black_box(clock.observe(i));
            }
            let _ = other.join();
            // Two updates happened per iteration; report the time per update.
            start.elapsed() / 2
        });
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let text = "x".repeat(50);
    let d = Delivery {
        lamport: 123_456,
        kind: Kind::Message,
        from: "alice",
        sender_id: 42,
        recipient_id: 0,
        subject: "",
        text: &text,
        participants: 100,
    };
    let mut group = c.benchmark_group("encode");
    group.bench_function("protobuf", |b| {
        b.iter(|| black_box(black_box(&d).protobuf()))
    });
    group.bench_function("json", |b| b.iter(|| black_box(black_box(&d).json())));
    group.finish();
}

criterion_group!(benches, fanout, clock, encode);
criterion_main!(benches);
