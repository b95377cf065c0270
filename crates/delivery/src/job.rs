//! The unit of work between the queue runner and the transport, and what comes back.
//!
//! The runner decides *when* to deliver and what to do with the outcome (retry, bounce, DSN);
//! the transport decides nothing about scheduling and never touches the spool.

use std::sync::Arc;

use strictmx_policy::report::SessionResult;
use strictmx_spool::{AttemptRecord, Envelope, MessageId};

/// Messages for one destination domain, delivered over as few connections as possible.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    /// The recipient domain, lowercase ASCII.
    pub domain: String,
    pub messages: Vec<JobMessage>,
}

/// One queued message and the recipients of it that are due at `DeliveryJob::domain`.
#[derive(Debug, Clone)]
pub struct JobMessage {
    pub id: MessageId,
    pub envelope: Arc<Envelope>,
    pub recipients: Vec<JobRecipient>,
    pub body: Arc<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct JobRecipient {
    /// Index into `Envelope::recipients`.
    pub index: usize,
    pub address: String,
}

/// What happened to every recipient of a job, plus one record per connection attempt.
#[derive(Debug, Clone, Default)]
pub struct DeliveryReport {
    pub messages: Vec<MessageReport>,
    /// True when no MX host of the destination could be reached at all (connection refused,
    /// timeouts, DNS failure): the runner then backs off the whole destination.
    pub destination_unreachable: bool,
    /// One per TLS negotiation attempt (and per policy failure found before connecting), for
    /// TLSRPT (RFC 8460 §4.4); empty for jobs that carry only TLSRPT reports.
    pub sessions: Vec<SessionResult>,
    /// What the destination (or its route's next hop) published and offered this time, for
    /// the watch that notices weakening destinations; `None` when no delivery was planned.
    pub posture: Option<strictmx_policy::posture::Posture>,
}

#[derive(Debug, Clone)]
pub struct MessageReport {
    pub id: MessageId,
    pub recipients: Vec<RecipientResult>,
    /// Every connection attempt that concerned this message, in order.
    pub attempts: Vec<AttemptRecord>,
}

#[derive(Debug, Clone)]
pub struct RecipientResult {
    pub index: usize,
    pub outcome: RecipientOutcome,
}

/// The outcome for one recipient, with what a DSN (RFC 3464 §2.3) needs to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    Delivered {
        /// The MX host name that accepted the message.
        remote_mta: String,
        /// The reply to the end of data, in wire form without CRLF.
        reply: String,
    },
    Deferred {
        remote_mta: Option<String>,
        /// `smtp; 451 4.3.0 ...` for a remote reply, or a local explanation.
        diagnostic: Diagnostic,
        /// Enhanced status code, such as `4.4.1`.
        status: String,
    },
    Bounced {
        remote_mta: Option<String>,
        diagnostic: Diagnostic,
        status: String,
    },
}

/// Why a recipient was not delivered: the remote server's words, or ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnostic {
    /// A reply from the remote SMTP server, in wire form (multi-line replies joined by `\n`).
    Smtp(String),
    /// A local finding, such as a DNS failure or a TLS requirement that could not be met.
    Local(String),
}

/// The transport as the runner sees it; tests of the runner inject their own.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, job: DeliveryJob)
    -> impl std::future::Future<Output = DeliveryReport> + Send;
}
