//! The state directory across restarts of the real chittyd, clean (SIGTERM) and not (SIGKILL):
//! no Lamport time in the audit trail repeats and user ids keep growing; a ban holds, is listed
//! and is lifted, and each of those survives; names are compared case-insensitively.

use crate::chittyd;
use chitty::pb::admin as admin_pb;
use chitty::pb::chat_message::Kind;
use chitty_testkit::audit::{record_arrives, records};
use chitty_testkit::process::Daemon;
use chitty_testkit::{PATIENCE, Raw, admin};
use std::path::Path;
use tonic::Code;

/// chittyd keeping its state in `state`, auditing to `audit`, with its admin socket in `dir`.
async fn start(state: &Path, audit: &Path, dir: &Path) -> Daemon {
    chittyd()
        .state_dir(state)
        .args([
            "--audit-log",
            audit.to_str().unwrap(),
            "--admin-socket",
            dir.join("admin.sock").to_str().unwrap(),
        ])
        .start()
        .await
}

/// SIGKILL, and waits until it is gone (its lock on the state directory with it).
async fn kill(mut daemon: Daemon) {
    daemon.signal("KILL");
    tokio::time::timeout(PATIENCE, daemon.child.wait())
        .await
        .expect("chittyd did not die on SIGKILL")
        .unwrap();
}

/// Joins `name` and says something; the Lamport times (the welcome's first) and the id the
/// participant saw.
async fn visit(daemon: &Daemon, name: &str) -> (Raw, Vec<u64>, u64) {
    let mut p = Raw::open(&daemon.url()).await;
    p.send_join(name).await;
    let welcome = p.until(|m| m.kind == Kind::Welcome as i32).await;
    let joined = p.until_joined(name).await;
    assert_eq!(welcome.recipient_id, joined.sender_id);
    p.say_as(name, "hello").await;
    let said = p.until(|m| m.message == "hello").await;
    let times = vec![welcome.timestamp, joined.timestamp, said.timestamp];
    (p, times, joined.sender_id)
}

fn lamports(audit: &Path) -> Vec<u64> {
    records(audit)
        .iter()
        .map(|r| r["lamport"].as_u64().expect("a Lamport time"))
        .collect()
}

#[tokio::test]
async fn no_lamport_time_repeats_and_user_ids_grow_across_sigkill_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let audit = |run: usize| dir.path().join(format!("audit-{run}.log"));
    let mut seen = Vec::new(); // every run's Lamport times, audited or seen by a participant
    let mut ids = Vec::new();
    let mut welcomes = Vec::new();
    for run in 0..4 {
        let daemon = start(&state, &audit(run), dir.path()).await;
        let (_p, times, id) = visit(&daemon, &format!("user{run}")).await;
        ids.push(id);
        welcomes.push(times[0]);
        record_arrives(&audit(run), |r| r["event"] == "message").await;
        // Runs 0 and 2 crash, 1 and 3 stop cleanly.
        if run % 2 == 0 {
            kill(daemon).await;
        } else {
            daemon.stop().await;
        }
        let mut run_times = lamports(&audit(run));
        run_times.extend(times);
        run_times.sort_unstable();
        run_times.dedup();
        if let Some(&last) = seen.last() {
            assert!(
                run_times[0] > last,
                "run {run} started at Lamport time {} after {last}",
                run_times[0]
            );
        }
        seen.extend(run_times);
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "user ids grow across restarts: {ids:?}"
    );
    // A crash costs a reservation block; a clean stop saves the exact clock, so the next run
    // continues right after it: its first Lamport time (the first welcome) follows the last
    // one of run 1 (its participant's leave at the shutdown).
    let clean_end = *lamports(&audit(1)).last().unwrap();
    assert_eq!(welcomes[2], clean_end + 1, "a clean stop loses nothing");
    assert!(
        welcomes[1] > 1_000_000,
        "after a crash the clock starts past the reservation: {}",
        welcomes[1]
    );
}

