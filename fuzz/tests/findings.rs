//! Findings of the fuzzing work, each as the smallest test that failed before its fix: they
//! stay as regression tests. A new finding goes here `#[ignore]`d until it is fixed.

use chitty::audit::Auditor;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::check_username;
use chitty::hub::{Event, Hub, HubConfig, ManualTime, SessionError, Target, Transport};
use chitty::pb::chat_message::Kind;
use chitty_fuzz::peer::Peer;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

/// `Hub::kick` adds the ban to `Instant::now()` with `+`, which panics when the sum does not fit
/// (the admin service passes `ban_seconds` straight through, so `ban_seconds: u64::MAX` does it).
/// The panic comes after the kick was counted and audited but before the participant is
/// removed: the trail says "kick", the participant is still connected, and the admin call dies.
#[test]
fn a_very_long_ban_kicks_instead_of_panicking() {
    let hub = chitty_fuzz::hub(8, 8);
    let _alice = chitty_fuzz::joined(&hub, Transport::Grpc, "alice");
    let kicked = catch_unwind(AssertUnwindSafe(|| {
        hub.kick(
            Target::Name("alice"),
            "spam",
            Some(Duration::from_secs(u64::MAX)),
            "operator",
        )
    }));
    assert!(kicked.is_ok(), "Hub::kick panicked");
    assert!(hub.users().is_empty(), "alice is still connected");
}

/// The rules refuse whitespace and control characters, but not invisible format characters
/// (Unicode category Cf: zero-width space U+200B, the bidirectional overrides U+202A..U+202E,
/// U+2060, U+FEFF, the soft hyphen U+00AD). So `SERVER` followed by a zero-width space is a
/// valid username: it is not `SERVER` byte for byte, yet every terminal and browser shows it as
/// `SERVER`, and its messages read like the server's notices. The same trick copies any
/// participant's name.
#[test]
fn a_username_that_displays_as_server_is_refused() {
    let accepted: Vec<&str> = [
        "SERVER\u{200b}",
        "\u{2060}SERVER",
        "SER\u{ad}VER",
        "\u{feff}server",
    ]
    .into_iter()
    .filter(|name| check_username(name).is_ok())
    .collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

/// `Hub::shutdown` broadcasts its notice, then discards the list of sessions whose backlog
/// overflowed on it (`state.overflowed.clear()`) and ends every session cleanly. A participant
/// that was not keeping up therefore misses the notice, and its stream still ends with a clean
/// status (gRPC OK, WebSocket 1000) as if it had received everything, where the ordering
/// contract promises a slow consumer `RESOURCE_EXHAUSTED` rather than a silent skip.
#[test]
fn a_full_backlog_at_shutdown_is_not_a_clean_end() {
    let hub = chitty_fuzz::hub(1, 8);
    let mut alice = chitty_fuzz::joined(&hub, Transport::Grpc, "alice");
    // bob's join notice fills alice's one-frame backlog.
    let _bob = chitty_fuzz::joined(&hub, Transport::Grpc, "bob");
    hub.shutdown("going down");
    let frames = alice.drain().to_vec();
    let got_notice = frames.iter().any(|f| f.kind == Kind::Shutdown);
    let slow = matches!(
        alice.ending,
        Some(Ending::Error(SessionError::SlowConsumer(_)))
    );
    assert!(
        got_notice || slow,
        "alice got {frames:?} and ended {:?}",
        alice.ending
    );
}

/// The WebSocket frame parser derives `Deserialize` for `Incoming`, and serde's derived
/// deserializer also accepts a struct as an array of its fields in declaration order. So
/// `[2, "hello"]` is taken as a direct message to user 2 and `[0, "hi", 5]` as a broadcast with
/// timestamp 5, although the protocol defines only objects and promises an error frame for
/// anything else ("a wrong type").
#[test]
fn a_json_array_is_not_a_frame() {
    for frame in [r#"[2, "hello"]"#, r#"[0, "hi", 5]"#] {
        let parsed = chitty::server::websocket::parse(frame);
        assert!(parsed.is_err(), "{frame} was accepted as {parsed:?}");
    }
}

/// `Hub::join` told a banned name how long its ban still lasts as `(until - now).as_secs() + 1`:
/// with a whole number of seconds left it said one too many ("banned for another 11 s" with 10
/// left), where `SessionError::Banned` promises the seconds rounded up. With the wall clock's
/// nanoseconds a whole number is rare; once `hub_sessions` drove time in whole seconds it was
/// not (its inputs: `corpus/hub_sessions/ban-ends-and-the-name-rejoins` and `4d549415…`).
#[test]
fn a_ban_with_whole_seconds_left_says_just_those() {
    let time = Arc::new(ManualTime::new(chitty_fuzz::wall_start()));
    let hub = Hub::with_time(HubConfig::default(), Auditor::disabled(), time.clone());
    let _alice = chitty_fuzz::joined(&hub, Transport::Grpc, "alice");
    let ban = Some(Duration::from_secs(60));
    assert!(hub.kick(Target::Name("alice"), "spam", ban, "op").is_some());
    time.advance(Duration::from_secs(50));
    let mut again = Peer::new(&hub, Transport::Grpc);
    again.handle().handle(0, Event::Join { username: "alice" });
    again.drain();
    let banned = SessionError::Banned {
        name: "alice".into(),
        seconds: 10,
    };
    assert_eq!(again.ending, Some(Ending::Error(banned)));
}
