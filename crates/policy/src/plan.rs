//! Builds the `DeliveryPlan` for one destination: which hosts, in which order, with which TLS need.
//!
//! The plan's types live here, with the MX answer's rules (RFC 5321 §5.1, RFC 7505) that come
//! before any policy; [`plan_delivery`] and [`plan_route_delivery`] apply the whole precedence
//! (REQUIRETLS, DANE, MTA-STS, rules, the default, `TLS-Required: No`) to
//! [`DomainFacts`](crate::DomainFacts). Executing the plan (connecting, STARTTLS, verifying) is
//! the delivery transport's job.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use strictmx_protocol::{EnhancedStatus, status};

use crate::facts::{MxFacts, MxHost, TlsaRecord};
use crate::report::{ReportPolicy, ResultType};

pub(crate) mod delivery;

pub use delivery::{plan_delivery, plan_route_delivery};

/// What the TLS session with one candidate host must achieve before `MAIL FROM` may be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TlsRequirement {
    /// Try STARTTLS, accept any certificate, record whether it would have verified; plaintext when
    /// the server offers no STARTTLS.
    Opportunistic,
    /// STARTTLS is mandatory; any certificate is accepted (its verification is still recorded).
    Encrypted,
    /// STARTTLS is mandatory and the certificate must chain to a trusted root and match one of
    /// `names` (RFC 8461 §4.1 style: the MX host name).
    Verified { names: Vec<String> },
    /// STARTTLS is mandatory and the chain must match one of `records` (RFC 7672 §3.1): the
    /// usable TLSA records only. `names` are the reference identifiers for DANE-TA(2) (RFC
    /// 7672 §3.2.2: the TLSA base domain, then the MX host name when different); DANE-EE(3)
    /// ignores names and validity dates. Judge sessions with [`crate::judge_peer`].
    Dane {
        records: Vec<TlsaRecord>,
        names: Vec<String>,
    },
}

impl TlsRequirement {
    /// Whether a session without TLS may carry mail under this requirement.
    pub fn allows_plaintext(&self) -> bool {
        matches!(self, TlsRequirement::Opportunistic)
    }

    /// The names a certificate must match when authentication is mandatory; `None` otherwise.
    ///
    /// For `Dane` these are the DANE-TA reference identifiers; `Some` there also means "the
    /// peer must be authenticated", so a caller that only knows web PKI fails closed.
    pub fn required_names(&self) -> Option<&[String]> {
        match self {
            TlsRequirement::Verified { names } | TlsRequirement::Dane { names, .. } => Some(names),
            TlsRequirement::Opportunistic | TlsRequirement::Encrypted => None,
        }
    }

    /// Whether the peer must be authenticated (web PKI or DANE) before `MAIL FROM`.
    pub fn requires_authentication(&self) -> bool {
        matches!(
            self,
            TlsRequirement::Verified { .. } | TlsRequirement::Dane { .. }
        )
    }

    /// Short label for logs, metrics and attempt records.
    pub fn as_str(&self) -> &'static str {
        match self {
            TlsRequirement::Opportunistic => "opportunistic",
            TlsRequirement::Encrypted => "encrypted",
            TlsRequirement::Verified { .. } => "verified",
            TlsRequirement::Dane { .. } => "dane",
        }
    }
}

/// The requirement applied when nothing stronger is known about a destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultRequirement {
    #[default]
    Opportunistic,
    Encrypted,
    Verified,
}

/// The policy settings the planner reads; built by `strictmx-config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySettings {
    pub default_requirement: DefaultRequirement,
    /// Opportunistic plans only: after a failed TLS handshake, reconnect and deliver in
    /// plaintext. Off by default, because an active attacker can force that failure.
    pub insecure_plaintext_fallback: bool,
    /// Administrator rules, in file order; [`plan_delivery`] combines all that match.
    pub rules: Vec<crate::rules::Rule>,
}

