//! The Chitty-Chat gRPC service: `chitty_chat.Chat/Broadcast`, translated onto the hub.
//!
//! Written by hand rather than generated so that the response carries frames the hub has
//! already encoded: the response body copies everything waiting for the participant (from the
//! room log and its private queue), each frame behind its 5-byte gRPC header, into one chunk
//! and hands it to hyper, which
//! goes out as few HTTP/2 DATA frames and one write. One participant is one body (polled by
//! hyper's task for the stream): it reads that participant's events and drains its outbox, so
//! there is no task per participant and nothing to leak when the client disappears.
//!
//! Requests may be gzip-compressed (`grpc-encoding: gzip`) or not (`identity`, or no header);
//! tonic decompresses into a buffer capped at `--max-frame`, so a small compressed frame cannot
//! grow into more memory than an uncompressed one may take. Any other encoding is refused with
//! UNIMPLEMENTED, and every response names what chittyd takes in `grpc-accept-encoding`, as the
//! gRPC compression spec asks. Responses are never compressed.
//!
//! A frame the participant should not have sent (over the limit, not a `ChatEvent`) ends its
//! session through [`SessionHandle::violation`], as on WebSocket: counted, audited, its leave
//! announced, and the client told why. A stream the client cancels or resets is a disconnect.

mod in_flight;

use crate::hub::outbox::{Ending, OutboxReader, Taken};
use crate::hub::{Event, Flow, Hub, SessionError, SessionHandle, Transport};
use crate::pb::{self, chat_event};
use crate::server::ConnInfo;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::Stream;
use http_body::Frame;
use in_flight::{AllInFlight, InFlight};
use prost::Message;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{BufferSettings, CompressionEncoding, DecodeBuf, Decoder};
use tonic::server::NamedService;
use tonic::{Status, Streaming};

/// Events read from one participant per poll before its writes get a turn.
const EVENTS_PER_POLL: usize = 32;

/// How much a writer may have in hyper's and h2's hands: one run.
/// A small decode buffer: an idle participant should cost little memory, and events are tiny.
fn buffers() -> BufferSettings {
    BufferSettings::new(512, 32 * 1024)
}

/// The Chat service's full name, for routing and the health service.
pub const CHAT_SERVICE: &str = "chitty_chat.Chat";

/// The request encodings chittyd decodes, for `grpc-accept-encoding` on every response.
const ACCEPT_ENCODING: &str = "gzip,identity";

/// The Chat service, routed by `chitty_chat.Chat`.
#[derive(Clone)]
pub struct ChatService {
    hub: Arc<Hub>,
    max_frame: usize,
    /// What every participant's writer together has in hyper's and h2's hands.
    in_flight: Arc<AllInFlight>,
}

impl ChatService {
    /// Serves the hub; incoming frames larger than `max_frame` bytes are refused.
    pub fn new(hub: Arc<Hub>, max_frame: usize) -> Self {
        ChatService {
            hub,
            max_frame,
            in_flight: Arc::default(),
        }
    }
}

impl NamedService for ChatService {
    const NAME: &'static str = CHAT_SERVICE;
}

impl tower::Service<http::Request<tonic::body::Body>> for ChatService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(with_accept_encoding(self.answer(req))))
    }
}

