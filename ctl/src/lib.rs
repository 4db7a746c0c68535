//! chittyctl: the admin client. Connects to chittyd's admin socket, runs one call, and prints the
//! answer for people (aligned text) or scripts (`--json`, stable field names). `chittyctl bench`
//! hands over to the load generator, the chitty-bench crate; `chittyctl tls-cert` ([`tls_cert`])
//! writes certificate files and talks to nobody.
//!
//! A package of its own beside the runtime library: it depends on the generator, which depends on
//! the library, so chittyd links neither.

pub mod cli;
mod nodes;
pub mod tls_cert;

use chitty::pb::admin::{self as pb, admin_client::AdminClient};
use chitty_bench as bench;
use cli::{CtlCli, CtlCommand};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};

/// Why chittyctl failed; each kind has its own exit status.
#[derive(Debug, Error)]
pub enum CtlError {
    /// The admin socket cannot be reached.
    #[error("cannot reach chittyd at {path}: {why}")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// What went wrong and what to check.
        why: String,
    },
    /// The participant does not exist.
    #[error("{0}")]
    NotFound(String),
    /// chittyd refused the request as invalid.
    #[error("{0}")]
    Invalid(String),
    /// chittyd cannot do it as it is configured (`cluster` on a single node).
    #[error("{0}")]
    Unsupported(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    /// The exit status for this error (see `chittyctl --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Failed(_) => 1,
            CtlError::Invalid(_) => 2,
            CtlError::Unreachable { .. } => 3,
            CtlError::NotFound(_) => 4,
            CtlError::Unsupported(_) => 5,
        }
    }
}

impl From<tonic::Status> for CtlError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::NotFound => CtlError::NotFound(s.message().to_owned()),
            tonic::Code::InvalidArgument => CtlError::Invalid(s.message().to_owned()),
            tonic::Code::FailedPrecondition => CtlError::Unsupported(s.message().to_owned()),
            // The action may still happen (chittyd says so in its message): not "answered
            // Unavailable", which would read as chittyd being down.
            tonic::Code::Unavailable => {
                CtlError::Failed(format!("chittyd could not confirm it: {}", s.message()))
            }
            _ => CtlError::Failed(format!("chittyd answered {:?}: {}", s.code(), s.message())),
        }
    }
}

/// Why connecting to an admin socket failed, and what to check.
fn reason(e: &io::Error) -> (String, &'static str) {
    match e.kind() {
        io::ErrorKind::NotFound => (
            "no such socket".to_owned(),
            "is chittyd running (systemctl status chitty), and is this its --admin-socket?",
        ),
        io::ErrorKind::PermissionDenied => (
            "permission denied".to_owned(),
            "run as root or as a member of the socket's group (chitty-admin for the packaged \
             service)",
        ),
        io::ErrorKind::ConnectionRefused => (
            "nobody is listening (a stale socket)".to_owned(),
            "is chittyd running?",
        ),
        _ => (e.to_string(), "is chittyd running?"),
    }
}

fn unreachable(path: &Path, e: &io::Error) -> CtlError {
    let (reason, hint) = reason(e);
    CtlError::Unreachable {
        path: path.to_owned(),
        why: format!("{reason}; {hint}"),
    }
}

/// Connects to the first of `paths` that answers. When none does, the error names each with
/// its reason, and the first one's hint (the service's socket comes first).
pub async fn connect_any(paths: &[PathBuf]) -> Result<AdminClient<Channel>, CtlError> {
    let mut failed = Vec::new();
    for path in paths {
        match tokio::net::UnixStream::connect(path).await {
            Ok(probe) => {
                drop(probe);
                return connect(path).await;
            }
            Err(e) => failed.push((path, e)),
        }
    }
    let Some(((first, e), others)) = failed.split_first() else {
        return Err(CtlError::Failed("no admin socket to try".into()));
    };
    let (reason1, hint) = reason(e);
    let mut why = reason1;
    for (path, e) in others {
        why.push_str(&format!(", nor at {}: {}", path.display(), reason(e).0));
    }
    why.push_str(&format!("; {hint}"));
    Err(CtlError::Unreachable {
        path: first.to_path_buf(),
        why,
    })
}

