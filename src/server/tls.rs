//! TLS on the chat port: the certificate chain and key chittyd serves (PEM files), loaded once at
//! start into a rustls acceptor that the accept loop runs on each connection before HTTP.
//!
//! ALPN offers `h2` (gRPC) and `http/1.1` (WebSocket), so both protocols keep sharing one port;
//! the HTTP layer detects which one a client speaks either way. The crypto provider is ring,
//! the same one the client's connector (tonic's `tls-ring`) uses.

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
    if chain.is_empty() {
        return Err(certificate("the file has no certificate".into()));
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
}
