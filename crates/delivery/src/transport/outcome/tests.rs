//! Table tests of what replies, refusals and host failures mean for recipients; each row
//! names the rule it checks.

use strictmx_protocol::{BodyType, MailParams, Reply, ReplyParse};

use super::*;

fn reply(wire: &str) -> Reply {
    match Reply::parse(wire.as_bytes()) {
        Ok(ReplyParse::Complete { reply, .. }) => reply,
        other => panic!("bad test reply {wire:?}: {other:?}"),
    }
}

fn replies(
    mail: &str,
    rcpts: &[&str],
    data: Option<&str>,
    end: Option<&str>,
) -> TransactionReplies {
    TransactionReplies {
        mail: reply(mail),
        rcpts: rcpts
            .iter()
            .enumerate()
            .map(|(i, r)| (i, reply(r)))
            .collect(),
        data: data.map(reply),
        end: end.map(reply),
    }
}

fn kind(outcome: &RecipientOutcome) -> (&'static str, String) {
    match outcome {
        RecipientOutcome::Delivered { .. } => ("delivered", "2.0.0".to_owned()),
        RecipientOutcome::Deferred { status, .. } => ("deferred", status.clone()),
        RecipientOutcome::Bounced { status, .. } => ("bounced", status.clone()),
    }
}

#[test]
fn each_recipient_gets_the_outcome_its_replies_call_for() {
    type Row = (
        &'static str,
        TransactionReplies,
        Vec<(&'static str, &'static str)>,
    );
    let rows: Vec<Row> = vec![
        (
            "RFC 5321 §4.2.5: 250 after end of data means delivered",
            replies(
                "250 ok\r\n",
                &["250 ok\r\n"],
                Some("354 go\r\n"),
                Some("250 2.0.0 queued\r\n"),
            ),
            vec![("delivered", "2.0.0")],
        ),
        (
            "RFC 5321 §4.2.1: 4xx to RCPT defers that recipient, 5xx bounces it, others go on",
            replies(
                "250 ok\r\n",
                &[
                    "450 4.2.1 busy\r\n",
                    "550 5.1.1 no such user\r\n",
                    "250 ok\r\n",
                ],
                Some("354 go\r\n"),
                Some("250 ok\r\n"),
            ),
            vec![
                ("deferred", "4.2.1"),
                ("bounced", "5.1.1"),
                ("delivered", "2.0.0"),
            ],
        ),
        (
            "a 5xx to MAIL is the final answer for every recipient",
            replies(
                "553 5.7.1 sender rejected\r\n",
                &["503 no mail\r\n"],
                None,
                None,
            ),
            vec![("bounced", "5.7.1")],
        ),
        (
            "a 5xx after end of data bounces the accepted recipients",
            replies(
                "250 ok\r\n",
                &["250 ok\r\n"],
                Some("354 go\r\n"),
                Some("554 5.6.0 spam\r\n"),
            ),
            vec![("bounced", "5.6.0")],
        ),
        (
            "a 4xx to DATA defers the accepted recipients",
            replies(
                "250 ok\r\n",
                &["250 ok\r\n"],
                Some("451 4.3.0 later\r\n"),
                None,
            ),
            vec![("deferred", "4.3.0")],
        ),
        (
            "no reply after the content is a deferral, never a delivery",
            replies("250 ok\r\n", &["250 ok\r\n"], Some("354 go\r\n"), None),
            vec![("deferred", "4.4.2")],
        ),
        (
            "a reply without enhanced status gets its class default",
            replies("250 ok\r\n", &["550 nope\r\n"], None, None),
            vec![("bounced", "5.0.0")],
        ),
    ];
    for (rule, replies, expected) in rows {
        let Verdict::Decided(outcomes) = transaction_verdict("mx.example", &replies) else {
            panic!("{rule}: expected decided outcomes");
        };
        let mut outcomes: Vec<(usize, (&str, String))> =
            outcomes.iter().map(|(i, o)| (*i, kind(o))).collect();
        outcomes.sort_by_key(|(i, _)| *i);
        let expected: Vec<(usize, (&str, String))> = expected
            .into_iter()
            .enumerate()
            .map(|(i, (k, s))| (i, (k, s.to_owned())))
            .collect();
        assert_eq!(outcomes, expected, "{rule}");
    }
}

#[test]
fn a_transient_refusal_of_mail_from_sends_the_message_to_the_next_host() {
    let verdict = transaction_verdict(
        "mx.example",
        &replies("451 4.7.1 greylisted\r\n", &[], None, None),
    );
    let Verdict::NextHost(failure) = verdict else {
        panic!("expected next host");
    };
    assert_eq!(failure.status.to_string(), "4.7.1");
    assert_eq!(
        failure.diagnostic,
        Diagnostic::Smtp("451 4.7.1 greylisted".to_owned())
    );
}

