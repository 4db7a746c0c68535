//! TLS on the chat port, with certificates made for each test by `chittyctl tls-cert` (its
//! library entry point, with the command line the binary parses): gRPC (the library's client and
//! the real `chitty` binary) and WebSocket over one TLS port, plain-text clients refused without
//! disturbing anyone, and each usual mistake told in words by the real `chitty` (exit status 3
//! and one line on stderr) and by chittyd: TLS on one end only, a certificate for other names, an
//! authority the client does not trust, a CA certificate as the server's own.

use chitty::client::dial::DialError;
use chitty::client::{ClientError, ClientTls, Participant, ServerAddr};
use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty::server::tls::TlsFiles;
use chitty_testkit::time::wait_until;
use chitty_testkit::{PATIENCE, TestServer, config, start};
use clap::Parser;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;

/// What `chittyctl tls-cert` wrote into a temporary folder: the CA certificate clients trust,
/// and the server's certificate and key.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    files: TlsFiles,
}

impl Pki {
    /// Certificates for localhost and 127.0.0.1.
    async fn new() -> Pki {
        Pki::for_names(&["localhost", "127.0.0.1"]).await
    }

    /// Certificates for `names`, by `chittyctl tls-cert --name ...`.
    async fn for_names(names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["chittyctl", "tls-cert", "--out", path(dir.path())];
        for name in names {
            argv.extend(["--name", name]);
        }
        let cli = chittyctl::cli::CtlCli::try_parse_from(argv).unwrap();
        let mut report = Vec::new();
        chittyctl::run(&cli, &mut report).await.unwrap();
        let report = String::from_utf8(report).unwrap();
        assert!(report.contains("chittyd --tls-cert"), "{report}");
        Pki {
            ca: dir.path().join("ca.pem"),
            files: TlsFiles {
                cert: dir.path().join("cert.pem"),
                key: dir.path().join("key.pem"),
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
    let pki = Pki::new().await;
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
    let pki = Pki::new().await;
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
    let pki = Pki::new().await;
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
    assert!(
        matches!(plain, Err(ClientError::Dial(DialError::SpeaksTls { .. }))),
        "a plain-text gRPC client was not told it reached a TLS port: {:?}",
        plain.err()
    );

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
    let pki = Pki::new().await;
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

/// Runs the real `chitty chat --plain` as `eve` against `host` with `extra` arguments and
/// `env`, with nothing to send, to its end: its exit status and standard error.
async fn chitty_fails(host: &str, extra: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chitty"));
    command
        .args([
            "chat",
            "--plain",
            "--no-log",
            "--no-reconnect",
            "-u",
            "eve",
            "-H",
            host,
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("chitty hung")
        .expect("run chitty");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// chitty's one line on stderr is exactly `line`.
fn assert_says(stderr: &str, line: &str) {
    assert_eq!(stderr.trim_end(), format!("chitty: {line}"));
}

#[tokio::test]
async fn chitty_says_which_end_lacks_tls() {
    let pki = Pki::new().await;
    let tls = pki.start().await;
    let plain = start(config()).await;
    let tls_host = format!("localhost:{}", tls.addr.port());
    let plain_host = format!("localhost:{}", plain.addr.port());

    // A plain client at the TLS port: rustls's alert is what it reads first.
    let (code, err) = chitty_fails(&tls_host, &[], &[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_says(
        &err,
        &format!("the server at {tls_host} speaks TLS: add --tls (and --ca FILE for a private CA)"),
    );

    // A TLS client at the plain port, with --ca and with --tls alone (trusting the system's
    // authorities, which SSL_CERT_FILE makes the test CA here).
    let (code, err) = chitty_fails(&plain_host, &["--ca", path(&pki.ca)], &[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_says(
        &err,
        &format!("the server at {plain_host} does not speak TLS: drop --tls and --ca"),
    );
    let (code, err) = chitty_fails(&plain_host, &["--tls"], &[("SSL_CERT_FILE", &pki.ca)]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_says(
        &err,
        &format!("the server at {plain_host} does not speak TLS: drop --tls"),
    );

    // Neither server minded: each still takes a participant the right way.
    let mut alice = Participant::join(&pki.server(&tls), "alice").await.unwrap();
    alice.say("still fine").await.unwrap();
    until_said(&mut alice, "alice", "still fine").await;
    let bob = Participant::join(&ServerAddr::plain(&plain_host), "bob")
        .await
        .unwrap();
    drop((alice, bob));
    tls.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn chitty_names_the_certificates_names_when_the_host_is_not_one_of_them() {
    let pki = Pki::for_names(&["localhost"]).await;
    let server = pki.start().await;
    let by_ip = format!("127.0.0.1:{}", server.addr.port());
    let (code, err) = chitty_fails(&by_ip, &["--ca", path(&pki.ca)], &[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_says(
        &err,
        &format!(
            "the certificate of the server at {by_ip} is for localhost, not 127.0.0.1: connect \
             to it by one of those names, or give the server a certificate for 127.0.0.1 \
             (chittyctl tls-cert --name 127.0.0.1)"
        ),
    );
    // By the name in the certificate, the same client gets in.
    let by_name = ServerAddr {
        addr: format!("localhost:{}", server.addr.port()),
        ..pki.server(&server)
    };
    drop(Participant::join(&by_name, "alice").await.unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn chitty_says_to_pass_the_ca_that_signed_the_servers_certificate() {
    let pki = Pki::new().await;
    let other = Pki::new().await;
    let server = pki.start().await;
    let host = format!("localhost:{}", server.addr.port());

    // --tls alone, and the system trusts other authorities.
    let (code, err) = chitty_fails(&host, &["--tls"], &[("SSL_CERT_FILE", &other.ca)]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_says(
        &err,
        &format!(
            "the certificate of the server at {host} is signed by an authority this client does \
             not trust: pass --ca FILE, the certificate of the CA that signed it (ca.pem from \
             chittyctl tls-cert)"
        ),
    );

    // --ca with another CA, and with the server's own certificate instead of its CA's.
    for wrong in [&other.ca, &pki.files.cert] {
        let (code, err) = chitty_fails(&host, &["--ca", path(wrong)], &[]).await;
        assert_eq!(code, Some(3), "{err}");
        assert_says(
            &err,
            &format!(
                "the certificate of the server at {host} is signed by an authority this client \
                 does not trust: not by the CA in {}; pass --ca with the certificate of the CA \
                 that signed the server's (ca.pem from chittyctl tls-cert, not cert.pem)",
                wrong.display()
            ),
        );
    }
    assert_eq!(server.hub.participants(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn chittyd_refuses_a_ca_certificate_as_its_own_and_says_what_to_do() {
    let pki = Pki::new().await;
    let out = tokio::process::Command::new(crate::CHITTYD)
        .args(["--listen", "127.0.0.1:0", "--log-target", "stderr"])
        .args(["--admin-socket", "none", "--audit-log", "none"])
        .args([
            "--tls-cert",
            path(&pki.ca),
            "--tls-key",
            path(&pki.files.key),
        ])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // A configuration error: EX_CONFIG, which the unit does not restart on.
    assert_eq!(out.status.code(), Some(78), "{err}");
    let said = format!(
        "chittyd: configuration error: {} is a CA certificate (basic constraints CA:TRUE), and TLS clients refuse a \
         CA certificate as a server's own: serve a certificate that CA signed, with its key, and \
         give clients the CA certificate (chitty chat --ca FILE); `chittyctl tls-cert` writes \
         all three",
        pki.ca.display()
    );
    assert!(err.lines().any(|l| l == said), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

#[tokio::test]
async fn chitty_says_when_a_server_presents_a_ca_certificate_as_its_own() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    // chittyd refuses to serve one (above); another TLS server does, as rustls lets it.
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.is_err()
    });

    let host = format!("localhost:{port}");
    let (code, err) = chitty_fails(&host, &["--ca", path(&ca)], &[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_says(
        &err,
        &format!(
            "the server at {host} presents a CA certificate as its own, which TLS clients refuse: \
             its operator must serve a certificate signed by that CA instead (chittyctl tls-cert \
             writes one)"
        ),
    );
    assert!(serving.await.unwrap(), "the handshake succeeded");
}
