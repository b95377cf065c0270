//! Table-driven tests of the whole precedence; each row cites the rule it checks.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::facts::{Dnssec, MxFacts, StsFacts, StsFetchFailure, TlsaRecord};
use crate::rules::{DomainPattern, Relax, Rule, SenderPattern};
use crate::sts::StsPolicy;

mod mx;

const DOMAIN: &str = "example.org";

pub(crate) fn usable() -> TlsaFacts {
    TlsaFacts::Records {
        base_domain: "mx1.example.org".to_owned(),
        records: vec![TlsaRecord {
            usage: 3,
            selector: 1,
            matching_type: 1,
            data: vec![0; 32],
        }],
    }
}

pub(crate) fn unusable() -> TlsaFacts {
    TlsaFacts::Records {
        base_domain: "mx1.example.org".to_owned(),
        records: vec![TlsaRecord {
            usage: 1,
            selector: 1,
            matching_type: 1,
            data: vec![0; 32],
        }],
    }
}

pub(crate) fn bogus() -> TlsaFacts {
    TlsaFacts::Failed {
        dnssec: Dnssec::Bogus,
        reason: "rrsig expired".to_owned(),
    }
}

pub(crate) fn none() -> TlsaFacts {
    TlsaFacts::NotApplicable {
        reason: "insecure".to_owned(),
    }
}

