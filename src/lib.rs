//! chitty: a chat service with Lamport-ordered broadcast.
//!
//! Module map:
//! - [`clock`]: the Lamport clock (one atomic, CAS updates).
//! - [`hub`]: the transport-free core: sessions, validation, sequencing, fan-out into bounded
//!   per-participant outboxes. Only the hub decides.
//! - [`audit`]: the JSON-lines audit trail, fed by the hub in Lamport order.
//! - [`server`]: chittyd's listeners and transports (`chat` gRPC, shutdown glue).
//! - [`systemd`]: sd_notify and journald integration.
//! - [`client`]: the `chitty` client: connection, its own Lamport clock, line mode and the
//!   full-screen terminal UI (`client::tui`).
//! - [`os`]: the open-files limit and /proc samples (CPU time, resident memory).
//! - [`throttle`]: one log line per period with a count of what was held back (the accept path
//!   and the audit writer).
//! - [`metrics`]: Prometheus exposition of the hub's counters.
//! - [`ctl`]: chittyctl: its command line and the admin client.
//! - [`config`]: chittyd's command line, shared by the daemon and its man page.
//! - [`docs`]: man pages, shell completions and /etc/default/chitty, generated from the command
//!   lines.
//! - [`pb`]: the generated protobuf code.

pub mod audit;
pub mod client;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod docs;
pub mod hub;
pub mod metric;
pub mod os;
pub mod pb;
pub mod server;
pub mod systemd;
pub mod throttle;
