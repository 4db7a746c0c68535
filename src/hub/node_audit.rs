//! What the audit trail says about the cluster itself, beside its participants: a node coming
//! up (`node_up`) and being declared lost (`node_lost`), each audited once, by the node that
//! published it, with its stream sequence; a node leaving the cluster as it shuts down
//! (`node_left`, by that node as it publishes its departure); and this node losing and regaining NATS
//! (`nats_lost`, `nats_back`), audited by the node that saw it. None of them takes a Lamport
//! time: each record carries the time the node had reached, written under the hub's lock like
//! every record, so the trail stays in order.

use super::{Hub, State};
use crate::audit::Record;
use crate::pb::cluster as pb;

impl Hub {
    /// This node's own `NodeUp` is being applied: it is a member from this stream sequence on.
    pub(super) fn audit_node_up(&self, state: &State, address: &str) {
        if !self.audit.enabled() {
            return;
        }
        let mut r = Record::new(self.clock.now(), "node_up");
        r.reason = Some(format!("serving participants at {address}"));
        self.audited(state, r);
    }

    /// A `NodeLost` is being applied, before the lost node's participants leave: audited by
    /// the node that declared it, when it takes effect (a second declaration of the same loss,
    /// from another node, removes nothing and is not audited). `count` is how many of its
    /// participants leave.
    pub(super) fn audit_node_lost(&self, state: &State, lost: &pb::NodeLost) {
        if !self.auditing(state) || !state.cluster.has_node(&lost.node, lost.incarnation) {
            return;
        }
        let gone = state
            .sessions
            .iter()
            .filter(|s| s.origin == lost.incarnation)
            .count();
        let mut r = Record::new(self.clock.now(), "node_lost");
        r.reason = Some(format!(
            "node {:?} (incarnation {}) was unheard for longer than the node timeout",
            lost.node, lost.incarnation
        ));
        r.count = Some(gone as u64);
        self.audited(state, r);
    }

    /// This node leaves the cluster as it shuts down (its participants' leaves are queued
    /// before): audited as it publishes its departure, since it applies nothing more.
    pub(super) fn audit_node_left(&self, incarnation: u64) {
        let Some(node) = self.node_name() else {
            return;
        };
        if !self.audit.enabled() {
            return;
        }
        let _state = self.lock();
        let mut r = Record::new(self.clock.now(), "node_left");
        r.reason = Some(format!("shutting down (incarnation {incarnation})"));
        r.node = Some(node.to_owned());
        self.audit.record(r);
    }

    /// This node lost its NATS connection (`up` false) or has it back: audited here, since
    /// no other node can see it. Nothing on a single node.
    pub fn audit_link(&self, up: bool, detail: &str) {
        let Some(node) = self.node_name() else {
            return;
        };
        if !self.audit.enabled() {
            return;
        }
        // Under the lock, like every record, so the trail stays in Lamport order.
        let _state = self.lock();
        let event = if up { "nats_back" } else { "nats_lost" };
        let mut r = Record::new(self.clock.now(), event);
        r.reason = Some(detail.to_owned());
        r.node = Some(node.to_owned());
        self.audit.record(r);
    }
}
