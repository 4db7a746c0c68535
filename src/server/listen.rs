//! Where chittyd listens: the forms `--listen` and `--metrics-listen` accept, and binding every
//! address they stand for.
//!
//! `PORT` and `:PORT` mean every address of the machine (`[::]`, which takes IPv4 too);
//! `HOST:PORT` with an IPv4 literal, a bracketed IPv6 literal or a host name means that host. A
//! host name is resolved at start and chittyd listens on **every** address it resolves to
//! (`localhost` is usually 127.0.0.1 and ::1), since a client may try any of them; an address
//! this machine does not have is skipped with a warning as long as another one is bound.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::task::{Context, Poll};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};

/// The accepted forms, for error messages and help texts.
pub const FORMS: &str = "PORT, :PORT, HOST:PORT, IPv4:PORT or [IPv6]:PORT \
                         (e.g. 8080, :8080, localhost:8080, 0.0.0.0:8080, [::1]:8080)";

/// A listening address as given: an address, or a host name still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A literal address (`PORT` and `:PORT` are `[::]:PORT`).
    Addr(SocketAddr),
    /// A host name and port, resolved when bound.
    Host {
        /// The name, as given.
        host: String,
        /// The port.
        port: u16,
    },
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr::Addr(addr)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Addr(addr) => addr.fmt(f),
            ListenAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse(s).map_err(|why| format!("{why}; the forms are {FORMS}"))
    }
}

fn parse(s: &str) -> Result<ListenAddr, String> {
    let any = |port| ListenAddr::Addr(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    if s.is_empty() {
        return Err("empty address".into());
    }
    if let Some(port) = s.strip_prefix(':')
        && !port.contains(':')
    {
        return parse_port(port).map(any);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_port(s).map(any);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(ListenAddr::Addr(addr));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or("an IPv6 address needs a port after its closing bracket")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        return Ok(ListenAddr::Addr(SocketAddr::new(
            ip.into(),
            parse_port(port)?,
        )));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("no port (did you mean {s}:8080?)"));
    };
    if host.contains(':') {
        return Err("an IPv6 address goes in brackets, as in [::1]:8080".into());
    }
    let port = parse_port(port)?;
    // A name's last label is never all digits (RFC 3696 2): this was meant as an IPv4 address.
    let last = host
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or(host);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{host:?} is not an IPv4 address"));
    }
    check_host(host)?;
    Ok(ListenAddr::Host {
        host: host.to_owned(),
        port,
    })
}

fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a port number"));
    }
    s.parse()
        .map_err(|_| format!("port {s} is out of range (0 to 65535)"))
}

/// A host name as DNS allows it (RFC 1123): dot-separated labels of letters, digits and inner
/// hyphens, each at most 63 characters.
fn check_host(host: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if host.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{host:?} is not a host name"))
    }
}

/// Why an address could not be listened on.
#[derive(Debug, Error)]
pub enum ListenError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's answer.
        source: io::Error,
    },
    /// The host name resolved to nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
}

impl ListenError {
    /// Whether this is a mistake in the configuration, which starting again will not fix, as
    /// opposed to a condition that may pass: a port still held by a process that is stopping
    /// (EADDRINUSE), an address the machine does not have yet (EADDRNOTAVAIL, before the
    /// network is configured). A name that does not resolve, a port that needs privileges, an
    /// address of the wrong kind are configuration.
    pub fn is_configuration(&self) -> bool {
        match self {
            ListenError::Resolve { .. } | ListenError::NoAddress(_) => true,
            ListenError::Bind { source, .. } => {
                !matches!(
                    source.kind(),
                    io::ErrorKind::AddrInUse
                        | io::ErrorKind::AddrNotAvailable
                        | io::ErrorKind::OutOfMemory
                        | io::ErrorKind::Interrupted
                ) && source.raw_os_error() != Some(rustix::io::Errno::NOBUFS.raw_os_error())
            }
        }
    }
}

/// The listening sockets one [`ListenAddr`] stands for, accepted from as one.
#[derive(Debug)]
pub struct Listeners {
    all: Vec<TcpListener>,
    /// The listener asked first on the next accept, so that a busy one cannot starve the rest.
    next: usize,
}

