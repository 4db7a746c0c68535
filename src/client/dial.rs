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

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, CertificateError, pki_types::ServerName};

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

/// Why the client could not reach the server, or not the way it was asked to.
#[derive(Debug, Error)]
pub enum DialError {
    /// The CA file given with --ca cannot be used.
    #[error("cannot use the CA certificate {}: {why}", .path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `--tls` without `--ca` on a system with no trusted certificate authorities.
    #[error(
        "this system has no trusted certificate authorities to check the server's certificate \
         with (install ca-certificates), or pass --ca FILE"
    )]
    NoSystemRoots,
    /// The host cannot be checked against a certificate.
    #[error("{host} is not a name a TLS certificate can be checked against: {why}")]
    ServerName {
        /// The host as given.
        host: String,
        /// rustls's reason.
        why: String,
    },
    /// No TCP connection: nothing listens there, the name does not resolve, no answer in time.
    #[error("cannot connect to {addr}: {source}; is chittyd running there?")]
    Connect {
        /// host:port.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// A TLS client reached a server that answered in something else (plain HTTP), or closed the
    /// connection without a word.
    #[error("the server at {addr} does not speak TLS: drop --tls{}", if *.ca { " and --ca" } else { "" })]
    NotTls {
        /// host:port.
        addr: String,
        /// Whether --ca was given (it implies --tls).
        ca: bool,
    },
    /// A plain client reached a server that answered with TLS.
    #[error("the server at {addr} speaks TLS: add --tls (and --ca FILE for a private CA)")]
    SpeaksTls {
        /// host:port.
        addr: String,
    },
    /// The certificate does not name the host the client connected to.
    #[error(
        "the certificate of the server at {addr} is for {}, not {expected}: connect to it by one \
         of those names, or give the server a certificate for {expected} (chittyctl tls-cert \
         --name {expected})",
        names(.presented)
    )]
    NameMismatch {
        /// host:port.
        addr: String,
        /// The name the client checked.
        expected: String,
        /// The names in the certificate (empty when rustls did not say).
        presented: Vec<String>,
    },
    /// The certificate is not signed by an authority the client trusts.
    #[error(
        "the certificate of the server at {addr} is signed by an authority this client does not \
         trust: {}",
        match .ca {
            None => "pass --ca FILE, the certificate of the CA that signed it (ca.pem from \
                     chittyctl tls-cert)".to_owned(),
            Some(path) => format!("not by the CA in {}; pass --ca with the certificate of the \
                                   CA that signed the server's (ca.pem from chittyctl tls-cert, \
                                   not cert.pem)", path.display()),
        }
    )]
    Untrusted {
        /// host:port.
        addr: String,
        /// The CA file the client trusted instead of the system's, if any.
        ca: Option<PathBuf>,
    },
    /// The server presents a CA certificate as its own (webpki's `CaUsedAsEndEntity`).
    #[error(
        "the server at {addr} presents a CA certificate as its own, which TLS clients refuse: its \
         operator must serve a certificate signed by that CA instead (chittyctl tls-cert writes \
         one)"
    )]
    CaAsServerCertificate {
        /// host:port.
        addr: String,
    },
    /// The certificate has expired.
    #[error("the certificate of the server at {addr} expired{}: its operator must renew it", when(*.not_after))]
    Expired {
        /// host:port.
        addr: String,
        /// When it expired, if rustls said.
        not_after: Option<SystemTime>,
    },
    /// The certificate is not valid yet.
    #[error(
        "the certificate of the server at {addr} is not valid yet{}: is this machine's clock right?",
        until(*.not_before)
    )]
    NotYetValid {
        /// host:port.
        addr: String,
        /// When it becomes valid, if rustls said.
        not_before: Option<SystemTime>,
    },
    /// The TCP connection was made but the TLS handshake did not finish in time.
    #[error(
        "the server at {addr} accepted the connection but did not finish the TLS handshake \
         within {} s",
        DIAL_TIMEOUT.as_secs()
    )]
    HandshakeTimeout {
        /// host:port.
        addr: String,
    },
    /// Any other TLS failure, in rustls's words.
    #[error("TLS with the server at {addr} failed: {source}")]
    Tls {
        /// host:port.
        addr: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

impl DialError {
    /// Whether trying again later may help: the server may come back, but a certificate or a
    /// setting at one end will not change by itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DialError::Connect { .. } | DialError::HandshakeTimeout { .. }
        )
    }
}

fn names(presented: &[String]) -> String {
    if presented.is_empty() {
        "other names".to_owned()
    } else {
        presented.join(", ")
    }
}

fn when(t: Option<SystemTime>) -> String {
    t.map(|t| format!(" at {}", humantime::format_rfc3339_seconds(t)))
        .unwrap_or_default()
}

fn until(t: Option<SystemTime>) -> String {
    t.map(|t| format!(" (until {})", humantime::format_rfc3339_seconds(t)))
        .unwrap_or_default()
}

/// The first bytes a server sent on a connection (up to five, a TLS record header), shared
/// between the connection, which records them as it reads them, and whoever explains a failure.
#[derive(Debug, Clone, Default)]
pub struct Greeting(Arc<Mutex<Vec<u8>>>);

/// A TLS record header is five bytes; two tell it apart from anything else.
const GREETING_LEN: usize = 5;

