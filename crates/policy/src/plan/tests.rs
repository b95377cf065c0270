//! Table-driven tests of plan construction; each row cites the rule it checks.

use super::*;

fn mx(name: &str, preference: u16) -> MxHost {
    MxHost {
        name: name.to_owned(),
        preference,
    }
}

fn settings(default_requirement: DefaultRequirement) -> PolicySettings {
    PolicySettings {
        default_requirement,
        ..PolicySettings::default()
    }
}

fn hosts_of(outcome: &PlanOutcome) -> Vec<(String, u16)> {
    match outcome {
        PlanOutcome::Deliver(plan) => plan
            .candidates
            .iter()
            .map(|c| (c.host.clone(), c.preference))
            .collect(),
        other => panic!("expected a plan, got {other:?}"),
    }
}

#[test]
fn mx_facts_become_candidates_in_the_order_the_rfcs_require() {
    struct Row {
        rule: &'static str,
        facts: MxFacts,
        hosts: &'static [(&'static str, u16)],
    }
    let rows = [
        Row {
            rule: "RFC 5321 §5.1: lowest preference first",
            facts: MxFacts::Hosts(vec![mx("b.example", 20), mx("a.example", 10)]),
            hosts: &[("a.example", 10), ("b.example", 20)],
        },
        Row {
            rule: "RFC 5321 §5.1: equal preferences keep the resolver's random order",
            facts: MxFacts::Hosts(vec![
                mx("y.example", 5),
                mx("x.example", 5),
                mx("w.example", 1),
            ]),
            hosts: &[("w.example", 1), ("y.example", 5), ("x.example", 5)],
        },
        Row {
            rule: "RFC 5321 §5.1: no MX records means an implicit MX 0 at the domain",
            facts: MxFacts::Implicit {
                host: "example.org".to_owned(),
            },
            hosts: &[("example.org", 0)],
        },
        Row {
            rule: "RFC 5321 §5.1: an MX must name a domain, so IP literals are skipped",
            facts: MxFacts::Hosts(vec![mx("192.0.2.1", 0), mx("mx.example", 10)]),
            hosts: &[("mx.example", 10)],
        },
        Row {
            rule: "RFC 7505 §3: a stray '.' beside real MX records is ignored, not a null MX",
            facts: MxFacts::Hosts(vec![mx(".", 0), mx("MX.Example.", 10)]),
            hosts: &[("mx.example", 10)],
        },
        Row {
            rule: "RFC 6761 §6.3: localhost names are skipped, they would loop",
            facts: MxFacts::Hosts(vec![mx("localhost", 0), mx("mx.example", 10)]),
            hosts: &[("mx.example", 10)],
        },
    ];
    for row in rows {
        let outcome = plan(
            "example.org",
            &row.facts,
            &settings(DefaultRequirement::Opportunistic),
        );
        let expected: Vec<(String, u16)> = row
            .hosts
            .iter()
            .map(|(h, p)| ((*h).to_owned(), *p))
            .collect();
        assert_eq!(hosts_of(&outcome), expected, "{}", row.rule);
    }
}

#[test]
fn facts_that_allow_no_delivery_bounce_or_defer_as_the_rfcs_say() {
    struct Row {
        rule: &'static str,
        facts: MxFacts,
        bounce_status: Option<&'static str>,
    }
    let rows = [
        Row {
            rule: "RFC 7505 §3: null MX bounces with 5.1.10",
            facts: MxFacts::Null,
            bounce_status: Some("5.1.10"),
        },
        Row {
            rule: "RFC 5321 §5.1: a non-existent domain is an error (5.1.2)",
            facts: MxFacts::NoSuchDomain,
            bounce_status: Some("5.1.2"),
        },
        Row {
            rule: "RFC 5321 §5.1: MX records present but none usable is an error",
            facts: MxFacts::Hosts(vec![
                mx("127.0.0.1", 0),
                mx("[::1]", 5),
                mx("a.localhost", 9),
            ]),
            bounce_status: Some("5.4.4"),
        },
        Row {
            rule: "RFC 5321 §4.1.2, RFC 3463: a domain that is not a host name bounces (5.1.3)",
            facts: MxFacts::NotAHostName {
                reason: "a label holds a character other than letters, digits and hyphens"
                    .to_owned(),
            },
            bounce_status: Some("5.1.3"),
        },
        Row {
            rule: "RFC 5321 §5.1: a temporary DNS error queues the message",
            facts: MxFacts::Unavailable {
                reason: "servfail".to_owned(),
            },
            bounce_status: None,
        },
    ];
    for row in rows {
        let outcome = plan(
            "example.org",
            &row.facts,
            &settings(DefaultRequirement::Verified),
        );
        match (row.bounce_status, &outcome) {
            (Some(expected), PlanOutcome::Bounce { status, .. }) => {
                assert_eq!(status, expected, "{}", row.rule);
            }
            (None, PlanOutcome::Defer { reason, .. }) => {
                assert!(reason.contains("servfail"), "{}", row.rule);
            }
            (_, other) => panic!("{}: unexpected {other:?}", row.rule),
        }
    }
}

