//! Fact gathering against the lab (`tests/lab/up`): DNSSEC status of MX, address and TLSA
//! answers in both DNSSEC modes, the self-test, and every MTA-STS policy host with the spool
//! cache, and MX names that are CNAMEs into another signed zone or into an unsigned one
//! (RFC 7672 §2.2.2).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strictmx_policy::report::ResultType;
use strictmx_policy::sts::StsMode;
use strictmx_policy::{
    Dnssec, DnssecHealth, DomainFacts, HostFacts, MxFacts, StsFacts, StsRecordFacts, TlsaFacts,
};
use strictmx_resolve::{
    DnsResolver, DnssecMode, FactGatherer, GatherSettings, ResolverSettings, StsSettings, StsSource,
};
use strictmx_spool::{CachedStsPolicy, Spool, SpoolSettings};
use strictmx_test_support::lab::Lab;

/// In-process validation: the lab root's keys as the anchor, the non-validating resolver.
fn validating(lab: &Lab) -> DnsResolver {
    resolver(
        lab.nonvalidating_resolver(),
        DnssecMode::Validate {
            trust_anchor: Some(lab.trust_anchor().to_owned()),
        },
    )
}

/// The AD bit of the lab's validating unbound (on loopback, so trusted).
fn trusting(lab: &Lab) -> DnsResolver {
    resolver(lab.resolver(), DnssecMode::TrustResolver)
}

fn resolver(server: std::net::SocketAddr, dnssec: DnssecMode) -> DnsResolver {
    DnsResolver::new(&ResolverSettings {
        nameservers: vec![server],
        timeout: Duration::from_secs(3),
        attempts: 2,
        dnssec,
        trusted_nameservers: Vec::new(),
    })
    .expect("resolver")
}

fn spool(dir: &Path) -> Spool {
    Spool::open(&SpoolSettings {
        data_dir: dir.to_owned(),
        ..SpoolSettings::default()
    })
    .expect("spool")
}

fn sts_settings(lab: &Lab) -> StsSettings {
    StsSettings {
        extra_ca_file: Some(lab.ca_bundle().to_owned()),
        fetch_timeout: Duration::from_secs(10),
        ..StsSettings::default()
    }
}

fn sts(lab: &Lab, resolver: &DnsResolver, spool: &Spool) -> StsSource {
    StsSource::new(resolver.clone(), spool.clone(), sts_settings(lab)).expect("sts source")
}

async fn gatherer(lab: &Lab, resolver: DnsResolver, dir: &Path) -> FactGatherer {
    let sts = sts(lab, &resolver, &spool(dir));
    FactGatherer::new(resolver, sts, GatherSettings::default()).await
}

