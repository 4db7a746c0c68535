//! chittyd's command line. Every option also reads a `CHITTY_*` environment variable, so a
//! systemd `EnvironmentFile=` (/etc/default/chitty) can set it. The same definition produces the
//! man page and the shell completions.

mod cluster;

pub use cluster::ClusterArgs;

use crate::audit::{AuditConfig, DEFAULT_QUEUE};
use crate::hub::{HubConfig, RateLimit};
use crate::server::ServerConfig;
use crate::server::limits::ConnLimits;
use crate::server::listen::ListenAddr;
use crate::server::tls::TlsFiles;
use crate::state::StateConfig;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Where chittyd puts its admin socket, and where chittyctl looks, unless told otherwise.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/chitty/admin.sock";

/// Where chittyd run by hand puts its admin socket when it may not create the default, and
/// where chittyctl looks next: `$XDG_RUNTIME_DIR/chitty/admin.sock`, the user's own runtime
/// directory (`None` without one).
pub fn user_admin_socket() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    dir.is_absolute()
        .then(|| dir.join("chitty").join("admin.sock"))
}

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
                  for example in /etc/default/chitty when run by systemd.\n\n\
                  Exit status: 0 stopped cleanly, 1 a failure that may pass (a port still in use), \
                  78 a configuration error (a bad option or value, unusable files or paths), which \
                  chitty.service does not restart on."
)]
pub struct DaemonArgs {
    /// Where the chat port (gRPC and WebSocket) listens: PORT or :PORT (every address, IPv4 and
    /// IPv6), HOST:PORT with a host name (every address it resolves to: localhost:9000 is
    /// usually 127.0.0.1 and ::1), IPv4:PORT (0.0.0.0:8080) or [IPv6]:PORT ([::1]:8080).
    #[arg(
        long,
        env = "CHITTY_LISTEN",
        default_value = "[::]:8080",
        value_name = "ADDR"
    )]
    pub listen: ListenAddr,

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
    /// chittyd uses $XDG_RUNTIME_DIR/chitty/admin.sock, where chittyctl looks next, or else
    /// runs without one; a path given explicitly must work. At exit chittyd removes the socket
    /// and the directories it created for it.
    #[arg(long, env = "CHITTY_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,

    /// Connections one client address may hold open at once; more are closed as soon as they
    /// are accepted (and counted: chittyctl stats). Behind a reverse proxy every client has the
    /// proxy's address: raise it or set 0 (no limit). IPv4 clients of a dual-stack listener
    /// count as their IPv4 address.
    #[arg(long, env = "CHITTY_MAX_CONNECTIONS_PER_IP", default_value_t = ConnLimits::default().max_per_ip, value_name = "N")]
    pub max_connections_per_ip: u32,

    /// New connections one client address may open per --new-connections-window, and the most
    /// it may open in one burst; more are closed as soon as they are accepted. A client that
    /// reconnects needs one; a script opening connections in a loop is stopped. 0: no limit
    /// (load tests from one machine need it).
    #[arg(long, env = "CHITTY_NEW_CONNECTIONS_PER_IP", default_value_t = ConnLimits::default().new_per_ip, value_name = "N")]
    pub new_connections_per_ip: u32,

    /// The time window of --new-connections-per-ip (e.g. 1s, 1m).
    #[arg(long, env = "CHITTY_NEW_CONNECTIONS_WINDOW", default_value = "1s", value_parser = parse_window, value_name = "DURATION")]
    pub new_connections_window: Duration,

    /// How long a new connection has to finish its TLS handshake and send its first request
    /// (the gRPC call or the WebSocket upgrade); one that has not is closed, so sockets that
    /// connect and say nothing do not hold descriptors (e.g. 10s).
    #[arg(long, env = "CHITTY_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_positive, value_name = "DURATION")]
    pub handshake_timeout: Duration,

    /// Serve the chat port (gRPC and WebSocket) over TLS with this certificate chain (PEM, leaf
    /// first); needs --tls-key. `chittyctl tls-cert` writes one, with the CA certificate clients
    /// trust. A CA certificate is refused: clients refuse it as a server's own. Clients then
    /// connect with `chitty chat --tls` (and `--ca FILE` for a private CA) or wss://. Without it
    /// the port speaks plain TCP, fine on localhost or behind a TLS-terminating proxy.
    #[arg(
        long,
        env = "CHITTY_TLS_CERT",
        requires = "tls_key",
        value_name = "PATH"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). Readable by chittyd only.
    #[arg(
        long,
        env = "CHITTY_TLS_KEY",
        requires = "tls_cert",
        value_name = "PATH"
    )]
    pub tls_key: Option<PathBuf>,

    /// Keep the Lamport clock, the next user id and the bans here (state.json), so that they
    /// survive a restart and a crash; "none" keeps nothing (every start is at Lamport time 0,
    /// without bans). Default: $XDG_STATE_HOME/chitty (~/.local/state/chitty) when run by hand,
    /// which chittyd may run without, with a warning, if it cannot be created; /var/lib/chitty
    /// under the packaged service. A corrupt state file, or one written by a newer chittyd, stops
    /// chittyd at start, naming the file.
    #[arg(long, env = "CHITTY_STATE_DIR", value_name = "PATH")]
    pub state_dir: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics (off by default); ADDR in the forms of
    /// --listen, e.g. localhost:9100.
    #[arg(long, env = "CHITTY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<ListenAddr>,

    /// Where logs go.
    #[arg(long, env = "CHITTY_LOG_TARGET", value_enum, default_value_t = LogTarget::Auto)]
    pub log_target: LogTarget,

    /// Log filter, in tracing's EnvFilter syntax (e.g. info, debug, chitty=debug).
    #[arg(
        long,
        env = "CHITTY_LOG",
        default_value = "info",
        value_parser = parse_filter,
        value_name = "FILTER"
    )]
    pub log: String,

    /// The cluster options (`--cluster` and its companions).
    #[command(flatten)]
    pub cluster: ClusterArgs,
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
            listen: self.listen.clone(),
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
            admin_fallback: self
                .admin_socket
                .is_none()
                .then(user_admin_socket)
                .flatten(),
            metrics_listen: self.metrics_listen.clone(),
            limits: ConnLimits {
                max_per_ip: self.max_connections_per_ip,
                new_per_ip: self.new_connections_per_ip,
                window: self.new_connections_window,
            },
            handshake_timeout: self.handshake_timeout,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            state: match &self.state_dir {
                Some(p) if p.as_os_str() == "none" => None,
                Some(p) => Some(StateConfig::new(p)),
                None => {
                    default_state_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
                        .map(StateConfig::new)
                }
            },
            state_optional: self.state_dir.is_none(),
            // Set from `self.cluster.config()`, which can fail (see chittyd's `run`).
            cluster: None,
        }
    }
}

