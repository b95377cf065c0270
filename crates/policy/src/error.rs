//! The crate's one error type: why an MTA-STS TXT record or policy text was rejected.
//!
//! Everything else this crate decides is an outcome (a plan, a peer verdict), not an error.
//! Callers turn these into "no policy" and, for policies, a TLSRPT `sts-policy-invalid` entry.

use crate::report::ResultType;

/// Why an MTA-STS text did not parse (RFC 8461 §3.1, §3.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    /// The TXT record does not begin with `v=STSv1`.
    #[error("mta-sts record does not begin with v=STSv1")]
    RecordVersion,
    /// A field of the TXT record is empty or not `name=value` in the RFC's alphabet.
    #[error("mta-sts record field {field:?} is malformed")]
    RecordField { field: String },
    /// The `id` is not 1 to 32 letters and digits.
    #[error("mta-sts record id {id:?} is not 1 to 32 letters and digits")]
    RecordId { id: String },
    #[error("mta-sts record has no id field")]
    RecordMissingId,
    /// A policy line is not `name: value` in the RFC's alphabet (or is blank mid-text).
    #[error("mta-sts policy line {line} is malformed: {text:?}")]
    PolicyLine { line: usize, text: String },
    #[error("mta-sts policy line {line}: version {value:?} is not STSv1")]
    PolicyVersion { line: usize, value: String },
    #[error("mta-sts policy line {line}: mode {value:?} is not enforce, testing or none")]
    PolicyMode { line: usize, value: String },
    #[error("mta-sts policy line {line}: max_age {value:?} is not an integer from 0 to 31557600")]
    PolicyMaxAge { line: usize, value: String },
    #[error("mta-sts policy line {line}: mx {value:?} is not a host name or *.domain pattern")]
    PolicyMx { line: usize, value: String },
    /// A required field is absent: `version`, `mode`, `max_age`, or `mx` unless mode is `none`.
    #[error("mta-sts policy has no {field} field")]
    PolicyMissing { field: &'static str },
}

impl StsError {
    /// The RFC 8460 §4.3.2 result type to report: `sts-policy-invalid` for a policy that did not
    /// parse; `None` for a TXT record, because an unusable record simply means "no policy".
    pub fn tlsrpt_result(&self) -> Option<ResultType> {
        match self {
            StsError::RecordVersion
            | StsError::RecordField { .. }
            | StsError::RecordId { .. }
            | StsError::RecordMissingId => None,
            StsError::PolicyLine { .. }
            | StsError::PolicyVersion { .. }
            | StsError::PolicyMode { .. }
            | StsError::PolicyMaxAge { .. }
            | StsError::PolicyMx { .. }
            | StsError::PolicyMissing { .. } => Some(ResultType::StsPolicyInvalid),
        }
    }

    /// Never transient: the same text always fails the same way.
    pub fn is_transient(&self) -> bool {
        false
    }
}
