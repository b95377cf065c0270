//! The facts the planner decides from: a plain data mirror of what DNS said about a domain's MX.
//!
//! `strictmx-resolve` produces these; the planner never learns how they were obtained. A DNSSEC
//! status per answer will be added as a field when the DANE issue lands.

use serde::Serialize;

/// One MX record: an exchange host name and its preference (lower is preferred).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxHost {
    /// The exchange, lowercase, without the trailing dot.
    pub name: String,
    pub preference: u16,
}

/// What is known about the mail exchangers of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum MxFacts {
    /// The MX RRset, in the order the resolver chose (sorted by preference, shuffled within).
    Hosts(Vec<MxHost>),
    /// RFC 7505: the domain publishes a null MX and accepts no mail.
    Null,
    /// RFC 5321 §5.1: no MX records, but the domain exists; its A/AAAA act as MX 0.
    Implicit { host: String },
    /// The domain does not exist (NXDOMAIN): a permanent answer.
    NoSuchDomain,
    /// The answer could not be obtained (timeout, SERVFAIL, refused): a transient condition.
    Unavailable { reason: String },
    /// The domain is not a host name (RFC 5321 §4.1.2), so nothing was looked up: permanent.
    NotAHostName { reason: String },
}

/// The DNSSEC status of one DNS answer (RFC 4035 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dnssec {
    /// Validated from a trust anchor (or vouched for by a trusted validating resolver's AD bit).
    Secure,
    /// Provably unsigned: the zone has no chain of trust.
    Insecure,
    /// Signed, but validation failed: an attack or a broken zone.
    Bogus,
    /// The status could not be determined (timeout, SERVFAIL, resolver without DNSSEC).
    Indeterminate,
}

impl Dnssec {
    /// The status as RFC 4035 §4.3 names it, lowercase, for reasons and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Dnssec::Secure => "secure",
            Dnssec::Insecure => "insecure",
            Dnssec::Bogus => "bogus",
            Dnssec::Indeterminate => "indeterminate",
        }
    }
}

/// One TLSA record (RFC 6698 §2.1), as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsaRecord {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0 full certificate, 1 SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 exact, 1 SHA2-256, 2 SHA2-512.
    pub matching_type: u8,
    #[serde(serialize_with = "hex")]
    pub data: Vec<u8>,
}

fn hex<S: serde::Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex_string(data))
}

/// Lowercase hexadecimal, two digits per byte.
pub(crate) fn hex_string(data: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(data.len() * 2);
    for byte in data {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// What the TLSA lookup for one MX host found (RFC 7672 §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TlsaFacts {
    /// Not looked up, because the MX RRset or the host's address records are not secure
    /// (RFC 7672 §2.2.1, §2.2.2); `reason` says which.
    NotApplicable { reason: String },
    /// No usable answer exists: a secure denial, or an answer from an insecure zone.
    Absent { reason: String },
    /// A secure TLSA RRset found at `_25._tcp.<base_domain>`.
    Records {
        /// The TLSA base domain (RFC 7672 §2.2.2: the CNAME-expanded host name when that was
        /// secure, otherwise the original MX host name).
        base_domain: String,
        records: Vec<TlsaRecord>,
    },
    /// Bogus, or the lookup failed (SERVFAIL, timeout): the host must not be used (RFC 7672
    /// §2.1.1); never a fallback to no DANE.
    Failed { dnssec: Dnssec, reason: String },
}

/// What was learned about one candidate host: its addresses and TLSA records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// The exchange name as in the MX record (or the implicit MX / route host), lowercase.
    pub name: String,
    /// The name the address lookup ended at after following CNAMEs, when different.
    pub canonical: Option<String>,
    /// The addresses to connect to, or why there are none.
    pub addresses: Result<Vec<std::net::IpAddr>, AddressFailure>,
    /// The DNSSEC status of the address records (the weakest of A and AAAA).
    pub addresses_dnssec: Dnssec,
    pub tlsa: TlsaFacts,
}

/// Why a host has no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressFailure {
    /// Transient (timeout, SERVFAIL) rather than a final "no such host".
    pub transient: bool,
    pub reason: String,
}

