//! Unit tests of DSN rules and composition: each DSN is parsed back with mail-parser.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use strictmx_protocol::{BodyType, DsnRet, MailParams, Notify, Orcpt, RcptParams};
use strictmx_spool::{ClientInfo, Envelope, EnvelopeRecipient, MessageKind};

use super::*;
use crate::job::Diagnostic;

const ORIGINAL: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject: Quarterly figures\r\n\
Message-ID: <q1@example.org>\r\n\
\r\n\
The figures are attached.\r\n";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn envelope(mail_from: &str, params: MailParams, notify: Option<Notify>) -> Envelope {
    Envelope {
        mail_from: mail_from.to_owned(),
        params,
        recipients: vec![EnvelopeRecipient {
            address: "bob@example.net".to_owned(),
            params: RcptParams {
                notify,
                orcpt: None,
            },
        }],
        received_at: at(1_700_000_000),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "client.example.org".to_owned(),
            auth_user: None,
            tls: None,
        },
        kind: MessageKind::Normal,
        require_tls: None,
    }
}

fn notify(success: bool, failure: bool, delay: bool, never: bool) -> Option<Notify> {
    Some(Notify {
        success,
        failure,
        delay,
        never,
    })
}

fn bounced_bob() -> DsnRecipient {
    DsnRecipient {
        address: "bob@example.net".to_owned(),
        orcpt: Some(Orcpt {
            addr_type: "rfc822".to_owned(),
            address: "Bob@Example.NET".to_owned(),
        }),
        status: "5.1.1".to_owned(),
        remote_mta: Some("mx1.example.net".to_owned()),
        diagnostic: Some(Diagnostic::Smtp(
            "550-5.1.1 no such user\n550 5.1.1 try again never".to_owned(),
        )),
        last_attempt: Some(at(1_700_000_600)),
    }
}

fn request<'a>(
    kind: DsnKind,
    original: &'a Envelope,
    recipients: &'a [DsnRecipient],
    body: &'a [u8],
) -> DsnRequest<'a> {
    DsnRequest {
        kind,
        hostname: "relay.example.com",
        original_id: 0xabc,
        original,
        original_body: body,
        recipients,
        retry_until: Some(at(1_700_432_000)),
        full_body_limit: 1 << 20,
        now: at(1_700_000_700),
    }
}

/// The header fields of one block of a delivery-status body, unfolded, names lowercased.
fn blocks(status: &str) -> Vec<Vec<(String, String)>> {
    let unfolded = status.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n\r\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .split("\r\n")
                .filter(|line| !line.is_empty())
                .map(|line| {
                    let (name, value) = line.split_once(':').expect("a field has a colon");
                    (name.to_ascii_lowercase(), value.trim().to_owned())
                })
                .collect()
        })
        .collect()
}

fn field<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
}

fn part_bytes<'a>(message: &'a Message<'_>, index: usize) -> &'a [u8] {
    let part = message.part(index as u32).expect("the part exists");
    message
        .raw_message()
        .get(part.offset_body as usize..part.offset_end as usize)
        .expect("part offsets lie within the message")
}

