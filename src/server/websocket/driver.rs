//! One WebSocket connection, driven by one poll loop: the client's frames go to the hub, and
//! the outbox's frames, already encoded by the hub, go out behind their WebSocket headers, a
//! whole run per write (one system call).

use super::codec::{self, Decoder, Message, ReadError};
use super::protocol::{close_of, handle_text};
use crate::hub::outbox::{MAX_RUN_BYTES, OutboxReader, Taken};
use crate::hub::{Event, Hub, SessionError, SessionHandle, Transport};
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Interval, Sleep};

/// A write that takes longer than this means the peer stopped reading; the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// After its close frame, the server reads (and discards) what the client still sends for at
/// most this long, so that closing with unread input does not reset the connection and destroy
/// the close frame before the client has read it.
const LINGER: Duration = Duration::from_secs(2);

/// Bytes read from the socket per read. The buffer is on the stack for the duration of the read,
/// so an idle connection holds no read buffer at all.
const READ_CHUNK: usize = 8 * 1024;

/// Reads per turn of the connection's task: a client that keeps its socket full gets 64 KiB
/// handled, then the task yields so the other tasks on its thread get their turn.
const READS_PER_TURN: usize = 8;

/// While more than this is waiting to be written (pongs to a client that pings but never reads),
/// the client's input is not read either, so its own socket pushes back.
const PAUSE_READING: usize = 64 * 1024;

/// A connection that has nothing more to write keeps a write buffer of at most this size: a
/// burst (a join or leave storm) grows every buffer to a run, and ten thousand idle users must
/// not each keep one.
const IDLE_WRITE_BUFFER: usize = 2 * 1024;

/// One WebSocket user, from upgrade to close.
pub(super) async fn serve<IO>(
    io: IO,
    hub: Arc<Hub>,
    peer: String,
    username: Option<String>,
    max: usize,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (outbox, reader) = hub.outbox(Transport::WebSocket);
    let mut session = SessionHandle::new(hub, Transport::WebSocket, peer, outbox);
    match &username {
        Some(name) => {
            session.handle(0, Event::Join { username: name });
            session.settled().await;
        }
        None => {
            let _ = session.connect_direct().await;
        }
    }
    // Dead-peer detection: ping a quiet peer every `keepalive`; one that has sent nothing (not
    // even a pong) for twice that is gone, and its leave is announced.
    let keepalive = session
        .hub()
        .config()
        .keepalive
        .max(Duration::from_millis(10));
    let mut conn = Connection {
        io,
        reading: !session.is_ended(),
        session,
        reader,
        decoder: Decoder::new(max),
        out: Vec::new(),
        sent: 0,
        stall: None,
        pings: tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive),
        unanswered: 0,
        phase: Phase::Open,
    };
    std::future::poll_fn(|cx| conn.poll(cx)).await;
}

/// Where a connection is in its life.
enum Phase {
    /// Frames flow both ways.
    Open,
    /// The close frame is queued; nothing is sent after it.
    Closing,
    /// The close frame is out and the write side shut down; reading what the client still sends
    /// until it closes too, or the timer runs out.
    Lingering(Pin<Box<Sleep>>),
}

/// One WebSocket connection, driven by one task: the client's frames go to the hub, and the
/// outbox's frames go out behind their WebSocket headers, a whole run per write.
struct Connection<IO> {
    io: IO,
    session: SessionHandle,
    reader: OutboxReader,
    decoder: Decoder,
    /// Whether the client's input is still read (not after its close, an error or end of file).
    reading: bool,
    /// Frames waiting to be written, and how much of them has been.
    out: Vec<u8>,
    sent: usize,
    /// Armed while a write waits for the socket; the connection ends when it fires.
    stall: Option<Pin<Box<Sleep>>>,
    pings: Interval,
    /// Pings sent since the client was last heard from.
    unanswered: u32,
    phase: Phase,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Connection<IO> {
    /// Runs the connection until it is closed: `Ready` means the task may end.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut reads = 0;
        loop {
            let flushed = match self.flush(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(())) => return Poll::Ready(()),
                Poll::Pending => false,
            };
            if flushed && matches!(self.phase, Phase::Closing) {
                // The close frame is out: shut the write side (under the same write timeout, as
                // TLS has its own close to send), then wait for the client's end.
                if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() {
                    return self.stalled(cx).map(|_| ());
                }
                if !self.reading {
                    return Poll::Ready(());
                }
                self.phase = Phase::Lingering(Box::pin(tokio::time::sleep(LINGER)));
            }
            if let Phase::Lingering(timer) = &mut self.phase
                && (!self.reading || timer.as_mut().poll(cx).is_ready())
            {
                return Poll::Ready(());
            }
            let mut busy = false;
            if self.reading && self.out.len() - self.sent < PAUSE_READING {
                if reads == READS_PER_TURN {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if self.read(cx).is_ready() {
                    reads += 1;
                    busy = true;
                }
            }
            if matches!(self.phase, Phase::Open) {
                busy |= self.keepalive(cx);
                if flushed {
                    busy |= self.take(cx).is_ready();
                }
            }
            if !busy {
                return Poll::Pending;
            }
        }
    }

