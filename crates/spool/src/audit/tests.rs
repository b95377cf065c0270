use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use strictmx_protocol::{MailParams, RcptParams};

use super::*;
use crate::types::{Envelope, EnvelopeRecipient};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn stored(requiretls: bool) -> EnvelopeRecord {
    EnvelopeRecord {
        size: 10,
        envelope: Arc::new(Envelope {
            mail_from: "app@sender.test".into(),
            params: MailParams {
                requiretls,
                ..MailParams::default()
            },
            recipients: ["a@Bank.Test", "b@other.test"]
                .into_iter()
                .map(|address| EnvelopeRecipient {
                    address: address.into(),
                    params: RcptParams::default(),
                })
                .collect(),
            received_at: t(1_000),
            client: ClientInfo {
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                helo: "app.sender.test".into(),
                auth_user: Some("app".into()),
                tls: None,
            },
            kind: MessageKind::Normal,
            require_tls: None,
        }),
        message_id: Some("<m1@sender.test>".into()),
    }
}

fn attempt(
    at: u64,
    recipients: Vec<usize>,
    auth: PeerAuth,
    outcome: AttemptOutcome,
) -> AttemptRecord {
    AttemptRecord {
        at: t(at),
        domain: "bank.test".into(),
        mx: Some("mx.bank.test".into()),
        ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        tls_version: Some("TLSv1.3".into()),
        cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
        cert_verified: Some(true),
        auth,
        policy: "dane".into(),
        rules: vec!["bank".into()],
        requirement: Some("dane".into()),
        result_type: None,
        recipients,
        outcome,
        reply: format!("{at} reply"),
        duration_ms: 3,
        exceptions: Vec::new(),
        shadow: Vec::new(),
    }
}

fn delivered(at: u64) -> RecipientState {
    RecipientState::Delivered {
        at: t(at),
        mx: "mx.bank.test".into(),
        reply: "250 2.0.0 ok".into(),
    }
}

fn bounced(status: &str) -> RecipientState {
    RecipientState::Bounced {
        at: t(3_000),
        reply: "550 no".into(),
        status: status.into(),
    }
}

#[test]
fn a_record_carries_the_receipt_of_the_attempt_that_delivered() {
    let attempts = [
        attempt(1_100, vec![0, 1], PeerAuth::None, AttemptOutcome::Deferred),
        attempt(1_200, vec![1], PeerAuth::Dane, AttemptOutcome::Delivered),
        attempt(1_300, vec![0], PeerAuth::Dane, AttemptOutcome::Delivered),
    ];
    let record = record_for(
        7,
        &stored(true),
        0,
        &delivered(1_300),
        &attempts,
        Cause::Delivery,
        t(9_999),
    )
    .expect("a delivered recipient has a record");
    assert_eq!(record.queue_id, 7);
    assert_eq!(record.recipient, "a@Bank.Test");
    assert_eq!(record.domain, "bank.test");
    assert_eq!(record.message_id.as_deref(), Some("<m1@sender.test>"));
    assert_eq!(record.submitter.auth_user.as_deref(), Some("app"));
    assert_eq!(record.final_at, t(1_300));
    assert_eq!(record.outcome, AuditOutcome::Delivered);
    let receipt = record.receipt.as_ref().expect("receipt");
    assert_eq!((receipt.at, receipt.auth), (t(1_300), PeerAuth::Dane));
    assert_eq!(receipt.rules, ["bank"]);
    assert_eq!(record.auth(), PeerAuth::Dane);
    // Only the attempts that named this recipient, oldest first.
    let times: Vec<_> = record.attempts.iter().map(|a| a.at).collect();
    assert_eq!(times, [t(1_100), t(1_300)]);
    assert_eq!(
        record.requiretls,
        RequireTlsReceipt {
            requested: true,
            honoured: true
        }
    );
}

#[test]
fn the_outcome_says_how_the_recipient_left_the_queue() {
    let attempts = [attempt(
        1_100,
        vec![0],
        PeerAuth::Dane,
        AttemptOutcome::Bounced,
    )];
    let cases = [
        (
            "a 5xx from the next hop",
            bounced("5.1.1"),
            Cause::Delivery,
            AuditOutcome::Bounced,
        ),
        (
            "RFC 3463 §3.5: 5.4.7 once the queue lifetime ran out",
            bounced("5.4.7"),
            Cause::Delivery,
            AuditOutcome::Expired,
        ),
        (
            "queue bounce",
            bounced("5.0.0"),
            Cause::AdminBounce,
            AuditOutcome::AdminBounced,
        ),
        (
            "queue delete of a queued recipient",
            RecipientState::fresh(t(1_000)),
            Cause::AdminDelete,
            AuditOutcome::Deleted,
        ),
    ];
    for (why, state, cause, outcome) in cases {
        let record =
            record_for(1, &stored(true), 0, &state, &attempts, cause, t(5_000)).expect("a record");
        assert_eq!(record.outcome, outcome, "{why}");
        assert!(
            !record.requiretls.honoured,
            "{why}: requested, never honoured"
        );
        assert!(record.requiretls.requested, "{why}");
    }
    let queued = RecipientState::fresh(t(1_000));
    assert_eq!(
        record_for(
            1,
            &stored(false),
            0,
            &queued,
            &attempts,
            Cause::Delivery,
            t(5_000)
        ),
        None,
        "a recipient that is still queued has no record"
    );
}

