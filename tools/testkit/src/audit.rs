//! The audit file as a test reads it: one JSON object per line, written by chittyd's writer
//! thread some time after the event.

use serde_json::Value;
use std::path::Path;

/// The records in the audit file at `path` (none while it does not exist). Every line must be
/// one JSON object: a torn or merged line fails the test.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is one JSON object"))
        .collect()
}

/// The records, once they satisfy `done` (the writer is a thread of its own, so a record
/// arrives some time after its event); `what` names the wait in the failure.
pub async fn records_until(path: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut records = Vec::new();
    crate::time::wait_until(what, || {
        records = self::records(path);
        done(&records)
    })
    .await;
    records
}

/// The records once one of them satisfies `wanted`.
pub async fn record_arrives(path: &Path, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    records_until(path, "the audit record", |records| {
        records.iter().any(&wanted)
    })
    .await
}
