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

#[test]
fn a_posture_earns_the_strongest_requirement_its_published_facts_met() {
    use MinRequirement as R;
    use TlsaPosture as T;
    let rows: &[(&str, Posture, Option<R>)] = &[
        // RFC 7672 §2.2: usable TLSA behind a secure MX RRset is DANE.
        (
            "usable TLSA, secure MX",
            posture(policy("enforce"), T::Usable, Some(true)),
            Some(R::DaneOnly),
        ),
        // RFC 7672 §2.2.1: TLSA behind an insecure MX RRset is not used.
        (
            "usable TLSA, insecure MX",
            posture(StsPosture::NoRecord, T::Usable, Some(false)),
            None,
        ),
        (
            "unusable TLSA",
            posture(StsPosture::NoRecord, T::Unusable, Some(true)),
            None,
        ),
        // RFC 8461 §5: enforce demands a verified certificate.
        (
            "MTA-STS enforce",
            posture(policy("enforce"), T::None, Some(false)),
            Some(R::Verified),
        ),
        (
            "MTA-STS testing",
            posture(policy("testing"), T::None, Some(false)),
            None,
        ),
        (
            "STARTTLS offered",
            starttls("mx.example", true),
            Some(R::Encrypted),
        ),
        ("STARTTLS not offered", starttls("mx.example", false), None),
        ("nothing known", Posture::default(), None),
    ];
    for (case, posture, want) in rows {
        assert_eq!(earned(posture), *want, "{case}");
    }
}

struct PinRow {
    case: &'static str,
    last_seen: Option<MinRequirement>,
    now: u64,
    window: u64,
    want: Option<MinRequirement>,
    /// Words the reason must contain.
    words: &'static str,
}

#[test]
fn a_pin_holds_what_the_destination_offered_before_it_weakened_for_its_window_only() {
    use MinRequirement as R;
    let weakenings = vec![
        PastWeakening {
            at: 1_000,
            earned: Some(R::Encrypted),
            what: "mx no longer offers STARTTLS".to_owned(),
        },
        PastWeakening {
            at: 2_000,
            earned: Some(R::Verified),
            what: "MTA-STS mode went from enforce to none".to_owned(),
        },
        PastWeakening {
            at: 3_000,
            earned: None,
            what: "nothing to keep".to_owned(),
        },
    ];
    let history = |last_seen| History {
        last_seen,
        weakenings: weakenings.clone(),
    };
    let rows = [
        PinRow {
            case: "before any weakening",
            last_seen: None,
            now: 500,
            window: 10_000,
            want: None,
            words: "",
        },
        PinRow {
            case: "after the first",
            last_seen: None,
            now: 1_500,
            window: 10_000,
            want: Some(R::Encrypted),
            words: "STARTTLS, 8m 20s ago; the pin holds for 2h 38m 20s more",
        },
        PinRow {
            case: "the strongest within the window wins",
            last_seen: None,
            now: 3_500,
            window: 10_000,
            want: Some(R::Verified),
            words: "enforce to none, 25m ago",
        },
        PinRow {
            case: "only weakenings within the window count",
            last_seen: None,
            now: 2_500,
            window: 1_000,
            want: Some(R::Verified),
            words: "holds for 8m 20s more",
        },
        PinRow {
            case: "a weakening from a posture that earned nothing pins nothing",
            last_seen: None,
            now: 3_500,
            window: 1_000,
            want: None,
            words: "",
        },
        PinRow {
            case: "the window ends at its very second",
            last_seen: None,
            now: 12_000,
            window: 10_000,
            want: None,
            words: "",
        },
        // Until the delivery that sees a change is over, the last posture is all there is:
        // what the destination offered then is still demanded.
        PinRow {
            case: "what was last seen, without a weakening in the window",
            last_seen: Some(R::Encrypted),
            now: 12_500,
            window: 10_000,
            want: Some(R::Encrypted),
            words: "when last seen",
        },
        PinRow {
            case: "a stronger weakening in the window beats what was last seen",
            last_seen: Some(R::Encrypted),
            now: 2_500,
            window: 10_000,
            want: Some(R::Verified),
            words: "enforce to none",
        },
        PinRow {
            case: "a stronger last sighting beats an older weakening",
            last_seen: Some(R::DaneOnly),
            now: 2_500,
            window: 10_000,
            want: Some(R::DaneOnly),
            words: "when last seen",
        },
    ];
    for row in rows {
        let got = pinned(&history(row.last_seen), row.window, row.now);
        assert_eq!(got.as_ref().map(|p| p.require), row.want, "{}", row.case);
        if let Some(got) = got {
            assert!(
                got.because.contains(row.words),
                "{}: {}",
                row.case,
                got.because
            );
        }
    }
}

#[test]
fn a_recorded_change_is_remembered_with_what_it_weakened_from() {
    let before = posture(policy("enforce"), TlsaPosture::None, Some(false));
    let found = [Weakening::StsMode {
        from: "enforce".to_owned(),
        to: "none".to_owned(),
    }];
    let past = PastWeakening::of(42, &before, &found);
    assert_eq!(past.earned, Some(MinRequirement::Verified));
    assert_eq!(past.what, "MTA-STS mode went from enforce to none");
}
