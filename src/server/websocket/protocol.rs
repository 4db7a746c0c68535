//! The gateway's JSON protocol: what a client's text frame means to the hub, and how a
//! session's end becomes a WebSocket close code and reason.

use crate::hub::outbox::Ending;
use crate::hub::{Event, SessionError, SessionHandle};
use serde::Deserialize;
use std::borrow::Cow;

/// A client frame. Unknown fields are ignored so clients may add their own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Incoming<'a> {
    /// The recipient's user id; 0 or absent broadcasts (room members only).
    #[serde(default)]
    pub recipient_id: u64,
    /// The text (borrowed from the frame unless it had escapes to undo).
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    /// The sender's Lamport time, for clients that keep one.
    #[serde(default)]
    pub timestamp: u64,
}

/// Why a text frame is not a valid client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// What was wrong, for the error frame.
    pub reason: String,
    /// The recipient the frame named, if it had a usable one.
    pub recipient: u64,
}

/// Parses one client text frame.
pub fn parse(text: &str) -> Result<Incoming<'_>, FrameError> {
    // serde would also take an array of the fields in order; the protocol has objects only.
    if let Some(first) = text.trim_start().chars().next()
        && first != '{'
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    {
        return Err(FrameError {
            reason: "invalid frame: expected a JSON object like {\"recipient_id\": 2, \"message\": \"hi\"}".into(),
            recipient: 0,
        });
    }
    serde_json::from_str::<Incoming>(text).map_err(|e| {
        let recipient = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("recipient_id").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        let reason = if e.is_syntax() || e.is_eof() {
            format!("malformed JSON: {e}")
        } else {
            format!("invalid frame: {e}")
        };
        FrameError { reason, recipient }
    })
}

/// A request frame: `{"request": "roster"}` asks who is online (answered with a frame of kind
/// "roster"). A frame with a `request` field is a request, whatever else it carries.
#[derive(Debug, Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    request: Cow<'a, str>,
    #[serde(default)]
    timestamp: u64,
}

/// Turns one text frame into an event for the hub.
pub(super) fn handle_text(session: &mut SessionHandle, text: &str) {
    // Messages are the common frame: only a frame that names a request is parsed as one.
    if text.contains("\"request\"")
        && let Ok(r) = serde_json::from_str::<Request>(text)
    {
        if r.request == "roster" {
            session.handle(r.timestamp, Event::Roster);
        } else {
            let reason = format!(
                "unknown request {:?}: the requests are \"roster\"",
                r.request
            );
            session.handle(
                0,
                Event::Invalid {
                    reason: &reason,
                    recipient: 0,
                },
            );
        }
        return;
    }
    match parse(text) {
        Ok(m) => {
            session.handle(
                m.timestamp,
                Event::Message {
                    username: "",
                    text: &m.message,
                    recipient: m.recipient_id,
                },
            );
        }
        Err(e) => {
            session.handle(
                0,
                Event::Invalid {
                    reason: &e.reason,
                    recipient: e.recipient,
                },
            );
        }
    }
}

/// The one place a session's ending becomes a WebSocket close code and reason.
pub(super) fn close_of(ending: &Ending) -> (u16, String) {
    let e = match ending {
        Ending::Clean => return (1000, "bye".into()),
        Ending::Error(e) => e,
    };
    let code = match e {
        SessionError::FrameTooLarge(_) => 1009,
        SessionError::BadFrame(_) => 1007,
        SessionError::Protocol(_) => 1002,
        SessionError::ShuttingDown => 1001,
        SessionError::Full(_) | SessionError::Unavailable(_) => 1013,
        _ => 1008,
    };
    (code, e.to_string())
}
