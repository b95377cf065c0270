//! The transport against the lab (tests/lab) for what the TLS policy does end to end: CNAME'd
//! MX hosts under DANE in both DNSSEC modes (RFC 4035 §5, RFC 7672 §2.2.2), a TLSA RRset of
//! unusable records only (RFC 7672 §2.2), and `[[rule]]` pins and `min_tls_version`. Each test
//! delivers one message and asserts what the receiver got and what the transport recorded.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strictmx_delivery::job::{
    Deliver, DeliveryJob, DeliveryReport, Diagnostic, JobMessage, JobRecipient, RecipientOutcome,
};
use strictmx_delivery::transport::{Transport, TransportSettings};
use strictmx_policy::PolicySettings;
use strictmx_policy::report::{PolicyType, ResultType};
use strictmx_policy::rules::{DomainPattern, MinRequirement, Pin, Rule, TlsVersion};
use strictmx_policy::tlsa::{certificate_sha256, spki_sha256};
use strictmx_protocol::{MailParams, RcptParams};
use strictmx_resolve::{
    DnsResolver, DnssecMode, FactGatherer, GatherSettings, ResolverSettings, StsSettings, StsSource,
};
use strictmx_spool::{
    AttemptRecord, ClientInfo, Envelope, EnvelopeRecipient, MessageKind, PeerAuth, Spool,
    SpoolSettings,
};
use strictmx_test_support::lab::{Lab, unique_rcpt};

/// The two ways strictmx learns DNSSEC status.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `dnssec = "validate"` (the default): hickory validates, the lab's non-validating unbound
    /// passes the signatures through.
    Validate,
    /// `dnssec = "trust-resolver"`: the AD bit of the lab's validating unbound.
    TrustResolver,
}

const BOTH_MODES: [Mode; 2] = [Mode::Validate, Mode::TrustResolver];

struct Setup {
    lab: Lab,
    transport: Transport<Arc<FactGatherer>>,
    _spool_dir: tempfile::TempDir,
}

async fn setup(mode: Mode, rules: Vec<Rule>) -> Setup {
    let lab = Lab::get().expect("the lab is up (tests/lab/up)");
    let (nameserver, dnssec) = match mode {
        Mode::Validate => (
            lab.nonvalidating_resolver(),
            DnssecMode::Validate {
                trust_anchor: Some(lab.trust_anchor().to_owned()),
            },
        ),
        Mode::TrustResolver => (lab.resolver(), DnssecMode::TrustResolver),
    };
    let resolver = DnsResolver::new(&ResolverSettings {
        nameservers: vec![nameserver],
        timeout: Duration::from_secs(3),
        attempts: 2,
        dnssec,
        ..ResolverSettings::default()
    })
    .expect("resolver");
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(&SpoolSettings {
        data_dir: dir.path().to_owned(),
        ..SpoolSettings::default()
    })
    .expect("spool");
    let sts = StsSource::new(
        resolver.clone(),
        spool,
        StsSettings {
            fetch_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            extra_ca_file: Some(lab.ca_bundle().to_owned()),
            ..StsSettings::default()
        },
    )
    .expect("sts source");
    let gatherer = FactGatherer::new(resolver, sts, GatherSettings::default()).await;
    let settings = TransportSettings {
        helo_name: "relay.strictmx.test".to_owned(),
        connect_timeout: Duration::from_secs(5),
        greeting_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
        extra_ca_file: Some(lab.ca_bundle().to_owned()),
        policy: PolicySettings {
            rules,
            ..PolicySettings::default()
        },
        // The lab's MX hosts are on loopback.
        never_deliver_to: Vec::new(),
        ..TransportSettings::default()
    };
    let transport = Transport::new(settings, Arc::new(gatherer)).expect("transport");
    Setup {
        lab,
        transport,
        _spool_dir: dir,
    }
}

fn message(rcpt: &str) -> JobMessage {
    let envelope = Envelope {
        mail_from: "alice@sender.test".to_owned(),
        params: MailParams::default(),
        recipients: vec![EnvelopeRecipient {
            address: rcpt.to_owned(),
            params: RcptParams::default(),
        }],
        received_at: SystemTime::now(),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "submitter.test".to_owned(),
            auth_user: None,
            tls: None,
        },
        kind: MessageKind::Normal,
        require_tls: None,
    };
    JobMessage {
        id: 1,
        envelope: Arc::new(envelope),
        recipients: vec![JobRecipient {
            index: 0,
            address: rcpt.to_owned(),
        }],
        body: Arc::new(b"Subject: lab\r\n\r\nhello\r\n".to_vec()),
    }
}

