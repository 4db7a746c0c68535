//! chittyd with `--cluster`, as a process, against real nats-servers with JetStream: Debian's
//! 2.9 and the current release (chitty-testkit's `nats`), every test against both. The stream
//! and the bucket are created and then reused (checked in the server's own view, `/jsz`, and
//! by using the bucket), an incompatible stream refuses the start (exit 78), an unreachable
//! server is named, and health follows the NATS connection through a kill and a restart.

use async_nats::jetstream;
use chitty_testkit::PATIENCE;
use chitty_testkit::nats::{self, NatsServer};
use chitty_testkit::process::{DaemonCommand, free_addr};
use std::process::Stdio;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

mod faults;
mod ops;
mod replication;

/// chittyd, as Cargo built it for these tests.
const CHITTYD: &str = env!("CARGO_BIN_EXE_chittyd");

/// chittyd on an ephemeral port, a member of the cluster at `nats`.
fn chittyd(nats: &NatsServer) -> DaemonCommand {
    DaemonCommand::new(CHITTYD).args([
        "--admin-socket",
        "none",
        "--node",
        "n1",
        "--cluster",
        &nats.url(),
    ])
}

/// Runs chittyd to its end with `args`; its exit status and standard error.
async fn chittyd_fails(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(CHITTYD)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                "none",
                "--admin-socket",
                "none",
                "--log-target",
                "stderr",
            ])
            .args(args)
            .stdout(Stdio::null())
            .output(),
    )
    .await
    .expect("chittyd did not end")
    .expect("run chittyd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_stream_and_the_bucket_are_created_then_reused() {
    for binary in nats::binaries() {
        let nats = NatsServer::start(&binary).await;
        let which = nats.describe();
        let first = chittyd(&nats).start().await;
        first.until_log("is a member").await;
        let log = first.log().join("\n");
        assert!(log.contains("stream \"chitty\" created"), "{which}: {log}");
        assert!(log.contains("bucket \"chitty\" created"), "{which}: {log}");
        first.stop().await;

        // JetStream's own view of what chittyd made.
        let room = nats.stream_config("chitty").await.expect("the stream");
        assert_eq!(room["subjects"], serde_json::json!(["chitty.>"]), "{which}");
        assert_eq!(room["retention"], "limits", "{which}");
        assert_eq!(room["discard"], "old", "{which}");
        assert_eq!(room["storage"], "file", "{which}");
        assert_eq!(room["num_replicas"], 1, "{which}");
        assert_eq!(room["max_age"], 3_600_000_000_000u64, "{which}: 1 h in ns");
        assert_eq!(room["max_bytes"], 256 * 1024 * 1024, "{which}");
        let kv = nats.stream_config("KV_chitty").await.expect("the bucket");
        assert_eq!(
            kv["subjects"],
            serde_json::json!(["$KV.chitty.>"]),
            "{which}"
        );
        assert_eq!(kv["max_msgs_per_subject"], 1, "{which}");

        // A second start finds both and creates nothing.
        let second = chittyd(&nats).start().await;
        second.until_log("is a member").await;
        let log = second.log().join("\n");
        assert!(
            log.contains("stream \"chitty\" found and reused"),
            "{which}: {log}"
        );
        assert!(
            log.contains("bucket \"chitty\" found and reused"),
            "{which}: {log}"
        );
        second.stop().await;
        let jsz = nats.jsz().await;
        assert_eq!(jsz["streams"], 2, "{which}: {jsz}");

        // The bucket is a working key-value bucket, on this server too.
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client);
        let bucket = js.get_key_value("chitty").await.expect("open the bucket");
        bucket.put("probe", "1".into()).await.expect("put");
        let value = bucket.get("probe").await.expect("get");
        assert_eq!(value.as_deref(), Some(&b"1"[..]), "{which}");
    }
}

