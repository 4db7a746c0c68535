use super::*;

const BASE: Duration = Duration::from_millis(250);
const CAP: Duration = Duration::from_secs(30);

fn status(code: tonic::Code) -> ClientError {
    ClientError::Server(tonic::Status::new(code, "why"))
}

#[test]
fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
    let b = Backoff::new(BASE, CAP, 1);
    let ceilings: Vec<u64> = (1..=10).map(|n| b.ceiling(n).as_millis() as u64).collect();
    assert_eq!(
        ceilings,
        [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    );
    // No overflow however long the outage.
    assert_eq!(b.ceiling(u32::MAX), CAP);
    assert_eq!(Backoff::new(Duration::MAX, CAP, 1).ceiling(3), CAP);
}

#[test]
fn full_jitter_spans_zero_to_the_ceiling() {
    let ceiling = Duration::from_millis(1200);
    assert_eq!(full_jitter(ceiling, 0), Duration::ZERO);
    assert_eq!(full_jitter(ceiling, u64::MAX), ceiling);
    assert_eq!(full_jitter(ceiling, u64::MAX / 2), ceiling / 2);
    assert_eq!(full_jitter(Duration::ZERO, u64::MAX), Duration::ZERO);
    assert_eq!(
        full_jitter(Duration::MAX, u64::MAX),
        Duration::from_nanos(u64::MAX)
    );
}

#[test]
fn each_wait_stays_under_its_ceiling_and_the_waits_spread() {
    let mut b = Backoff::new(BASE, CAP, 42);
    for n in 1..=40 {
        let (attempt, delay) = b.next_delay();
        assert_eq!(attempt, n);
        assert!(delay <= b.ceiling(n), "attempt {n}: {delay:?}");
    }
    // Many clients (seeds) at the same attempt do not all wait the same.
    let firsts: std::collections::BTreeSet<Duration> = (0..50)
        .map(|seed| Backoff::new(BASE, CAP, seed).next_delay().1)
        .collect();
    assert!(firsts.len() > 40, "{firsts:?}");
    assert!(firsts.iter().all(|d| *d <= BASE));
    // The same seed gives the same waits.
    let waits = |seed| {
        let mut b = Backoff::new(BASE, CAP, seed);
        (0..5).map(|_| b.next_delay().1).collect::<Vec<_>>()
    };
    assert_eq!(waits(7), waits(7));
}

#[test]
fn a_success_starts_the_next_outage_from_the_base() {
    let mut b = Backoff::new(BASE, CAP, 3);
    for _ in 0..6 {
        b.next_delay();
    }
    assert_eq!(b.attempts(), 6);
    b.reset();
    assert_eq!(b.attempts(), 0);
    let (attempt, delay) = b.next_delay();
    assert_eq!(attempt, 1);
    assert!(delay <= BASE);
}

#[test]
fn refusals_are_final_and_failures_are_retried() {
    use tonic::Code::*;
    for code in [
        AlreadyExists,
        InvalidArgument,
        PermissionDenied,
        FailedPrecondition,
        Aborted,
    ] {
        assert_eq!(classify(&status(code)), Verdict::GiveUp, "{code:?}");
    }
    for code in [Unavailable, Unknown, Cancelled, ResourceExhausted, Internal] {
        assert_eq!(classify(&status(code)), Verdict::Retry, "{code:?}");
    }
    assert_eq!(classify(&ClientError::Closed), Verdict::Retry);
    assert_eq!(classify(&ClientError::ServerStopped), Verdict::Retry);
    let io = || std::io::Error::other("disk full");
    assert_eq!(classify(&ClientError::Io(io())), Verdict::GiveUp);
    assert_eq!(classify(&ClientError::Terminal(io())), Verdict::GiveUp);
    let gave_up = ClientError::GaveUp {
        exhausted: Some(3),
        last: Box::new(ClientError::Closed),
    };
    assert_eq!(classify(&gave_up), Verdict::GiveUp);
}

#[test]
fn the_shutdown_is_known_by_its_kind_not_its_text() {
    let notice = pb::ChatMessage {
        kind: Kind::Shutdown as i32,
        username: "SERVER".into(),
        message: "going down for maintenance".into(),
        ..Default::default()
    };
    assert!(is_shutdown_notice(&notice));
    let same_text_from_a_user = pb::ChatMessage {
        kind: Kind::Message as i32,
        sender_id: 7,
        username: "mallory".into(),
        ..notice.clone()
    };
    assert!(!is_shutdown_notice(&same_text_from_a_user));
    let an_announcement = pb::ChatMessage {
        kind: Kind::Notice as i32,
        ..notice
    };
    assert!(!is_shutdown_notice(&an_announcement));
}

