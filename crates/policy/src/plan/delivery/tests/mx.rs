//! The MX answer and the global default, through [`plan_delivery`]: candidate order, the MX
//! answers that bounce or defer, the default's requirement and label, plaintext fallback, and a
//! route's next hop. Each row cites the rule it checks.

use super::*;
use crate::plan::DefaultRequirement;

/// `mx` as DNS answered it for [`DOMAIN`], each host it names with an address and no TLSA, and
/// no MTA-STS: only the MX answer and the global default decide.
fn answered(mx: MxFacts) -> DomainFacts {
    let mut facts = domain(Dnssec::Insecure, none(), none());
    let template = facts.hosts.remove(0);
    let names: Vec<String> = match &mx {
        MxFacts::Hosts(records) => records.iter().map(|r| r.name.clone()).collect(),
        MxFacts::Implicit { host } => vec![host.clone()],
        _ => Vec::new(),
    };
    facts.hosts = names
        .into_iter()
        .map(|name| HostFacts {
            name,
            ..template.clone()
        })
        .collect();
    facts.mx = mx;
    facts
}

fn mx(name: &str, preference: u16) -> MxHost {
    MxHost {
        name: name.to_owned(),
        preference,
    }
}

fn default_is(default_requirement: DefaultRequirement) -> PolicySettings {
    PolicySettings {
        default_requirement,
        ..PolicySettings::default()
    }
}

fn planned(mx: MxFacts, settings: &PolicySettings) -> PlanOutcome {
    plan_delivery(&answered(mx), &MessageFacts::default(), settings)
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
        let outcome = planned(row.facts, &default_is(DefaultRequirement::Opportunistic));
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
        let outcome = planned(row.facts, &default_is(DefaultRequirement::Verified));
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
    let facts = || MxFacts::Hosts(vec![mx("mx1.example", 10), mx("mx2.example", 20)]);
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
        let PlanOutcome::Deliver(plan) = planned(facts(), &default_is(default)) else {
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
    let facts = || MxFacts::Implicit {
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
        let PlanOutcome::Deliver(plan) = planned(facts(), &settings) else {
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
    let next_hop = HostFacts {
        name: "Relay.Example.".to_owned(),
        ..domain(Dnssec::Insecure, none(), none()).hosts.remove(0)
    };
    let outcome = plan_route_delivery(
        DOMAIN,
        &next_hop,
        false,
        &MessageFacts::default(),
        &default_is(DefaultRequirement::Verified),
    );
    let PlanOutcome::Deliver(plan) = outcome else {
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
