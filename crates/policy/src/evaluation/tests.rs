//! Table-driven tests of rule evaluation over time, shadow rules and exceptions; each row
//! cites what it checks (issue 11, "Shadow rules" and "Exceptions that expire", and the RFC
//! behind the requirement the alternative plan sets).

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::facts::{
    Dnssec, DnssecHealth, DomainFacts, HostFacts, MessageFacts, MxFacts, MxHost, StsFacts,
    StsPolicyFacts, StsRecordFacts, TlsaFacts, TlsaRecord,
};
use crate::peer::WebpkiVerdict;
use crate::plan::{PolicyLabel, plan_delivery};
use crate::posture::{History, PastWeakening};
use crate::rules::{DomainPattern, MinRequirement, Relax, SenderPattern, TlsVersion};
use crate::sts::{StsMode, StsPolicy};

const DOMAIN: &str = "partner.example";
const MX1: &str = "mx1.partner.example";
const MX2: &str = "mx2.partner.example";
const SENDER: &str = "billing@us.example";
/// 2027-01-31T00:00:00Z.
const EXPIRES: u64 = 1_801_353_600;

fn host(name: &str, tlsa: TlsaFacts) -> HostFacts {
    HostFacts {
        name: name.to_owned(),
        canonical: None,
        addresses: Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        addresses_dnssec: Dnssec::Secure,
        tlsa,
    }
}

fn no_tlsa() -> TlsaFacts {
    TlsaFacts::Absent {
        reason: "secure denial".to_owned(),
    }
}

fn dane_tlsa(name: &str) -> TlsaFacts {
    TlsaFacts::Records {
        base_domain: name.to_owned(),
        records: vec![TlsaRecord {
            usage: 3,
            selector: 1,
            matching_type: 1,
            data: vec![7; 32],
        }],
    }
}

/// `mx1` (10) and `mx2` (20) with the given TLSA facts, no MTA-STS.
fn facts(tlsa1: TlsaFacts, tlsa2: TlsaFacts) -> DomainFacts {
    DomainFacts {
        domain: DOMAIN.to_owned(),
        mx: MxFacts::Hosts(vec![
            MxHost {
                name: MX1.to_owned(),
                preference: 10,
            },
            MxHost {
                name: MX2.to_owned(),
                preference: 20,
            },
        ]),
        mx_dnssec: Dnssec::Secure,
        hosts: vec![host(MX1, tlsa1), host(MX2, tlsa2)],
        sts: StsFacts {
            record: StsRecordFacts::Absent,
            policy: None,
            fetch_failure: None,
        },
        dnssec_health: DnssecHealth::Working {
            mode: "validate".to_owned(),
        },
    }
}

/// Both hosts under an MTA-STS `enforce` policy listing them (RFC 8461 §5).
fn sts_enforce() -> DomainFacts {
    let mut facts = facts(no_tlsa(), no_tlsa());
    facts.sts = StsFacts {
        record: StsRecordFacts::Present { id: "1".to_owned() },
        policy: Some(StsPolicyFacts {
            policy: StsPolicy {
                mode: StsMode::Enforce,
                mx: vec!["*.partner.example".to_owned()],
                max_age: 86_400,
            },
            text: "version: STSv1\r\nmode: enforce\r\n".to_owned(),
            id: "1".to_owned(),
            fetched_at: 0,
            expires_at: u64::MAX,
            from_cache: false,
        }),
        fetch_failure: None,
    };
    facts
}

fn rule(name: &str) -> Rule {
    Rule {
        name: name.to_owned(),
        domains: vec![DomainPattern::Exact(DOMAIN.to_owned())],
        ..Rule::default()
    }
}

fn exception(expires: u64) -> Rule {
    Rule {
        insecure_relax: Some(Relax::Encrypted),
        expires: Some(expires),
        reason: Some("their certificate names the wrong host, ticket 4711".to_owned()),
        ..rule("partner-relax")
    }
}

fn shadow(require: MinRequirement) -> Rule {
    Rule {
        require: Some(require),
        mode: RuleMode::Shadow,
        ..rule("try-stricter")
    }
}

fn settings(rules: Vec<Rule>) -> PolicySettings {
    PolicySettings {
        rules,
        ..PolicySettings::default()
    }
}

fn run(facts: &DomainFacts, settings: &PolicySettings, now: u64) -> Evaluation {
    let message = MessageFacts {
        sender: SENDER.to_owned(),
        ..MessageFacts::default()
    };
    evaluate(settings, DOMAIN, SENDER, now, &History::default(), |s| {
        plan_delivery(facts, &message, s)
    })
}

fn label(outcome: &PlanOutcome) -> Option<PolicyLabel> {
    match outcome {
        PlanOutcome::Deliver(plan) => Some(plan.policy),
        _ => None,
    }
}

