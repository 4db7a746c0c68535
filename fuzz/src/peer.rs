//! A participant as the checks see it: its session handle (what a transport holds) and the far
//! end of its outbox (what its writer drains), with everything it has received so far.

use crate::frame::{self, Frame};
use chitty::hub::outbox::{Ending, MAX_RUN_BYTES, OutboxReader, Taken};
use chitty::hub::{Hub, SessionHandle, Transport};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// One participant.
pub struct Peer {
    /// The transport's handle; `None` once dropped (a disconnect).
    pub handle: Option<SessionHandle>,
    reader: OutboxReader,
    /// Which wire form its frames take.
    pub transport: Transport,
    /// Every frame received so far, in order.
    pub frames: Vec<Frame>,
    /// The same frames as the writer got them, byte for byte.
    pub raw: Vec<Vec<u8>>,
    /// How its session ended, once the outbox said so.
    pub ending: Option<Ending>,
    /// Its id, remembered after the handle is dropped.
    pub id: Option<u64>,
}

impl Peer {
    /// A new session on `hub`, not yet joined, whose backlog is the hub's.
    pub fn new(hub: &Arc<Hub>, transport: Transport) -> Peer {
        let (outbox, reader) = hub.outbox(transport);
        let handle = SessionHandle::new(Arc::clone(hub), transport, "fuzz".to_owned(), outbox);
        Peer {
            handle: Some(handle),
            reader,
            transport,
            frames: Vec::new(),
            raw: Vec::new(),
            ending: None,
            id: None,
        }
    }

    /// The live handle; panics if it was dropped.
    pub fn handle(&mut self) -> &mut SessionHandle {
        self.handle.as_mut().expect("the handle was dropped")
    }

    /// Remembers the session's id once it has one.
    pub fn note_id(&mut self) {
        if let Some(id) = self.handle.as_ref().and_then(SessionHandle::id) {
            assert!(
                self.id.is_none_or(|old| old == id),
                "a session changed id from {:?} to {id}",
                self.id
            );
            self.id = Some(id);
        }
    }

    /// Takes every frame waiting, as the writer would, and returns the new ones. Checks that
    /// timestamps strictly increase across batches and that nothing follows the ending.
    pub fn drain(&mut self) -> &[Frame] {
        let start = self.frames.len();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut batch = Vec::new();
            match self
                .reader
                .poll_take(&mut cx, MAX_RUN_BYTES, |frame| batch.push(frame.clone()))
            {
                Poll::Ready(Taken::Frames) => {
                    assert!(
                        self.ending.is_none(),
                        "frames after the ending {:?}",
                        self.ending
                    );
                    assert!(!batch.is_empty(), "Taken::Frames with an empty batch");
                    for bytes in batch {
                        let f = frame::decode(self.transport, &bytes);
                        if let Some(last) = self.frames.last() {
                            assert!(
                                f.timestamp > last.timestamp,
                                "timestamps went from {} to {} for one session: {last:?} then {f:?}",
                                last.timestamp,
                                f.timestamp
                            );
                        }
                        self.frames.push(f);
                        self.raw.push(bytes.to_vec());
                    }
                }
                Poll::Ready(Taken::Ended(ending)) => {
                    if let Some(first) = &self.ending {
                        assert_eq!(first, &ending, "the ending changed");
                    }
                    self.ending = Some(ending);
                    break;
                }
                Poll::Pending => break,
            }
        }
        &self.frames[start..]
    }
}
