//! The transport against the lab (tests/lab): real DNSSEC, TLSA, MTA-STS policy hosts and SMTP
//! receivers, through resolve's `FactGatherer`. Each test delivers one message and asserts what
//! the receiver got and what the transport recorded (attempt records, TLSRPT sessions).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strictmx_delivery::job::{
    Deliver, DeliveryJob, DeliveryReport, JobMessage, JobRecipient, RecipientOutcome,
};
use strictmx_delivery::transport::{Transport, TransportSettings};
use strictmx_policy::PolicySettings;
use strictmx_policy::report::{PolicyType, ResultType};
use strictmx_policy::rules::{DomainPattern, MinRequirement, Relax, Rule};
use strictmx_protocol::{MailParams, RcptParams};
use strictmx_resolve::{
    DnsResolver, DnssecMode, FactGatherer, GatherSettings, ResolverSettings, StsSettings, StsSource,
};
use strictmx_spool::{
    AttemptOutcome, ClientInfo, Envelope, EnvelopeRecipient, MessageKind, PeerAuth, RecipientState,
    RecipientUpdate, ShadowOutcome, Spool, SpoolSettings,
};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}
use strictmx_test_support::lab::{Lab, unique_rcpt};

struct Setup {
    lab: Lab,
    transport: Transport<Arc<FactGatherer>>,
    _spool_dir: tempfile::TempDir,
}

async fn setup(rules: Vec<Rule>) -> Setup {
    let lab = Lab::get().expect("the lab is up (tests/lab/up)");
    let resolver = DnsResolver::new(&ResolverSettings {
        nameservers: vec![lab.resolver()],
        timeout: Duration::from_secs(3),
        attempts: 2,
        dnssec: DnssecMode::TrustResolver,
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

fn message(rcpt: &str, requiretls: bool) -> JobMessage {
    let envelope = Envelope {
        mail_from: "alice@sender.test".to_owned(),
        params: MailParams {
            requiretls,
            ..MailParams::default()
        },
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
async fn deliver(setup: &Setup, domain: &str, requiretls: bool) -> (DeliveryReport, String) {
    let rcpt = unique_rcpt(domain);
    let job = DeliveryJob {
        domain: domain.to_owned(),
        messages: vec![message(&rcpt, requiretls)],
    };
    (setup.transport.deliver(job).await, rcpt)
}

fn outcome(report: &DeliveryReport) -> &RecipientOutcome {
    &report.messages[0].recipients[0].outcome
}

fn status(report: &DeliveryReport) -> &str {
    match outcome(report) {
        RecipientOutcome::Delivered { .. } => "delivered",
        RecipientOutcome::Deferred { status, .. } | RecipientOutcome::Bounced { status, .. } => {
            status
        }
    }
}

fn last_attempt(report: &DeliveryReport) -> &strictmx_spool::AttemptRecord {
    report.messages[0].attempts.last().expect("an attempt")
}

fn failures(report: &DeliveryReport) -> Vec<ResultType> {
    report
        .sessions
        .iter()
        .filter_map(|s| s.failure.as_ref().map(|f| f.result_type))
        .collect()
}

fn received(setup: &Setup, host: &str, rcpt: &str) -> usize {
    setup.lab.received_for(host, rcpt).expect("records").len()
}

#[tokio::test]
async fn a_plaintext_only_mx_gets_mail_under_the_opportunistic_default_and_is_reported() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "plain.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    let got = setup
        .lab
        .received_for("mx.plain.test", &rcpt)
        .expect("records");
    assert!(!got[0].tls);
    let attempt = last_attempt(&report);
    assert_eq!(attempt.auth, PeerAuth::None);
    assert_eq!(attempt.policy, "default-opportunistic");
    assert_eq!(failures(&report), [ResultType::StarttlsNotSupported]);
}

#[tokio::test]
async fn a_self_signed_mx_gets_mail_over_unverified_tls_under_the_default() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "selfsigned.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert!(
        setup
            .lab
            .received_for("mx.selfsigned.test", &rcpt)
            .expect("records")[0]
            .tls
    );
    assert_eq!(last_attempt(&report).cert_verified, Some(false));
    assert_eq!(last_attempt(&report).auth, PeerAuth::None);
}

#[tokio::test]
async fn mta_sts_enforce_delivers_to_a_verified_mx_and_records_sts() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "sts-enforce.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx.sts-enforce.test", &rcpt), 1);
    let attempt = last_attempt(&report);
    assert_eq!(attempt.auth, PeerAuth::Sts);
    assert_eq!(attempt.policy, "sts-enforce");
    assert_eq!(attempt.requirement.as_deref(), Some("verified"));
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.sessions[0].policy.policy_type, PolicyType::Sts);
    assert!(report.sessions[0].failure.is_none());
}