#[test]
fn a_recipient_never_tried_has_no_receipt_and_counts_as_unauthenticated() {
    let record = record_for(
        1,
        &stored(false),
        1,
        &bounced("5.0.0"),
        &[],
        Cause::AdminBounce,
        t(5_000),
    )
    .expect("a record");
    assert_eq!(record.receipt, None);
    assert_eq!(record.auth(), PeerAuth::None);
    assert!(record.attempts.is_empty());
}

fn sample(outcome: AuditOutcome, auth: Option<PeerAuth>) -> AuditRecord {
    let mut record = record_for(
        1,
        &stored(false),
        0,
        &delivered(2_000),
        &[attempt(
            2_000,
            vec![0],
            auth.unwrap_or_default(),
            AttemptOutcome::Delivered,
        )],
        Cause::Delivery,
        t(5_000),
    )
    .expect("a record");
    record.outcome = outcome;
    if auth.is_none() {
        record.receipt = None;
    }
    record
}

#[test]
fn a_query_selects_by_time_address_domain_outcome_and_authentication() {
    let dane = sample(AuditOutcome::Delivered, Some(PeerAuth::Dane));
    let webpki = sample(AuditOutcome::Delivered, Some(PeerAuth::Webpki));
    let bounced_over_dane = sample(AuditOutcome::Bounced, Some(PeerAuth::Dane));
    let never_tried = sample(AuditOutcome::AdminBounced, None);
    let q = |f: fn(&mut AuditQuery)| {
        let mut query = AuditQuery::default();
        f(&mut query);
        query
    };
    let rows: [(&str, AuditQuery, [bool; 4]); 11] = [
        ("no condition", AuditQuery::default(), [true; 4]),
        (
            "since is inclusive",
            q(|q| q.since = Some(t(2_000))),
            [true; 4],
        ),
        (
            "until is exclusive",
            q(|q| q.until = Some(t(2_000))),
            [false; 4],
        ),
        (
            "a domain compares without case",
            q(|q| q.domain = Some("BANK.test".into())),
            [true; 4],
        ),
        (
            "another domain",
            q(|q| q.domain = Some("other.test".into())),
            [false; 4],
        ),
        (
            "an address compares without ASCII case",
            q(|q| q.recipient = Some("A@bank.TEST".into())),
            [true; 4],
        ),
        (
            "@domain matches the sender's domain",
            q(|q| q.sender = Some("@Sender.test".into())),
            [true; 4],
        ),
        (
            "the null sender",
            q(|q| q.sender = Some(String::new())),
            [false; 4],
        ),
        (
            "delivered over DANE",
            q(|q| q.auth = Some(AuthFilter::DeliveredOver(PeerAuth::Dane))),
            [true, false, false, false],
        ),
        (
            "not delivered over DANE: weaker deliveries and every failure",
            q(|q| q.auth = Some(AuthFilter::NotDeliveredOver(PeerAuth::Dane))),
            [false, true, true, true],
        ),
        (
            "by outcome",
            q(|q| q.outcome = Some(AuditOutcome::Bounced)),
            [false, false, true, false],
        ),
    ];
    for (why, query, expected) in rows {
        let got = [&dane, &webpki, &bounced_over_dane, &never_tried].map(|r| query.matches(r));
        assert_eq!(got, expected, "{why}");
    }
}

