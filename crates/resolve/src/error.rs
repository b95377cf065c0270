//! The one error type of the resolve crate; each variant knows whether a retry can help and,
//! for MTA-STS fetches, which TLSRPT result type it is.
//!
//! Callers decide with `is_transient()` (defer) versus a permanent answer (bounce), and with
//! `tlsrpt_result()` what to report; they never look at the text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hickory_resolver::net::NetError;
use strictmx_policy::report::ResultType;
use strictmx_policy::{Dnssec, MxFacts};
use strictmx_spool::SpoolError;

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

    /// A recipient domain that is not a host name (RFC 5321 §4.1.2): refused before any
    /// lookup, so that it reaches neither DNS nor an MTA-STS URL.
    #[error("{name:?} is not a host name: {problem}")]
    NotAHostName {
        name: String,
        problem: strictmx_protocol::HostNameProblem,
    },

    /// NXDOMAIN: the name does not exist (RFC 5321 §5.1: reported as an error).
    #[error("{name} does not exist")]
    NoSuchDomain { name: String },

    /// The host exists but has neither A nor AAAA records.
    #[error("{host} has no A or AAAA records")]
    NoAddresses { host: String },

    /// No answer within the configured time.
    #[error(
        "{record_type} lookup for {name} timed out after {}",
        strictmx_protocol::HumanDuration(*elapsed)
    )]
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

    /// Any other lookup failure (network error, malformed answer).
    #[error("{record_type} lookup for {name} failed")]
    Lookup {
        name: String,
        record_type: &'static str,
        #[source]
        source: Box<NetError>,
    },

    /// The answer is signed but does not validate (RFC 4035 §5.5): an attack or a broken zone.
    #[error("{record_type} answer for {name} is DNSSEC-bogus")]
    Bogus {
        name: String,
        record_type: &'static str,
    },

    /// The trust anchor file could not be read or holds no DNSKEY record.
    #[error("cannot use DNSSEC trust anchor {path}: {reason}")]
    TrustAnchor { path: PathBuf, reason: String },

    /// The `trust-resolver` DNSSEC mode trusts the AD bit only from resolvers on loopback or listed
    /// as trusted, because anyone on the path could set it.
    #[error(
        "DNSSEC mode \"trust-resolver\" trusts the AD bit of {nameserver}, which is neither on loopback nor in dns.trusted_nameservers"
    )]
    UntrustedResolver { nameserver: SocketAddr },

    /// The extra CA bundle for MTA-STS policy hosts could not be used.
    #[error("cannot use CA bundle {path}: {reason}")]
    CaBundle { path: PathBuf, reason: String },

    /// Every address of a TLSRPT report host lies in a range reports are never posted to
    /// (loopback, private, link-local, ...: `strictmx_policy::address`): whoever writes a
    /// recipient domain's `_smtp._tls` record must not make us reach our own networks.
    #[error("{host} has no public address reports may be posted to: {}", refused.join(", "))]
    ReportHostRefused { host: String, refused: Vec<String> },

    /// The HTTPS client could not be built.
    #[error("cannot build the HTTPS client")]
    HttpsClient {
        #[source]
        source: reqwest::Error,
    },

    /// The policy host could not be reached or the transfer failed (RFC 8461 §3.3).
    #[error("MTA-STS policy fetch for {domain} failed")]
    StsTransport {
        domain: String,
        #[source]
        source: reqwest::Error,
    },

    /// The policy host's certificate did not verify (RFC 8461 §3.3: web PKI, host name
    /// `mta-sts.<domain>`).
    #[error("MTA-STS policy host mta-sts.{domain} presented an invalid certificate: {reason}")]
    StsCertificate { domain: String, reason: String },

    /// Anything but 200, redirects included (RFC 8461 §3.3).
    #[error("MTA-STS policy host mta-sts.{domain} answered HTTP {status}")]
    StsStatus { domain: String, status: u16 },

    /// The body was not `text/plain` (RFC 8461 §3.3).
    #[error("MTA-STS policy for {domain} has media type {found:?}, not text/plain")]
    StsContentType { domain: String, found: String },

    /// The body exceeded the configured size cap.
    #[error("MTA-STS policy for {domain} is larger than {limit} bytes")]
    StsTooLarge { domain: String, limit: usize },

    /// The body is not UTF-8 or does not parse as an RFC 8461 §3.2 policy.
    #[error("MTA-STS policy for {domain} is invalid: {reason}")]
    StsInvalid { domain: String, reason: String },

    /// The whole fetch took longer than the configured time.
    #[error(
        "MTA-STS policy fetch for {domain} timed out after {}",
        strictmx_protocol::HumanDuration(*elapsed)
    )]
    StsTimeout { domain: String, elapsed: Duration },

    /// The policy cache in the spool failed.
    #[error("MTA-STS policy cache failed for {domain}")]
    StsCache {
        domain: String,
        #[source]
        source: SpoolError,
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
            | ResolveError::NotAHostName { .. }
            | ResolveError::NoAddresses { .. }
            | ResolveError::TrustAnchor { .. }
            | ResolveError::UntrustedResolver { .. }
            | ResolveError::CaBundle { .. }
            | ResolveError::ReportHostRefused { .. }
            | ResolveError::HttpsClient { .. } => false,
            // RFC 7672 §2.1.1: a bogus answer is treated like a lookup failure, never as
            // "no DNSSEC"; the zone may be repaired.
            ResolveError::NoNameservers { .. }
            | ResolveError::Timeout { .. }
            | ResolveError::ServerFailure { .. }
            | ResolveError::Lookup { .. }
            | ResolveError::Bogus { .. }
            | ResolveError::StsTransport { .. }
            | ResolveError::StsCertificate { .. }
            | ResolveError::StsStatus { .. }
            | ResolveError::StsContentType { .. }
            | ResolveError::StsTooLarge { .. }
            | ResolveError::StsInvalid { .. }
            | ResolveError::StsTimeout { .. }
            | ResolveError::StsCache { .. } => true,
        }
    }

    /// The RFC 8460 §4.3.2 result type of a failed MTA-STS policy fetch; `None` for errors
    /// that are not about fetching a policy.
    pub fn tlsrpt_result(&self) -> Option<ResultType> {
        match self {
            // §4.3.2 "sts-webpki-invalid": the policy host could not be authenticated.
            ResolveError::StsCertificate { .. } => Some(ResultType::StsWebpkiInvalid),
            // §4.3.2 "sts-policy-invalid": a policy was retrieved but does not validate.
            ResolveError::StsContentType { .. } | ResolveError::StsInvalid { .. } => {
                Some(ResultType::StsPolicyInvalid)
            }
            // §4.3.2 "sts-policy-fetch-error": the policy could not be retrieved.
            ResolveError::StsTransport { .. }
            | ResolveError::StsStatus { .. }
            | ResolveError::StsTooLarge { .. }
            | ResolveError::StsTimeout { .. }
            | ResolveError::NoSuchDomain { .. }
            | ResolveError::NoAddresses { .. }
            | ResolveError::Timeout { .. }
            | ResolveError::ServerFailure { .. }
            | ResolveError::Lookup { .. }
            | ResolveError::Bogus { .. } => Some(ResultType::StsPolicyFetchError),
            ResolveError::NoNameservers { .. }
            | ResolveError::InvalidName { .. }
            | ResolveError::NotAHostName { .. }
            | ResolveError::TrustAnchor { .. }
            | ResolveError::UntrustedResolver { .. }
            | ResolveError::CaBundle { .. }
            | ResolveError::ReportHostRefused { .. }
            | ResolveError::HttpsClient { .. }
            | ResolveError::StsCache { .. } => None,
        }
    }

    /// The DNSSEC status this failure implies for the answer that was asked for.
    pub fn dnssec(&self) -> Dnssec {
        match self {
            ResolveError::Bogus { .. } => Dnssec::Bogus,
            _ => Dnssec::Indeterminate,
        }
    }

    /// The facts the planner sees when the MX lookup itself failed.
    pub fn to_mx_facts(&self) -> MxFacts {
        match self {
            ResolveError::NoSuchDomain { .. } => MxFacts::NoSuchDomain,
            ResolveError::NotAHostName { problem, .. } => MxFacts::NotAHostName {
                reason: problem.to_string(),
            },
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

    #[test]
    fn a_timeout_says_how_long_it_waited_in_the_units_of_the_configuration() {
        let timeout = ResolveError::Timeout {
            name: "x.example".into(),
            record_type: "MX",
            elapsed: Duration::from_nanos(10_002_096_950),
        };
        assert_eq!(
            timeout.to_mx_facts(),
            MxFacts::Unavailable {
                reason: "MX lookup for x.example timed out after 10s".into()
            }
        );
    }
}
