//! MX resolution against the lab's real DNS (nsd behind a validating unbound): equal-preference
//! MX hosts over verified TLS, the implicit MX, null MX and a domain that does not exist.
//! Needs the lab (`tests/lab/up`).

use std::time::Duration;

use strictmx_test_support::lab::{Lab, unique_rcpt, wait_for};
use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{RcptScript, Sink};

use crate::{bin, submit};

const WAIT: Duration = Duration::from_secs(45);

/// A relay that resolves through the lab and trusts the lab's CA; `src.test` (the senders'
/// domain) is routed to `dsn_sink` so that DSNs can be read. The lab's validating resolver is on
/// loopback, so its AD bit is trusted (the lab's root is not the IANA one strictmx embeds).
async fn relay_in_lab(lab: &Lab, dir: &TestDir, dsn_sink: &Sink) -> Relay {
    let config = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"3s\"\ndnssec = \"trust-resolver\"\n\n\
         [delivery]\nextra_ca_file = \"{}\"\n# The lab's MX hosts are on loopback.\nnever_deliver_to = []\n\n\
         [[route]]\ndomain = \"src.test\"\nnext_hop = \"{}\"\n",
        lab.resolver(),
        lab.ca_bundle().display(),
        dsn_sink.addr
    );
    Relay::start(bin(), dir.path(), &config).await.unwrap()
}

#[tokio::test]
async fn mail_to_equal_preference_mx_hosts_arrives_over_tls_with_sni_and_a_verified_certificate() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("lab-multi").unwrap();
    let dsn_sink = Sink::start(RcptScript::Accept).await.unwrap();
    let relay = relay_in_lab(&lab, &dir, &dsn_sink).await;
    let rcpt = unique_rcpt("multi.test");
    submit(&relay, &rcpt).await;

    let got = wait_for(WAIT, || {
        for host in ["mx1.multi.test", "mx2.multi.test"] {
            let mut m = lab.received_for(host, &rcpt)?;
            if let Some(m) = m.pop() {
                return Ok(Some(m));
            }
        }
        Ok(None)
    })
    .await
    .unwrap();
    assert!(got.tls, "opportunistic STARTTLS was used");
    assert_eq!(
        got.sni.as_deref(),
        Some(got.host.as_str()),
        "SNI names the MX host"
    );
    assert!(
        lab.received_for("backup.multi.test", &rcpt)
            .unwrap()
            .is_empty(),
        "the backup MX is not needed"
    );
    let attempt = relay
        .wait_log(WAIT, |v| {
            v["message"] == "delivery attempt" && v["outcome"] == "delivered"
        })
        .await
        .unwrap();
    assert_eq!(attempt["domain"], "multi.test");
    assert_eq!(
        attempt["cert_verified"], true,
        "the lab CA is trusted through extra_ca_file: {attempt}"
    );
}

#[tokio::test]
async fn a_domain_without_mx_is_delivered_to_its_address_record() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("lab-implicit").unwrap();
    let dsn_sink = Sink::start(RcptScript::Accept).await.unwrap();
    let relay = relay_in_lab(&lab, &dir, &dsn_sink).await;
    let rcpt = unique_rcpt("implicit.test");
    submit(&relay, &rcpt).await;
    wait_for(WAIT, || Ok(lab.received_for("implicit.test", &rcpt)?.pop()))
        .await
        .unwrap();
}

async fn expect_bounce(domain: &str, status: &str) {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("lab-bounce").unwrap();
    let dsn_sink = Sink::start(RcptScript::Accept).await.unwrap();
    let relay = relay_in_lab(&lab, &dir, &dsn_sink).await;
    let rcpt = unique_rcpt(domain);
    submit(&relay, &rcpt).await;
    let dsn = dsn_sink.wait_for(1, WAIT).await.unwrap();
    let body = dsn[0].body_text();
    assert!(
        body.contains(&format!("Status: {status}")),
        "{domain}: {body}"
    );
    assert!(body.contains(&rcpt), "{body}");
}

#[tokio::test]
async fn a_null_mx_domain_bounces_with_5_1_10_without_any_connection() {
    // RFC 7505 section 3: a domain that advertises a null MX accepts no mail.
    expect_bounce("nullmx.test", "5.1.10").await;
}

#[tokio::test]
async fn a_domain_that_does_not_exist_bounces_with_5_1_2() {
    expect_bounce("nxdomain.test", "5.1.2").await;
}
