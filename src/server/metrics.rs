//! The Prometheus endpoint (`--metrics-listen`): every figure of the [`Snapshot`] in the text
//! exposition format, each named `chitty_` + its snapshot name.

use super::listen::Listeners;
use super::stats::{EdgeStats, snapshot};
use crate::cluster::replication::ReplicationStats;
use crate::hub::Hub;
use crate::metric::{Kind, Snapshot};
use std::fmt::Write as _;
use std::future::IntoFuture;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The whole exposition.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    for m in &s.metrics {
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(
            out,
            "# HELP chitty_{name} {help}\n# TYPE chitty_{name} {kind}\nchitty_{name} {value}",
            name = m.name,
            help = m.help,
            value = m.value
        );
    }
    for h in &s.histograms {
        let name = h.name;
        let _ = writeln!(
            out,
            "# HELP chitty_{name} {}\n# TYPE chitty_{name} histogram",
            h.help
        );
        for (bound, count) in &h.buckets {
            let le = if bound.is_infinite() {
                "+Inf".to_owned()
            } else {
                bound.to_string()
            };
            let _ = writeln!(out, "chitty_{name}_bucket{{le=\"{le}\"}} {count}");
        }
        let count = h.buckets.last().map_or(0, |(_, c)| *c);
        let _ = writeln!(
            out,
            "chitty_{name}_sum {}\nchitty_{name}_count {count}",
            h.sum
        );
    }
    out
}

/// Serves `GET /metrics` on every socket of `listeners` until `stop` fires; `cluster` holds the
/// replication's figures, with `--cluster`.
pub async fn serve(
    listeners: Listeners,
    hub: Arc<Hub>,
    edge: Arc<EdgeStats>,
    cluster: Option<Arc<ReplicationStats>>,
    stop: CancellationToken,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = render(&snapshot(&hub, &edge, cluster.as_deref()));
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    for addr in listeners.local_addrs() {
        tracing::info!("Prometheus metrics on http://{addr}/metrics");
    }
    let each = listeners.into_inner().into_iter().map(|listener| {
        axum::serve(listener, app.clone())
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future()
    });
    for ended in futures_util::future::join_all(each).await {
        if let Err(e) = ended {
            tracing::error!("metrics endpoint failed: {e}");
        }
    }
}