#[tokio::test]
async fn mta_sts_enforce_never_delivers_to_a_certificate_for_another_host() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "sts-enforce-badcert.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.sts-enforce-badcert.test", &rcpt), 0);
    assert_eq!(failures(&report), [ResultType::CertificateHostMismatch]);
    assert_eq!(
        last_attempt(&report).result_type.as_deref(),
        Some("certificate-host-mismatch")
    );
}

#[tokio::test]
async fn mta_sts_enforce_defers_when_starttls_is_stripped() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "sts-stripped.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "backend.sts-stripped.test", &rcpt), 0);
    assert_eq!(failures(&report), [ResultType::StarttlsNotSupported]);
}

#[tokio::test]
async fn mta_sts_enforce_defers_when_no_mx_matches_the_policy() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "sts-mxmismatch.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.sts-mxmismatch.test", &rcpt), 0);
    // RFC 8460 §4.3: the refused host is reported, once, although no session was opened.
    assert_eq!(failures(&report), [ResultType::ValidationFailure]);
    let session = &report.sessions[0];
    assert_eq!(session.policy.policy_type, PolicyType::Sts);
    let failure = session.failure.as_ref().expect("a failure");
    assert_eq!(
        failure.receiving_mx_hostname.as_deref(),
        Some("mx.sts-mxmismatch.test")
    );
}

#[tokio::test]
async fn an_mta_sts_wildcard_covers_one_label_only() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "sts-wildcard.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx1.sts-wildcard.test", &rcpt), 1);
    let tried: Vec<Option<&str>> = report.messages[0]
        .attempts
        .iter()
        .map(|a| a.mx.as_deref())
        .collect();
    assert!(
        !tried.contains(&Some("deep.mx.sts-wildcard.test")),
        "{tried:?}"
    );
}

#[tokio::test]
async fn mta_sts_testing_delivers_and_reports_what_enforce_would_have_refused() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "sts-testing.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx.sts-testing.test", &rcpt), 1);
    assert_eq!(last_attempt(&report).policy, "sts-testing");
    assert_eq!(failures(&report), [ResultType::CertificateExpired]);
    assert_eq!(report.sessions[0].policy.policy_type, PolicyType::Sts);
}

#[tokio::test]
async fn a_policy_host_that_is_down_or_expired_means_no_policy_and_is_reported() {
    let setup = setup(Vec::new()).await;
    for (domain, mx) in [
        ("sts-refused.test", "mx.sts-refused.test"),
        ("sts-expired-cert.test", "mx.sts-expired-cert.test"),
    ] {
        let (report, rcpt) = deliver(&setup, domain, false).await;
        assert_eq!(status(&report), "delivered", "{domain}: {report:?}");
        assert_eq!(received(&setup, mx, &rcpt), 1, "{domain}");
        let fetch_failed = failures(&report).iter().any(|r| {
            matches!(
                r,
                ResultType::StsPolicyFetchError | ResultType::StsWebpkiInvalid
            )
        });
        assert!(fetch_failed, "{domain}: {:?}", report.sessions);
    }
}

#[tokio::test]
async fn dane_3_1_1_delivers_to_the_matching_key_and_records_dane() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "dane-ok.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx.dane-ok.test", &rcpt), 1);
    let attempt = last_attempt(&report);
    assert_eq!(attempt.auth, PeerAuth::Dane);
    assert_eq!(attempt.requirement.as_deref(), Some("dane"));
    assert_eq!(report.sessions[0].policy.policy_type, PolicyType::Tlsa);
    assert!(report.sessions[0].failure.is_none());
}

#[tokio::test]
async fn dane_2_1_1_delivers_through_the_private_trust_anchor() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "dane-ta.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx.dane-ta.test", &rcpt), 1);
    assert_eq!(last_attempt(&report).auth, PeerAuth::Dane);
}

