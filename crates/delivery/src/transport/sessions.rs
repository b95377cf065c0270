//! The TLSRPT view of one delivery job: one `SessionResult` per TLS negotiation attempt
//! (RFC 8460 §4.4), plus the policy failures found before any connection.
//!
//! What counts as a failure and under which result type is the policy's decision
//! (`report_tls_session`, `report_without_tls`); counting and reporting the results is
//! `strictmx-tlsrpt`'s. Sessions of TLSRPT reports themselves are dropped (RFC 8460 §3).

use std::collections::BTreeMap;
use std::net::IpAddr;
use strictmx_policy::report::{
    PolicyType, ReportPolicy, ResultType, SessionFailure, SessionResult,
};

use strictmx_policy::{
    HostPolicyFailure, PlannedHost, TlsaFacts, report_tls_session, report_without_tls,
};

use crate::transport::facts::Destination;
use crate::transport::negotiation::{Negotiation, TlsOutcome};

/// The session results of one job, in the order they happened.
#[derive(Debug)]
pub(crate) struct SessionLog {
    domain: String,
    /// False when the job carries only TLSRPT reports: nothing is reported then.
    pub(crate) counted: bool,
    results: Vec<SessionResult>,
    /// Hosts already counted by `refused_hosts`, with the result type.
    refused: Vec<(String, ResultType)>,
    /// Per MX host connected to: whether it offered STARTTLS, and REQUIRETLS after it.
    pub(crate) offered: Offered,
}

/// What the hosts of one job offered, for the destination's posture.
#[derive(Debug, Default)]
pub(crate) struct Offered {
    pub(crate) starttls: BTreeMap<String, bool>,
    pub(crate) requiretls: BTreeMap<String, bool>,
}

impl SessionLog {
    pub(crate) fn new(domain: &str) -> Self {
        SessionLog {
            domain: domain.to_owned(),
            counted: true,
            results: Vec::new(),
            refused: Vec::new(),
            offered: Offered::default(),
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

    /// One connection's TLS negotiation, once: a session without TLS, or a TLS session as the
    /// policy judged it (under `testing`, as enforce mode would have).
    pub(crate) fn negotiated(
        &mut self,
        ip: Option<IpAddr>,
        host: &PlannedHost,
        negotiation: &Negotiation,
    ) {
        if let Some(offered) = negotiation.tls.starttls_offered() {
            self.offered.starttls.insert(host.host.clone(), offered);
        }
        if let TlsOutcome::Established {
            requiretls_offered: Some(offered),
            ..
        } = &negotiation.tls
        {
            self.offered.requiretls.insert(host.host.clone(), *offered);
        }
        let failure = match &negotiation.tls {
            TlsOutcome::Skipped | TlsOutcome::Interrupted => return,
            TlsOutcome::Without(what) => Some(report_without_tls(host, what)),
            TlsOutcome::Established { peer, verdict, .. } => {
                let failure = report_tls_session(host, peer, verdict);
                if let (Some(failure), Some(_)) = (&failure, &host.testing) {
                    tracing::warn!(
                        domain = %self.domain,
                        mx = %host.host,
                        result_type = failure.result_type.as_str(),
                        reason = %failure.reason,
                        "mta-sts testing: enforce mode would have refused this peer"
                    );
                }
                failure
            }
        };
        self.results.push(SessionResult {
            report_domain: self.domain.clone(),
            policy: host.report.clone(),
            failure: failure.map(|failure| SessionFailure {
                result_type: failure.result_type,
                sending_mta_ip: negotiation.local_ip,
                receiving_mx_hostname: Some(host.host.clone()),
                receiving_mx_helo: negotiation.peer_helo.clone(),
                receiving_ip: ip,
                additional_information: Some(failure.reason),
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

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use strictmx_policy::report::{PolicyType, ReportPolicy, ResultType};
    use strictmx_policy::rules::TlsVersion;
    use strictmx_policy::{NoTls, PeerAuth, PeerFacts, TlsRequirement, WebpkiVerdict};

    use super::*;
    use crate::transport::tls::{CertificateCheck, TlsInfo};

    fn host() -> PlannedHost {
        planned_host(TlsRequirement::Opportunistic)
    }

    /// `mx.example` planned under `requirement`, reported as no policy found.
    pub(crate) fn planned_host(requirement: TlsRequirement) -> PlannedHost {
        PlannedHost {
            host: "mx.example".to_owned(),
            preference: 10,
            requirement,
            pins: Vec::new(),
            min_tls_version: None,
            report: ReportPolicy {
                policy_type: PolicyType::NoPolicyFound,
                policy_string: Vec::new(),
                policy_domain: "example".to_owned(),
                mx_host: Vec::new(),
            },
            testing: None,
        }
    }

    fn negotiation(tls: TlsOutcome) -> Negotiation {
        Negotiation {
            local_ip: Some(Ipv4Addr::new(192, 0, 2, 1).into()),
            peer_helo: Some("mx.example".to_owned()),
            tls,
        }
    }

    fn established() -> TlsOutcome {
        TlsOutcome::Established {
            info: TlsInfo {
                version: "TLSv1.3".to_owned(),
                cipher: "TLS13_AES_128_GCM_SHA256".to_owned(),
                certificate: CertificateCheck::Verified,
                resumed: false,
            },
            peer: Box::new(PeerFacts {
                tls_version: TlsVersion::Tls13,
                chain: Vec::new(),
                webpki: WebpkiVerdict::Valid,
                dane_ta: None,
                pin_anchor: None,
            }),
            verdict: Ok(PeerAuth::Webpki),
            requiretls_offered: Some(true),
        }
    }

    // RFC 8460 §4.4: one result per negotiation attempt, with the addresses and EHLO name of
    // the connection; a plaintext retry and a connection lost during STARTTLS count nothing.
    #[test]
    fn each_connection_is_reported_once_with_its_own_facts() {
        let ip = Some(Ipv4Addr::new(198, 51, 100, 7).into());
        let rows = [
            (
                "a plaintext retry was reported before",
                TlsOutcome::Skipped,
                None,
            ),
            ("no handshake result", TlsOutcome::Interrupted, None),
            (
                "RFC 8460 §4.3.1: no STARTTLS",
                TlsOutcome::Without(NoTls::NotOffered),
                Some(Some(ResultType::StarttlsNotSupported)),
            ),
            (
                "RFC 8460 §4.4: a successful session",
                established(),
                Some(None),
            ),
        ];
        for (rule, tls, expected) in rows {
            let mut log = SessionLog::new("example");
            log.negotiated(ip, &host(), &negotiation(tls));
            let results = log.into_results();
            let got = results
                .first()
                .map(|r| r.failure.as_ref().map(|f| f.result_type));
            assert_eq!(got, expected, "{rule}");
            assert!(results.len() <= 1, "{rule}");
            if let Some(failure) = results.first().and_then(|r| r.failure.as_ref()) {
                assert_eq!(failure.receiving_ip, ip, "{rule}");
                assert_eq!(
                    failure.sending_mta_ip,
                    Some(Ipv4Addr::new(192, 0, 2, 1).into())
                );
                assert_eq!(failure.receiving_mx_helo.as_deref(), Some("mx.example"));
            }
        }
    }
}