#[test]
fn the_global_default_sets_each_candidates_requirement_and_label() {
    let facts = MxFacts::Hosts(vec![mx("mx1.example", 10), mx("mx2.example", 20)]);
    let rows = [
        (
            DefaultRequirement::Opportunistic,
            PolicyLabel::DefaultOpportunistic,
            TlsRequirement::Opportunistic,
        ),
        (
            DefaultRequirement::Encrypted,
            PolicyLabel::DefaultEncrypted,
            TlsRequirement::Encrypted,
        ),
        (
            DefaultRequirement::Verified,
            PolicyLabel::DefaultVerified,
            // RFC 8461 §4.1 style: the certificate must match the MX host name.
            TlsRequirement::Verified {
                names: vec!["mx1.example".to_owned()],
            },
        ),
    ];
    for (default, label, first_requirement) in rows {
        let PlanOutcome::Deliver(plan) = plan("example.org", &facts, &settings(default)) else {
            panic!("expected a plan for {default:?}");
        };
        assert_eq!(plan.policy, label);
        assert_eq!(plan.candidates[0].requirement, first_requirement);
        if let TlsRequirement::Verified { names } = &plan.candidates[1].requirement {
            assert_eq!(names, &["mx2.example".to_owned()]);
        }
        assert!(!plan.why.is_empty());
    }
}

#[test]
fn plaintext_fallback_is_granted_only_to_opportunistic_plans_that_enable_it() {
    let facts = MxFacts::Implicit {
        host: "example.org".to_owned(),
    };
    let rows = [
        (DefaultRequirement::Opportunistic, false, false),
        (DefaultRequirement::Opportunistic, true, true),
        (DefaultRequirement::Encrypted, true, false),
        (DefaultRequirement::Verified, true, false),
    ];
    for (default_requirement, fallback, expected) in rows {
        let settings = PolicySettings {
            default_requirement,
            insecure_plaintext_fallback: fallback,
            ..PolicySettings::default()
        };
        let PlanOutcome::Deliver(plan) = plan("example.org", &facts, &settings) else {
            panic!("expected a plan");
        };
        let host = &plan.candidates[0];
        assert_eq!(
            plan.allows_plaintext_after_failed_handshake(host),
            expected,
            "{default_requirement:?} with fallback {fallback}"
        );
    }
}

#[test]
fn a_route_plans_its_next_hop_under_the_route_label() {
    let settings = settings(DefaultRequirement::Verified);
    let PlanOutcome::Deliver(plan) = plan_route("example.org", "Relay.Example.", &settings) else {
        panic!("expected a plan");
    };
    assert_eq!(plan.policy, PolicyLabel::Route);
    assert_eq!(plan.candidates.len(), 1);
    assert_eq!(plan.candidates[0].host, "relay.example");
    assert_eq!(
        plan.candidates[0].requirement.required_names(),
        Some(&["relay.example".to_owned()][..])
    );
}

#[test]
fn only_opportunistic_requirements_allow_plaintext() {
    assert!(TlsRequirement::Opportunistic.allows_plaintext());
    assert!(!TlsRequirement::Encrypted.allows_plaintext());
    assert!(
        !TlsRequirement::Verified {
            names: vec!["mx.example".to_owned()]
        }
        .allows_plaintext()
    );
}

// RFC 8689 §4.2.1: a REQUIRETLS message that no host could take under its conditions bounces,
// with X.7.10 for a missing STARTTLS and the failed condition's own code made permanent
// otherwise; any other failure, or a REQUIRETLS one after a transient failure, defers.
#[test]
fn a_requiretls_message_no_host_could_take_bounces_with_the_condition_it_failed() {
    use strictmx_protocol::status;
    let plan = |requiretls| DeliveryPlan {
        domain: "example.org".to_owned(),
        candidates: Vec::new(),
        policy: PolicyLabel::Route,
        rules: Vec::new(),
        insecure_plaintext_fallback: false,
        requiretls,
        policy_failures: Vec::new(),
        why: Vec::new(),
    };
    let rows = [
        (
            true,
            status::SECURITY_NOT_SUPPORTED,
            true,
            false,
            Some("5.7.10"),
        ),
        (true, status::REQUIRETLS_NEEDED, true, false, Some("5.7.30")),
        (
            true,
            status::CRYPTOGRAPHIC_FAILURE,
            true,
            false,
            Some("5.7.5"),
        ),
        (true, status::REQUIRETLS_NEEDED, true, true, None),
        (true, status::NO_ANSWER, false, false, None),
        (false, status::SECURITY_NOT_SUPPORTED, true, false, None),
    ];
    for (requiretls, code, condition, transient_seen, expected) in rows {
        let bounced = plan(requiretls).requiretls_bounce(code, condition, transient_seen);
        assert_eq!(
            bounced.map(|s| s.to_string()).as_deref(),
            expected,
            "{code} requiretls={requiretls} condition={condition} transient={transient_seen}"
        );
    }
}
