//! The acceptance path every submission takes before the spool commit, whatever carried it
//! (SMTP DATA or the HTTP API): the size and line-length limits, the memory budget, loop
//! detection (RFC 5321 §6.3), the `Received:` trace field, `Message-ID:`/`Date:`, DKIM signing,
//! the envelope with the submitter's TLS floor, then the queue, and one log line and metric per
//! outcome. Reading the content and answering the client are the caller's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use strictmx_protocol::{ErrorChain, MailParams};
use strictmx_spool::{
    ClientInfo, Envelope, EnvelopeRecipient, IdempotencyKey, MessageId, MessageKind, Submitted,
    TlsFloor, format_id,
};
use tracing::{error, info, warn};

use crate::dkim::Signing;
use crate::headers::{self, Trace};
use crate::queue::{Queue, QueueError};
use crate::server::Shared;

/// One message on its way to the queue: the envelope as the submitter gave it and the content
/// as read, with CRLF line ends.
#[derive(Debug)]
pub struct Submission {
    pub from: String,
    pub params: MailParams,
    pub recipients: Vec<EnvelopeRecipient>,
    pub client: ClientInfo,
    /// The `with` clause of `Received:` (RFC 3848: `ESMTPSA`, ...; `HTTPS` for the HTTP API).
    pub protocol: String,
    /// The submitter's TLS floor (a user's or an HTTP request's); never lowers the plan.
    pub require_tls: Option<TlsFloor>,
    pub content: Vec<u8>,
    /// An idempotency key, the request's fingerprint and the answer to remember with it (HTTP
    /// API only).
    pub once: Option<IdempotencyKey>,
    /// The transfer id another strictmx node sent the message under (`TRANSID`, SMTP from a
    /// trusted client only): recipients already received under it are not queued again.
    pub transfer: Option<String>,
}

/// Why a submission was not queued; the caller turns it into a reply or a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than `[limits] max_message_size` (RFC 1870 §6.3).
    TooBig,
    /// A line longer than 998 octets plus CRLF (RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6).
    LongLine,
    /// More `Received:` fields than `[limits] max_received_headers` (RFC 5321 §6.3).
    Loop { hops: usize },
    /// The memory budget for content in flight is spent: try again later.
    Memory,
    /// The queue cannot take it now: try again later.
    QueueBusy,
    /// The queue failed.
    QueueFailed,
}

impl Refusal {
    /// The metric reason and log outcome.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooBig => "size",
            Refusal::LongLine => "line_length",
            Refusal::Loop { .. } => "loop",
            Refusal::Memory => "memory",
            Refusal::QueueBusy => "queue_unavailable",
            Refusal::QueueFailed => "queue_error",
        }
    }
}

/// What the queue answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Committed under this id.
    Queued(MessageId),
    /// The idempotency key was used before: its first answer; nothing was queued.
    Repeat(Vec<u8>),
    /// The idempotency key was used before for another request; nothing was queued.
    KeyReused,
    /// Every recipient was received under this transfer id before; nothing was queued.
    TransferRepeat(String),
}

/// The acceptance path of a running [`crate::Inbound`], for submissions that do not come over
/// SMTP: it shares the listeners' limits, memory budget, DKIM keys and users.
pub struct Acceptor<Q: Queue> {
    shared: Arc<Shared<Q>>,
}

impl<Q: Queue> Clone for Acceptor<Q> {
    fn clone(&self) -> Self {
        Acceptor {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Q: Queue> std::fmt::Debug for Acceptor<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").finish_non_exhaustive()
    }
}

impl<Q: Queue> Acceptor<Q> {
    pub(crate) fn new(shared: Arc<Shared<Q>>) -> Acceptor<Q> {
        Acceptor { shared }
    }

    /// The id the message will be stored under, for its `Received:` field and its answer.
    pub fn reserve_id(&self) -> MessageId {
        self.shared.queue.reserve_id()
    }

    /// The queue this server submits to.
    pub fn queue(&self) -> &Q {
        &self.shared.queue
    }

    /// This host's name, as in `Received:`.
    pub fn hostname(&self) -> &str {
        &self.shared.settings.hostname
    }

    /// Largest message in octets (`[limits] max_message_size`).
    pub fn max_message_size(&self) -> u64 {
        self.shared.settings.limits.max_message_size
    }

    /// The server certificate in force now (reloads included); `None` without `[tls]`.
    pub fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.shared.tls()
    }

    /// Checks content that was read whole (not through SMTP's DATA reader) against the size
    /// and line limits and the memory budget, then takes the path SMTP DATA takes.
    pub async fn accept(&self, id: MessageId, submission: Submission) -> Result<Accepted, Refusal> {
        let refusal = content_refusal(&submission.content, self.max_message_size());
        let mut reservation = self.shared.body_budget.reservation();
        let refusal = refusal
            .or_else(|| (!reservation.grow(submission.content.len())).then_some(Refusal::Memory));
        if let Some(refusal) = refusal {
            return Err(refused(submission.client.ip, refusal));
        }
        let accepted = accept(&self.shared, id, submission).await;
        drop(reservation);
        accepted
    }
}

