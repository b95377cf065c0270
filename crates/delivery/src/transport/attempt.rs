//! The one place where a delivery attempt becomes an `AttemptRecord`, a log record and a metric.
//!
//! Deciding the outcome is the delivery run's job, and what a shadow rule or an exception says
//! about the attempt is the policy's (`Standing::judge`); this module only writes it down, the
//! same way every time, so that the spool, the logs and the metrics can never disagree.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use strictmx_policy::report::ResultType;
use strictmx_policy::{
    Alternatives, PeerFacts, PlannedHost, RuleTerm, SessionSeen, Standing, Verdict, VerdictOutcome,
};
use strictmx_spool::{
    AttemptOutcome, AttemptRecord, ExceptionUse, MessageId, MessageIdDisplay, PeerAuth,
    ShadowOutcome, ShadowVerdict,
};

use crate::transport::negotiation::{Negotiation, TlsOutcome};
use crate::transport::tls::TlsInfo;

/// Which kind of rule an alternative plan stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A shadow rule: the plan had it been enforced.
    Shadow,
    /// An exception: the plan without it.
    Exception,
}

/// One alternative plan's view of this attempt: where it stood before the session, and its
/// verdict once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WhatIf {
    pub(crate) kind: Kind,
    pub(crate) term: RuleTerm,
    pub(crate) standing: Standing,
    pub(crate) verdict: Option<Verdict>,
}

impl WhatIf {
    /// Every alternative's view of an attempt at `host`, in file order, shadows first.
    pub(crate) fn at_host(alternatives: &Alternatives, host: &str) -> Vec<WhatIf> {
        let of = |kind| {
            move |alternative: &strictmx_policy::Alternative| {
                let standing = alternative.standing(host);
                let verdict = match &standing {
                    Standing::Decided(verdict) => Some(verdict.clone()),
                    Standing::Judge { .. } => None,
                };
                WhatIf {
                    kind,
                    term: alternative.term.clone(),
                    standing,
                    verdict,
                }
            }
        };
        let shadows = alternatives.shadows.iter().map(of(Kind::Shadow));
        let exceptions = alternatives.exceptions.iter().map(of(Kind::Exception));
        shadows.chain(exceptions).collect()
    }
}

/// What is known about one connection attempt while it runs.
#[derive(Debug, Clone)]
pub(crate) struct AttemptScope {
    pub(crate) domain: String,
    pub(crate) policy: &'static str,
    /// The names of the rules that matched (the plan's `rules`).
    pub(crate) rules: Vec<String>,
    /// The TLS requirement applied to this host, for the log.
    pub(crate) requirement: Option<&'static str>,
    pub(crate) mx: Option<String>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) tls: Option<TlsInfo>,
    /// How the peer was authenticated, once the session passed the plan's checks.
    pub(crate) auth: PeerAuth,
    /// The RFC 8460 result type of a TLS policy failure on this attempt.
    pub(crate) result_type: Option<ResultType>,
    /// Our address on the connection, and the name the server gave (for TLSRPT).
    pub(crate) local_ip: Option<IpAddr>,
    pub(crate) peer_helo: Option<String>,
    /// What each matching shadow rule and exception says about this attempt.
    pub(crate) what_if: Vec<WhatIf>,
    at: SystemTime,
    started: Instant,
}

impl AttemptScope {
    pub(crate) fn new(domain: &str, policy: &'static str) -> Self {
        AttemptScope {
            domain: domain.to_owned(),
            policy,
            rules: Vec::new(),
            requirement: None,
            mx: None,
            ip: None,
            tls: None,
            auth: PeerAuth::None,
            result_type: None,
            local_ip: None,
            peer_helo: None,
            what_if: Vec::new(),
            at: SystemTime::now(),
            started: Instant::now(),
        }
    }

    pub(crate) fn for_host(
        domain: &str,
        policy: &'static str,
        rules: &[String],
        requirement: &'static str,
        mx: &str,
        ip: Option<IpAddr>,
        what_if: Vec<WhatIf>,
    ) -> Self {
        AttemptScope {
            rules: rules.to_vec(),
            requirement: Some(requirement),
            mx: Some(mx.to_owned()),
            ip,
            what_if,
            ..AttemptScope::new(domain, policy)
        }
    }
}