#[tokio::test]
async fn an_incompatible_stream_refuses_the_start() {
    for binary in nats::binaries() {
        let nats = NatsServer::start(&binary).await;
        let which = nats.describe();
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        js.create_stream(jetstream::stream::Config {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("create a stream of somebody else's");
        let (code, stderr) =
            chittyd_fails(&["--cluster", &nats.url(), "--cluster-name", "orders"]).await;
        assert_eq!(code, Some(78), "{which}: {stderr}");
        // Its subjects are the ones chitty wants (NAME.>); its storage is not.
        assert!(
            stderr.contains(
                "configuration error: cluster: the NATS stream \"orders\" exists but cannot \
                 serve cluster \"orders\": its storage is memory; --cluster-storage is file"
            ),
            "{which}: {stderr}"
        );

        // Other subjects, under the default name.
        js.create_stream(jetstream::stream::Config {
            name: "chitty".into(),
            subjects: vec!["audit.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let (code, stderr) = chittyd_fails(&["--cluster", &nats.url()]).await;
        assert_eq!(code, Some(78), "{which}: {stderr}");
        assert!(
            stderr.contains("its subjects are [\"audit.>\"]; chitty needs exactly [\"chitty.>\"]"),
            "{which}: {stderr}"
        );
        assert!(stderr.contains("choose another --cluster-name"), "{stderr}");
        // Nothing was changed or created.
        let config = nats.stream_config("chitty").await.unwrap();
        assert_eq!(config["subjects"], serde_json::json!(["audit.>"]));
        assert!(nats.stream_config("KV_chitty").await.is_none(), "{which}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let addr = free_addr();
    let url = format!("nats://{addr}");
    let (code, stderr) = chittyd_fails(&["--cluster", &url]).await;
    // Not a configuration error: the server may come (systemd restarts chittyd).
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cluster: cannot connect to NATS at {url}: "))
            && stderr.contains("Connection refused")
            && stderr.contains("is nats-server running there?"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_cluster_options_are_configuration_errors() {
    for args in [
        &["--cluster", "http://127.0.0.1:4222"][..],
        &[
            "--cluster",
            "nats://127.0.0.1:4222",
            "--cluster-name",
            "a.b",
        ],
        &[
            "--cluster",
            "nats://127.0.0.1:4222",
            "--cluster-grace",
            "20s",
        ],
    ] {
        let (code, stderr) = chittyd_fails(args).await;
        assert_eq!(code, Some(78), "{args:?}: {stderr}");
        assert!(stderr.contains("configuration error"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn health_follows_the_nats_connection() {
    for binary in nats::binaries() {
        let mut nats = NatsServer::start(&binary).await;
        let which = nats.describe();
        let node = chittyd(&nats).start().await;
        let channel = tonic::transport::Endpoint::from_shared(node.url())
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let mut health = HealthClient::new(channel);
        let watch = |service: &'static str| {
            let mut health = health.clone();
            async move {
                let request = HealthCheckRequest {
                    service: service.into(),
                };
                health.watch(request).await.expect("watch").into_inner()
            }
        };
        let mut chat = watch("chitty_chat.Chat").await;
        let mut server = watch("").await;
        for stream in [&mut chat, &mut server] {
            until_status(stream, ServingStatus::Serving, &which).await;
        }

        nats.kill().await;
        for stream in [&mut chat, &mut server] {
            until_status(stream, ServingStatus::NotServing, &which).await;
        }
        node.until_log("lost the connection to NATS").await;

        // Back on the same port, with its store: the stream and the bucket are still there.
        nats.restart().await;
        for stream in [&mut chat, &mut server] {
            until_status(stream, ServingStatus::Serving, &which).await;
        }
        node.until_log("NATS is back").await;
        let check = health
            .check(HealthCheckRequest {
                service: "chitty_chat.Chat".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(check.status, ServingStatus::Serving as i32, "{which}");
        node.stop().await;
    }
}

/// Reads health updates until one says `want`.
async fn until_status(
    stream: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    want: ServingStatus,
    which: &str,
) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let update = stream
                .message()
                .await
                .expect("health")
                .expect("health ended");
            if update.status == want as i32 {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{which}: health never became {want:?}"));
}
