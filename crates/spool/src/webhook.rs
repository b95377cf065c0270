//! The webhook outbox: events about recipient outcomes, queued per webhook in the same write
//! transaction that records the outcome, so a crash loses none and delivery never waits for a
//! webhook. Each webhook's queue is bounded; beyond the bound the oldest event is dropped.
//!
//! This module builds the events and keeps their table; sending them (HTTP, signing, retries)
//! is left to the binary, which removes an event once its endpoint accepted it.

use std::time::SystemTime;

use redb::{ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::audit::{SecurityReceipt, receipt};
use crate::id::MessageId;
use crate::store::EnvelopeRecord;
use crate::time;
use crate::types::{AttemptRecord, RecipientState};

/// (webhook name, sequence) → JSON [`WebhookEvent`], oldest first per webhook.
pub(crate) const EVENTS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("webhook_events");

/// `meta` key: the sequence number the next event gets (shared by every webhook).
const META_NEXT: &str = "webhook_next";
/// `meta` key prefix: how many events wait for the webhook named after it.
const META_LEN: &str = "webhook_len:";

/// What became of a recipient, as a webhook is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEventKind {
    /// The next hop accepted the message for this recipient.
    Delivered,
    /// An attempt failed transiently; the recipient stays queued.
    Deferred,
    /// The recipient failed permanently (or its queue lifetime ran out).
    Bounced,
    /// A delivery status notification (RFC 3464) was queued to the sender.
    Expanded,
    /// An administrator deleted the message: no delivery, no report to the sender.
    Deleted,
}

impl WebhookEventKind {
    pub const ALL: [WebhookEventKind; 5] = [
        WebhookEventKind::Delivered,
        WebhookEventKind::Deferred,
        WebhookEventKind::Bounced,
        WebhookEventKind::Expanded,
        WebhookEventKind::Deleted,
    ];

    /// The name in JSON and in `[[webhook]] events`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventKind::Delivered => "delivered",
            WebhookEventKind::Deferred => "deferred",
            WebhookEventKind::Bounced => "bounced",
            WebhookEventKind::Expanded => "expanded",
            WebhookEventKind::Deleted => "deleted",
        }
    }
}

/// One event, as POSTed to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub event: WebhookEventKind,
    /// The spool's id of the message, as 16 hex digits (for `expanded`: the DSN's).
    #[serde(with = "crate::id::hex")]
    pub queue_id: MessageId,
    /// The `Message-ID:` field as the message carried it, if it had one.
    pub message_id: Option<String>,
    /// The envelope sender; `""` is the null sender.
    pub sender: String,
    pub recipient: String,
    #[serde(with = "time::millis")]
    pub at: SystemTime,
    /// The next hop's reply, or why strictmx gave up.
    pub reply: String,
    /// The enhanced status code of a bounce (RFC 3463).
    pub status: Option<String>,
    /// The security of the attempt that led to the event; `None` when none was made.
    pub receipt: Option<SecurityReceipt>,
}

/// The event a recipient's new state stands for, if any: `delivered` or `bounced` when it
/// became final, `deferred` when an attempt in `attempts` left it queued.
pub(crate) fn event_for(
    id: MessageId,
    stored: &EnvelopeRecord,
    index: usize,
    before: &RecipientState,
    after: &RecipientState,
    attempts: &[AttemptRecord],
    now: SystemTime,
) -> Option<WebhookEvent> {
    let deciding = attempts
        .iter()
        .rev()
        .find(|a| a.recipients.contains(&index));
    let (event, reply, status) = match after {
        _ if before.is_final() => return None,
        RecipientState::Delivered { reply, .. } => {
            (WebhookEventKind::Delivered, reply.clone(), None)
        }
        RecipientState::Bounced { reply, status, .. } => (
            WebhookEventKind::Bounced,
            reply.clone(),
            Some(status.clone()),
        ),
        RecipientState::Queued { .. } | RecipientState::Held { .. } => {
            (WebhookEventKind::Deferred, deciding?.reply.clone(), None)
        }
    };
    let envelope = &stored.envelope;
    Some(WebhookEvent {
        event,
        queue_id: id,
        message_id: stored.message_id.clone(),
        sender: envelope.mail_from.clone(),
        recipient: envelope.recipients.get(index)?.address.clone(),
        at: now,
        reply,
        status,
        receipt: deciding.map(receipt),
    })
}