#[test]
fn servers_lacking_an_extension_refuse_the_messages_that_need_it() {
    let params = MailParams {
        body: BodyType::SevenBit,
        ..MailParams::default()
    };
    let full = Capabilities {
        eight_bit_mime: true,
        smtputf8: true,
        size_limit: Some(10),
        size: true,
        ..Capabilities::default()
    };
    /// (rule, server capabilities, needs SMTPUTF8, 8-bit content, size, expected status)
    type Row = (
        &'static str,
        Capabilities,
        bool,
        bool,
        usize,
        Option<&'static str>,
    );
    let rows: Vec<Row> = vec![
        (
            "RFC 6531 §3.4: SMTPUTF8 needed, not offered",
            Capabilities::default(),
            true,
            false,
            1,
            Some("5.6.7"),
        ),
        (
            "RFC 6152 §3: 8-bit content, no 8BITMIME",
            Capabilities::default(),
            false,
            true,
            1,
            Some("5.6.3"),
        ),
        (
            "RFC 1870 §6: bigger than the advertised SIZE",
            full.clone(),
            false,
            false,
            11,
            Some("5.3.4"),
        ),
        ("all extensions present", full, true, true, 10, None),
    ];
    for (rule, caps, smtputf8, eight_bit, size, expected) in rows {
        let body = vec![b'a'; size];
        let outgoing = Outgoing {
            mail_from: "a@example.org",
            params: &params,
            smtputf8,
            eight_bit,
            recipients: Vec::new(),
            body: &body,
            transfer: None,
        };
        let status = refused_by_capabilities(&caps, &outgoing).map(|(status, _)| status);
        assert_eq!(status.as_deref(), expected, "{rule}");
    }
}

#[test]
fn mixed_outcomes_are_summarised_as_deferred_while_anything_is_left_to_do() {
    let delivered = RecipientOutcome::Delivered {
        remote_mta: "mx".to_owned(),
        reply: "250 ok".to_owned(),
    };
    let bounced = RecipientOutcome::Bounced {
        remote_mta: None,
        diagnostic: Diagnostic::Local("x".to_owned()),
        status: "5.0.0".to_owned(),
    };
    let deferred = RecipientOutcome::Deferred {
        remote_mta: None,
        diagnostic: Diagnostic::Local("x".to_owned()),
        status: "4.0.0".to_owned(),
    };
    let rows = [
        (
            vec![delivered.clone(), bounced.clone()],
            AttemptOutcome::Delivered,
        ),
        (
            vec![delivered.clone(), deferred.clone()],
            AttemptOutcome::Deferred,
        ),
        (vec![bounced.clone(), bounced], AttemptOutcome::Bounced),
        (vec![delivered], AttemptOutcome::Delivered),
    ];
    for (outcomes, expected) in rows {
        let outcomes: Vec<(usize, RecipientOutcome)> = outcomes.into_iter().enumerate().collect();
        assert_eq!(summarise(&outcomes), expected);
    }
}

fn plan(policy: PolicyLabel, requiretls: bool) -> DeliveryPlan {
    DeliveryPlan {
        domain: "example".to_owned(),
        candidates: Vec::new(),
        policy,
        rules: Vec::new(),
        insecure_plaintext_fallback: false,
        requiretls,
        policy_failures: Vec::new(),
        why: Vec::new(),
    }
}

#[test]
fn a_destination_without_a_usable_host_bounces_only_when_no_host_can_ever_be_used() {
    let rows = [
        (
            "RFC 5321 §5.1: MX records but none usable is an error (X.4.4)",
            PolicyLabel::DefaultOpportunistic,
            HostsTried::NoneUsable { looped: false },
            Some("5.4.4"),
        ),
        (
            "RFC 3463 X.4.6: every host leads back to us, a loop",
            PolicyLabel::DefaultOpportunistic,
            HostsTried::NoneUsable { looped: true },
            Some("5.4.6"),
        ),
        (
            "RFC 3463 X.4.6: a route that loops back bounces too",
            PolicyLabel::Route,
            HostsTried::NoneUsable { looped: true },
            Some("5.4.6"),
        ),
        (
            "a route's next hop without an address is the configuration's problem: retry",
            PolicyLabel::Route,
            HostsTried::NoneUsable { looped: false },
            None,
        ),
        (
            "RFC 5321 §4.5.4.1: a host that may yet answer means retry",
            PolicyLabel::DefaultOpportunistic,
            HostsTried::SomeUsable,
            None,
        ),
    ];
    for (rule, policy, tried, expected) in rows {
        let got = unusable_destination(&plan(policy, false), tried);
        assert_eq!(
            got.as_ref().map(|o| kind(o).1),
            expected.map(str::to_owned),
            "{rule}"
        );
        if let Some(outcome) = got {
            assert_eq!(kind(&outcome).0, "bounced", "{rule}");
        }
    }
}