#[tokio::test]
async fn a_dane_mismatch_is_never_delivered() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "dane-mismatch.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.dane-mismatch.test", &rcpt), 0);
    assert_eq!(failures(&report), [ResultType::ValidationFailure]);
}

#[tokio::test]
async fn dane_defers_when_starttls_is_stripped() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "dane-stripped.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "backend.dane-stripped.test", &rcpt), 0);
    assert_eq!(failures(&report), [ResultType::StarttlsNotSupported]);
}

#[tokio::test]
async fn a_bogus_tlsa_answer_makes_the_host_unusable_and_is_reported() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "bogus.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.bogus.test", &rcpt), 0);
    assert!(
        failures(&report).contains(&ResultType::DnssecInvalid),
        "{:?}",
        report.sessions
    );
}

#[tokio::test]
async fn tlsa_in_an_insecure_zone_is_not_dane() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "insecure.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx.insecure.test", &rcpt), 1);
    assert_ne!(last_attempt(&report).auth, PeerAuth::Dane);
    assert_ne!(last_attempt(&report).requirement.as_deref(), Some("dane"));
}

#[tokio::test]
async fn requiretls_reaches_an_authenticated_mx_that_advertises_it_with_the_parameter() {
    let setup = setup(Vec::new()).await;
    let (report, rcpt) = deliver(&setup, "requiretls.test", true).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    let got = setup
        .lab
        .received_for("mx.requiretls.test", &rcpt)
        .expect("records");
    assert!(
        got[0].mail_params.contains_key("REQUIRETLS"),
        "{:?}",
        got[0].mail_params
    );
    assert_eq!(last_attempt(&report).auth, PeerAuth::Dane);
}

#[tokio::test]
async fn requiretls_bounces_with_5_7_30_where_no_host_can_meet_it() {
    let setup = setup(Vec::new()).await;
    // Authenticated (DANE) but without REQUIRETLS in its EHLO: RFC 8689 §4.2.1.
    let (report, rcpt) = deliver(&setup, "dane-ok.test", true).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Bounced { .. }),
        "{report:?}"
    );
    assert_eq!(status(&report), "5.7.30");
    assert_eq!(received(&setup, "mx.dane-ok.test", &rcpt), 0);
    // Not authenticated at all (no DANE, no MTA-STS): refused before connecting.
    let (report, rcpt) = deliver(&setup, "selfsigned.test", true).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Bounced { .. }),
        "{report:?}"
    );
    assert!(status(&report).starts_with("5.7."), "{report:?}");
    assert_eq!(received(&setup, "mx.selfsigned.test", &rcpt), 0);
}

#[tokio::test]
async fn a_rule_that_tightens_defers_a_domain_without_dane() {
    let rule = Rule {
        name: "selfsigned must be dane".to_owned(),
        domains: vec![DomainPattern::Exact("selfsigned.test".to_owned())],
        senders: Vec::new(),
        require: Some(MinRequirement::DaneOnly),
        pins: Vec::new(),
        min_tls_version: None,
        fail_closed: false,
        insecure_relax: None,
        ..Rule::default()
    };
    let setup = setup(vec![rule]).await;
    let (report, rcpt) = deliver(&setup, "selfsigned.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.selfsigned.test", &rcpt), 0);
    assert_eq!(last_attempt(&report).outcome, AttemptOutcome::Deferred);
}

#[tokio::test]
async fn a_rule_that_relaxes_a_published_policy_delivers_to_a_broken_certificate() {
    let rule = Rule {
        name: "partner with a broken certificate".to_owned(),
        domains: vec![DomainPattern::Exact("sts-enforce-badcert.test".to_owned())],
        senders: Vec::new(),
        require: None,
        pins: Vec::new(),
        min_tls_version: None,
        fail_closed: false,
        insecure_relax: Some(Relax::Encrypted),
        ..Rule::default()
    };
    let setup = setup(vec![rule]).await;
    let (report, rcpt) = deliver(&setup, "sts-enforce-badcert.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert!(
        setup
            .lab
            .received_for("mx.sts-enforce-badcert.test", &rcpt)
            .expect("records")[0]
            .tls
    );
    let attempt = last_attempt(&report);
    assert_eq!(attempt.policy, "rule-relaxed");
    assert_eq!(attempt.requirement.as_deref(), Some("encrypted"));
    assert_eq!(attempt.rules, ["partner with a broken certificate"]);
}

