//! [`DialError`]: every way a connection to the server can fail, each in words that say what is
//! wrong and what to do, and rustls's verdict on a certificate turned into one of them.

use super::DIAL_TIMEOUT;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio_rustls::rustls::{self, CertificateError, pki_types::ServerName};

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

/// rustls's verdict on the server's certificate, checked against `name`, trusting `ca` (or the
/// system's CAs), in words.
pub(super) fn certificate_error(
    addr: String,
    e: &CertificateError,
    name: &ServerName<'_>,
    ca: Option<&Path>,
) -> DialError {
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
            expected: name.to_str().into_owned(),
            presented: Vec::new(),
        },
        CertificateError::UnknownIssuer => DialError::Untrusted {
            addr,
            ca: ca.map(Path::to_owned),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_a_certificate_read_as_people_write_them() {
        assert_eq!(presented_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(presented_name("IpAddress(0::1)"), "::1");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }
}
