//! Audit records as structured journal entries: CHITTY_EVENT, CHITTY_LAMPORT, CHITTY_USER, …
//! beside a readable MESSAGE.
//!
//! An entry is a tracing event on [`AUDIT_TARGET`]; chittyd's journald layer (set up with no
//! field prefix) turns each field into a journal field. It lives here, not in `systemd`, because
//! it is the audit trail's third sink: `systemd` knows nothing of records, and the audit writer
//! needs nothing of `systemd`.

use super::Record;

/// The tracing target of audit entries, so a subscriber can tell them from chittyd's own logs
/// (whose targets are module paths such as `chitty::audit::writer`).
pub const AUDIT_TARGET: &str = "chitty::audit";

/// Emits one record as a journal entry; absent fields are left out. Called on the audit
/// writer's thread, since the journald layer's send is a blocking socket write.
pub fn emit(r: &Record) {
    tracing::info!(
        target: AUDIT_TARGET,
        CHITTY_EVENT = r.event,
        CHITTY_LAMPORT = r.lamport,
        CHITTY_USER = r.user.as_deref(),
        CHITTY_SESSION = r.session,
        CHITTY_PEER = r.peer.as_deref(),
        CHITTY_TRANSPORT = r.transport,
        CHITTY_REASON = r.reason.as_deref(),
        CHITTY_LEN = r.len,
        CHITTY_TEXT = r.text.as_deref(),
        CHITTY_RECIPIENT = r.recipient,
        CHITTY_RECIPIENT_USER = r.recipient_user.as_deref(),
        CHITTY_ACTOR = r.actor.as_deref(),
        CHITTY_COUNT = r.count,
        CHITTY_NODE = r.node.as_deref(),
        CHITTY_SEQ = r.seq,
        "{}",
        r.summary()
    );
}
