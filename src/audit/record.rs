//! One audit record: what happened, at which Lamport time, to whom, and why. Its JSON field
//! names are a stable interface (operators' jq filters use them); the journal gets the same
//! fields with a `CHITTY_` prefix ([`super::journal`]).

use serde::Serialize;
use std::time::SystemTime;

/// One audit record. Field names are a stable interface: operators' jq filters use them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// The Lamport time of the event.
    pub lamport: u64,
    /// When the event happened (RFC 3339, UTC, microseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: Option<SystemTime>,
    /// What happened: join, leave, message, direct, reject, kick, announce, …
    pub event: &'static str,
    /// The participant's username, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The session's numeric id (the user id of the one sequence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// The participant's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// grpc or websocket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'static str>,
    /// Why: how a participant left, why input was rejected, an operator's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Length of the message text in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<usize>,
    /// The message text, only with `--audit-text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The recipient's id, for direct messages and actions on a participant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<u64>,
    /// The recipient's username, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_user: Option<String>,
    /// Who did it, for admin actions: `uid=0 pid=1234` from the admin socket's peer credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A count: records dropped (audit_dropped), participants (shutdown), ban seconds (kick).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// In a cluster, the node the event entered through (the one that audits it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// In a cluster, the event's stream sequence: its place in the one order, to merge the
    /// nodes' trails by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

fn rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    let t = t.unwrap_or_else(SystemTime::now);
    s.collect_str(&humantime::format_rfc3339_micros(t))
}

impl Record {
    /// A record of `event` at Lamport time `lamport`, stamped now.
    pub fn new(lamport: u64, event: &'static str) -> Self {
        Record {
            lamport,
            time: Some(SystemTime::now()),
            event,
            ..Record::default()
        }
    }

    /// A readable one-line summary, used as the journal's MESSAGE.
    pub fn summary(&self) -> String {
        let mut s = format!("L{} {}", self.lamport, self.event);
        if let Some(user) = &self.user {
            s.push(' ');
            s.push_str(user);
        }
        if let Some(session) = self.session {
            s.push_str(&format!(" #{session}"));
        }
        if let Some(recipient) = self.recipient {
            s.push_str(&format!(" -> #{recipient}"));
        }
        if let Some(reason) = &self.reason {
            s.push_str(&format!(" ({reason})"));
        }
        if let Some(actor) = &self.actor {
            s.push_str(&format!(" by {actor}"));
        }
        s
    }
}
