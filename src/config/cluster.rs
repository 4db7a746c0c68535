//! chittyd's cluster options (`--cluster` and its companions), a group of their own in `--help`.
//! Without `--cluster` none of them matters and chittyd is a single node.

use crate::cluster::{self, ClusterConfig, ClusterError, NatsUrls, Storage};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// The cluster options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster (NATS JetStream)")]
pub struct ClusterArgs {
    /// Join a cluster of chittyd nodes through NATS JetStream at these servers
    /// (nats://HOST:PORT, comma-separated; tls://HOST:PORT for TLS). chittyd connects, creates
    /// the stream and the state bucket when missing, and refuses to start when what exists
    /// cannot serve. Every node serves the one room, in one order, replicated through the
    /// stream (README, "Running a cluster"). Without it chittyd is a single node and needs no
    /// NATS.
    #[arg(long, env = "CHITTY_CLUSTER", value_name = "URLS")]
    pub cluster: Option<NatsUrls>,

    /// This node's name in the cluster: ASCII letters, digits, '-' and '_', unique among the
    /// nodes. Default: the host name up to its first dot.
    #[arg(long, env = "CHITTY_NODE", value_parser = cluster::node_name, value_name = "NAME")]
    pub node: Option<String>,

    /// The cluster's name: it names the NATS stream (subjects NAME.>) and the key-value
    /// bucket, so two clusters can share NATS servers under two names. ASCII letters, digits,
    /// '-' and '_'.
    #[arg(long, env = "CHITTY_CLUSTER_NAME", default_value = "chitty", value_parser = cluster::cluster_name, value_name = "NAME")]
    pub cluster_name: String,

    /// A NATS credentials file (a user JWT and NKey seed, as `nsc` writes them).
    #[arg(long, env = "CHITTY_CLUSTER_CREDS", value_name = "FILE")]
    pub cluster_creds: Option<PathBuf>,

    /// A CA certificate (PEM) to check the NATS servers' certificates against; implies TLS.
    #[arg(long, env = "CHITTY_CLUSTER_CA", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,

    /// Where JetStream keeps the stream and the bucket: file survives a restart of the NATS
    /// servers, memory does not.
    #[arg(long, env = "CHITTY_CLUSTER_STORAGE", value_enum, default_value_t = Storage::File, value_name = "KIND")]
    pub cluster_storage: Storage,

    /// How many NATS servers hold a copy of the stream and the bucket: 1 on a single server, 3
    /// on a three-server NATS cluster (no single point of failure). An existing stream must
    /// have as many.
    #[arg(long, env = "CHITTY_CLUSTER_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), value_name = "N")]
    pub cluster_replicas: u8,

    /// How long a node may go unheard before the other nodes announce its participants as
    /// left (reason: node lost), once.
    #[arg(long, env = "CHITTY_CLUSTER_NODE_TIMEOUT", default_value = "10s", value_parser = super::parse_positive, value_name = "DURATION")]
    pub cluster_node_timeout: Duration,

    /// How long a node that lost NATS holds its participants, refusing their joins and
    /// messages (UNAVAILABLE), before it ends their sessions so they reconnect to another node.
    /// It must be shorter than --cluster-node-timeout: past that the other nodes have
    /// announced those participants as left. The default, 5s, rides out a restart of a NATS
    /// server (the client reconnects within a second of it being back) with time to spare
    /// before the node timeout.
    #[arg(long, env = "CHITTY_CLUSTER_GRACE", default_value = "5s", value_parser = super::parse_positive, value_name = "DURATION")]
    pub cluster_grace: Duration,
}

impl ClusterArgs {
    /// The cluster configuration, `None` without `--cluster`; an error (a configuration error)
    /// when the options contradict each other.
    pub fn config(&self) -> Result<Option<ClusterConfig>, ClusterError> {
        let Some(urls) = &self.cluster else {
            return Ok(None);
        };
        if self.cluster_grace >= self.cluster_node_timeout {
            return Err(ClusterError::Options(format!(
                "--cluster-grace ({}) must be shorter than --cluster-node-timeout ({}): past the \
                 node timeout the other nodes announce this node's participants as left",
                humantime::format_duration(self.cluster_grace),
                humantime::format_duration(self.cluster_node_timeout)
            )));
        }
        let node = match &self.node {
            Some(node) => node.clone(),
            None => cluster::node_from_host(&host_name()),
        };
        Ok(Some(ClusterConfig {
            urls: urls.clone(),
            node,
            name: self.cluster_name.clone(),
            creds: self.cluster_creds.clone(),
            ca: self.cluster_ca.clone(),
            storage: self.cluster_storage,
            replicas: usize::from(self.cluster_replicas),
            node_timeout: self.cluster_node_timeout,
            grace: self.cluster_grace,
        }))
    }
}

/// The machine's host name (uname's node name).
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use crate::config::DaemonArgs;
    use clap::Parser;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<DaemonArgs, clap::Error> {
        let mut argv = vec!["chittyd"];
        argv.extend(args);
        DaemonArgs::try_parse_from(argv)
    }

    #[test]
    fn without_cluster_there_is_no_cluster() {
        assert!(matches!(parse(&[]).unwrap().cluster.config(), Ok(None)));
        // Its companions alone change nothing.
        let args = parse(&["--node", "a", "--cluster-name", "x"]).unwrap();
        assert!(matches!(args.cluster.config(), Ok(None)));
    }

    #[test]
    fn defaults_and_options() {
        let c = parse(&["--cluster", "nats://127.0.0.1:4222"])
            .unwrap()
            .cluster
            .config()
            .unwrap()
            .unwrap();
        assert_eq!(c.name, "chitty");
        assert_eq!(c.storage, crate::cluster::Storage::File);
        assert_eq!(c.replicas, 1);
        assert_eq!(c.node_timeout, Duration::from_secs(10));
        assert_eq!(c.grace, Duration::from_secs(5));
        assert!(crate::cluster::node_name(&c.node).is_ok(), "{:?}", c.node);
        let c = parse(&[
            "--cluster=nats://a:1,nats://b:2",
            "--node=n1",
            "--cluster-name=eu",
            "--cluster-storage=memory",
            "--cluster-replicas=3",
            "--cluster-node-timeout=30s",
            "--cluster-grace=20s",
        ])
        .unwrap()
        .cluster
        .config()
        .unwrap()
        .unwrap();
        assert_eq!(c.urls.urls().len(), 2);
        assert_eq!((c.node.as_str(), c.name.as_str()), ("n1", "eu"));
        assert_eq!(
            (c.storage, c.replicas),
            (crate::cluster::Storage::Memory, 3)
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--cluster", "http://x:1"][..],
            &["--cluster", "nats://a:1", "--cluster-name", "a.b"],
            &["--cluster", "nats://a:1", "--node", "has space"],
            &["--cluster", "nats://a:1", "--cluster-replicas", "0"],
            &["--cluster", "nats://a:1", "--cluster-storage", "disk"],
            &["--cluster", "nats://a:1", "--cluster-grace", "0s"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse(&["--cluster=nats://a:1", "--cluster-grace=10s"])
            .unwrap()
            .cluster
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("shorter than --cluster-node-timeout"), "{e}");
    }
}
