//! Table-driven tests of peer judgement; each row cites the rule it checks.

use super::*;
use crate::report::ReportPolicy;
use crate::tlsa::tests::{certificate, record, sha256_of, spki_of_key};

fn host(requirement: TlsRequirement, policy_type: PolicyType) -> PlannedHost {
    PlannedHost {
        host: "mx.example".to_owned(),
        preference: 10,
        requirement,
        pins: Vec::new(),
        min_tls_version: None,
        report: ReportPolicy {
            policy_type,
            policy_string: Vec::new(),
            policy_domain: "example".to_owned(),
            mx_host: Vec::new(),
        },
        testing: None,
    }
}

fn peer(webpki: WebpkiVerdict) -> PeerFacts {
    PeerFacts {
        tls_version: TlsVersion::Tls13,
        chain: vec![certificate(b"leaf", 1), certificate(b"issuer", 2)],
        webpki,
        dane_ta: None,
        pin_anchor: None,
    }
}

fn verified() -> TlsRequirement {
    TlsRequirement::Verified {
        names: vec!["mx.example".to_owned()],
    }
}

fn dane(records: Vec<crate::facts::TlsaRecord>) -> TlsRequirement {
    TlsRequirement::Dane {
        records,
        names: vec!["mx.example".to_owned()],
    }
}

#[test]
fn sessions_are_judged_against_their_requirement() {
    let issuer = certificate(b"issuer", 2);
    let ee = record(3, 1, 1, sha256_of(&spki_of_key(b"leaf")));
    let ta = record(2, 0, 1, sha256_of(&issuer));
    let wrong = record(3, 0, 1, sha256_of(b"another certificate"));
    struct Row {
        rule: &'static str,
        host: PlannedHost,
        peer: PeerFacts,
        expected: Result<PeerAuth, ResultType>,
    }
    let with_ta = |verdict| PeerFacts {
        dane_ta: Some(verdict),
        ..peer(WebpkiVerdict::NotTrusted)
    };
    let rows = [
        Row {
            rule: "RFC 8461 §5: opportunistic accepts any certificate",
            host: host(TlsRequirement::Opportunistic, PolicyType::NoPolicyFound),
            peer: peer(WebpkiVerdict::NotTrusted),
            expected: Ok(PeerAuth::None),
        },
        Row {
            rule: "RFC 8461 §4.1: a valid web PKI certificate under MTA-STS",
            host: host(verified(), PolicyType::Sts),
            peer: peer(WebpkiVerdict::Valid),
            expected: Ok(PeerAuth::Sts),
        },
        Row {
            rule: "RFC 8461 §4.1: verification from a local rule counts as web PKI",
            host: host(verified(), PolicyType::NoPolicyFound),
            peer: peer(WebpkiVerdict::Valid),
            expected: Ok(PeerAuth::Webpki),
        },
        Row {
            rule: "RFC 8460 §4.3.1: an expired certificate is certificate-expired",
            host: host(verified(), PolicyType::Sts),
            peer: peer(WebpkiVerdict::Expired),
            expected: Err(ResultType::CertificateExpired),
        },
        Row {
            rule: "RFC 8460 §4.3.1: an untrusted chain is certificate-not-trusted",
            host: host(verified(), PolicyType::Sts),
            peer: peer(WebpkiVerdict::NotTrusted),
            expected: Err(ResultType::CertificateNotTrusted),
        },
        Row {
            rule: "RFC 8460 §4.3.1: a wrong name is certificate-host-mismatch",
            host: host(verified(), PolicyType::Sts),
            peer: peer(WebpkiVerdict::HostMismatch),
            expected: Err(ResultType::CertificateHostMismatch),
        },
        Row {
            rule: "RFC 7672 §3.1.1: DANE-EE ignores names, dates and trust",
            host: host(dane(vec![ee.clone()]), PolicyType::Tlsa),
            peer: peer(WebpkiVerdict::Expired),
            expected: Ok(PeerAuth::Dane),
        },
        Row {
            rule: "RFC 8461 §2: a failing DANE check is not rescued by a valid web PKI chain",
            host: host(dane(vec![wrong.clone()]), PolicyType::Tlsa),
            peer: peer(WebpkiVerdict::Valid),
            expected: Err(ResultType::ValidationFailure),
        },
        Row {
            rule: "RFC 7672 §3.1.2: DANE-TA with a chain validated to the matched anchor",
            host: host(dane(vec![ta.clone()]), PolicyType::Tlsa),
            peer: with_ta(WebpkiVerdict::Valid),
            expected: Ok(PeerAuth::Dane),
        },
        Row {
            rule: "RFC 7672 §3.2.2: DANE-TA checks the reference identifiers",
            host: host(dane(vec![ta.clone()]), PolicyType::Tlsa),
            peer: with_ta(WebpkiVerdict::HostMismatch),
            expected: Err(ResultType::CertificateHostMismatch),
        },
        Row {
            rule: "RFC 7672 §3.1.2: DANE-TA checks validity dates, unlike DANE-EE",
            host: host(dane(vec![ta.clone()]), PolicyType::Tlsa),
            peer: with_ta(WebpkiVerdict::Expired),
            expected: Err(ResultType::CertificateExpired),
        },
        Row {
            rule: "RFC 7672 §3.1.2: a DANE-TA match whose chain was never validated fails",
            host: host(dane(vec![ta]), PolicyType::Tlsa),
            peer: peer(WebpkiVerdict::Valid),
            expected: Err(ResultType::ValidationFailure),
        },
    ];
    for row in rows {
        let got = judge_peer(&row.host, &row.peer).map_err(|failure| failure.result_type);
        assert_eq!(got, row.expected, "{}", row.rule);
    }
}

