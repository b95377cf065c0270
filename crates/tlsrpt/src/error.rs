//! The crate's one error type. Each variant carries the domain, day or URI it concerns;
//! callers decide by `is_transient()`.

use strictmx_spool::SpoolError;

#[derive(Debug, thiserror::Error)]
pub enum TlsrptError {
    #[error("TLSRPT spool access failed while {action}")]
    Spool {
        action: &'static str,
        #[source]
        source: SpoolError,
    },
    /// The store shared by a cluster's nodes could not be used; reports wait for it, since
    /// without it neither the other nodes' counts nor the sent marks are known.
    #[error("the cluster's TLSRPT store failed while {action}: {reason}")]
    Shared {
        action: &'static str,
        reason: String,
    },
    /// Reports for a day are sent once it is over (RFC 8460 §4.1: whole UTC days).
    #[error("day {day} is not over yet")]
    DayNotClosed { day: String },
    #[error("TLSRPT reporting is disabled")]
    Disabled,
    /// The report failed the RFC 8460 schema check; it is not sent.
    #[error("report {report_id} for {domain} fails the RFC 8460 schema: {}", errors.join("; "))]
    Schema {
        domain: String,
        report_id: String,
        errors: Vec<String>,
    },
    #[error("cannot compress the report for {domain}")]
    Compress {
        domain: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the report for {domain}")]
    Encode {
        domain: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot build the report mail for {domain}")]
    Mail {
        domain: String,
        #[source]
        source: std::io::Error,
    },
}

impl TlsrptError {
    /// True when trying again later may succeed (a spool that is reopening, a day not over).
    pub fn is_transient(&self) -> bool {
        match self {
            TlsrptError::Spool { source, .. } => source.is_transient(),
            TlsrptError::DayNotClosed { .. } | TlsrptError::Shared { .. } => true,
            TlsrptError::Disabled
            | TlsrptError::Schema { .. }
            | TlsrptError::Compress { .. }
            | TlsrptError::Encode { .. }
            | TlsrptError::Mail { .. } => false,
        }
    }

    pub(crate) fn spool(action: &'static str) -> impl Fn(SpoolError) -> TlsrptError {
        move |source| TlsrptError::Spool { action, source }
    }
}