fn host<'f>(facts: &'f DomainFacts, name: &str) -> &'f HostFacts {
    facts
        .hosts
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("{name} not among {facts:#?}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// What DNSSEC-relevant facts the lab's domains must produce in either mode.
async fn check_dane_world(gatherer: &FactGatherer, bogus_tlsa: Dnssec) {
    assert!(matches!(
        gatherer.dnssec_health(),
        DnssecHealth::Working { .. }
    ));

    let ok = gatherer.domain_facts("dane-ok.test").await;
    assert_eq!(ok.mx_dnssec, Dnssec::Secure, "{ok:#?}");
    let mx = host(&ok, "mx.dane-ok.test");
    assert_eq!(mx.addresses_dnssec, Dnssec::Secure);
    match &mx.tlsa {
        TlsaFacts::Records {
            base_domain,
            records,
        } => {
            assert_eq!(base_domain, "mx.dane-ok.test");
            assert_eq!(
                (
                    records[0].usage,
                    records[0].selector,
                    records[0].matching_type
                ),
                (3, 1, 1)
            );
            assert_eq!(records[0].data.len(), 32);
        }
        other => panic!("RFC 7672 §2.2: secure TLSA expected, got {other:?}"),
    }

    // RFC 7672 §2.2: a secure RRset of unusable records is gathered as it is (the planner
    // makes TLS mandatory without authentication); nothing in it is usable.
    let unusable = gatherer.domain_facts("dane-unusable.test").await;
    match &host(&unusable, "mx.dane-unusable.test").tlsa {
        TlsaFacts::Records { records, .. } => {
            assert_eq!(records.len(), 7, "{records:?}");
            assert!(records.iter().all(|r| !r.is_usable()), "{records:?}");
        }
        other => panic!("secure unusable TLSA records expected, got {other:?}"),
    }

    let ta = gatherer.domain_facts("dane-ta.test").await;
    assert!(matches!(
        &host(&ta, "mx.dane-ta.test").tlsa,
        TlsaFacts::Records { records, .. } if records[0].usage == 2
    ));

    // RFC 7672 §2.2.1: an insecure MX RRset: DANE does not apply, whatever TLSA exists.
    let insecure = gatherer.domain_facts("insecure.test").await;
    assert_eq!(insecure.mx_dnssec, Dnssec::Insecure);
    assert!(matches!(
        host(&insecure, "mx.insecure.test").tlsa,
        TlsaFacts::NotApplicable { .. }
    ));

    // RFC 7672 §2.1.1: a bogus TLSA RRset fails the host; it is never "no TLSA".
    let bogus = gatherer.domain_facts("bogus.test").await;
    assert_eq!(bogus.mx_dnssec, Dnssec::Secure);
    match &host(&bogus, "mx.bogus.test").tlsa {
        TlsaFacts::Failed { dnssec, .. } => assert_eq!(*dnssec, bogus_tlsa),
        other => panic!("bogus TLSA must fail, got {other:?}"),
    }

    // RFC 7672 §2.2: a secure denial of TLSA records is an absence.
    let multi = gatherer.domain_facts("multi.test").await;
    assert_eq!(multi.mx_dnssec, Dnssec::Secure);
    assert_eq!(multi.hosts.len(), 3);
    assert!(matches!(
        host(&multi, "mx1.multi.test").tlsa,
        TlsaFacts::Absent { .. }
    ));

    let implicit = gatherer.domain_facts("implicit.test").await;
    assert!(matches!(implicit.mx, MxFacts::Implicit { .. }));
    assert!(matches!(
        host(&implicit, "implicit.test").tlsa,
        TlsaFacts::Absent { .. }
    ));

    let nx = gatherer.domain_facts("nxdomain.test").await;
    assert_eq!(nx.mx, MxFacts::NoSuchDomain);
    assert!(nx.hosts.is_empty());

    let null = gatherer.domain_facts("nullmx.test").await;
    assert_eq!(null.mx, MxFacts::Null);
    assert!(null.hosts.is_empty());
}

#[tokio::test]
async fn in_process_validation_finds_secure_insecure_and_bogus_answers() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let gatherer = gatherer(&lab, validating(&lab), dir.path()).await;
    check_dane_world(&gatherer, Dnssec::Bogus).await;
}

#[tokio::test]
async fn the_trusted_resolvers_ad_bit_gives_the_same_facts() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let gatherer = gatherer(&lab, trusting(&lab), dir.path()).await;
    // unbound answers SERVFAIL for bogus data: the status cannot be told apart from an outage.
    check_dane_world(&gatherer, Dnssec::Indeterminate).await;
}

#[tokio::test]
async fn a_route_host_gets_tlsa_at_its_own_port() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let gatherer = gatherer(&lab, validating(&lab), dir.path()).await;
    let on_25 = gatherer.host_facts("mx.dane-ok.test", 25).await;
    assert!(matches!(on_25.tlsa, TlsaFacts::Records { .. }));
    let on_587 = gatherer.host_facts("mx.dane-ok.test", 587).await;
    assert!(matches!(on_587.tlsa, TlsaFacts::Absent { .. }));
}

#[tokio::test]
async fn a_wrong_trust_anchor_fails_the_self_test_and_no_answer_reads_as_insecure() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    // The embedded IANA anchor cannot validate the lab's private root.
    let iana = resolver(
        lab.nonvalidating_resolver(),
        DnssecMode::Validate { trust_anchor: None },
    );
    let gatherer = gatherer(&lab, iana, dir.path()).await;
    assert!(matches!(
        gatherer.dnssec_health(),
        DnssecHealth::Broken { ref mode, .. } if mode == "validate"
    ));
    let facts = gatherer.domain_facts("dane-ok.test").await;
    assert!(matches!(facts.dnssec_health, DnssecHealth::Broken { .. }));
    assert_ne!(facts.mx_dnssec, Dnssec::Insecure);
    assert_ne!(facts.mx_dnssec, Dnssec::Secure);
}

#[tokio::test]
async fn trusting_a_resolver_that_does_not_validate_fails_the_self_test_and_tlsa() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let naive = resolver(lab.nonvalidating_resolver(), DnssecMode::TrustResolver);
    let gatherer = gatherer(&lab, naive, dir.path()).await;
    assert!(matches!(
        gatherer.dnssec_health(),
        DnssecHealth::Broken { ref mode, .. } if mode == "trust-resolver"
    ));
    // Without AD every answer looks insecure; the broken self-test keeps that from silently
    // turning DANE off: the TLSA facts are a failure, so the planner defers the host.
    let facts = gatherer.domain_facts("dane-ok.test").await;
    assert!(matches!(
        host(&facts, "mx.dane-ok.test").tlsa,
        TlsaFacts::Failed {
            dnssec: Dnssec::Indeterminate,
            ..
        }
    ));
}

