//! `chittyctl tls-cert`, the real binary: the files it writes and their modes, what it prints,
//! what it refuses, and that chittyd serves what it wrote to clients that trust its ca.pem, by
//! every name it put in the certificate, while refusing ca.pem as its own certificate.

use crate::CHITTYCTL;
use chitty::client::{ClientTls, Participant, ServerAddr};
use chitty::server::tls::TlsFiles;
use chitty::server::{Server, ServerConfig};
use chitty_testkit::{config, start};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Runs the real `chittyctl tls-cert` with `args`: exit status, stdout, stderr.
async fn tls_cert(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(CHITTYCTL)
        .arg("tls-cert")
        .args(args)
        .output()
        .await
        .expect("run chittyctl tls-cert");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn writes_a_ca_a_server_certificate_and_its_key_and_says_how_to_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls");
    let out_str = out.to_str().unwrap();
    let (code, stdout, stderr) = tls_cert(&["--out", out_str]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        files(&out),
        ["ca.pem", "cert.pem", "key.pem"],
        "and nothing else"
    );
    assert_eq!(mode(&out.join("ca.pem")), 0o644);
    assert_eq!(mode(&out.join("cert.pem")), 0o644);
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    let ca = out.join("ca.pem");
    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    // What to pass to chittyd and to clients, with the paths written.
    let serve = format!(
        "chittyd --tls-cert {} --tls-key {}",
        cert.display(),
        key.display()
    );
    assert!(stdout.lines().any(|l| l.trim() == serve), "{stdout}");
    assert!(
        stdout.contains(&format!("--ca {}", ca.display())),
        "{stdout}"
    );
    assert!(stdout.contains("localhost, 127.0.0.1, ::1"), "{stdout}");

    // chittyd serves it, and a client trusting ca.pem reaches it by each loopback name.
    let server = start(ServerConfig {
        tls: Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..config()
    })
    .await;
    for (i, host) in ["localhost", "127.0.0.1"].into_iter().enumerate() {
        let addr = ServerAddr {
            addr: format!("{host}:{}", server.addr.port()),
            tls: Some(ClientTls {
                ca: Some(ca.clone()),
            }),
        };
        let joined = Participant::join(&addr, &format!("user{i}")).await;
        assert!(joined.is_ok(), "by {host}: {}", joined.err().unwrap());
    }
    server.shutdown().await;

    // ca.pem is a CA's certificate: chittyd refuses it as its own, as it refuses any.
    let refused = Server::bind(ServerConfig {
        tls: Some(TlsFiles { cert: ca, key }),
        ..config()
    })
    .await
    .err()
    .expect("chittyd served a CA certificate");
    assert!(
        refused.to_string().contains("is a CA certificate"),
        "{refused}"
    );
}

#[tokio::test]
async fn keeps_existing_files_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(tls_cert(&["--out", d]).await.0, 0);
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let before = [read("ca.pem"), read("cert.pem"), read("key.pem")];

    // One file there is enough to write nothing.
    std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
    let (code, stdout, stderr) = tls_cert(&["--out", d]).await;
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "chittyctl: {d} already holds key.pem, cert.pem: nothing was written; pass --force \
             to replace them (clients then need the new ca.pem)"
        )
    );
    assert_eq!(files(dir.path()), ["cert.pem", "key.pem"]);
    assert_eq!([read("cert.pem"), read("key.pem")], before[1..]);

    // --force replaces them, and sets the modes whatever they were.
    std::fs::set_permissions(
        dir.path().join("key.pem"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let (code, _, stderr) = tls_cert(&["--out", d, "--force"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(files(dir.path()), ["ca.pem", "cert.pem", "key.pem"]);
    assert_ne!(read("key.pem"), before[2]);
    assert_ne!(read("cert.pem"), before[1]);
    assert_eq!(mode(&dir.path().join("key.pem")), 0o600);
}

#[tokio::test]
async fn takes_the_names_given_and_refuses_what_cannot_be_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = tls_cert(&[
        "--json",
        "--out",
        d,
        "--name",
        "Chat.Example.org",
        "--name",
        "192.0.2.7",
        "--name",
        "[2001:db8::7]",
        "--days",
        "30",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["names"],
        serde_json::json!(["chat.example.org", "192.0.2.7", "2001:db8::7"])
    );
    assert_eq!(report["key"], dir.path().join("key.pem").to_str().unwrap());
    let not_after = humantime::parse_rfc3339(report["not_after"].as_str().unwrap()).unwrap();
    let days = not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs_f64()
        / 86_400.0;
    assert!((29.9..=30.0).contains(&days), "{days} days");

    // A name with a port is a usage error, and nothing is written.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = tls_cert(&[
        "--out",
        empty.path().to_str().unwrap(),
        "--name",
        "chat.example.org:8080",
    ])
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("without a port"), "{stderr}");
    assert!(files(empty.path()).is_empty());
}