fn content_type(message: &Message<'_>, index: usize) -> String {
    let part = message.part(index as u32).expect("the part exists");
    let ct = part.content_type().expect("the part has a content type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
}

#[test]
fn dsns_follow_the_notify_rules_of_rfc_3461() {
    use DsnKind::{Delay, Failure, Success};
    // (MAIL FROM, message kind, NOTIFY, DSN kind, wanted, why)
    type Row = (
        &'static str,
        MessageKind,
        Option<Notify>,
        DsnKind,
        bool,
        &'static str,
    );
    let table: Vec<Row> = vec![
        (
            "a@x",
            MessageKind::Normal,
            None,
            Failure,
            true,
            "RFC 3461 §4.1: default failure",
        ),
        (
            "a@x",
            MessageKind::Normal,
            None,
            Delay,
            true,
            "our documented default includes delay",
        ),
        (
            "a@x",
            MessageKind::Normal,
            None,
            Success,
            false,
            "success only when asked",
        ),
        (
            "a@x",
            MessageKind::Normal,
            notify(false, false, false, true),
            Failure,
            false,
            "RFC 3461 §4.1: NEVER",
        ),
        (
            "a@x",
            MessageKind::Normal,
            notify(false, false, false, true),
            Delay,
            false,
            "RFC 3461 §4.1: NEVER",
        ),
        (
            "a@x",
            MessageKind::Normal,
            notify(true, false, false, false),
            Success,
            true,
            "SUCCESS asked",
        ),
        (
            "a@x",
            MessageKind::Normal,
            notify(true, false, false, false),
            Failure,
            false,
            "FAILURE not asked",
        ),
        (
            "a@x",
            MessageKind::Normal,
            notify(false, true, false, false),
            Delay,
            false,
            "DELAY not asked",
        ),
        (
            "a@x",
            MessageKind::Normal,
            notify(false, true, true, false),
            Delay,
            true,
            "DELAY asked",
        ),
        (
            "",
            MessageKind::Normal,
            None,
            Failure,
            false,
            "RFC 3461 §6.2: null sender",
        ),
        (
            "",
            MessageKind::Normal,
            notify(true, true, true, false),
            Success,
            false,
            "null sender",
        ),
        (
            "a@x",
            MessageKind::Dsn,
            None,
            Failure,
            false,
            "RFC 3461 §6.2: never a DSN of a DSN",
        ),
    ];
    for (mail_from, kind, rcpt_notify, dsn_kind, wanted, why) in table {
        let mut env = envelope(mail_from, MailParams::default(), rcpt_notify);
        env.kind = kind;
        let params = env.recipients[0].params.clone();
        assert_eq!(requested(&env, &params, dsn_kind), wanted, "{why}");
    }
}

#[test]
fn a_failure_dsn_is_a_multipart_report_from_the_null_sender_to_the_sender() {
    let params = MailParams {
        envid: Some("QQ314159".to_owned()),
        ..MailParams::default()
    };
    let original = envelope("alice@example.org", params, None);
    let recipients = [bounced_bob()];
    let dsn = compose(&request(DsnKind::Failure, &original, &recipients, ORIGINAL));

    // RFC 3461 §6.2: the envelope.
    assert_eq!(dsn.envelope.mail_from, "");
    assert_eq!(dsn.envelope.kind, MessageKind::Dsn);
    assert_eq!(dsn.envelope.recipients.len(), 1);
    assert_eq!(dsn.envelope.recipients[0].address, "alice@example.org");
    assert_eq!(dsn.envelope.params.body, BodyType::SevenBit);

    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    let from = message
        .from()
        .and_then(|a| a.first())
        .expect("a From address");
    assert_eq!(from.address(), Some("MAILER-DAEMON@relay.example.com"));
    assert_eq!(from.name(), Some("Mail Delivery System"));
    let to = message.to().and_then(|a| a.first()).expect("a To address");
    assert_eq!(to.address(), Some("alice@example.org"));
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );

    // RFC 6522 §3: multipart/report; report-type=delivery-status.
    let root = message.root_part().content_type().expect("a content type");
    assert_eq!(root.ctype(), "multipart");
    assert_eq!(root.subtype(), Some("report"));
    assert_eq!(root.attribute("report-type"), Some("delivery-status"));

    assert_eq!(content_type(&message, 1), "text/plain");
    let human = message.body_text(0).expect("a human-readable part");
    assert!(human.contains("Quarterly figures"), "{human}");
    assert!(human.contains("no such user"), "{human}");

    assert_eq!(content_type(&message, 2), "message/delivery-status");
    let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("ASCII status");
    let blocks = blocks(&status);
    assert_eq!(blocks.len(), 2, "{status}");
    let per_message = &blocks[0];
    assert_eq!(
        field(per_message, "reporting-mta"),
        Some("dns; relay.example.com")
    );
    assert_eq!(field(per_message, "original-envelope-id"), Some("QQ314159"));
    assert!(field(per_message, "arrival-date").is_some_and(|d| d.contains("2023")));
    let bob = &blocks[1];
    assert_eq!(
        field(bob, "original-recipient"),
        Some("rfc822; Bob@Example.NET")
    );
    assert_eq!(
        field(bob, "final-recipient"),
        Some("rfc822; bob@example.net")
    );
    assert_eq!(field(bob, "action"), Some("failed"));
    assert_eq!(field(bob, "status"), Some("5.1.1"));
    assert_eq!(field(bob, "remote-mta"), Some("dns; mx1.example.net"));
    assert_eq!(
        field(bob, "diagnostic-code"),
        Some("smtp; 550-5.1.1 no such user 550 5.1.1 try again never")
    );
    assert!(field(bob, "last-attempt-date").is_some());
    assert_eq!(field(bob, "will-retry-until"), None);

    // RFC 3461 §4.3: no RET means headers only.
    assert_eq!(content_type(&message, 3), "text/rfc822-headers");
    let headers = part_bytes(&message, 3);
    assert!(headers.starts_with(b"From: Alice"));
    assert!(!headers.windows(7).any(|w| w == b"figures are"));
}

