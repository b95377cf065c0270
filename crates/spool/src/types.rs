//! The records the spool stores and the views it hands out: envelopes, recipient states, attempt
//! records, due work for the queue runner and queue listings for the admin CLI. How they are
//! encoded on disk is left to `store`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use strictmx_protocol::{MailParams, RcptParams};

use crate::id::MessageId;
use crate::time;

/// What inbound accepted: the envelope of one message, stored as it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path; `""` is the null sender (RFC 5321 §4.5.5).
    pub mail_from: String,
    pub params: MailParams,
    pub recipients: Vec<EnvelopeRecipient>,
    /// When the message was accepted; stored as whole unix seconds.
    #[serde(with = "time::secs")]
    pub received_at: SystemTime,
    pub client: ClientInfo,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    pub address: String,
    pub params: RcptParams,
}

/// The submitting client, for `Received:`, logs and DSNs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub helo: String,
    pub auth_user: Option<String>,
    /// The TLS version and cipher the client used, if any.
    pub tls: Option<String>,
}

/// DSNs are never answered with DSNs (RFC 3461 §6.2); the kind records which one this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Normal,
    Dsn,
}

/// Where one recipient of a message stands. Every recipient is in exactly one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RecipientState {
    /// Waiting for `next_attempt`; listed in the schedule index.
    Queued {
        #[serde(with = "time::millis")]
        next_attempt: SystemTime,
        attempts: u32,
        last_reply: Option<String>,
        delay_dsn_sent: bool,
    },
    /// Final: the MX host `mx` accepted the message.
    Delivered {
        #[serde(with = "time::millis")]
        at: SystemTime,
        mx: String,
        reply: String,
    },
    /// Final: delivery failed permanently or was given up; `status` is the enhanced code.
    Bounced {
        #[serde(with = "time::millis")]
        at: SystemTime,
        reply: String,
        status: String,
    },
    /// Kept out of the schedule by an administrator until released.
    Held {
        attempts: u32,
        last_reply: Option<String>,
        delay_dsn_sent: bool,
    },
}

impl RecipientState {
    /// A new recipient: due at `now`, never tried.
    pub fn fresh(now: SystemTime) -> Self {
        RecipientState::Queued {
            next_attempt: now,
            attempts: 0,
            last_reply: None,
            delay_dsn_sent: false,
        }
    }

    /// Delivered and Bounced are final: nothing changes them any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RecipientState::Delivered { .. } | RecipientState::Bounced { .. }
        )
    }

    pub fn next_attempt(&self) -> Option<SystemTime> {
        match self {
            RecipientState::Queued { next_attempt, .. } => Some(*next_attempt),
            _ => None,
        }
    }
}

/// A new state for the recipient at `index` of a message's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientUpdate {
    pub index: usize,
    pub state: RecipientState,
}

/// How the peer's identity was authenticated on a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerAuth {
    Dane,
    Sts,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Deferred,
    Bounced,
}

/// One connection attempt for (some recipients of) a message, kept while the message exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    #[serde(with = "time::millis")]
    pub at: SystemTime,
    pub domain: String,
    pub mx: Option<String>,
    pub ip: Option<IpAddr>,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    pub cert_verified: Option<bool>,
    pub auth: PeerAuth,
    pub policy: String,
    /// Indexes into the envelope's recipients.
    pub recipients: Vec<usize>,
    pub outcome: AttemptOutcome,
    pub reply: String,
    pub duration_ms: u64,
}

/// Recipients of one message that are due now; each is leased until `record` or
/// `release_leases`.
#[derive(Debug, Clone)]
pub struct DueMessage {
    pub id: MessageId,
    pub envelope: Arc<Envelope>,
    pub recipients: Vec<DueRecipient>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRecipient {
    /// Index into `Envelope::recipients`.
    pub index: usize,
    pub address: String,
    /// The domain of `address`, lowercased; empty when the address has none.
    pub domain: String,
    pub attempts: u32,
    /// The time of the first attempt record naming this recipient.
    pub first_attempt: Option<SystemTime>,
}

/// A message with everything the spool knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredMessage {
    #[serde(serialize_with = "crate::id::serialize_hex")]
    pub id: MessageId,
    pub envelope: Envelope,
    /// Body size in octets.
    pub size: u64,
    /// One state per envelope recipient, in envelope order.
    pub states: Vec<RecipientState>,
    pub attempts: Vec<AttemptRecord>,
}

/// What `Spool::bounce` removed: the message as it stood, all recipients bounced, and its body
/// so that the caller can write DSNs (the message itself is gone from the spool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedMessage {
    pub message: StoredMessage,
    pub body: Vec<u8>,
}

/// One line of the admin CLI's queue listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    #[serde(serialize_with = "crate::id::serialize_hex")]
    pub id: MessageId,
    pub sender: String,
    pub recipients: Vec<QueueRecipient>,
    #[serde(with = "time::secs")]
    pub received_at: SystemTime,
    #[serde(serialize_with = "time::duration_secs::serialize")]
    pub age: Duration,
    pub size: u64,
    /// The earliest next attempt of a queued recipient.
    #[serde(serialize_with = "time::opt_millis::serialize")]
    pub next_attempt: Option<SystemTime>,
    /// True when any recipient is held.
    pub held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueRecipient {
    pub address: String,
    pub state: RecipientState,
}

/// Figures for metrics, kept in memory and rebuilt on open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub messages: usize,
    pub recipients_queued: usize,
    pub held: usize,
    pub oldest_age: Option<Duration>,
    /// Write transactions committed since open.
    pub commits: u64,
    /// Write transactions that failed and were aborted since open.
    pub failed_commits: u64,
    /// Operations carried by the committed transactions.
    pub committed_operations: u64,
    /// Time from the start of the last committed transaction to its fdatasync returning.
    pub last_commit_latency: Option<Duration>,
    pub total_commit_latency: Duration,
}