/// Connects to the admin socket, telling apart the reasons it may fail.
pub async fn connect(path: &Path) -> Result<AdminClient<Channel>, CtlError> {
    // A direct connect first, so the error names the real cause (tonic's would not).
    drop(
        tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| unreachable(path, &e))?,
    );
    let socket = path.to_owned();
    let channel = Endpoint::from_static("http://chittyd.admin")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .map_err(|e| CtlError::Unreachable {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    Ok(AdminClient::new(channel))
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: &CtlCli, out: &mut impl Write) -> Result<(), CtlError> {
    if let CtlCommand::Bench(args) = &cli.command {
        return bench::run(args, cli.json, out).await.map_err(|e| match e {
            bench::BenchError::Usage(m) => CtlError::Invalid(m),
            bench::BenchError::Connect { target, why } => CtlError::Unreachable {
                path: PathBuf::from(target),
                why,
            },
            bench::BenchError::Refused(m) => CtlError::Failed(m),
            e => CtlError::Failed(e.to_string()),
        });
    }
    if let CtlCommand::TlsCert(args) = &cli.command {
        return tls_cert::run(args, cli.json, out)
            .map(drop)
            .map_err(|e| match e {
                tls_cert::TlsCertError::Name { .. } => CtlError::Invalid(e.to_string()),
                e => CtlError::Failed(e.to_string()),
            });
    }
    let mut admin = connect_any(&cli.sockets()).await?;
    let written = match &cli.command {
        CtlCommand::Users => {
            let users = admin
                .list_users(pb::ListUsersRequest {})
                .await?
                .into_inner()
                .users;
            print_users(&users, cli.json, out)
        }
        CtlCommand::Kick { name, reason, ban } => {
            let (username, id) = match name.strip_prefix('#').map(str::parse::<u64>) {
                Some(Ok(id)) => (String::new(), id),
                Some(Err(_)) => {
                    return Err(CtlError::Invalid(format!(
                        "{name:?}: #ID needs a number, like #12"
                    )));
                }
                None => (name.clone(), 0),
            };
            let reply = admin
                .kick(pb::KickRequest {
                    username,
                    id,
                    reason: reason.clone().unwrap_or_default(),
                    ban_seconds: ban.map_or(0, |d| d.as_secs().max(1)),
                })
                .await?
                .into_inner();
            let id = reply.user.as_ref().map_or(0, |u| u.id);
            // By name or by #ID, the text names the participant once: `bob (#2)`, or
            // `#3 (not joined)` for a connection that never picked a name.
            let who = match reply.user.as_ref().map(|u| u.username.as_str()) {
                Some(username) if !username.is_empty() => format!("{username} (#{id})"),
                _ => format!("#{id} (not joined)"),
            };
            let ban_seconds = ban.map_or(0, |d| d.as_secs().max(1));
            warn(&reply.warning);
            if cli.json {
                writeln!(
                    out,
                    "{}",
                    json!({"kicked": name, "id": id, "reason": reason, "ban_seconds": ban_seconds})
                )
            } else if ban_seconds > 0 {
                writeln!(
                    out,
                    "kicked {who}; banned for {}",
                    human(Duration::from_secs(ban_seconds))
                )
            } else {
                writeln!(out, "kicked {who}")
            }
        }
        CtlCommand::Bans => {
            let bans = admin
                .list_bans(pb::ListBansRequest {})
                .await?
                .into_inner()
                .bans;
            print_bans(&bans, SystemTime::now(), cli.json, out)
        }
        CtlCommand::Unban { name } => {
            let reply = admin
                .unban(pb::UnbanRequest {
                    username: name.clone(),
                })
                .await?
                .into_inner();
            warn(&reply.warning);
            let lifted = reply
                .ban
                .map(|b| b.username)
                .unwrap_or_else(|| name.clone());
            if cli.json {
                writeln!(out, "{}", json!({"unbanned": lifted}))
            } else {
                writeln!(out, "lifted the ban on {lifted}")
            }
        }
        CtlCommand::Clock => {
            let c = admin.clock(pb::ClockRequest {}).await?.into_inner();
            print_clock(&c, cli.json, out)
        }
        CtlCommand::Cluster => {
            let nodes = admin
                .list_nodes(pb::ListNodesRequest {})
                .await?
                .into_inner();
            nodes::print(&nodes, cli.json, out)
        }
        CtlCommand::Stats => {
            let s = admin.stats(pb::StatsRequest {}).await?.into_inner();
            if cli.json {
                let map: serde_json::Map<_, _> = s
                    .metrics
                    .into_iter()
                    .map(|m| (m.name, json!(m.value)))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(map))
            } else {
                let text: Vec<_> = s
                    .metrics
                    .iter()
                    .map(|m| (m.name.as_str(), m.value.to_string()))
                    .collect();
                write_pairs(out, &text)
            }
        }
        CtlCommand::Bench(_) | CtlCommand::TlsCert(_) => Ok(()),
        CtlCommand::Announce { text } => {
            let reply = admin
                .announce(pb::AnnounceRequest { text: text.clone() })
                .await?
                .into_inner();
            if cli.json {
                writeln!(out, "{}", json!({"lamport": reply.lamport}))
            } else {
                writeln!(out, "announced at Lamport time {}", reply.lamport)
            }
        }
    };
    // A closed pipe (`chittyctl users | head`) is not a failure.
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(CtlError::Failed(format!("writing output: {e}")))
        }
        _ => Ok(()),
    }
}

