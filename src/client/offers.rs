//! What the server offers, as its welcome says: which of chitty's extensions it understands
//! and how fast a participant may send. The client asks before it acts: a direct message sent
//! to a server without the "direct" capability would be broadcast to everyone (the original
//! Chitty-Chat ignores `recipient_id`), so `/msg` is refused before anything is sent.
//!
//! Everything here comes from the network, so it is checked: a rate that is not a positive,
//! finite number means no limit, as 0 does.

use crate::pb;

/// The capability that makes `recipient_id` a direct message rather than a broadcast.
pub const DIRECT: &str = "direct";
/// The capability that answers a `RosterRequest` with the sessions online.
pub const ROSTER: &str = "roster";

/// What one server offers. The default is what a server without a welcome offers: nothing
/// beyond the original protocol, and no announced limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offers {
    /// Whether the server sent a welcome at all (chittyd always does).
    pub welcomed: bool,
    /// Direct messages go to their recipient alone.
    pub direct: bool,
    /// `/users` can ask the server who is online.
    pub roster: bool,
    /// The per-session rate limit, if any.
    pub rate: Option<Rate>,
}

/// A per-session rate limit: a token bucket of `burst` refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained messages per second; always positive and finite.
    pub per_second: f64,
    /// Messages at once; at least 1.
    pub burst: u32,
}

impl Rate {
    /// A limit from what the server announced, or `None` for "no limit" (0, or anything that
    /// is not a positive finite rate).
    pub fn new(per_second: f64, burst: u32) -> Option<Rate> {
        (per_second.is_finite() && per_second > 0.0).then_some(Rate {
            per_second,
            burst: burst.max(1),
        })
    }
}

impl Offers {
    /// What the welcome's `ServerInfo` says; `None` (no welcome) offers nothing.
    pub fn from_welcome(info: Option<&pb::ServerInfo>) -> Offers {
        let Some(info) = info else {
            return Offers::default();
        };
        let has = |name: &str| info.capabilities.iter().any(|c| c == name);
        Offers {
            welcomed: true,
            direct: has(DIRECT),
            roster: has(ROSTER),
            rate: Rate::new(info.rate_per_second, info.rate_burst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_welcome_lists_what_is_offered() {
        let info = pb::ServerInfo {
            capabilities: vec!["direct".into(), "roster".into(), "later".into()],
            rate_per_second: 5.0,
            rate_burst: 10,
            flood_limit: 50,
            max_message_chars: 128,
        };
        let offers = Offers::from_welcome(Some(&info));
        assert!(offers.welcomed && offers.direct && offers.roster);
        assert_eq!(
            offers.rate,
            Some(Rate {
                per_second: 5.0,
                burst: 10
            })
        );
    }

    #[test]
    fn no_welcome_offers_nothing_and_bad_rates_mean_no_limit() {
        assert_eq!(Offers::from_welcome(None), Offers::default());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Rate::new(bad, 10), None, "{bad}");
        }
        assert_eq!(Rate::new(2.0, 0).map(|r| r.burst), Some(1));
        let bare = Offers::from_welcome(Some(&pb::ServerInfo::default()));
        assert!(bare.welcomed && !bare.direct && !bare.roster && bare.rate.is_none());
    }
}