impl Listeners {
    /// Resolves `addr` and binds every address it stands for. With port 0, the addresses after
    /// the first get the port the first one was given.
    pub async fn bind(addr: &ListenAddr) -> Result<Listeners, ListenError> {
        let addrs = match addr {
            ListenAddr::Addr(a) => vec![*a],
            ListenAddr::Host { host, port } => {
                let resolved = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|source| ListenError::Resolve {
                        host: host.clone(),
                        source,
                    })?;
                let mut addrs: Vec<SocketAddr> = Vec::new();
                for a in resolved {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                if addrs.is_empty() {
                    return Err(ListenError::NoAddress(host.clone()));
                }
                addrs
            }
        };
        let mut all: Vec<TcpListener> = Vec::with_capacity(addrs.len());
        let mut skipped = None;
        for mut a in addrs.iter().copied() {
            if let Some(first) = all.first().and_then(|l| l.local_addr().ok())
                && a.port() == 0
            {
                a.set_port(first.port());
            }
            match TcpListener::bind(a).await {
                Ok(l) => all.push(l),
                // One of several addresses of a name (::1 where IPv6 is off): the others serve.
                Err(source)
                    if addrs.len() > 1 && source.kind() == io::ErrorKind::AddrNotAvailable =>
                {
                    tracing::warn!("{addr} resolves to {a}, which this machine lacks: {source}");
                    skipped.get_or_insert(ListenError::Bind { addr: a, source });
                }
                Err(source) => return Err(ListenError::Bind { addr: a, source }),
            }
        }
        match skipped {
            Some(e) if all.is_empty() => Err(e),
            _ => Ok(Listeners { all, next: 0 }),
        }
    }

    /// The bound addresses, in the order they were resolved.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.all
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The bound addresses as people read them: `127.0.0.1:8080, [::1]:8080`.
    pub fn describe(&self) -> String {
        let addrs: Vec<String> = self.local_addrs().iter().map(|a| a.to_string()).collect();
        addrs.join(", ")
    }

    /// Accepts the next connection on any of the sockets.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let n = self.all.len();
        for i in 0..n {
            let at = (self.next + i) % n;
            if let Poll::Ready(accepted) = self.all[at].poll_accept(cx) {
                self.next = (at + 1) % n;
                return Poll::Ready(accepted);
            }
        }
        Poll::Pending
    }

    /// Each socket on its own (the metrics endpoint serves each with axum).
    pub fn into_inner(self) -> Vec<TcpListener> {
        self.all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> ListenAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<ListenAddr>().expect_err(s)
    }

    #[test]
    fn accepts_every_documented_form() {
        let any = |p| ListenAddr::Addr(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), p));
        assert_eq!(ok("8080"), any(8080));
        assert_eq!(ok(":8080"), any(8080));
        assert_eq!(ok("0"), any(0));
        assert_eq!(
            ok("0.0.0.0:8080"),
            ListenAddr::Addr("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            ok("[::1]:8080"),
            ListenAddr::Addr("[::1]:8080".parse().unwrap())
        );
        assert_eq!(ok("[::]:8080"), any(8080));
        assert_eq!(
            ok("localhost:9000"),
            ListenAddr::Host {
                host: "localhost".into(),
                port: 9000
            }
        );
        assert_eq!(ok("chat.example.org.:1").to_string(), "chat.example.org.:1");
        assert_eq!(ok("[::1]:8080").to_string(), "[::1]:8080");
    }

    #[test]
    fn refusals_say_what_is_wrong_and_list_the_forms() {
        for (input, why) in [
            ("", "empty"),
            ("localhost", "no port (did you mean localhost:8080?)"),
            ("70000", "out of range"),
            (":x", "not a port number"),
            ("::1:8080", "in brackets"),
            ("[::1]", "needs a port"),
            ("[1.2.3.4]:80", "not an IPv6 address"),
            ("300.1.1.1:80", "not an IPv4 address"),
            ("host name:80", "not a host name"),
            ("-bad:80", "not a host name"),
            ("host:", "not a port number"),
        ] {
            let e = err(input);
            assert!(e.contains(why), "{input:?}: {e}");
            assert!(e.contains(FORMS), "{input:?}: {e}");
        }
    }

    #[test]
    fn transient_bind_failures_are_not_configuration() {
        let bind = |kind| ListenError::Bind {
            addr: "127.0.0.1:1".parse().unwrap(),
            source: io::Error::from(kind),
        };
        assert!(!bind(io::ErrorKind::AddrInUse).is_configuration());
        assert!(!bind(io::ErrorKind::AddrNotAvailable).is_configuration());
        assert!(bind(io::ErrorKind::PermissionDenied).is_configuration());
        assert!(ListenError::NoAddress("x".into()).is_configuration());
    }
}
