//! chittyd's command line. Every option also reads a `CHITTY_*` environment variable, so a
//! systemd `EnvironmentFile=` (/etc/default/chitty) can set it. The same definition produces the
//! man page and the shell completions.

use crate::audit::{AuditConfig, DEFAULT_QUEUE};
use crate::hub::{HubConfig, RateLimit};
use crate::server::ServerConfig;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where chittyd puts its admin socket, and where chittyctl looks, unless told otherwise.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/chitty/admin.sock";

/// Where logs (and, under systemd, audit entries) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// journald when systemd started us with stderr on the journal, otherwise stderr.
    Auto,
    /// journald, with structured fields.
    Journal,
    /// Standard error, human-readable.
    Stderr,
}

/// The Chitty-Chat server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chittyd",
    version,
    about = "The Chitty-Chat server: Lamport-ordered group chat over gRPC",
    long_about = "The Chitty-Chat server. Participants open the gRPC Broadcast stream \
                  (chitty_chat.Chat), join with a username, chat and leave; every message carries \
                  a Lamport timestamp, and every participant sees every broadcast in the same \
                  order. Every event is written to an audit trail (JSON lines). Stop it with \
                  SIGTERM or SIGINT: participants are told, and it exits within the shutdown \
                  grace. SIGHUP reopens the audit file (for logrotate).",
    after_help = "Every option can also be set through the environment variable shown with it, \
                  for example in /etc/default/chitty when run by systemd."
)]
pub struct DaemonArgs {
    /// Address and port of the chat port (gRPC).
    #[arg(
        long,
        env = "CHITTY_LISTEN",
        default_value = "[::]:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// How long shutdown waits for participants' streams to end before closing them (e.g. 5s).
    #[arg(long, env = "CHITTY_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// Messages a participant may have waiting to be read; one that falls further behind is
    /// disconnected as a slow consumer, so it never delays anybody else.
    #[arg(long, env = "CHITTY_BACKLOG", default_value_t = HubConfig::default().backlog, value_name = "MESSAGES")]
    pub backlog: usize,

    /// Participants the server takes at once; further joins are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "CHITTY_MAX_PARTICIPANTS", default_value_t = HubConfig::default().max_participants, value_name = "N")]
    pub max_participants: usize,

