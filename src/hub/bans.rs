//! The bans in force: which names may not join, until when, why and by whom. Keyed by the folded
//! name (`rules::fold`), so a ban on `bob` holds for `Bob`; the name is kept as its owner typed
//! it. Plain data that takes the time as a parameter: the hub decides in its monotonic time, and
//! converts to and from the wall clock only where a ban is shown or saved.

use super::rules;
use super::time::as_wall;
use crate::state::SavedBan;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// A ban, as the admin interface shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    /// The name as its owner typed it.
    pub name: String,
    /// When it ends.
    pub until: SystemTime,
    /// When it was given.
    pub since: SystemTime,
    /// Why.
    pub reason: String,
    /// Who gave it.
    pub actor: String,
}

#[derive(Debug, Clone)]
struct Ban {
    name: String,
    until: Instant,
    since: Instant,
    reason: String,
    actor: String,
}

/// The table. It holds the bans in force, and ended ones only until the next change or listing,
/// which drop them: at most the bans operators gave that have not ended, plus a few.
#[derive(Debug, Default)]
pub(super) struct Bans {
    by_key: HashMap<String, Ban>,
}

impl Bans {
    /// The saved bans that have not ended, at hub time `now`, wall-clock time `wall`. A name that
    /// breaks the rules (a hand-edited file) is skipped, and said so.
    pub(super) fn restore(saved: Vec<SavedBan>, now: Instant, wall: SystemTime) -> Bans {
        let mut bans = Bans::default();
        for b in saved {
            if let Err(e) = rules::check_username(&b.name) {
                tracing::warn!("ignoring the saved ban on {:?}: {e}", b.name);
                continue;
            }
            let Ok(left) = b.until.duration_since(wall) else {
                continue;
            };
            let until = now
                .checked_add(left.min(super::MAX_BAN))
                .unwrap_or(now + Duration::from_secs(86_400));
            let ago = wall.duration_since(b.since).unwrap_or_default();
            let ban = Ban {
                since: now.checked_sub(ago).unwrap_or(now),
                name: b.name,
                until,
                reason: b.reason,
                actor: b.actor,
            };
            let key = rules::fold(&ban.name);
            // Two saved bans on one name (only a hand-edited file has them): the longer holds.
            if bans.by_key.get(&key).is_none_or(|old| old.until < until) {
                bans.by_key.insert(key, ban);
            }
        }
        bans
    }

    /// If the name with folded form `key` is banned at `now`: how long is left.
    pub(super) fn check(&mut self, key: &str, now: Instant) -> Option<Duration> {
        let until = self.by_key.get(key)?.until;
        if until > now {
            return Some(until - now);
        }
        self.by_key.remove(key);
        None
    }

    /// Bans `name` from `now` for `length` (at most `MAX_BAN`), replacing any ban on it.
    pub(super) fn insert(
        &mut self,
        name: &str,
        length: Duration,
        now: Instant,
        reason: &str,
        actor: &str,
    ) {
        self.by_key.retain(|_, b| b.until > now);
        let until = now
            .checked_add(length.min(super::MAX_BAN))
            .unwrap_or(now + Duration::from_secs(86_400));
        let ban = Ban {
            name: name.to_owned(),
            until,
            since: now,
            reason: reason.to_owned(),
            actor: actor.to_owned(),
        };
        self.by_key.insert(rules::fold(name), ban);
    }

    /// Lifts the ban on the name with folded form `key`; `None` if there is none in force.
    pub(super) fn remove(&mut self, key: &str, now: Instant, wall: SystemTime) -> Option<BanInfo> {
        let ban = self.by_key.remove(key)?;
        (ban.until > now).then(|| info(&ban, now, wall))
    }

    /// The bans in force, soonest to end first.
    pub(super) fn list(&mut self, now: Instant, wall: SystemTime) -> Vec<BanInfo> {
        self.by_key.retain(|_, b| b.until > now);
        let mut bans: Vec<&Ban> = self.by_key.values().collect();
        bans.sort_by(|a, b| a.until.cmp(&b.until).then_with(|| a.name.cmp(&b.name)));
        bans.into_iter().map(|b| info(b, now, wall)).collect()
    }