/// Which rule produced the plan; recorded in every attempt record and shown by `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyLabel {
    DefaultOpportunistic,
    DefaultEncrypted,
    DefaultVerified,
    /// A configured route sent the domain to a fixed next hop instead of its MX.
    Route,
    /// At least one host is under DANE (RFC 7672).
    Dane,
    /// An MTA-STS policy in `enforce` mode (RFC 8461 §5).
    StsEnforce,
    /// An MTA-STS policy in `testing` mode: evaluated and reported, not enforced.
    StsTesting,
    /// An administrator rule raised the requirement.
    Rule,
    /// An administrator rule relaxed a published or default requirement (`insecure_relax`).
    RuleRelaxed,
    /// The message demands REQUIRETLS (RFC 8689).
    Requiretls,
    /// The message's `TLS-Required: No` was honoured (RFC 8689 §5).
    TlsRequiredNo,
    /// The submitter's per-message TLS floor raised the requirement.
    MessageFloor,
}

impl PolicyLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyLabel::DefaultOpportunistic => "default-opportunistic",
            PolicyLabel::DefaultEncrypted => "default-encrypted",
            PolicyLabel::DefaultVerified => "default-verified",
            PolicyLabel::Route => "route",
            PolicyLabel::Dane => "dane",
            PolicyLabel::StsEnforce => "sts-enforce",
            PolicyLabel::StsTesting => "sts-testing",
            PolicyLabel::Rule => "rule",
            PolicyLabel::RuleRelaxed => "rule-relaxed",
            PolicyLabel::Requiretls => "requiretls",
            PolicyLabel::TlsRequiredNo => "tls-required-no",
            PolicyLabel::MessageFloor => "message-floor",
        }
    }
}

impl fmt::Display for PolicyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host delivery may use, with what its TLS session must achieve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedHost {
    /// Host name (or, for a route, possibly an IP literal), lowercase, no trailing dot.
    pub host: String,
    pub preference: u16,
    pub requirement: TlsRequirement,
    /// From rules: the end-entity certificate must match one of these, or validate to a pinned
    /// issuer it presents (when non-empty; `peer::judge_peer`).
    pub pins: Vec<crate::rules::Pin>,
    /// From rules: the lowest TLS version accepted, when TLS is used.
    pub min_tls_version: Option<crate::rules::TlsVersion>,
    /// The policy this host's sessions are reported under (RFC 8460 §4.4).
    pub report: crate::report::ReportPolicy,
    /// MTA-STS `testing` (RFC 8461 §5): what enforce mode would have required; evaluated and
    /// reported, never enforced.
    pub testing: Option<TlsRequirement>,
}

/// The ordered candidates for one destination domain and the reasons behind them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryPlan {
    pub domain: String,
    /// In the order they must be tried.
    pub candidates: Vec<PlannedHost>,
    pub policy: PolicyLabel,
    /// The names of the administrator rules that matched this message and domain, in file
    /// order; recorded in every attempt record, so `policy = "rule"` says which rule.
    pub rules: Vec<String>,
    /// Set only when the settings allow it and the plan is opportunistic (see
    /// [`DeliveryPlan::allows_plaintext_after_failed_handshake`]).
    pub insecure_plaintext_fallback: bool,
    /// RFC 8689 §4.2: the next hop must advertise REQUIRETLS and receive the parameter. False
    /// for a null-sender report about a REQUIRETLS message, which RFC 8689 §5 keeps from being
    /// discarded at a next hop without REQUIRETLS; its hosts still meet every other REQUIRETLS
    /// condition (authenticated MX choice, verified TLS) and get the parameter where offered.
    pub requiretls: bool,
    /// Hosts policy kept out of `candidates` (`enforced`), or that MTA-STS `testing` would have
    /// kept out (not `enforced`), with what TLSRPT reports for them.
    pub policy_failures: Vec<HostPolicyFailure>,
    /// Human-readable trail of the decisions taken, in order.
    pub why: Vec<String>,
}

impl DeliveryPlan {
    /// What becomes of a message no host took, given the last host's failure `code`, whether
    /// that failure was one of the REQUIRETLS conditions, and whether any host failed only
    /// transiently. RFC 8689 §4.2.1: when no MX host meets the REQUIRETLS conditions, "the
    /// client MUST NOT transmit the message" and sends a non-delivery notification; so a
    /// REQUIRETLS plan whose hosts all failed those conditions bounces, with X.7.10 for a
    /// missing STARTTLS and the failed condition's own code (X.7.30, X.7.4, X.7.5) made
    /// permanent otherwise. `None`: the message defers with `code` (a host that was
    /// unreachable or said 4xx may meet the conditions later).
    pub fn requiretls_bounce(
        &self,
        code: EnhancedStatus,
        failed_condition: bool,
        transient_seen: bool,
    ) -> Option<EnhancedStatus> {
        if !(self.requiretls && failed_condition && !transient_seen) {
            return None;
        }
        Some(if code == status::SECURITY_NOT_SUPPORTED {
            status::ENCRYPTION_NEEDED
        } else {
            code.permanent()
        })
    }

