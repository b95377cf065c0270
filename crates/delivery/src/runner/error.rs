//! What can go wrong while running the queue; each error says which message and step it hit.
//! The runner logs these and carries on: nothing here stops the loop.

use strictmx_spool::{MessageIdDisplay, SpoolError};

use crate::dsn::DsnKind;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot read due recipients from the spool")]
    Due {
        #[source]
        source: SpoolError,
    },
    #[error("cannot read the body of message {id}")]
    Body {
        id: MessageIdDisplay,
        #[source]
        source: SpoolError,
    },
    #[error("cannot postpone {count} messages of a destination in backoff")]
    Postpone {
        count: usize,
        #[source]
        source: SpoolError,
    },
    #[error("cannot record the outcome of message {id}; its recipients stay leased until restart")]
    Record {
        id: MessageIdDisplay,
        #[source]
        source: SpoolError,
    },
    #[error("cannot queue the {} dsn for message {id}", kind.label())]
    SubmitDsn {
        id: MessageIdDisplay,
        kind: DsnKind,
        #[source]
        source: SpoolError,
    },
    #[error("delivery job for {domain} ended abnormally; its recipients stay leased until restart")]
    JobAborted {
        domain: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl QueueError {
    /// Whether trying the same step again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Due { source }
            | QueueError::Body { source, .. }
            | QueueError::Postpone { source, .. }
            | QueueError::Record { source, .. }
            | QueueError::SubmitDsn { source, .. } => source.is_transient(),
            QueueError::JobAborted { .. } => false,
        }
    }
}
