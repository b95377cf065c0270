//! Draining a node (`serve --drain [--to HOST:PORT]`, `strictmx drain` on a running one): the
//! listeners close (the control socket stays), every queued recipient is due at once and its
//! destination's backoff forgotten, and once the queue runner has had its go at them, what is
//! left is transferred to the other node when one is given (`xfer`). The server exits, with
//! 0, when the queue is empty; progress is logged every few seconds, held messages by name
//! since only an administrator can move them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use strictmx_delivery::runner::RunnerHandle;
use strictmx_spool::Spool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::reload::ServerTransport;

/// How often the drain looks at the queue.
const TICK: Duration = Duration::from_secs(1);
/// How often it logs where it stands.
const PROGRESS: Duration = Duration::from_secs(10);
/// After a transfer that left messages behind, how long before the next one.
const TRANSFER_PAUSE: Duration = Duration::from_secs(15);

/// A drain that has been asked for, and where to transfer what delivery cannot take now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub to: Option<String>,
}

/// Starts the drain of the running server (`strictmx drain`); cheap to clone.
#[derive(Debug, Clone)]
pub struct DrainHandle {
    orders: Arc<watch::Sender<Option<Order>>>,
}

impl DrainHandle {
    /// A handle, and what the drain task watches; `initial` is `serve --drain`'s order.
    pub fn new(initial: Option<Order>) -> (DrainHandle, watch::Receiver<Option<Order>>) {
        let (orders, watched) = watch::channel(initial);
        (
            DrainHandle {
                orders: Arc::new(orders),
            },
            watched,
        )
    }

    /// Starts draining, or, when it already runs, sets where the rest is transferred (a `to`
    /// given later replaces the earlier one; none keeps it).
    pub fn start(&self, to: Option<String>) -> Value {
        let mut was = None;
        self.orders.send_modify(|order| {
            was = order.clone();
            let to = to.or_else(|| order.as_ref().and_then(|o| o.to.clone()));
            *order = Some(Order { to });
        });
        let now = self.orders.borrow().clone();
        json!({
            "already_draining": was.is_some(),
            "to": now.and_then(|o| o.to),
        })
    }
}

/// What the drain works with.
#[derive(Debug)]
pub struct Drain {
    pub spool: Spool,
    pub runner: RunnerHandle,
    pub transport: Arc<ServerTransport>,
    /// Cancelled to close the listeners.
    pub listeners: CancellationToken,
    /// Cancelled once the queue is empty: the server then stops.
    pub drained: CancellationToken,
}

impl Drain {
    /// Waits for an order, then drains until the queue is empty or `shutdown`.
    pub async fn run(
        self,
        mut orders: watch::Receiver<Option<Order>>,
        shutdown: CancellationToken,
    ) {
        let waited = tokio::select! {
            () = shutdown.cancelled() => return,
            waited = orders.wait_for(Option::is_some) => waited.map(|o| o.clone()),
        };
        let Ok(Some(order)) = waited else { return };
        info!(
            to = order.to.as_deref().unwrap_or(""),
            "draining: the listeners close, no new mail is accepted; delivering what can be delivered now"
        );
        self.listeners.cancel();
        let cleared = self.runner.clear_backoff(None).await;
        match self.spool.retry_all().await {
            Ok(due) => info!(
                due,
                backoffs_cleared = cleared,
                "draining: every queued recipient is due now"
            ),
            Err(e) => {
                warn!(error = %strictmx_protocol::ErrorChain(&e), "draining: cannot make the queue due now; it drains on its schedule")
            }
        }
        let mut last_progress = Instant::now();
        let mut next_transfer = Instant::now();
        loop {
            let stats = self.spool.stats();
            if stats.messages == 0 {
                info!("drained: the queue is empty; stopping");
                self.drained.cancel();
                return;
            }
            if last_progress.elapsed() >= PROGRESS {
                last_progress = Instant::now();
                info!(
                    messages = stats.messages,
                    queued = stats.recipients_queued,
                    held = stats.held,
                    "draining"
                );
                if stats.held > 0 {
                    warn!(
                        held = stats.held,
                        "draining: held recipients wait for an administrator: release, delete or bounce them (strictmx queue list)"
                    );
                }
            }
            let to = orders.borrow().as_ref().and_then(|o| o.to.clone());
            if let Some(to) = to
                && Instant::now() >= next_transfer
                && self.delivery_had_its_go()
            {
                let pause = self.transfer_rest(&to).await;
                next_transfer = Instant::now() + pause;
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
                _ = orders.changed() => next_transfer = Instant::now(),
            }
        }
    }

    /// Whether the queue runner has taken everything that was due: nothing is due now that
    /// it has not leased.
    fn delivery_had_its_go(&self) -> bool {
        self.spool
            .next_due()
            .is_none_or(|due| due > SystemTime::now())
    }

    /// Transfers every queued message to `to`; returns how long to wait before the next try:
    /// a moment when only messages in delivery were left out, longer after a failure.
    async fn transfer_rest(&self, to: &str) -> Duration {
        let ids: Vec<_> = match self.spool.list() {
            Ok(entries) => entries.iter().map(|entry| entry.id).collect(),
            Err(e) => {
                warn!(error = %strictmx_protocol::ErrorChain(&e), "draining: cannot list the queue");
                return TRANSFER_PAUSE;
            }
        };
        info!(
            to,
            messages = ids.len(),
            "draining: transferring what is left to another node"
        );
        match crate::xfer::transfer(&self.spool, &self.transport, to, &ids).await {
            Ok(done)
                if done.stopped.is_none() && done.kept.is_empty() && done.refused.is_empty() =>
            {
                TICK
            }
            Ok(_) => TRANSFER_PAUSE,
            Err(e) => {
                warn!(
                    to,
                    error = format!("{e:#}"),
                    "draining: transfer failed; trying again shortly"
                );
                TRANSFER_PAUSE
            }
        }
    }
}