impl AttemptScope {
    /// Takes in what establishing the connection showed: addresses, TLS, authentication.
    pub(crate) fn negotiated(&mut self, negotiation: &Negotiation) {
        self.local_ip = negotiation.local_ip;
        self.peer_helo.clone_from(&negotiation.peer_helo);
        self.tls = negotiation.tls_info().cloned();
        self.auth = spool_auth(negotiation.auth());
    }

    /// Judges the session against each alternative plan that needs it; `facts_for` gives the
    /// peer facts under another host entry's certificate checks, `None` when they are the ones
    /// the session was judged with.
    pub(crate) fn judge_alternatives(
        &mut self,
        negotiation: &Negotiation,
        facts_for: impl Fn(&PlannedHost, &PeerFacts) -> Option<PeerFacts>,
    ) {
        for what_if in self.what_if.iter_mut().filter(|w| w.verdict.is_none()) {
            let Some(host) = what_if.standing.host() else {
                continue;
            };
            let no_tls;
            what_if.verdict = match &negotiation.tls {
                TlsOutcome::Established { peer, .. } => match facts_for(host, peer) {
                    Some(facts) => Some(what_if.standing.judge(SessionSeen::Tls(&facts))),
                    None => Some(what_if.standing.judge(SessionSeen::Tls(peer))),
                },
                TlsOutcome::Without(what) => {
                    Some(what_if.standing.judge(SessionSeen::WithoutTls(what)))
                }
                TlsOutcome::Skipped => {
                    // The plaintext retry after a failed handshake (`insecure_plaintext_fallback`).
                    no_tls = strictmx_policy::NoTls::HandshakeFailed {
                        reason: "plaintext retry after a failed TLS handshake".to_owned(),
                    };
                    Some(what_if.standing.judge(SessionSeen::WithoutTls(&no_tls)))
                }
                TlsOutcome::Interrupted => None,
            };
        }
    }

    /// The same connection's facts for a new attempt on it (a spare session another job
    /// reuses): its time and duration start now.
    pub(crate) fn restarted(&self) -> Self {
        AttemptScope {
            result_type: None,
            at: SystemTime::now(),
            started: Instant::now(),
            ..self.clone()
        }
    }
}

/// The spool's name for how the policy authenticated the peer.
fn spool_auth(auth: strictmx_policy::PeerAuth) -> PeerAuth {
    match auth {
        strictmx_policy::PeerAuth::Dane => PeerAuth::Dane,
        strictmx_policy::PeerAuth::Sts => PeerAuth::Sts,
        strictmx_policy::PeerAuth::Webpki => PeerAuth::Webpki,
        strictmx_policy::PeerAuth::None => PeerAuth::None,
    }
}

/// Records what one attempt did for one message: the typed record, one `info!` line and the
/// `strictmx_delivery_attempts_total{outcome, tls}` counter.
pub(crate) fn record_attempt(
    scope: &AttemptScope,
    msg_id: MessageId,
    recipients: Vec<usize>,
    outcome: AttemptOutcome,
    reply: &str,
) -> AttemptRecord {
    let duration_ms = u64::try_from(scope.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let outcome_label = match outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::Deferred => "deferred",
        AttemptOutcome::Bounced => "bounced",
    };
    let tls_label = scope
        .tls
        .as_ref()
        .map_or("none", |tls| tls.version.as_str());
    let (exceptions, shadow) = what_if_records(&scope.what_if);
    tracing::info!(
        msg_id = %MessageIdDisplay(msg_id),
        domain = %scope.domain,
        mx = scope.mx.as_deref().unwrap_or("-"),
        ip = %scope.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        tls = tls_label,
        cipher = scope.tls.as_ref().map_or("-", |tls| tls.cipher.as_str()),
        // A JSON boolean; absent when there was no TLS session.
        cert_verified = scope.tls.as_ref().map(TlsInfo::cert_verified),
        requirement = scope.requirement.unwrap_or("-"),
        auth = scope.auth.as_str(),
        policy = scope.policy,
        rules = %RuleNames(&scope.rules),
        exceptions = %ExceptionNames(&exceptions),
        shadow = %ShadowNames(&shadow),
        result_type = scope.result_type.map_or("-", ResultType::as_str),
        recipients = recipients.len(),
        outcome = outcome_label,
        reply,
        duration_ms,
        "delivery attempt"
    );
    metrics::counter!(
        "strictmx_delivery_attempts_total",
        "outcome" => outcome_label,
        "tls" => if scope.tls.is_some() { "tls" } else { "none" },
    )
    .increment(1);
    if outcome == AttemptOutcome::Delivered {
        count_what_if(&exceptions, &shadow);
    }
    AttemptRecord {
        at: scope.at,
        domain: scope.domain.clone(),
        mx: scope.mx.clone(),
        ip: scope.ip,
        tls_version: scope.tls.as_ref().map(|tls| tls.version.clone()),
        cipher: scope.tls.as_ref().map(|tls| tls.cipher.clone()),
        cert_verified: scope.tls.as_ref().map(TlsInfo::cert_verified),
        auth: scope.auth,
        policy: scope.policy.to_owned(),
        rules: scope.rules.clone(),
        requirement: scope.requirement.map(str::to_owned),
        result_type: scope.result_type.map(|result| result.as_str().to_owned()),
        recipients,
        outcome,
        reply: reply.to_owned(),
        duration_ms,
        exceptions,
        shadow,
    }
}