#[test]
fn ret_full_returns_the_whole_message_as_message_rfc822() {
    let params = MailParams {
        ret: Some(DsnRet::Full),
        ..MailParams::default()
    };
    let original = envelope("alice@example.org", params, None);
    let recipients = [bounced_bob()];
    let dsn = compose(&request(DsnKind::Failure, &original, &recipients, ORIGINAL));
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    assert_eq!(content_type(&message, 3), "message/rfc822");
    let part = message.part(3).expect("the returned part");
    let PartType::Message(returned) = &part.body else {
        panic!("the returned part is a message: {:?}", part.body);
    };
    assert_eq!(returned.subject(), Some("Quarterly figures"));
    assert!(
        returned
            .body_text(0)
            .is_some_and(|text| text.contains("figures are attached"))
    );
}

// RFC 8689 §5: "If both RET=FULL and REQUIRETLS are present, the RET=FULL MUST be
// disregarded", and the report itself is sent with REQUIRETLS. Issue 14, item 9: the report
// also repeated the Subject and every header field; it may cross a hop without REQUIRETLS, so
// only the fields that identify the message go back.
#[test]
fn a_requiretls_message_is_returned_as_its_identifying_fields_only_and_its_report_requires_tls() {
    const WITH_DATE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject: Quarterly figures\r\n\
Date: Tue, 14 Nov 2023 22:13:20\r\n +0000\r\n\
Message-ID: <q1@example.org>\r\n\
\r\n\
The figures are attached.\r\n";
    for kind in [DsnKind::Failure, DsnKind::Delay, DsnKind::Success] {
        let params = MailParams {
            ret: Some(DsnRet::Full),
            requiretls: true,
            ..MailParams::default()
        };
        let original = envelope("alice@example.org", params, None);
        let recipients = [bounced_bob()];
        let dsn = compose(&request(kind, &original, &recipients, WITH_DATE));
        let message = MessageParser::new()
            .parse(&dsn.body)
            .expect("the DSN parses");
        assert_eq!(content_type(&message, 3), "text/rfc822-headers", "{kind:?}");
        assert_eq!(
            part_bytes(&message, 3),
            b"Date: Tue, 14 Nov 2023 22:13:20\r\n +0000\r\nMessage-ID: <q1@example.org>\r\n",
            "{kind:?}"
        );
        let text = String::from_utf8_lossy(&dsn.body);
        for secret in ["Quarterly", "figures are", "To: bob@example.net", "Alice"] {
            assert!(!text.contains(secret), "{kind:?}: {secret} leaked: {text}");
        }
        assert!(text.contains("REQUIRETLS"), "{kind:?}: the text says why");
        assert!(dsn.envelope.params.requiretls, "{kind:?}");
        assert_eq!(dsn.envelope.mail_from, "");
    }
}

#[test]
fn identifying_fields_keep_date_and_message_id_with_their_continuations() {
    let cases: [(&str, &[u8], &[u8]); 4] = [
        (
            "RFC 5322 §3.6.1, §3.6.4: Date and Message-ID, other fields dropped",
            b"Subject: x\r\nDate: now\r\nTo: a@b\r\nMessage-ID: <m@x>\r\n",
            b"Date: now\r\nMessage-ID: <m@x>\r\n",
        ),
        (
            "RFC 5322 §2.2.3: a folded Subject does not leak through its continuation",
            b"Subject: top\r\n secret\r\nmessage-id:\r\n <m@x>\r\n",
            b"message-id:\r\n <m@x>\r\n",
        ),
        (
            "RFC 5322 §1.2.2: names compare case-insensitively, not by prefix",
            b"DATE: now\r\nDate-Sent: no\r\nX-Message-ID: no\r\n",
            b"DATE: now\r\n",
        ),
        ("a line without a colon is no field", b"Date now\r\n", b""),
    ];
    for (rule, headers, expected) in cases {
        assert_eq!(
            String::from_utf8_lossy(&identifying_fields(headers)),
            String::from_utf8_lossy(expected),
            "{rule}"
        );
    }
}

