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
#[serde(tag = "kind", rename_all = "kebab-case")]
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
}
