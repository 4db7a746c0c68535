//! What the room's stream and the state bucket must be, as JetStream configurations, and how an
//! existing one differs from that: pure functions of configurations, so the rules are tested
//! without a server and the message that refuses a start names every difference at once.
//!
//! The stream is `<cluster-name>`, capturing `<cluster-name>.>`: every event of the room, in the
//! one order every node applies. Its retention is bounded ([`MAX_AGE`], [`MAX_BYTES`], the oldest
//! discarded first): a node that joins a running cluster starts from a snapshot in the bucket,
//! never from the stream's first message, so the stream only has to reach back to the last
//! snapshot. The bucket is a key-value bucket, which JetStream keeps as the stream
//! `KV_<cluster-name>`; chitty creates that stream itself, with the settings of a bucket of
//! history 1, because the client's `create_key_value` asks for the account's information first,
//! which nats-server 2.9's answer cannot be read as.

use super::Storage;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use std::time::Duration;

/// How long the stream keeps an event: far longer than a snapshot's interval and a node's
/// catch-up, short enough that a busy room does not keep a day of chat.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// How many bytes the stream keeps at most (256 MiB): about a million events of chat size. Of
/// age and size, the limit reached first discards the oldest events.
pub const MAX_BYTES: i64 = 256 * 1024 * 1024;

/// The largest event the stream takes (64 KiB): far above anything a participant may send
/// (`--max-frame`), below NATS's default 1 MiB payload limit.
pub const MAX_EVENT: i32 = 64 * 1024;

/// How long JetStream remembers a message id: its default, written down so the stream's
/// configuration is complete. chitty sends no message ids: every node applies each origin's
/// events once by their counter (`ClusterEvent.counter`), however often they are stored.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The room's stream for a cluster named `name`.
pub fn room(name: &str, storage: Storage, replicas: usize) -> Config {
    Config {
        name: name.to_owned(),
        description: Some("chitty: the room's events, in the order every node applies".into()),
        subjects: vec![format!("{name}.>")],
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_age: MAX_AGE,
        max_bytes: MAX_BYTES,
        max_message_size: MAX_EVENT,
        duplicate_window: DUPLICATE_WINDOW,
        storage: storage.into(),
        num_replicas: replicas,
        ..Config::default()
    }
}

/// The stream behind the state bucket `name` (`KV_<name>`), as a key-value bucket of history 1:
/// the latest value of each key (snapshots, node records), rolled up and never deleted by a
/// delete marker.
pub fn bucket(name: &str, storage: Storage, replicas: usize) -> Config {
    Config {
        name: bucket_stream(name),
        description: Some("chitty: snapshots of the room and the nodes' records".into()),
        subjects: vec![format!("$KV.{name}.>")],
        retention: RetentionPolicy::Limits,
        max_messages_per_subject: 1,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: storage.into(),
        num_replicas: replicas,
        ..Config::default()
    }
}

/// The name of the stream JetStream keeps the bucket `name` in.
pub fn bucket_stream(name: &str) -> String {
    format!("KV_{name}")
}

/// What makes an existing room stream unusable as `want`, in words; empty when it will do.
/// Limits (age, size) are the operator's to tune and are only reported, see [`unbounded`].
pub fn room_differences(have: &Config, want: &Config) -> Vec<String> {
    let mut out = common_differences(have, want);
    if have.discard != DiscardPolicy::Old {
        out.push(
            "it discards new events when full (discard new), so the room would stop; chitty \
             needs discard old"
                .into(),
        );
    }
    if have.max_message_size > 0 && have.max_message_size < want.max_message_size {
        out.push(format!(
            "its largest message is {} bytes; chitty needs at least {}",
            have.max_message_size, want.max_message_size
        ));
    }
    out
}

/// What makes an existing bucket stream unusable as `want`; empty when it will do.
pub fn bucket_differences(have: &Config, want: &Config) -> Vec<String> {
    let mut out = common_differences(have, want);
    if have.max_messages_per_subject < 1 {
        out.push("it keeps no history per key, so it is not a key-value bucket".into());
    }
    out
}

/// Whether an existing room stream keeps everything forever (no age limit and no size or
/// count limit): usable, but it grows without end, which chittyd warns about.
pub fn unbounded(have: &Config) -> bool {
    have.max_age.is_zero() && have.max_bytes <= 0 && have.max_messages <= 0
}

fn common_differences(have: &Config, want: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if have.subjects != want.subjects {
        out.push(format!(
            "its subjects are {:?}; chitty needs exactly {:?}",
            have.subjects, want.subjects
        ));
    }
    if have.retention != RetentionPolicy::Limits {
        out.push(format!(
            "its retention is {}; chitty needs limits (events are kept for every node, not \
             removed once one has read them)",
            retention(have.retention)
        ));
    }
    if have.storage != want.storage {
        out.push(format!(
            "its storage is {}; --cluster-storage is {}",
            storage(have.storage),
            storage(want.storage)
        ));
    }
    if have.num_replicas != want.num_replicas {
        out.push(format!(
            "it has {} replicas; --cluster-replicas is {}",
            have.num_replicas, want.num_replicas
        ));
    }
    if have.sealed {
        out.push("it is sealed: nothing can be added to it".into());
    }
    if let Some(mirror) = &have.mirror {
        out.push(format!(
            "it mirrors {}, so nothing can be published to it",
            mirror.name
        ));
    }
    out
}

fn retention(r: RetentionPolicy) -> &'static str {
    match r {
        RetentionPolicy::Limits => "limits",
        RetentionPolicy::Interest => "interest",
        RetentionPolicy::WorkQueue => "work queue",
    }
}

/// A storage type as `--cluster-storage` spells it.
pub fn storage(s: StorageType) -> &'static str {
    match s {
        StorageType::File => "file",
        StorageType::Memory => "memory",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_chitty_creates_is_what_it_accepts() {
        let want = room("chitty", Storage::File, 1);
        assert_eq!(want.subjects, ["chitty.>"]);
        assert!(room_differences(&want, &want).is_empty());
        assert!(!unbounded(&want));
        let kv = bucket("chitty", Storage::Memory, 3);
        assert_eq!(kv.name, "KV_chitty");
        assert_eq!(kv.subjects, ["$KV.chitty.>"]);
        assert!(bucket_differences(&kv, &kv).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let want = room("chitty", Storage::File, 1);
        let have = Config {
            subjects: vec!["orders.>".into()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::Memory,
            num_replicas: 3,
            discard: DiscardPolicy::New,
            max_message_size: 1024,
            ..want.clone()
        };
        let d = room_differences(&have, &want).join("; ");
        for needle in [
            "orders.>",
            "work queue",
            "storage is memory; --cluster-storage is file",
            "3 replicas",
            "discard new",
            "1024 bytes",
        ] {
            assert!(d.contains(needle), "{needle:?} not in {d}");
        }
        // Limits are the operator's: other ones are not a difference.
        let tuned = Config {
            max_age: Duration::from_secs(60),
            max_bytes: -1,
            ..want.clone()
        };
        assert!(room_differences(&tuned, &want).is_empty());
        let forever = Config {
            max_age: Duration::ZERO,
            max_bytes: -1,
            max_messages: -1,
            ..want
        };
        assert!(unbounded(&forever));
    }
}
