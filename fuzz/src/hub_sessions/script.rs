//! The input, read as a script: the hub's limits, then steps until the input runs out. Every
//! enum is weighted by hand (a derived one picks variants evenly), so that scripts get
//! somewhere before their sessions end.

use arbitrary::{Arbitrary, Unstructured};
use chitty::clock::MAX_PEER_TIMESTAMP;
use std::borrow::Cow;

pub(super) const MAX_STEPS: usize = 128;

const NAMES: [&str; 10] = [
    "alice",
    "bob",
    "carol",
    "dave",
    "SERVER",
    "server",
    "",
    "a b",
    "sixteen_chars_ok",
    "seventeen_chars_x",
];

/// Mostly valid messages; the rest break one rule each.
const TEXTS: [&str; 8] = [
    "hi",
    "hello, world",
    "日本語",
    "SERVER",
    "¡olé! 😀",
    "",
    "red \u{1b}[31m",
    "\u{9b}2J",
];

/// Characters of 1 to 4 bytes, repeated around the length limit by `Text::Repeat`.
const WIDE: [char; 4] = ['a', 'é', '語', '😀'];

#[derive(Debug)]
pub(super) struct Script<'a> {
    pub backlog: u8,
    pub max_participants: u8,
    /// The rate limit: off, or a power of two per second (see `model::Limits`).
    pub rate: u8,
    /// The burst and the flood count.
    pub burst_flood: u8,
    /// The join deadline.
    pub deadline: u8,
    pub steps: Vec<Step<'a>>,
}

impl<'a> Script<'a> {
    /// Reads steps until the input runs out: no length prefix or continuation flags, so that
    /// every byte counts and a mutation rarely cuts a script short.
    pub fn read(data: &'a [u8]) -> arbitrary::Result<Script<'a>> {
        let mut u = Unstructured::new(data);
        let mut script = Script {
            backlog: u.arbitrary()?,
            max_participants: u.arbitrary()?,
            rate: u.arbitrary()?,
            burst_flood: u.arbitrary()?,
            deadline: u.arbitrary()?,
            steps: Vec::new(),
        };
        while !u.is_empty() && script.steps.len() < MAX_STEPS {
            script.steps.push(u.arbitrary()?);
        }
        Ok(script)
    }
}

/// A string of at most `max` bytes (the valid UTF-8 prefix of what the input has there), so that
/// one string cannot swallow the rest of the script.
fn short<'a>(u: &mut Unstructured<'a>, max: u8) -> arbitrary::Result<&'a str> {
    let len = usize::from(u8::arbitrary(u)? % max.max(1));
    let bytes = u.bytes(len.min(u.len()))?;
    Ok(match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    })
}

#[derive(Debug)]
pub(super) enum Step<'a> {
    /// A new session, opened the way `opening` says. Its writer drains the outbox after every
    /// `pace % 6 + 1`-th step: a slow one falls behind.
    Connect {
        websocket: bool,
        opening: Opening<'a>,
        pace: u8,
    },
    /// One event from one session.
    Send {
        who: u8,
        stamp: Stamp,
        input: Input<'a>,
    },
    /// Time passes.
    Advance(Span),
    /// The transports' join timers fire: every session past its join deadline that has not
    /// joined is ended, as the gRPC transport does. Timers fire late, so events may reach the
    /// hub first, and the hub must refuse those itself.
    Timers,
    /// The transport drops the handle (a broken connection).
    Drop { who: u8 },
    /// The transport sees the input end.
    Disconnect { who: u8 },
    /// The transport detects abuse (an oversized or unreadable frame).
    Violation { who: u8 },
    /// An operator removes someone, perhaps with a ban.
    Kick { target: Whom<'a>, ban: Option<Ban> },
    /// An operator's notice to the room.
    Announce { text: Text<'a> },
    /// The server shuts down.
    Shutdown,
}

/// Mostly events, then time; rarely a shutdown, which ends everything.
impl<'a> Arbitrary<'a> for Step<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=129 => Step::Send {
                who: u.arbitrary()?,
                stamp: u.arbitrary()?,
                input: u.arbitrary()?,
            },
            130..=164 => Step::Connect {
                websocket: u.arbitrary()?,
                opening: u.arbitrary()?,
                pace: u.arbitrary()?,
            },
            165..=194 => Step::Advance(u.arbitrary()?),
            195..=199 => Step::Timers,
            200..=207 => Step::Drop {
                who: u.arbitrary()?,
            },
            208..=215 => Step::Disconnect {
                who: u.arbitrary()?,
            },
            216..=223 => Step::Violation {
                who: u.arbitrary()?,
            },
            224..=237 => Step::Kick {
                target: u.arbitrary()?,
                ban: u.arbitrary()?,
            },
            238..=252 => Step::Announce {
                text: u.arbitrary()?,
            },
            253..=255 => Step::Shutdown,
        })
    }
}

