//! Just enough gRPC framing and protobuf to read the server's `ChatMessage`s in place: the
//! bench receives millions of them a second on the cores it shares with the server, so it reads
//! the five fields it checks straight out of the received bytes instead of decoding each message
//! into owned strings. Field numbers are those of `ChatMessage` in proto/chitty_chat.proto.

use chitty::pb::chat_message::Kind;

/// `ChatMessage.timestamp` (uint64).
const TIMESTAMP: u32 = 1;
/// `ChatMessage.message` (string).
const MESSAGE: u32 = 3;
/// `ChatMessage.kind` (enum Kind).
const KIND: u32 = 4;
/// `ChatMessage.sender_id` (uint64).
const SENDER_ID: u32 = 5;
/// `ChatMessage.subject` (string).
const SUBJECT: u32 = 7;

/// The largest message the bench accepts (tonic's default decoding limit).
pub const MAX_MESSAGE: usize = 4 << 20;

/// The gRPC message prefix: a compression flag and a big-endian length.
pub const PREFIX: usize = 5;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const START_GROUP: u64 = 3;
const END_GROUP: u64 = 4;
const FIXED32: u64 = 5;
/// How deeply nested groups may be (as in prost).
const MAX_DEPTH: u32 = 100;

/// Why bytes are not a `ChatMessage` (or not a gRPC message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated protobuf message")]
    Truncated,
    #[error("varint longer than 64 bits")]
    Overflow,
    #[error("invalid field tag")]
    BadTag,
    #[error("field {0} has the wrong wire type")]
    WireType(u32),
    #[error("unsupported wire type {0}")]
    Unsupported(u64),
    #[error("field {0} is not valid UTF-8")]
    Utf8(u32),
    #[error("compressed gRPC message (the bench does not ask for compression)")]
    Compressed,
    #[error("gRPC message of {0} bytes is too large")]
    TooLarge(usize),
}

/// The fields of one `ChatMessage` that the bench looks at, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    pub timestamp: u64,
    pub kind: Kind,
    pub sender_id: u64,
    pub subject: &'a str,
    pub text: &'a str,
}

/// Reads a `ChatMessage`'s fields out of its protobuf encoding. Unknown fields are skipped;
/// later occurrences of a field win, as in any protobuf decoder; an unknown `kind` reads as
/// `MESSAGE`, as prost's accessor does.
pub fn scan_chat_message(mut b: &[u8]) -> Result<Fields<'_>, WireError> {
    let mut f = Fields {
        timestamp: 0,
        kind: Kind::Message,
        sender_id: 0,
        subject: "",
        text: "",
    };
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let field = u32::try_from(key >> 3).map_err(|_| WireError::BadTag)?;
        if field == 0 {
            return Err(WireError::BadTag);
        }
        let wire = key & 7;
        match field {
            TIMESTAMP | KIND | SENDER_ID => {
                if wire != VARINT {
                    return Err(WireError::WireType(field));
                }
                let v = varint(&mut b)?;
                match field {
                    TIMESTAMP => f.timestamp = v,
                    // An enum is an int32 on the wire: negative values are sign-extended.
                    KIND => f.kind = Kind::try_from(v as i32).unwrap_or(Kind::Message),
                    _ => f.sender_id = v,
                }
            }
            MESSAGE | SUBJECT => {
                if wire != LEN {
                    return Err(WireError::WireType(field));
                }
                let s = std::str::from_utf8(bytes(&mut b)?).map_err(|_| WireError::Utf8(field))?;
                if field == MESSAGE {
                    f.text = s;
                } else {
                    f.subject = s;
                }
            }
            _ => skip(&mut b, field, wire, 0)?,
        }
    }
    Ok(f)
}

/// The length of the complete gRPC message (prefix included) at the start of `buf`, or `None`
/// while it is still incomplete.
pub fn grpc_message_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.get(..PREFIX) else {
        return Ok(None);
    };
    if prefix[0] != 0 {
        return Err(WireError::Compressed);
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(WireError::TooLarge(len));
    }
    Ok((buf.len() >= PREFIX + len).then_some(PREFIX + len))
}

