//! `chittyctl tls-cert`: a working TLS certificate for a test or a small install, for people who
//! are not TLS experts.
//!
//! It writes three files into one folder:
//! - `cert.pem`, the server's certificate, for the names clients connect to. It is not a CA
//!   (basic constraints CA:FALSE, for server authentication only): a CA certificate served as a
//!   server's own is the usual mistake, and every client refuses it.
//! - `key.pem`, its private key, mode 0600.
//! - `ca.pem`, the certificate of a small CA that signed it, which clients trust with `--ca`.
//!
//! The CA's key is never written: it signs this one certificate and is gone, so a client that
//! trusts ca.pem trusts this server's certificate and nothing anyone could sign later. A new
//! certificate (new names, or at expiry) is a new run, and clients get the new ca.pem.
//!
//! Each file is written under a temporary name and renamed into place, so nobody reads half a
//! file; files already there are kept unless `--force`, checked before anything is written.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Options of `chittyctl tls-cert`.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsCertArgs {
    /// A name clients will connect to, as they give it to `chitty chat --host`: a DNS name
    /// (chat.example.org) or an IP address (192.0.2.7, 2001:db8::7); repeat for each name.
    /// Default: this machine's host name, localhost, 127.0.0.1 and ::1.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// The folder to write ca.pem, cert.pem and key.pem in; created if missing.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,
    /// How many days the certificates are valid.
    #[arg(
        long,
        default_value_t = 825,
        value_name = "DAYS",
        value_parser = clap::value_parser!(u32).range(1..=36500)
    )]
    pub days: u32,
    /// Replace ca.pem, cert.pem and key.pem where they exist (clients then need the new ca.pem).
    #[arg(long)]
    pub force: bool,
}

/// Why `chittyctl tls-cert` wrote nothing.
#[derive(Debug, Error)]
pub enum TlsCertError {
    /// A `--name` that no certificate can carry.
    #[error("{name:?} cannot be a certificate's name: {why}")]
    Name {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Files that would be replaced, without `--force`.
    #[error(
        "{} already holds {}: nothing was written; pass --force to replace them (clients then \
         need the new ca.pem)",
        .dir.display(),
        .files.join(", ")
    )]
    Exists {
        /// The folder.
        dir: PathBuf,
        /// The files already there.
        files: Vec<&'static str>,
    },
    /// A file or the folder could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// rcgen could not make a key or a certificate.
    #[error("cannot make the certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The files written and what is in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The CA's certificate, for clients.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// The names in the server's certificate.
    pub names: Vec<String>,
    /// When both certificates expire.
    pub not_after: SystemTime,
}

/// The names `--name` defaults to: this machine's host name, then localhost and the loopback
/// addresses, so that a client on this machine connects by any of them.
pub fn default_names() -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let mut names = Vec::new();
    if !host.is_empty() && check_name(host).is_ok() {
        names.push(host.to_owned());
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(str::to_owned));
    names.dedup();
    names
}

/// A name as a certificate carries it: an IP address (brackets allowed, as in `[::1]`) or a DNS
/// name, possibly with a leading `*.` wildcard label.
fn check_name(name: &str) -> Result<String, TlsCertError> {
    let bad = |why| TlsCertError::Name {
        name: name.to_owned(),
        why,
    };
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if name.contains(':') {
        return Err(bad(
            "give the name without a port (chat.example.org, not chat.example.org:8080)",
        ));
    }
    let dns = name.strip_prefix("*.").unwrap_or(name);
    if dns.contains('*') {
        return Err(bad(
            "a wildcard can only be the whole first label (*.example.org)",
        ));
    }
    rustls_pki_types::DnsName::try_from(dns).map_err(|_| bad("not a DNS name or an IP address"))?;
    Ok(name.to_ascii_lowercase())
}

