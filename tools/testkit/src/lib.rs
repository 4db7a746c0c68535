//! What the integration tests of every package share: chittyd in-process on an ephemeral port
//! ([`start`]), participants over gRPC ([`Raw`], [`Bystanders`]) and WebSocket ([`WsUser`]),
//! hand-written HTTP ([`http`]), the admin service over its Unix socket ([`admin`]), the audit
//! file ([`audit`]), chittyd and chitty as processes ([`process`]), real nats-servers with
//! JetStream ([`nats`]), and paused time that moves
//! only when a test moves it ([`time`]).
//!
//! A library rather than a module each test binary includes, so that every binary uses what it
//! needs and nothing is compiled in unused. Cargo names a package's binaries
//! (`CARGO_BIN_EXE_*`) to that package's own tests only, so the tests pass their paths in.

pub mod admin;
pub mod audit;
mod grpc;
pub mod http;
pub mod nats;
pub mod process;
mod server;
pub mod time;
mod ws;

pub use grpc::{Bystanders, Raw};
pub use server::{TestServer, cluster_config, config, start, start_at, start_default};
pub use ws::{Ws, WsUser};

use std::time::Duration;

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);
