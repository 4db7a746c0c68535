//! Where chittyd is: the `--host` value understood once, so that the port a person left out is
//! the one chittyd listens on, and every error names the address and port actually tried.
//!
//! Accepted forms: `host`, `host:port`, `v4:port`, `[v6]`, `[v6]:port`, a bare IPv6 literal
//! (`::1`), and each of them after `http://` (plain TCP) or `https://` (TLS), with at most a
//! trailing `/`. A missing port is [`DEFAULT_PORT`] in every form, `https://` included: chittyd
//! serves TLS on its one port, not on 443.

use std::fmt;
use std::net::Ipv6Addr;

/// The port chittyd listens on when `--listen` does not say otherwise (the original's, too).
pub const DEFAULT_PORT: u16 = 8080;

/// The forms a person can use, for error messages.
const FORMS: &str = "use host, host:port, [v6]:port, or an http:// or https:// URL";

/// How the address asks to be reached, when it names a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`: plain TCP.
    Http,
    /// `https://`: TLS.
    Https,
}

/// A server address understood: the host as a URL writes it (IPv6 in brackets), the port, and
/// the scheme if one was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A name, an IPv4 literal, or an IPv6 literal in brackets.
    pub host: String,
    /// The port, [`DEFAULT_PORT`] when none was given.
    pub port: u16,
    /// The scheme written, if any.
    pub scheme: Option<Scheme>,
}

impl fmt::Display for Target {
    /// `host:port`, the address as it is tried.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Target {
    /// Understands `addr`; the error says what is wrong with it, in words.
    pub fn parse(addr: &str) -> Result<Target, String> {
        if addr.is_empty() {
            return Err(format!("it is empty ({FORMS})"));
        }
        if addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "it contains spaces or control characters ({FORMS})"
            ));
        }
        let (scheme, rest) = match addr.split_once("://") {
            None => (None, addr),
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Some(Scheme::Http), rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Some(Scheme::Https), rest),
            Some((s, _)) => {
                return Err(format!("chittyd does not speak {s}:// ({FORMS})"));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "a path, query or user name is not part of a server address ({FORMS})"
            ));
        }
        let (host, port) = split_host_port(rest)?;
        if host.is_empty() {
            return Err(format!("the host is missing ({FORMS})"));
        }
        Ok(Target { host, port, scheme })
    }
}

/// Splits `host[:port]`, with IPv6 literals in brackets or, without a port, bare.
fn split_host_port(rest: &str) -> Result<(String, u16), String> {
    if let Some(inside) = rest.strip_prefix('[') {
        let Some((v6, after)) = inside.split_once(']') else {
            return Err(format!("the ] after the IPv6 address is missing ({FORMS})"));
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{v6} is not an IPv6 address"));
        }
        let port = match after {
            "" => DEFAULT_PORT,
            _ => match after.strip_prefix(':') {
                Some(port) => parse_port(port)?,
                None => return Err(format!("{after} after the IPv6 address ({FORMS})")),
            },
        };
        return Ok((format!("[{v6}]"), port));
    }
    match rest.matches(':').count() {
        0 => Ok((rest.to_owned(), DEFAULT_PORT)),
        1 => {
            let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
            Ok((host.to_owned(), parse_port(port)?))
        }
        _ if rest.parse::<Ipv6Addr>().is_ok() => Ok((format!("[{rest}]"), DEFAULT_PORT)),
        _ => Err(format!(
            "an IPv6 address with a port goes in brackets, as [::1]:{DEFAULT_PORT}"
        )),
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(addr: &str) -> (String, Option<Scheme>) {
        let t = Target::parse(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        (t.to_string(), t.scheme)
    }

    #[test]
    fn a_missing_port_is_chittyds_port() {
        assert_eq!(ok("localhost"), ("localhost:8080".into(), None));
        assert_eq!(ok("127.0.0.1"), ("127.0.0.1:8080".into(), None));
        assert_eq!(ok("[::1]"), ("[::1]:8080".into(), None));
        assert_eq!(ok("::1"), ("[::1]:8080".into(), None));
        assert_eq!(ok("fe80::1:2"), ("[fe80::1:2]:8080".into(), None));
        assert_eq!(
            ok("http://chat.example.org"),
            ("chat.example.org:8080".into(), Some(Scheme::Http))
        );
        assert_eq!(
            ok("https://chat.example.org/"),
            ("chat.example.org:8080".into(), Some(Scheme::Https))
        );
    }

    #[test]
    fn ports_and_urls_keep_working() {
        assert_eq!(ok("localhost:9000"), ("localhost:9000".into(), None));
        assert_eq!(ok("10.0.0.2:1"), ("10.0.0.2:1".into(), None));
        assert_eq!(ok("[::1]:9000"), ("[::1]:9000".into(), None));
        assert_eq!(
            ok("http://127.0.0.1:9000"),
            ("127.0.0.1:9000".into(), Some(Scheme::Http))
        );
        assert_eq!(
            ok("HTTPS://[2001:db8::7]:8443/"),
            ("[2001:db8::7]:8443".into(), Some(Scheme::Https))
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (bad, says) in [
            ("", "empty"),
            ("local host", "spaces"),
            ("localhost:", "port \"\""),
            ("localhost:0", "port \"0\""),
            ("localhost:99999", "port \"99999\""),
            ("localhost:http", "port \"http\""),
            (":8080", "host is missing"),
            ("ws://localhost:8080", "does not speak ws://"),
            ("grpc://localhost", "does not speak grpc://"),
            ("http://localhost:8080/chat", "path"),
            ("http://user@localhost", "user name"),
            ("[::1", "] after the IPv6"),
            ("[::1]8080", "8080 after the IPv6"),
            ("[nope]:80", "nope is not an IPv6"),
            ("2001:db8::7:8080x", "in brackets"),
            ("host:1:2", "in brackets"),
        ] {
            let err = Target::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
