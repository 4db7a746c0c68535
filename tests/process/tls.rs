//! TLS on the chat port, with a certificate authority and a server certificate made for each
//! test: gRPC (the library's client and the real `chitty` binary) and WebSocket over one TLS
//! port, and plain-text clients refused without disturbing anyone.

use chitty::client::{ClientTls, Participant, ServerAddr};
use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty::server::tls::TlsFiles;
use chitty_testkit::time::wait_until;
use chitty_testkit::{PATIENCE, TestServer, config, start};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;

/// A CA, and a certificate it signed for localhost and 127.0.0.1, as PEM files in a temporary
/// folder.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    files: TlsFiles,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "chitty test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Pki {
            ca: write("ca.pem", ca.pem()),
            files: TlsFiles {
                cert: write("cert.pem", cert.pem()),
                key: write("key.pem", key.serialize_pem()),
            },
            _dir: dir,
        }
    }

    async fn start(&self) -> TestServer {
        start(ServerConfig {
            tls: Some(self.files.clone()),
            ..config()
        })
        .await
    }

    fn server(&self, server: &TestServer) -> ServerAddr {
        ServerAddr {
            addr: format!("localhost:{}", server.addr.port()),
            tls: Some(ClientTls {
                ca: Some(self.ca.clone()),
            }),
        }
    }

    /// A rustls client trusting only the test CA, offering `alpn`.
    fn connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        use rustls_pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// Reads `p`'s messages until one from `from` saying `text`.
async fn until_said(p: &mut Participant, from: &str, text: &str) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let m = p.next().await.unwrap().expect("stream ended");
            if m.kind == Kind::Message as i32 && m.username == from && m.message == text {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{text:?} from {from} never arrived"));
}

#[tokio::test]
async fn grpc_participants_chat_over_tls() {
    let pki = Pki::new();
    let server = pki.start().await;
    let addr = pki.server(&server);
    let mut alice = Participant::join(&addr, "alice").await.unwrap();
    let mut bob = Participant::join(&addr, "bob").await.unwrap();
    alice.say("over TLS").await.unwrap();
    until_said(&mut bob, "alice", "over TLS").await;
    bob.say("indeed").await.unwrap();
    until_said(&mut alice, "bob", "indeed").await;
    assert_eq!(server.edge.tls_failures.load(Ordering::Relaxed), 0);
    drop((alice, bob));
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_clients_get_their_welcome_over_tls() {
    let pki = Pki::new();
    let server = pki.start().await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = pki
        .connector(b"http/1.1")
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let url = format!("wss://localhost:{}/", server.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket handshake over TLS");
    let frame = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("no welcome")
        .expect("closed")
        .expect("WebSocket error");
    let Message::Text(text) = frame else {
        panic!("expected a text frame, got {frame:?}");
    };
    let welcome: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(welcome["kind"], "welcome", "{welcome}");
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn plain_text_clients_fail_cleanly_and_tls_clients_carry_on() {
    let pki = Pki::new();
    let server = pki.start().await;
    let addr = pki.server(&server);
    let alice = Participant::join(&addr, "alice").await.unwrap();

    // gRPC without TLS: refused with an error, not a hang.
    let plain = tokio::time::timeout(
        PATIENCE,
        Participant::join(&ServerAddr::plain(&server.addr.to_string()), "mallory"),
    )
    .await
    .expect("a plain-text gRPC client hung on the TLS port");
    assert!(plain.is_err(), "a plain-text gRPC client joined");

    // HTTP/1 without TLS: the connection is closed.
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, raw.read_to_end(&mut buf))
        .await
        .expect("the server kept a plain-text connection open");
    assert!(
        read.is_err() || !buf.starts_with(b"HTTP/"),
        "the TLS port answered plain HTTP: {buf:?}"
    );
    // Both were counted (by their connections' tasks, which may still be finishing).
    let failures = &server.edge.tls_failures;
    wait_until("both failed TLS handshakes counted", || {
        failures.load(Ordering::Relaxed) >= 2
    })
    .await;

    // A client that does not trust the server's certificate gets a clear error.
    let stranger = ServerAddr {
        tls: Some(ClientTls { ca: None }),
        ..addr.clone()
    };
    assert!(Participant::join(&stranger, "eve").await.is_err());

    let mut bob = Participant::join(&addr, "bob").await.unwrap();
    alice.say("still here").await.unwrap();
    until_said(&mut bob, "alice", "still here").await;
    assert_eq!(server.hub.participants(), 2);
    drop((alice, bob));
    server.shutdown().await;
}

#[tokio::test]
async fn the_chitty_binary_chats_over_tls() {
    let pki = Pki::new();
    let server = pki.start().await;
    let addr = pki.server(&server);
    let mut alice = Participant::join(&addr, "alice").await.unwrap();

    let mut dave = chitty(&addr.addr, &["--ca", path(&pki.ca)], "dave");
    let mut out = BufReader::new(dave.stdout.take().unwrap()).lines();
    let mut stdin = dave.stdin.take().unwrap();
    stdin.write_all(b"hello over TLS\n").await.unwrap();
    until_said(&mut alice, "dave", "hello over TLS").await;
    alice.say("welcome dave").await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = out.next_line().await.unwrap() {
            if line.contains("alice: welcome dave") {
                return;
            }
        }
        panic!("chitty's output ended early");
    })
    .await
    .expect("dave never saw alice's message");
    drop(stdin);
    let status = tokio::time::timeout(PATIENCE, dave.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "chitty exited with {status}");

    // A CA file that is not a certificate is named in the error, before any connection.
    let mut bad = chitty(&addr.addr, &["--ca", path(&pki.files.key)], "erin");
    let output = tokio::time::timeout(PATIENCE, async {
        let mut err = String::new();
        bad.stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        (bad.wait().await.unwrap(), err)
    })
    .await
    .unwrap();
    assert!(!output.0.success());
    assert!(output.1.contains("key.pem"), "{}", output.1);
    drop(alice);
    server.shutdown().await;
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `chitty chat --plain` as `name` against `host`, with `extra` arguments.
fn chitty(host: &str, extra: &[&str], name: &str) -> tokio::process::Child {
    let mut args = vec!["chat", "--plain", "--no-log", "-u", name, "-H", host];
    args.extend_from_slice(extra);
    crate::chitty(&args)
}
