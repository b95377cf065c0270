//! Tests of what a plan and its requirements answer; each row cites the rule it checks. How
//! plans are made is tested in `delivery/tests.rs`.

use super::*;

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
