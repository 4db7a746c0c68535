//! The ordering contract with concurrent senders: one order for everyone, timestamps strictly
//! increasing, and a participant too slow to keep up cut off rather than skipped or slowing the
//! others.

use chitty::hub::HubConfig;
use chitty::pb::{self, chat_event, chat_message::Kind};
use chitty::server::ServerConfig;
use chitty_testkit::{PATIENCE, Raw, config, start, start_default};
use tonic::Code;

#[tokio::test]
async fn every_participant_sees_one_order_with_increasing_timestamps() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 150;
    const OBSERVERS: usize = 3;
    let server = start_default().await;
    let mut observers = Vec::new();
    for i in 0..OBSERVERS {
        observers.push(server.join(&format!("observer{i}")).await);
    }
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(server.join(&format!("sender{i}")).await);
    }
    let total = SENDERS * PER_SENDER;
    let collect = |mut p: Raw| {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = 0;
            while seen.len() < total {
                let m = p.expect_msg().await;
                assert!(
                    m.timestamp > last,
                    "timestamps went {last} -> {}",
                    m.timestamp
                );
                last = m.timestamp;
                if m.kind == Kind::Message as i32 {
                    seen.push((m.timestamp, m.username, m.message));
                }
            }
            (p, seen)
        })
    };
    let mut tasks = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let name = format!("sender{i}");
            for n in 0..PER_SENDER {
                s.say_as(&name, &format!("{name} #{n}")).await;
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            s
        }));
    }
    let mut readers: Vec<_> = observers.into_iter().map(collect).collect();
    for t in tasks {
        readers.push(collect(t.await.unwrap()));
    }
    let mut orders = Vec::new();
    for r in readers {
        let (_p, seen) = r.await.unwrap();
        orders.push(seen);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "two participants saw different orders");
    }
    // Each sender's own messages stay in the order it sent them.
    for i in 0..SENDERS {
        let mine: Vec<_> = orders[0]
            .iter()
            .filter(|(_, u, _)| u == &format!("sender{i}"))
            .map(|(_, _, t)| t.clone())
            .collect();
        let expected: Vec<_> = (0..PER_SENDER).map(|n| format!("sender{i} #{n}")).collect();
        assert_eq!(mine, expected);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_the_others_keep_going() {
    const BACKLOG: usize = 256;
    let server = start(ServerConfig {
        hub: HubConfig {
            backlog: BACKLOG,
            ..config().hub
        },
        ..config()
    })
    .await;
    // The slow client has tiny HTTP/2 windows, so its transport stops pulling after a few frames
    // and its outbox fills.
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut client = pb::chat_client::ChatClient::new(channel);
    let (slow_tx, rx) = tokio::sync::mpsc::channel(8);
    let mut slow_rx = client
        .broadcast(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    slow_tx
        .send(pb::ChatEvent {
            timestamp: 1,
            event: Some(chat_event::Event::Join(chat_event::UserJoin {
                username: "slow".into(),
            })),
        })
        .await
        .unwrap();

    let mut fast = server.join("fast").await;
    let mut talker = server.join("talker").await;
    fast.until_joined("talker").await;
    const MESSAGES: usize = 2048;
    // The talker sends in rounds and reads its own echo, so the well-behaved participants
    // never have more than a round waiting; only the slow one falls behind.
    let sender = tokio::spawn(async move {
        for round in 0..MESSAGES / 32 {
            for n in round * 32..(round + 1) * 32 {
                talker.say_as("talker", &format!("message {n}")).await;
            }
            let last = format!("message {}", (round + 1) * 32 - 1);
            talker.until(|m| m.message == last).await;
        }
        talker
    });
    let mut got = 0;
    let mut saw_cutoff = false;
    while got < MESSAGES {
        let m = fast.expect_msg().await;
        match Kind::try_from(m.kind) {
            Ok(Kind::Message) => {
                assert_eq!(
                    m.message,
                    format!("message {got}"),
                    "nothing lost, in order"
                );
                got += 1;
            }
            Ok(Kind::Leave) => {
                assert_eq!(m.subject, "slow");
                assert!(m.message.contains("too slow"), "{m:?}");
                saw_cutoff = true;
            }
            _ => panic!("unexpected {m:?}"),
        }
    }
    assert!(saw_cutoff, "the slow consumer's leave was announced");
    let _talker = sender.await.unwrap();
    let stats = server.hub.stats();
    assert_eq!(
        stats
            .slow_consumers
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Bounded memory: nobody has more than the backlog waiting, and the slow one is gone.
    let users = server.hub.users();
    assert!(users.iter().all(|u| u.name != "slow"));
    assert!(users.iter().all(|u| u.backlog <= BACKLOG));

    // When the slow client finally reads, it gets what fit in its window, then the reason.
    let status = loop {
        match tokio::time::timeout(PATIENCE, slow_rx.message())
            .await
            .unwrap()
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("expected RESOURCE_EXHAUSTED"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("slow consumer"), "{status:?}");
    server.shutdown().await;
}
