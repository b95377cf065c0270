//! The webhook sender: one task per `[[webhook]]` POSTs its queued events in order, signed
//! (`sign`), retrying with bounded exponential backoff, and removes an event from the spool
//! only after a 2xx answer. `reload` replaces the senders ([`Webhooks::apply`]). Delivery never waits for it: the events were queued by the commit
//! that recorded each outcome (`strictmx_spool`'s outbox).

pub mod sign;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use strictmx_config::WebhookSettings;
use strictmx_protocol::ErrorChain;
use strictmx_spool::{Spool, WebhookSettings as SpoolWebhooks};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many queued events one read takes.
const BATCH: usize = 64;
/// How often an idle sender looks for new events.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// The first wait after a failed POST; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the count of events dropped from full queues is published.
const DROPS_EVERY: Duration = Duration::from_secs(5);

/// The running senders, one per `[[webhook]]`, which `reload` replaces: a webhook added gets
/// a sender, a removed one loses its sender and its queued events, a changed one (URL,
/// secret, events, bound) gets a fresh sender. Its queue stays: nothing is lost in between.
pub struct Webhooks {
    spool: Spool,
    client: reqwest::Client,
    tracker: TaskTracker,
    token: CancellationToken,
    /// By URL: the settings each sender runs with, and its own stop.
    running: Mutex<HashMap<String, (WebhookSettings, CancellationToken)>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("Webhooks")
            .field("running", &running)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Starts one sender per webhook and the task that counts dropped events; removes the
    /// queued events of webhooks no longer configured.
    pub fn start(
        spool: &Spool,
        hooks: &[WebhookSettings],
        client: reqwest::Client,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) -> Webhooks {
        let webhooks = Webhooks {
            spool: spool.clone(),
            client,
            tracker: tracker.clone(),
            token: token.clone(),
            running: Mutex::new(HashMap::new()),
        };
        tracker.spawn(count_drops(spool.clone(), token.clone()));
        webhooks.apply(hooks);
        webhooks
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (WebhookSettings, CancellationToken)>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `hooks` in force: the spool queues their events from its next commit on, and the
    /// senders are started, stopped or restarted to match. Returns one line per change.
    pub fn apply(&self, hooks: &[WebhookSettings]) -> Vec<String> {
        self.spool.replace_webhooks(SpoolWebhooks {
            hooks: hooks.iter().map(WebhookSettings::target).collect(),
        });
        let mut changes = Vec::new();
        let mut changed = Vec::new();
        let mut running = self.lock();
        running.retain(|url, (settings, stop)| {
            let kept = hooks.contains(settings);
            if !kept {
                stop.cancel();
                match hooks.iter().any(|h| h.url == *url) {
                    true => changed.push(url.clone()),
                    false => changes.push(format!("webhook {url} removed")),
                }
            }
            kept
        });
        for hook in hooks {
            if running.contains_key(&hook.url) {
                continue;
            }
            let stop = self.token.child_token();
            let sender = Sender {
                spool: self.spool.clone(),
                hook: hook.clone(),
                client: self.client.clone(),
            };
            self.tracker.spawn(sender.run(stop.clone()));
            running.insert(hook.url.clone(), (hook.clone(), stop));
            let what = match changed.contains(&hook.url) {
                true => "changed",
                false => "added",
            };
            changes.push(format!("webhook {} {what}", hook.url));
        }
        drop(running);
        let keep: Vec<String> = hooks.iter().map(|h| h.url.clone()).collect();
        let spool = self.spool.clone();
        self.tracker.spawn(async move {
            match spool.webhook_forget(keep).await {
                Ok(0) => {}
                Ok(gone) => tracing::warn!(
                    events = gone,
                    "queued events of webhooks no longer configured removed"
                ),
                Err(e) => tracing::error!(error = %ErrorChain(&e), "queued events of removed webhooks not removed"),
            }
        });
        changes
    }
}

/// The wait after `failures` failed POSTs in a row: doubling from [`FIRST_BACKOFF`], never
/// more than [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

struct Sender {
    spool: Spool,
    hook: WebhookSettings,
    client: reqwest::Client,
}

impl Sender {
    async fn run(self, token: CancellationToken) {
        let url = self.hook.url.as_str();
        loop {
            self.publish_queued();
            let pending = match self.spool.webhook_pending(url, BATCH) {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::error!(webhook = url, error = %ErrorChain(&e), "webhook events unreadable");
                    Vec::new()
                }
            };
            if pending.is_empty() {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(POLL_EVERY) => continue,
                }
            }
            for (seq, event) in pending {
                let body = match serde_json::to_vec(&event) {
                    Ok(body) => body,
                    Err(e) => {
                        tracing::error!(webhook = url, seq, error = %e, "webhook event not encodable: dropped");
                        self.remove(seq).await;
                        continue;
                    }
                };
                if !self.send_until_accepted(seq, &body, &token).await {
                    return;
                }
                self.remove(seq).await;
            }
        }
    }

    /// POSTs `body` until a 2xx answer; `false` when shut down first.
    async fn send_until_accepted(&self, seq: u64, body: &[u8], token: &CancellationToken) -> bool {
        let url = self.hook.url.as_str();
        let mut failures = 0u32;
        loop {
            let attempt = self.post(body);
            let result = tokio::select! {
                () = token.cancelled() => return false,
                result = attempt => result,
            };
            match result {
                Ok(()) => {
                    metrics::counter!("strictmx_webhook_events_sent_total", "webhook" => url.to_owned()).increment(1);
                    return true;
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    metrics::counter!("strictmx_webhook_events_failed_total", "webhook" => url.to_owned(), "reason" => "post").increment(1);
                    tracing::warn!(webhook = url, seq, failures, error = %reason, retry_in = ?wait, "webhook POST failed");
                    tokio::select! {
                        () = token.cancelled() => return false,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn post(&self, body: &[u8]) -> Result<(), String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = sign::signature(&self.hook.secret, now, body);
        let response = self
            .client
            .post(&self.hook.url)
            .header("content-type", "application/json")
            .header(sign::HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| ErrorChain(&e).to_string())?;
        let status = response.status();
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("answered {status}")),
        }
    }

    async fn remove(&self, seq: u64) {
        if let Err(e) = self.spool.webhook_sent(&self.hook.url, seq).await {
            // Kept: it is sent again, which a receiver must tolerate after a crash anyway.
            tracing::error!(webhook = %self.hook.url, seq, error = %ErrorChain(&e), "sent webhook event not removed");
        }
    }

    fn publish_queued(&self) {
        if let Ok(queued) = self.spool.webhook_queued(&self.hook.url) {
            metrics::gauge!("strictmx_webhook_events_queued", "webhook" => self.hook.url.clone())
                .set(queued as f64);
        }
    }
}

/// Publishes the events the spool dropped from full queues (it logs each drop itself).
async fn count_drops(spool: Spool, token: CancellationToken) {
    let mut counted = 0;
    loop {
        let dropped = spool.webhook_dropped();
        if dropped > counted {
            metrics::counter!("strictmx_webhook_events_failed_total", "reason" => "dropped")
                .increment(dropped - counted);
            counted = dropped;
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(DROPS_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_one_second_and_stops_at_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