#[tokio::test]
async fn replace_policy_applies_to_the_next_job_and_explain_shows_the_plan() {
    let setup = setup(Vec::new()).await;
    let explained = setup
        .transport
        .explain("dane-ok.test", strictmx_policy::MessageFacts::default())
        .await;
    let strictmx_policy::PlanOutcome::Deliver(plan) = &explained.outcome else {
        panic!("a plan: {explained:?}");
    };
    assert_eq!(plan.candidates[0].requirement.as_str(), "dane");
    // The plan serializes for `explain --json`. (The gathered MxFacts does not yet: its
    // internally tagged `Hosts(Vec)` variant is refused by serde; reported to the policy crate.)
    let json = serde_json::to_string(&explained.outcome);
    assert!(json.is_ok(), "{json:?}");
    let rule = Rule {
        name: "tighten".to_owned(),
        domains: vec![DomainPattern::Exact("plain.test".to_owned())],
        senders: Vec::new(),
        require: Some(MinRequirement::Encrypted),
        pins: Vec::new(),
        min_tls_version: None,
        fail_closed: false,
        insecure_relax: None,
        ..Rule::default()
    };
    setup.transport.replace_policy(PolicySettings {
        rules: vec![rule],
        ..PolicySettings::default()
    });
    let (report, rcpt) = deliver(&setup, "plain.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.plain.test", &rcpt), 0);
}

// Issue 11, "Exceptions that expire": the exception lets a broken certificate through, says so
// in the attempt record and `explain`, and stops at its expiry second without a reload.
#[tokio::test]
async fn an_exception_delivers_until_it_expires_and_then_stops_on_its_own() {
    let setup = setup(Vec::new()).await;
    let expires = unix_now() + 4;
    let exception = Rule {
        name: "partner-relax".to_owned(),
        domains: vec![
            DomainPattern::Exact("sts-enforce-badcert.test".to_owned()),
            DomainPattern::Exact("sts-enforce.test".to_owned()),
        ],
        insecure_relax: Some(Relax::Encrypted),
        expires: Some(expires),
        reason: Some("ticket 4711".to_owned()),
        ..Rule::default()
    };
    setup.transport.replace_policy(PolicySettings {
        rules: vec![exception],
        ..PolicySettings::default()
    });

    let (report, rcpt) = deliver(&setup, "sts-enforce-badcert.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx.sts-enforce-badcert.test", &rcpt), 1);
    let attempt = last_attempt(&report);
    assert_eq!(attempt.rules, ["partner-relax"]);
    let used = &attempt.exceptions[..];
    assert_eq!(used.len(), 1, "{attempt:?}");
    assert_eq!(
        (
            used[0].rule.as_str(),
            used[0].expires,
            used[0].reason.as_deref()
        ),
        ("partner-relax", Some(expires), Some("ticket 4711"))
    );
    // Without the exception MTA-STS enforce would have refused this certificate: it was spared.
    let spared = used[0].spared.as_deref().expect("spared");
    assert!(spared.contains("certificate-host-mismatch"), "{spared}");

    // A receiver with a good certificate passes without the exception too: nothing spared.
    let (report, _) = deliver(&setup, "sts-enforce.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    let used = &last_attempt(&report).exceptions;
    assert_eq!(
        (used.len(), used[0].spared.as_deref()),
        (1, None),
        "{used:?}"
    );

    let explained = setup
        .transport
        .explain(
            "sts-enforce-badcert.test",
            strictmx_policy::MessageFacts::default(),
        )
        .await;
    assert_eq!(
        explained.alternatives.exceptions[0].term.rule,
        "partner-relax"
    );
    assert!(explained.expired.is_empty());

    let wait = (expires + 1).saturating_sub(unix_now());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (report, rcpt) = deliver(&setup, "sts-enforce-badcert.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.sts-enforce-badcert.test", &rcpt), 0);
    let attempt = last_attempt(&report);
    assert_eq!(attempt.policy, "sts-enforce");
    assert!(
        attempt.rules.is_empty() && attempt.exceptions.is_empty(),
        "{attempt:?}"
    );
    assert_eq!(failures(&report), [ResultType::CertificateHostMismatch]);
    let explained = setup
        .transport
        .explain(
            "sts-enforce-badcert.test",
            strictmx_policy::MessageFacts::default(),
        )
        .await;
    assert!(explained.alternatives.is_empty());
    assert_eq!(explained.expired[0].rule, "partner-relax");
}