    /// Whether, after a failed TLS handshake with `host`, a plaintext reconnect may carry mail.
    pub fn allows_plaintext_after_failed_handshake(&self, host: &PlannedHost) -> bool {
        self.insecure_plaintext_fallback && host.requirement.allows_plaintext()
    }
}

/// A host that policy rejected before any connection, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPolicyFailure {
    pub host: String,
    /// The policy the failure is reported under (RFC 8460 §4.4).
    pub report: ReportPolicy,
    /// The RFC 8460 §4.3 result type, when the failure is one TLSRPT reports.
    pub result_type: Option<ResultType>,
    pub reason: String,
    /// `true`: the host was not used; `false`: MTA-STS testing mode, the host was still used.
    pub enforced: bool,
}

/// What to do with the mail for one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PlanOutcome {
    Deliver(DeliveryPlan),
    /// Final: the destination will never accept this mail. `status` is an enhanced status code.
    Bounce {
        status: String,
        reason: String,
        /// The trail of decisions that led here (the MX answer, matching rules), as in a plan.
        why: Vec<String>,
    },
    /// Try again later; nothing was decided against the mail.
    Defer {
        reason: String,
        /// The hosts policy refused, for TLSRPT (RFC 8460 §4.3); empty when the deferral is
        /// not about particular hosts.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        policy_failures: Vec<HostPolicyFailure>,
        /// The trail of decisions that led here, as in a plan.
        why: Vec<String>,
    },
}

impl PlanOutcome {
    /// The decision trail, whatever the outcome.
    pub fn why(&self) -> &[String] {
        match self {
            PlanOutcome::Deliver(plan) => &plan.why,
            PlanOutcome::Bounce { why, .. } | PlanOutcome::Defer { why, .. } => why,
        }
    }

    /// Gives a bounce or deferral `trail`, the steps taken before it; a plan keeps its own.
    fn with_trail(self, trail: Vec<String>) -> PlanOutcome {
        match self {
            PlanOutcome::Deliver(plan) => PlanOutcome::Deliver(plan),
            PlanOutcome::Bounce { status, reason, .. } => PlanOutcome::Bounce {
                status,
                reason,
                why: trail,
            },
            PlanOutcome::Defer {
                reason,
                policy_failures,
                ..
            } => PlanOutcome::Defer {
                reason,
                policy_failures,
                why: trail,
            },
        }
    }
}