fn print_clock(c: &pb::ClockResponse, json: bool, out: &mut impl Write) -> io::Result<()> {
    let lag = Duration::from_micros(c.lag_micros);
    if json {
        return writeln!(
            out,
            "{}",
            json!({"lamport": c.lamport, "uptime_seconds": c.uptime_seconds,
                   "participants": c.participants, "events": c.events, "node": c.node,
                   "applied_seq": c.applied_seq, "pending": c.pending,
                   "lag_seconds": lag.as_secs_f64()})
        );
    }
    let mut pairs = vec![
        ("Lamport time", c.lamport.to_string()),
        ("Uptime", human(Duration::from_secs(c.uptime_seconds))),
        ("Participants", c.participants.to_string()),
        ("Events", c.events.to_string()),
    ];
    if !c.node.is_empty() {
        pairs.extend([
            ("Node", c.node.clone()),
            ("Applied sequence", c.applied_seq.to_string()),
            ("Lag", nodes::lag(c.pending, lag)),
        ]);
    }
    write_pairs(out, &pairs)
}

/// chittyd's warning about an action that took effect but is not saved yet, on stderr.
fn warn(warning: &str) {
    if !warning.is_empty() {
        eprintln!("chittyctl: warning: {warning}");
    }
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn ago(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    human(SystemTime::now().duration_since(t).unwrap_or_default())
}

/// A duration in whole seconds, as people write it (`1h 2m 3s`).
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// How long is left, in its two largest units, as people say it: `in 2h 13m`, `in 45s`.
fn in_time(left: Duration) -> String {
    let s = left.as_secs();
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts = match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    };
    format!("in {parts}")
}

fn print_bans(
    bans: &[pb::Ban],
    now: SystemTime,
    json: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    let left = |b: &pb::Ban| {
        (UNIX_EPOCH + Duration::from_millis(b.until_ms.max(0) as u64))
            .duration_since(now)
            .unwrap_or_default()
    };
    if json {
        let list: Vec<_> = bans
            .iter()
            .map(|b| {
                json!({
                    "username": b.username,
                    "until": rfc3339(b.until_ms),
                    "seconds_left": left(b).as_secs(),
                    "since": rfc3339(b.since_ms),
                    "reason": b.reason,
                    "actor": b.actor,
                })
            })
            .collect();
        return writeln!(out, "{}", serde_json::Value::Array(list));
    }
    let mut rows = vec![["NAME", "UNTIL", "LEFT", "REASON", "BY"].map(str::to_owned)];
    for b in bans {
        rows.push([
            b.username.clone(),
            rfc3339(b.until_ms),
            in_time(left(b)),
            if b.reason.is_empty() {
                "-".to_owned()
            } else {
                b.reason.clone()
            },
            b.actor.clone(),
        ]);
    }
    write_table(out, &rows)?;
    match bans.len() {
        1 => writeln!(out, "1 ban"),
        n => writeln!(out, "{n} bans"),
    }
}