/// A spool to record the attempts in, as the queue runner does: its shadow counters outlive
/// the delivered messages.
fn recording_spool() -> (Spool, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(&SpoolSettings {
        data_dir: dir.path().to_owned(),
        ..SpoolSettings::default()
    })
    .expect("spool");
    (spool, dir)
}

/// Submits a message to a fresh recipient at `domain`, delivers it and records the outcome.
async fn deliver_and_record(
    setup: &Setup,
    spool: &Spool,
    domain: &str,
) -> (DeliveryReport, String) {
    let rcpt = unique_rcpt(domain);
    let mut job_message = message(&rcpt, false);
    let id = spool
        .submit((*job_message.envelope).clone(), job_message.body.to_vec())
        .await
        .expect("submit");
    job_message.id = id;
    let job = DeliveryJob {
        domain: domain.to_owned(),
        messages: vec![job_message],
    };
    let report = setup.transport.deliver(job).await;
    let state = match outcome(&report) {
        RecipientOutcome::Delivered { remote_mta, reply } => RecipientState::Delivered {
            at: SystemTime::now(),
            mx: remote_mta.clone(),
            reply: reply.clone(),
        },
        other => panic!("{domain}: delivered under the enforced policy: {other:?}"),
    };
    spool
        .record(
            id,
            vec![RecipientUpdate { index: 0, state }],
            report.messages[0].attempts.clone(),
        )
        .await
        .expect("record");
    (report, rcpt)
}

fn today() -> u32 {
    u32::try_from(unix_now() / 86_400).expect("a day number")
}