/// The `expanded` events of a DSN just queued: one per recipient of the report.
pub(crate) fn expanded(
    id: MessageId,
    stored: &EnvelopeRecord,
    now: SystemTime,
) -> Vec<WebhookEvent> {
    let envelope = &stored.envelope;
    envelope
        .recipients
        .iter()
        .map(|r| WebhookEvent {
            event: WebhookEventKind::Expanded,
            queue_id: id,
            message_id: stored.message_id.clone(),
            sender: envelope.mail_from.clone(),
            recipient: r.address.clone(),
            at: now,
            reply: String::new(),
            status: None,
            receipt: None,
        })
        .collect()
}

/// The `deleted` events of a message an administrator deleted: one per recipient in `indexes`
/// (those not yet final).
pub(crate) fn deleted(
    id: MessageId,
    stored: &EnvelopeRecord,
    indexes: &[usize],
    now: SystemTime,
) -> Vec<WebhookEvent> {
    let envelope = &stored.envelope;
    indexes
        .iter()
        .filter_map(|&index| envelope.recipients.get(index))
        .map(|r| WebhookEvent {
            event: WebhookEventKind::Deleted,
            queue_id: id,
            message_id: stored.message_id.clone(),
            sender: envelope.mail_from.clone(),
            recipient: r.address.clone(),
            at: now,
            reply: "deleted by an administrator".to_owned(),
            status: None,
            receipt: None,
        })
        .collect()
}

type Events<'t> = Table<'t, (&'static str, u64), &'static [u8]>;
type Meta<'t> = Table<'t, &'static str, u64>;

fn meta_value(meta: &Meta<'_>, key: &str) -> Result<u64, redb::StorageError> {
    Ok(meta.get(key)?.map_or(0, |v| v.value()))
}

/// How many events wait for `hook`, read in a read transaction.
pub(crate) fn queued_read(
    meta: &impl ReadableTable<&'static str, u64>,
    hook: &str,
) -> Result<u64, redb::StorageError> {
    Ok(meta
        .get(format!("{META_LEN}{hook}").as_str())?
        .map_or(0, |v| v.value()))
}

/// Appends one event to `hook`'s queue; when that makes it longer than `max`, drops its
/// oldest and returns how many were dropped.
pub(crate) fn append(
    events: &mut Events<'_>,
    meta: &mut Meta<'_>,
    hook: &str,
    bytes: &[u8],
    max: u64,
) -> Result<u64, redb::StorageError> {
    let seq = meta_value(meta, META_NEXT)?;
    events.insert((hook, seq), bytes)?;
    meta.insert(META_NEXT, seq.saturating_add(1))?;
    let len_key = format!("{META_LEN}{hook}");
    let mut len = meta_value(meta, &len_key)?.saturating_add(1);
    let mut dropped = 0;
    while len > max.max(1) {
        let Some(oldest) = events.range((hook, 0)..=(hook, u64::MAX))?.next() else {
            break;
        };
        let key = oldest?.0.value().1;
        events.remove((hook, key))?;
        len -= 1;
        dropped += 1;
    }
    meta.insert(len_key.as_str(), len)?;
    Ok(dropped)
}

/// Removes the event `seq` of `hook`; returns whether it was there.
pub(crate) fn remove(
    events: &mut Events<'_>,
    meta: &mut Meta<'_>,
    hook: &str,
    seq: u64,
) -> Result<bool, redb::StorageError> {
    let removed = events.remove((hook, seq))?.is_some();
    if removed {
        let len_key = format!("{META_LEN}{hook}");
        let len = meta_value(meta, &len_key)?.saturating_sub(1);
        meta.insert(len_key.as_str(), len)?;
    }
    Ok(removed)
}

/// Removes every event queued for a webhook not named in `keep`, with its count; returns how
/// many events went.
pub(crate) fn forget(
    events: &mut Events<'_>,
    meta: &mut Meta<'_>,
    keep: &[String],
) -> Result<u64, redb::StorageError> {
    let mut gone: Vec<(String, u64)> = Vec::new();
    for entry in events.iter()? {
        let (key, _) = entry?;
        let (hook, seq) = key.value();
        if !keep.iter().any(|k| k == hook) {
            gone.push((hook.to_owned(), seq));
        }
    }
    let mut hooks: Vec<&str> = gone.iter().map(|(hook, _)| hook.as_str()).collect();
    hooks.dedup();
    for hook in hooks {
        meta.remove(format!("{META_LEN}{hook}").as_str())?;
    }
    for (hook, seq) in &gone {
        events.remove((hook.as_str(), *seq))?;
    }
    Ok(gone.len() as u64)
}
