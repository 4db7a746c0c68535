//! chittyctl's command line, in the library so its man page and completions (chitty-docs) come
//! from the same definition.

use chitty::config::{DEFAULT_ADMIN_SOCKET, user_admin_socket};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Manage a running chittyd.
#[derive(Debug, Parser)]
#[command(
    name = "chittyctl",
    version,
    about = "Manage a running chittyd over its admin socket",
    long_about = "Manage a running chittyd: list the connected participants, remove one, list and \
                  lift bans, read the Lamport clock and the counters, list a cluster's nodes, \
                  announce something to everyone. chittyctl talks \
                  to chittyd's admin gRPC service on a Unix socket (mode 0660): root and members \
                  of the socket's group (chitty-admin in the packaged service) may use it. Every \
                  action is recorded in chittyd's audit trail with your uid and pid. Two commands \
                  need no running chittyd: `bench` load-tests its chat port, and `tls-cert` \
                  writes a certificate for it.",
    after_help = "Exit status: 0 success, 1 other failure, 2 usage error (also a request chittyd \
                  refuses as invalid), 3 chittyd cannot be reached (not running, wrong socket, \
                  no permission), 4 no such participant or ban, 5 not part of a cluster \
                  (`cluster` on a single chittyd)."
)]
pub struct CtlCli {
    /// chittyd's admin socket.
    ///
    /// Without it, chittyctl tries /run/chitty/admin.sock (the service's), then
    /// $XDG_RUNTIME_DIR/chitty/admin.sock (where chittyd run by hand by a user puts it).
    #[arg(long, global = true, env = "CHITTY_ADMIN_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print JSON with stable field names instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

impl CtlCli {
    /// The admin sockets to try, in order: the one given, or the service's default and then
    /// the user's own.
    pub fn sockets(&self) -> Vec<PathBuf> {
        match &self.socket {
            Some(path) => vec![path.clone()],
            None => std::iter::once(PathBuf::from(DEFAULT_ADMIN_SOCKET))
                .chain(user_admin_socket())
                .collect(),
        }
    }
}

/// chittyctl's subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// List every connected participant: id, name, in a cluster the node it is connected to,
    /// transport, address, since when, Lamport time of its join, messages sent and received,
    /// backlog, idle time. In a cluster, every node's participants are listed.
    Users,
    /// Remove a participant: its stream ends with the reason, everyone sees it leave, and the
    /// audit trail records who did it.
    Kick {
        /// The participant's username (any letter case: names are compared case-insensitively),
        /// or `#ID` for a user id (which also reaches WebSocket users without a username).
        name: String,
        /// Why (shown to the participant and everyone else, and audited).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Keep the name, in any letter case, from rejoining for this long (e.g. 10m, 1h30m).
        /// Bans are kept in chittyd's state directory and survive restarts.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        ban: Option<Duration>,
    },
    /// List the bans in force: name, when each ends and how long is left, why, and who gave it.
    Bans,
    /// Lift the ban on a name (any letter case), so it can join again at once.
    Unban {
        /// The banned name.
        name: String,
    },
    /// Show the Lamport clock, uptime, participants and events processed; in a cluster, also
    /// this node, the last stream sequence it applied and its lag behind the stream.
    Clock,
    /// List the cluster's nodes as this node knows them: name, address, participants, when each
    /// was last heard from, this node's lag behind the stream, and each node's state (this node:
    /// serving or not serving; the others: alive, or silent for longer than the node timeout).
    /// Fails with exit status 5 on a chittyd that is not part of a cluster.
    Cluster,
    /// Show the counters: connections, messages, deliveries, slow consumers, rejections, audit,
    /// and connections refused at the chat port (per-address limits, handshake timeouts, TLS).
    Stats,
    /// Send a notice from SERVER to every participant.
    Announce {
        /// The text (1 to 128 characters).
        text: String,
    },
    /// Load-test a chittyd over its chat port (not the admin socket): connect N participants,
    /// let S send, measure deliveries, latency, ordering, losses, and with --server-pid the
    /// server's CPU per delivery and memory per connection.
    Bench(chitty_bench::BenchArgs),
    /// Write a TLS certificate for chittyd (not a CA certificate) and its key, for the names
    /// clients connect to, signed by a small CA whose certificate clients trust with
    /// `chitty chat --ca`: cert.pem, key.pem (mode 0600) and ca.pem. The CA's key is not kept,
    /// so that CA signs nothing else. Works on files only, not on a running chittyd.
    TlsCert(crate::tls_cert::TlsCertArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        CtlCli::command().debug_assert();
    }
}