    /// The bans in force, as they are saved.
    pub(super) fn saved(&mut self, now: Instant, wall: SystemTime) -> Vec<SavedBan> {
        self.list(now, wall)
            .into_iter()
            .map(|b| SavedBan {
                name: b.name,
                until: b.until,
                since: b.since,
                reason: b.reason,
                actor: b.actor,
            })
            .collect()
    }
}

fn info(b: &Ban, now: Instant, wall: SystemTime) -> BanInfo {
    BanInfo {
        name: b.name.clone(),
        until: wall
            .checked_add(b.until.saturating_duration_since(now))
            .unwrap_or(wall),
        since: as_wall(b.since, now, wall),
        reason: b.reason.clone(),
        actor: b.actor.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn clocks() -> (Instant, SystemTime) {
        (
            Instant::now(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
    }

    #[test]
    fn a_ban_holds_for_every_form_of_the_name_until_it_ends() {
        let (t0, _) = clocks();
        let mut bans = Bans::default();
        bans.insert("bob", HOUR, t0, "spam", "uid=0");
        for name in ["bob", "Bob", "BOB", "ｂｏｂ"] {
            assert_eq!(bans.check(&rules::fold(name), t0), Some(HOUR), "{name}");
        }
        assert_eq!(bans.check("bobby", t0), None);
        let later = t0 + HOUR - Duration::from_secs(1);
        assert_eq!(bans.check("bob", later), Some(Duration::from_secs(1)));
        assert_eq!(bans.check("bob", t0 + HOUR), None, "ended");
        assert!(bans.by_key.is_empty(), "an ended ban is dropped when found");
    }

    #[test]
    fn bans_are_listed_soonest_first_with_wall_times_and_lifted_by_any_form() {
        let (t0, wall) = clocks();
        let mut bans = Bans::default();
        bans.insert("Carol", 2 * HOUR, t0, "rude", "uid=0 pid=7");
        bans.insert("bob", HOUR, t0, "spam", "uid=0 pid=8");
        bans.insert("dave", Duration::from_secs(10), t0, "", "uid=0");
        let now = t0 + Duration::from_secs(60);
        let wall_now = wall + Duration::from_secs(60);
        let list = bans.list(now, wall_now);
        let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["bob", "Carol"], "dave's ban has ended");
        assert_eq!(list[0].until, wall + HOUR);
        assert_eq!(list[0].since, wall);
        assert_eq!(list[1].actor, "uid=0 pid=7");
        let lifted = bans.remove(&rules::fold("CAROL"), now, wall_now).unwrap();
        assert_eq!(lifted.name, "Carol", "shown as typed");
        assert_eq!(bans.remove("carol", now, wall_now), None, "lifted already");
        assert_eq!(bans.saved(now, wall_now).len(), 1);
    }

    #[test]
    fn saved_bans_come_back_in_hub_time_and_ended_ones_do_not() {
        let (t0, wall) = clocks();
        let saved = vec![
            SavedBan {
                name: "Bob".into(),
                until: wall + HOUR,
                since: wall - HOUR,
                reason: "spam".into(),
                actor: "uid=0".into(),
            },
            SavedBan {
                name: "eve".into(),
                until: wall - Duration::from_secs(1),
                since: wall - HOUR,
                reason: String::new(),
                actor: String::new(),
            },
            SavedBan {
                name: "bad name".into(),
                until: wall + HOUR,
                since: wall,
                reason: String::new(),
                actor: String::new(),
            },
        ];
        let mut bans = Bans::restore(saved, t0, wall);
        assert_eq!(bans.check("bob", t0), Some(HOUR));
        assert_eq!(bans.check("eve", t0), None);
        let list = bans.list(t0, wall);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "Bob");
        assert_eq!(list[0].since, wall - HOUR);
        assert_eq!(list[0].until, wall + HOUR);
    }
}