#[test]
fn pins_are_met_by_the_end_entity_or_by_an_issuer_it_validates_to() {
    let digest = |bytes: &[u8]| -> [u8; 32] { sha256_of(bytes).try_into().expect("32 bytes") };
    let leaf = certificate(b"leaf", 1);
    let issuer = certificate(b"issuer", 2);
    let foreign = certificate(b"attacker", 3);
    let leaf_spki = Pin::Spki {
        sha256: digest(&spki_of_key(b"leaf")),
    };
    let leaf_cert = Pin::Certificate {
        sha256: digest(&leaf),
    };
    let issuer_cert = Pin::Certificate {
        sha256: digest(&issuer),
    };
    let issuer_spki = Pin::Spki {
        sha256: digest(&spki_of_key(b"issuer")),
    };
    let facts = |chain: Vec<Vec<u8>>, pin_anchor: Option<WebpkiVerdict>| PeerFacts {
        chain,
        pin_anchor,
        ..peer(WebpkiVerdict::NotTrusted)
    };
    struct Row {
        rule: &'static str,
        pins: Vec<Pin>,
        peer: PeerFacts,
        expected: Result<(), ResultType>,
    }
    let rows = [
        Row {
            rule: "an SPKI pin on the end-entity certificate (the key the handshake proved) is met",
            pins: vec![leaf_spki.clone()],
            peer: facts(vec![leaf.clone(), issuer.clone()], None),
            expected: Ok(()),
        },
        Row {
            rule: "a certificate pin on the end-entity certificate is met without names or dates",
            pins: vec![leaf_cert.clone()],
            peer: facts(vec![leaf.clone()], None),
            expected: Ok(()),
        },
        Row {
            rule: "issue 14: a pinned certificate appended after a foreign leaf is refused",
            pins: vec![issuer_cert.clone()],
            peer: facts(
                vec![foreign.clone(), issuer.clone()],
                Some(WebpkiVerdict::NotTrusted),
            ),
            expected: Err(ResultType::CertificateNotTrusted),
        },
        Row {
            rule: "issue 14: a pinned end-entity certificate appended after a foreign leaf is refused",
            pins: vec![leaf_spki.clone()],
            peer: facts(
                vec![foreign.clone(), leaf.clone()],
                Some(WebpkiVerdict::NotTrusted),
            ),
            expected: Err(ResultType::CertificateNotTrusted),
        },
        Row {
            rule: "a pin on a presented issuer is met when the leaf validates to it as sole anchor",
            pins: vec![issuer_cert.clone()],
            peer: facts(
                vec![leaf.clone(), issuer.clone()],
                Some(WebpkiVerdict::Valid),
            ),
            expected: Ok(()),
        },
        Row {
            rule: "an SPKI pin on a presented issuer is met the same way",
            pins: vec![issuer_spki],
            peer: facts(
                vec![leaf.clone(), issuer.clone()],
                Some(WebpkiVerdict::Valid),
            ),
            expected: Ok(()),
        },
        Row {
            rule: "RFC 8460 §4.3.1: a leaf under a pinned issuer naming another host is a host mismatch",
            pins: vec![issuer_cert.clone()],
            peer: facts(
                vec![leaf.clone(), issuer.clone()],
                Some(WebpkiVerdict::HostMismatch),
            ),
            expected: Err(ResultType::CertificateHostMismatch),
        },
        Row {
            rule: "RFC 8460 §4.3.1: an expired leaf under a pinned issuer is certificate-expired",
            pins: vec![issuer_cert.clone()],
            peer: facts(
                vec![leaf.clone(), issuer.clone()],
                Some(WebpkiVerdict::Expired),
            ),
            expected: Err(ResultType::CertificateExpired),
        },
        Row {
            rule: "a pinned issuer whose chain the transport never validated fails closed",
            pins: vec![issuer_cert.clone()],
            peer: facts(vec![leaf.clone(), issuer.clone()], None),
            expected: Err(ResultType::ValidationFailure),
        },
        Row {
            rule: "a pinned issuer that was not presented cannot be validated to",
            pins: vec![issuer_cert],
            peer: facts(vec![leaf.clone()], Some(WebpkiVerdict::Valid)),
            expected: Err(ResultType::ValidationFailure),
        },
        Row {
            rule: "a pin matching nothing fails",
            pins: vec![Pin::Spki { sha256: [7; 32] }],
            peer: facts(vec![leaf.clone(), issuer.clone()], None),
            expected: Err(ResultType::ValidationFailure),
        },
        Row {
            rule: "no pins: nothing to meet",
            pins: Vec::new(),
            peer: facts(vec![foreign, issuer], None),
            expected: Ok(()),
        },
    ];
    for row in rows {
        let mut planned = host(TlsRequirement::Encrypted, PolicyType::NoPolicyFound);
        planned.pins = row.pins;
        let got = judge_peer(&planned, &row.peer)
            .map(|_| ())
            .map_err(|failure| failure.result_type);
        assert_eq!(got, row.expected, "{}", row.rule);
    }
}

