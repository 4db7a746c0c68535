//! The WebSocket gateway: a real WebSocket client library (tokio-tungstenite), and sockets
//! written by hand where a library would not misbehave, against chittyd in-process, alone and
//! together with gRPC participants on the same hub and the same port.
//!
//! A WebSocket user that does not read never answers the server's close frame, and its
//! connection lingers (two seconds) before it ends. The tests that end with such users connected
//! run on paused time, held while the sockets work and released for the shutdown
//! ([`shutdown_lingering`]), so the linger costs no wall time.

mod connections;
mod direct;
mod protocol;
mod room;

use chitty_testkit::TestServer;
use chitty_testkit::time::HeldClock;

/// Shuts `server` down with WebSocket users connected who will not answer its close: the clock
/// is released, so the runtime advances through their lingers (and, for a connection that
/// cannot even take the close frame, the grace) whenever it has nothing else to do. Sound for
/// these servers because all the shutdown waits for runs on the runtime: with an audit file,
/// whose writer is a thread of its own, the clock could run past the test's patience while the
/// writer flushes.
async fn shutdown_lingering(server: TestServer, clock: HeldClock) {
    clock.release();
    server.shutdown().await;
}
