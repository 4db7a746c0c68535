//! `chittyctl cluster`: the cluster's nodes as the answering node knows them, for people (a
//! table) and scripts (`--json`), and the lag figures `chittyctl clock` shares.

use crate::{rfc3339, write_table};
use chitty::pb::admin::{self as pb, node::State};
use serde_json::json;
use std::io::{self, Write};
use std::time::Duration;

/// A short duration as people read it: `850 µs`, `1.5 ms`, `400 ms`, `4.0 s`.
fn short(d: Duration) -> String {
    match d.as_micros() {
        0..1_000 => format!("{} µs", d.as_micros()),
        1_000..10_000 => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        10_000..1_000_000 => format!("{} ms", d.as_millis()),
        _ => format!("{:.1} s", d.as_secs_f64()),
    }
}

/// A node's lag behind the stream: messages not yet delivered to it, and how long the last
/// message applied waited.
pub(crate) fn lag(pending: u64, waited: Duration) -> String {
    let messages = if pending == 1 { "message" } else { "messages" };
    format!(
        "{pending} {messages} pending, last applied after {}",
        short(waited)
    )
}

/// The state's stable name (`--json`); people read it with a space for the underscore.
fn state(s: i32) -> &'static str {
    match State::try_from(s) {
        Ok(State::Serving) => "serving",
        Ok(State::NotServing) => "not_serving",
        Ok(State::Alive) => "alive",
        Ok(State::Silent) => "silent",
        Err(_) => "unknown",
    }
}

/// Prints the nodes: a table with this node marked, then this node's place in the stream.
pub(crate) fn print(r: &pb::ListNodesResponse, json: bool, out: &mut impl Write) -> io::Result<()> {
    let waited = Duration::from_micros(r.lag_micros);
    let me = r.nodes.iter().find(|n| n.this_node);
    if json {
        let nodes: Vec<_> = r
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name,
                    "address": n.address,
                    "incarnation": n.incarnation,
                    "participants": n.participants,
                    "heard": rfc3339(n.heard_ms),
                    "silent_seconds": Duration::from_millis(n.silent_ms).as_secs_f64(),
                    "state": state(n.state),
                    "this_node": n.this_node,
                })
            })
            .collect();
        let doc = json!({
            "node": me.map(|n| n.name.as_str()),
            "applied_seq": r.applied_seq,
            "pending": r.pending,
            "lag_seconds": waited.as_secs_f64(),
            "node_timeout_seconds": Duration::from_millis(r.node_timeout_ms).as_secs_f64(),
            "nodes": nodes,
        });
        return writeln!(out, "{doc}");
    }
    let mut rows = vec![
        ["NAME", "ADDRESS", "PARTICIPANTS", "HEARD", "STATE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for n in &r.nodes {
        let name = if n.this_node {
            format!("{} (this node)", n.name)
        } else {
            n.name.clone()
        };
        rows.push(vec![
            name,
            n.address.clone(),
            n.participants.to_string(),
            format!("{} ago", short(Duration::from_millis(n.silent_ms))),
            state(n.state).replace('_', " "),
        ]);
    }
    write_table(out, &rows)?;
    let count = match r.nodes.len() {
        1 => "1 node".to_owned(),
        n => format!("{n} nodes"),
    };
    writeln!(
        out,
        "{count}; this node applied stream sequence {}: {}; a node unheard for {} is declared lost",
        r.applied_seq,
        lag(r.pending, waited),
        short(Duration::from_millis(r.node_timeout_ms)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_print_as_a_table_and_as_json() {
        let node = |name: &str, silent_ms, this_node, state: State| pb::Node {
            name: name.into(),
            address: format!("{name}.example:8080"),
            incarnation: 7,
            participants: 2,
            heard_ms: 1_800_000_000_000,
            silent_ms,
            this_node,
            state: state as i32,
        };
        let r = pb::ListNodesResponse {
            nodes: vec![
                node("n1", 400, true, State::Serving),
                node("n2", 9_000, false, State::Silent),
            ],
            pending: 3,
            lag_micros: 1_500,
            applied_seq: 42,
            node_timeout_ms: 5_000,
        };
        let mut text = Vec::new();
        print(&r, false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME            ADDRESS          PARTICIPANTS  HEARD       STATE",
                "n1 (this node)  n1.example:8080  2             400 ms ago  serving",
                "n2              n2.example:8080  2             9.0 s ago   silent",
                "2 nodes; this node applied stream sequence 42: 3 messages pending, last applied \
                 after 1.5 ms; a node unheard for 5.0 s is declared lost",
            ]
        );
        let mut json = Vec::new();
        print(&r, true, &mut json).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["node"], "n1");
        assert_eq!(json["applied_seq"], 42);
        assert_eq!(json["lag_seconds"], 0.0015);
        assert_eq!(json["nodes"][1]["state"], "silent");
        assert_eq!(json["nodes"][1]["silent_seconds"], 9.0);
        assert_eq!(json["nodes"][0]["heard"], "2027-01-15T08:00:00Z");
    }
}
