//! Raw bytes from a hostile WebSocket client, through the gateway's frame decoder
//! (`chitty::server::websocket::codec`).
//!
//! The first byte sets the message size limit and the second how the input is cut into reads;
//! the rest is what the socket delivers. Checks that the decoder never panics, that how the bytes
//! were cut into reads changes nothing (the same messages and the same error as reading them
//! whole), that nothing it hands on is over the limit or an oversized control payload, that it
//! never holds more than one unfinished frame and one unfinished message, and that nothing comes
//! out after a close frame or an error.

use chitty::server::websocket::codec::{Decoder, Message, ReadError};

/// A message, owned, to compare two decodings.
#[derive(Debug, PartialEq)]
enum Got {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

/// Decodes `wire` cut into reads of `piece` bytes.
fn decode(max: usize, wire: &[u8], piece: usize) -> (Vec<Got>, Result<(), ReadError>) {
    let mut decoder = Decoder::new(max);
    let mut got = Vec::new();
    let mut result = Ok(());
    for chunk in wire.chunks(piece.max(1)) {
        let mut chunk = chunk.to_vec();
        let ended = matches!(got.last(), Some(Got::Close(_))) || result.is_err();
        let before = got.len();
        let fed = decoder.feed(&mut chunk, &mut |m| {
            got.push(match m {
                Message::Text(t) => {
                    assert!(t.len() <= max, "a text message over the limit");
                    Got::Text(t.to_owned())
                }
                Message::Binary => Got::Binary,
                Message::Ping(p) => {
                    assert!(p.len() <= 125, "a ping payload over 125 bytes");
                    Got::Ping(p.to_vec())
                }
                Message::Pong => Got::Pong,
                Message::Close(c) => Got::Close(c),
            })
        });
        if ended {
            assert_eq!(
                got.len(),
                before,
                "a message after the close frame or an error"
            );
            assert_eq!(fed, Ok(()), "an error after the close frame or an error");
        }
        if result.is_ok() {
            result = fed;
        }
        assert!(
            decoder.buffered() <= 14 + 2 * max,
            "{} bytes buffered with a limit of {max}",
            decoder.buffered()
        );
    }
    (got, result)
}

/// Runs one input; panics if an invariant breaks.
pub fn check(data: &[u8]) {
    let [limit, cut, wire @ ..] = data else {
        return;
    };
    let max = 1 + usize::from(*limit) * 4;
    let whole = decode(max, wire, wire.len());
    let pieces = decode(max, wire, 1 + usize::from(*cut) % 32);
    assert_eq!(whole, pieces, "the cut into reads changed the result");
}