fn peer(webpki: WebpkiVerdict) -> PeerFacts {
    PeerFacts {
        tls_version: TlsVersion::Tls13,
        chain: Vec::new(),
        webpki,
        dane_ta: None,
        pin_anchor: None,
    }
}

#[test]
fn an_exception_applies_until_its_expiry_second_and_then_stops_on_its_own() {
    struct Row {
        rule: &'static str,
        now: u64,
        label: PolicyLabel,
        exceptions: usize,
        expired: usize,
    }
    let rows = [
        Row {
            rule: "issue 11: before its expiry the exception relaxes MTA-STS (RFC 8461 §5)",
            now: EXPIRES - 1,
            label: PolicyLabel::RuleRelaxed,
            exceptions: 1,
            expired: 0,
        },
        Row {
            rule: "issue 11: at the second given it no longer applies, no reload needed",
            now: EXPIRES,
            label: PolicyLabel::StsEnforce,
            exceptions: 0,
            expired: 1,
        },
        Row {
            rule: "issue 11: and it stays expired",
            now: EXPIRES + 86_400,
            label: PolicyLabel::StsEnforce,
            exceptions: 0,
            expired: 1,
        },
    ];
    let settings = settings(vec![exception(EXPIRES)]);
    for row in rows {
        let evaluation = run(&sts_enforce(), &settings, row.now);
        assert_eq!(label(&evaluation.outcome), Some(row.label), "{}", row.rule);
        assert_eq!(
            evaluation.alternatives.exceptions.len(),
            row.exceptions,
            "{}",
            row.rule
        );
        assert_eq!(evaluation.expired.len(), row.expired, "{}", row.rule);
    }
}

#[test]
fn an_exception_is_judged_by_what_the_plan_without_it_would_have_refused() {
    let evaluation = run(&sts_enforce(), &settings(vec![exception(EXPIRES)]), 0);
    let without = &evaluation.alternatives.exceptions[0];
    assert_eq!(without.term.rule, "partner-relax");
    assert_eq!(without.term.expires, Some(EXPIRES));
    assert!(without.term.reason.as_deref().unwrap().contains("4711"));
    let standing = without.standing(MX1);
    struct Row {
        rule: &'static str,
        seen: PeerFacts,
        outcome: VerdictOutcome,
        reason: &'static str,
    }
    let rows = [
        Row {
            rule: "RFC 8461 §4.1: without the exception a certificate for another name is \
                   refused, so the exception let this session through",
            seen: peer(WebpkiVerdict::HostMismatch),
            outcome: VerdictOutcome::WouldDefer,
            reason: "mx1.partner.example: certificate-host-mismatch: ",
        },
        Row {
            rule: "RFC 8461 §4.1: a valid certificate passes without the exception too",
            seen: peer(WebpkiVerdict::Valid),
            outcome: VerdictOutcome::Pass,
            reason: "",
        },
    ];
    for row in rows {
        let verdict = standing.judge(SessionSeen::Tls(&row.seen));
        assert_eq!(verdict.outcome, row.outcome, "{}", row.rule);
        assert!(
            verdict.reason.starts_with(row.reason),
            "{}: {verdict:?}",
            row.rule
        );
    }
}

