//! Reaching the server: the TCP connection, TLS over it when asked for, and what a failure to
//! connect means, in words a person can act on ([`DialError`]).
//!
//! The client makes its own TLS handshake (tokio-rustls with ring, as chittyd does) instead of
//! leaving it to tonic, so that a failed handshake arrives here as rustls's own error rather than
//! as text three wrappers deep: a certificate for other names, one signed by an authority this
//! client does not trust, a CA certificate served as the server's own, each becomes a variant
//! that says what is wrong and what to do.
//!
//! Under TLS or not, every connection keeps the first bytes the server sent ([`Greeting`]). When
//! the two ends disagree about TLS, neither rustls ("received corrupt message") nor h2 ("http2
//! error") can say so, but those bytes can: a TLS client answered with `HTTP/1.1 400` has reached
//! a plain port, and a plain client answered with a TLS alert has reached a TLS port.

mod error;
mod stream;

pub use error::DialError;
pub use stream::{Conn, Greeting, Watched};

use error::certificate_error;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// The ALPN protocol of gRPC.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol of the WebSocket upgrade.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How long the TCP connection, and then the TLS handshake, may each take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How the client checks the server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust this CA certificate (PEM) instead of the system's certificate store.
    pub ca: Option<PathBuf>,
}

/// How to reach one server: its host and port, and the TLS settings if any. Built once (the CA
/// file is read then), cloned cheaply for every connection.
#[derive(Clone)]
pub struct Dialer {
    /// The host as TCP resolves it: a name, or an IP address without brackets.
    host: String,
    port: u16,
    tls: Option<Tls>,
}

/// The TLS half of a [`Dialer`].
#[derive(Clone)]
struct Tls {
    connector: tokio_rustls::TlsConnector,
    /// The name the certificate must carry: the host's DNS name or IP address.
    name: ServerName<'static>,
    /// The CA trusted instead of the system's, for the error that says it did not sign.
    ca: Option<PathBuf>,
}

impl Dialer {
    /// A dialer for the server `uri` names (scheme, host and port; the port defaults to the
    /// scheme's), over TLS offering `alpn` when `tls` is set.
    pub fn new(uri: &http::Uri, tls: Option<&ClientTls>, alpn: &[u8]) -> Result<Dialer, DialError> {
        let raw_host = uri.host().unwrap_or_default();
        let host = raw_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw_host)
            .to_owned();
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let tls = match tls {
            None => None,
            Some(tls) => Some(Tls {
                connector: connector(tls.ca.as_deref(), alpn)?,
                name: ServerName::try_from(host.clone()).map_err(|e| DialError::ServerName {
                    host: host.clone(),
                    why: e.to_string(),
                })?,
                ca: tls.ca.clone(),
            }),
        };
        Ok(Dialer { host, port, tls })
    }

    /// `host:port`, as messages name the server.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether connections speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection: TCP, then the TLS handshake if configured, each within
    /// [`DIAL_TIMEOUT`].
    pub async fn dial(&self) -> Result<Conn, DialError> {
        let addr = self.addr();
        let tcp = tokio::time::timeout(
            DIAL_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", DIAL_TIMEOUT.as_secs()),
            ))
        })
        .map_err(|source| DialError::Connect {
            addr: addr.clone(),
            source,
        })?;
        // Chat lines are small and should leave at once.
        tcp.set_nodelay(true).map_err(|source| DialError::Connect {
            addr: addr.clone(),
            source,
        })?;
        let greeting = Greeting::default();
        let tcp = Watched::new(tcp, greeting.clone());
        let Some(tls) = &self.tls else {
            return Ok(Conn::Plain(tcp));
        };
        match tokio::time::timeout(DIAL_TIMEOUT, tls.connector.connect(tls.name.clone(), tcp)).await
        {
            Ok(Ok(stream)) => Ok(Conn::Tls(Box::new(stream))),
            Ok(Err(e)) => Err(self.handshake_failed(tls, e, &greeting)),
            Err(_) if greeting.is_other() => Err(self.not_tls(tls)),
            Err(_) => Err(DialError::HandshakeTimeout { addr }),
        }
    }

    /// Why a connection that was made failed at its first exchange, when its greeting says: a
    /// plain client answered in TLS. `None` when the greeting tells nothing.
    pub fn explain(&self, greeting: &Greeting) -> Option<DialError> {
        (self.tls.is_none() && greeting.is_tls())
            .then(|| DialError::SpeaksTls { addr: self.addr() })
    }

    /// A connector for tonic that hands over `first`, a connection already made, and dials
    /// afresh should tonic ask again.
    pub fn connector(&self, first: Conn) -> Connector {
        Connector {
            dialer: self.clone(),
            first: Arc::new(Mutex::new(Some(first))),
        }
    }

    fn not_tls(&self, tls: &Tls) -> DialError {
        DialError::NotTls {
            addr: self.addr(),
            ca: tls.ca.is_some(),
        }
    }

    /// What a failed handshake means, from rustls's error and what the server sent.
    fn handshake_failed(&self, tls: &Tls, e: io::Error, greeting: &Greeting) -> DialError {
        let addr = self.addr();
        if greeting.is_other() {
            return self.not_tls(tls);
        }
        match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidCertificate(c)) => {
                certificate_error(addr, c, &tls.name, tls.ca.as_deref())
            }
            Some(other) => DialError::Tls {
                addr,
                source: other.clone(),
            },
            // A TLS server answers a ClientHello, if only with an alert; one that closes the
            // connection without a word is not speaking TLS.
            None if e.kind() == io::ErrorKind::UnexpectedEof && greeting.is_empty() => {
                self.not_tls(tls)
            }
            None => DialError::Connect { addr, source: e },
        }
    }
}

