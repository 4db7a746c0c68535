//! The wire forms of what the hub delivers: protobuf `ChatMessage` for gRPC participants and a
//! JSON object for WebSocket users. The hub encodes each delivery once per form in use, never
//! once per recipient; every recipient's outbox gets a reference-counted copy of the same bytes.

use super::rules::{MAX_MESSAGE_CHARS, SERVER_NAME};
use crate::pb::{self, chat_message::Kind};
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use serde::Serialize;

/// One delivery, borrowed from the hub's state while it holds the lock.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Lamport time assigned by the hub.
    pub lamport: u64,
    /// What it is.
    pub kind: Kind,
    /// Sender's username, or `SERVER`.
    pub from: &'a str,
    /// The id of the participant it is about (sender, or who joined or left); 0 for none.
    pub sender_id: u64,
    /// The recipient of a direct message (or of a failed one, on errors); 0 for none.
    pub recipient_id: u64,
    /// Who joined or left, on join and leave notices.
    pub subject: &'a str,
    /// The text.
    pub text: &'a str,
    /// Participants in the broadcast room right after the event.
    pub participants: u32,
}

/// Which form a session reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// gRPC `Broadcast` stream: protobuf frames.
    Grpc,
    /// WebSocket gateway: JSON text frames.
    #[serde(rename = "websocket")]
    WebSocket,
}

impl Transport {
    /// The name used in logs, audit records and the admin interface.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::WebSocket => "websocket",
        }
    }

    /// Its position in per-transport tables.
    pub(crate) fn index(self) -> usize {
        match self {
            Transport::Grpc => 0,
            Transport::WebSocket => 1,
        }
    }
}

impl<'a> Delivery<'a> {
    /// Encodes the delivery in the form `transport` reads.
    pub fn encode(&self, transport: Transport) -> Bytes {
        match transport {
            Transport::Grpc => self.protobuf(),
            Transport::WebSocket => self.json(),
        }
    }

    /// The protobuf encoding of `chitty_chat.ChatMessage`, written field by field so that no
    /// owned message has to be built first. Zero values are omitted, as proto3 requires.
    pub fn protobuf(&self) -> Bytes {
        fn varint_len(v: u64) -> usize {
            if v == 0 { 0 } else { 1 + encoded_len_varint(v) }
        }
        fn str_len(s: &str) -> usize {
            if s.is_empty() {
                0
            } else {
                1 + encoded_len_varint(s.len() as u64) + s.len()
            }
        }
        let kind = self.kind as i32 as u64;
        let len = varint_len(self.lamport)
            + str_len(self.from)
            + str_len(self.text)
            + varint_len(kind)
            + varint_len(self.sender_id)
            + varint_len(self.recipient_id)
            + str_len(self.subject)
            + varint_len(u64::from(self.participants));
        let mut buf = BytesMut::with_capacity(len);
        let varint = |tag: u32, v: u64, buf: &mut BytesMut| {
            if v != 0 {
                encode_key(tag, WireType::Varint, buf);
                encode_varint(v, buf);
            }
        };
        let string = |tag: u32, s: &str, buf: &mut BytesMut| {
            if !s.is_empty() {
                encode_key(tag, WireType::LengthDelimited, buf);
                encode_varint(s.len() as u64, buf);
                buf.put_slice(s.as_bytes());
            }
        };
        varint(1, self.lamport, &mut buf);
        string(2, self.from, &mut buf);
        string(3, self.text, &mut buf);
        varint(4, kind, &mut buf);
        varint(5, self.sender_id, &mut buf);
        varint(6, self.recipient_id, &mut buf);
        string(7, self.subject, &mut buf);
        varint(8, u64::from(self.participants), &mut buf);
        debug_assert_eq!(buf.len(), len);
        buf.freeze()
    }

    /// The JSON object sent to WebSocket users. The fields of the basic protocol (`sender_id`,
    /// `message`; `error` and `recipient_id` on errors) keep their names; the rest are additions.
    pub fn json(&self) -> Bytes {
        let nonzero = |v: u64| (v != 0).then_some(v);
        let nonempty = |s: &'a str| (!s.is_empty()).then_some(s);
        let error = self.kind == Kind::Error;
        let frame = JsonFrame {
            kind: kind_name(self.kind),
            timestamp: self.lamport,
            sender_id: nonzero(self.sender_id),
            recipient_id: nonzero(self.recipient_id),
            username: nonempty(self.from),
            subject: nonempty(self.subject),
            message: (!error).then_some(self.text),
            error: error.then_some(self.text),
            participants: matches!(self.kind, Kind::Join | Kind::Leave)
                .then_some(self.participants),
            user_id: (self.kind == Kind::Welcome).then_some(self.sender_id),
        };
        let mut out =
            Vec::with_capacity(128 + self.from.len() + self.subject.len() + self.text.len());
        // Serializing a struct of strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &frame);
        Bytes::from(out)
    }
}

/// The lowercase name of a kind, as JSON frames and audit records spell it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Message => "message",
        Kind::Join => "join",
        Kind::Leave => "leave",
        Kind::Notice => "notice",
        Kind::Error => "error",
        Kind::Direct => "direct",
        Kind::Welcome => "welcome",
        Kind::Shutdown => "shutdown",
        Kind::Roster => "roster",
    }
}