/// Delivers one message to a fresh recipient at `domain`; returns the report and recipient.
async fn deliver(setup: &Setup, domain: &str) -> (DeliveryReport, String) {
    let rcpt = unique_rcpt(domain);
    let job = DeliveryJob {
        domain: domain.to_owned(),
        messages: vec![message(&rcpt)],
    };
    (setup.transport.deliver(job).await, rcpt)
}

fn outcome(report: &DeliveryReport) -> &RecipientOutcome {
    &report.messages[0].recipients[0].outcome
}

fn delivered(report: &DeliveryReport) -> bool {
    matches!(outcome(report), RecipientOutcome::Delivered { .. })
}

fn deferred(report: &DeliveryReport) -> bool {
    matches!(outcome(report), RecipientOutcome::Deferred { .. })
}

/// The local or remote text the deferral or bounce gives.
fn diagnostic(report: &DeliveryReport) -> &str {
    match outcome(report) {
        RecipientOutcome::Delivered { reply, .. } => reply,
        RecipientOutcome::Deferred { diagnostic, .. }
        | RecipientOutcome::Bounced { diagnostic, .. } => match diagnostic {
            Diagnostic::Smtp(text) | Diagnostic::Local(text) => text,
        },
    }
}

fn last_attempt(report: &DeliveryReport) -> &AttemptRecord {
    report.messages[0].attempts.last().expect("an attempt")
}

fn failures(report: &DeliveryReport) -> Vec<ResultType> {
    report
        .sessions
        .iter()
        .filter_map(|s| s.failure.as_ref().map(|f| f.result_type))
        .collect()
}

fn received(
    setup: &Setup,
    host: &str,
    rcpt: &str,
) -> Vec<strictmx_test_support::lab::ReceivedMessage> {
    setup.lab.received_for(host, rcpt).expect("records")
}

fn rule(name: &str, domain: &str) -> Rule {
    Rule {
        name: name.to_owned(),
        domains: vec![DomainPattern::Exact(domain.to_owned())],
        senders: Vec::new(),
        require: None,
        pins: Vec::new(),
        min_tls_version: None,
        fail_closed: false,
        insecure_relax: None,
        ..Rule::default()
    }
}

// RFC 4035 §5, RFC 7672 §2.2.2: the MX name is a signed CNAME into another signed zone whose
// TLSA matches: DANE, in either DNSSEC mode.
#[tokio::test]
async fn a_cnamed_mx_in_another_signed_zone_gets_mail_over_dane_in_both_dnssec_modes() {
    for mode in BOTH_MODES {
        let setup = setup(mode, Vec::new()).await;
        let (report, rcpt) = deliver(&setup, "dane-cname.test").await;
        assert!(delivered(&report), "{mode:?}: {report:#?}");
        let got = received(&setup, "mx.hosting.test", &rcpt);
        assert_eq!(got.len(), 1, "{mode:?}");
        assert!(got[0].tls, "{mode:?}");
        let attempt = last_attempt(&report);
        assert_eq!(attempt.auth, PeerAuth::Dane, "{mode:?}: {attempt:?}");
        assert_eq!(attempt.requirement.as_deref(), Some("dane"), "{mode:?}");
        assert_eq!(
            attempt.mx.as_deref(),
            Some("mx.dane-cname.test"),
            "{mode:?}"
        );
        assert_eq!(report.sessions[0].policy.policy_type, PolicyType::Tlsa);
        assert!(report.sessions[0].failure.is_none(), "{mode:?}");
    }
}

#[tokio::test]
async fn a_cnamed_mx_whose_tlsa_does_not_match_never_gets_mail_in_either_mode() {
    for mode in BOTH_MODES {
        let setup = setup(mode, Vec::new()).await;
        let (report, rcpt) = deliver(&setup, "dane-cname-mismatch.test").await;
        assert!(deferred(&report), "{mode:?}: {report:#?}");
        assert!(
            received(&setup, "mismatch.hosting.test", &rcpt).is_empty(),
            "{mode:?}"
        );
        // The host was tried under DANE and the certificate refused, not skipped as bogus.
        assert_eq!(
            failures(&report),
            [ResultType::ValidationFailure],
            "{mode:?}"
        );
        assert_eq!(
            last_attempt(&report).requirement.as_deref(),
            Some("dane"),
            "{mode:?}"
        );
    }
}