/// The exceptions in force and the shadow verdicts known, as the spool records them. A shadow
/// rule whose verdict needed a session that never came is left out: it was not put to the test.
fn what_if_records(what_if: &[WhatIf]) -> (Vec<ExceptionUse>, Vec<ShadowVerdict>) {
    let mut exceptions = Vec::new();
    let mut shadow = Vec::new();
    for w in what_if {
        let stopped = w
            .verdict
            .as_ref()
            .filter(|v| v.outcome != VerdictOutcome::Pass);
        match w.kind {
            Kind::Exception => exceptions.push(ExceptionUse {
                rule: w.term.rule.clone(),
                expires: w.term.expires,
                reason: w.term.reason.clone(),
                spared: stopped.map(|v| v.reason.clone()),
            }),
            Kind::Shadow => shadow.extend(w.verdict.as_ref().map(|v| ShadowVerdict {
                rule: v.rule.clone(),
                outcome: match v.outcome {
                    VerdictOutcome::Pass => ShadowOutcome::Pass,
                    VerdictOutcome::WouldDefer => ShadowOutcome::WouldDefer,
                    VerdictOutcome::WouldBounce => ShadowOutcome::WouldBounce,
                },
                reason: v.reason.clone(),
            })),
        }
    }
    (exceptions, shadow)
}

/// For a delivered attempt: `strictmx_shadow_total{rule, outcome}` per shadow verdict and
/// `strictmx_exception_relaxed_total{rule}` per exception that let it through.
fn count_what_if(exceptions: &[ExceptionUse], shadow: &[ShadowVerdict]) {
    for verdict in shadow {
        metrics::counter!(
            "strictmx_shadow_total",
            "rule" => verdict.rule.clone(),
            "outcome" => verdict.outcome.as_str(),
        )
        .increment(1);
    }
    for exception in exceptions.iter().filter(|e| e.spared.is_some()) {
        metrics::counter!(
            "strictmx_exception_relaxed_total",
            "rule" => exception.rule.clone(),
        )
        .increment(1);
    }
}

/// The matching rules' names for the log: comma-separated, `-` for none.
struct RuleNames<'a>(&'a [String]);

impl std::fmt::Display for RuleNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        f.write_str(&self.0.join(","))
    }
}

/// The exceptions for the log: `name (until T)`, `!` after one that let the attempt through;
/// `-` for none.
struct ExceptionNames<'a>(&'a [ExceptionUse]);

impl std::fmt::Display for ExceptionNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (n, exception) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            f.write_str(&exception.rule)?;
            if let Some(expires) = exception.expires {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires);
                write!(f, " (until {})", humantime::format_rfc3339_seconds(at))?;
            }
            if exception.spared.is_some() {
                f.write_str("!")?;
            }
        }
        Ok(())
    }
}

/// The shadow verdicts for the log: `rule:outcome`, comma-separated; `-` for none.
struct ShadowNames<'a>(&'a [ShadowVerdict]);