    /// Messages per second a participant may send, sustained (token bucket); 0 means no limit.
    /// Messages over it are refused with a private notice.
    #[arg(
        long,
        env = "CHITTY_RATE_LIMIT",
        default_value_t = 5.0,
        value_name = "PER_SECOND"
    )]
    pub rate_limit: f64,

    /// Messages a participant may send at once before the rate limit applies.
    #[arg(
        long,
        env = "CHITTY_RATE_BURST",
        default_value_t = 10,
        value_name = "MESSAGES"
    )]
    pub rate_burst: u32,

    /// Refused messages within 10 s that count as a flood: the sender is disconnected
    /// (RESOURCE_EXHAUSTED, "flooding").
    #[arg(
        long,
        env = "CHITTY_FLOOD_LIMIT",
        default_value_t = 50,
        value_name = "MESSAGES"
    )]
    pub flood_limit: u32,

    /// A gRPC stream that has not joined after this long is closed (DEADLINE_EXCEEDED).
    #[arg(long, env = "CHITTY_JOIN_DEADLINE", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub join_deadline: Duration,

    /// How often a quiet WebSocket peer is pinged; one that answers nothing for twice this
    /// long is presumed dead and its leave is announced.
    #[arg(long, env = "CHITTY_KEEPALIVE", default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub keepalive: Duration,

    /// Largest frame accepted from a client, in bytes; larger ones end that client's stream.
    #[arg(
        long,
        env = "CHITTY_MAX_FRAME",
        default_value_t = 4096,
        value_name = "BYTES"
    )]
    pub max_frame: usize,

    /// Append the audit trail (one JSON object per line) to this file; "-" is standard output,
    /// "none" turns the file off. Default: standard output when run by hand, none when logging to
    /// the journal (which gets every record as a structured entry).
    #[arg(long, env = "CHITTY_AUDIT_LOG", value_name = "PATH")]
    pub audit_log: Option<PathBuf>,

    /// Include message text in audit records (it is personal data; off by default: records
    /// always carry the length).
    #[arg(long, env = "CHITTY_AUDIT_TEXT")]
    pub audit_text: bool,

    /// Do not send audit records to the journal even when logging there.
    #[arg(long, env = "CHITTY_NO_AUDIT_JOURNAL")]
    pub no_audit_journal: bool,

    /// Audit records that may wait for the writer; beyond it records are counted as dropped
    /// (and the drop itself is recorded) rather than slowing chat down.
    #[arg(long, env = "CHITTY_AUDIT_QUEUE", default_value_t = DEFAULT_QUEUE, value_name = "RECORDS")]
    pub audit_queue: usize,

    /// The admin socket (for chittyctl), created mode 0660; "none" serves no admin interface.
    /// A socket left by a crashed chittyd is replaced; one a running chittyd answers on is not.
    /// If the default cannot be created (running by hand without permission for /run/chitty),
    /// chittyd warns and runs without it; a path given explicitly must work.
    #[arg(long, env = "CHITTY_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics (off by default).
    #[arg(long, env = "CHITTY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Where logs go.
    #[arg(long, env = "CHITTY_LOG_TARGET", value_enum, default_value_t = LogTarget::Auto)]
    pub log_target: LogTarget,

    /// Log filter, in tracing's EnvFilter syntax (e.g. info, debug, chitty=debug).
    #[arg(
        long,
        env = "CHITTY_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
}

impl DaemonArgs {
    /// Whether logs go to the journal.
    pub fn journal(&self) -> bool {
        match self.log_target {
            LogTarget::Auto => crate::systemd::stderr_is_journal(),
            LogTarget::Journal => true,
            LogTarget::Stderr => false,
        }
    }

    /// The server configuration these options describe.
    pub fn server_config(&self) -> ServerConfig {
        let journal = self.journal();
        let file = match &self.audit_log {
            Some(p) if p.as_os_str() == "none" => None,
            Some(p) => Some(p.clone()),
            None if journal => None,
            None => Some(PathBuf::from("-")),
        };
        ServerConfig {
            listen: self.listen,
            shutdown_grace: self.shutdown_grace,
            max_frame: self.max_frame,
            hub: HubConfig {
                backlog: self.backlog,
                max_participants: self.max_participants,
                rate: (self.rate_limit > 0.0).then_some(RateLimit {
                    per_second: self.rate_limit,
                    burst: self.rate_burst.max(1),
                    flood: self.flood_limit.max(1),
                }),
                join_deadline: self.join_deadline,
                keepalive: self.keepalive,
            },
            audit: AuditConfig {
                file,
                journal: journal && !self.no_audit_journal,
                text: self.audit_text,
                queue: self.audit_queue,
            },
            admin_socket: match &self.admin_socket {
                Some(p) if p.as_os_str() == "none" => None,
                Some(p) => Some(p.clone()),
                None => Some(PathBuf::from(DEFAULT_ADMIN_SOCKET)),
            },
            admin_optional: self.admin_socket.is_none(),
            metrics_listen: self.metrics_listen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        DaemonArgs::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_original() {
        let args = DaemonArgs::try_parse_from(["chittyd", "--log-target", "stderr"]).unwrap();
        assert_eq!(args.listen.port(), 8080);
        let config = args.server_config();
        assert_eq!(config.audit.file, Some(PathBuf::from("-")));
        assert!(!config.audit.journal);
        let args = DaemonArgs::try_parse_from(["chittyd", "--audit-log", "none"]).unwrap();
        assert_eq!(args.server_config().audit.file, None);
    }
}
