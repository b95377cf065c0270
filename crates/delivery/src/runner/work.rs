//! What the runner's loop and its tasks hand each other: the leased work that waits for a job,
//! what a task says when it ends, and what a job learnt about its destination.
//!
//! `dispatch` starts tasks with this work and takes in what they say; `settle` runs them.

use std::sync::Arc;

use strictmx_spool::{DueRecipient, Envelope, MessageId};

/// What the loop learns when a task ends.
#[derive(Debug)]
pub(super) enum TaskDone {
    Job { domain: String, reach: Reach },
    Rescheduled,
}

/// What a job found out about its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    Reachable,
    /// No MX host could be reached at all (`DeliveryReport::destination_unreachable`).
    Unreachable,
    /// The job said nothing either way (it timed out, or had nothing to send).
    Unknown,
}

/// The recipients of one message at one destination, leased and waiting for a job.
#[derive(Debug)]
pub(super) struct PendingMessage {
    pub(super) id: MessageId,
    pub(super) envelope: Arc<Envelope>,
    pub(super) recipients: Vec<DueRecipient>,
    pub(super) size: u64,
}