#[test]
fn a_shadow_rule_changes_nothing_and_says_what_it_would_have_done() {
    struct Row {
        rule: &'static str,
        facts: DomainFacts,
        shadow: Rule,
        enforced: Option<PolicyLabel>,
        host: &'static str,
        seen: Option<SessionSeen<'static>>,
        outcome: VerdictOutcome,
        reason: &'static str,
    }
    static NOT_TRUSTED: std::sync::LazyLock<PeerFacts> =
        std::sync::LazyLock::new(|| peer(WebpkiVerdict::NotTrusted));
    static VALID: std::sync::LazyLock<PeerFacts> =
        std::sync::LazyLock::new(|| peer(WebpkiVerdict::Valid));
    let rows = [
        Row {
            rule: "RFC 8460 §4.3.2 dane-required: a shadow dane-only rule over hosts without \
                   TLSA would defer the mail, which is delivered opportunistically",
            facts: facts(no_tlsa(), no_tlsa()),
            shadow: shadow(MinRequirement::DaneOnly),
            enforced: Some(PolicyLabel::DefaultOpportunistic),
            host: MX1,
            seen: None,
            outcome: VerdictOutcome::WouldDefer,
            reason: "no host of partner.example may be used now",
        },
        Row {
            rule: "RFC 7672 §3.1: over a host with usable DANE the dane-only rule passes a \
                   session that matched",
            facts: facts(dane_tlsa(MX1), dane_tlsa(MX2)),
            shadow: shadow(MinRequirement::DaneOnly),
            enforced: Some(PolicyLabel::Dane),
            host: MX1,
            seen: None,
            outcome: VerdictOutcome::Pass,
            reason: "",
        },
        Row {
            rule: "RFC 7672 §3.1: dane-only without DANE on mx1 would use mx2 only: the mail \
                   would not have been stopped",
            facts: facts(no_tlsa(), dane_tlsa(MX2)),
            shadow: shadow(MinRequirement::DaneOnly),
            enforced: Some(PolicyLabel::Dane),
            host: MX1,
            seen: None,
            outcome: VerdictOutcome::Pass,
            reason: "mx1.partner.example would not have been used (a rule requires DANE",
        },
        Row {
            rule: "RFC 8460 §4.3.1 certificate-not-trusted: a shadow `verified` rule would \
                   defer a session whose chain has no trusted root",
            facts: facts(no_tlsa(), no_tlsa()),
            shadow: shadow(MinRequirement::Verified),
            enforced: Some(PolicyLabel::DefaultOpportunistic),
            host: MX1,
            seen: Some(SessionSeen::Tls(&NOT_TRUSTED)),
            outcome: VerdictOutcome::WouldDefer,
            reason: "mx1.partner.example: certificate-not-trusted: ",
        },
        Row {
            rule: "RFC 8461 §4.1: the same rule passes a session with a verified certificate",
            facts: facts(no_tlsa(), no_tlsa()),
            shadow: shadow(MinRequirement::Verified),
            enforced: Some(PolicyLabel::DefaultOpportunistic),
            host: MX1,
            seen: Some(SessionSeen::Tls(&VALID)),
            outcome: VerdictOutcome::Pass,
            reason: "",
        },
        Row {
            rule: "RFC 8460 §4.3.1 starttls-not-supported: a shadow `encrypted` rule would \
                   defer a plaintext delivery",
            facts: facts(no_tlsa(), no_tlsa()),
            shadow: shadow(MinRequirement::Encrypted),
            enforced: Some(PolicyLabel::DefaultOpportunistic),
            host: MX2,
            seen: Some(SessionSeen::WithoutTls(&NoTls::NotOffered)),
            outcome: VerdictOutcome::WouldDefer,
            reason: "mx2.partner.example: starttls-not-supported: ",
        },
    ];
    for row in rows {
        let evaluation = run(&row.facts, &settings(vec![row.shadow]), 0);
        assert_eq!(label(&evaluation.outcome), row.enforced, "{}", row.rule);
        let PlanOutcome::Deliver(plan) = &evaluation.outcome else {
            panic!("{}: the enforced plan delivers", row.rule);
        };
        assert!(
            plan.rules.is_empty(),
            "{}: a shadow rule is not enforced",
            row.rule
        );
        let shadows = &evaluation.alternatives.shadows;
        assert_eq!(shadows.len(), 1, "{}", row.rule);
        let standing = shadows[0].standing(row.host);
        let verdict = match (row.seen, &standing) {
            (Some(seen), _) => standing.judge(seen),
            (None, Standing::Decided(verdict)) => verdict.clone(),
            (None, Standing::Judge { rule, host }) => {
                // The alternative uses the host as the enforced plan does: the session decides.
                assert_eq!(
                    (rule.as_str(), host.host.as_str()),
                    ("try-stricter", row.host)
                );
                assert_eq!(
                    (row.outcome, row.reason),
                    (VerdictOutcome::Pass, ""),
                    "{}",
                    row.rule
                );
                continue;
            }
        };
        assert_eq!(verdict.rule, "try-stricter", "{}", row.rule);
        assert_eq!(verdict.outcome, row.outcome, "{}: {verdict:?}", row.rule);
        assert!(
            verdict.reason.starts_with(row.reason),
            "{}: {verdict:?}",
            row.rule
        );
    }
}

#[test]
fn only_matching_rules_cost_a_plan_and_expired_or_unmatched_ones_none() {
    struct Row {
        rule: &'static str,
        rules: Vec<Rule>,
        plans: usize,
    }
    let elsewhere = |mut rule: Rule| {
        rule.senders = vec![SenderPattern::Domain("elsewhere.example".to_owned())];
        rule
    };
    let rows = [
        Row {
            rule: "issue 11: no shadow rule and no exception: one plan",
            rules: vec![Rule {
                require: Some(MinRequirement::Encrypted),
                ..rule("tighten")
            }],
            plans: 1,
        },
        Row {
            rule: "issue 11: a matching shadow rule and a matching exception: one plan each",
            rules: vec![shadow(MinRequirement::DaneOnly), exception(EXPIRES)],
            plans: 3,
        },
        Row {
            rule: "issue 11: rules for another sender are not planned",
            rules: vec![
                elsewhere(shadow(MinRequirement::DaneOnly)),
                elsewhere(exception(EXPIRES)),
            ],
            plans: 1,
        },
        Row {
            rule: "issue 11: an expired shadow rule is not tried any more",
            rules: vec![Rule {
                expires: Some(10),
                ..shadow(MinRequirement::DaneOnly)
            }],
            plans: 1,
        },
    ];
    let facts = sts_enforce();
    for row in rows {
        let calls = Cell::new(0);
        let message = MessageFacts::default();
        evaluate(
            &settings(row.rules),
            DOMAIN,
            SENDER,
            100,
            &History::default(),
            |s| {
                calls.set(calls.get() + 1);
                plan_delivery(&facts, &message, s)
            },
        );
        assert_eq!(calls.get(), row.plans, "{}", row.rule);
    }
}

