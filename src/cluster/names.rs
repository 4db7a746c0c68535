//! The names a cluster is built from, checked before anything connects: the NATS URLs, the
//! cluster's name (which names the stream, its subjects and the state bucket) and a node's name
//! (which later names the node's subjects and keys). A name NATS would refuse, or one that would
//! cut a subject into other tokens (a `.`, a `*`, a `>`), is a configuration error at start,
//! not a surprise at the first publish.

use std::fmt;
use std::str::FromStr;

/// The longest cluster or node name: a stream name is a file name in the server's store, and a
/// node name goes into subjects and keys, so both stay short.
pub const MAX_NAME: usize = 64;

/// The NATS servers to connect to, in the order given (the client tries them in turn and
/// reconnects to any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUrls(Vec<String>);

impl NatsUrls {
    /// The URLs, each `nats://HOST:PORT` or `tls://HOST:PORT`.
    pub fn urls(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for NatsUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl FromStr for NatsUrls {
    type Err = String;

    /// `nats://HOST:PORT[,nats://HOST:PORT...]`; `tls://` asks for TLS. The port may be left
    /// out (4222, NATS's own).
    fn from_str(s: &str) -> Result<NatsUrls, String> {
        let mut urls = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err("an empty URL in the list (e.g. nats://127.0.0.1:4222)".into());
            }
            let Some((scheme, rest)) = part.split_once("://") else {
                return Err(format!(
                    "{part:?} is not a NATS URL: write nats://HOST:PORT (or tls://HOST:PORT)"
                ));
            };
            if scheme != "nats" && scheme != "tls" {
                return Err(format!(
                    "{part:?}: the scheme must be nats:// or tls://, not {scheme}://"
                ));
            }
            if rest.is_empty() || rest.starts_with(':') {
                return Err(format!(
                    "{part:?} names no host (e.g. nats://127.0.0.1:4222)"
                ));
            }
            part.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("{part:?} is not a NATS URL: {e}"))?;
            urls.push(part.to_owned());
        }
        Ok(NatsUrls(urls))
    }
}

/// Checks a cluster name: 1 to [`MAX_NAME`] ASCII letters, digits, `-` and `_`. That is what
/// NATS allows in a key-value bucket's name, which is narrower than a stream's (no whitespace,
/// `.`, `*`, `>`, path separators or control characters), so it names both.
pub fn cluster_name(s: &str) -> Result<String, String> {
    plain_name(s, "cluster name").map(|()| s.to_owned())
}

/// Checks a node name with the cluster name's rules (it goes into subjects and keys).
pub fn node_name(s: &str) -> Result<String, String> {
    plain_name(s, "node name").map(|()| s.to_owned())
}

fn plain_name(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_NAME {
        return Err(format!(
            "the {what} is {} characters long; at most {MAX_NAME}",
            s.len()
        ));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(format!(
            "the {what} {s:?} contains {c:?}: only ASCII letters, digits, '-' and '_' are \
             allowed (NATS stream and bucket names)"
        )),
        None => Ok(()),
    }
}

/// The node name a host name gives: its first label (up to the first dot), with anything a
/// node name may not hold replaced by `-`; `chittyd` when nothing is left.
pub fn node_from_host(host: &str) -> String {
    let label = host.split('.').next().unwrap_or_default();
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME)
        .collect();
    if name.is_empty() {
        "chittyd".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u: NatsUrls = "nats://127.0.0.1:4222, tls://nats.example.org:4443"
            .parse()
            .unwrap();
        assert_eq!(
            u.urls(),
            ["nats://127.0.0.1:4222", "tls://nats.example.org:4443"]
        );
        assert_eq!(
            u.to_string(),
            "nats://127.0.0.1:4222,tls://nats.example.org:4443"
        );
        for bad in [
            "",
            "127.0.0.1:4222",
            "http://127.0.0.1:4222",
            "nats://",
            "nats://:4222",
            "nats://a:1,",
            "nats://host:notaport",
        ] {
            assert!(bad.parse::<NatsUrls>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names() {
        assert_eq!(cluster_name("chitty").unwrap(), "chitty");
        assert!(cluster_name("chat-EU_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", "é", &"x".repeat(65)] {
            let e = cluster_name(bad).unwrap_err();
            assert!(e.contains("cluster name"), "{bad:?}: {e}");
        }
        assert!(node_name("node-1").is_ok());
        assert!(node_name("node.1").is_err());
    }

    #[test]
    fn node_names_from_host_names() {
        assert_eq!(node_from_host("web-3.example.org"), "web-3");
        assert_eq!(node_from_host("box"), "box");
        assert_eq!(node_from_host("bad name"), "bad-name");
        assert_eq!(node_from_host(""), "chittyd");
        assert!(node_name(&node_from_host(&"y".repeat(300))).is_ok());
    }
}