/// How far time moves, in ticks of 1/64 s: every duration the hub sees is then a whole number
/// of ticks, so the model's integer arithmetic and the hub's floating-point token bucket agree
/// exactly (see `model`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Span {
    /// Up to four seconds: the token bucket refills.
    Ticks(u8),
    /// Up to four minutes: short bans end, join deadlines pass.
    Seconds(u8),
    /// Exactly the flood window, or one tick more.
    FloodWindow(bool),
    /// Up to four hours: long bans end.
    Minutes(u8),
}

impl Arbitrary<'_> for Span {
    fn arbitrary(u: &mut Unstructured<'_>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=149 => Span::Ticks(u.arbitrary()?),
            150..=219 => Span::Seconds(u.arbitrary()?),
            220..=234 => Span::FloodWindow(u.arbitrary()?),
            235..=255 => Span::Minutes(u.arbitrary()?),
        })
    }
}

impl Span {
    /// The span in ticks, at least one.
    pub fn ticks(self) -> u64 {
        let ticks = match self {
            Span::Ticks(n) => u64::from(n),
            Span::Seconds(n) => 64 * u64::from(n),
            Span::FloodWindow(over) => 640 + u64::from(over),
            Span::Minutes(n) => 64 * 60 * u64::from(n),
        };
        ticks.max(1)
    }
}

/// How long a kick bans the name.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ban {
    /// Up to about four minutes, so that the script sees it end (0 bans nothing).
    Seconds(u8),
    /// Up to about four hours.
    Minutes(u8),
    /// Any length, up to `u64::MAX` seconds (the hub clamps it to `MAX_BAN`).
    Any(u64),
}

impl Arbitrary<'_> for Ban {
    fn arbitrary(u: &mut Unstructured<'_>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=179 => Ban::Seconds(u.arbitrary()?),
            180..=239 => Ban::Minutes(u.arbitrary()?),
            240..=255 => Ban::Any(u.arbitrary()?),
        })
    }
}

impl Ban {
    /// The ban in whole seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Ban::Seconds(n) => u64::from(n),
            Ban::Minutes(n) => 60 * u64::from(n),
            Ban::Any(n) => n,
        }
    }
}

/// What a new session does first.
#[derive(Debug, Clone, Copy)]
pub(super) enum Opening<'a> {
    /// Nothing yet: its first event decides.
    Nothing,
    /// It joins the room at once, as `?username=` does on WebSocket.
    Join(Name<'a>),
    /// It registers as a direct-message-only user, as a WebSocket user without a name does.
    Direct,
}

/// Most sessions join, so that the room fills up.
impl<'a> Arbitrary<'a> for Opening<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=39 => Opening::Nothing,
            40..=199 => Opening::Join(u.arbitrary()?),
            200..=255 => Opening::Direct,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Stamp {
    Zero,
    Small(u8),
    /// The hub clock's time.
    Now,
    /// Ahead of the hub clock by this much.
    Ahead(u16),
    /// Around the largest accepted timestamp.
    Limit(i8),
    Any(u64),
}