#[test]
fn a_shadow_rule_is_tried_at_its_place_in_the_file() {
    // The first matching rule with pins gives the plan's pins: a shadow rule listed first wins
    // in its alternative plan, as it would once promoted.
    let pinned = |name: &str, byte: u8, mode: RuleMode| Rule {
        pins: vec![crate::rules::Pin::Spki { sha256: [byte; 32] }],
        mode,
        ..rule(name)
    };
    let rules = vec![
        pinned("first", 1, RuleMode::Shadow),
        pinned("second", 2, RuleMode::Enforce),
    ];
    let evaluation = run(&facts(no_tlsa(), no_tlsa()), &settings(rules), 0);
    let pins = |outcome: &PlanOutcome| match outcome {
        PlanOutcome::Deliver(plan) => plan.candidates[0].pins.clone(),
        _ => Vec::new(),
    };
    assert_eq!(
        pins(&evaluation.outcome),
        vec![crate::rules::Pin::Spki { sha256: [2; 32] }]
    );
    assert_eq!(
        pins(&evaluation.alternatives.shadows[0].outcome),
        vec![crate::rules::Pin::Spki { sha256: [1; 32] }]
    );
}

/// A destination that dropped MTA-STS enforce (RFC 8461 §5) `age` seconds before `NOW`.
fn dropped_sts(age: u64) -> History {
    History {
        last_seen: None,
        weakenings: vec![PastWeakening {
            at: NOW - age,
            earned: Some(MinRequirement::Verified),
            what: "MTA-STS mode went from enforce to none".to_owned(),
        }],
    }
}

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

#[test]
fn a_pin_keeps_demanding_the_last_good_policy_for_its_window_then_lets_go() {
    let pin = Rule {
        pin_last_good: Some(30 * DAY),
        ..rule("pin-partner")
    };
    let no_sts = facts(no_tlsa(), no_tlsa());
    let message = MessageFacts::default();
    let rows: &[(&str, History, Option<PolicyLabel>)] = &[
        // Issue 11: after a weakening the rule fails closed on the last good requirement
        // (here `verified`, what MTA-STS enforce demanded, RFC 8461 §4.2 and §5).
        (
            "a day after the drop",
            dropped_sts(DAY),
            Some(PolicyLabel::Rule),
        ),
        (
            "the window has passed",
            dropped_sts(31 * DAY),
            Some(PolicyLabel::DefaultOpportunistic),
        ),
        (
            "no weakening remembered",
            History::default(),
            Some(PolicyLabel::DefaultOpportunistic),
        ),
    ];
    for (case, history, want) in rows {
        let evaluation = evaluate(
            &settings(vec![pin.clone()]),
            DOMAIN,
            SENDER,
            NOW,
            history,
            |s| plan_delivery(&no_sts, &message, s),
        );
        assert_eq!(label(&evaluation.outcome), *want, "{case}");
        if let PlanOutcome::Deliver(plan) = &evaluation.outcome
            && *want == Some(PolicyLabel::Rule)
        {
            assert!(
                plan.candidates
                    .iter()
                    .all(|c| matches!(c.requirement, crate::plan::TlsRequirement::Verified { .. })),
                "{case}: {:?}",
                plan.candidates
            );
            assert!(
                plan.why
                    .iter()
                    .any(|line| line.contains("pin-partner pins")
                        && line.contains("enforce to none")),
                "{case}: {:?}",
                plan.why
            );
        }
    }
}

#[test]
fn a_pin_on_a_rule_that_does_not_match_the_domain_demands_nothing() {
    let pin = Rule {
        domains: vec![DomainPattern::Exact("elsewhere.example".to_owned())],
        pin_last_good: Some(30 * DAY),
        ..rule("pin-elsewhere")
    };
    let no_sts = facts(no_tlsa(), no_tlsa());
    let message = MessageFacts::default();
    let evaluation = evaluate(
        &settings(vec![pin]),
        DOMAIN,
        SENDER,
        NOW,
        &dropped_sts(DAY),
        |s| plan_delivery(&no_sts, &message, s),
    );
    assert_eq!(
        label(&evaluation.outcome),
        Some(PolicyLabel::DefaultOpportunistic)
    );
}
