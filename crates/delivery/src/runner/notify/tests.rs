//! Table tests of which DSN entries a message's outcomes produce; each row cites its rule.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use strictmx_protocol::{MailParams, Notify, Orcpt, RcptParams};
use strictmx_spool::{ClientInfo, Envelope, EnvelopeRecipient, MessageKind};

use super::*;
use crate::job::Diagnostic;

const NOW_SECS: u64 = 2_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn message(mail_from: &str, kind: MessageKind, params: RcptParams) -> JobMessage {
    let envelope = Envelope {
        mail_from: mail_from.to_owned(),
        params: MailParams::default(),
        recipients: vec![EnvelopeRecipient {
            address: "rcpt@far.test".to_owned(),
            params,
        }],
        received_at: now() - Duration::from_secs(3600),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "client.test".to_owned(),
            auth_user: None,
            tls: None,
        },
        kind,
        require_tls: None,
    };
    JobMessage {
        id: 7,
        envelope: Arc::new(envelope),
        recipients: Vec::new(),
        body: Arc::new(b"Subject: hi\r\n\r\nbody\r\n".to_vec()),
    }
}

fn recipient() -> JobRecipient {
    JobRecipient {
        index: 0,
        address: "rcpt@far.test".to_owned(),
    }
}

fn notice(kind: DsnKind) -> Notice {
    Notice {
        kind,
        status: "4.3.0".to_owned(),
        remote_mta: Some("mx.far.test".to_owned()),
        diagnostic: Diagnostic::Smtp("451 4.3.0 try later".to_owned()),
    }
}

fn notify(success: bool, failure: bool, delay: bool, never: bool) -> RcptParams {
    RcptParams {
        notify: Some(Notify {
            success,
            failure,
            delay,
            never,
        }),
        orcpt: None,
    }
}

#[test]
fn an_entry_is_made_only_for_the_kinds_the_sender_asked_for() {
    // (rule, sender, message kind, RCPT parameters, [failure, delay, success] expected)
    let rows = [
        (
            "RFC 3461 §4.1: without NOTIFY, failures and delays are reported",
            "sender@origin.test",
            MessageKind::Normal,
            RcptParams::default(),
            [true, true, false],
        ),
        (
            "RFC 3461 §4.1: NOTIFY=SUCCESS reports the delivery only",
            "sender@origin.test",
            MessageKind::Normal,
            notify(true, false, false, false),
            [false, false, true],
        ),
        (
            "RFC 3461 §4.1: NOTIFY=FAILURE,DELAY",
            "sender@origin.test",
            MessageKind::Normal,
            notify(false, true, true, false),
            [true, true, false],
        ),
        (
            "RFC 3461 §4.1: NOTIFY=NEVER reports nothing",
            "sender@origin.test",
            MessageKind::Normal,
            notify(false, false, false, true),
            [false, false, false],
        ),
        (
            "RFC 5321 §4.5.5, RFC 3461 §6.2: never to the null sender",
            "",
            MessageKind::Normal,
            RcptParams::default(),
            [false, false, false],
        ),
        (
            "RFC 3461 §6.2: a DSN about a DSN is never sent (mail loops)",
            "sender@origin.test",
            MessageKind::Dsn,
            notify(true, true, true, false),
            [false, false, false],
        ),
    ];
    for (rule, sender, kind, params, expected) in rows {
        let message = message(sender, kind, params);
        let made = KINDS.map(|kind| entry(&message, &recipient(), notice(kind), now()).is_some());
        assert_eq!(made, expected, "{rule}");
    }
}

// RFC 3464 §2.3: the per-recipient fields, with Original-Recipient from ORCPT (RFC 3461 §4.2).
#[test]
fn an_entry_carries_the_recipient_fields_of_rfc_3464() {
    let orcpt = Orcpt {
        addr_type: "rfc822".to_owned(),
        address: "first@origin.test".to_owned(),
    };
    let params = RcptParams {
        notify: None,
        orcpt: Some(orcpt.clone()),
    };
    let message = message("sender@origin.test", MessageKind::Normal, params);
    let made = entry(&message, &recipient(), notice(DsnKind::Delay), now());
    let expected = DsnRecipient {
        address: "rcpt@far.test".to_owned(),
        orcpt: Some(orcpt),
        status: "4.3.0".to_owned(),
        remote_mta: Some("mx.far.test".to_owned()),
        diagnostic: Some(Diagnostic::Smtp("451 4.3.0 try later".to_owned())),
        last_attempt: Some(now()),
    };
    assert_eq!(made, Some((DsnKind::Delay, expected)));
}

// RFC 3464 §2.3.9: Will-Retry-Until is when the queue lifetime of the message ends.
#[test]
fn a_request_names_the_reporting_host_and_when_retries_end() {
    let settings = QueueSettings {
        hostname: "relay.test".to_owned(),
        ..QueueSettings::default()
    };
    let message = message(
        "sender@origin.test",
        MessageKind::Normal,
        RcptParams::default(),
    );
    let made = request(DsnKind::Delay, &message, &[], &settings, now());
    assert_eq!(made.hostname, "relay.test");
    assert_eq!(made.original_id, 7);
    assert_eq!(
        made.retry_until,
        Some(message.envelope.received_at + settings.retry.max_lifetime)
    );
    assert_eq!(made.full_body_limit, settings.dsn_full_body_limit);
    assert_eq!(made.now, now());
}