/// Writes the CA certificate, the server's certificate and its key as `args` say, and reports
/// what it wrote to `out` (for people, or JSON).
pub fn run(args: &TlsCertArgs, json: bool, out: &mut impl Write) -> Result<Written, TlsCertError> {
    let given = if args.names.is_empty() {
        default_names()
    } else {
        args.names.clone()
    };
    let mut names = Vec::new();
    for name in &given {
        let name = check_name(name)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let dir = std::path::absolute(&args.out).map_err(|source| TlsCertError::Write {
        path: args.out.clone(),
        source,
    })?;
    let not_after = SystemTime::now() + Duration::from_secs(u64::from(args.days) * 86_400);
    let pems = generate(&names, not_after)?;
    write_files(&dir, &pems, args.force)?;
    let written = Written {
        ca: dir.join(CA),
        cert: dir.join(CERT),
        key: dir.join(KEY),
        names,
        not_after,
    };
    // The files are written: a closed pipe or a full terminal does not undo that.
    let _ = report(&written, json, out);
    Ok(written)
}

const CA: &str = "ca.pem";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";

/// The three files' contents: the CA certificate, the server certificate and its key, in PEM.
struct Pems {
    ca: String,
    cert: String,
    key: String,
}

/// A CA that may sign server certificates only (path length 0), and one server certificate for
/// `names` signed by it; both valid from an hour ago (a client whose clock is a little behind
/// still accepts them) until `not_after`. The CA's key is dropped here.
fn generate(names: &[String], not_after: SystemTime) -> Result<Pems, TlsCertError> {
    let not_before = SystemTime::now() - Duration::from_secs(3600);
    let first = names.first().map_or("localhost", String::as_str);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    // Unique to this CA (its key's identifier): clients match a certificate's issuer to the CAs
    // they trust by this name, and two CAs with one name would confuse them.
    let id: String = ca
        .key_identifier(&ca_key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(
        DnType::CommonName,
        format!(
            "chitty CA {id} for {first}, {}",
            humantime::format_rfc3339_seconds(SystemTime::now())
        ),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before.into();
    ca.not_after = not_after.into();
    let ca = CertifiedIssuer::self_signed(ca, ca_key)?;

    let key = KeyPair::generate()?;
    let mut server = CertificateParams::new(names.to_vec())?;
    server.distinguished_name = rcgen::DistinguishedName::new();
    server.distinguished_name.push(DnType::CommonName, first);
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = not_before.into();
    server.not_after = not_after.into();
    let cert = server.signed_by(&key, &ca)?;
    Ok(Pems {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes the three files into `dir` (created if missing): certificates 0644, the key 0600,
/// whatever the umask. Without `force`, nothing is written if any of them exists.
fn write_files(dir: &Path, pems: &Pems, force: bool) -> Result<(), TlsCertError> {
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsCertError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(fail(dir))?;
    let files = [
        (KEY, &pems.key, 0o600),
        (CERT, &pems.cert, 0o644),
        (CA, &pems.ca, 0o644),
    ];
    if !force {
        // symlink_metadata: a dangling link is a file that would be replaced too.
        let existing: Vec<_> = files
            .iter()
            .map(|(name, _, _)| *name)
            .filter(|name| dir.join(name).symlink_metadata().is_ok())
            .collect();
        if !existing.is_empty() {
            return Err(TlsCertError::Exists {
                dir: dir.to_owned(),
                files: existing,
            });
        }
    }
    let mut staged = Vec::new();
    let result = files.iter().try_for_each(|(name, content, mode)| {
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        staged.push(temp.clone());
        write_new(&temp, content, *mode).map_err(fail(&temp))
    });
    let result = result.and_then(|()| {
        files
            .iter()
            .zip(&staged)
            .try_for_each(|((name, _, _), temp)| {
                let path = dir.join(name);
                std::fs::rename(temp, &path).map_err(fail(&path))
            })
    });
    if result.is_err() {
        for temp in &staged {
            let _ = std::fs::remove_file(temp);
        }
    }
    result
}

/// Creates `path` with `mode` (exactly: the umask is overridden) and writes `content` to disk.
fn write_new(path: &Path, content: &str, mode: u32) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(content.as_bytes())?;
    file.sync_all()
}

/// What was written and what to do with it.
fn report(w: &Written, json: bool, out: &mut impl Write) -> io::Result<()> {
    let until = humantime::format_rfc3339_seconds(w.not_after).to_string();
    if json {
        return writeln!(
            out,
            "{}",
            json!({
                "ca": w.ca, "cert": w.cert, "key": w.key, "names": w.names, "not_after": until,
            })
        );
    }
    let host = match w.names.first() {
        Some(name) if name.contains(':') => format!("[{name}]:8080"),
        Some(name) => format!("{name}:8080"),
        None => "localhost:8080".to_owned(),
    };
    let dir = w.cert.parent().unwrap_or(Path::new("."));
    writeln!(out, "Wrote in {}:", dir.display())?;
    writeln!(
        out,
        "  {CERT}  the server's certificate (not a CA) for {}, valid until {until}",
        w.names.join(", ")
    )?;
    writeln!(
        out,
        "  {KEY}   its private key, readable by its owner only (0600)"
    )?;
    writeln!(
        out,
        "  {CA}    the CA certificate clients trust; the CA's key was not kept"
    )?;
    writeln!(out, "Run the server with:")?;
    writeln!(
        out,
        "  chittyd --tls-cert {} --tls-key {}",
        w.cert.display(),
        w.key.display()
    )?;
    writeln!(
        out,
        "Connect with (on another machine, with a copy of {CA}):"
    )?;
    writeln!(
        out,
        "  chitty chat -u NAME -H {host} --ca {}",
        w.ca.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_names_or_ip_addresses_without_ports() {
        assert_eq!(check_name("Chat.Example.org").unwrap(), "chat.example.org");
        assert_eq!(check_name("192.0.2.7").unwrap(), "192.0.2.7");
        assert_eq!(check_name("[::1]").unwrap(), "::1");
        assert_eq!(check_name("2001:db8::7").unwrap(), "2001:db8::7");
        assert_eq!(check_name("*.example.org").unwrap(), "*.example.org");
        for bad in [
            "chat.example.org:8080",
            "",
            "a b",
            "*",
            "x.*.org",
            "under_score!",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was taken");
        }
        let e = check_name("localhost:8080").unwrap_err().to_string();
        assert!(e.contains("without a port"), "{e}");
    }

    #[test]
    fn default_names_cover_this_machine_and_loopback() {
        let names = default_names();
        assert!(names.ends_with(&["localhost".into(), "127.0.0.1".into(), "::1".into()]));
        for name in &names {
            assert!(check_name(name).is_ok(), "{name}");
        }
    }
}
