//! Who is who: the participants' names by id, as this client has learned them from join and
//! leave notices, messages and rosters, so both modes name people the same way: `bob #3`, or
//! `#5` for a WebSocket user without a name (never an empty name).
//!
//! It also remembers a few who left, so that a direct message refused because its recipient is
//! gone can say who that was.

use super::printable;
use crate::pb::{self, chat_message::Kind};
use std::collections::{BTreeMap, VecDeque};

/// How many departed participants are remembered; older ones are forgotten (an error about
/// them then names the id alone).
const DEPARTED: usize = 256;

/// The names this client knows, by id.
#[derive(Debug, Default)]
pub struct Directory {
    /// Participants online as far as we know, by id; names already printable.
    online: BTreeMap<u64, String>,
    /// Participants seen leaving, oldest first, at most [`DEPARTED`].
    departed: VecDeque<(u64, String)>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Directory {
        Directory::default()
    }

    /// Forgets everyone: after a lost connection, a restarted server gives new ids.
    pub fn clear(&mut self) {
        self.online.clear();
        self.departed.clear();
    }

    /// Learns from a message from the server.
    pub fn observe(&mut self, msg: &pb::ChatMessage) {
        match msg.kind() {
            Kind::Join if msg.sender_id != 0 => {
                self.departed.retain(|(id, _)| *id != msg.sender_id);
                self.learn(msg.sender_id, &msg.subject);
            }
            Kind::Leave if msg.sender_id != 0 => {
                let name = self
                    .online
                    .remove(&msg.sender_id)
                    .unwrap_or_else(|| printable(&msg.subject));
                if self.departed.len() >= DEPARTED {
                    self.departed.pop_front();
                }
                self.departed.push_back((msg.sender_id, name));
            }
            Kind::Message | Kind::Direct if msg.sender_id != 0 => {
                self.learn(msg.sender_id, &msg.username);
            }
            Kind::Roster => {
                self.online = msg
                    .roster
                    .iter()
                    .filter(|p| !p.username.is_empty())
                    .map(|p| (p.id, printable(&p.username)))
                    .collect();
            }
            _ => {}
        }
    }

    fn learn(&mut self, id: u64, name: &str) {
        if !name.is_empty() {
            self.online.insert(id, printable(name));
        }
    }

    /// How participant `id` is named: `bob #3`, or `#3` when no name is known.
    pub fn who(&self, id: u64) -> String {
        match self.online.get(&id) {
            Some(name) => format!("{name} #{id}"),
            None => format!("#{id}"),
        }
    }

    /// The name a message is from: its username, or `#5` for a sender without one.
    pub fn sender(msg: &pb::ChatMessage) -> String {
        if msg.username.is_empty() && msg.sender_id != 0 {
            format!("#{}", msg.sender_id)
        } else {
            printable(&msg.username)
        }
    }

    /// A message's sender with its id, from the message alone: `bob #3`, or `#5`.
    pub fn sender_tag(msg: &pb::ChatMessage) -> String {
        if msg.username.is_empty() {
            format!("#{}", msg.sender_id)
        } else {
            format!("{} #{}", printable(&msg.username), msg.sender_id)
        }
    }

    /// The participants known to be online, in id order, as [`Directory::who`] names them.
    pub fn seen(&self) -> Vec<String> {
        self.online.keys().map(|&id| self.who(id)).collect()
    }

    /// A ROSTER's list: `alice #1 (grpc), #5 (websocket)`.
    pub fn roster(msg: &pb::ChatMessage) -> String {
        let listed: Vec<String> = msg
            .roster
            .iter()
            .map(|p| {
                let name = if p.username.is_empty() {
                    format!("#{}", p.id)
                } else {
                    format!("{} #{}", printable(&p.username), p.id)
                };
                format!("{name} ({})", printable(&p.transport))
            })
            .collect();
        if listed.is_empty() {
            "nobody".to_owned()
        } else {
            listed.join(", ")
        }
    }