#[test]
fn only_presented_issuers_are_pin_anchor_candidates_and_only_when_the_leaf_is_not_pinned() {
    let digest = |bytes: &[u8]| -> [u8; 32] { sha256_of(bytes).try_into().expect("32 bytes") };
    let leaf = certificate(b"leaf", 1);
    let issuer = certificate(b"issuer", 2);
    let on_issuer = vec![Pin::Certificate {
        sha256: digest(&issuer),
    }];
    let on_both = vec![
        on_issuer[0].clone(),
        Pin::Certificate {
            sha256: digest(&leaf),
        },
    ];
    let chain = vec![leaf.clone(), issuer.clone()];
    assert_eq!(pin_anchor_candidates(&on_issuer, &chain), [1]);
    assert!(pin_anchor_candidates(&on_both, &chain).is_empty());
    // The end-entity certificate is never its own anchor: it is pinned, or it is not.
    assert!(pin_anchor_candidates(&on_issuer, &[issuer]).is_empty());
}

#[test]
fn a_pinned_issuer_vouches_only_for_the_names_the_host_requires() {
    let mut planned = host(TlsRequirement::Encrypted, PolicyType::NoPolicyFound);
    assert_eq!(pin_anchor_names(&planned), ["mx.example"]);
    planned.requirement = TlsRequirement::Verified {
        names: vec!["mx.example".to_owned(), "alias.example".to_owned()],
    };
    assert_eq!(pin_anchor_names(&planned), ["mx.example", "alias.example"]);
}

#[test]
fn version_floors_from_rules_are_enforced_before_the_requirement() {
    let mut planned = host(TlsRequirement::Encrypted, PolicyType::NoPolicyFound);
    planned.min_tls_version = Some(TlsVersion::Tls13);
    assert!(judge_peer(&planned, &peer(WebpkiVerdict::NotTrusted)).is_ok());
    let old = PeerFacts {
        tls_version: TlsVersion::Tls12,
        ..peer(WebpkiVerdict::Valid)
    };
    let failure = judge_peer(&planned, &old).expect_err("TLS 1.2 is below the floor");
    assert_eq!(failure.result_type, ResultType::ValidationFailure);
    assert_eq!(
        failure.reason,
        "negotiated TLSv1.2, a rule requires at least TLSv1.3"
    );
}

