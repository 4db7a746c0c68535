//! The Chitty-Chat gRPC service: `chitty_chat.Chat/Broadcast`, translated onto the hub.
//!
//! Written by hand rather than generated so that the response side carries frames the hub has
//! already encoded: tonic only copies them behind the 5-byte gRPC header, and every frame a
//! participant has waiting goes into one HTTP/2 DATA write. One participant is one future (the
//! response body): it reads that participant's events and drains its outbox, so there is no task
//! per participant and nothing to leak when the client disappears.

use crate::hub::outbox::{self, Ending, OutboxReader, Taken};
use crate::hub::{Event, Flow, Hub, SessionError, SessionHandle, Transport};
use crate::pb::{self, chat_event};
use crate::server::ConnInfo;
use bytes::{Buf, BufMut, Bytes};
use futures_util::Stream;
use prost::Message;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Status, Streaming};

/// Events read from one participant per poll before its writes get a turn.
const EVENTS_PER_POLL: usize = 32;
/// Small codec buffers: an idle participant should cost little memory, and chat frames are tiny.
/// Up to 32 KiB of waiting frames still go out as one write.
fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// The Chat service, routed by `chitty_chat.Chat`.
#[derive(Clone)]
pub struct ChatService {
    hub: Arc<Hub>,
    max_frame: usize,
}

impl ChatService {
    /// Serves the hub; incoming frames larger than `max_frame` bytes are refused.
    pub fn new(hub: Arc<Hub>, max_frame: usize) -> Self {
        ChatService { hub, max_frame }
    }
}

/// The Chat service's full name, for routing and the health service.
pub const CHAT_SERVICE: &str = "chitty_chat.Chat";

impl NamedService for ChatService {
    const NAME: &'static str = CHAT_SERVICE;
}

impl tower::Service<http::Request<tonic::body::Body>> for ChatService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != "/chitty_chat.Chat/Broadcast" {
            let status = Status::unimplemented(format!("no such method: {}", req.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = Broadcast {
            hub: Arc::clone(&self.hub),
        };
        let mut grpc = Grpc::new(ChatCodec).max_decoding_message_size(self.max_frame);
        Box::pin(async move { Ok(grpc.streaming(method, req).await) })
    }
}

struct Broadcast {
    hub: Arc<Hub>,
}

impl StreamingService<pb::ChatEvent> for Broadcast {
    type Response = Bytes;
    type ResponseStream = ParticipantStream;
    type Future = std::future::Ready<Result<tonic::Response<ParticipantStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Streaming<pb::ChatEvent>>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<ConnInfo>()
            .map_or_else(|| "unknown".to_owned(), |c| c.peer.to_string());
        let (outbox, reader) = outbox::outbox(self.hub.config().backlog);
        let session = SessionHandle::new(Arc::clone(&self.hub), Transport::Grpc, peer, outbox);
        std::future::ready(Ok(tonic::Response::new(ParticipantStream {
            inbound: Some(request.into_inner()),
            session,
            reader,
            batch: VecDeque::new(),
            inbound_error: None,
            finished: false,
        })))
    }
}

/// One participant: reads its events into the hub and yields its outbox's frames.
pub struct ParticipantStream {
    inbound: Option<Streaming<pb::ChatEvent>>,
    session: SessionHandle,
    reader: OutboxReader,
    /// Frames taken from the outbox in one swap, yielded one by one into tonic's buffer.
    batch: VecDeque<Bytes>,
    /// Why reading failed (an oversized or malformed frame), reported once the outbox drains.
    inbound_error: Option<Status>,
    finished: bool,
}

impl ParticipantStream {
    fn read_events(&mut self, cx: &mut Context<'_>) {
        for _ in 0..EVENTS_PER_POLL {
            let Some(inbound) = self.inbound.as_mut() else {
                return;
            };
            match Pin::new(inbound).poll_next(cx) {
                Poll::Ready(Some(Ok(ev))) => {
                    if self.session.handle(ev.timestamp, event_of(&ev)) == Flow::Ended {
                        self.inbound = None;
                    }
                }
                Poll::Ready(Some(Err(status))) => {
                    // A cancelled call or a reset stream is a disconnect; anything else is a
                    // frame we refused (over the decode limit, not protobuf), which the client
                    // is told about.
                    if !matches!(
                        status.code(),
                        tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Unavailable
                    ) {
                        self.inbound_error = Some(status);
                    }
                    self.session.disconnect();
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

impl Stream for ParticipantStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(frame) = this.batch.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        this.read_events(cx);
        match this.reader.poll_take(cx, &mut this.batch) {
            Poll::Ready(Taken::Frames) => Poll::Ready(this.batch.pop_front().map(Ok)),
            Poll::Ready(Taken::Ended(ending)) => {
                this.finished = true;
                Poll::Ready(match ending {
                    Ending::Clean => this.inbound_error.take().map(Err),
                    Ending::Error(e) => Some(Err(status_of(&e))),
                })
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Translates a protobuf event into the hub's terms.
fn event_of(ev: &pb::ChatEvent) -> Event<'_> {
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
        | SessionError::BadFrame(_) => Status::invalid_argument(message),
        SessionError::FrameTooLarge(_) => Status::out_of_range(message),
        SessionError::Impersonation { .. } | SessionError::Banned { .. } => {
            Status::permission_denied(message)
        }
        SessionError::SlowConsumer(_) | SessionError::Full(_) => {
            Status::resource_exhausted(message)
        }
        SessionError::Kicked(_) => Status::aborted(message),
        SessionError::ShuttingDown => Status::unavailable(message),
    }
}

/// Decodes `ChatEvent`s with prost; "encodes" the hub's pre-encoded `ChatMessage` bytes by
/// copying them.
#[derive(Debug, Clone, Copy, Default)]
struct ChatCodec;

impl Codec for ChatCodec {
    type Encode = Bytes;
    type Decode = pb::ChatEvent;
    type Encoder = PreEncoded;
    type Decoder = EventDecoder;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> EventDecoder {
        EventDecoder
    }
}

#[derive(Debug)]
struct PreEncoded;

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
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
