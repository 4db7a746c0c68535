//! The owner of chittyd's long-lived side tasks (signals, systemd supervision, the admin socket,
//! the metrics endpoint): each is spawned with a name, so that a task that panics, or that is
//! still running when shutdown's grace runs out, is named in the log instead of vanishing.
//!
//! Connections have their own owner, the accept loop's set (`server::accept`), because there
//! are many of them and they are reaped as they end; both are awaited in `Server::run`'s one
//! shutdown sequence.

use std::collections::HashMap;
use std::future::Future;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

/// Named tasks, tracked until they end.
#[derive(Default)]
pub(crate) struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    /// Spawns `task` under `name`.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for every task to end (they all watch the shutdown token) until `deadline`; names
    /// and aborts the ones still running then.
    pub(crate) async fn finish(mut self, deadline: Instant) {
        let waited = tokio::time::timeout_at(deadline, async {
            while let Some(ended) = self.set.join_next_with_id().await {
                self.ended(ended);
            }
        })
        .await;
        if waited.is_err() {
            let mut late: Vec<_> = self.names.values().copied().collect();
            late.sort_unstable();
            tracing::warn!(
                "tasks still running at the end of the shutdown grace: {}; aborting them",
                late.join(", ")
            );
            self.set.shutdown().await;
        }
    }

    fn ended(&mut self, ended: Result<(Id, ()), tokio::task::JoinError>) {
        let id = match &ended {
            Ok((id, ())) => *id,
            Err(e) => e.id(),
        };
        let name = self.names.remove(&id).unwrap_or("unnamed");
        if let Err(e) = ended
            && e.is_panic()
        {
            tracing::error!("the {name} task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn finish_waits_for_tasks_and_aborts_the_late_ones() {
        let mut tasks = Tasks::default();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tasks.spawn("quick", async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = done_tx.send(());
        });
        // `keep` learns that the stuck task was dropped; `_never` keeps it waiting forever.
        let (keep, dropped) = tokio::sync::oneshot::channel::<()>();
        let (_never, stuck) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("stuck", async move {
            let _held_until_aborted = dropped;
            let _ = stuck.await;
        });
        let started = tokio::time::Instant::now();
        tasks.finish(started + Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(done_rx.await.is_ok(), "the quick task ran to its end");
        assert!(keep.is_closed(), "the stuck task was aborted");
    }
}
