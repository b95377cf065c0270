//! Per-domain rules written by administrators: what they match and what they demand.
//!
//! `strictmx-config` builds these from `[[rule]]` tables; the planner applies them on top of
//! what the destination publishes. A rule can only tighten, except through the explicitly named
//! `insecure_relax` override, which the planner logs in the plan's `why`.

use serde::Serialize;

/// Matches a recipient domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "domain", rename_all = "kebab-case")]
pub enum DomainPattern {
    /// This domain only, lowercase, no trailing dot.
    Exact(String),
    /// `*.example.com`: any name below `example.com` (at any depth), not `example.com` itself.
    /// Holds `example.com`.
    Below(String),
}

/// Matches the envelope sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum SenderPattern {
    /// `reset@app.example`: this address (local part compared exactly, domain case-insensitively).
    Address(String),
    /// `@app.example`: any sender in this domain. Holds `app.example`.
    Domain(String),
}

/// The least a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MinRequirement {
    Opportunistic,
    Encrypted,
    /// A web PKI certificate for the MX host name, or DANE.
    Verified,
    /// Only hosts with usable DANE TLSA records; anything else defers.
    DaneOnly,
}

/// A TLS protocol version floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// A pinned certificate or key: the peer's chain must contain a match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Pin {
    /// SHA-256 of a certificate's SubjectPublicKeyInfo (DER).
    Spki { sha256: [u8; 32] },
    /// SHA-256 of a whole certificate (DER).
    Certificate { sha256: [u8; 32] },
}

/// How far a rule may relax a published policy (MTA-STS or DANE) for a broken receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relax {
    /// TLS stays mandatory; the certificate is not checked.
    Encrypted,
}

/// One administrator rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// For `why` trails and `explain`: the rule's `name`, or its position in the file.
    pub name: String,
    /// Empty: every recipient domain.
    pub domains: Vec<DomainPattern>,
    /// Empty: every sender.
    pub senders: Vec<SenderPattern>,
    pub require: Option<MinRequirement>,
    pub pins: Vec<Pin>,
    pub min_tls_version: Option<TlsVersion>,
    /// Defer instead of delivering when policy cannot be determined (DNS failure, an MTA-STS
    /// policy that cannot be fetched with nothing cached, broken DNSSEC).
    pub fail_closed: bool,
    pub insecure_relax: Option<Relax>,
}