#[test]
fn a_message_no_host_took_defers_unless_requiretls_calls_for_a_bounce() {
    let starttls_missing = Failure {
        mx: Some("mx.example".to_owned()),
        diagnostic: Diagnostic::Local("no starttls".to_owned()),
        status: status::SECURITY_NOT_SUPPORTED,
        requiretls: true,
    };
    let unreachable = Failure {
        requiretls: false,
        status: status::NO_ANSWER,
        ..starttls_missing.clone()
    };
    let rows = [
        (
            "RFC 5321 §4.5.4.1: an ordinary message whose hosts failed is retried",
            false,
            Some(starttls_missing.clone()),
            false,
            ("deferred", "4.7.4"),
        ),
        (
            "RFC 8689 §4.2.1: no host meets REQUIRETLS: a non-delivery report (5.7.10)",
            true,
            Some(starttls_missing.clone()),
            false,
            ("bounced", "5.7.10"),
        ),
        (
            "RFC 8689 §4.2.1: a host that failed only transiently may yet meet it: retry",
            true,
            Some(starttls_missing),
            true,
            ("deferred", "4.7.4"),
        ),
        (
            "RFC 5321 §4.5.4.1: an unreachable host is retried, REQUIRETLS or not",
            true,
            Some(unreachable),
            true,
            ("deferred", "4.4.1"),
        ),
        (
            "no host could be tried at all: retried as no answer (4.4.1)",
            false,
            None,
            false,
            ("deferred", "4.4.1"),
        ),
    ];
    for (rule, requiretls, last, transient_seen, (expected_kind, expected_status)) in rows {
        let plan = plan(PolicyLabel::DefaultOpportunistic, requiretls);
        let got = no_host_took(&plan, last, transient_seen);
        assert_eq!(
            kind(&got),
            (expected_kind, expected_status.to_owned()),
            "{rule}"
        );
    }
}

#[test]
fn host_failures_carry_the_status_their_cause_calls_for() {
    let transient = AddressFailure {
        transient: true,
        reason: "SERVFAIL".to_owned(),
    };
    let permanent = AddressFailure {
        transient: false,
        reason: "NXDOMAIN".to_owned(),
    };
    let rows = [
        (
            "RFC 3463 X.4.3: a lookup that failed for now is a directory failure",
            address_failure("mx.example", transient),
            "4.4.3",
        ),
        (
            "RFC 3463 X.4.4: a host with no address cannot be routed to (permanent in kind; the mail bounces only when every host is so)",
            address_failure("mx.example", permanent),
            "5.4.4",
        ),
        (
            "RFC 3463 X.4.6: our own listener is a routing loop",
            refused_host("mx.example", "ours".to_owned(), true),
            "5.4.6",
        ),
        (
            "RFC 3463 X.4.4: a never_deliver_to network cannot be routed to",
            refused_host("mx.example", "loopback".to_owned(), false),
            "5.4.4",
        ),
        (
            "RFC 3463 X.4.2: a connection that ended mid-session",
            left_host("mx.example", "closed".to_owned()),
            "4.4.2",
        ),
    ];
    for (rule, failure, expected) in rows {
        assert_eq!(failure.status.to_string(), expected, "{rule}");
        assert!(!failure.requiretls, "{rule}");
        assert_eq!(failure.mx.as_deref(), Some("mx.example"), "{rule}");
    }
}

#[test]
fn a_421_to_any_command_of_the_transaction_closes_the_session() {
    let rows = [
        (
            "RFC 5321 §3.8: 421 to MAIL",
            replies("421 bye\r\n", &[], None, None),
            true,
        ),
        (
            "RFC 5321 §3.8: 421 to one RCPT",
            replies("250 ok\r\n", &["250 ok\r\n", "421 bye\r\n"], None, None),
            true,
        ),
        (
            "RFC 5321 §3.8: 421 after the content",
            replies(
                "250 ok\r\n",
                &["250 ok\r\n"],
                Some("354 go\r\n"),
                Some("421 bye\r\n"),
            ),
            true,
        ),
        (
            "other refusals leave the session open",
            replies(
                "250 ok\r\n",
                &["550 no\r\n"],
                Some("554 no valid recipients\r\n"),
                None,
            ),
            false,
        ),
    ];
    for (rule, replies, expected) in rows {
        assert_eq!(server_is_closing(&replies), expected, "{rule}");
    }
}
