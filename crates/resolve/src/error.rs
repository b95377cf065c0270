//! The one error type of the resolve crate; each variant knows whether a retry can help.
//!
//! Callers decide with `is_transient()` (defer) versus a permanent answer (bounce); they never
//! look at the text.

use std::time::Duration;

use hickory_resolver::net::NetError;
use strictmx_policy::MxFacts;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The resolver could not be built from the settings.
    #[error("no usable name server: {reason}")]
    NoNameservers { reason: String },

    /// The name is not a valid DNS name.
    #[error("{name:?} is not a valid domain name")]
    InvalidName {
        name: String,
        #[source]
        source: Box<NetError>,
    },

    /// NXDOMAIN: the name does not exist (RFC 5321 §5.1: reported as an error).
    #[error("{name} does not exist")]
    NoSuchDomain { name: String },

    /// The host exists but has neither A nor AAAA records.
    #[error("{host} has no A or AAAA records")]
    NoAddresses { host: String },

    /// No answer within the configured time.
    #[error("{record_type} lookup for {name} timed out after {elapsed:?}")]
    Timeout {
        name: String,
        record_type: &'static str,
        elapsed: Duration,
    },

    /// The server answered with an error code such as SERVFAIL or REFUSED.
    #[error("{record_type} lookup for {name} failed: {response_code}")]
    ServerFailure {
        name: String,
        record_type: &'static str,
        response_code: String,
    },

    /// Any other lookup failure (network error, malformed answer, bogus DNSSEC data).
    #[error("{record_type} lookup for {name} failed")]
    Lookup {
        name: String,
        record_type: &'static str,
        #[source]
        source: Box<NetError>,
    },
}

impl ResolveError {
    /// Whether the same question may get a better answer later (defer rather than bounce).
    ///
    /// RFC 5321 §5.1: a temporary error means the message "MUST be queued and retried later";
    /// only a non-existent name (or an invalid one, or a host without addresses) is final.
    pub fn is_transient(&self) -> bool {
        match self {
            ResolveError::NoSuchDomain { .. }
            | ResolveError::InvalidName { .. }
            | ResolveError::NoAddresses { .. } => false,
            ResolveError::NoNameservers { .. }
            | ResolveError::Timeout { .. }
            | ResolveError::ServerFailure { .. }
            | ResolveError::Lookup { .. } => true,
        }
    }

    /// The facts the planner sees when the MX lookup itself failed.
    pub fn to_mx_facts(&self) -> MxFacts {
        match self {
            ResolveError::NoSuchDomain { .. } => MxFacts::NoSuchDomain,
            other => MxFacts::Unavailable {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nonexistent_or_addressless_names_are_permanent() {
        let rows = [
            (
                ResolveError::NoSuchDomain {
                    name: "x.example".into(),
                },
                false,
            ),
            (
                ResolveError::NoAddresses {
                    host: "mx.example".into(),
                },
                false,
            ),
            (
                ResolveError::Timeout {
                    name: "x.example".into(),
                    record_type: "MX",
                    elapsed: Duration::from_secs(5),
                },
                true,
            ),
            (
                ResolveError::ServerFailure {
                    name: "x.example".into(),
                    record_type: "MX",
                    response_code: "Server Failure".into(),
                },
                true,
            ),
        ];
        for (error, transient) in rows {
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }

    #[test]
    fn a_failed_mx_lookup_becomes_the_facts_the_planner_expects() {
        let nx = ResolveError::NoSuchDomain {
            name: "x.example".into(),
        };
        assert_eq!(nx.to_mx_facts(), MxFacts::NoSuchDomain);
        let servfail = ResolveError::ServerFailure {
            name: "x.example".into(),
            record_type: "MX",
            response_code: "Server Failure".into(),
        };
        assert!(matches!(
            servfail.to_mx_facts(),
            MxFacts::Unavailable { .. }
        ));
    }
}
