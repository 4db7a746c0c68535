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
//! - [`config`]: chittyd's command line, shared by the daemon and its man page.
//! - [`pb`]: the generated protobuf code.
//!
//! This package holds the runtime library and the thin binaries `chittyd` and `chitty`. The
//! tools are packages of their own in the workspace, so chittyd links none of their
//! dependencies: `chittyctl` (ctl/: the admin client and its command line), `chitty-bench`
//! (tools/bench/: the load generator behind `chittyctl bench`) and `chitty-docs` (tools/docs/:
//! the man pages, shell completions and /etc/default/chitty, generated from the command lines).

pub mod audit;
pub mod client;
pub mod clock;
pub mod config;
pub mod hub;
pub mod metric;
pub mod os;
pub mod pb;
pub mod server;
pub mod systemd;
pub mod throttle;