/// The MX hosts delivery may use in order, or the outcome when MX facts allow no delivery.
fn mx_candidates(
    domain: &str,
    facts: &MxFacts,
    why: &mut Vec<String>,
) -> Result<Vec<MxHost>, Box<PlanOutcome>> {
    let hosts = match facts {
        // RFC 7505 §3: a null MX means the domain accepts no mail: fail at once with 5.1.10.
        MxFacts::Null => {
            why.push(format!(
                "{domain} publishes a null MX: it accepts no mail (RFC 7505 §3), so the mail \
                 bounces at once"
            ));
            return Err(Box::new(bounce(
                "5.1.10",
                format!("{domain} publishes a null MX and accepts no mail (RFC 7505)"),
            )));
        }
        // RFC 5321 §5.1: a non-existent domain "MUST be reported as an error".
        MxFacts::NoSuchDomain => {
            why.push(format!(
                "MX lookup: {domain} does not exist (NXDOMAIN); a permanent answer, which RFC \
                 5321 §5.1 says must be reported as an error: bounce"
            ));
            return Err(Box::new(bounce(
                "5.1.2",
                format!("{domain} does not exist (NXDOMAIN)"),
            )));
        }
        // RFC 5321 §4.1.2: only a host name can be looked up; RFC 3463 X.1.3: bad address syntax.
        MxFacts::NotAHostName { reason } => {
            why.push(format!(
                "{domain} is not a host name (RFC 5321 §4.1.2), so nothing was looked up: bounce"
            ));
            return Err(Box::new(bounce(
                "5.1.3",
                format!("{domain} is not a valid host name: {reason}"),
            )));
        }
        // RFC 5321 §5.1: a temporary error means the message "MUST be queued and retried later".
        // The reason already names the lookup and the domain ("MX lookup for x timed out").
        MxFacts::Unavailable { reason } => {
            why.push(format!(
                "MX lookup failed: {reason}; a temporary failure, so the mail is queued and \
                 retried later (RFC 5321 §5.1)"
            ));
            return Err(Box::new(PlanOutcome::Defer {
                reason: reason.clone(),
                policy_failures: Vec::new(),
                why: Vec::new(),
            }));
        }
        // RFC 5321 §5.1: no MX records, so the domain itself acts as an MX with preference 0.
        MxFacts::Implicit { host } => {
            why.push(format!("{domain} has no MX records: implicit MX 0 {host}"));
            vec![MxHost {
                name: normalise(host),
                preference: 0,
            }]
        }
        MxFacts::Hosts(records) => match usable_mx_hosts(domain, records, why) {
            Some(hosts) => hosts,
            None => {
                // RFC 5321 §5.1: "If MX records are present, but none of them are usable, this
                // situation MUST be reported as an error."
                why.push(
                    "MX records present but none usable: an error (RFC 5321 §5.1): bounce"
                        .to_owned(),
                );
                return Err(Box::new(bounce(
                    "5.4.4",
                    format!("no usable MX host for {domain}"),
                )));
            }
        },
    };
    Ok(hosts)
}

/// A bounce whose trail [`PlanOutcome::with_trail`] fills in.
fn bounce(status: &str, reason: String) -> PlanOutcome {
    PlanOutcome::Bounce {
        status: status.to_owned(),
        reason,
        why: Vec::new(),
    }
}

/// Keeps the MX records delivery may use, in preference order, noting each one dropped.
fn usable_mx_hosts(domain: &str, records: &[MxHost], why: &mut Vec<String>) -> Option<Vec<MxHost>> {
    let mut hosts: Vec<MxHost> = Vec::with_capacity(records.len());
    for record in records {
        let name = normalise(&record.name);
        if let Some(problem) = unusable_exchange(&name) {
            why.push(format!(
                "ignored MX {} {}: {problem}",
                record.preference, record.name
            ));
            continue;
        }
        hosts.push(MxHost {
            name,
            preference: record.preference,
        });
    }
    // RFC 5321 §5.1: MX records are tried in order of preference, lowest first. The sort is
    // stable, so the resolver's random order among equal preferences survives.
    hosts.sort_by_key(|host| host.preference);
    if hosts.is_empty() {
        why.push(format!("{domain}: none of its MX hosts is usable"));
        return None;
    }
    Some(hosts)
}

/// Why an MX exchange cannot be used, or `None` when it can.
fn unusable_exchange(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        // RFC 7505 §3: "." is the null MX; mixed with other MX records it is ignored.
        return Some("the root name is not a host");
    }
    // RFC 5321 §5.1: the data field of an MX record "MUST contain a domain name".
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok() {
        return Some("an IP address is not a domain name");
    }
    // RFC 6761 §6.3: localhost names are the local host; delivering there would loop.
    if name == "localhost" || name.ends_with(".localhost") {
        return Some("a localhost name points back at this host");
    }
    None
}

/// RFC 8460 §4.4: the report identity of a session under no published policy.
fn no_policy_found(domain: &str) -> ReportPolicy {
    ReportPolicy {
        policy_type: crate::report::PolicyType::NoPolicyFound,
        policy_string: Vec::new(),
        policy_domain: domain.to_owned(),
        mx_host: Vec::new(),
    }
}

fn default_requirement(default: DefaultRequirement, host: &str) -> TlsRequirement {
    match default {
        DefaultRequirement::Opportunistic => TlsRequirement::Opportunistic,
        DefaultRequirement::Encrypted => TlsRequirement::Encrypted,
        // RFC 8461 §4.1 style: the certificate must match the MX host name itself.
        DefaultRequirement::Verified => TlsRequirement::Verified {
            names: vec![host.to_owned()],
        },
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