#[test]
fn sessions_without_tls_fail_every_mandatory_requirement() {
    let rows = [
        (
            "RFC 3207 §4: opportunistic delivery may continue in plaintext",
            TlsRequirement::Opportunistic,
            NoTls::NotOffered,
            None,
        ),
        (
            "RFC 8461 §5: no STARTTLS under a policy is starttls-not-supported",
            verified(),
            NoTls::NotOffered,
            Some(ResultType::StarttlsNotSupported),
        ),
        (
            "RFC 7672 §2.2: no STARTTLS at a DANE host is starttls-not-supported",
            dane(Vec::new()),
            NoTls::NotOffered,
            Some(ResultType::StarttlsNotSupported),
        ),
        (
            "RFC 8460 §4.3.1: a failed handshake is a validation-failure",
            TlsRequirement::Encrypted,
            NoTls::HandshakeFailed {
                reason: "alert".to_owned(),
            },
            Some(ResultType::ValidationFailure),
        ),
    ];
    for (rule, requirement, what, expected) in rows {
        let got = judge_without_tls(&host(requirement, PolicyType::NoPolicyFound), &what)
            .err()
            .map(|failure| failure.result_type);
        assert_eq!(got, expected, "{rule}");
    }
}

#[test]
fn testing_mode_reports_what_enforce_would_have_refused_without_refusing() {
    // RFC 8461 §5: testing delivers as without a policy and reports failures (RFC 8460).
    let mut planned = host(TlsRequirement::Opportunistic, PolicyType::Sts);
    planned.testing = Some(verified());
    let untrusted = peer(WebpkiVerdict::NotTrusted);
    assert_eq!(judge_peer(&planned, &untrusted), Ok(PeerAuth::None));
    assert_eq!(
        judge_testing(&planned, &untrusted).map(|f| f.result_type),
        Some(ResultType::CertificateNotTrusted)
    );
    assert_eq!(judge_testing(&planned, &peer(WebpkiVerdict::Valid)), None);
    assert_eq!(judge_without_tls(&planned, &NoTls::NotOffered), Ok(()));
    assert_eq!(
        testing_without_tls(&planned, &NoTls::NotOffered).map(|f| f.result_type),
        Some(ResultType::StarttlsNotSupported)
    );
}

#[test]
fn every_session_is_reported_with_the_failure_its_policy_calls_for() {
    let refused = PeerFailure {
        result_type: ResultType::CertificateHostMismatch,
        reason: "name".to_owned(),
    };
    let mut testing = host(TlsRequirement::Opportunistic, PolicyType::Sts);
    testing.testing = Some(verified());
    let opportunistic = host(TlsRequirement::Opportunistic, PolicyType::NoPolicyFound);
    let enforced = host(verified(), PolicyType::Sts);
    let handshake = NoTls::HandshakeFailed {
        reason: "alert".to_owned(),
    };
    let without_tls = [
        (
            "RFC 8460 §4.3.1: no STARTTLS is starttls-not-supported, even where plaintext may carry the mail",
            &opportunistic,
            &NoTls::NotOffered,
            ResultType::StarttlsNotSupported,
        ),
        (
            "RFC 8460 §4.3.1: a failed handshake is a validation-failure",
            &opportunistic,
            &handshake,
            ResultType::ValidationFailure,
        ),
        (
            "RFC 8461 §5: testing reports what enforce would have had",
            &testing,
            &NoTls::NotOffered,
            ResultType::StarttlsNotSupported,
        ),
        (
            "RFC 8461 §5: an enforced policy's failure",
            &enforced,
            &handshake,
            ResultType::ValidationFailure,
        ),
    ];
    for (rule, planned, what, expected) in without_tls {
        assert_eq!(
            report_without_tls(planned, what).result_type,
            expected,
            "{rule}"
        );
    }
    let untrusted = peer(WebpkiVerdict::NotTrusted);
    let valid = peer(WebpkiVerdict::Valid);
    let tls_sessions = [
        (
            "RFC 8460 §4.4: an accepted peer is a successful session",
            &enforced,
            &valid,
            Ok(PeerAuth::Sts),
            None,
        ),
        (
            "RFC 8460 §4.3: a refused peer is counted with the refusal's result type",
            &enforced,
            &untrusted,
            Err(refused.clone()),
            Some(ResultType::CertificateHostMismatch),
        ),
        (
            "RFC 8461 §5: under testing, what enforce would have refused, though delivery goes on",
            &testing,
            &untrusted,
            Ok(PeerAuth::None),
            Some(ResultType::CertificateNotTrusted),
        ),
        (
            "RFC 8461 §5: under testing, a peer enforce would accept is a success",
            &testing,
            &valid,
            Ok(PeerAuth::None),
            None,
        ),
    ];
    for (rule, planned, facts, verdict, expected) in tls_sessions {
        let got = report_tls_session(planned, facts, &verdict).map(|f| f.result_type);
        assert_eq!(got, expected, "{rule}");
    }
}