impl std::fmt::Display for ShadowNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (n, verdict) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", verdict.rule, verdict.outcome.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    fn what_if(kind: Kind, rule: &str, outcome: Option<VerdictOutcome>) -> WhatIf {
        let verdict = outcome.map(|outcome| Verdict {
            rule: rule.to_owned(),
            outcome,
            reason: match outcome {
                VerdictOutcome::Pass => String::new(),
                _ => "mx.partner.example: certificate-host-mismatch: wrong name".to_owned(),
            },
        });
        WhatIf {
            kind,
            term: RuleTerm {
                rule: rule.to_owned(),
                expires: Some(1_801_353_600),
                reason: Some("ticket 4711".to_owned()),
            },
            standing: match &verdict {
                Some(verdict) => Standing::Decided(verdict.clone()),
                None => Standing::Decided(Verdict {
                    rule: rule.to_owned(),
                    outcome: VerdictOutcome::Pass,
                    reason: String::new(),
                }),
            },
            verdict,
        }
    }

    /// Records one attempt with `what_if` and returns the record and the metrics it counted.
    fn record(what_if: Vec<WhatIf>, outcome: AttemptOutcome) -> (AttemptRecord, String) {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut scope = AttemptScope::new("partner.example", "rule-relaxed");
        scope.what_if = what_if;
        let record = metrics::with_local_recorder(&recorder, || {
            record_attempt(&scope, 1, vec![0], outcome, "250 ok")
        });
        (record, handle.render())
    }

    // Issue 11: the attempt record names each exception with its end and reason, and a metric
    // counts the delivered messages it let through that its absence would have refused.
    #[test]
    fn an_exception_is_named_with_its_end_and_counted_when_it_let_a_delivery_through() {
        struct Row {
            rule: &'static str,
            verdict: VerdictOutcome,
            outcome: AttemptOutcome,
            spared: bool,
            counted: bool,
        }
        let rows = [
            Row {
                rule: "issue 11: a delivery only the exception allowed is spared and counted",
                verdict: VerdictOutcome::WouldDefer,
                outcome: AttemptOutcome::Delivered,
                spared: true,
                counted: true,
            },
            Row {
                rule: "issue 11: a delivery that needed no exception is named, not counted",
                verdict: VerdictOutcome::Pass,
                outcome: AttemptOutcome::Delivered,
                spared: false,
                counted: false,
            },
            Row {
                rule: "issue 11: a deferred attempt let nothing through",
                verdict: VerdictOutcome::WouldDefer,
                outcome: AttemptOutcome::Deferred,
                spared: true,
                counted: false,
            },
        ];
        for row in rows {
            let what_if = vec![what_if(Kind::Exception, "partner-relax", Some(row.verdict))];
            let (record, metrics) = record(what_if, row.outcome);
            let used = &record.exceptions;
            assert_eq!(used.len(), 1, "{}", row.rule);
            assert_eq!(used[0].rule, "partner-relax");
            assert_eq!(used[0].expires, Some(1_801_353_600));
            assert_eq!(used[0].reason.as_deref(), Some("ticket 4711"));
            assert_eq!(used[0].spared.is_some(), row.spared, "{}", row.rule);
            assert!(record.shadow.is_empty());
            let counted =
                metrics.contains("strictmx_exception_relaxed_total{rule=\"partner-relax\"} 1");
            assert_eq!(counted, row.counted, "{}: {metrics}", row.rule);
        }
    }

    // Issue 11, "Shadow rules": a verdict per shadow rule in the record; a metric per rule and
    // outcome for delivered attempts; a rule the attempt never put to the test is left out.
    #[test]
    fn shadow_verdicts_are_recorded_and_counted_per_rule_and_outcome() {
        let (record, metrics) = record(
            vec![
                what_if(Kind::Shadow, "dane-trial", Some(VerdictOutcome::WouldDefer)),
                what_if(Kind::Shadow, "verified-trial", Some(VerdictOutcome::Pass)),
                what_if(Kind::Shadow, "untested", None),
            ],
            AttemptOutcome::Delivered,
        );
        let recorded: Vec<(&str, ShadowOutcome)> = record
            .shadow
            .iter()
            .map(|v| (v.rule.as_str(), v.outcome))
            .collect();
        assert_eq!(
            recorded,
            [
                ("dane-trial", ShadowOutcome::WouldDefer),
                ("verified-trial", ShadowOutcome::Pass)
            ]
        );
        assert!(
            record.shadow[0]
                .reason
                .contains("certificate-host-mismatch")
        );
        for line in [
            "strictmx_shadow_total{rule=\"dane-trial\",outcome=\"would-defer\"} 1",
            "strictmx_shadow_total{rule=\"verified-trial\",outcome=\"pass\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
        assert!(!metrics.contains("untested"), "{metrics}");
        let json = serde_json::to_value(&record).expect("serialize");
        assert_eq!(json["shadow"][0]["outcome"], "would-defer");
        assert!(
            json.get("exceptions").is_none(),
            "empty lists are not stored"
        );
    }
}