fn link(policy: Policy) -> Reconnector {
    Reconnector::new(
        &crate::client::ServerAddr::plain("127.0.0.1:1"),
        "alice",
        policy,
    )
}

fn retry(next: Next) -> Retry {
    match next {
        Next::Retry(r) => r,
        Next::Stop(result) => panic!("expected a retry, got a stop with {result:?}"),
    }
}

fn stop(next: Next) -> Result<(), ClientError> {
    match next {
        Next::Stop(result) => result,
        Next::Retry(r) => panic!("expected a stop, got {r}"),
    }
}

#[test]
fn the_first_join_is_never_retried() {
    let mut l = link(Policy::default());
    let err = stop(l.lost(Err(ClientError::Closed))).unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err}");
}

#[test]
fn a_lost_connection_is_retried_and_the_rejoin_is_told() {
    let mut l = link(Policy::default());
    assert_eq!(l.joined(3), None, "the first join is no news");
    let r = retry(l.lost(Err(ClientError::ServerStopped)));
    assert_eq!(r.attempt, 1);
    assert!(r.delay <= Policy::default().base);
    assert!(l.is_away());
    assert_eq!(
        r.to_string(),
        format!(
            "connection lost: the server shut down; reconnecting in {:.1} s (attempt 1)",
            r.delay.as_secs_f64()
        )
    );
    let r = retry(l.lost(Err(status(tonic::Code::Unavailable))));
    assert_eq!(r.attempt, 2);
    assert_eq!(
        r.to_string(),
        format!(
            "attempt 1 failed: server unavailable: why; reconnecting in {:.1} s (attempt 2)",
            r.delay.as_secs_f64()
        ),
        "a new reason is said once"
    );
    let r = retry(l.lost(Err(status(tonic::Code::Unavailable))));
    assert_eq!(
        r.to_string(),
        format!("reconnecting in {:.1} s (attempt 3)", r.delay.as_secs_f64()),
        "the same reason is not said again"
    );
    assert_eq!(l.joined(12).as_deref(), Some("reconnected as alice (#12)"));
    assert!(!l.is_away());
    // The next outage counts from 1 again.
    assert_eq!(retry(l.lost(Err(ClientError::Closed))).attempt, 1);
}

#[test]
fn a_refusal_while_reconnecting_gives_up_and_says_so() {
    let mut l = link(Policy::default());
    l.joined(1);
    retry(l.lost(Err(ClientError::ServerStopped)));
    let banned = tonic::Status::permission_denied("username alice is banned for another 540 s");
    let err = stop(l.lost(Err(ClientError::Server(banned)))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "giving up: not allowed: username alice is banned for another 540 s"
    );
    assert!(err.is_refusal());
}

#[test]
fn a_kick_while_connected_ends_the_session_as_it_is() {
    let mut l = link(Policy::default());
    l.joined(1);
    let kick = tonic::Status::aborted("removed by an operator: spamming");
    let err = stop(l.lost(Err(ClientError::Server(kick)))).unwrap_err();
    assert_eq!(err.to_string(), "removed by an operator: spamming");
    assert!(err.is_refusal());
}

#[test]
fn attempts_run_out_at_the_limit() {
    let mut l = link(Policy {
        max_attempts: Some(2),
        ..Policy::default()
    });
    l.joined(1);
    retry(l.lost(Err(ClientError::Closed)));
    retry(l.lost(Err(ClientError::Closed)));
    let err = stop(l.lost(Err(ClientError::Closed))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "giving up after 2 attempts: the connection to the server is closed"
    );
    assert!(matches!(err.cause(), ClientError::Closed));
}

#[test]
fn without_reconnecting_a_shutdown_ends_cleanly_and_a_drop_is_an_error() {
    let off = Policy {
        enabled: false,
        ..Policy::default()
    };
    let mut l = link(off);
    l.joined(1);
    assert!(stop(l.lost(Err(ClientError::ServerStopped))).is_ok());
    let mut l = link(off);
    l.joined(1);
    assert!(matches!(
        stop(l.lost(Err(ClientError::Closed))),
        Err(ClientError::Closed)
    ));
}

#[test]
fn a_clean_end_without_the_shutdown_notice_stops() {
    let mut l = link(Policy::default());
    l.joined(1);
    assert!(stop(l.lost(Ok(()))).is_ok());
}

#[test]
fn the_queue_is_bounded_and_keeps_order() {
    let mut q = Queue::new(2);
    assert_eq!(q.push("a"), Ok(1));
    assert_eq!(q.push("b"), Ok(2));
    assert_eq!(q.push("c"), Err("c"));
    assert_eq!(q.len(), 2);
    assert_eq!(q.drain().collect::<Vec<_>>(), ["a", "b"]);
    assert!(q.is_empty());
    assert_eq!(Queue::<()>::default().limit(), QUEUE_LIMIT);
}
