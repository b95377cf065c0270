//! What a delivery session reports to TLSRPT (RFC 8460): the policy it ran under and, when it
//! failed, the result type.
//!
//! The planner attaches a [`ReportPolicy`] to every candidate host; the transport adds the
//! [`ResultType`] of a failure; `strictmx-tlsrpt` counts and reports them.

use serde::Serialize;

/// RFC 8460 §4.4 `policy-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyType {
    Sts,
    Tlsa,
    NoPolicyFound,
}

/// The policy a session was evaluated against, as RFC 8460 §4.4 identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ReportPolicy {
    pub policy_type: PolicyType,
    /// `sts`: the policy's lines as fetched; `tlsa`: one presentation-form string per record;
    /// `no-policy-found`: empty.
    pub policy_string: Vec<String>,
    /// The recipient domain (`sts`, `no-policy-found`) or the TLSA base domain (`tlsa`).
    pub policy_domain: String,
    /// `sts`: the policy's `mx` patterns; otherwise the MX host name for `tlsa`, empty else.
    pub mx_host: Vec<String>,
}

/// RFC 8460 §4.3 result types of a failed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    // §4.3.1 negotiation failures
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    // §4.3.2 policy failures: DANE
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    // §4.3.2 policy failures: MTA-STS
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

impl ResultType {
    /// The RFC's spelling, as in the report JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// The outcome of one delivery session (one TLS negotiation attempt with one MX address) as
/// TLSRPT counts it (RFC 8460 §4.4 summary and failure-details).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionResult {
    /// The recipient domain whose `_smtp._tls` record receives the report.
    pub report_domain: String,
    pub policy: ReportPolicy,
    /// `None` for a successful session.
    pub failure: Option<SessionFailure>,
}

/// RFC 8460 §4.4 `failure-details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionFailure {
    pub result_type: ResultType,
    pub sending_mta_ip: Option<std::net::IpAddr>,
    pub receiving_mx_hostname: Option<String>,
    pub receiving_mx_helo: Option<String>,
    pub receiving_ip: Option<std::net::IpAddr>,
    pub additional_information: Option<String>,
    pub failure_reason_code: Option<String>,
}
