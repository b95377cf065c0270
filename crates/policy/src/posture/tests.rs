//! Table tests of what counts as a destination weakening (issue 11, "Policy changes noticed").

use super::*;

fn policy(mode: &str) -> StsPosture {
    StsPosture::Policy {
        mode: mode.to_owned(),
        id: "1".to_owned(),
        mx: vec!["mx.example".to_owned()],
    }
}

fn posture(sts: StsPosture, tlsa: TlsaPosture, mx_secure: Option<bool>) -> Posture {
    Posture {
        sts,
        tlsa,
        mx_secure,
        ..Posture::default()
    }
}

fn starttls(host: &str, offered: bool) -> Posture {
    let mut p = posture(StsPosture::NoRecord, TlsaPosture::None, Some(false));
    p.starttls.insert(host.to_owned(), offered);
    p
}

#[test]
fn only_a_real_loss_of_protection_is_a_weakening() {
    use TlsaPosture as T;
    let strong = posture(policy("enforce"), T::Usable, Some(true));
    let rows: Vec<(&str, Posture, Posture, Vec<&str>)> = vec![
        ("nothing changed", strong.clone(), strong.clone(), vec![]),
        (
            "RFC 8461 §5: enforce to testing",
            strong.clone(),
            posture(policy("testing"), T::Usable, Some(true)),
            vec!["sts-mode"],
        ),
        (
            "RFC 8461 §5: enforce to none",
            strong.clone(),
            posture(policy("none"), T::Usable, Some(true)),
            vec!["sts-mode"],
        ),
        (
            "testing to enforce is a strengthening",
            posture(policy("testing"), T::None, None),
            posture(policy("enforce"), T::None, None),
            vec![],
        ),
        (
            "the MTA-STS record gone",
            strong.clone(),
            posture(StsPosture::NoRecord, T::Usable, Some(true)),
            vec!["sts-record-gone"],
        ),
        (
            "a failed MTA-STS lookup is not a record gone",
            strong.clone(),
            posture(StsPosture::Unknown, T::Usable, Some(true)),
            vec![],
        ),
        (
            "RFC 7672 §2.2: usable TLSA records gone",
            strong.clone(),
            posture(policy("enforce"), T::None, Some(true)),
            vec!["tlsa"],
        ),
        (
            "RFC 7672 §2.2: TLSA records that became unusable",
            strong.clone(),
            posture(policy("enforce"), T::Unusable, Some(true)),
            vec!["tlsa"],
        ),
        (
            "a bogus TLSA answer is unknown, not gone",
            strong.clone(),
            posture(policy("enforce"), T::Unknown, Some(true)),
            vec![],
        ),
        (
            "RFC 4035: the MX RRset no longer validates",
            strong.clone(),
            posture(policy("enforce"), T::Usable, Some(false)),
            vec!["dnssec-lost"],
        ),
        (
            "an indeterminate DNSSEC status is not a loss",
            strong.clone(),
            posture(policy("enforce"), T::Usable, None),
            vec![],
        ),
        (
            "STARTTLS dropped by a host that offered it",
            starttls("mx.example", true),
            starttls("mx.example", false),
            vec!["starttls-dropped"],
        ),
        (
            "a host that never offered STARTTLS is no change",
            starttls("mx.example", false),
            starttls("mx.example", false),
            vec![],
        ),
        (
            "a new host without STARTTLS was never seen with it",
            starttls("mx1.example", true),
            starttls("mx2.example", false),
            vec![],
        ),
        (
            "several losses at once are each named",
            strong,
            posture(StsPosture::NoRecord, T::None, Some(false)),
            vec!["sts-record-gone", "tlsa", "dnssec-lost"],
        ),
    ];
    for (rule, before, after, expected) in rows {
        let got: Vec<&str> = weakenings(&before, &after)
            .iter()
            .map(Weakening::as_str)
            .collect();
        assert_eq!(got, expected, "{rule}");
    }
}

#[test]
fn what_a_delivery_could_not_see_keeps_its_last_known_value() {
    let mut before = posture(policy("enforce"), TlsaPosture::Usable, Some(true));
    before.starttls.insert("mx1.example".to_owned(), true);
    let mut now = posture(StsPosture::Unknown, TlsaPosture::Unknown, None);
    now.starttls.insert("mx2.example".to_owned(), true);
    let next = merged(&before, &now);
    assert_eq!(next.sts, before.sts);
    assert_eq!(next.tlsa, TlsaPosture::Usable);
    assert_eq!(next.mx_secure, Some(true));
    assert_eq!(next.starttls.len(), 2);
    // A later lookup that shows the record gone still compares against the last policy seen.
    let gone = posture(StsPosture::NoRecord, TlsaPosture::Usable, Some(true));
    let names: Vec<&str> = weakenings(&next, &gone)
        .iter()
        .map(Weakening::as_str)
        .collect();
    assert_eq!(names, ["sts-record-gone"]);
}

#[test]
fn the_posture_reads_what_the_gathered_facts_show_and_leaves_failures_unknown() {
    use crate::plan::delivery::tests::{bogus, domain, fetch_failed, none, sts, unusable, usable};
    use crate::sts::StsMode;
    let rows = [
        (
            "no MTA-STS record, insecure MX, no TLSA",
            domain(Dnssec::Insecure, none(), none()),
            (StsPosture::NoRecord, TlsaPosture::None, Some(false)),
        ),
        (
            "RFC 8461 §5: a policy in force, with its mode, id and mx patterns",
            sts(
                domain(Dnssec::Secure, usable(), none()),
                StsMode::Enforce,
                &["mx1.example.org"],
            ),
            (
                policy_of("enforce", "1", "mx1.example.org"),
                TlsaPosture::Usable,
                Some(true),
            ),
        ),
        (
            "a policy that could not be fetched is unknown, not gone",
            fetch_failed(domain(Dnssec::Secure, unusable(), unusable())),
            (StsPosture::Unknown, TlsaPosture::Unusable, Some(true)),
        ),
        (
            "RFC 7672 §2.1.1: a bogus TLSA answer hides that host: unknown",
            domain(Dnssec::Secure, bogus(), none()),
            (StsPosture::NoRecord, TlsaPosture::Unknown, Some(true)),
        ),
        (
            "a usable host elsewhere stands, whatever a bogus one hides",
            domain(Dnssec::Secure, bogus(), usable()),
            (StsPosture::NoRecord, TlsaPosture::Usable, Some(true)),
        ),
        (
            "an indeterminate MX status is unknown",
            domain(Dnssec::Indeterminate, none(), none()),
            (StsPosture::NoRecord, TlsaPosture::None, None),
        ),
    ];
    for (rule, facts, (sts, tlsa, mx_secure)) in rows {
        let got = posture_of(&facts);
        assert_eq!(
            (got.sts, got.tlsa, got.mx_secure),
            (sts, tlsa, mx_secure),
            "{rule}"
        );
    }
}

fn policy_of(mode: &str, id: &str, mx: &str) -> StsPosture {
    StsPosture::Policy {
        mode: mode.to_owned(),
        id: id.to_owned(),
        mx: vec![mx.to_owned()],
    }
}