/// The TLS client configuration: trust `ca`, or the system's CAs, and offer `alpn`.
fn connector(ca: Option<&Path>, alpn: &[u8]) -> Result<tokio_rustls::TlsConnector, DialError> {
    let roots = match ca {
        Some(path) => ca_roots(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DialError::Ca {
            path: ca.map(Path::to_owned).unwrap_or_default(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The certificates of a CA file (PEM), checked here so that a wrong file is named before any
/// connection is tried.
fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, DialError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let fail = |why: String| DialError::Ca {
        path: path.to_owned(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail(
            "no PEM certificate (\"-----BEGIN CERTIFICATE-----\") in it".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    Ok(roots)
}

/// The system's trusted CAs (`/etc/ssl/certs` and the like; `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// override).
fn system_roots() -> Result<rustls::RootCertStore, DialError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(DialError::NoSystemRoots);
    }
    Ok(roots)
}

/// The connector tonic's channel calls: it hands over the connection [`Dialer::connector`] was
/// given first, so that its failure was already told apart, then dials again if asked.
#[derive(Clone)]
pub struct Connector {
    dialer: Dialer,
    /// The connection made before the channel was built; taken by the first call.
    first: Arc<Mutex<Option<Conn>>>,
}

impl tower::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<Conn>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let conn = match first {
                Some(conn) => conn,
                None => dialer.dial().await?,
            };
            Ok(hyper_util::rt::TokioIo::new(conn))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialer_takes_host_and_port_from_the_uri() {
        let d = Dialer::new(&"http://[::1]:9000".parse().unwrap(), None, ALPN_H2).unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.addr()),
            ("::1", 9000, "[::1]:9000".into())
        );
        let d = Dialer::new(&"http://chat.example.org".parse().unwrap(), None, ALPN_H2).unwrap();
        assert_eq!(d.addr(), "chat.example.org:80");
        assert!(!d.is_tls());
    }

    #[test]
    fn a_ca_file_is_checked_before_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let uri: http::Uri = "https://localhost:1".parse().unwrap();
        let tls = |path: &Path| ClientTls {
            ca: Some(path.to_owned()),
        };
        let missing = dir.path().join("missing.pem");
        let e = Dialer::new(&uri, Some(&tls(&missing)), ALPN_H2)
            .err()
            .unwrap();
        assert!(matches!(e, DialError::Ca { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let e = Dialer::new(&uri, Some(&tls(&key)), ALPN_H2).err().unwrap();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }
}
