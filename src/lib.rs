//! chitty: a chat service with Lamport-ordered broadcast.
//!
//! Module map (lower modules never import upper ones):
//! - [`metric`]: the one snapshot type every figure is added to (name, help, kind, value), and
//!   the fan-out histogram. Imports nothing from chitty.
//! - [`throttle`]: one log line per period with a count of what was held back (the accept path
//!   and the audit writer).
//! - [`clock`]: the Lamport clock (one atomic, CAS updates).
//! - [`pb`]: the generated protobuf code.
//! - [`audit`]: the JSON-lines audit trail and its journal entries, written by a thread of its
//!   own, fed by the hub in Lamport order.
//! - [`state`]: what survives a restart and a crash (the Lamport clock's and the user ids'
//!   reservations, the bans), saved atomically by a thread of its own; the hub only hands it
//!   work and never waits for the disk.
//! - [`hub`]: the transport-free core: sessions, validation, sequencing, fan-out through the
//!   room log into bounded per-participant outboxes. Only the hub decides.
//! - [`cluster`]: the link to NATS JetStream for `--cluster`: the connection, the room's
//!   stream and the state bucket (created or checked at start), and the link's health.
//! - [`systemd`]: sd_notify, the watchdog, journald detection.
//! - [`os`]: the open-files limit and /proc samples (CPU time, resident memory).
//! - [`server`]: chittyd's edge: the accept loop that owns every connection's task, the
//!   transports (`chat` gRPC, `websocket`), the admin service, the metrics endpoint, and the
//!   one shutdown sequence.
//! - [`config`]: chittyd's command line, shared by the daemon and its man page.
//! - [`exit`]: chittyd's exit statuses: a configuration error (78, not restarted by systemd)
//!   or another failure (1), and saying which.
//! - [`client`]: the `chitty` client: connection, its own Lamport clock, line mode and the
//!   full-screen terminal UI (`client::tui`). It imports nothing from `server` or `hub`: what it
//!   needs to know (a restart, an id) travels on the wire.
//!
//! This package holds the runtime library and the thin binaries `chittyd` and `chitty`. The
//! tools are packages of their own in the workspace, so chittyd links none of their
//! dependencies: `chittyctl` (ctl/: the admin client and its command line), `chitty-bench`
//! (tools/bench/: the load generator behind `chittyctl bench`) and `chitty-docs` (tools/docs/:
//! the man pages, shell completions and /etc/default/chitty, generated from the command lines).

pub mod audit;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod exit;
pub mod hub;
pub mod metric;
pub mod os;
pub mod pb;
pub mod server;
pub mod state;
pub mod systemd;
pub mod throttle;
