//! Unit tests of what replies mean for recipients, and of per-server refusals.

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
        let Verdict::Decided(outcomes) = judge("mx.example", &replies) else {
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
    let verdict = judge(
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