/// `message` encoded as one uncompressed gRPC message.
pub fn grpc_encode(message: &impl prost::Message) -> bytes::Bytes {
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(PREFIX + len);
    buf.push(0);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    message
        .encode(&mut buf)
        .expect("a Vec grows to fit any message");
    buf.into()
}

fn varint(b: &mut &[u8]) -> Result<u64, WireError> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return Err(WireError::Overflow);
            }
            *b = &b[i + 1..];
            return Ok(v);
        }
    }
    Err(if b.len() < 10 {
        WireError::Truncated
    } else {
        WireError::Overflow
    })
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if b.len() < n {
        return Err(WireError::Truncated);
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn bytes<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let len = varint(b)?;
    take(b, usize::try_from(len).map_err(|_| WireError::Truncated)?)
}

/// Skips an unknown field's value; groups (deprecated, never sent by chittyd) are skipped to
/// their end tag, nested at most `MAX_DEPTH` deep.
fn skip(b: &mut &[u8], field: u32, wire: u64, depth: u32) -> Result<(), WireError> {
    match wire {
        VARINT => varint(b).map(drop),
        FIXED64 => take(b, 8).map(drop),
        LEN => bytes(b).map(drop),
        FIXED32 => take(b, 4).map(drop),
        START_GROUP if depth < MAX_DEPTH => loop {
            let key = varint(b)?;
            let inner = u32::try_from(key >> 3).map_err(|_| WireError::BadTag)?;
            if inner == 0 {
                return Err(WireError::BadTag);
            }
            match key & 7 {
                END_GROUP if inner == field => return Ok(()),
                END_GROUP => return Err(WireError::Unsupported(END_GROUP)),
                w => skip(b, inner, w, depth + 1)?,
            }
        },
        other => Err(WireError::Unsupported(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitty::pb;
    use prost::Message;

    fn full() -> pb::ChatMessage {
        pb::ChatMessage {
            timestamp: 0x1234_5678_9abc_def0,
            username: "alice".into(),
            message: "hello, wörld".into(),
            kind: Kind::Direct as i32,
            sender_id: 300,
            recipient_id: 7,
            subject: "bob".into(),
            participants: 42,
            ..Default::default()
        }
    }

    fn expected(m: &pb::ChatMessage) -> Fields<'_> {
        Fields {
            timestamp: m.timestamp,
            kind: m.kind(),
            sender_id: m.sender_id,
            subject: &m.subject,
            text: &m.message,
        }
    }

    #[test]
    fn reads_the_fields_of_real_messages() {
        let samples = [
            full(),
            pb::ChatMessage::default(),
            pb::ChatMessage {
                timestamp: u64::MAX,
                sender_id: u64::MAX,
                kind: Kind::Welcome as i32,
                ..Default::default()
            },
            pb::ChatMessage {
                kind: Kind::Join as i32,
                subject: "b1234-17".into(),
                username: "SERVER".into(),
                message: "b1234-17 joined".into(),
                participants: u32::MAX,
                ..Default::default()
            },
            pb::ChatMessage {
                kind: 99,
                message: "x".repeat(1000),
                ..Default::default()
            },
            pb::ChatMessage {
                kind: -1,
                ..Default::default()
            },
        ];
        for m in &samples {
            let bytes = m.encode_to_vec();
            assert_eq!(scan_chat_message(&bytes), Ok(expected(m)), "{m:?}");
        }
    }

    #[test]
    fn skips_unknown_fields_of_every_wire_type() {
        let mut bytes = full().encode_to_vec();
        // Field 12 varint, 13 fixed64, 14 bytes, 15 fixed32, 300 (a two-byte tag) varint.
        bytes.extend_from_slice(&[12 << 3, 0xff, 0x01]);
        bytes.extend_from_slice(&[(13 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        bytes.extend_from_slice(&[(14 << 3) | 2, 3, b'a', b'b', b'c']);
        bytes.extend_from_slice(&[(15 << 3) | 5, 1, 2, 3, 4]);
        bytes.extend_from_slice(&[0xe0, 0x12, 0x05]);
        let m = full();
        assert_eq!(scan_chat_message(&bytes), Ok(expected(&m)));
        assert_eq!(pb::ChatMessage::decode(&bytes[..]).ok(), Some(full()));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let bytes = full().encode_to_vec();
        // Cut inside a field: every prefix either reads (cut between fields) or fails.
        for cut in 0..bytes.len() {
            let ours = scan_chat_message(&bytes[..cut]);
            assert_eq!(
                ours.is_ok(),
                pb::ChatMessage::decode(&bytes[..cut]).is_ok(),
                "cut at {cut}: {ours:?}"
            );
        }
        let cases: &[(&[u8], WireError)] = &[
            (&[0x08], WireError::Truncated),
            (&[0x08, 0x80, 0x80], WireError::Truncated),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ],
                WireError::Overflow,
            ),
            (
                &[
                    0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
                ],
                WireError::Overflow,
            ),
            (&[0x1a, 0x05, b'a'], WireError::Truncated),
            (
                &[
                    0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                WireError::Truncated,
            ),
            (&[0x1a, 0x02, 0xc3, 0x28], WireError::Utf8(MESSAGE)),
            (&[0x3a, 0x01, 0xff], WireError::Utf8(SUBJECT)),
            (
                &[0x09, 0, 0, 0, 0, 0, 0, 0, 0],
                WireError::WireType(TIMESTAMP),
            ),
            (&[0x18, 0x01], WireError::WireType(MESSAGE)),
            (&[0x22, 0x00], WireError::WireType(KIND)),
            (&[0x00, 0x00], WireError::BadTag),
            (&[0x83, 0x01], WireError::Truncated),
            (&[0x83, 0x01, 0x8c, 0x01], WireError::Unsupported(END_GROUP)),
            (&[0x84, 0x01], WireError::Unsupported(END_GROUP)),
            (&[0x4f], WireError::Unsupported(7)),
            (
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00],
                WireError::BadTag,
            ),
            (&[(9 << 3) | 5, 1, 2], WireError::Truncated),
        ];
        for (bytes, error) in cases {
            assert_eq!(scan_chat_message(bytes), Err(*error), "{bytes:x?}");
        }
        // A (deprecated) group around a field of the same number as a known one is skipped.
        let group = [0x83, 0x01, 0x08, 0x01, 0x84, 0x01, 0x08, 0x02];
        assert_eq!(scan_chat_message(&group).map(|f| f.timestamp), Ok(2));
        let mut deep = [0x83, 0x01].repeat(MAX_DEPTH as usize + 1);
        deep.extend([0x84, 0x01].repeat(MAX_DEPTH as usize + 1));
        assert_eq!(
            scan_chat_message(&deep),
            Err(WireError::Unsupported(START_GROUP))
        );
    }

    /// Mutated real messages never panic the scanner, and whatever prost reads, it reads alike.
    #[test]
    fn agrees_with_prost_on_mutated_messages() {
        let base = full().encode_to_vec();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            bytes.truncate(bytes.len() - (next() % 3) as usize);
            let ours = scan_chat_message(&bytes);
            if let Ok(m) = pb::ChatMessage::decode(&bytes[..]) {
                assert_eq!(ours, Ok(expected(&m)), "{bytes:x?}");
            }
        }
    }

    #[test]
    fn frames_grpc_messages() {
        let m = full();
        let framed = grpc_encode(&m);
        assert_eq!(framed.len(), PREFIX + m.encoded_len());
        assert_eq!(grpc_message_len(&framed), Ok(Some(framed.len())));
        for cut in 0..framed.len() {
            assert_eq!(grpc_message_len(&framed[..cut]), Ok(None));
        }
        let mut two = framed.to_vec();
        two.extend_from_slice(&framed);
        assert_eq!(grpc_message_len(&two), Ok(Some(framed.len())));
        assert_eq!(
            scan_chat_message(&two[PREFIX..framed.len()]),
            Ok(expected(&m))
        );
        assert_eq!(
            grpc_message_len(&[1, 0, 0, 0, 0]),
            Err(WireError::Compressed)
        );
        assert_eq!(
            grpc_message_len(&[0, 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::TooLarge(u32::MAX as usize))
        );
        let event = pb::ChatEvent {
            timestamp: 3,
            event: Some(pb::chat_event::Event::Join(pb::chat_event::UserJoin {
                username: "x".into(),
            })),
        };
        let framed = grpc_encode(&event);
        assert_eq!(pb::ChatEvent::decode(&framed[PREFIX..]).ok(), Some(event));
    }
}