/// What the server offers beyond the original protocol; the WELCOME lists it.
pub const CAPABILITIES: [&str; 2] = ["direct", "roster"];

/// The most sessions a ROSTER lists: enough for any person to read, small enough for one frame.
pub const MAX_ROSTER: usize = 1000;

/// A session's first frame (kind WELCOME): its user id, and what the server offers and allows,
/// so a client can pace itself and knows what it may ask before it asks. Rare (one per
/// session), so it is built as an owned message.
pub(crate) fn welcome(
    lamport: u64,
    id: u64,
    participants: u32,
    config: &super::HubConfig,
    transport: Transport,
) -> Bytes {
    let text = format!("Welcome to Chitty-Chat: you are user {id}");
    let rate = config.rate;
    let info = pb::ServerInfo {
        capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        rate_per_second: rate.map_or(0.0, |r| r.per_second),
        rate_burst: rate.map_or(0, |r| r.burst),
        flood_limit: rate.map_or(0, |r| r.flood),
        max_message_chars: MAX_MESSAGE_CHARS as u32,
    };
    match transport {
        Transport::Grpc => Bytes::from(
            pb::ChatMessage {
                timestamp: lamport,
                username: SERVER_NAME.to_owned(),
                message: text,
                kind: Kind::Welcome as i32,
                sender_id: id,
                recipient_id: id,
                participants,
                server: Some(info),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        Transport::WebSocket => json(&serde_json::json!({
            "kind": "welcome",
            "timestamp": lamport,
            "sender_id": id,
            "recipient_id": id,
            "user_id": id,
            "username": SERVER_NAME,
            "message": text,
            "participants": participants,
            "server": {
                "capabilities": info.capabilities,
                "rate_per_second": info.rate_per_second,
                "rate_burst": info.rate_burst,
                "flood_limit": info.flood_limit,
                "max_message_chars": info.max_message_chars,
            },
        })),
    }
}

/// One session as a ROSTER lists it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listed<'a> {
    pub id: u64,
    pub name: &'a str,
    pub transport: Transport,
}

/// The answer to a roster request (kind ROSTER), for the asker alone.
pub(crate) fn roster(
    lamport: u64,
    listed: &[Listed<'_>],
    participants: u32,
    transport: Transport,
) -> Bytes {
    let text = format!("{} online", listed.len());
    match transport {
        Transport::Grpc => Bytes::from(
            pb::ChatMessage {
                timestamp: lamport,
                username: SERVER_NAME.to_owned(),
                message: text,
                kind: Kind::Roster as i32,
                participants,
                roster: listed
                    .iter()
                    .map(|l| pb::Participant {
                        id: l.id,
                        username: l.name.to_owned(),
                        transport: l.transport.as_str().to_owned(),
                    })
                    .collect(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        Transport::WebSocket => {
            let users: Vec<_> = listed
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "id": l.id,
                        "username": l.name,
                        "transport": l.transport.as_str(),
                    })
                })
                .collect();
            json(&serde_json::json!({
                "kind": "roster",
                "timestamp": lamport,
                "username": SERVER_NAME,
                "message": text,
                "participants": participants,
                "users": users,
            }))
        }
    }
}

fn json(v: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

#[derive(Serialize)]
struct JsonFrame<'a> {
    kind: &'static str,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<u32>,
    /// On the welcome frame: the id the server assigned to this connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;
    use prost::Message;

    fn sample(kind: Kind) -> Delivery<'static> {
        Delivery {
            lamport: 300,
            kind,
            from: "alice",
            sender_id: 7,
            recipient_id: 0,
            subject: "",
            text: "héllo",
            participants: 2,
        }
    }

    #[test]
    fn protobuf_matches_prost() {
        for kind in [Kind::Message, Kind::Join, Kind::Direct, Kind::Error] {
            let d = Delivery {
                recipient_id: 9,
                subject: "bob",
                ..sample(kind)
            };
            let decoded = pb::ChatMessage::decode(d.protobuf()).unwrap();
            let expected = pb::ChatMessage {
                timestamp: 300,
                username: "alice".into(),
                message: "héllo".into(),
                kind: kind as i32,
                sender_id: 7,
                recipient_id: 9,
                subject: "bob".into(),
                participants: 2,
                ..Default::default()
            };
            assert_eq!(decoded, expected);
            assert_eq!(d.protobuf(), Bytes::from(expected.encode_to_vec()));
        }
    }

    #[test]
    fn json_keeps_the_basic_protocol_fields() {
        let v: serde_json::Value = serde_json::from_slice(
            &Delivery {
                recipient_id: 2,
                ..sample(Kind::Direct)
            }
            .json(),
        )
        .unwrap();
        assert_eq!(v["sender_id"], 7);
        assert_eq!(v["message"], "héllo");
        assert_eq!(v["timestamp"], 300);
        assert_eq!(v["recipient_id"], 2);
        assert_eq!(v["kind"], "direct");

        let v: serde_json::Value = serde_json::from_slice(&sample(Kind::Error).json()).unwrap();
        assert_eq!(v["error"], "héllo");
        assert!(v.get("message").is_none());
    }
}