fn print_users(users: &[pb::User], json: bool, out: &mut impl Write) -> io::Result<()> {
    if json {
        let list: Vec<_> = users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "username": u.username,
                    "transport": u.transport,
                    "peer": u.peer,
                    "connected_since": rfc3339(u.connected_since_ms),
                    "joined_lamport": u.joined_lamport,
                    "sent": u.messages_sent,
                    "received": u.messages_received,
                    "backlog": u.backlog,
                    "last_activity": rfc3339(u.last_activity_ms),
                    "node": u.node,
                })
            })
            .collect();
        return writeln!(out, "{}", serde_json::Value::Array(list));
    }
    // The NODE column only in a cluster: a single chittyd's participants have no node.
    let clustered = users.iter().any(|u| !u.node.is_empty());
    let node = |cell: String| clustered.then_some(cell);
    let header = ["ID", "NAME"]
        .into_iter()
        .map(str::to_owned)
        .chain(node("NODE".to_owned()))
        .chain(
            [
                "TRANSPORT",
                "PEER",
                "CONNECTED",
                "JOINED",
                "SENT",
                "RECEIVED",
                "BACKLOG",
                "IDLE",
            ]
            .map(str::to_owned),
        );
    let mut rows = vec![header.collect::<Vec<_>>()];
    for u in users {
        let mut row = vec![
            u.id.to_string(),
            if u.username.is_empty() {
                "-".to_owned()
            } else {
                u.username.clone()
            },
        ];
        row.extend(node(u.node.clone()));
        row.extend([
            u.transport.clone(),
            u.peer.clone(),
            ago(u.connected_since_ms),
            format!("L{}", u.joined_lamport),
            u.messages_sent.to_string(),
            u.messages_received.to_string(),
            u.backlog.to_string(),
            ago(u.last_activity_ms),
        ]);
        rows.push(row);
    }
    write_table(out, &rows)?;
    writeln!(out, "{} connected", users.len())
}

/// Writes rows with every column padded to its widest cell.
fn write_table<R: AsRef<[String]>>(out: &mut impl Write, rows: &[R]) -> io::Result<()> {
    let n = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0; n];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let row = row.as_ref();
        let mut line = String::new();
        for (i, (cell, &w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn write_pairs(out: &mut impl Write, pairs: &[(&str, String)]) -> io::Result<()> {
    let rows: Vec<[String; 2]> = pairs
        .iter()
        .map(|(k, v)| [format!("{k}:"), v.clone()])
        .collect();
    write_table(out, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_as_people_say_it() {
        let d = Duration::from_secs;
        assert_eq!(in_time(d(0)), "in 0s");
        assert_eq!(in_time(d(45)), "in 45s");
        assert_eq!(in_time(d(5 * 60 + 20)), "in 5m 20s");
        assert_eq!(in_time(d(2 * 3600 + 13 * 60 + 59)), "in 2h 13m");
        assert_eq!(in_time(d(3 * 86_400 + 4 * 3600 + 7)), "in 3d 4h");
    }

    #[test]
    fn bans_print_as_a_table_and_as_json() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: u64| (1_800_000_000 + secs) as i64 * 1000;
        let bans = [
            pb::Ban {
                username: "Bob".into(),
                until_ms: at(2 * 3600 + 13 * 60),
                since_ms: at(0) - 60_000,
                reason: "spamming".into(),
                actor: "uid=0 pid=42".into(),
            },
            pb::Ban {
                username: "eve".into(),
                until_ms: at(90),
                since_ms: at(0),
                reason: String::new(),
                actor: "uid=1000 pid=7".into(),
            },
        ];
        let mut text = Vec::new();
        print_bans(&bans, now, false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME  UNTIL                 LEFT       REASON    BY",
                "Bob   2027-01-15T10:13:00Z  in 2h 13m  spamming  uid=0 pid=42",
                "eve   2027-01-15T08:01:30Z  in 1m 30s  -         uid=1000 pid=7",
                "2 bans",
            ]
        );
        let mut json = Vec::new();
        print_bans(&bans, now, true, &mut json).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json[0]["username"], "Bob");
        assert_eq!(json[0]["until"], "2027-01-15T10:13:00Z");
        assert_eq!(json[0]["seconds_left"], 2 * 3600 + 13 * 60);
        assert_eq!(json[1]["reason"], "");
    }
}
