//! Builders shared by the spool's integration tests: a spool in a fresh temporary directory,
//! envelopes, recipient updates and attempt records that read like the scenario.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strictmx_protocol::{MailParams, RcptParams};
use strictmx_spool::{
    AttemptOutcome, AttemptRecord, ClientInfo, Envelope, EnvelopeRecipient, MessageKind, PeerAuth,
    RecipientState, RecipientUpdate, Spool, SpoolSettings,
};

pub fn settings(dir: &Path) -> SpoolSettings {
    SpoolSettings {
        data_dir: dir.join("spool"),
        ..SpoolSettings::default()
    }
}

pub fn open(dir: &Path) -> Spool {
    Spool::open(&settings(dir)).expect("spool opens in a fresh temporary directory")
}

pub fn envelope(recipients: &[&str]) -> Envelope {
    Envelope {
        mail_from: "sender@example.org".into(),
        params: MailParams::default(),
        recipients: recipients
            .iter()
            .map(|address| EnvelopeRecipient {
                address: (*address).into(),
                params: RcptParams::default(),
            })
            .collect(),
        // The spool stores `received_at` as whole unix seconds; start from one so that
        // round trips compare equal.
        received_at: whole_seconds(SystemTime::now()),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "client.example.org".into(),
            auth_user: Some("alice".into()),
            tls: Some("TLSv1.3".into()),
        },
        kind: MessageKind::Normal,
        require_tls: None,
    }
}

pub fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub fn body(len: usize) -> Vec<u8> {
    let mut body = b"Subject: test\r\n\r\n".to_vec();
    body.resize(len.max(body.len()), b'x');
    body
}

pub fn deferred(index: usize, next_attempt: SystemTime, attempts: u32) -> RecipientUpdate {
    RecipientUpdate {
        index,
        state: RecipientState::Queued {
            next_attempt,
            attempts,
            last_reply: Some("451 4.3.0 try later".into()),
            delay_dsn_sent: false,
        },
    }
}

pub fn delivered(index: usize) -> RecipientUpdate {
    RecipientUpdate {
        index,
        state: RecipientState::Delivered {
            at: SystemTime::now(),
            mx: "mx.example.net".into(),
            reply: "250 2.0.0 ok".into(),
        },
    }
}

pub fn bounced(index: usize) -> RecipientUpdate {
    RecipientUpdate {
        index,
        state: RecipientState::Bounced {
            at: SystemTime::now(),
            reply: "550 5.1.1 no such user".into(),
            status: "5.1.1".into(),
        },
    }
}

pub fn attempt(recipients: Vec<usize>, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        at: SystemTime::now(),
        domain: "example.net".into(),
        mx: Some("mx.example.net".into()),
        ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        tls_version: Some("TLSv1.3".into()),
        cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
        cert_verified: Some(true),
        auth: PeerAuth::Dane,
        policy: "dane".into(),
        rules: Vec::new(),
        requirement: Some("dane".into()),
        result_type: None,
        recipients,
        outcome,
        reply: "250 2.0.0 ok".into(),
        duration_ms: 12,
        exceptions: Vec::new(),
        shadow: Vec::new(),
    }
}

pub fn later(secs: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(secs)
}