    /// Writes what is queued. `Err` means the connection is dead: the write failed, or waited
    /// longer than the write timeout.
    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if self.out.is_empty() {
            // Nothing written since the last flush completed.
            return Poll::Ready(Ok(()));
        }
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Err(())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Pending => return self.stalled(cx),
            }
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
            Poll::Pending => return self.stalled(cx),
        }
        self.stall = None;
        self.sent = 0;
        self.out.clear();
        Poll::Ready(Ok(()))
    }

    /// A write is waiting for the socket: arms the write timeout, or reports it expired.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        // Armed only when a write blocks: most writes complete at once, and a timer per write
        // would cost more than the write.
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads once from the socket and hands every whole message to the hub.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
            // End of file or a broken connection: the client is gone.
            Poll::Ready(_) => {
                self.reading = false;
                self.session.disconnect();
                return Poll::Ready(());
            }
        }
        self.unanswered = 0;
        if !matches!(self.phase, Phase::Open) {
            // Our close frame is queued or sent: only the client's close matters now, and it
            // ends the connection at once (RFC 6455, 7.1.1); everything else is discarded.
            let mut closed = false;
            let decoded = self.decoder.feed(buf.filled_mut(), &mut |m| {
                closed |= matches!(m, Message::Close(_))
            });
            if closed || decoded.is_err() {
                self.reading = false;
            }
            return Poll::Ready(());
        }
        let session = &mut self.session;
        let out = &mut self.out;
        let mut closed = false;
        let decoded = self.decoder.feed(buf.filled_mut(), &mut |m| match m {
            Message::Text(text) => handle_text(session, text),
            Message::Binary => {
                session.handle(
                    0,
                    Event::Invalid {
                        reason: "binary frames are not supported: send JSON text frames",
                        recipient: 0,
                    },
                );
            }
            Message::Ping(payload) => codec::put_pong(out, payload),
            Message::Pong => {}
            Message::Close(_) => closed = true,
        });
        if let Err(e) = decoded {
            self.reading = false;
            self.session.violation(match e {
                ReadError::TooLarge(max) => SessionError::FrameTooLarge(max),
                ReadError::NotUtf8 => SessionError::BadFrame(e.to_string()),
                ReadError::Protocol(why) => SessionError::Protocol(why.into()),
            });
        } else if closed {
            self.reading = false;
            self.session.disconnect();
        }
        Poll::Ready(())
    }

    /// Pings a quiet client, and gives up on one that stopped answering. Returns whether it did
    /// anything.
    fn keepalive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.reading || self.pings.poll_tick(cx).is_pending() {
            return false;
        }
        // Silent through two whole intervals (two pings unanswered): gone.
        self.unanswered += 1;
        if self.unanswered > 2 {
            self.reading = false;
            self.session.violation(SessionError::DeadPeer);
        } else {
            codec::put_ping(&mut self.out);
        }
        true
    }

    /// Queues everything the outbox has, each frame behind its header, or the close frame once
    /// the session has ended.
    fn take(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let out = &mut self.out;
        match self
            .reader
            .poll_take(cx, MAX_RUN_BYTES, |frame| codec::put_text(out, frame))
        {
            Poll::Ready(Taken::Frames) => Poll::Ready(()),
            Poll::Ready(Taken::Ended(ending)) => {
                let (code, reason) = close_of(&ending);
                codec::put_close(&mut self.out, code, &reason);
                self.phase = Phase::Closing;
                Poll::Ready(())
            }
            Poll::Pending => {
                if self.out.is_empty() && self.out.capacity() > IDLE_WRITE_BUFFER {
                    self.out = Vec::new();
                }
                Poll::Pending
            }
        }
    }
}
