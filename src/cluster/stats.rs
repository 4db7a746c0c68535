//! The replication's figures as metrics (`chittyctl stats`, the Prometheus endpoint): named
//! here, once, beside the [`ReplicationStats`] that keeps them, with the few the hub knows
//! (the nodes, the NATS link). Only a clustered node has them.

use super::replication::ReplicationStats;
use crate::hub::Hub;
use crate::metric::Snapshot;
use std::sync::atomic::{AtomicU64, Ordering};

impl ReplicationStats {
    /// Adds the cluster's figures to `out`; none of them holds the hub's lock for more than a
    /// few loads.
    pub fn observe(&self, hub: &Hub, out: &mut Snapshot) {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.gauge(
            "cluster_nodes",
            "Nodes of the cluster, this one included, as this node knows them.",
            hub.node_count() as u64,
        );
        out.gauge(
            "cluster_nats_connected",
            "1 while this node's NATS connection is up, 0 while it is lost.",
            u64::from(hub.linked().unwrap_or(false)),
        );
        out.gauge(
            "cluster_serving",
            "1 while this node admits joins and messages (a member, NATS connected), else 0.",
            u64::from(hub.serving()),
        );
        out.gauge(
            "cluster_applied_seq",
            "The last stream sequence this node applied.",
            hub.applied().0,
        );
        out.gauge(
            "cluster_apply_lag_messages",
            "Stream messages not yet delivered to this node, as the last one delivered said.",
            v(&self.pending),
        );
        out.gauge(
            "cluster_apply_lag_microseconds",
            "How long the last message applied waited between being stored and applied.",
            v(&self.lag_micros),
        );
        out.gauge(
            "cluster_publish_latency_microseconds",
            "Time from publish to the stream's acknowledgement of the last event published.",
            v(&self.publish_micros),
        );
        out.counter(
            "cluster_published_total",
            "Events this node published to the stream and had acknowledged.",
            v(&self.published),
        );
        out.counter(
            "cluster_republished_total",
            "Events whose publish failed, or came after one that failed, sent again (applied once).",
            v(&self.republished),
        );
        out.counter(
            "cluster_applied_total",
            "Stream messages this node applied.",
            v(&self.applied),
        );
        out.counter(
            "cluster_undecodable_total",
            "Stream messages that were not chitty events, skipped.",
            v(&self.undecodable),
        );
        out.histograms.push(self.publish_latency.sample(
            "cluster_publish_seconds",
            "Time from publish to the stream's acknowledgement, per event.",
        ));
    }
}