impl ChatService {
    /// The response to one call: a participant's stream, or a refusal.
    fn answer(&self, req: http::Request<tonic::body::Body>) -> http::Response<tonic::body::Body> {
        if req.uri().path() != "/chitty_chat.Chat/Broadcast" {
            let status = Status::unimplemented(format!("no such method: {}", req.uri().path()));
            return status.into_http();
        }
        let encoding = match request_encoding(req.headers()) {
            Ok(encoding) => encoding,
            Err(status) => return status.into_http(),
        };
        let peer = req
            .extensions()
            .get::<ConnInfo>()
            .map_or_else(|| "unknown".to_owned(), |c| c.peer.to_string());
        let inbound = Streaming::new_request(
            EventDecoder,
            Inbound(req.into_body()),
            encoding,
            Some(self.max_frame),
        );
        let (outbox, reader) = self.hub.outbox(Transport::Grpc);
        let session = SessionHandle::new(Arc::clone(&self.hub), Transport::Grpc, peer, outbox);
        let deadline = self.hub.config().join_deadline;
        let body = ParticipantBody {
            join_timer: Some((Box::pin(tokio::time::sleep(deadline)), deadline)),
            inbound: Some(inbound),
            max_frame: self.max_frame,
            session,
            reader,
            in_flight: InFlight::new(&self.in_flight),
            finished: false,
        };
        let mut response = http::Response::new(tonic::body::Body::new(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

/// Adds the `grpc-accept-encoding` header every response carries.
fn with_accept_encoding(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    response.headers_mut().insert(
        "grpc-accept-encoding",
        http::HeaderValue::from_static(ACCEPT_ENCODING),
    );
    response
}

/// How the request's messages are compressed: `None` for no `grpc-encoding` header or
/// `identity`, gzip, or UNIMPLEMENTED for anything else (the header on the response says what
/// chittyd takes). Content codings are case-insensitive (RFC 9110).
fn request_encoding(headers: &http::HeaderMap) -> Result<Option<CompressionEncoding>, Status> {
    let Some(value) = headers.get("grpc-encoding") else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(value.as_bytes());
    let name = name.trim();
    if name.eq_ignore_ascii_case("identity") {
        Ok(None)
    } else if name.eq_ignore_ascii_case("gzip") {
        Ok(Some(CompressionEncoding::Gzip))
    } else {
        let shown: String = name.chars().take(64).collect();
        Err(Status::unimplemented(format!(
            "grpc-encoding {shown:?} is not supported; chittyd takes {ACCEPT_ENCODING}"
        )))
    }
}

/// The request body as tonic's decoder sees it. Any error of the body itself is the client's
/// stream breaking (a reset, a lost connection), never something it sent: it becomes CANCELLED,
/// which tonic reports as the end of the stream, so only what tonic and [`EventDecoder`] find
/// wrong in the frames surfaces as an error (see [`violation_of`]). Usually hyper drops the
/// response body, and so the session, as soon as the stream is reset; when the body reads the
/// error first, tonic would otherwise give it a code from the reset's reason (INTERNAL,
/// RESOURCE_EXHAUSTED for ENHANCE_YOUR_CALM) that would read as a violation.
struct Inbound(tonic::body::Body);

impl http_body::Body for Inbound {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match Pin::new(&mut self.get_mut().0).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Status::cancelled(format!(
                "the request stream broke: {e}"
            ))))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// What a decoding error from tonic's `Streaming` means for the session, told by its code (tonic
/// words its messages as it likes): `None` for a stream that merely ended (CANCELLED), a frame
/// over `max_frame` for OUT_OF_RANGE (the frame's length) or RESOURCE_EXHAUSTED (its
/// decompressed size), and an unreadable frame, with tonic's or the decoder's detail, for the
/// rest (not protobuf, a corrupt compressed frame, a bad compression flag, a truncated frame).
fn violation_of(status: &Status, max_frame: usize) -> Option<SessionError> {
    match status.code() {
        tonic::Code::Cancelled => None,
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            Some(SessionError::FrameTooLarge(max_frame))
        }
        _ => Some(SessionError::BadFrame(status.message().to_owned())),
    }
}

/// One participant: reads its events into the hub and writes its outbox's frames.
pub struct ParticipantBody {
    /// Fires if the stream has not joined in time; dropped once it has.
    join_timer: Option<(Pin<Box<tokio::time::Sleep>>, std::time::Duration)>,
    inbound: Option<Streaming<pb::ChatEvent>>,
    /// The frame limit the decoder enforces, for the error that reports a frame over it.
    max_frame: usize,
    session: SessionHandle,
    reader: OutboxReader,
    in_flight: Arc<InFlight>,
    finished: bool,
}

impl ParticipantBody {
    fn read_events(&mut self, cx: &mut Context<'_>) {
        // A join the cluster's stream is deciding: nothing more is read until it is decided
        // (the wake comes with the decision).
        match self.session.poll_joined(cx) {
            Poll::Pending => return,
            Poll::Ready(Flow::Ended) if self.inbound.is_some() => {
                self.inbound = None;
                return;
            }
            Poll::Ready(_) => {}
        }
        for _ in 0..EVENTS_PER_POLL {
            let Some(inbound) = self.inbound.as_mut() else {
                return;
            };
            match Pin::new(inbound).poll_next(cx) {
                Poll::Ready(Some(Ok(ev))) => {
                    if self.session.handle(ev.timestamp, event_of(&ev)) == Flow::Ended {
                        self.inbound = None;
                    }
                    if self.session.poll_joined(cx).is_pending() {
                        return;
                    }
                }
                Poll::Ready(Some(Err(status))) => {
                    // The outbox then ends with the violation, which becomes the status.
                    match violation_of(&status, self.max_frame) {
                        Some(err) => self.session.violation(err),
                        None => self.session.disconnect(),
                    }
                    self.inbound = None;
                }
                Poll::Ready(None) => {
                    self.session.disconnect();
                    self.inbound = None;
                }
                Poll::Pending => return,
            }
        }
        // More may be waiting: come back after the writes had their turn.
        cx.waker().wake_by_ref();
    }
}

impl http_body::Body for ParticipantBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        this.read_events(cx);
        if let Some((timer, deadline)) = &mut this.join_timer {
            if this.session.id().is_some() || this.session.is_ended() {
                this.join_timer = None;
            } else if timer.as_mut().poll(cx).is_ready() {
                let deadline = *deadline;
                this.join_timer = None;
                this.session.violation(SessionError::JoinTimeout(deadline));
            }
        }
        let Some(budget) = this.in_flight.budget(cx) else {
            return Poll::Pending;
        };
        // A run goes out as one chunk, each frame behind its gRPC header.
        let mut chunk = BytesMut::new();
        let taken = this.reader.poll_take(cx, budget, |frame| {
            chunk.reserve(frame.len() + 5);
            chunk.put_u8(0); // not compressed
            chunk.put_u32(frame.len() as u32);
            chunk.put_slice(frame);
        });
        match taken {
            Poll::Ready(Taken::Frames) => {
                Poll::Ready(Some(Ok(Frame::data(this.in_flight.hand_over(chunk)))))
            }
            Poll::Ready(Taken::Ended(ending)) => {
                this.finished = true;
                let status = match ending {
                    Ending::Clean => Status::ok(""),
                    Ending::Error(e) => status_of(&e),
                };
                let mut trailers = http::HeaderMap::new();
                // Only a status whose message cannot be encoded fails here; send the code alone.
                if status.add_header(&mut trailers).is_err() {
                    trailers.insert("grpc-status", http::HeaderValue::from(status.code() as i32));
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

/// Translates a protobuf event into the hub's terms (public so the fuzz targets drive the hub
/// exactly as this transport does).
pub fn event_of(ev: &pb::ChatEvent) -> Event<'_> {
    match &ev.event {
        Some(chat_event::Event::Join(j)) => Event::Join {
            username: &j.username,
        },
        Some(chat_event::Event::Leave(l)) => Event::Leave {
            username: &l.username,
        },
        Some(chat_event::Event::Message(m)) => Event::Message {
            username: &m.username,
            text: &m.message,
            recipient: m.recipient_id,
        },
        Some(chat_event::Event::Roster(_)) => Event::Roster,
        None => Event::Empty,
    }
}

/// The one place a session error becomes a gRPC status.
pub fn status_of(e: &SessionError) -> Status {
    let message = e.to_string();
    match e {
        SessionError::NotJoined(_) | SessionError::AlreadyJoined(_) => {
            Status::failed_precondition(message)
        }
        SessionError::NameTaken(_) => Status::already_exists(message),
        SessionError::InvalidName(_)
        | SessionError::EmptyEvent
        | SessionError::TimestampOutOfRange(_)
        | SessionError::BadFrame(_)
        | SessionError::Protocol(_) => Status::invalid_argument(message),
        SessionError::FrameTooLarge(_) => Status::out_of_range(message),
        SessionError::Impersonation { .. } | SessionError::Banned { .. } => {
            Status::permission_denied(message)
        }
        SessionError::SlowConsumer(_) | SessionError::Full(_) | SessionError::Flooding(_) => {
            Status::resource_exhausted(message)
        }
        SessionError::JoinTimeout(_) => Status::deadline_exceeded(message),
        SessionError::DeadPeer => Status::unavailable(message),
        SessionError::Kicked(_) => Status::aborted(message),
        SessionError::ShuttingDown | SessionError::Unavailable(_) => Status::unavailable(message),
    }
}

#[derive(Debug)]
struct EventDecoder;

impl Decoder for EventDecoder {
    type Item = pb::ChatEvent;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::ChatEvent>, Status> {
        let len = src.remaining();
        pb::ChatEvent::decode(src).map(Some).map_err(|e| {
            Status::invalid_argument(format!("malformed ChatEvent ({len} bytes): {e}"))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(value: Option<&'static str>) -> Result<Option<CompressionEncoding>, Status> {
        let mut headers = http::HeaderMap::new();
        if let Some(v) = value {
            headers.insert("grpc-encoding", http::HeaderValue::from_static(v));
        }
        request_encoding(&headers)
    }

    #[test]
    fn identity_and_gzip_are_taken_and_other_encodings_are_unimplemented() {
        assert_eq!(encoding(None).unwrap(), None);
        assert_eq!(encoding(Some("identity")).unwrap(), None);
        assert_eq!(
            encoding(Some("GZIP")).unwrap(),
            Some(CompressionEncoding::Gzip)
        );
        let refused = encoding(Some("snappy")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert!(refused.message().contains("\"snappy\""), "{refused:?}");
        assert!(refused.message().contains(ACCEPT_ENCODING), "{refused:?}");
    }

    #[test]
    fn decode_errors_are_told_apart_by_code() {
        let of = |status: Status| violation_of(&status, 100);
        assert_eq!(of(Status::cancelled("reset")), None);
        assert_eq!(
            of(Status::out_of_range("found 200 bytes")),
            Some(SessionError::FrameTooLarge(100))
        );
        assert_eq!(
            of(Status::resource_exhausted("while decompressing")),
            Some(SessionError::FrameTooLarge(100))
        );
        assert_eq!(
            of(Status::internal("corrupt deflate stream")),
            Some(SessionError::BadFrame("corrupt deflate stream".into()))
        );
        assert_eq!(
            of(Status::invalid_argument("malformed ChatEvent")),
            Some(SessionError::BadFrame("malformed ChatEvent".into()))
        );
    }
}