/// One MTA-STS policy as fetched (RFC 8461 §3.2), with its raw text for TLSRPT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsPolicyFacts {
    pub policy: crate::sts::StsPolicy,
    /// The policy body exactly as fetched; TLSRPT's `policy-string` is its lines.
    pub text: String,
    /// The `id` of the TXT record the policy was fetched under.
    pub id: String,
    /// Seconds since the Unix epoch.
    pub fetched_at: u64,
    /// `fetched_at + max_age`: the policy is not used after this.
    pub expires_at: u64,
    /// Whether this came from the cache rather than this lookup's fetch.
    pub from_cache: bool,
}

/// The state of the `_mta-sts` TXT record (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StsRecordFacts {
    /// No `v=STSv1` TXT record.
    Absent,
    Present {
        id: String,
    },
    /// More than one `v=STSv1` record, or one that does not parse: "no policy" (RFC 8461 §3.1).
    Invalid {
        reason: String,
    },
    /// The lookup failed transiently.
    LookupFailed {
        reason: String,
    },
}

/// Why this round's MTA-STS policy fetch failed (RFC 8460 §4.3.2 result types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsFetchFailure {
    /// `sts-policy-fetch-error`, `sts-policy-invalid` or `sts-webpki-invalid`.
    pub result_type: crate::report::ResultType,
    pub reason: String,
}

/// Everything known about a domain's MTA-STS, fresh or from the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsFacts {
    pub record: StsRecordFacts,
    /// The policy in force: freshly fetched or cached and not expired (RFC 8461 §5.1).
    pub policy: Option<StsPolicyFacts>,
    /// Set when a fetch was attempted this time and failed.
    pub fetch_failure: Option<StsFetchFailure>,
}

/// Whether this relay's DNSSEC setup passed its startup self-test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DnssecHealth {
    Working {
        mode: String,
    },
    /// The self-test failed: DANE cannot be established; TLSA answers come back indeterminate
    /// and DANE hosts defer rather than silently losing DANE.
    Broken {
        mode: String,
        reason: String,
    },
}

/// Every fact about one destination domain that the planner decides from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainFacts {
    pub domain: String,
    pub mx: MxFacts,
    /// The DNSSEC status of the MX answer (for an implicit MX: of the denial of MX records).
    pub mx_dnssec: Dnssec,
    /// In the MX order of `mx`; only hosts that were looked up.
    pub hosts: Vec<HostFacts>,
    pub sts: StsFacts,
    pub dnssec_health: DnssecHealth,
}

/// What the message itself asks for, and what its submitter may ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageFacts {
    /// The envelope sender (`MAIL FROM`), empty for the null sender.
    pub sender: String,
    /// RFC 8689 §4.1: the message was received with `MAIL FROM ... REQUIRETLS`.
    pub requiretls: bool,
    /// RFC 8689 §5: the message carries `TLS-Required: No`.
    pub tls_required_no: bool,
    /// Whether configuration lets this message's submitter relax policy with that header.
    pub submitter_may_relax: bool,
    /// The submitter's TLS floor for this message (HTTP `require_tls`, an SMTP user's
    /// `require_tls`): combined with the rules like a rule's `require`, never a relaxation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<crate::rules::MinRequirement>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_facts_with_mx_hosts_serialize_for_explain() {
        let facts = DomainFacts {
            domain: "example.org".to_owned(),
            mx: MxFacts::Hosts(vec![MxHost {
                name: "mx.example.org".to_owned(),
                preference: 10,
            }]),
            mx_dnssec: Dnssec::Secure,
            hosts: vec![HostFacts {
                name: "mx.example.org".to_owned(),
                canonical: None,
                addresses: Ok(vec!["127.0.0.1".parse().expect("literal")]),
                addresses_dnssec: Dnssec::Secure,
                tlsa: TlsaFacts::Records {
                    base_domain: "mx.example.org".to_owned(),
                    records: vec![TlsaRecord {
                        usage: 3,
                        selector: 1,
                        matching_type: 1,
                        data: vec![0xab, 0x01],
                    }],
                },
            }],
            sts: StsFacts {
                record: StsRecordFacts::Absent,
                policy: None,
                fetch_failure: None,
            },
            dnssec_health: DnssecHealth::Working {
                mode: "validate".to_owned(),
            },
        };
        let json = serde_json::to_value(&facts).expect("facts serialize");
        assert_eq!(json["mx"]["kind"], "hosts");
        assert_eq!(json["mx"]["value"][0]["name"], "mx.example.org");
        assert_eq!(json["hosts"][0]["tlsa"]["records"][0]["data"], "ab01");
    }
}