// RFC 7672 §2.2.2: the target has no TLSA; the records at the original (alias) name apply,
// and with a chain that ends in an unsigned zone, only those.
#[tokio::test]
async fn the_original_name_is_the_tlsa_base_domain_when_the_target_has_none_or_is_unsigned() {
    for mode in BOTH_MODES {
        let setup = setup(mode, Vec::new()).await;
        for (domain, host) in [
            ("dane-cname-orig.test", "orig.hosting.test"),
            ("dane-cname-insecure.test", "mx.cname-target.insecure.test"),
        ] {
            let (report, rcpt) = deliver(&setup, domain).await;
            assert!(delivered(&report), "{mode:?} {domain}: {report:#?}");
            assert_eq!(received(&setup, host, &rcpt).len(), 1, "{mode:?} {domain}");
            let attempt = last_attempt(&report);
            assert_eq!(
                attempt.auth,
                PeerAuth::Dane,
                "{mode:?} {domain}: {attempt:?}"
            );
        }
    }
}

// RFC 7672 §2.2: a secure TLSA RRset of unusable records only: TLS is mandatory, the
// certificate is not checked (the receiver's is self-signed), and nothing crashes.
#[tokio::test]
async fn only_unusable_tlsa_records_mean_tls_without_authentication() {
    for mode in BOTH_MODES {
        let setup = setup(mode, Vec::new()).await;
        let (report, rcpt) = deliver(&setup, "dane-unusable.test").await;
        assert!(delivered(&report), "{mode:?}: {report:#?}");
        let got = received(&setup, "mx.dane-unusable.test", &rcpt);
        assert!(got[0].tls, "{mode:?}: delivered without TLS");
        let attempt = last_attempt(&report);
        assert_eq!(
            attempt.requirement.as_deref(),
            Some("encrypted"),
            "{mode:?}"
        );
        assert_eq!(attempt.auth, PeerAuth::None, "{mode:?}");
        assert_eq!(attempt.cert_verified, Some(false), "{mode:?}");
    }
}

#[tokio::test]
async fn only_unusable_tlsa_records_refuse_a_path_without_starttls() {
    for mode in BOTH_MODES {
        let setup = setup(mode, Vec::new()).await;
        let (report, rcpt) = deliver(&setup, "dane-unusable-stripped.test").await;
        assert!(deferred(&report), "{mode:?}: {report:#?}");
        assert!(
            received(&setup, "backend.dane-unusable-stripped.test", &rcpt).is_empty(),
            "{mode:?}: delivered in plaintext"
        );
        assert_eq!(
            failures(&report),
            [ResultType::StarttlsNotSupported],
            "{mode:?}"
        );
        assert_eq!(
            last_attempt(&report).requirement.as_deref(),
            Some("encrypted"),
            "{mode:?}"
        );
    }
}

fn floor(version: TlsVersion) -> Rule {
    Rule {
        min_tls_version: Some(version),
        ..rule("tls floor", "tls12.test")
    }
}

#[tokio::test]
async fn a_tls_1_3_floor_defers_a_receiver_that_stops_at_tls_1_2() {
    let setup = setup(Mode::TrustResolver, vec![floor(TlsVersion::Tls13)]).await;
    let (report, rcpt) = deliver(&setup, "tls12.test").await;
    assert!(deferred(&report), "{report:#?}");
    assert!(received(&setup, "mx.tls12.test", &rcpt).is_empty());
    let said = diagnostic(&report);
    assert!(
        said.contains("negotiated TLSv1.2, a rule requires at least TLSv1.3"),
        "the reason names both versions: {said}"
    );
    assert_eq!(failures(&report), [ResultType::ValidationFailure]);
    assert_eq!(last_attempt(&report).rules, ["tls floor"]);
}

#[tokio::test]
async fn a_tls_1_2_floor_delivers_to_a_receiver_that_stops_at_tls_1_2() {
    let setup = setup(Mode::TrustResolver, vec![floor(TlsVersion::Tls12)]).await;
    let (report, rcpt) = deliver(&setup, "tls12.test").await;
    assert!(delivered(&report), "{report:#?}");
    let got = received(&setup, "mx.tls12.test", &rcpt);
    assert_eq!(got[0].tls_version.as_deref(), Some("TLSv1.2"));
    assert_eq!(
        last_attempt(&report).tls_version.as_deref(),
        Some("TLSv1.2")
    );
}

fn pinned(domain: &str, pins: Vec<Pin>) -> Rule {
    Rule {
        require: Some(MinRequirement::Encrypted),
        pins,
        ..rule("pinned", domain)
    }
}

