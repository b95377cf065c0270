//! The spool's one error type. Each variant says what failed and for which message or table;
//! callers decide by `is_transient()`, never by the text. Turning it into an SMTP reply is left
//! to inbound (`452 4.3.1` when transient).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use strictmx_protocol::replies;

use crate::id::MessageIdDisplay;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create spool directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make {path} private to its owner")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read or create the node id {path}")]
    NodeId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot fsync spool directory {path}")]
    SyncDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open spool database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    #[error("cannot start the spool writer thread")]
    WriterThread {
        #[source]
        source: io::Error,
    },
    #[error("spool database {path} has schema version {found}, this build reads {expected}")]
    SchemaVersion {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    /// A read or write of the store failed outside a commit.
    #[error("spool storage failed while {action}")]
    Storage {
        action: &'static str,
        #[source]
        source: Arc<redb::Error>,
    },
    /// The write transaction carrying this operation failed and was aborted: none of the
    /// `operations` in it was applied.
    #[error("spool commit of {operations} operations failed")]
    Commit {
        operations: usize,
        #[source]
        source: Arc<redb::Error>,
    },
    /// A stored record did not decode. The message stays on disk for an operator to inspect.
    #[error("corrupt record for message {id} in table {table}")]
    Corrupt {
        table: &'static str,
        id: MessageIdDisplay,
        #[source]
        source: serde_json::Error,
    },
    /// Stored records disagree with each other, e.g. a recipient state without its envelope.
    #[error("inconsistent records for message {id} in table {table}: {detail}")]
    Inconsistent {
        table: &'static str,
        id: MessageIdDisplay,
        detail: &'static str,
    },
    #[error("cannot encode {what} for message {id}")]
    Encode {
        what: &'static str,
        id: MessageIdDisplay,
        #[source]
        source: serde_json::Error,
    },
    #[error("message {id} is not in the spool")]
    NotFound { id: MessageIdDisplay },
    #[error("message {id} has {count} recipients, no recipient {index}")]
    NoSuchRecipient {
        id: MessageIdDisplay,
        index: usize,
        count: usize,
    },
    #[error("a message needs at least one recipient")]
    NoRecipients,
    #[error("a message may have at most {max} recipients, got {count}")]
    TooManyRecipients { count: usize, max: usize },
    #[error("{text:?} is not a message id (16 hex digits)")]
    BadMessageId { text: String },
    /// The writer thread is gone (the spool is shutting down, or the thread failed).
    #[error("spool writer is not running")]
    WriterStopped,
    /// The store is being reopened after an I/O failure; try again shortly.
    #[error("spool store is reopening after an i/o failure")]
    Reopening,
}

impl SpoolError {
    /// True when trying the same operation again later may succeed: storage, commit and
    /// writer failures. Inbound answers those with `452 4.3.1`; the rest are bugs, bad input
    /// or damaged records that waiting does not fix.
    pub fn is_transient(&self) -> bool {
        match self {
            SpoolError::CreateDir { .. }
            | SpoolError::Permissions { .. }
            | SpoolError::NodeId { .. }
            | SpoolError::SyncDir { .. }
            | SpoolError::Open { .. }
            | SpoolError::WriterThread { .. }
            | SpoolError::Storage { .. }
            | SpoolError::Commit { .. }
            | SpoolError::WriterStopped
            | SpoolError::Reopening => true,
            SpoolError::SchemaVersion { .. }
            | SpoolError::Corrupt { .. }
            | SpoolError::Inconsistent { .. }
            | SpoolError::Encode { .. }
            | SpoolError::NotFound { .. }
            | SpoolError::NoSuchRecipient { .. }
            | SpoolError::NoRecipients
            | SpoolError::TooManyRecipients { .. }
            | SpoolError::BadMessageId { .. } => false,
        }
    }

    /// What inbound answers a submitter when `submit` fails. Always a 4xx: a spool failure is
    /// ours, and the client keeps the message and tries again (RFC 5321 §4.2.5).
    pub fn smtp_reply(&self) -> strictmx_protocol::Reply {
        match self {
            SpoolError::TooManyRecipients { .. } => replies::too_many_recipients(),
            e if e.is_transient() => replies::storage_unavailable(),
            _ => replies::local_error(),
        }
    }

    pub(crate) fn storage(action: &'static str) -> impl Fn(redb::Error) -> SpoolError + Copy {
        move |source| SpoolError::Storage {
            action,
            source: Arc::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_transient_and_bad_input_is_not() {
        let io = || redb::Error::Io(io::Error::other("disk full"));
        let cases = [
            (SpoolError::storage("reading")(io()), true),
            (
                SpoolError::Commit {
                    operations: 3,
                    source: Arc::new(io()),
                },
                true,
            ),
            (SpoolError::WriterStopped, true),
            (
                SpoolError::NotFound {
                    id: MessageIdDisplay(1),
                },
                false,
            ),
            (SpoolError::NoRecipients, false),
        ];
        for (error, transient) in cases {
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }

    #[test]
    fn every_failure_is_answered_with_a_temporary_reply() {
        let cases = [
            (SpoolError::WriterStopped, 452, (4, 3, 1)),
            (
                SpoolError::TooManyRecipients { count: 5, max: 4 },
                452,
                (4, 5, 3),
            ),
            (SpoolError::NoRecipients, 451, (4, 3, 0)),
        ];
        for (error, code, (class, subject, detail)) in cases {
            let reply = error.smtp_reply();
            assert_eq!(reply.code, code, "{error}");
            let status = reply.status.expect("replies carry enhanced codes");
            assert_eq!(
                (status.class, status.subject, status.detail),
                (class, subject, detail)
            );
        }
    }

    #[test]
    fn display_text_is_lowercase_without_a_final_period() {
        let e = SpoolError::NoSuchRecipient {
            id: MessageIdDisplay(0xab),
            index: 7,
            count: 2,
        };
        let text = e.to_string();
        assert_eq!(
            text,
            "message 00000000000000ab has 2 recipients, no recipient 7"
        );
        assert!(!text.ends_with('.'));
    }
}