/// Two MX hosts, `mx1` (10) and `mx2` (20), with the given TLSA facts.
pub(crate) fn domain(mx_dnssec: Dnssec, tlsa1: TlsaFacts, tlsa2: TlsaFacts) -> DomainFacts {
    let host = |name: &str, tlsa| HostFacts {
        name: name.to_owned(),
        canonical: None,
        addresses: Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        addresses_dnssec: mx_dnssec,
        tlsa,
    };
    DomainFacts {
        domain: DOMAIN.to_owned(),
        mx: MxFacts::Hosts(vec![
            MxHost {
                name: "mx1.example.org".to_owned(),
                preference: 10,
            },
            MxHost {
                name: "mx2.example.org".to_owned(),
                preference: 20,
            },
        ]),
        mx_dnssec,
        hosts: vec![
            host("mx1.example.org", tlsa1),
            host("mx2.example.org", tlsa2),
        ],
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

/// Adds an MTA-STS policy of `mode` listing `mx`.
pub(crate) fn sts(mut facts: DomainFacts, mode: StsMode, mx: &[&str]) -> DomainFacts {
    facts.sts = StsFacts {
        record: StsRecordFacts::Present { id: "1".to_owned() },
        policy: Some(StsPolicyFacts {
            policy: StsPolicy {
                mode,
                mx: mx.iter().map(|m| (*m).to_owned()).collect(),
                max_age: 86_400,
            },
            text: format!("version: STSv1\r\nmode: {}\r\n", mode.as_str()),
            id: "1".to_owned(),
            fetched_at: 0,
            expires_at: 86_400,
            from_cache: false,
        }),
        fetch_failure: None,
    };
    facts
}

pub(crate) fn fetch_failed(mut facts: DomainFacts) -> DomainFacts {
    facts.sts = StsFacts {
        record: StsRecordFacts::Present { id: "2".to_owned() },
        policy: None,
        fetch_failure: Some(StsFetchFailure {
            result_type: ResultType::StsPolicyFetchError,
            reason: "connection refused".to_owned(),
        }),
    };
    facts
}

fn rule(require: Option<MinRequirement>) -> Rule {
    Rule {
        name: "test-rule".to_owned(),
        domains: vec![DomainPattern::Exact(DOMAIN.to_owned())],
        senders: Vec::new(),
        require,
        pins: Vec::new(),
        min_tls_version: None,
        fail_closed: false,
        insecure_relax: None,
        ..Rule::default()
    }
}

fn with_rule(rule: Rule) -> PolicySettings {
    PolicySettings {
        rules: vec![rule],
        ..PolicySettings::default()
    }
}

fn message(requiretls: bool, tls_required_no: bool, submitter_may_relax: bool) -> MessageFacts {
    MessageFacts {
        sender: "someone@sender.example".to_owned(),
        requiretls,
        tls_required_no,
        submitter_may_relax,
        floor: None,
    }
}

/// What a row expects: a label with each candidate's host and requirement, or an outcome kind.
#[derive(Debug, PartialEq)]
enum Expect {
    Deliver(PolicyLabel, Vec<(&'static str, &'static str)>),
    Defer,
    Bounce(&'static str),
}

fn summary(outcome: &PlanOutcome) -> Expect {
    match outcome {
        PlanOutcome::Deliver(plan) => {
            let hosts = plan
                .candidates
                .iter()
                .map(|c| (known(&c.host), c.requirement.as_str()))
                .collect();
            Expect::Deliver(plan.policy, hosts)
        }
        PlanOutcome::Defer { .. } => Expect::Defer,
        PlanOutcome::Bounce { status, .. } => Expect::Bounce(known(status)),
    }
}

/// The test's constant equal to `text`, so expectations can stay `&'static str`.
fn known(text: &str) -> &'static str {
    [MX1, MX2, "5.7.30", "5.1.10", "5.1.2", "5.4.4"]
        .into_iter()
        .find(|constant| *constant == text)
        .unwrap_or("unexpected")
}

const MX1: &str = "mx1.example.org";
const MX2: &str = "mx2.example.org";

struct Row {
    rule: &'static str,
    facts: DomainFacts,
    message: MessageFacts,
    settings: PolicySettings,
    expect: Expect,
}

fn row(rule: &'static str, facts: DomainFacts, expect: Expect) -> Row {
    Row {
        rule,
        facts,
        message: message(false, false, false),
        settings: PolicySettings::default(),
        expect,
    }
}

fn check(rows: Vec<Row>) {
    for row in rows {
        let outcome = plan_delivery(&row.facts, &row.message, &row.settings);
        assert_eq!(summary(&outcome), row.expect, "{}: {outcome:#?}", row.rule);
    }
}

#[test]
fn dane_applies_per_host_and_never_falls_back() {
    use Expect::*;
    check(vec![
        row(
            "RFC 7672 §3.1: usable TLSA records make TLS and a match mandatory",
            domain(Dnssec::Secure, usable(), none()),
            Deliver(
                PolicyLabel::Dane,
                vec![(MX1, "dane"), (MX2, "opportunistic")],
            ),
        ),
        row(
            "RFC 7672 §2.2: only unusable TLSA records: TLS mandatory, unauthenticated",
            domain(Dnssec::Secure, unusable(), none()),
            Deliver(
                PolicyLabel::DefaultOpportunistic,
                vec![(MX1, "encrypted"), (MX2, "opportunistic")],
            ),
        ),
        row(
            "RFC 7672 §2.2: a bogus TLSA answer makes that host unusable",
            domain(Dnssec::Secure, bogus(), none()),
            Deliver(
                PolicyLabel::DefaultOpportunistic,
                vec![(MX2, "opportunistic")],
            ),
        ),
        row(
            "RFC 7672 §2.2: no host left after TLSA failures defers, never a fallback",
            domain(Dnssec::Secure, bogus(), bogus()),
            Defer,
        ),
        row(
            "RFC 8461 §2: DANE takes precedence over MTA-STS for that host, even outside its mx list",
            sts(
                domain(Dnssec::Secure, usable(), none()),
                StsMode::Enforce,
                &[MX2],
            ),
            Deliver(PolicyLabel::Dane, vec![(MX1, "dane"), (MX2, "verified")]),
        ),
    ]);
}

#[test]
fn mta_sts_modes_shape_the_plan_as_rfc_8461_says() {
    use Expect::*;
    let plain = || domain(Dnssec::Insecure, none(), none());
    check(vec![
        row(
            "RFC 8461 §5: enforce requires a verified certificate for the MX host name",
            sts(plain(), StsMode::Enforce, &["*.example.org"]),
            Deliver(
                PolicyLabel::StsEnforce,
                vec![(MX1, "verified"), (MX2, "verified")],
            ),
        ),
        row(
            "RFC 8461 §4.1: under enforce, MX hosts matching no pattern are not used",
            sts(plain(), StsMode::Enforce, &[MX2]),
            Deliver(PolicyLabel::StsEnforce, vec![(MX2, "verified")]),
        ),
        row(
            "RFC 8461 §5.1: no MX host matching the policy: the message is not delivered",
            sts(plain(), StsMode::Enforce, &["mx.elsewhere.example"]),
            Defer,
        ),
        row(
            "RFC 8461 §5: testing delivers as without a policy",
            sts(plain(), StsMode::Testing, &[MX1]),
            Deliver(
                PolicyLabel::StsTesting,
                vec![(MX1, "opportunistic"), (MX2, "opportunistic")],
            ),
        ),
        row(
            "RFC 8461 §5: mode none is no policy",
            sts(plain(), StsMode::None, &[]),
            Deliver(
                PolicyLabel::DefaultOpportunistic,
                vec![(MX1, "opportunistic"), (MX2, "opportunistic")],
            ),
        ),
        row(
            "RFC 8461 §5.1: a failed fetch with nothing cached means no policy this time",
            fetch_failed(plain()),
            Deliver(
                PolicyLabel::DefaultOpportunistic,
                vec![(MX1, "opportunistic"), (MX2, "opportunistic")],
            ),
        ),
    ]);
}

#[test]
fn testing_mode_records_what_enforce_would_have_required() {
    let facts = sts(
        domain(Dnssec::Insecure, none(), none()),
        StsMode::Testing,
        &[MX1],
    );
    let PlanOutcome::Deliver(plan) =
        plan_delivery(&facts, &MessageFacts::default(), &PolicySettings::default())
    else {
        panic!("testing mode delivers");
    };
    // RFC 8461 §5 / RFC 8460: what would have failed is evaluated and reported.
    assert!(
        plan.candidates[0]
            .testing
            .as_ref()
            .is_some_and(|t| t.requires_authentication())
    );
    assert_eq!(plan.candidates[0].report.policy_type, PolicyType::Sts);
    assert_eq!(plan.candidates[0].report.policy_string[0], "version: STSv1");
    assert_eq!(plan.policy_failures.len(), 1, "mx2 matches no pattern");
    assert!(!plan.policy_failures[0].enforced);
    assert_eq!(
        plan.policy_failures[0].result_type,
        Some(ResultType::ValidationFailure)
    );
}

#[test]
fn administrator_rules_tighten_and_relax_only_when_told() {
    use Expect::*;
    let plain = || domain(Dnssec::Insecure, none(), none());
    let relaxing = Rule {
        insecure_relax: Some(Relax::Encrypted),
        ..rule(None)
    };
    let failing_closed = Rule {
        fail_closed: true,
        ..rule(None)
    };
    check(vec![
        Row {
            settings: with_rule(rule(Some(MinRequirement::Verified))),
            ..row(
                "a rule raises the floor to a verified certificate",
                plain(),
                Deliver(
                    PolicyLabel::Rule,
                    vec![(MX1, "verified"), (MX2, "verified")],
                ),
            )
        },
        Row {
            settings: with_rule(rule(Some(MinRequirement::DaneOnly))),
            ..row(
                "RFC 8460 §4.3.2 dane-required: DANE-only keeps only hosts with usable TLSA",
                domain(Dnssec::Secure, usable(), none()),
                Deliver(PolicyLabel::Dane, vec![(MX1, "dane")]),
            )
        },
        Row {
            settings: with_rule(rule(Some(MinRequirement::DaneOnly))),
            ..row("DANE-only without any DANE host defers", plain(), Defer)
        },
        Row {
            settings: with_rule(relaxing.clone()),
            ..row(
                "an explicit insecure_relax caps a published MTA-STS demand at encrypted",
                sts(plain(), StsMode::Enforce, &["*.example.org"]),
                Deliver(
                    PolicyLabel::RuleRelaxed,
                    vec![(MX1, "encrypted"), (MX2, "encrypted")],
                ),
            )
        },
        Row {
            settings: with_rule(relaxing),
            ..row(
                "RFC 7672 §2.2: relaxing never rescues a bogus TLSA host",
                domain(Dnssec::Secure, bogus(), usable()),
                Deliver(PolicyLabel::RuleRelaxed, vec![(MX2, "encrypted")]),
            )
        },
        Row {
            settings: with_rule(failing_closed.clone()),
            ..row(
                "fail_closed defers when the policy fetch failed with nothing cached",
                fetch_failed(plain()),
                Defer,
            )
        },
        Row {
            settings: with_rule(failing_closed),
            ..row(
                "fail_closed delivers when policy is known",
                plain(),
                Deliver(
                    PolicyLabel::DefaultOpportunistic,
                    vec![(MX1, "opportunistic"), (MX2, "opportunistic")],
                ),
            )
        },
    ]);
}

#[test]
fn sender_rules_apply_only_to_their_senders() {
    let reset = Rule {
        domains: Vec::new(),
        senders: vec![SenderPattern::Address("reset@app.example".to_owned())],
        ..rule(Some(MinRequirement::Verified))
    };
    let settings = with_rule(reset);
    let facts = domain(Dnssec::Insecure, none(), none());
    let from = |sender: &str| MessageFacts {
        sender: sender.to_owned(),
        ..MessageFacts::default()
    };
    let outcome = plan_delivery(&facts, &from("reset@APP.example"), &settings);
    assert_eq!(
        summary(&outcome),
        Expect::Deliver(
            PolicyLabel::Rule,
            vec![(MX1, "verified"), (MX2, "verified")]
        )
    );
    let outcome = plan_delivery(&facts, &from("news@app.example"), &settings);
    assert_eq!(
        summary(&outcome),
        Expect::Deliver(
            PolicyLabel::DefaultOpportunistic,
            vec![(MX1, "opportunistic"), (MX2, "opportunistic")]
        )
    );
}

#[test]
fn requiretls_and_tls_required_no_follow_rfc_8689() {
    use Expect::*;
    let plain = || domain(Dnssec::Insecure, none(), none());
    let relaxing_header = message(false, true, true);
    check(vec![
        Row {
            message: message(true, false, false),
            ..row(
                "RFC 8689 §4.2.1: a DNSSEC-validated MX choice, verified certificate",
                domain(Dnssec::Secure, none(), usable()),
                Deliver(
                    PolicyLabel::Requiretls,
                    vec![(MX1, "verified"), (MX2, "dane")],
                ),
            )
        },
        Row {
            message: message(true, false, false),
            ..row(
                "RFC 8689 §4.2.1: no authenticated MX returns the message with 5.7.30",
                plain(),
                Bounce("5.7.30"),
            )
        },
        Row {
            message: message(true, false, false),
            ..row(
                "RFC 8689 §4.2.1: an MTA-STS policy authenticates the hosts it lists",
                sts(plain(), StsMode::Testing, &[MX2]),
                Deliver(PolicyLabel::Requiretls, vec![(MX2, "verified")]),
            )
        },
        Row {
            message: relaxing_header.clone(),
            ..row(
                "RFC 8689 §5: TLS-Required: No ignores MTA-STS where the submitter may use it",
                sts(plain(), StsMode::Enforce, &[MX2]),
                Deliver(
                    PolicyLabel::TlsRequiredNo,
                    vec![(MX1, "opportunistic"), (MX2, "opportunistic")],
                ),
            )
        },
        Row {
            message: message(false, true, false),
            ..row(
                "RFC 8689 §5: TLS-Required: No from a submitter config does not trust is ignored",
                sts(plain(), StsMode::Enforce, &[MX2]),
                Deliver(PolicyLabel::StsEnforce, vec![(MX2, "verified")]),
            )
        },
        Row {
            message: message(true, true, true),
            ..row(
                "RFC 8689 §5: REQUIRETLS wins over TLS-Required: No",
                domain(Dnssec::Secure, none(), none()),
                Deliver(
                    PolicyLabel::Requiretls,
                    vec![(MX1, "verified"), (MX2, "verified")],
                ),
            )
        },
    ]);
}

#[test]
fn requiretls_plans_carry_the_flag_and_no_plaintext_fallback() {
    let settings = PolicySettings {
        insecure_plaintext_fallback: true,
        ..PolicySettings::default()
    };
    let facts = domain(Dnssec::Secure, none(), none());
    let PlanOutcome::Deliver(plan) = plan_delivery(&facts, &message(true, false, false), &settings)
    else {
        panic!("secure MX delivers");
    };
    assert!(plan.requiretls);
    assert!(!plan.insecure_plaintext_fallback);
}

// RFC 8689 §5: a report about a REQUIRETLS message is protected like the message (it carries
// the original's metadata), but an empty return path keeps it from being discarded at a next
// hop that does not advertise REQUIRETLS. Issue 14, item 9: such reports were planned as
// ordinary mail.
#[test]
fn a_null_sender_report_about_a_requiretls_message_needs_verified_tls_but_not_the_extension() {
    use Expect::*;
    let report = MessageFacts {
        sender: String::new(),
        ..message(true, false, false)
    };
    check(vec![
        Row {
            message: report.clone(),
            ..row(
                "RFC 8689 §4.2.1, §5: verified TLS to a DNSSEC-validated MX choice",
                domain(Dnssec::Secure, none(), usable()),
                Deliver(
                    PolicyLabel::Requiretls,
                    vec![(MX1, "verified"), (MX2, "dane")],
                ),
            )
        },
        Row {
            message: report.clone(),
            ..row(
                "RFC 8689 §4.2.1, §5: no authenticated MX: the report is not sent (5.7.30)",
                domain(Dnssec::Insecure, none(), none()),
                Bounce("5.7.30"),
            )
        },
    ]);
    let facts = domain(Dnssec::Secure, none(), none());
    let settings = PolicySettings {
        insecure_plaintext_fallback: true,
        ..PolicySettings::default()
    };
    let PlanOutcome::Deliver(plan) = plan_delivery(&facts, &report, &settings) else {
        panic!("secure MX delivers");
    };
    assert!(
        !plan.requiretls,
        "the next hop need not advertise REQUIRETLS"
    );
    assert!(!plan.insecure_plaintext_fallback);
}

#[test]
fn mx_facts_still_bounce_and_defer_before_any_policy() {
    let mut facts = domain(Dnssec::Secure, none(), none());
    facts.mx = MxFacts::Null;
    // RFC 7505 §3: a null MX bounces with 5.1.10, whatever the policy.
    let outcome = plan_delivery(
        &facts,
        &message(true, false, false),
        &PolicySettings::default(),
    );
    assert_eq!(summary(&outcome), Expect::Bounce("5.1.10"));
}

#[test]
fn a_route_plans_its_next_hop_with_dane_when_published() {
    let next_hop = domain(Dnssec::Secure, usable(), none()).hosts.remove(0);
    let outcome = plan_route_delivery(
        DOMAIN,
        &next_hop,
        false,
        &MessageFacts::default(),
        &PolicySettings::default(),
    );
    assert_eq!(
        summary(&outcome),
        Expect::Deliver(PolicyLabel::Dane, vec![(MX1, "dane")])
    );
    let next_hop = domain(Dnssec::Insecure, none(), none()).hosts.remove(0);
    let outcome = plan_route_delivery(
        DOMAIN,
        &next_hop,
        false,
        &MessageFacts::default(),
        &PolicySettings::default(),
    );
    assert_eq!(
        summary(&outcome),
        Expect::Deliver(PolicyLabel::Route, vec![(MX1, "opportunistic")])
    );
}

// RFC 4954 §4: AUTH PLAIN and LOGIN carry the password itself, so a route that logs in demands a
// peer authenticated for the next hop's name, whatever the default, rules or the message say.
#[test]
fn a_route_with_credentials_demands_a_verified_next_hop_even_when_the_message_relaxes() {
    let insecure = domain(Dnssec::Insecure, none(), none()).hosts.remove(0);
    let dane = domain(Dnssec::Secure, usable(), none()).hosts.remove(0);
    let relaxed = MessageFacts {
        tls_required_no: true,
        submitter_may_relax: true,
        ..MessageFacts::default()
    };
    let fallback = PolicySettings {
        insecure_plaintext_fallback: true,
        ..PolicySettings::default()
    };
    let rows: [(&str, &HostFacts, &MessageFacts, &PolicySettings, &str); 4] = [
        (
            "default opportunistic",
            &insecure,
            &MessageFacts::default(),
            &PolicySettings::default(),
            "verified",
        ),
        (
            "TLS-Required: No honoured",
            &insecure,
            &relaxed,
            &PolicySettings::default(),
            "verified",
        ),
        (
            "plaintext fallback configured",
            &insecure,
            &MessageFacts::default(),
            &fallback,
            "verified",
        ),
        // RFC 7672 §3.1: a DANE match authenticates the peer; it stays DANE.
        (
            "usable TLSA at the next hop",
            &dane,
            &MessageFacts::default(),
            &PolicySettings::default(),
            "dane",
        ),
    ];
    for (case, next_hop, message, settings, requirement) in rows {
        let PlanOutcome::Deliver(plan) =
            plan_route_delivery(DOMAIN, next_hop, true, message, settings)
        else {
            panic!("{case}: not delivered");
        };
        assert_eq!(
            plan.candidates[0].requirement.as_str(),
            requirement,
            "{case}"
        );
        assert!(!plan.insecure_plaintext_fallback, "{case}");
        assert!(
            plan.why
                .iter()
                .any(|line| line.contains("logs in with AUTH")),
            "{case}"
        );
        if requirement == "verified" {
            assert_eq!(
                plan.candidates[0].requirement.required_names(),
                Some(&[MX1.to_owned()][..]),
                "{case}"
            );
        }
    }
}

#[test]
fn a_failed_mx_lookup_keeps_a_why_trail_with_the_matching_rules() {
    let bank = Rule {
        name: "bank".to_owned(),
        fail_closed: true,
        ..rule(Some(MinRequirement::DaneOnly))
    };
    let other = Rule {
        name: "other".to_owned(),
        domains: vec![DomainPattern::Exact("other.example".to_owned())],
        ..rule(Some(MinRequirement::Verified))
    };
    let settings = PolicySettings {
        rules: vec![bank, other],
        ..PolicySettings::default()
    };
    let servfail = "MX lookup for example.org failed: SERVFAIL".to_owned();
    let timeout = "MX lookup for example.org timed out after 10s".to_owned();
    // (RFC clause, MX facts, expected outcome, what the trail must say about the MX answer)
    let rows = [
        (
            "RFC 5321 §5.1: NXDOMAIN must be reported as an error",
            MxFacts::NoSuchDomain,
            Expect::Bounce("5.1.2"),
            "does not exist (NXDOMAIN); a permanent answer, which RFC 5321 §5.1",
        ),
        (
            "RFC 5321 §5.1: a temporary failure (SERVFAIL) is queued and retried",
            MxFacts::Unavailable {
                reason: servfail.clone(),
            },
            Expect::Defer,
            "MX lookup failed: MX lookup for example.org failed: SERVFAIL; a temporary failure",
        ),
        (
            "RFC 5321 §5.1: a timeout is temporary too",
            MxFacts::Unavailable {
                reason: timeout.clone(),
            },
            Expect::Defer,
            "timed out after 10s; a temporary failure, so the mail is queued and retried later \
             (RFC 5321 §5.1)",
        ),
        (
            "RFC 7505 §3: a null MX accepts no mail",
            MxFacts::Null,
            Expect::Bounce("5.1.10"),
            "publishes a null MX: it accepts no mail (RFC 7505 §3)",
        ),
        (
            "RFC 5321 §5.1: MX records present but none usable is an error",
            MxFacts::Hosts(vec![MxHost {
                name: "localhost".to_owned(),
                preference: 10,
            }]),
            Expect::Bounce("5.4.4"),
            "MX records present but none usable: an error (RFC 5321 §5.1)",
        ),
    ];
    for (clause, mx, expect, mx_note) in rows {
        let mut facts = domain(Dnssec::Insecure, none(), none());
        facts.mx = mx;
        facts.dnssec_health = DnssecHealth::Broken {
            mode: "validate".to_owned(),
            reason: "root DNSKEY lookup timed out".to_owned(),
        };
        let outcome = plan_delivery(&facts, &message(false, false, false), &settings);
        assert_eq!(summary(&outcome), expect, "{clause}: {outcome:#?}");
        let why = outcome.why().join("\n");
        for needed in [
            mx_note,
            "DNSSEC self-test (validate) failed: root DNSKEY lookup timed out",
            "matching rule(s): bank",
        ] {
            assert!(
                why.contains(needed),
                "{clause}: missing {needed:?} in\n{why}"
            );
        }
        assert!(!why.contains("other"), "{clause}: {why}");
    }
}

#[test]
fn a_plan_names_the_rules_that_matched_in_file_order() {
    let first = Rule {
        name: "first".to_owned(),
        ..rule(Some(MinRequirement::Encrypted))
    };
    let elsewhere = Rule {
        name: "elsewhere".to_owned(),
        domains: vec![DomainPattern::Exact("other.example".to_owned())],
        ..rule(Some(MinRequirement::Verified))
    };
    let second = Rule {
        name: "second".to_owned(),
        ..rule(Some(MinRequirement::Verified))
    };
    let settings = PolicySettings {
        rules: vec![first, elsewhere, second],
        ..PolicySettings::default()
    };
    let facts = domain(Dnssec::Insecure, none(), none());
    let PlanOutcome::Deliver(plan) =
        plan_delivery(&facts, &message(false, false, false), &settings)
    else {
        panic!("a plan");
    };
    assert_eq!(plan.policy, PolicyLabel::Rule);
    assert_eq!(plan.rules, ["first", "second"]);
    let PlanOutcome::Deliver(plan) = plan_delivery(
        &facts,
        &message(false, false, false),
        &PolicySettings::default(),
    ) else {
        panic!("a plan");
    };
    assert!(plan.rules.is_empty());
}

#[test]
fn a_pin_or_a_version_floor_makes_tls_mandatory() {
    use Expect::*;
    let plain = || domain(Dnssec::Insecure, none(), none());
    let pinned = Rule {
        pins: vec![crate::rules::Pin::Spki { sha256: [7; 32] }],
        ..rule(None)
    };
    let floored = Rule {
        min_tls_version: Some(crate::rules::TlsVersion::Tls13),
        ..rule(None)
    };
    let verified_and_pinned = Rule {
        require: Some(MinRequirement::Verified),
        ..pinned.clone()
    };
    check(vec![
        Row {
            settings: with_rule(pinned),
            ..row(
                "a pin is a demand on the certificate: no plaintext session may bypass it",
                plain(),
                Deliver(
                    PolicyLabel::Rule,
                    vec![(MX1, "encrypted"), (MX2, "encrypted")],
                ),
            )
        },
        Row {
            settings: with_rule(floored),
            ..row(
                "a version floor is a demand on the session: TLS becomes mandatory",
                plain(),
                Deliver(
                    PolicyLabel::Rule,
                    vec![(MX1, "encrypted"), (MX2, "encrypted")],
                ),
            )
        },
        Row {
            settings: with_rule(verified_and_pinned),
            ..row(
                "a stricter require stays as it is",
                plain(),
                Deliver(
                    PolicyLabel::Rule,
                    vec![(MX1, "verified"), (MX2, "verified")],
                ),
            )
        },
    ]);
}

#[test]
fn a_messages_tls_floor_raises_the_plan_and_never_lowers_it() {
    use Expect::*;
    let plain = || domain(Dnssec::Insecure, none(), none());
    let floored = |floor| MessageFacts {
        floor: Some(floor),
        ..message(false, false, false)
    };
    check(vec![
        Row {
            message: floored(MinRequirement::Verified),
            ..row(
                "issue 10: a verified floor over a destination publishing nothing",
                plain(),
                Deliver(
                    PolicyLabel::MessageFloor,
                    vec![(MX1, "verified"), (MX2, "verified")],
                ),
            )
        },
        Row {
            message: floored(MinRequirement::DaneOnly),
            ..row(
                "RFC 8460 §4.3.2 dane-required: a dane floor without usable TLSA defers",
                plain(),
                Defer,
            )
        },
        Row {
            message: floored(MinRequirement::Encrypted),
            ..row(
                "RFC 7672 §2.2: a floor below what the destination publishes changes nothing",
                domain(Dnssec::Secure, usable(), usable()),
                Deliver(PolicyLabel::Dane, vec![(MX1, "dane"), (MX2, "dane")]),
            )
        },
        Row {
            message: MessageFacts {
                floor: Some(MinRequirement::Encrypted),
                ..message(false, true, true)
            },
            ..row(
                "RFC 8689 §5: TLS-Required: No does not undo the message's own floor",
                plain(),
                Deliver(
                    PolicyLabel::MessageFloor,
                    vec![(MX1, "encrypted"), (MX2, "encrypted")],
                ),
            )
        },
        Row {
            message: floored(MinRequirement::Encrypted),
            settings: with_rule(rule(Some(MinRequirement::Verified))),
            ..row(
                "a rule demanding more stays as it is, labelled as the rule's",
                plain(),
                Deliver(
                    PolicyLabel::Rule,
                    vec![(MX1, "verified"), (MX2, "verified")],
                ),
            )
        },
    ]);
}