    /// What an ERROR about something we sent means. For a direct message (the error carries
    /// its recipient) it says whether the recipient has gone: `not delivered: bob #3 has left
    /// (user 3 is not connected)`.
    pub fn refusal(&self, msg: &pb::ChatMessage) -> String {
        let why = printable(&msg.message);
        let to = msg.recipient_id;
        if to == 0 {
            return why;
        }
        if !self.online.contains_key(&to)
            && let Some((_, name)) = self.departed.iter().rev().find(|(id, _)| *id == to)
        {
            return format!("not delivered: {name} #{to} has left ({why})");
        }
        format!("not delivered to {}: {why}", self.who(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: Kind, id: u64, name: &str) -> pb::ChatMessage {
        pb::ChatMessage {
            kind: kind as i32,
            sender_id: id,
            subject: name.into(),
            username: "SERVER".into(),
            ..Default::default()
        }
    }

    fn error(to: u64, text: &str) -> pb::ChatMessage {
        pb::ChatMessage {
            kind: Kind::Error as i32,
            recipient_id: to,
            message: text.into(),
            username: "SERVER".into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_come_from_notices_and_messages() {
        let mut d = Directory::new();
        assert_eq!(d.who(3), "#3");
        d.observe(&notice(Kind::Join, 3, "bob"));
        assert_eq!(d.who(3), "bob #3");
        let said = pb::ChatMessage {
            kind: Kind::Message as i32,
            sender_id: 4,
            username: "carol\u{1b}[2J".into(),
            ..Default::default()
        };
        d.observe(&said);
        assert_eq!(d.who(4), "carol\u{fffd}[2J #4");
        assert_eq!(d.seen(), ["bob #3", "carol\u{fffd}[2J #4"]);
        d.observe(&notice(Kind::Leave, 3, "bob"));
        assert_eq!(d.who(3), "#3");
        d.clear();
        assert!(d.seen().is_empty());
    }

    #[test]
    fn a_sender_without_a_name_is_its_id() {
        let anonymous = pb::ChatMessage {
            kind: Kind::Direct as i32,
            sender_id: 5,
            ..Default::default()
        };
        assert_eq!(Directory::sender(&anonymous), "#5");
        assert_eq!(Directory::sender_tag(&anonymous), "#5");
        let named = pb::ChatMessage {
            username: "bob".into(),
            ..anonymous.clone()
        };
        assert_eq!(Directory::sender_tag(&named), "bob #5");
        let mut d = Directory::new();
        d.observe(&anonymous);
        assert_eq!(d.who(5), "#5", "an empty name is never learned");
    }

    #[test]
    fn a_roster_lists_names_ids_and_transports() {
        let roster = pb::ChatMessage {
            kind: Kind::Roster as i32,
            roster: vec![
                pb::Participant {
                    id: 1,
                    username: "alice".into(),
                    transport: "grpc".into(),
                },
                pb::Participant {
                    id: 5,
                    username: String::new(),
                    transport: "websocket".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            Directory::roster(&roster),
            "alice #1 (grpc), #5 (websocket)"
        );
        let mut d = Directory::new();
        d.observe(&notice(Kind::Join, 9, "gone"));
        d.observe(&roster);
        assert_eq!(d.seen(), ["alice #1"], "the roster replaces what was seen");
        assert_eq!(Directory::roster(&pb::ChatMessage::default()), "nobody");
    }

    #[test]
    fn a_refused_direct_message_says_who_has_gone() {
        let mut d = Directory::new();
        d.observe(&notice(Kind::Join, 3, "bob"));
        d.observe(&notice(Kind::Leave, 3, "bob"));
        assert_eq!(
            d.refusal(&error(3, "user 3 is not connected")),
            "not delivered: bob #3 has left (user 3 is not connected)"
        );
        assert_eq!(
            d.refusal(&error(7, "user 7 is not connected")),
            "not delivered to #7: user 7 is not connected"
        );
        d.observe(&notice(Kind::Join, 4, "carol"));
        assert_eq!(
            d.refusal(&error(4, "message is too long")),
            "not delivered to carol #4: message is too long"
        );
        assert_eq!(d.refusal(&error(0, "rate limit")), "rate limit");
        // Joining again under the same id (never, with chittyd) is not "left".
        d.observe(&notice(Kind::Join, 3, "bob"));
        assert!(
            d.refusal(&error(3, "x"))
                .starts_with("not delivered to bob #3")
        );
    }

    #[test]
    fn departed_names_are_bounded() {
        let mut d = Directory::new();
        for id in 1..=(DEPARTED as u64 + 10) {
            d.observe(&notice(Kind::Join, id, "p"));
            d.observe(&notice(Kind::Leave, id, "p"));
        }
        assert_eq!(d.departed.len(), DEPARTED);
        assert!(d.refusal(&error(1, "x")).starts_with("not delivered to #1"));
    }
}