// Issue 11, "Shadow rules": a shadow `dane-only` rule over mixed destinations changes nothing,
// and the counters behind `strictmx shadow report` say whom it would have stopped and why; a
// shadow `verified` rule judges the very session it rode along; promoting it enforces it.
#[tokio::test]
async fn shadow_rules_over_mixed_destinations_change_nothing_and_count_what_they_would_stop() {
    let dane_trial = Rule {
        name: "dane-trial".to_owned(),
        require: Some(MinRequirement::DaneOnly),
        mode: strictmx_policy::rules::RuleMode::Shadow,
        ..Rule::default()
    };
    let verified_trial = Rule {
        name: "verified-trial".to_owned(),
        domains: vec![DomainPattern::Exact("selfsigned.test".to_owned())],
        require: Some(MinRequirement::Verified),
        mode: strictmx_policy::rules::RuleMode::Shadow,
        ..Rule::default()
    };
    let setup = setup(vec![dane_trial.clone(), verified_trial]).await;
    let (spool, _dir) = recording_spool();
    let mut shadow_of = Vec::new();
    for (domain, mx) in [
        ("dane-ok.test", "mx.dane-ok.test"),
        ("sts-enforce.test", "mx.sts-enforce.test"),
        ("plain.test", "mx.plain.test"),
        ("dane-ok.test", "mx.dane-ok.test"),
        ("selfsigned.test", "mx.selfsigned.test"),
    ] {
        let (report, rcpt) = deliver_and_record(&setup, &spool, domain).await;
        assert_eq!(
            received(&setup, mx, &rcpt),
            1,
            "{domain}: a shadow rule changes nothing"
        );
        let attempt = last_attempt(&report);
        assert!(attempt.rules.is_empty(), "{domain}: {attempt:?}");
        let verdicts: Vec<(String, ShadowOutcome)> = attempt
            .shadow
            .iter()
            .map(|v| (v.rule.clone(), v.outcome))
            .collect();
        shadow_of.push((domain, verdicts, attempt.shadow.clone()));
    }
    let would = ShadowOutcome::WouldDefer;
    let outcomes: Vec<(&str, Vec<(&str, ShadowOutcome)>)> = shadow_of
        .iter()
        .map(|(domain, verdicts, _)| {
            (
                *domain,
                verdicts.iter().map(|(r, o)| (r.as_str(), *o)).collect(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("dane-ok.test", vec![("dane-trial", ShadowOutcome::Pass)]),
            ("sts-enforce.test", vec![("dane-trial", would)]),
            ("plain.test", vec![("dane-trial", would)]),
            ("dane-ok.test", vec![("dane-trial", ShadowOutcome::Pass)]),
            (
                "selfsigned.test",
                vec![("dane-trial", would), ("verified-trial", would)]
            ),
        ]
    );
    // RFC 8460 §4.3.1: the shadow `verified` rule judged the self-signed certificate it saw.
    let verified = &shadow_of[4].2[1];
    assert!(
        verified.reason.contains("certificate-not-trusted"),
        "{verified:?}"
    );
    assert!(
        shadow_of[2].2[0].reason.contains("requires DANE"),
        "{:?}",
        shadow_of[2].2
    );

    // The counters outlive the delivered messages: what `strictmx shadow report` prints.
    let report = spool
        .shadow_report(today(), Some("dane-trial"))
        .expect("report");
    assert_eq!(report.len(), 1, "{report:?}");
    let dane = &report[0];
    assert_eq!((dane.messages, dane.stopped), (5, 3), "{dane:?}");
    assert_eq!(dane.stopped_domains(), 3);
    let domains: Vec<(&str, u64, u64)> = dane
        .domains
        .iter()
        .map(|d| (d.domain.as_str(), d.messages, d.stopped))
        .collect();
    for expected in [
        ("plain.test", 1, 1),
        ("sts-enforce.test", 1, 1),
        ("selfsigned.test", 1, 1),
        ("dane-ok.test", 2, 0),
    ] {
        assert!(domains.contains(&expected), "{expected:?} in {domains:?}");
    }
    let plain = dane
        .domains
        .iter()
        .find(|d| d.domain == "plain.test")
        .unwrap();
    assert!(
        plain.reasons[0].reason.contains("a rule requires DANE"),
        "{:?}",
        plain.reasons
    );
    let all = spool.shadow_report(today(), None).expect("report");
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[1].rule.as_str(), all[1].messages, all[1].stopped),
        ("verified-trial", 1, 1)
    );

    // Promoted (what `reload` does with `mode = "enforce"`), the rule is enforced.
    setup.transport.replace_policy(PolicySettings {
        rules: vec![Rule {
            mode: strictmx_policy::rules::RuleMode::Enforce,
            ..dane_trial
        }],
        ..PolicySettings::default()
    });
    let (report, rcpt) = deliver(&setup, "plain.test", false).await;
    assert!(
        matches!(outcome(&report), RecipientOutcome::Deferred { .. }),
        "{report:?}"
    );
    assert_eq!(received(&setup, "mx.plain.test", &rcpt), 0);
    let reply = &last_attempt(&report).reply;
    assert!(reply.contains("a rule requires DANE"), "{reply}");
}

// Issue 11: what an exception spared is judged with the checks of the plan without it: for a
// DANE-TA(2) receiver (RFC 7672 §3.1.2) the chain is validated to the TLSA-matched anchor again,
// although the relaxed session itself asked for no DANE check; a good chain spares nothing.
#[tokio::test]
async fn an_exception_over_a_good_dane_ta_receiver_spares_nothing() {
    let exception = Rule {
        name: "dane-ta-relax".to_owned(),
        domains: vec![DomainPattern::Exact("dane-ta.test".to_owned())],
        insecure_relax: Some(Relax::Encrypted),
        expires: Some(unix_now() + 3600),
        reason: Some("checking what it spares".to_owned()),
        ..Rule::default()
    };
    let setup = setup(vec![exception]).await;
    let (report, rcpt) = deliver(&setup, "dane-ta.test", false).await;
    assert_eq!(status(&report), "delivered", "{report:?}");
    assert_eq!(received(&setup, "mx.dane-ta.test", &rcpt), 1);
    let attempt = last_attempt(&report);
    assert_eq!(attempt.requirement.as_deref(), Some("encrypted"));
    assert_eq!(attempt.exceptions.len(), 1, "{attempt:?}");
    assert_eq!(attempt.exceptions[0].spared, None, "{attempt:?}");
}
