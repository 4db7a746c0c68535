//! The stream as the script plays it: the nodes' queued events enter it in the order the
//! script says, every node applies each message as it is appended, and the lagging replicas
//! (the observer, the late one restored from a snapshot) apply it at their own pace.

use super::{World, checks};
use chitty::audit::Auditor;
use chitty::hub::{Hub, ManualTime, Outbound, Outgoing, StreamEvent};
use std::sync::Arc;

/// A replica that only applies, at its own pace.
pub(super) struct Lagging {
    pub hub: Arc<Hub>,
    /// Anything it publishes (it must not).
    pub out: Outbound,
    /// How much of the stream it has been handed.
    pub cursor: usize,
    /// The sequence it started from (its snapshot's).
    pub from: u64,
}

/// Stream time: 10 ms between messages.
fn stream_ms(seq: u64) -> u64 {
    crate::wall_start()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        + seq * 10
}

impl World {
    /// Moves up to `count` of node `i`'s queued events into the stream, one per message.
    pub(super) fn feed(&mut self, i: usize, count: usize) {
        for _ in 0..count {
            let node = &mut self.nodes[i];
            let Some(out) = node.held.pop_front().or_else(|| node.out.try_recv()) else {
                break;
            };
            self.append(out.payload.to_vec());
        }
    }

    /// Moves node `i`'s queued events into the stream as the publisher batches them, until at
    /// least `count` went in or none are left.
    pub(super) fn batch(&mut self, i: usize, count: usize) {
        let mut moved = 0;
        while moved < count {
            let node = &mut self.nodes[i];
            let Some(first) = node.held.pop_front().or_else(|| node.out.try_recv()) else {
                break;
            };
            let batch = node.out.gather(first, &mut node.held);
            moved += batch.len();
            self.append(Outgoing::joined(&batch).to_vec());
        }
    }

    /// Appends one message to the stream; every node applies it now, and they agree on it.
    pub(super) fn append(&mut self, payload: Vec<u8>) {
        let seq = self.stream.len() as u64 + 1;
        let msg = StreamEvent {
            seq,
            stream_ms: stream_ms(seq),
            payload: &payload,
        };
        let taken: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.hub.apply_stream(msg).is_ok())
            .collect();
        assert!(
            taken.iter().all(|&t| t == taken[0]),
            "the nodes disagree on whether message {seq} is an event: {taken:?}"
        );
        let clock = self.nodes[0].hub.clock().now();
        for (i, n) in self.nodes.iter().enumerate() {
            assert_eq!(
                n.hub.clock().now(),
                clock,
                "n{i}'s clock after message {seq}"
            );
        }
        self.stream.push((payload, taken[0]));
    }

    /// The lagging replicas apply up to `count` more of the stream.
    pub(super) fn observe(&mut self, count: usize) {
        let stream = &self.stream;
        for lag in std::iter::once(&mut self.observer).chain(self.late.as_mut()) {
            lag.catch_up(stream, lag.cursor + count);
        }
    }

    /// The late replica starts from the snapshot of node `from` (or of the observer), once.
    pub(super) fn snapshot(&mut self, from: usize) {
        if self.late.is_some() {
            return;
        }
        let source = match self.nodes.get(from % (self.nodes.len() + 1)) {
            Some(node) => &node.hub,
            None => &self.observer.hub,
        };
        let snapshot = source.snapshot();
        let time = Arc::new(ManualTime::new(crate::wall_start()));
        let hub = Hub::with_time(source.config().clone(), Auditor::disabled(), time);
        let out = hub.replicate("late", "late:7000");
        hub.restore(&snapshot);
        assert_eq!(
            checks::replicated(&hub),
            checks::replicated(source),
            "a replica restored from a snapshot is not what the snapshot was taken of"
        );
        self.late = Some(Lagging {
            hub,
            out,
            cursor: snapshot.seq as usize,
            from: snapshot.seq,
        });
    }

    /// Hands one replica the last `back` messages it applied again: it must skip them.
    pub(super) fn redeliver(&mut self, which: usize, back: u8) {
        let mut hubs: Vec<(&Arc<Hub>, usize)> = self
            .nodes
            .iter()
            .map(|n| (&n.hub, self.stream.len()))
            .collect();
        hubs.push((&self.observer.hub, self.observer.cursor));
        if let Some(late) = &self.late {
            hubs.push((&late.hub, late.cursor));
        }
        let (hub, applied) = hubs[which % hubs.len()];
        let before = checks::replicated(hub);
        for seq in applied.saturating_sub(usize::from(back % 8)) + 1..=applied {
            let msg = StreamEvent {
                seq: seq as u64,
                stream_ms: stream_ms(seq as u64),
                payload: &self.stream[seq - 1].0,
            };
            assert!(
                hub.apply_stream(msg).is_ok(),
                "message {seq} again was not skipped"
            );
        }
        assert_eq!(
            checks::replicated(hub),
            before,
            "a message delivered again changed the state"
        );
    }
}

impl Lagging {
    /// Applies the stream up to message `upto`; it takes each as the nodes did.
    pub(super) fn catch_up(&mut self, stream: &[(Vec<u8>, bool)], upto: usize) {
        let upto = upto.min(stream.len());
        while self.cursor < upto {
            self.cursor += 1;
            let seq = self.cursor as u64;
            let (payload, taken) = &stream[self.cursor - 1];
            let msg = StreamEvent {
                seq,
                stream_ms: stream_ms(seq),
                payload,
            };
            let ok = self.hub.apply_stream(msg).is_ok();
            assert!(
                seq <= self.from || ok == *taken,
                "message {seq} taken otherwise"
            );
        }
    }
}