/// What makes content refused before anything else is looked at.
fn content_refusal(content: &[u8], max_size: u64) -> Option<Refusal> {
    if content.len() as u64 > max_size {
        return Some(Refusal::TooBig);
    }
    let longest = content
        .split(|&b| b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    // 998 octets and CR; the LF was the separator.
    (longest > strictmx_protocol::MAX_LINE - 1).then_some(Refusal::LongLine)
}

/// Logs and counts a refusal; returns it.
pub(crate) fn refused(ip: IpAddr, refusal: Refusal) -> Refusal {
    match refusal {
        Refusal::Loop { hops } => {
            warn!(%ip, hops, outcome = "loop", "message refused: too many Received: fields");
        }
        Refusal::QueueBusy | Refusal::QueueFailed => {}
        other => info!(%ip, outcome = other.reason(), "message refused"),
    }
    metrics::counter!("strictmx_messages_rejected_total", "reason" => refusal.reason())
        .increment(1);
    refusal
}

/// The path shared by SMTP DATA and the HTTP API, once the content is read and within limits:
/// loop detection, trace and DKIM, the envelope, the queue. The memory the content holds is
/// the caller's to give back once this returns.
pub(crate) async fn accept<Q: Queue>(
    shared: &Shared<Q>,
    id: MessageId,
    submission: Submission,
) -> Result<Accepted, Refusal> {
    let ip = submission.client.ip;
    let hops = headers::received_count(&submission.content);
    if hops > shared.settings.limits.max_received_headers {
        return Err(refused(ip, Refusal::Loop { hops }));
    }
    let now = SystemTime::now();
    let queue_id = format_id(id);
    let trace = Trace {
        helo: &submission.client.helo,
        ip,
        hostname: &shared.settings.hostname,
        protocol: submission.protocol,
        tls: submission.client.tls.as_deref(),
        queue_id: &queue_id,
        now,
    };
    let (body, signing) = headers::prepare(submission.content, &trace, &shared.dkim());
    let size = body.len();
    let rcpt_count = submission.recipients.len();
    let from = submission.from.clone();
    let user = submission.client.auth_user.clone().unwrap_or_default();
    let tls = submission.client.tls.clone();
    let envelope = Envelope {
        mail_from: submission.from,
        params: submission.params,
        recipients: submission.recipients,
        received_at: now,
        client: submission.client,
        kind: MessageKind::Normal,
        require_tls: submission.require_tls,
    };
    let dkim = signing_outcome(ip, signing);
    let queued = match (submission.once, submission.transfer) {
        (Some(once), _) => shared.queue.submit_once(id, envelope, body, once).await,
        (None, Some(transfer)) => {
            match shared
                .queue
                .submit_transfer(id, transfer.clone(), envelope, body)
                .await
            {
                Ok(receipt) => {
                    info!(%ip, transfer = %transfer, repeated = receipt.repeated, queued = receipt.id.map(format_id).unwrap_or_default(), "transfer from another node received");
                    match receipt.id {
                        Some(id) => Ok(Submitted::New(id)),
                        None => return Ok(Accepted::TransferRepeat(transfer)),
                    }
                }
                Err(failure) => Err(failure),
            }
        }
        (None, None) => shared
            .queue
            .submit(id, envelope, body)
            .await
            .map(Submitted::New),
    };
    match queued {
        Ok(Submitted::New(id)) => {
            info!(
                msg_id = %format_id(id),
                %ip,
                user,
                from = %from,
                rcpt_count,
                size,
                tls = tls.as_deref().unwrap_or("none"),
                dkim,
                outcome = "queued",
                "message accepted"
            );
            metrics::counter!("strictmx_messages_accepted_total").increment(1);
            Ok(Accepted::Queued(id))
        }
        Ok(Submitted::Repeat(answer)) => {
            info!(%ip, user, from = %from, outcome = "repeat", "idempotent repeat: nothing queued");
            Ok(Accepted::Repeat(answer))
        }
        Ok(Submitted::Reused) => {
            warn!(%ip, user, from = %from, outcome = "key_reused", "idempotency key already used for another request: nothing queued");
            Ok(Accepted::KeyReused)
        }
        Err(failure) if failure.is_transient() => {
            warn!(%ip, error = %ErrorChain(&failure), outcome = "deferred", "queue cannot take the message now");
            Err(refused(ip, Refusal::QueueBusy))
        }
        Err(failure) => {
            error!(%ip, error = %ErrorChain(&failure), outcome = "deferred", "queue failed");
            Err(refused(ip, Refusal::QueueFailed))
        }
    }
}

/// Logs a signing failure and counts every outcome; returns the outcome's name for the
/// acceptance record. A message whose signing failed is still accepted, unsigned: it is
/// otherwise fine, and refusing it would stop all of that domain's mail over a key problem
/// that only the operator can fix (docs/inbound.md, "DKIM signing").
fn signing_outcome(ip: IpAddr, signing: Signing) -> &'static str {
    let outcome = match signing {
        Signing::NoKey => "none",
        Signing::Signed(_) => "signed",
        Signing::Failed(failure) => {
            error!(%ip, error = %ErrorChain(&failure), "dkim signing failed; the message is accepted unsigned");
            "failed"
        }
    };
    metrics::counter!("strictmx_dkim_signing_total", "outcome" => outcome).increment(1);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 5322 §2.1.1: 998 octets plus CRLF per line; RFC 1870: the size limit.
    #[test]
    fn content_is_refused_for_size_and_for_a_line_over_998_octets() {
        let line = |n: usize| {
            let mut c = vec![b'a'; n];
            c.extend_from_slice(b"\r\n");
            c
        };
        let cases: &[(Vec<u8>, u64, Option<Refusal>)] = &[
            (line(998), 10_000, None),
            (line(999), 10_000, Some(Refusal::LongLine)),
            (line(10), 5, Some(Refusal::TooBig)),
            (b"Subject: x\r\n\r\nbody".to_vec(), 100, None),
        ];
        for (content, max, expected) in cases {
            assert_eq!(
                content_refusal(content, *max),
                *expected,
                "{}",
                content.len()
            );
        }
    }
}
