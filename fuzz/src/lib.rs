//! Fuzz checks for chitty's network-facing code, one module per target:
//!
//! - [`websocket_frame`]: one WebSocket text frame, parsed and handled as the gateway does.
//! - [`websocket_codec`]: raw bytes from a WebSocket client, through the frame decoder.
//! - [`event_validation`]: the username and text rules, and a gRPC event stream checked event by
//!   event against a model of the session rules.
//! - [`hub_sessions`]: many sessions on both transports driven by arbitrary event sequences,
//!   drops, kicks and bans, overflows, the rate limit and the join deadline on time the script
//!   moves, checked against the ordering contract and a model of the time-driven rules.
//! - [`hub_replicas`]: two or three hubs as the nodes of a cluster, sessions on each, and the
//!   order in which the nodes' events enter the stream chosen by the input, checked for the
//!   replica property: every replica ends in the same state, and every participant, on any
//!   node, reads the same room.
//!
//! Each module's `check` panics when an invariant breaks. The libFuzzer targets in
//! `fuzz_targets/` are one line each around it, and `tests/corpus.rs` replays the checked-in
//! corpus and pseudo-random inputs through the same functions on stable Rust.

pub mod event_validation;
pub mod frame;
pub mod hub_replicas;
pub mod hub_sessions;
pub mod peer;
pub mod websocket_codec;
pub mod websocket_frame;

use chitty::audit::Auditor;
use chitty::hub::{Event, Flow, Hub, HubConfig, ManualTime, Transport};
use futures_util::FutureExt as _;
use peer::Peer;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where every fuzzed hub's wall clock starts (November 2023), so that runs are reproducible.
pub fn wall_start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A hub with no audit trail and no rate limit, on time that stands still: the targets that use
/// it check one event at a time against the rules, which time must not change. `hub_sessions`
/// builds its own hub, with the rate limit on and time it moves.
pub fn hub(backlog: usize, max_participants: usize) -> Arc<Hub> {
    let config = HubConfig {
        backlog,
        max_participants,
        rate: None,
        ..HubConfig::default()
    };
    let time = Arc::new(ManualTime::new(wall_start()));
    Hub::with_time(config, Auditor::disabled(), time)
}

/// A peer that joined the room as `name`; panics if it could not.
pub fn joined(hub: &Arc<Hub>, transport: Transport, name: &str) -> Peer {
    let mut p = Peer::new(hub, transport);
    let flow = p.handle().handle(0, Event::Join { username: name });
    assert_eq!(flow, Flow::Continue, "{name} could not join");
    p.note_id();
    p.drain();
    p
}

/// A direct-message-only peer; panics if it could not connect.
pub fn direct_only(hub: &Arc<Hub>, transport: Transport) -> Peer {
    let mut p = Peer::new(hub, transport);
    p.handle()
        .connect_direct()
        .now_or_never()
        .expect("a single node registers at once")
        .expect("direct connect");
    p.note_id();
    p.drain();
    p
}
