//! The hub's limits on a gRPC session, each while alice and bob keep chatting: a message flood
//! (rate limit, then disconnect) and a stream that never joins. Each attacker is refused or cut
//! off with its reason; the others' messages all arrive, in order.

use chitty::hub::RateLimit;
use chitty::pb::chat_message::Kind;
use chitty_testkit::time::{HeldClock, TICK};
use chitty_testkit::{Bystanders, config, start};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn a_flood_is_rate_limited_then_disconnected() {
    let mut config = config();
    config.hub.rate = Some(RateLimit {
        per_second: 1.0,
        burst: 3,
        flood: 20,
    });
    let server = start(config).await;
    let mut chat = Bystanders::join(&server).await;
    let mut flooder = server.join("flooder").await;
    chat.bob.until_joined("flooder").await;
    for i in 0..40 {
        flooder.say_as("flooder", &format!("spam {i}")).await;
    }
    // The burst goes through; then private refusals; then the cut-off (which drops whatever
    // was still queued for the flooder).
    let status = loop {
        match flooder.next().await {
            Ok(Some(m)) if m.kind == Kind::Error as i32 => {
                assert!(m.message.starts_with("rate limit"), "{m:?}");
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the flooder's stream ended cleanly"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("flooding"), "{status:?}");
    // Bob saw exactly the burst, then the flooder's leave.
    let mut spam = 0;
    loop {
        let m = chat.bob.expect_msg().await;
        if m.kind == Kind::Leave as i32 {
            assert_eq!(m.subject, "flooder");
            break;
        }
        assert_eq!(m.message, format!("spam {spam}"));
        spam += 1;
    }
    assert_eq!(spam, 3);
    let stats = server.hub.stats();
    assert_eq!(stats.flood_disconnects.load(Relaxed), 1);
    assert_eq!(stats.rate_limited.load(Relaxed), 20);
    // Alice's and bob's own bursts are theirs; they are unaffected.
    chat.still_chat(3).await;
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_never_joins_is_closed() {
    const DEADLINE: Duration = Duration::from_millis(300);
    // Paused time, held while the sockets work: the deadline passes when the test says so.
    let _clock = HeldClock::hold();
    let mut config = config();
    config.hub.join_deadline = DEADLINE;
    let server = start(config).await;
    let mut chat = Bystanders::join(&server).await;
    let mut lurker = server.open().await;
    // Its stream is open, so its deadline runs; alice and bob joined before theirs.
    tokio::time::advance(DEADLINE + TICK).await;
    let status = lurker.expect_status().await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("no join"), "{status:?}");
    assert_eq!(server.hub.stats().join_timeouts.load(Relaxed), 1);
    chat.still_chat(2).await;
    server.shutdown().await;
}
