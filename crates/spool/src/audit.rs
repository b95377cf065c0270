//! The audit trail: what became of each recipient and the security it got, kept after its
//! message left the queue. A record is written in the same write transaction that makes the
//! recipient final (and that deletes the message), so the queue and the trail never disagree;
//! records older than the retention window are pruned a small batch at a time on later
//! commits.
//!
//! This module holds the record and the query types and builds a record from what the spool
//! stores; the tables and their upkeep are `table`'s, the reads `query`'s, finding the
//! `Message-ID:` field `message_id`'s. Printing records is left to the binary.

mod message_id;
mod query;
pub(crate) mod table;

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use strictmx_protocol::{ascii_domain, domains_equal, status};

use crate::id::MessageId;
use crate::store::EnvelopeRecord;
use crate::time::{self, unix_millis};
use crate::types::{
    AttemptOutcome, AttemptRecord, ClientInfo, MessageKind, PeerAuth, RecipientState,
};

pub(crate) use message_id::message_id_header;
pub use message_id::message_id_key;

/// One recipient's final outcome and its security receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The spool's id of the message, as 16 hex digits.
    #[serde(with = "crate::id::hex")]
    pub queue_id: MessageId,
    /// The recipient's position in the envelope.
    pub index: u32,
    /// The `Message-ID:` field as the message carried it, angle brackets included.
    pub message_id: Option<String>,
    pub kind: MessageKind,
    /// The envelope sender; `""` is the null sender.
    pub sender: String,
    pub recipient: String,
    /// The recipient's domain, lowercased.
    pub domain: String,
    /// Who submitted the message: address, HELO, SMTP AUTH user, TLS.
    pub submitter: ClientInfo,
    #[serde(with = "time::secs")]
    pub received_at: SystemTime,
    /// When the recipient became final.
    #[serde(with = "time::millis")]
    pub final_at: SystemTime,
    pub outcome: AuditOutcome,
    /// The enhanced status code of a bounce (RFC 3463).
    pub status: Option<String>,
    /// The next hop's last reply, or why strictmx gave up.
    pub reply: String,
    /// The security of the attempt that decided the outcome; `None` when no attempt was made.
    pub receipt: Option<SecurityReceipt>,
    pub requiretls: RequireTlsReceipt,
    /// The submitter's TLS floor for the message, if it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_tls: Option<crate::TlsFloor>,
    /// Every attempt for this recipient, oldest first.
    pub attempts: Vec<AuditAttempt>,
    /// The id of the node that wrote the record; absent in records older than node ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// How a recipient left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Delivered,
    /// A permanent failure, or a policy that forbids delivery.
    Bounced,
    /// Bounced with 5.4.7 (RFC 3463 §3.5): the queue lifetime ran out.
    Expired,
    /// `strictmx queue bounce`.
    AdminBounced,
    /// `strictmx queue delete`: dropped without a DSN.
    Deleted,
}

impl AuditOutcome {
    pub const ALL: [AuditOutcome; 5] = [
        AuditOutcome::Delivered,
        AuditOutcome::Bounced,
        AuditOutcome::Expired,
        AuditOutcome::AdminBounced,
        AuditOutcome::Deleted,
    ];

    /// The name in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Delivered => "delivered",
            AuditOutcome::Bounced => "bounced",
            AuditOutcome::Expired => "expired",
            AuditOutcome::AdminBounced => "admin_bounced",
            AuditOutcome::Deleted => "deleted",
        }
    }
}

/// The security of one delivery attempt, as the attempt record has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityReceipt {
    #[serde(with = "time::millis")]
    pub at: SystemTime,
    pub mx: Option<String>,
    pub ip: Option<IpAddr>,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    pub cert_verified: Option<bool>,
    /// How the peer was authenticated: `dane`, `sts`, `webpki` or `none`.
    pub auth: PeerAuth,
    /// The plan's policy label (`dane`, `sts-enforce`, `default-opportunistic`, ...).
    pub policy: String,
    /// The `[[rule]]`s that matched, in file order.
    pub rules: Vec<String>,
    /// The TLS requirement the host had to meet (`opportunistic`, `encrypted`, `verified`,
    /// `dane`).
    pub requirement: Option<String>,
    /// For a failure of the TLS policy: its RFC 8460 §4.3 result type.
    pub result_type: Option<String>,
    /// The expiring exceptions (`[[rule]] expires`) that applied to this attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<crate::ExceptionUse>,
}

