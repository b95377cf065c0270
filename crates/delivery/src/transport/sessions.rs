//! The TLSRPT view of one delivery job: one `SessionResult` per TLS negotiation attempt
//! (RFC 8460 §4.4), plus the policy failures found before any connection.
//!
//! What counts as a failure and under which result type is the policy's decision
//! (`judge_peer`, `judge_testing`, `judge_without_tls`); counting and reporting the results is
//! `strictmx-tlsrpt`'s. Sessions of TLSRPT reports themselves are dropped (RFC 8460 §3).

use strictmx_policy::report::{
    PolicyType, ReportPolicy, ResultType, SessionFailure, SessionResult,
};
use strictmx_policy::{
    HostPolicyFailure, NoTls, PeerFacts, PeerFailure, PlannedHost, TlsaFacts, judge_testing,
    judge_without_tls, testing_without_tls,
};

use crate::transport::attempt::AttemptScope;
use crate::transport::facts::Destination;

/// The session results of one job, in the order they happened.
#[derive(Debug)]
pub(crate) struct SessionLog {
    domain: String,
    /// False when the job carries only TLSRPT reports: nothing is reported then.
    pub(crate) counted: bool,
    results: Vec<SessionResult>,
    /// Hosts already counted by `refused_hosts`, with the result type.
    refused: Vec<(String, ResultType)>,
}

impl SessionLog {
    pub(crate) fn new(domain: &str) -> Self {
        SessionLog {
            domain: domain.to_owned(),
            counted: true,
            results: Vec::new(),
            refused: Vec::new(),
        }
    }

    pub(crate) fn into_results(self) -> Vec<SessionResult> {
        if self.counted {
            self.results
        } else {
            Vec::new()
        }
    }

    /// RFC 8460 §4.3.2: failures of the policy itself, before any connection: an MTA-STS
    /// policy that could not be fetched, TLSA answers that did not validate.
    pub(crate) fn policy_failures(&mut self, destination: &Destination) {
        let Destination::Mx(facts) = destination else {
            return;
        };
        if let Some(fetch) = &facts.sts.fetch_failure {
            let policy = ReportPolicy {
                policy_type: PolicyType::Sts,
                policy_string: Vec::new(),
                policy_domain: self.domain.clone(),
                mx_host: Vec::new(),
            };
            self.push_failure(policy, fetch.result_type, None, &fetch.reason);
        }
        for host in &facts.hosts {
            if let TlsaFacts::Failed { reason, .. } = &host.tlsa {
                let policy = ReportPolicy {
                    policy_type: PolicyType::Tlsa,
                    policy_string: Vec::new(),
                    policy_domain: host.name.clone(),
                    mx_host: vec![host.name.clone()],
                };
                let name = Some(host.name.clone());
                self.push_failure(policy, ResultType::DnssecInvalid, name, reason);
            }
        }
    }

    /// RFC 8460 §4.3: hosts the plan refused (not in the MTA-STS `mx` list, no DANE where a rule
    /// demands it) are failures without a session; each is counted once per job, however many
    /// messages' plans refused it. TLSA lookups that failed are counted from the facts already.
    pub(crate) fn refused_hosts(&mut self, failures: &[HostPolicyFailure]) {
        for failure in failures.iter().filter(|f| f.enforced) {
            let Some(result_type) = failure.result_type else {
                continue;
            };
            let seen = |(host, seen_type): &(String, ResultType)| {
                *host == failure.host && *seen_type == result_type
            };
            if result_type == ResultType::DnssecInvalid || self.refused.iter().any(seen) {
                continue;
            }
            self.refused.push((failure.host.clone(), result_type));
            let mx = Some(failure.host.clone());
            self.push_failure(failure.report.clone(), result_type, mx, &failure.reason);
        }
    }

    /// A session that did not reach TLS: STARTTLS missing or refused, or a failed handshake.
    /// Under MTA-STS `testing` the failure is what enforce mode would have reported.
    pub(crate) fn without_tls(&mut self, scope: &AttemptScope, host: &PlannedHost, what: &NoTls) {
        let failure = if host.testing.is_some() {
            testing_without_tls(host, what)
        } else {
            judge_without_tls(host, what).err()
        };
        // Opportunistic sessions without TLS are failures to negotiate it all the same
        // (RFC 8460 §4.3.1), though they may carry mail.
        let failure = failure.unwrap_or_else(|| PeerFailure {
            result_type: match what {
                NoTls::NotOffered => ResultType::StarttlsNotSupported,
                NoTls::HandshakeFailed { .. } => ResultType::ValidationFailure,
            },
            reason: match what {
                NoTls::NotOffered => "STARTTLS not offered".to_owned(),
                NoTls::HandshakeFailed { reason } => reason.clone(),
            },
        });
        self.session(scope, host, Some(&failure));
    }

    /// RFC 8461 §5: under `testing`, the session is reported as enforce mode would have judged
    /// it, while delivery goes on under the plan.
    pub(crate) fn testing(&mut self, scope: &AttemptScope, host: &PlannedHost, peer: &PeerFacts) {
        if host.testing.is_none() {
            return;
        }
        let failure = judge_testing(host, peer);
        if let Some(failure) = &failure {
            tracing::warn!(
                domain = %self.domain,
                mx = %host.host,
                result_type = failure.result_type.as_str(),
                reason = %failure.reason,
                "mta-sts testing: enforce mode would have refused this peer"
            );
        }
        self.session(scope, host, failure.as_ref());
    }

    /// The policy's judgement of a TLS session (already reported under `testing`).
    pub(crate) fn judged(
        &mut self,
        scope: &AttemptScope,
        host: &PlannedHost,
        failure: Option<&PeerFailure>,
    ) {
        if host.testing.is_none() {
            self.session(scope, host, failure);
        }
    }

    fn session(&mut self, scope: &AttemptScope, host: &PlannedHost, failure: Option<&PeerFailure>) {
        self.results.push(SessionResult {
            report_domain: self.domain.clone(),
            policy: host.report.clone(),
            failure: failure.map(|failure| SessionFailure {
                result_type: failure.result_type,
                sending_mta_ip: scope.local_ip,
                receiving_mx_hostname: Some(host.host.clone()),
                receiving_mx_helo: scope.peer_helo.clone(),
                receiving_ip: scope.ip,
                additional_information: Some(failure.reason.clone()),
                failure_reason_code: None,
            }),
        });
    }

    fn push_failure(
        &mut self,
        policy: ReportPolicy,
        result_type: ResultType,
        mx: Option<String>,
        reason: &str,
    ) {
        self.results.push(SessionResult {
            report_domain: self.domain.clone(),
            policy,
            failure: Some(SessionFailure {
                result_type,
                sending_mta_ip: None,
                receiving_mx_hostname: mx,
                receiving_mx_helo: None,
                receiving_ip: None,
                additional_information: Some(reason.to_owned()),
                failure_reason_code: None,
            }),
        });
    }
}