#[tokio::test]
async fn a_ban_survives_restarts_and_crashes_and_so_does_its_lifting() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let socket = dir.path().join("admin.sock");
    let audit = dir.path().join("audit.log");

    let daemon = start(&state, &audit, dir.path()).await;
    let (_bob, _, _) = visit(&daemon, "bob").await;
    let mut ctl = admin::client(&socket).await.unwrap();
    let kicked = ctl
        .kick(admin_pb::KickRequest {
            username: "BOB".into(),
            reason: "spam".into(),
            ban_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kicked.user.unwrap().username, "bob", "kicked by any form");
    assert_eq!(kicked.warning, "", "the ban is saved before the answer");
    daemon.stop().await;

    // A clean restart, then a crash and another restart: the ban holds for every form.
    for (round, name) in ["Bob", "BOB"].into_iter().enumerate() {
        let daemon = start(&state, &audit, dir.path()).await;
        let mut p = Raw::open(&daemon.url()).await;
        p.send_join(name).await;
        let status = p.expect_status().await;
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("username {name} is banned")),
            "{status:?}"
        );
        let mut ctl = admin::client(&socket).await.unwrap();
        let bans = ctl
            .list_bans(admin_pb::ListBansRequest {})
            .await
            .unwrap()
            .into_inner()
            .bans;
        assert_eq!(bans.len(), 1, "{bans:?}");
        assert_eq!(bans[0].username, "bob", "shown as typed");
        assert_eq!(bans[0].reason, "spam");
        assert_eq!(bans[0].until_ms - bans[0].since_ms, 3_600_000);
        assert!(bans[0].actor.starts_with("uid="), "{:?}", bans[0].actor);
        if round == 0 {
            kill(daemon).await;
            continue;
        }
        // Lifted by another form of the name; the answer waits for the save, so a crash
        // right after it keeps the lifting.
        let lifted = ctl
            .unban(admin_pb::UnbanRequest {
                username: "bOb".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(lifted.ban.unwrap().username, "bob");
        assert_eq!(lifted.warning, "");
        record_arrives(&audit, |r| r["event"] == "unban").await;
        kill(daemon).await;
    }

    let daemon = start(&state, &audit, dir.path()).await;
    let mut ctl = admin::client(&socket).await.unwrap();
    let bans = ctl
        .list_bans(admin_pb::ListBansRequest {})
        .await
        .unwrap()
        .into_inner()
        .bans;
    assert!(bans.is_empty(), "{bans:?}");
    let status = ctl
        .unban(admin_pb::UnbanRequest {
            username: "bob".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let (_bob, _, _) = visit(&daemon, "Bob").await;
    daemon.stop().await;
    let unban = records(&audit)
        .into_iter()
        .find(|r| r["event"] == "unban")
        .expect("the unban is audited");
    assert_eq!(unban["user"], "bob");
    assert!(
        unban["actor"].as_str().unwrap().starts_with("uid="),
        "{unban}"
    );
}

#[tokio::test]
async fn a_name_in_another_case_is_taken_while_its_owner_is_online() {
    let daemon = chittyd().start().await;
    let (mut bob, _, _) = visit(&daemon, "bob").await;
    for other in ["BOB", "Bob", "ｂｏｂ"] {
        let mut p = Raw::open(&daemon.url()).await;
        p.send_join(other).await;
        let status = p.expect_status().await;
        assert_eq!(status.code(), Code::AlreadyExists, "{other}: {status:?}");
    }
    bob.leave_as("bob").await;
    bob.expect_clean_end().await;
    let mut p = Raw::open(&daemon.url()).await;
    p.send_join("BOB").await;
    let joined = p.until_joined("BOB").await;
    assert_eq!(joined.kind, Kind::Join as i32);
    daemon.stop().await;
}

#[tokio::test]
async fn a_corrupt_or_newer_state_file_stops_chittyd_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(chitty::state::FILE_NAME);
    let newer = format!(
        r#"{{"format": {}, "lamport": 5, "next_user_id": 2, "bans": []}}"#,
        chitty::state::FORMAT + 1
    );
    for (content, what) in [
        ("{\"format\": 1, \"lamport\": ", "is corrupt"),
        (newer.as_str(), "was written by a newer chittyd"),
    ] {
        std::fs::write(&file, content).unwrap();
        let out = chitty_testkit::process::spawn(
            crate::CHITTYD,
            &[
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                dir.path().to_str().unwrap(),
                "--admin-socket",
                "none",
                "--audit-log",
                "none",
            ],
        )
        .wait_with_output();
        let out = tokio::time::timeout(PATIENCE, out).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("state file {} {what}", file.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            content,
            "the file is left as it was"
        );
    }
}