#[test]
fn ret_hdrs_and_oversized_or_binary_originals_return_headers_only() {
    let cases = [
        (
            Some(DsnRet::Headers),
            BodyType::SevenBit,
            1 << 20,
            "RET=HDRS",
        ),
        (
            Some(DsnRet::Full),
            BodyType::SevenBit,
            10,
            "over the size limit",
        ),
        (
            Some(DsnRet::Full),
            BodyType::BinaryMime,
            1 << 20,
            "BINARYMIME original",
        ),
    ];
    for (ret, body, limit, why) in cases {
        let params = MailParams {
            ret,
            body,
            ..MailParams::default()
        };
        let original = envelope("alice@example.org", params, None);
        let recipients = [bounced_bob()];
        let mut req = request(DsnKind::Failure, &original, &recipients, ORIGINAL);
        req.full_body_limit = limit;
        let dsn = compose(&req);
        let message = MessageParser::new()
            .parse(&dsn.body)
            .expect("the DSN parses");
        assert_eq!(content_type(&message, 3), "text/rfc822-headers", "{why}");
    }
}

#[test]
fn a_delay_dsn_says_until_when_it_will_retry_and_never_returns_the_body() {
    let params = MailParams {
        ret: Some(DsnRet::Full),
        ..MailParams::default()
    };
    let original = envelope("alice@example.org", params, None);
    let recipients = [DsnRecipient {
        status: "4.4.1".to_owned(),
        diagnostic: Some(Diagnostic::Local(
            "connection refused by all MX hosts".to_owned(),
        )),
        remote_mta: None,
        ..bounced_bob()
    }];
    let dsn = compose(&request(DsnKind::Delay, &original, &recipients, ORIGINAL));
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("ASCII status");
    let blocks = blocks(&status);
    let bob = &blocks[1];
    assert_eq!(field(bob, "action"), Some("delayed"));
    assert_eq!(field(bob, "status"), Some("4.4.1"));
    // RFC 3464 §2.3.9: Will-Retry-Until for delayed recipients.
    assert!(field(bob, "will-retry-until").is_some_and(|d| d.contains("2023")));
    assert_eq!(field(bob, "remote-mta"), None);
    // A local finding is no SMTP reply: it stays out of Diagnostic-Code.
    assert_eq!(field(bob, "diagnostic-code"), None);
    assert!(
        message
            .body_text(0)
            .is_some_and(|t| t.contains("connection refused"))
    );
    assert_eq!(content_type(&message, 3), "text/rfc822-headers");
}

#[test]
fn a_success_dsn_reports_relayed_with_a_2xx_status() {
    let original = envelope(
        "alice@example.org",
        MailParams::default(),
        notify(true, false, false, false),
    );
    let recipients = [DsnRecipient {
        status: "2.0.0".to_owned(),
        diagnostic: Some(Diagnostic::Smtp("250 2.0.0 queued as 12345".to_owned())),
        ..bounced_bob()
    }];
    let dsn = compose(&request(DsnKind::Success, &original, &recipients, ORIGINAL));
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("ASCII status");
    let bob = &blocks(&status)[1];
    // RFC 3464 §2.3.3: strictmx relays to the recipient's MX, it does not deliver to a mailbox.
    assert_eq!(field(bob, "action"), Some("relayed"));
    assert_eq!(field(bob, "status"), Some("2.0.0"));
}

#[test]
fn a_failed_recipient_always_gets_a_5xx_status() {
    // RFC 3464 §2.3.4 with RFC 3463 §3.5: an expired message bounces 5.4.7, whatever it last got.
    let original = envelope("alice@example.org", MailParams::default(), None);
    let table = [
        ("4.4.7", "5.4.7"),
        ("5.7.1", "5.7.1"),
        ("garbage", "5.0.0"),
        ("", "5.0.0"),
    ];
    for (given, reported) in table {
        let recipients = [DsnRecipient {
            status: given.to_owned(),
            ..bounced_bob()
        }];
        let dsn = compose(&request(DsnKind::Failure, &original, &recipients, ORIGINAL));
        let message = MessageParser::new()
            .parse(&dsn.body)
            .expect("the DSN parses");
        let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("ASCII status");
        assert_eq!(
            field(&blocks(&status)[1], "status"),
            Some(reported),
            "{given}"
        );
    }
}

