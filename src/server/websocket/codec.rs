//! WebSocket framing (RFC 6455, section 5), server side.
//!
//! chittyd frames its own WebSocket traffic so that a writer can copy a whole run of the room
//! log's JSON frames, each behind its two- to ten-byte header, into one buffer and send it with
//! one write, as the gRPC writer does: no per-frame message object, no per-recipient copy or
//! UTF-8 check of text the hub encoded itself. Reading is strict, as the RFC asks of a server:
//! client frames must be masked, reserved bits and opcodes are refused, control frames are short
//! and whole, text must be UTF-8, and nothing larger than the configured limit is buffered.

use thiserror::Error;

/// Frame opcodes (RFC 6455, 5.2).
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Longest payload of a control frame.
const MAX_CONTROL: usize = 125;

/// A decoder that buffers more than this while idle gives the memory back.
const KEEP_BUFFERED: usize = 8 * 1024;

/// What a client may not do, as a WebSocket close code and the reason sent with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// A frame or message over the configured limit (close code 1009).
    #[error("frame too large (at most {0} bytes)")]
    TooLarge(usize),
    /// A text message that is not UTF-8 (close code 1007).
    #[error("text frame is not valid UTF-8")]
    NotUtf8,
    /// Anything else the RFC forbids (close code 1002).
    #[error("{0}")]
    Protocol(&'static str),
}

/// One complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, reassembled if it came in fragments.
    Text(&'a str),
    /// A binary message (chittyd speaks text only; its content is not kept).
    Binary,
    /// A ping; the payload goes back in the pong.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// The client's close frame, with its status code if it gave one. Nothing after it is read.
    Close(Option<u16>),
}

/// Reads frames out of whatever the socket delivered, keeping a frame cut in two by a read and
/// a fragmented message until they are whole.
#[derive(Debug)]
pub struct Decoder {
    /// The largest message accepted, whole or fragmented.
    max: usize,
    /// Bytes of a frame that the last read did not complete.
    partial: Vec<u8>,
    /// A fragmented message so far: whether it is text, and its payload.
    message: Option<(bool, Vec<u8>)>,
    /// A close frame or an error was seen: everything after it is ignored.
    done: bool,
}

/// A frame header, decoded.
struct Header {
    fin: bool,
    opcode: u8,
    /// Header length including the mask.
    len: usize,
    payload: usize,
    mask: [u8; 4],
}

