//! Where accepted messages go: the `Queue` trait, implemented for the spool. Tests inject an
//! in-memory queue; durability and group commit are the spool's business.

use std::future::Future;

use strictmx_spool::{
    Envelope, IdempotencyKey, MessageId, Spool, SpoolError, Submitted, TransferReceipt,
};

/// A failed submission, classified so the session can answer 452 or 451.
pub trait QueueError: std::error::Error + Send + Sync + 'static {
    /// True when the same message may be accepted later (answered with `452 4.3.1`).
    fn is_transient(&self) -> bool;
}

impl QueueError for SpoolError {
    fn is_transient(&self) -> bool {
        SpoolError::is_transient(self)
    }
}

/// Takes a message and returns only once it is durable; the session answers 250 after that.
pub trait Queue: Send + Sync + 'static {
    type Error: QueueError;

    /// An id for a message about to be submitted, so that its `Received:` field can name it.
    fn reserve_id(&self) -> MessageId;

    /// Stores the message under `id`, from [`Queue::reserve_id`].
    fn submit(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<MessageId, Self::Error>> + Send;

    /// [`Queue::submit`] once per idempotency key: a repeat within the queue's window stores
    /// nothing and gets the answer remembered the first time, or [`Submitted::Reused`] when
    /// its fingerprint is not the first request's.
    fn submit_once(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
        once: IdempotencyKey,
    ) -> impl Future<Output = Result<Submitted, Self::Error>> + Send;

    /// Stores a message another strictmx node transferred under `transfer`, leaving out the
    /// recipients already received under it (`Spool::submit_transfer`).
    fn submit_transfer(
        &self,
        id: MessageId,
        transfer: String,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<TransferReceipt, Self::Error>> + Send;
}

impl Queue for Spool {
    type Error = SpoolError;

    fn reserve_id(&self) -> MessageId {
        Spool::reserve_id(self)
    }

    fn submit(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<MessageId, SpoolError>> + Send {
        Spool::submit_reserved(self, id, envelope, body)
    }

    fn submit_once(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
        once: IdempotencyKey,
    ) -> impl Future<Output = Result<Submitted, SpoolError>> + Send {
        Spool::submit_once(self, id, envelope, body, once)
    }

    fn submit_transfer(
        &self,
        id: MessageId,
        transfer: String,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<TransferReceipt, SpoolError>> + Send {
        Spool::submit_transfer(self, id, transfer, envelope, body)
    }
}