impl Greeting {
    /// Keeps the start of `read`, until [`GREETING_LEN`] bytes are kept; returns whether it has
    /// all it wants.
    fn record(&self, read: &[u8]) -> bool {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = GREETING_LEN.saturating_sub(kept.len());
        kept.extend_from_slice(&read[..room.min(read.len())]);
        kept.len() >= GREETING_LEN
    }

    fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the server began with a TLS record: a content type from 20 (change cipher spec)
    /// to 24 (heartbeat), then major version 3. A TLS server that cannot make sense of what it
    /// received answers with an alert (21) before closing; rustls does.
    pub fn is_tls(&self) -> bool {
        matches!(self.bytes()[..], [0x14..=0x18, 0x03, ..])
    }

    /// Whether the server said something first, and it was not TLS (`HTTP/1.1 400 ...`).
    pub fn is_other(&self) -> bool {
        let bytes = self.bytes();
        !bytes.is_empty() && !self.is_tls()
    }

    /// Whether the server has sent nothing yet.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// A stream that records the first bytes read from it into a [`Greeting`], then gets out of the
/// way.
pub struct Watched<S> {
    inner: S,
    greeting: Greeting,
    /// Whether the greeting still wants bytes: once it has them, reads cost nothing extra.
    watching: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.watching && matches!(result, Poll::Ready(Ok(()))) {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.watching = !self.greeting.record(read);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection to the server, plain or TLS.
pub enum Conn {
    /// Plain TCP.
    Plain(Watched<TcpStream>),
    /// TLS over TCP (boxed: rustls's state is several kilobytes).
    Tls(Box<TlsStream<Watched<TcpStream>>>),
}

impl Conn {
    /// The first bytes the server sent on this connection, as they arrive.
    pub fn greeting(&self) -> Greeting {
        match self {
            Conn::Plain(tcp) => tcp.greeting.clone(),
            Conn::Tls(tls) => tls.get_ref().0.greeting.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
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
        let tcp = Watched {
            inner: tcp,
            greeting: greeting.clone(),
            watching: true,
        };
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
            Some(rustls::Error::InvalidCertificate(c)) => certificate_error(addr, c, tls),
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

/// rustls's verdict on the server's certificate, in words.
fn certificate_error(addr: String, e: &CertificateError, tls: &Tls) -> DialError {
    let time = |t: rustls::pki_types::UnixTime| UNIX_EPOCH + Duration::from_secs(t.as_secs());
    match e {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => DialError::NameMismatch {
            addr,
            expected: expected.to_str().into_owned(),
            presented: presented.iter().map(|p| presented_name(p)).collect(),
        },
        CertificateError::NotValidForName => DialError::NameMismatch {
            addr,
            expected: tls.name.to_str().into_owned(),
            presented: Vec::new(),
        },
        CertificateError::UnknownIssuer => DialError::Untrusted {
            addr,
            ca: tls.ca.clone(),
        },
        CertificateError::ExpiredContext { not_after, .. } => DialError::Expired {
            addr,
            not_after: Some(time(*not_after)),
        },
        CertificateError::Expired => DialError::Expired {
            addr,
            not_after: None,
        },
        CertificateError::NotValidYetContext { not_before, .. } => DialError::NotYetValid {
            addr,
            not_before: Some(time(*not_before)),
        },
        CertificateError::NotValidYet => DialError::NotYetValid {
            addr,
            not_before: None,
        },
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            DialError::CaAsServerCertificate { addr }
        }
        other => DialError::Tls {
            addr,
            source: rustls::Error::InvalidCertificate(other.clone()),
        },
    }
}

/// A name from a certificate as webpki presents it (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), as a person writes it; anything else as it came.
fn presented_name(presented: &str) -> String {
    if let Some(dns) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
    {
        return dns.to_owned();
    }
    if let Some(ip) = presented
        .strip_prefix("IpAddress(")
        .and_then(|n| n.strip_suffix(')'))
    {
        // webpki writes ::1 as 0::1; the standard form reads better.
        return ip
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| ip.to_owned(), |ip| ip.to_string());
    }
    presented.to_owned()
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

    fn greeting(bytes: &[u8]) -> Greeting {
        let g = Greeting::default();
        g.record(bytes);
        g
    }

    #[test]
    fn a_greeting_tells_tls_from_plain_http() {
        // rustls's alert to a plain-text client: decode_error.
        assert!(greeting(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]).is_tls());
        assert!(greeting(&[0x16, 0x03, 0x01]).is_tls());
        let http = greeting(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(!http.is_tls() && http.is_other());
        assert_eq!(http.bytes(), b"HTTP/");
        let empty = Greeting::default();
        assert!(empty.is_empty() && !empty.is_tls() && !empty.is_other());
        // One byte is not enough to say TLS; it is enough to say something was sent.
        let one = greeting(&[0x15]);
        assert!(!one.is_tls() && one.is_other());
    }

    #[test]
    fn a_greeting_keeps_only_the_first_bytes_across_reads() {
        let g = Greeting::default();
        assert!(!g.record(&[0x15, 0x03]));
        assert!(g.record(&[0x03, 0x00, 0x02, 0x02, 0x32]));
        assert_eq!(g.bytes(), [0x15, 0x03, 0x03, 0x00, 0x02]);
        assert!(g.record(b"more"));
        assert_eq!(g.bytes().len(), GREETING_LEN);
    }

    #[test]
    fn names_in_a_certificate_read_as_people_write_them() {
        assert_eq!(presented_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(presented_name("IpAddress(0::1)"), "::1");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

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