/// Reads the header at the front of `buf`: `Ok(None)` if it is not all there yet.
fn header(buf: &[u8], max: usize) -> Result<Option<Header>, ReadError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(ReadError::Protocol(
            "reserved bits set (no extension was negotiated)",
        ));
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(ReadError::Protocol("unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(ReadError::Protocol("client frames must be masked"));
    }
    let (payload, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0; 8];
                n.copy_from_slice(b);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= CLOSE && (!fin || payload > MAX_CONTROL as u64) {
        return Err(ReadError::Protocol(
            "control frames must be whole and at most 125 bytes",
        ));
    }
    if payload > max as u64 {
        return Err(ReadError::TooLarge(max));
    }
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        len: at + 4,
        payload: payload as usize,
        mask: [m[0], m[1], m[2], m[3]],
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (b, m) in chunk.iter_mut().zip(mask) {
            *b ^= m;
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// Close codes a client may send (RFC 6455, 7.4): the defined ones that may appear on the wire,
/// and the ranges for libraries and applications.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

impl Decoder {
    /// A decoder accepting messages of at most `max` bytes.
    pub fn new(max: usize) -> Decoder {
        Decoder {
            max,
            partial: Vec::new(),
            message: None,
            done: false,
        }
    }

    /// Bytes held for an unfinished frame or message.
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.message.as_ref().map_or(0, |(_, m)| m.len())
    }

    /// Decodes every whole frame in what was held plus `data` (unmasking in place, so `data` is
    /// changed), handing each message to `on`, and keeps the rest for the next read. After a
    /// close frame or an error, further input is ignored.
    pub fn feed(
        &mut self,
        data: &mut [u8],
        on: &mut impl FnMut(Message<'_>),
    ) -> Result<(), ReadError> {
        if self.done {
            return Ok(());
        }
        if self.partial.is_empty() {
            // The common case: decode straight from the read, keeping only an incomplete tail.
            let used = self.frames(data, on)?;
            if !self.done {
                self.partial.extend_from_slice(&data[used..]);
            }
        } else {
            let mut partial = std::mem::take(&mut self.partial);
            partial.extend_from_slice(data);
            let used = self.frames(&mut partial, on)?;
            partial.drain(..used);
            if self.done {
                // Nothing after a close frame is read.
                partial = Vec::new();
            } else if partial.is_empty() && partial.capacity() > KEEP_BUFFERED {
                partial = Vec::new();
            }
            self.partial = partial;
        }
        Ok(())
    }

    /// Decodes the whole frames at the front of `buf`; returns how many bytes they took.
    fn frames(
        &mut self,
        buf: &mut [u8],
        on: &mut impl FnMut(Message<'_>),
    ) -> Result<usize, ReadError> {
        let mut at = 0;
        while !self.done {
            let rest = &mut buf[at..];
            let h = match header(rest, self.max) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let Some(payload) = rest.get_mut(h.len..h.len + h.payload) else {
                break;
            };
            unmask(payload, h.mask);
            at += h.len + h.payload;
            if let Err(e) = self.frame(&h, payload, on) {
                self.done = true;
                return Err(e);
            }
        }
        Ok(at)
    }

    fn frame(
        &mut self,
        h: &Header,
        payload: &[u8],
        on: &mut impl FnMut(Message<'_>),
    ) -> Result<(), ReadError> {
        match h.opcode {
            PING => on(Message::Ping(payload)),
            PONG => on(Message::Pong),
            CLOSE => {
                self.done = true;
                let code = match payload {
                    [] => None,
                    [_] => return Err(ReadError::Protocol("close frame with a 1-byte payload")),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !valid_close_code(code) {
                            return Err(ReadError::Protocol("invalid close code"));
                        }
                        if std::str::from_utf8(reason).is_err() {
                            return Err(ReadError::NotUtf8);
                        }
                        Some(code)
                    }
                };
                on(Message::Close(code));
            }
            TEXT | BINARY if self.message.is_some() => {
                return Err(ReadError::Protocol(
                    "a new message began before the fragmented one ended",
                ));
            }
            TEXT | BINARY if h.fin => deliver(h.opcode == TEXT, payload, on)?,
            TEXT | BINARY => self.message = Some((h.opcode == TEXT, payload.to_vec())),
            _ => {
                let Some((text, message)) = self.message.as_mut() else {
                    return Err(ReadError::Protocol(
                        "continuation frame without a message to continue",
                    ));
                };
                if message.len() + payload.len() > self.max {
                    return Err(ReadError::TooLarge(self.max));
                }
                message.extend_from_slice(payload);
                if h.fin {
                    let text = *text;
                    if let Some((_, message)) = self.message.take() {
                        deliver(text, &message, on)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn deliver(text: bool, payload: &[u8], on: &mut impl FnMut(Message<'_>)) -> Result<(), ReadError> {
    if !text {
        on(Message::Binary);
        return Ok(());
    }
    let text = std::str::from_utf8(payload).map_err(|_| ReadError::NotUtf8)?;
    on(Message::Text(text));
    Ok(())
}

/// Appends a whole, unmasked server frame's header for a payload of `len` bytes.
fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    let b0 = 0x80 | opcode;
    if len < 126 {
        out.extend_from_slice(&[b0, len as u8]);
    } else if let Ok(len) = u16::try_from(len) {
        out.extend_from_slice(&[b0, 126]);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.extend_from_slice(&[b0, 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a text frame. The caller vouches that `text` is UTF-8 (the hub's JSON is).
pub fn put_text(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + 10);
    put_header(out, TEXT, text.len());
    out.extend_from_slice(text);
}

/// Appends a ping.
pub fn put_ping(out: &mut Vec<u8>) {
    put_header(out, PING, 0);
}

/// Appends the pong answering a ping with `payload` (at most 125 bytes, as the decoder ensures).
pub fn put_pong(out: &mut Vec<u8>, payload: &[u8]) {
    put_header(out, PONG, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame; the reason is cut to fit a control frame, on a character boundary.
pub fn put_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    put_header(out, CLOSE, 2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = Vec::new();
        put_header(&mut out, opcode, payload.len());
        if !fin {
            out[0] &= 0x7F;
        }
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Text(String),
        Binary,
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    fn decode_in_pieces(
        d: &mut Decoder,
        wire: &[u8],
        piece: usize,
    ) -> (Vec<Got>, Result<(), ReadError>) {
        let mut got = Vec::new();
        let mut result = Ok(());
        for chunk in wire.chunks(piece.max(1)) {
            let mut chunk = chunk.to_vec();
            result = d.feed(&mut chunk, &mut |m| {
                got.push(match m {
                    Message::Text(t) => Got::Text(t.to_owned()),
                    Message::Binary => Got::Binary,
                    Message::Ping(p) => Got::Ping(p.to_vec()),
                    Message::Pong => Got::Pong,
                    Message::Close(c) => Got::Close(c),
                })
            });
            if result.is_err() {
                break;
            }
        }
        (got, result)
    }

    #[test]
    fn frames_split_anywhere_and_fragmented_messages_come_out_whole() {
        let long = "ü".repeat(200); // 400 bytes: a 16-bit length
        let mut wire = client(true, TEXT, b"{\"message\":\"hi\"}");
        wire.extend(client(false, TEXT, &long.as_bytes()[..101])); // cut inside a character
        wire.extend(client(true, PING, b"are you there"));
        wire.extend(client(true, CONTINUATION, &long.as_bytes()[101..]));
        wire.extend(client(true, BINARY, &[0, 1, 2]));
        wire.extend(client(true, PONG, b""));
        wire.extend(client(true, CLOSE, &1000u16.to_be_bytes()));
        wire.extend(client(true, TEXT, b"after the close"));
        let want = vec![
            Got::Text("{\"message\":\"hi\"}".into()),
            Got::Ping(b"are you there".to_vec()),
            Got::Text(long.clone()),
            Got::Binary,
            Got::Pong,
            Got::Close(Some(1000)),
        ];
        for piece in [1, 2, 3, 7, 64, 4096] {
            let mut d = Decoder::new(1024);
            let (got, result) = decode_in_pieces(&mut d, &wire, piece);
            assert_eq!(result, Ok(()), "pieces of {piece}");
            assert_eq!(got, want, "pieces of {piece}");
        }
    }

    #[test]
    fn a_whole_read_leaves_nothing_buffered() {
        let mut d = Decoder::new(1024);
        let mut wire = client(true, TEXT, b"one");
        wire.extend(client(true, TEXT, b"two"));
        let (got, result) = decode_in_pieces(&mut d, &wire, wire.len());
        assert_eq!(result, Ok(()));
        assert_eq!(got.len(), 2);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.partial.capacity(), 0, "no allocation for whole frames");
    }

    #[test]
    fn nothing_after_a_close_frame_is_kept() {
        let mut wire = client(true, CLOSE, &1000u16.to_be_bytes());
        wire.extend(client(true, TEXT, &[b'x'; 100]));
        for piece in [wire.len(), 3] {
            let mut d = Decoder::new(1024);
            let (got, result) = decode_in_pieces(&mut d, &wire, piece);
            assert_eq!((got, result), (vec![Got::Close(Some(1000))], Ok(())));
            assert_eq!(d.buffered(), 0, "pieces of {piece}");
        }
    }

    #[test]
    fn what_the_rfc_forbids_is_refused() {
        let unmasked = {
            let mut out = Vec::new();
            put_text(&mut out, b"hi");
            out
        };
        let mut reserved = client(true, TEXT, b"hi");
        reserved[0] |= 0x40;
        let cases: Vec<(Vec<u8>, ReadError)> = vec![
            (
                unmasked,
                ReadError::Protocol("client frames must be masked"),
            ),
            (
                reserved,
                ReadError::Protocol("reserved bits set (no extension was negotiated)"),
            ),
            (
                client(true, 0x3, b""),
                ReadError::Protocol("unknown opcode"),
            ),
            (
                client(true, 0xB, b""),
                ReadError::Protocol("unknown opcode"),
            ),
            (
                client(false, PING, b""),
                ReadError::Protocol("control frames must be whole and at most 125 bytes"),
            ),
            (
                client(true, PING, &[b'x'; 126]),
                ReadError::Protocol("control frames must be whole and at most 125 bytes"),
            ),
            (
                client(true, CONTINUATION, b"x"),
                ReadError::Protocol("continuation frame without a message to continue"),
            ),
            (
                [client(false, TEXT, b"x"), client(true, TEXT, b"y")].concat(),
                ReadError::Protocol("a new message began before the fragmented one ended"),
            ),
            (client(true, TEXT, &[0xff, 0xfe]), ReadError::NotUtf8),
            (
                [
                    client(false, TEXT, &[0xc3]),
                    client(true, CONTINUATION, b"("),
                ]
                .concat(),
                ReadError::NotUtf8,
            ),
            (
                client(true, CLOSE, &[3]),
                ReadError::Protocol("close frame with a 1-byte payload"),
            ),
            (
                client(true, CLOSE, &1005u16.to_be_bytes()),
                ReadError::Protocol("invalid close code"),
            ),
            (client(true, CLOSE, &[0x03, 0xe8, 0xff]), ReadError::NotUtf8),
        ];
        for (wire, want) in cases {
            let mut d = Decoder::new(1024);
            let (_, result) = decode_in_pieces(&mut d, &wire, wire.len());
            assert_eq!(result, Err(want.clone()), "{wire:x?}");
            // Once refused, nothing more is read.
            let (got, result) = decode_in_pieces(&mut d, &client(true, TEXT, b"more"), 64);
            assert_eq!((got, result), (vec![], Ok(())));
        }
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header_and_messages_in_total() {
        let mut d = Decoder::new(100);
        let wire = client(true, TEXT, &[b'x'; 101]);
        // Only the header has arrived: refused before the payload is buffered.
        let (_, result) = decode_in_pieces(&mut d, &wire[..4], 4);
        assert_eq!(result, Err(ReadError::TooLarge(100)));

        let mut d = Decoder::new(100);
        let mut wire = client(false, TEXT, &[b'x'; 60]);
        wire.extend(client(true, CONTINUATION, &[b'x'; 60]));
        let (_, result) = decode_in_pieces(&mut d, &wire, wire.len());
        assert_eq!(result, Err(ReadError::TooLarge(100)));

        let mut d = Decoder::new(100);
        let mut huge = vec![0x81, 0xFF];
        huge.extend(u64::MAX.to_be_bytes());
        let (_, result) = decode_in_pieces(&mut d, &huge, huge.len());
        assert_eq!(result, Err(ReadError::TooLarge(100)));
    }

    #[test]
    fn server_frames_have_the_shortest_length_form() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            put_text(&mut out, &vec![b'a'; len]);
            assert_eq!(out.len(), header + len, "{len}");
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
        }
        let mut out = Vec::new();
        put_close(&mut out, 1008, &"é".repeat(100));
        assert!(out.len() <= 2 + MAX_CONTROL);
        assert!(
            std::str::from_utf8(&out[4..]).is_ok(),
            "cut on a character boundary"
        );
    }

    #[test]
    fn random_input_never_panics_and_never_buffers_past_the_limit() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly well-formed first bytes, so the search goes past the header checks.
            if let Some(b) = data.get_mut(1) {
                *b |= 0x80;
            }
            let mut d = Decoder::new(32);
            let _ = d.feed(&mut data, &mut |_| {});
            // An unfinished frame plus an unfinished message, each within the limit.
            assert!(d.buffered() <= 14 + 32 + 32);
        }
    }
}