/// Mostly honest clocks; one beyond the limit ends the session.
impl Arbitrary<'_> for Stamp {
    fn arbitrary(u: &mut Unstructured<'_>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=59 => Stamp::Zero,
            60..=119 => Stamp::Small(u.arbitrary()?),
            120..=179 => Stamp::Now,
            180..=234 => Stamp::Ahead(u.arbitrary()?),
            235..=247 => Stamp::Limit(u.arbitrary()?),
            248..=255 => Stamp::Any(u.arbitrary()?),
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Input<'a> {
    Join(Name<'a>),
    Broadcast {
        claim: Claim<'a>,
        text: Text<'a>,
    },
    Direct {
        claim: Claim<'a>,
        text: Text<'a>,
        recipient: u8,
    },
    Leave(Claim<'a>),
    Empty,
    /// Asks who is online.
    Roster,
    Invalid {
        reason: Text<'a>,
        recipient: u8,
    },
}

/// Mostly messages; the events that end a session (a second join among them) are rarer, so
/// that the room fills up.
impl<'a> Arbitrary<'a> for Input<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=19 => Input::Join(u.arbitrary()?),
            20..=159 => Input::Broadcast {
                claim: u.arbitrary()?,
                text: u.arbitrary()?,
            },
            160..=209 => Input::Direct {
                claim: u.arbitrary()?,
                text: u.arbitrary()?,
                recipient: u.arbitrary()?,
            },
            210..=224 => Input::Leave(u.arbitrary()?),
            225..=229 => Input::Empty,
            230..=234 => Input::Roster,
            235..=255 => Input::Invalid {
                reason: u.arbitrary()?,
                recipient: u.arbitrary()?,
            },
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Name<'a> {
    Pool(u8),
    Raw(&'a str),
}

/// Mostly names from the pool, which clash, get banned and come back.
impl<'a> Arbitrary<'a> for Name<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=191 => Name::Pool(u.arbitrary()?),
            192..=255 => Name::Raw(short(u, 24)?),
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Claim<'a> {
    /// An empty username: "me".
    Me,
    /// The name the session joined with.
    Own,
    Other(Name<'a>),
}

/// A claim of another name ends the session, so it is the rare one.
impl<'a> Arbitrary<'a> for Claim<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=119 => Claim::Me,
            120..=229 => Claim::Own,
            230..=255 => Claim::Other(u.arbitrary()?),
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Text<'a> {
    Pool(u8),
    /// One of `WIDE`, 120 to 135 times: both sides of the 128-character limit.
    Repeat(u8, u8),
    Raw(&'a str),
}

impl<'a> Arbitrary<'a> for Text<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=169 => Text::Pool(u.arbitrary()?),
            170..=209 => Text::Repeat(u.arbitrary()?, u.arbitrary()?),
            210..=255 => Text::Raw(short(u, 160)?),
        })
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum Whom<'a> {
    Name(Name<'a>),
    Id(u8),
}

impl<'a> Name<'a> {
    pub fn get(self) -> &'a str {
        match self {
            Name::Pool(i) => NAMES[usize::from(i) % NAMES.len()],
            Name::Raw(s) => s,
        }
    }
}

impl<'a> Text<'a> {
    pub fn get(self) -> Cow<'a, str> {
        match self {
            Text::Pool(i) => Cow::Borrowed(TEXTS[usize::from(i) % TEXTS.len()]),
            Text::Repeat(c, n) => {
                let c = WIDE[usize::from(c) % WIDE.len()];
                Cow::Owned(std::iter::repeat_n(c, 120 + usize::from(n % 16)).collect())
            }
            Text::Raw(s) => Cow::Borrowed(s),
        }
    }
}

impl Stamp {
    pub fn get(self, now: u64) -> u64 {
        match self {
            Stamp::Zero => 0,
            Stamp::Small(n) => u64::from(n),
            Stamp::Now => now,
            Stamp::Ahead(n) => now + u64::from(n),
            Stamp::Limit(d) => MAX_PEER_TIMESTAMP.wrapping_add_signed(i64::from(d % 3)),
            Stamp::Any(n) => n,
        }
    }
}

/// Small ids, so that direct messages and kicks by id often hit someone.
pub(super) fn small_id(n: u8) -> u64 {
    u64::from(n % 12)
}