/// Whether the sender asked for REQUIRETLS (RFC 8689) and got it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequireTlsReceipt {
    pub requested: bool,
    /// Requested and delivered: such a message is delivered only to an authenticated MX host
    /// over verified TLS that offers REQUIRETLS itself (RFC 8689 §4), and bounced otherwise.
    pub honoured: bool,
}

/// One attempt for the recipient, in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAttempt {
    #[serde(with = "time::millis")]
    pub at: SystemTime,
    pub mx: Option<String>,
    pub ip: Option<IpAddr>,
    pub tls_version: Option<String>,
    pub auth: PeerAuth,
    pub outcome: AttemptOutcome,
    pub reply: String,
    pub result_type: Option<String>,
    pub duration_ms: u64,
}

/// Which records `Spool::audit_search` returns: every condition that is set must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Final at or after this time.
    pub since: Option<SystemTime>,
    /// Final before this time.
    pub until: Option<SystemTime>,
    /// An address (compared without regard to ASCII case) or `@domain`.
    pub recipient: Option<String>,
    /// An address, `@domain`, or `""` for the null sender.
    pub sender: Option<String>,
    /// The recipient domain.
    pub domain: Option<String>,
    pub auth: Option<AuthFilter>,
    pub outcome: Option<AuditOutcome>,
    /// The most records returned; the rest is reported as truncated.
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            since: None,
            until: None,
            recipient: None,
            sender: None,
            domain: None,
            auth: None,
            outcome: None,
            limit: 1000,
        }
    }
}

/// A condition on how a recipient was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFilter {
    /// Delivered, to a peer authenticated this way.
    DeliveredOver(PeerAuth),
    /// Everything else: bounced, expired, dropped, or delivered with another authentication.
    NotDeliveredOver(PeerAuth),
}

/// What a search found, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// More records matched than the query's limit.
    pub truncated: bool,
}

impl AuditQuery {
    /// Whether `record` meets every condition of the query.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        // At the millisecond, as records store their times and the indexes order them.
        let final_at = unix_millis(record.final_at);
        self.since
            .is_none_or(|since| final_at >= unix_millis(since))
            && self.until.is_none_or(|until| final_at < unix_millis(until))
            && self
                .domain
                .as_deref()
                .is_none_or(|d| domains_equal(&record.domain, d))
            && self
                .recipient
                .as_deref()
                .is_none_or(|r| address_matches(&record.recipient, r))
            && self
                .sender
                .as_deref()
                .is_none_or(|s| address_matches(&record.sender, s))
            && self.outcome.is_none_or(|o| record.outcome == o)
            && self.auth.is_none_or(|filter| filter.matches(record))
    }

    /// The recipient domain every match has, when the query names one: searches by domain
    /// read that domain's index instead of every record in the time range.
    pub(crate) fn indexed_domain(&self) -> Option<String> {
        let from_recipient = self
            .recipient
            .as_deref()
            .and_then(|r| r.rsplit_once('@'))
            .map(|(_, domain)| domain);
        self.domain
            .as_deref()
            .or(from_recipient)
            .filter(|d| !d.is_empty())
            .map(ascii_domain)
    }
}

impl AuthFilter {
    fn matches(self, record: &AuditRecord) -> bool {
        let delivered_over =
            |auth: PeerAuth| record.outcome == AuditOutcome::Delivered && record.auth() == auth;
        match self {
            AuthFilter::DeliveredOver(auth) => delivered_over(auth),
            AuthFilter::NotDeliveredOver(auth) => !delivered_over(auth),
        }
    }
}

/// `pattern` is an address or `@domain`; addresses compare without regard to ASCII case
/// (local parts are case-sensitive in theory, RFC 5321 §2.4, and almost never in practice).
fn address_matches(address: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('@') {
        Some(domain) => address
            .rsplit_once('@')
            .is_some_and(|(_, d)| domains_equal(d, domain)),
        None => match (address.rsplit_once('@'), pattern.rsplit_once('@')) {
            (Some((local, d)), Some((wanted, want_domain))) => {
                local.eq_ignore_ascii_case(wanted) && domains_equal(d, want_domain)
            }
            _ => address.eq_ignore_ascii_case(pattern),
        },
    }
}

impl AuditRecord {
    /// How the deciding attempt's peer was authenticated; `none` without an attempt.
    pub fn auth(&self) -> PeerAuth {
        self.receipt.as_ref().map_or(PeerAuth::None, |r| r.auth)
    }
}