#[test]
fn one_dsn_lists_every_recipient_in_the_same_state() {
    let mut original = envelope("alice@example.org", MailParams::default(), None);
    original.recipients.push(EnvelopeRecipient {
        address: "carol@example.net".to_owned(),
        params: RcptParams::default(),
    });
    let recipients = [
        bounced_bob(),
        DsnRecipient {
            address: "carol@example.net".to_owned(),
            orcpt: None,
            ..bounced_bob()
        },
    ];
    let dsn = compose(&request(DsnKind::Failure, &original, &recipients, ORIGINAL));
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("ASCII status");
    let blocks = blocks(&status);
    assert_eq!(blocks.len(), 3);
    assert_eq!(
        field(&blocks[2], "final-recipient"),
        Some("rfc822; carol@example.net")
    );
    assert_eq!(field(&blocks[2], "original-recipient"), None);
}

#[test]
fn peer_text_cannot_inject_fields_into_the_report() {
    let params = MailParams {
        envid: Some("id\r\nAction: delivered".to_owned()),
        ..MailParams::default()
    };
    let original = envelope("alice@example.org", params, None);
    let recipients = [DsnRecipient {
        diagnostic: Some(Diagnostic::Smtp(
            "550 bad\r\nStatus: 2.0.0\r\n\r\nX: y".to_owned(),
        )),
        remote_mta: Some("mx\r\nAction: delivered".to_owned()),
        ..bounced_bob()
    }];
    let dsn = compose(&request(DsnKind::Failure, &original, &recipients, ORIGINAL));
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("ASCII status");
    let blocks = blocks(&status);
    assert_eq!(blocks.len(), 2, "{status}");
    let actions = blocks[1]
        .iter()
        .filter(|(name, _)| name == "action")
        .count();
    assert_eq!(actions, 1, "{status}");
    assert_eq!(field(&blocks[1], "status"), Some("5.1.1"));
    assert!(
        !field(&blocks[0], "original-envelope-id")
            .unwrap_or_default()
            .contains(' ')
    );
}

#[test]
fn long_diagnostics_are_folded_and_cut() {
    let original = envelope("alice@example.org", MailParams::default(), None);
    let long = format!("550 5.7.1 {}", "word ".repeat(400));
    let recipients = [DsnRecipient {
        diagnostic: Some(Diagnostic::Smtp(long)),
        ..bounced_bob()
    }];
    let dsn = compose(&request(DsnKind::Failure, &original, &recipients, ORIGINAL));
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("ASCII status");
    assert!(
        status.split("\r\n").all(|line| line.len() <= 78),
        "{status}"
    );
    let code = field(&blocks(&status)[1], "diagnostic-code").map(str::len);
    assert!(code.is_some_and(|len| len < 1000), "{code:?}");
}

#[test]
fn smtputf8_messages_get_a_global_delivery_status() {
    // RFC 6533 §3 and §6: message/global-delivery-status, "utf-8" address type, message/global.
    let params = MailParams {
        smtputf8: true,
        ret: Some(DsnRet::Full),
        body: BodyType::EightBitMime,
        ..MailParams::default()
    };
    let mut original = envelope("jörg@exämple.org", params, None);
    original.recipients[0].address = "ßob@exämple.net".to_owned();
    let recipients = [DsnRecipient {
        address: "ßob@exämple.net".to_owned(),
        orcpt: None,
        ..bounced_bob()
    }];
    let body = "From: jörg@exämple.org\r\nSubject: Grüße\r\n\r\nHallo\r\n".as_bytes();
    let dsn = compose(&request(DsnKind::Failure, &original, &recipients, body));
    assert!(dsn.envelope.params.smtputf8);
    assert_eq!(dsn.envelope.params.body, BodyType::EightBitMime);
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    assert_eq!(content_type(&message, 2), "message/global-delivery-status");
    let status = String::from_utf8(part_bytes(&message, 2).to_vec()).expect("UTF-8 status");
    assert_eq!(
        field(&blocks(&status)[1], "final-recipient"),
        Some("utf-8; ßob@exämple.net")
    );
    assert_eq!(content_type(&message, 3), "message/global");
}

#[test]
fn an_original_without_headers_is_not_returned() {
    let original = envelope("alice@example.org", MailParams::default(), None);
    let recipients = [bounced_bob()];
    let dsn = compose(&request(DsnKind::Failure, &original, &recipients, b""));
    let message = MessageParser::new()
        .parse(&dsn.body)
        .expect("the DSN parses");
    assert!(message.part(3).is_none());
    assert_eq!(content_type(&message, 2), "message/delivery-status");
}