async fn sts_facts(lab: &Lab, domain: &str) -> StsFacts {
    let dir = tempfile::tempdir().expect("tempdir");
    let resolver = trusting(lab);
    sts(lab, &resolver, &spool(dir.path())).facts(domain).await
}

#[tokio::test]
async fn well_formed_policies_are_fetched_with_their_mode_and_patterns() {
    let lab = Lab::get().expect("lab");
    let rows = [
        ("sts-enforce.test", StsMode::Enforce, "mx.sts-enforce.test"),
        ("sts-testing.test", StsMode::Testing, "mx.sts-testing.test"),
        ("sts-none.test", StsMode::None, "mx.sts-none.test"),
        ("sts-wildcard.test", StsMode::Enforce, "*.sts-wildcard.test"),
    ];
    for (domain, mode, pattern) in rows {
        let facts = sts_facts(&lab, domain).await;
        assert!(
            matches!(facts.record, StsRecordFacts::Present { .. }),
            "{domain}: {facts:?}"
        );
        assert_eq!(facts.fetch_failure, None, "{domain}");
        let policy = facts.policy.expect("policy");
        assert_eq!(policy.policy.mode, mode, "{domain}");
        assert!(policy.policy.mx.iter().any(|p| p == pattern), "{domain}");
        assert!(!policy.from_cache);
        assert_eq!(policy.expires_at, policy.fetched_at + policy.policy.max_age);
    }
}

#[tokio::test]
async fn broken_policy_hosts_give_no_policy_and_the_right_tlsrpt_result() {
    let lab = Lab::get().expect("lab");
    let rows = [
        // RFC 8461 §3.3: redirects are not followed.
        ("sts-redirect.test", ResultType::StsPolicyFetchError),
        // RFC 8461 §3.2: the media type is text/plain.
        ("sts-content-type.test", ResultType::StsPolicyInvalid),
        ("sts-oversized.test", ResultType::StsPolicyFetchError),
        // RFC 8461 §3.2: version must be STSv1.
        ("sts-malformed.test", ResultType::StsPolicyInvalid),
        ("sts-refused.test", ResultType::StsPolicyFetchError),
        // RFC 8461 §3.3: the policy host's certificate must pass web PKI validation.
        ("sts-expired-cert.test", ResultType::StsWebpkiInvalid),
    ];
    for (domain, result_type) in rows {
        let facts = sts_facts(&lab, domain).await;
        assert!(
            matches!(facts.record, StsRecordFacts::Present { .. }),
            "{domain}: {facts:?}"
        );
        assert_eq!(facts.policy, None, "{domain}");
        let failure = facts.fetch_failure.expect("failure");
        assert_eq!(
            failure.result_type, result_type,
            "{domain}: {}",
            failure.reason
        );
    }
}

#[tokio::test]
async fn a_domain_without_a_record_has_no_policy_and_no_fetch() {
    let lab = Lab::get().expect("lab");
    let facts = sts_facts(&lab, "multi.test").await;
    assert_eq!(facts.record, StsRecordFacts::Absent);
    assert_eq!(facts.policy, None);
    assert_eq!(facts.fetch_failure, None);
}

/// Fetches of `mta-sts.<domain>` the lab saw since `since` (Unix seconds).
fn fetches(lab: &Lab, domain: &str, since: f64) -> usize {
    let host = format!("mta-sts.{domain}");
    lab.sts_requests()
        .expect("requests")
        .iter()
        .filter(|r| r.time >= since && (r.host == host || r.sni.as_deref() == Some(&host)))
        .count()
}

fn cached(domain: &str, id: &str, text: &str, expires_at: u64) -> CachedStsPolicy {
    CachedStsPolicy {
        domain: domain.to_owned(),
        text: text.to_owned(),
        id: id.to_owned(),
        fetched_at: now().saturating_sub(60),
        expires_at,
    }
}

