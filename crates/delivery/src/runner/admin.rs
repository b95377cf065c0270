//! An administrator's bounce: give up on a message now and tell its sender, as NOTIFY asks.
//!
//! The queue runner bounces on remote replies and expiry; this is the same outcome on demand,
//! through the same DSN composition, for `strictmx queue bounce`.

use std::time::SystemTime;

use strictmx_spool::{MessageId, Spool, SpoolError};

use super::QueueSettings;
use crate::dsn::{self, DsnKind, DsnRecipient, DsnRequest};
use crate::job::Diagnostic;

/// Bounces every recipient of `id` that is not final yet and queues the failure DSN for those
/// whose NOTIFY asks for one. Returns how many DSNs were queued (0 or 1).
pub async fn bounce_with_dsns(
    spool: &Spool,
    id: MessageId,
    settings: &QueueSettings,
) -> Result<usize, SpoolError> {
    let pending: Vec<bool> = spool
        .message(id)?
        .map(|m| m.states.iter().map(|s| !s.is_final()).collect())
        .unwrap_or_default();
    let bounced = spool.bounce(id).await?;
    let message = &bounced.message;
    let now = SystemTime::now();
    let recipients: Vec<DsnRecipient> = message
        .envelope
        .recipients
        .iter()
        .zip(&pending)
        .filter(|(r, was_pending)| {
            **was_pending && dsn::requested(&message.envelope, &r.params, DsnKind::Failure)
        })
        .map(|(r, _)| DsnRecipient {
            address: r.address.clone(),
            orcpt: r.params.orcpt.clone(),
            status: "5.0.0".to_string(),
            remote_mta: None,
            diagnostic: Some(Diagnostic::Local(
                "delivery was given up by the relay's administrator".to_string(),
            )),
            last_attempt: message.attempts.last().map(|a| a.at),
        })
        .collect();
    if recipients.is_empty() {
        return Ok(0);
    }
    let composed = dsn::compose(&DsnRequest {
        kind: DsnKind::Failure,
        hostname: &settings.hostname,
        original_id: id,
        original: &message.envelope,
        original_body: &bounced.body,
        recipients: &recipients,
        retry_until: None,
        full_body_limit: settings.dsn_full_body_limit,
        now,
    });
    spool.submit(composed.envelope, composed.body).await?;
    metrics::counter!("strictmx_dsn_sent_total", "kind" => DsnKind::Failure.label()).increment(1);
    Ok(1)
}