#[test]
fn a_query_naming_a_domain_or_a_recipient_domain_reads_that_domains_index() {
    let q = |domain: Option<&str>, recipient: Option<&str>| AuditQuery {
        domain: domain.map(Into::into),
        recipient: recipient.map(Into::into),
        ..AuditQuery::default()
    };
    assert_eq!(
        q(Some("Bank.Test"), None).indexed_domain().as_deref(),
        Some("bank.test")
    );
    assert_eq!(
        q(None, Some("a@Bank.Test")).indexed_domain().as_deref(),
        Some("bank.test")
    );
    assert_eq!(
        q(None, Some("@bank.test")).indexed_domain().as_deref(),
        Some("bank.test")
    );
    // The index holds A-labels (RFC 5890 §2.3.2.1), as delivery routes the domain.
    assert_eq!(
        q(Some("Bücher.test"), None).indexed_domain().as_deref(),
        Some("xn--bcher-kva.test")
    );
    assert_eq!(
        q(None, Some("jörg@bücher.test"))
            .indexed_domain()
            .as_deref(),
        Some("xn--bcher-kva.test")
    );
    assert_eq!(q(None, Some("postmaster")).indexed_domain(), None);
    assert_eq!(q(None, None).indexed_domain(), None);
}

#[test]
fn a_record_round_trips_through_its_stored_json() {
    let record = sample(AuditOutcome::Delivered, Some(PeerAuth::Sts));
    let json = serde_json::to_string(&record).expect("encode");
    assert!(json.contains(r#""queue_id":"0000000000000001""#), "{json}");
    assert!(json.contains(r#""auth":"sts""#), "{json}");
    let back: AuditRecord = serde_json::from_str(&json).expect("decode");
    assert_eq!(back, record);
}

/// The writer indexes the records it appended from facts it kept, not from the stored JSON:
/// the two must agree, or the indexes would point at records that say something else.
#[test]
fn the_facts_kept_for_indexing_are_those_its_stored_json_gives() {
    let mut record = sample(AuditOutcome::Delivered, Some(PeerAuth::Dane));
    record.final_at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    for message_id in [Some("<a@b.example>".to_owned()), None] {
        record.message_id = message_id;
        let json = serde_json::to_vec(&record).expect("encode");
        assert_eq!(
            table::decode_facts(0, &json),
            Some(table::Facts::of(&record))
        );
    }
}

#[test]
fn a_record_names_the_messages_tls_floor_and_the_exceptions_of_its_attempt() {
    let mut message = stored(false);
    Arc::make_mut(&mut message.envelope).require_tls = Some(crate::TlsFloor::Verified);
    let mut delivering = attempt(1_300, vec![0], PeerAuth::Webpki, AttemptOutcome::Delivered);
    delivering.exceptions = vec![crate::ExceptionUse {
        rule: "legacy-partner".into(),
        expires: Some(1_900_000_000),
        reason: Some("certificate renewal pending".into()),
        spared: None,
    }];
    let record = record_for(
        8,
        &message,
        0,
        &delivered(1_300),
        &[delivering],
        Cause::Delivery,
        t(9_999),
    )
    .expect("record");
    assert_eq!(record.require_tls, Some(crate::TlsFloor::Verified));
    let receipt = record.receipt.expect("receipt");
    assert_eq!(receipt.exceptions[0].rule, "legacy-partner");
    assert_eq!(
        record_for(
            8,
            &stored(false),
            0,
            &delivered(1_300),
            &[],
            Cause::Delivery,
            t(9_999)
        )
        .expect("record")
        .require_tls,
        None
    );
}

#[test]
fn a_recipient_written_with_u_labels_is_recorded_and_found_under_its_a_label() {
    let mut envelope = stored(false);
    let mut inner = (*envelope.envelope).clone();
    inner.recipients[0].address = "jörg@Bücher.test".into();
    envelope.envelope = Arc::new(inner);
    let record = record_for(
        1,
        &envelope,
        0,
        &delivered(2_000),
        &[attempt(
            2_000,
            vec![0],
            PeerAuth::Dane,
            AttemptOutcome::Delivered,
        )],
        Cause::Delivery,
        t(5_000),
    )
    .expect("a record");
    // RFC 5890 §2.3.2.1: the domain as delivery routed it; the address as the sender wrote it.
    assert_eq!(record.domain, "xn--bcher-kva.test");
    assert_eq!(record.recipient, "jörg@Bücher.test");
    for (why, domain, recipient) in [
        ("the A-label", Some("xn--bcher-kva.test"), None),
        ("the U-label", Some("BÜCHER.test"), None),
        (
            "the address with the A-label",
            None,
            Some("jörg@xn--bcher-kva.test"),
        ),
        ("@ and the U-label", None, Some("@bücher.test")),
    ] {
        let query = AuditQuery {
            domain: domain.map(Into::into),
            recipient: recipient.map(Into::into),
            ..AuditQuery::default()
        };
        assert!(query.matches(&record), "{why}");
        assert_eq!(
            query.indexed_domain().as_deref(),
            Some("xn--bcher-kva.test"),
            "{why}"
        );
    }
}