/// One test, run in sequence, because it counts the fetches one policy host receives.
#[tokio::test]
async fn the_cache_survives_a_restart_and_refetches_only_on_a_new_id_or_near_expiry() {
    let lab = Lab::get().expect("lab");
    let domain = "sts-stripped.test";
    let dir = tempfile::tempdir().expect("tempdir");
    let resolver = trusting(&lab);
    let since = now() as f64 - 1.0;
    {
        let spool = spool(dir.path());
        let source = sts(&lab, &resolver, &spool);
        let first = source.facts(domain).await.policy.expect("policy");
        assert!(!first.from_cache);
        let second = source.facts(domain).await.policy.expect("policy");
        assert!(second.from_cache, "RFC 8461 §3.1: same id, cached policy");
        assert_eq!(fetches(&lab, domain, since), 1);
    }
    let spool = spool(dir.path());
    let source = Arc::new(sts(&lab, &resolver, &spool));
    let reopened = source.facts(domain).await.policy.expect("policy");
    assert!(reopened.from_cache, "the cache lives in the spool");
    assert_eq!(fetches(&lab, domain, since), 1);

    // RFC 8461 §3.1: a TXT id other than the cached policy's means a new policy.
    let current = spool.sts_cache_get(domain).expect("read").expect("cached");
    spool
        .sts_cache_put(cached(domain, "older", &current.text, current.expires_at))
        .await
        .expect("put");
    let refetched = source.facts(domain).await.policy.expect("policy");
    assert!(!refetched.from_cache);
    assert_eq!(refetched.id, current.id);
    assert_eq!(fetches(&lab, domain, since), 2);

    // RFC 8461 §10.2: a policy close to expiry is refreshed in the background.
    spool
        .sts_cache_put(cached(domain, &current.id, &current.text, now() + 60))
        .await
        .expect("put");
    assert_eq!(source.refresh_due().await, 1);
    assert_eq!(fetches(&lab, domain, since), 3);
    let renewed = spool.sts_cache_get(domain).expect("read").expect("cached");
    assert!(renewed.expires_at > now() + 3600);
    assert_eq!(source.refresh_due().await, 0, "nothing else is due");
}

#[tokio::test]
async fn a_cached_policy_stays_in_force_while_refreshes_fail_until_it_expires() {
    let lab = Lab::get().expect("lab");
    let domain = "sts-refused.test";
    let text = "version: STSv1\r\nmode: enforce\r\nmx: mx.sts-refused.test\r\nmax_age: 86400\r\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let resolver = trusting(&lab);
    let spool = spool(dir.path());
    let source = sts(&lab, &resolver, &spool);

    // RFC 8461 §5.1: the fetch fails (nothing listens), the unexpired cached policy applies.
    spool
        .sts_cache_put(cached(domain, "older", text, now() + 3600))
        .await
        .expect("put");
    let facts = source.facts(domain).await;
    let failure = facts.fetch_failure.expect("fetch failed");
    assert_eq!(failure.result_type, ResultType::StsPolicyFetchError);
    let policy = facts.policy.expect("cached policy in force");
    assert!(policy.from_cache);
    assert_eq!(policy.policy.mode, StsMode::Enforce);

    // RFC 8461 §5.1: an expired policy is no policy, even with nothing better.
    spool
        .sts_cache_put(cached(domain, "older", text, now() - 1))
        .await
        .expect("put");
    let facts = source.facts(domain).await;
    assert!(facts.fetch_failure.is_some());
    assert_eq!(facts.policy, None);
}

#[tokio::test]
async fn gathered_domain_facts_carry_the_mta_sts_facts() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let gatherer = gatherer(&lab, trusting(&lab), dir.path()).await;
    let facts = gatherer.domain_facts("sts-enforce.test").await;
    assert!(matches!(facts.mx, MxFacts::Hosts(_)));
    assert_eq!(
        facts.sts.policy.expect("policy").policy.mode,
        StsMode::Enforce
    );
}

