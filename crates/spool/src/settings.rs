//! The spool's settings types; `strictmx-config` builds them from TOML, this crate only reads
//! them.

use std::path::PathBuf;
use std::time::Duration;

use crate::webhook::WebhookEventKind;

/// Where the spool lives and how much work one commit may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The directory holding `spool.redb`; created on open if missing.
    pub data_dir: PathBuf,
    /// The most operations the writer puts into one write transaction (one fdatasync).
    /// Zero is treated as one.
    pub commit_batch_max: usize,
    /// Bytes of database pages kept in memory (redb's page cache). Memory use does not grow with
    /// the queue beyond this.
    pub cache_size: usize,
    /// The audit trail kept in the same store (`[audit]`).
    pub audit: AuditSettings,
    /// The webhooks whose events are queued in the same store (`[[webhook]]`).
    pub webhooks: WebhookSettings,
    /// How long the ids of messages received from other strictmx nodes (`queue xfer`) are
    /// remembered, so that a repeat is answered `250` without being queued twice.
    pub transfer_memory: Duration,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            data_dir: PathBuf::from("./data"),
            commit_batch_max: 256,
            cache_size: 32 << 20,
            audit: AuditSettings::default(),
            webhooks: WebhookSettings::default(),
            transfer_memory: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Whether each recipient's final outcome and security receipt is kept after its message left
/// the queue, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    /// Write a record when a recipient becomes final. Off, nothing new is written; what is
    /// kept is still pruned after `keep` and can still be searched.
    pub enabled: bool,
    /// How long a record is kept after its recipient became final.
    pub keep: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            keep: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Which events are queued for which webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookSettings {
    pub hooks: Vec<WebhookTarget>,
}

/// One webhook, as the spool knows it: the name its queue is kept under (its URL) and the
/// events it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub name: String,
    pub events: Vec<WebhookEventKind>,
    /// The most events waiting for this webhook; beyond it the oldest is dropped.
    pub max_queued: u64,
}