/// The state directory of a chittyd run by hand: `$XDG_STATE_HOME/chitty`, or
/// `$HOME/.local/state/chitty` (the XDG Base Directory default); `None` when neither is set (or
/// they are not absolute paths, which the specification says to ignore).
pub fn default_state_dir(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    xdg_state_home
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".local/state")))
        .map(|dir| dir.join("chitty"))
}

/// A log filter tracing understands (a typo is a configuration error, not silently "info").
fn parse_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a log filter: {e} (e.g. info, debug, chitty=debug)"))
}

/// A duration that is not zero (a zero timeout would close every connection).
fn parse_positive(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A window of at least a millisecond (a rate per nothing means nothing).
fn parse_window(s: &str) -> Result<Duration, String> {
    match parse_positive(s)? {
        d if d < Duration::from_millis(1) => Err("must be at least 1ms".into()),
        d => Ok(d),
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
        assert_eq!(args.listen, "[::]:8080".parse().unwrap());
        let config = args.server_config();
        assert_eq!(config.audit.file, Some(PathBuf::from("-")));
        assert!(!config.audit.journal);
        let args = DaemonArgs::try_parse_from(["chittyd", "--audit-log", "none"]).unwrap();
        assert_eq!(args.server_config().audit.file, None);
    }

    #[test]
    fn edge_defaults_and_options() {
        let args = DaemonArgs::try_parse_from(["chittyd"]).unwrap();
        let config = args.server_config();
        assert_eq!(config.limits, ConnLimits::default());
        assert_eq!(config.handshake_timeout, Duration::from_secs(10));
        assert_eq!(config.tls, None);
        let args = DaemonArgs::try_parse_from([
            "chittyd",
            "--max-connections-per-ip=3",
            "--new-connections-per-ip=0",
            "--new-connections-window=1m",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
        ])
        .unwrap();
        let config = args.server_config();
        assert_eq!(config.limits.max_per_ip, 3);
        assert_eq!(config.limits.new_per_ip, 0);
        assert_eq!(config.limits.window, Duration::from_secs(60));
        assert_eq!(config.tls.unwrap().key, PathBuf::from("k.pem"));
        assert!(DaemonArgs::try_parse_from(["chittyd", "--tls-cert=c.pem"]).is_err());
        assert!(DaemonArgs::try_parse_from(["chittyd", "--handshake-timeout=0s"]).is_err());
    }

    #[test]
    fn the_state_directory() {
        let state = |args: &[&str]| {
            let mut argv = vec!["chittyd"];
            argv.extend(args);
            let config = DaemonArgs::try_parse_from(argv).unwrap().server_config();
            (config.state.map(|s| s.dir), config.state_optional)
        };
        assert_eq!(
            state(&["--state-dir", "/srv/chitty"]),
            (Some(PathBuf::from("/srv/chitty")), false),
            "given: it must work"
        );
        assert_eq!(state(&["--state-dir", "none"]), (None, false));
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            default_state_dir(os("/x/state"), os("/home/a")),
            Some(PathBuf::from("/x/state/chitty"))
        );
        assert_eq!(
            default_state_dir(None, os("/home/a")),
            Some(PathBuf::from("/home/a/.local/state/chitty"))
        );
        assert_eq!(
            default_state_dir(os("relative"), os("/home/a")),
            Some(PathBuf::from("/home/a/.local/state/chitty")),
            "a relative XDG_STATE_HOME is ignored"
        );
        assert_eq!(default_state_dir(None, None), None);
    }
}