#[tokio::test]
async fn deliveries_to_one_domain_at_the_same_moment_share_one_policy_fetch() {
    let lab = Lab::get().expect("lab");
    for (domain, fails) in [("sts-enforce.test", false), ("sts-expired-cert.test", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let resolver = trusting(&lab);
        let source = sts(&lab, &resolver, &spool(dir.path()));
        let (a, b, c, d) = tokio::join!(
            source.facts(domain),
            source.facts(domain),
            source.facts(domain),
            source.facts(domain)
        );
        for facts in [a, b, c, d] {
            assert_eq!(facts.fetch_failure.is_some(), fails, "{domain}: {facts:?}");
            assert_eq!(facts.policy.is_some(), !fails, "{domain}");
        }
        assert_eq!(
            source.fetches(),
            1,
            "{domain}: one HTTPS fetch for four deliveries"
        );
    }
}

// RFC 8461 §5.1: before failing on a cached enforce policy that lists none of the domain's MX
// hosts, look for an updated policy; at most once per domain in a while.
#[tokio::test]
async fn a_cached_policy_that_matches_no_mx_host_is_fetched_again_before_mail_fails() {
    let lab = Lab::get().expect("lab");
    let domain = "sts-enforce.test";
    let dir = tempfile::tempdir().expect("tempdir");
    let resolver = trusting(&lab);
    let store = spool(dir.path());
    let current_id = {
        let probe = tempfile::tempdir().expect("tempdir");
        match sts(&lab, &resolver, &spool(probe.path()))
            .facts(domain)
            .await
            .record
        {
            StsRecordFacts::Present { id } => id,
            other => panic!("no _mta-sts record: {other:?}"),
        }
    };
    // Cached under the id the TXT record still has, but from before an MX move.
    let stale = "version: STSv1\r\nmode: enforce\r\nmx: mx.moved-away.test\r\nmax_age: 86400\r\n";
    store
        .sts_cache_put(cached(domain, &current_id, stale, now() + 3600))
        .await
        .expect("put");
    let gatherer = FactGatherer::new(
        resolver.clone(),
        sts(&lab, &resolver, &store),
        GatherSettings::default(),
    )
    .await;
    let facts = gatherer.domain_facts(domain).await;
    let policy = facts.sts.policy.expect("policy");
    assert!(!policy.from_cache, "fetched again");
    assert!(policy.policy.matches("mx.sts-enforce.test"), "{policy:?}");

    // The new policy was cached; a stale one put back is not fetched again right away.
    store
        .sts_cache_put(cached(domain, &current_id, stale, now() + 3600))
        .await
        .expect("put");
    let facts = gatherer.domain_facts(domain).await;
    let policy = facts.sts.policy.expect("policy");
    assert!(
        policy.from_cache,
        "at most one new look per domain in a while"
    );
}

/// The TLSA base domain and records gathered for the only MX host of `domain`.
async fn cname_tlsa(gatherer: &FactGatherer, domain: &str) -> (HostFacts, Option<String>) {
    let facts = gatherer.domain_facts(domain).await;
    assert_eq!(facts.mx_dnssec, Dnssec::Secure, "{domain}: {facts:#?}");
    let host = facts.hosts.into_iter().next().expect("one MX host");
    let base = match &host.tlsa {
        TlsaFacts::Records { base_domain, .. } => Some(base_domain.clone()),
        _ => None,
    };
    (host, base)
}

/// RFC 4035 §5 and RFC 7672 §2.2.2 against the lab's CNAME'd MX hosts, in either mode.
async fn check_cname_world(gatherer: &FactGatherer) {
    // A secure chain from test. into the separately signed hosting.test.: the TLSA records at
    // the CNAME-expanded name apply.
    for (domain, target) in [
        ("dane-cname.test", "mx.hosting.test"),
        ("dane-cname-mismatch.test", "mismatch.hosting.test"),
    ] {
        let (host, base) = cname_tlsa(gatherer, domain).await;
        assert_eq!(
            host.canonical.as_deref(),
            Some(target),
            "{domain}: {host:#?}"
        );
        assert_eq!(host.addresses_dnssec, Dnssec::Secure, "{domain}: {host:#?}");
        assert_eq!(base.as_deref(), Some(target), "{domain}: {host:#?}");
    }
    // RFC 7672 §2.2.2: no TLSA at the expanded name: the original name's records apply.
    let (host, base) = cname_tlsa(gatherer, "dane-cname-orig.test").await;
    assert_eq!(host.canonical.as_deref(), Some("orig.hosting.test"));
    assert_eq!(
        base.as_deref(),
        Some("mx.dane-cname-orig.test"),
        "{host:#?}"
    );
    // RFC 7672 §2.2.2: a secure CNAME into an unsigned zone: the addresses are insecure, the
    // original name is the only TLSA base domain.
    let (host, base) = cname_tlsa(gatherer, "dane-cname-insecure.test").await;
    assert_eq!(
        host.canonical.as_deref(),
        Some("mx.cname-target.insecure.test")
    );
    assert_eq!(host.addresses_dnssec, Dnssec::Insecure, "{host:#?}");
    assert_eq!(
        base.as_deref(),
        Some("mx.dane-cname-insecure.test"),
        "{host:#?}"
    );
}

#[tokio::test]
async fn in_process_validation_follows_a_cname_into_another_signed_zone() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let gatherer = gatherer(&lab, validating(&lab), dir.path()).await;
    check_cname_world(&gatherer).await;
}

#[tokio::test]
async fn the_trusted_resolver_follows_a_cname_into_another_signed_zone() {
    let lab = Lab::get().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let gatherer = gatherer(&lab, trusting(&lab), dir.path()).await;
    check_cname_world(&gatherer).await;
}