/// What made a recipient final, as far as the spool can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// A delivery outcome the queue runner recorded.
    Delivery,
    AdminBounce,
    AdminDelete,
}

/// The record for recipient `index` of message `id`, now in `state` (for a deletion: the
/// state it was deleted in), with every attempt the message had (stored and new, oldest
/// first). `None` when `state` is not final and the cause is not a deletion.
pub(crate) fn record_for(
    id: MessageId,
    stored: &EnvelopeRecord,
    index: usize,
    state: &RecipientState,
    attempts: &[AttemptRecord],
    cause: Cause,
    now: SystemTime,
) -> Option<AuditRecord> {
    let (outcome, final_at, status, reply) = final_facts(state, cause, now)?;
    let envelope = &stored.envelope;
    let address = envelope
        .recipients
        .get(index)
        .map(|r| r.address.clone())
        .unwrap_or_default();
    let mine: Vec<&AttemptRecord> = attempts
        .iter()
        .filter(|a| a.recipients.contains(&index))
        .collect();
    let wanted = match outcome {
        AuditOutcome::Delivered => Some(AttemptOutcome::Delivered),
        AuditOutcome::Bounced => Some(AttemptOutcome::Bounced),
        _ => None,
    };
    let deciding = mine
        .iter()
        .rev()
        .find(|a| Some(a.outcome) == wanted)
        .or(mine.last());
    let requested = envelope.params.requiretls;
    Some(AuditRecord {
        queue_id: id,
        index: crate::store::stored_index(index)?,
        message_id: stored.message_id.clone(),
        kind: envelope.kind,
        sender: envelope.mail_from.clone(),
        domain: crate::store::domain_of(&address),
        recipient: address,
        submitter: envelope.client.clone(),
        received_at: envelope.received_at,
        final_at,
        outcome,
        status,
        reply,
        receipt: deciding.map(|a| receipt(a)),
        requiretls: RequireTlsReceipt {
            requested,
            honoured: requested && outcome == AuditOutcome::Delivered,
        },
        require_tls: envelope.require_tls,
        attempts: mine.iter().map(|a| attempt(a)).collect(),
        node: None,
    })
}

/// The outcome, time, status and reply a final state (or a deletion) stands for.
fn final_facts(
    state: &RecipientState,
    cause: Cause,
    now: SystemTime,
) -> Option<(AuditOutcome, SystemTime, Option<String>, String)> {
    Some(match (cause, state) {
        (Cause::AdminDelete, _) => (
            AuditOutcome::Deleted,
            now,
            None,
            "deleted by an administrator".to_owned(),
        ),
        (_, RecipientState::Delivered { at, reply, .. }) => {
            (AuditOutcome::Delivered, *at, None, reply.clone())
        }
        (cause, RecipientState::Bounced { at, reply, status }) => {
            // RFC 3463 §3.5: 5.4.7 is what the queue runner bounces with once the queue
            // lifetime ran out.
            let outcome = if cause == Cause::AdminBounce {
                AuditOutcome::AdminBounced
            } else if *status == status::DELIVERY_TIME_EXPIRED.to_string() {
                AuditOutcome::Expired
            } else {
                AuditOutcome::Bounced
            };
            (outcome, *at, Some(status.clone()), reply.clone())
        }
        (_, RecipientState::Queued { .. } | RecipientState::Held { .. }) => return None,
    })
}

pub(crate) fn receipt(a: &AttemptRecord) -> SecurityReceipt {
    SecurityReceipt {
        at: a.at,
        mx: a.mx.clone(),
        ip: a.ip,
        tls_version: a.tls_version.clone(),
        cipher: a.cipher.clone(),
        cert_verified: a.cert_verified,
        auth: a.auth,
        policy: a.policy.clone(),
        rules: a.rules.clone(),
        requirement: a.requirement.clone(),
        result_type: a.result_type.clone(),
        exceptions: a.exceptions.clone(),
    }
}

fn attempt(a: &AttemptRecord) -> AuditAttempt {
    AuditAttempt {
        at: a.at,
        mx: a.mx.clone(),
        ip: a.ip,
        tls_version: a.tls_version.clone(),
        auth: a.auth,
        outcome: a.outcome,
        reply: a.reply.clone(),
        result_type: a.result_type.clone(),
        duration_ms: a.duration_ms,
    }
}

#[cfg(test)]
mod tests;
