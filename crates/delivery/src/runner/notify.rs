//! The DSNs one message's outcomes call for: an entry per recipient whose sender asked for that
//! kind (RFC 3461 §4.1), with the per-recipient fields RFC 3464 §2.3 names, and one request per
//! kind to compose.
//!
//! What each recipient's outcome calls for is `transition`'s, the DSN text `dsn`'s; queueing the
//! DSN is `settle`'s.

use std::collections::HashMap;
use std::time::SystemTime;

use super::QueueSettings;
use super::transition::Notice;
use crate::dsn::{self, DsnKind, DsnRecipient, DsnRequest};
use crate::job::{JobMessage, JobRecipient};

/// The order DSNs of one message are queued in.
pub(super) const KINDS: [DsnKind; 3] = [DsnKind::Failure, DsnKind::Delay, DsnKind::Success];

/// The DSN entries of one message by kind, each with the position of its recipient's update.
pub(super) type Entries = HashMap<DsnKind, Vec<(usize, DsnRecipient)>>;

/// The entry `notice` adds to a DSN about `recipient` of `message`, when the sender asked for
/// DSNs of its kind; `None` otherwise.
pub(super) fn entry(
    message: &JobMessage,
    recipient: &JobRecipient,
    notice: Notice,
    now: SystemTime,
) -> Option<(DsnKind, DsnRecipient)> {
    let envelope = &message.envelope;
    let params = envelope
        .recipients
        .get(recipient.index)
        .map(|r| r.params.clone())
        .unwrap_or_default();
    if !dsn::requested(envelope, &params, notice.kind) {
        return None;
    }
    // RFC 3464 §2.3: Final-Recipient, Original-Recipient (from ORCPT), Status, Remote-MTA,
    // Diagnostic-Code and Last-Attempt-Date.
    let entry = DsnRecipient {
        address: recipient.address.clone(),
        orcpt: params.orcpt,
        status: notice.status,
        remote_mta: notice.remote_mta,
        diagnostic: Some(notice.diagnostic),
        last_attempt: Some(now),
    };
    Some((notice.kind, entry))
}

/// The DSN of `kind` about `recipients` of `message`, to compose.
pub(super) fn request<'a>(
    kind: DsnKind,
    message: &'a JobMessage,
    recipients: &'a [DsnRecipient],
    settings: &'a QueueSettings,
    now: SystemTime,
) -> DsnRequest<'a> {
    DsnRequest {
        kind,
        hostname: &settings.hostname,
        original_id: message.id,
        original: &message.envelope,
        original_body: &message.body,
        recipients,
        // RFC 3464 §2.3.9: Will-Retry-Until, the end of the queue lifetime.
        retry_until: Some(settings.retry.retry_until(message.envelope.received_at)),
        full_body_limit: settings.dsn_full_body_limit,
        now,
    }
}

#[cfg(test)]
mod tests;