// A pin or a version floor alone makes TLS mandatory: a receiver without STARTTLS (as a
// stripper would make any receiver look) never gets the mail in plaintext.
#[tokio::test]
async fn a_pin_or_a_floor_alone_never_lets_mail_go_in_plaintext() {
    let floor_only = Rule {
        min_tls_version: Some(TlsVersion::Tls13),
        ..rule("floor only", "plain.test")
    };
    let pin_only = Rule {
        pins: vec![Pin::Spki { sha256: [7; 32] }],
        ..rule("pin only", "plain.test")
    };
    for only in [floor_only, pin_only] {
        let setup = setup(Mode::TrustResolver, vec![only]).await;
        let (report, rcpt) = deliver(&setup, "plain.test").await;
        assert!(deferred(&report), "{report:#?}");
        assert!(
            received(&setup, "mx.plain.test", &rcpt).is_empty(),
            "delivered in plaintext"
        );
        assert_eq!(
            last_attempt(&report).requirement.as_deref(),
            Some("encrypted")
        );
    }
}

fn leaf(lab: &Lab, host: &str) -> Vec<u8> {
    lab.chain(host).expect("chain").remove(0)
}

#[tokio::test]
async fn a_pin_on_the_receivers_key_or_certificate_delivers_even_to_a_self_signed_one() {
    let lab = Lab::get().expect("lab");
    let cert = leaf(&lab, "mx.selfsigned.test");
    for pin in [
        Pin::Spki {
            sha256: spki_sha256(&cert).expect("an X.509 certificate"),
        },
        Pin::Certificate {
            sha256: certificate_sha256(&cert),
        },
    ] {
        let setup = setup(
            Mode::TrustResolver,
            vec![pinned("selfsigned.test", vec![pin.clone()])],
        )
        .await;
        let (report, rcpt) = deliver(&setup, "selfsigned.test").await;
        assert!(delivered(&report), "{pin:?}: {report:#?}");
        assert!(received(&setup, "mx.selfsigned.test", &rcpt)[0].tls);
        assert_eq!(last_attempt(&report).rules, ["pinned"]);
    }
}

#[tokio::test]
async fn a_pin_on_the_issuing_ca_delivers_to_a_certificate_that_names_the_host() {
    let lab = Lab::get().expect("lab");
    let pin = Pin::Certificate {
        sha256: certificate_sha256(&lab.intermediate_ca().expect("intermediate")),
    };
    let setup = setup(
        Mode::TrustResolver,
        vec![pinned("implicit.test", vec![pin])],
    )
    .await;
    let (report, rcpt) = deliver(&setup, "implicit.test").await;
    assert!(delivered(&report), "{report:#?}");
    assert_eq!(received(&setup, "implicit.test", &rcpt).len(), 1);
}

#[tokio::test]
async fn a_pin_on_the_issuing_ca_does_not_accept_a_certificate_for_another_host() {
    let lab = Lab::get().expect("lab");
    let pin = Pin::Certificate {
        sha256: certificate_sha256(&lab.intermediate_ca().expect("intermediate")),
    };
    let setup = setup(
        Mode::TrustResolver,
        vec![pinned("wronghost.test", vec![pin])],
    )
    .await;
    let (report, rcpt) = deliver(&setup, "wronghost.test").await;
    assert!(deferred(&report), "{report:#?}");
    assert!(received(&setup, "mx.wronghost.test", &rcpt).is_empty());
    assert_eq!(failures(&report), [ResultType::CertificateHostMismatch]);
}

#[tokio::test]
async fn a_pin_that_matches_nothing_presented_never_delivers() {
    let lab = Lab::get().expect("lab");
    // The key of another receiver: a real certificate, just not this one's.
    let other = leaf(&lab, "mx1.multi.test");
    let pin = Pin::Spki {
        sha256: spki_sha256(&other).expect("an X.509 certificate"),
    };
    let setup = setup(
        Mode::TrustResolver,
        vec![pinned("implicit.test", vec![pin])],
    )
    .await;
    let (report, rcpt) = deliver(&setup, "implicit.test").await;
    assert!(deferred(&report), "{report:#?}");
    assert!(received(&setup, "implicit.test", &rcpt).is_empty());
    assert_eq!(failures(&report), [ResultType::ValidationFailure]);
    let said = diagnostic(&report);
    assert!(said.contains("pin"), "the reason names the pin: {said}");
}
