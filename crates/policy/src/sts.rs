//! MTA-STS (RFC 8461): the TXT record, the policy text and MX pattern matching.
//!
//! Parsing only; fetching and caching are `strictmx-resolve`'s job, and applying a policy to a
//! destination is the planner's.

use serde::Serialize;

/// RFC 8461 §3.2 `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StsMode {
    Enforce,
    Testing,
    None,
}

/// A parsed MTA-STS policy (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsPolicy {
    pub mode: StsMode,
    /// The `mx` patterns, lowercase, in order; `*.` prefixes kept.
    pub mx: Vec<String>,
    /// Seconds.
    pub max_age: u64,
}
