//! TLS on the chat port: the certificate chain and key chittyd serves (PEM files), loaded once at
//! start into a rustls acceptor that the accept loop runs on each connection before HTTP.
//!
//! ALPN offers `h2` (gRPC) and `http/1.1` (WebSocket), so both protocols keep sharing one port;
//! the HTTP layer detects which one a client speaks either way. The crypto provider is ring,
//! the same one the client's connector (`client::dial`) uses.
//!
//! A CA certificate is refused as the server's own at start: rustls would serve it, and every
//! client would then refuse the handshake (webpki's `CaUsedAsEndEntity`), one connection at a
//! time and far from the cause. `openssl req -x509` makes such certificates unless told not to,
//! so it is the usual first mistake.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The PEM files chittyd serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS could not be set up; each names the file to fix.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS {what} {}: {source}", .path.display())]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a broken one.
    #[error("no usable certificate in {}: {why} (expected PEM, \"-----BEGIN CERTIFICATE-----\")", .path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key file holds no PEM private key, or a broken one.
    #[error("no usable private key in {}: {why} (expected PEM, \"-----BEGIN PRIVATE KEY-----\")", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The certificate is a CA's (basic constraints `CA:TRUE`), which clients refuse as a
    /// server's own.
    #[error(
        "{} is a CA certificate (basic constraints CA:TRUE), and TLS clients refuse a CA \
         certificate as a server's own: serve a certificate that CA signed, with its key, and give \
         clients the CA certificate (chitty chat --ca FILE); `chittyctl tls-cert` writes all three",
        .path.display()
    )]
    CaCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// rustls refused the pair (a key that does not match the certificate, an unsupported key).
    #[error("TLS certificate {} and key {} cannot be used together: {source}", .cert.display(), .key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Loads the files into an acceptor that offers `h2` and `http/1.1`.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let cert_pem = read("certificate", &files.cert)?;
    let certificate = |why: String| TlsError::Certificate {
        path: files.cert.clone(),
        why,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(certificate("the file has no certificate".into()));
    };
    if is_ca_certificate(leaf) {
        return Err(TlsError::CaCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read("key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        why: e.to_string(),
    })?;
    let config_error = |source| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether a DER certificate says it is a CA's: basic constraints (OID 2.5.29.19) with `cA`
/// true. Anything that does not parse counts as no: rustls then judges the certificate itself.
fn is_ca_certificate(der: &[u8]) -> bool {
    basic_constraints_ca(der).unwrap_or(false)
}

/// The DER of the basic constraints extension's OID, 2.5.29.19.
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serial, signature, issuer,
/// validity, subject, subjectPublicKeyInfo, [1]?, [2]?, [3] EXPLICIT Extensions }, ... }
/// (RFC 5280, 4.1); `None` where the DER does not have that shape.
fn basic_constraints_ca(der: &[u8]) -> Option<bool> {
    let (certificate, _) = Der::new(der).read(0x30)?;
    let (tbs, _) = certificate.read(0x30)?;
    let mut fields = tbs;
    while let Some((tag, content, rest)) = fields.next() {
        fields = rest;
        if tag != 0xa3 {
            continue;
        }
        let (mut extensions, _) = content.read(0x30)?;
        while let Some((extension, rest)) = extensions.read(0x30) {
            extensions = rest;
            // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
            let (oid, mut rest) = extension.read(0x06)?;
            if oid.0 != BASIC_CONSTRAINTS {
                continue;
            }
            if let Some((_, after)) = rest.read(0x01) {
                rest = after;
            }
            let (value, _) = rest.read(0x04)?;
            // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }
            let (constraints, _) = value.read(0x30)?;
            return Some(match constraints.read(0x01) {
                Some((ca, _)) => ca.0.iter().any(|&b| b != 0),
                None => false,
            });
        }
        return Some(false);
    }
    Some(false)
}

/// A run of DER bytes, read one TLV at a time; every read is bounds-checked, so a broken file
/// gives `None`, never a panic.
#[derive(Clone, Copy)]
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der(bytes)
    }

    /// The next element: its tag, its content and what follows it.
    fn next(self) -> Option<(u8, Der<'a>, Der<'a>)> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            short if short < 0x80 => (usize::from(short), rest),
            long => {
                let count = usize::from(long & 0x7f);
                if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
                    return None;
                }
                let (len, rest) = rest.split_at(count);
                let len = len.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
                (len, rest)
            }
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        Some((tag, Der(content), Der(rest)))
    }

    /// The next element if it has `tag`: its content and what follows it.
    fn read(self, tag: u8) -> Option<(Der<'a>, Der<'a>)> {
        self.next()
            .filter(|(t, _, _)| *t == tag)
            .map(|(_, content, rest)| (content, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    fn generated() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn loads_a_certificate_and_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generated();
        assert!(acceptor(&files(dir.path(), &cert, &key)).is_ok());
    }

    #[test]
    fn every_failure_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generated();
        let (_, other_key) = generated();

        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("key.pem"),
        };
        let e = acceptor(&missing).err().unwrap().to_string();
        assert!(e.contains("nope.pem") && e.contains("certificate"), "{e}");

        let e = acceptor(&files(dir.path(), "not pem", &key)).err().unwrap();
        assert!(matches!(e, TlsError::Certificate { .. }), "{e}");
        assert!(e.to_string().contains("cert.pem"), "{e}");

        let e = acceptor(&files(dir.path(), &cert, &cert)).err().unwrap();
        assert!(matches!(e, TlsError::Key { .. }), "{e}");
        assert!(e.to_string().contains("key.pem"), "{e}");

        let e = acceptor(&files(dir.path(), &cert, &other_key))
            .err()
            .unwrap();
        assert!(matches!(e, TlsError::Config { .. }), "{e}");
    }

    /// A certificate with these basic constraints, and its key.
    fn with_constraints(is_ca: rcgen::IsCa) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.is_ca = is_ca;
        (params.self_signed(&key).unwrap(), key)
    }

    #[test]
    fn a_ca_certificate_is_refused_as_the_servers_own_and_says_what_to_do() {
        use rcgen::{BasicConstraints, IsCa};
        let dir = tempfile::tempdir().unwrap();
        for ca in [
            IsCa::Ca(BasicConstraints::Unconstrained),
            IsCa::Ca(BasicConstraints::Constrained(0)),
        ] {
            let (cert, key) = with_constraints(ca);
            assert!(is_ca_certificate(cert.der()));
            let e = acceptor(&files(dir.path(), &cert.pem(), &key.serialize_pem()))
                .err()
                .unwrap();
            assert!(matches!(e, TlsError::CaCertificate { .. }), "{e}");
            let text = e.to_string();
            assert!(text.contains("cert.pem is a CA certificate"), "{text}");
            assert!(text.contains("chittyctl tls-cert"), "{text}");
        }
        // No basic constraints, or CA:FALSE said explicitly: a server's certificate.
        for not_ca in [IsCa::NoCa, IsCa::ExplicitNoCa] {
            let (cert, key) = with_constraints(not_ca);
            assert!(!is_ca_certificate(cert.der()));
            assert!(acceptor(&files(dir.path(), &cert.pem(), &key.serialize_pem())).is_ok());
        }
    }

    #[test]
    fn broken_der_never_panics() {
        let (cert, _) = with_constraints(rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained));
        let der = cert.der().to_vec();
        assert!(is_ca_certificate(&der));
        // Every truncation, and every single-byte change, parses to a verdict without a panic.
        for len in 0..der.len() {
            let _ = is_ca_certificate(&der[..len]);
        }
        for i in 0..der.len() {
            let mut bent = der.clone();
            bent[i] ^= 0xff;
            let _ = is_ca_certificate(&bent);
        }
        assert!(!is_ca_certificate(&[]));
        assert!(!is_ca_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]));
    }
}
