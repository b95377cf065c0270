//! An administrator's bounce: give up on a message now and tell its sender, as NOTIFY asks.
//!
//! The queue runner bounces on remote replies and expiry; this is the same outcome on demand,
//! through the same DSN composition, for `strictmx queue bounce`. The spool removes the message
//! and queues the DSN in one transaction, so a crash can never lose the DSN of a message it
//! already removed.

use std::time::SystemTime;

use strictmx_spool::{BouncedMessage, Envelope, MessageId, RecipientState, Spool, SpoolError};

use super::QueueSettings;
use crate::dsn::{self, DsnKind, DsnRecipient, DsnRequest};
use crate::job::Diagnostic;

/// Bounces every recipient of `id` that is not final and queues the failure DSN for those
/// whose NOTIFY asks for one, in the same spool transaction. Returns how many DSNs were queued
/// (0 or 1).
pub async fn bounce_with_dsns(
    spool: &Spool,
    id: MessageId,
    settings: &QueueSettings,
) -> Result<usize, SpoolError> {
    let hostname = settings.hostname.clone();
    let full_body_limit = settings.dsn_full_body_limit;
    let (_, dsn_id) = spool
        .bounce(id, move |bounced, before| {
            failure_dsn(bounced, before, &hostname, full_body_limit)
        })
        .await?;
    if dsn_id.is_none() {
        return Ok(0);
    }
    metrics::counter!("strictmx_dsn_sent_total", "kind" => DsnKind::Failure.label()).increment(1);
    Ok(1)
}

/// The failure DSN for the recipients that were still pending before the bounce and asked for
/// one, or `None` when there are none.
fn failure_dsn(
    bounced: &BouncedMessage,
    before: &[RecipientState],
    hostname: &str,
    full_body_limit: usize,
) -> Option<(Envelope, Vec<u8>)> {
    let message = &bounced.message;
    let recipients: Vec<DsnRecipient> = message
        .envelope
        .recipients
        .iter()
        .zip(before)
        .filter(|(r, state)| {
            !state.is_final() && dsn::requested(&message.envelope, &r.params, DsnKind::Failure)
        })
        .map(|(r, _)| DsnRecipient {
            address: r.address.clone(),
            orcpt: r.params.orcpt.clone(),
            status: strictmx_protocol::status::OTHER_PERMANENT.to_string(),
            remote_mta: None,
            diagnostic: Some(Diagnostic::Local(
                "delivery was given up by the relay's administrator".to_string(),
            )),
            last_attempt: message.attempts.last().map(|a| a.at),
        })
        .collect();
    if recipients.is_empty() {
        return None;
    }
    let composed = dsn::compose(&DsnRequest {
        kind: DsnKind::Failure,
        hostname,
        original_id: message.id,
        original: &message.envelope,
        original_body: &bounced.body,
        recipients: &recipients,
        retry_until: None,
        full_body_limit,
        now: SystemTime::now(),
    });
    Some((composed.envelope, composed.body))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::{IpAddr, Ipv4Addr};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, SystemTime};

    use strictmx_protocol::{MailParams, RcptParams};
    use strictmx_spool::{
        ClientInfo, Envelope, EnvelopeRecipient, MessageKind, Spool, SpoolSettings,
    };

    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            mail_from: "sender@origin.test".to_owned(),
            params: MailParams::default(),
            recipients: vec![EnvelopeRecipient {
                address: "rcpt@far.test".to_owned(),
                params: RcptParams::default(),
            }],
            received_at: SystemTime::now(),
            client: ClientInfo {
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                helo: "client.test".to_owned(),
                auth_user: None,
                tls: None,
            },
            kind: MessageKind::Normal,
            require_tls: None,
        }
    }

    fn settings() -> QueueSettings {
        QueueSettings {
            hostname: "relay.test".to_owned(),
            ..QueueSettings::default()
        }
    }

    /// Issue 14, item 10: the old code removed the message in one commit and queued the DSN in a
    /// second. Stopping the bounce at the first moment the message is gone (as a crash would)
    /// must find the DSN already queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_bounce_stopped_once_the_message_is_gone_has_already_queued_its_dsn() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let spool = Spool::open(&SpoolSettings {
            data_dir: dir.path().join("spool"),
            ..SpoolSettings::default()
        })
        .expect("spool");
        let id = spool
            .submit(envelope(), b"Subject: hi\r\n\r\nbody\r\n".to_vec())
            .await
            .expect("submit");
        let settings = settings();
        let mut bounce = pin!(bounce_with_dsns(&spool, id, &settings));
        let mut context = Context::from_waker(Waker::noop());
        let mut finished = false;
        for _ in 0..5000 {
            if spool.message(id).expect("read").is_none() {
                break;
            }
            if let Poll::Ready(result) = bounce.as_mut().poll(&mut context) {
                result.expect("bounce");
                finished = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            finished || spool.message(id).expect("read").is_none(),
            "the bounce never committed"
        );
        let queued = spool.list().expect("list");
        assert_eq!(queued.len(), 1, "the DSN is queued: {queued:?}");
        let dsn = spool.message(queued[0].id).expect("read").expect("the DSN");
        assert_eq!(dsn.envelope.kind, MessageKind::Dsn);
        assert_eq!(dsn.envelope.recipients[0].address, "sender@origin.test");
    }

    #[tokio::test]
    async fn a_bounce_without_any_recipient_asking_for_a_dsn_queues_none() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let spool = Spool::open(&SpoolSettings {
            data_dir: dir.path().join("spool"),
            ..SpoolSettings::default()
        })
        .expect("spool");
        let mut null_sender = envelope();
        null_sender.mail_from.clear();
        let id = spool
            .submit(null_sender, b"Subject: hi\r\n\r\nbody\r\n".to_vec())
            .await
            .expect("submit");
        assert_eq!(
            bounce_with_dsns(&spool, id, &settings())
                .await
                .expect("bounce"),
            0
        );
        assert!(spool.list().expect("list").is_empty());
    }
}
