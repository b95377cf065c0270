//! TLSRPT against the lab: sessions recorded for the lab's TLSRPT domains, then the day's reports
//! sent. The `https:` collector must receive gzip JSON whose counts match and which passes the
//! schema; `mailto:` reports must sit in our own queue with the RFC 8460 §5.3 headers and the
//! §5.1 attachment name. Delivering those mails on to mx.tlsrpt.test is left to the e2e tests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use base64::Engine;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use serde_json::Value;
use strictmx_policy::report::{
    PolicyType, ReportPolicy, ResultType, SessionFailure, SessionResult,
};
use strictmx_spool::{MessageKind, Spool, SpoolSettings};
use strictmx_test_support::lab::Lab;
use strictmx_tlsrpt::{
    BoxFuture, Day, Recorder, ReportPoster, Reporter, SCHEMA, TlsrptSettings, TxtLookup,
};
use tokio_util::sync::CancellationToken;

/// TXT lookups through the lab's validating resolver.
#[derive(Debug)]
struct LabTxt(TokioResolver);

impl LabTxt {
    fn new(resolver: SocketAddr) -> anyhow::Result<Self> {
        let mut udp = ConnectionConfig::udp();
        udp.port = resolver.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = resolver.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            resolver.ip(),
            true,
            vec![udp, tcp],
        )]);
        let mut options = ResolverOpts::default();
        options.ndots = 0;
        let inner = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()?;
        Ok(LabTxt(inner))
    }
}

impl TxtLookup for LabTxt {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let lookup = match self.0.lookup(format!("{name}."), RecordType::TXT).await {
                Ok(lookup) => lookup,
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
                Err(e) => return Err(e.to_string()),
            };
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }
}

/// A reqwest client trusting the lab CA, with the collector's name pinned to its lab address
/// (the production client resolves through strictmx-resolve instead).
fn lab_client(lab: &Lab) -> anyhow::Result<reqwest::Client> {
    let host = "reports.tlsrpt.test";
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(lab.ca_bundle())?;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(host, SocketAddr::new(lab.addr(host)?, 443))
        .no_proxy()
        .build()?)
}

use rustls::pki_types::pem::PemObject;

fn policy(kind: PolicyType, domain: &str, mx: &str) -> ReportPolicy {
    let policy_string = match kind {
        PolicyType::Sts => vec![
            "version: STSv1".to_owned(),
            "mode: enforce".to_owned(),
            format!("mx: {mx}"),
            "max_age: 86400".to_owned(),
        ],
        PolicyType::Tlsa => vec!["3 1 1 0123456789abcdef".to_owned()],
        PolicyType::NoPolicyFound => Vec::new(),
    };
    ReportPolicy {
        policy_type: kind,
        policy_string,
        policy_domain: domain.to_owned(),
        mx_host: vec![mx.to_owned()],
    }
}

fn session(kind: PolicyType, domain: &str, failure: Option<ResultType>) -> SessionResult {
    let mx = format!("mx.{domain}");
    SessionResult {
        report_domain: domain.to_owned(),
        policy: policy(kind, domain, &mx),
        failure: failure.map(|result_type| SessionFailure {
            result_type,
            sending_mta_ip: Some(IpAddr::from([127, 0, 0, 1])),
            receiving_mx_hostname: Some(mx.clone()),
            receiving_mx_helo: Some(mx.clone()),
            receiving_ip: Some(IpAddr::from([127, 77, 1, 20])),
            additional_information: None,
            failure_reason_code: Some("lab".into()),
        }),
    }
}

/// (domain, policy type, successes, failures with their result type).
fn scenario() -> Vec<(&'static str, PolicyType, u64, Vec<ResultType>)> {
    vec![
        (
            "sts-enforce.test",
            PolicyType::Sts,
            3,
            vec![ResultType::CertificateHostMismatch],
        ),
        (
            "sts-enforce-badcert.test",
            PolicyType::Sts,
            0,
            vec![ResultType::CertificateExpired; 2],
        ),
        ("dane-ok.test", PolicyType::Tlsa, 2, vec![]),
        (
            "dane-mismatch.test",
            PolicyType::Tlsa,
            0,
            vec![ResultType::ValidationFailure],
        ),
        (
            "sts-testing.test",
            PolicyType::Sts,
            1,
            vec![ResultType::CertificateNotTrusted],
        ),
    ]
}

fn gunzip(bytes: &[u8]) -> anyhow::Result<Value> {
    let mut json = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut json)?;
    Ok(serde_json::from_str(&json)?)
}

/// Checks `report` with the Python `jsonschema` package (installed by `tests/lab/up`) against
/// the checked-in schema.
fn python_schema_check(report: &Value) -> anyhow::Result<()> {
    let probe = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status();
    ensure!(
        probe.is_ok_and(|s| s.success()),
        "python3 cannot import jsonschema: run tests/lab/up, which installs it"
    );
    let script = "import json,sys,jsonschema\n\
                  schema=json.loads(sys.argv[1])\n\
                  jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(json.load(sys.stdin))";
    let mut child = Command::new("python3")
        .args(["-c", script, SCHEMA])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("python stdin")?
        .write_all(report.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "jsonschema rejects the report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn check_counts(report: &Value, domain: &str) -> anyhow::Result<()> {
    let (_, _, ok, failures) = scenario()
        .into_iter()
        .find(|(d, ..)| *d == domain)
        .context("domain of the scenario")?;
    let policy = &report["policies"][0];
    ensure!(
        report["policies"].as_array().map(Vec::len) == Some(1),
        "one policy: {report}"
    );
    ensure!(policy["policy"]["policy-domain"] == domain);
    ensure!(
        policy["summary"]["total-successful-session-count"] == ok,
        "{report}"
    );
    ensure!(
        policy["summary"]["total-failure-session-count"] == failures.len() as u64,
        "{report}"
    );
    if let Some(first) = failures.first() {
        let detail = &policy["failure-details"][0];
        ensure!(detail["result-type"] == first.as_str(), "{report}");
        ensure!(
            detail["failed-session-count"] == failures.len() as u64,
            "{report}"
        );
        ensure!(
            detail["receiving-mx-hostname"] == format!("mx.{domain}"),
            "{report}"
        );
        ensure!(detail["sending-mta-ip"] == "127.0.0.1", "{report}");
    }
    Ok(())
}

/// The base64 attachment of a report mail, decoded.
fn attachment(body: &str) -> anyhow::Result<Vec<u8>> {
    let start = body
        .find("Content-Type: application/tlsrpt+gzip")
        .context("no application/tlsrpt+gzip part")?;
    let part = &body[start..];
    let data_start = part.find("\r\n\r\n").context("part without body")? + 4;
    let data: String = part[data_start..]
        .lines()
        .take_while(|line| !line.starts_with("--"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| anyhow::anyhow!("attachment is not base64: {e}"))
}

#[tokio::test]
async fn reports_for_the_lab_domains_reach_the_https_collector_and_our_queue() -> anyhow::Result<()>
{
    let lab = Lab::get()?;
    let dir = tempfile::tempdir()?;
    let spool = Spool::open(&SpoolSettings {
        data_dir: dir.path().join("spool"),
        ..SpoolSettings::default()
    })?;
    // A submitter name of our own, so the shared collector's records can be told apart.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let submitter = format!("t{}-{nanos}.relay.test", std::process::id());
    let settings = TlsrptSettings {
        enabled: true,
        organization_name: "strictmx lab".into(),
        contact_info: "tlsrpt-contact@relay.test".into(),
        submitter: submitter.clone(),
        mail_from: "tlsrpt-reports@relay.test".into(),
        exclude_domains: vec!["excluded.test".into()],
        https_attempts: 2,
        https_backoff: Duration::from_millis(50),
        https_timeout: Duration::from_secs(10),
        ..TlsrptSettings::default()
    };

    let now = SystemTime::now();
    let day = Day::of(now).previous();
    let yesterday = now - Duration::from_secs(86_400);
    let shutdown = CancellationToken::new();
    let (recorder, task) = Recorder::start(
        spool.clone(),
        settings.exclude_domains.clone(),
        shutdown.clone(),
    );
    for (domain, kind, ok, failures) in scenario() {
        for _ in 0..ok {
            recorder.record_at(&[session(kind, domain, None)], yesterday);
        }
        for failure in failures {
            recorder.record_at(&[session(kind, domain, Some(failure))], yesterday);
        }
    }
    recorder.record_at(
        &[session(PolicyType::Sts, "excluded.test", None)],
        yesterday,
    );
    recorder.flush().await;
    shutdown.cancel();
    task.await?;

    let reporter = Reporter::new(
        spool.clone(),
        settings,
        Arc::new(LabTxt::new(lab.resolver())?),
        Arc::new(lab_client(&lab)?) as Arc<dyn ReportPoster>,
    );
    let outcomes = reporter.send_day(day, now).await?;
    let by_domain: BTreeMap<_, _> = outcomes.iter().map(|o| (o.domain.as_str(), o)).collect();
    ensure!(
        by_domain.len() == 5,
        "one outcome per lab domain, none for excluded.test: {outcomes:?}"
    );
    for outcome in &outcomes {
        ensure!(
            outcome.skipped.is_none() && outcome.failed.is_empty(),
            "{outcome:?}"
        );
    }

    // https: dane-ok, dane-mismatch, sts-testing.
    let mut https_domains = Vec::new();
    for request in lab.tlsrpt_https_reports()? {
        let Ok(report) = gunzip(&request.body()?) else {
            continue;
        };
        let Some(domain) = report["report-id"].as_str().and_then(|id| {
            by_domain
                .values()
                .find(|o| o.report_id.as_deref() == Some(id))
                .map(|o| o.domain.clone())
        }) else {
            continue;
        };
        ensure!(
            request.method == "POST" && request.path == "/tlsrpt",
            "{request:?}"
        );
        ensure!(
            request.headers.get("content-type").map(String::as_str)
                == Some("application/tlsrpt+gzip"),
            "{request:?}"
        );
        ensure!(report["date-range"]["start-datetime"] == day.start_datetime());
        ensure!(report["date-range"]["end-datetime"] == day.end_datetime());
        ensure!(report["organization-name"] == "strictmx lab");
        check_counts(&report, &domain)?;
        python_schema_check(&report)?;
        https_domains.push(domain);
    }
    https_domains.sort();
    ensure!(
        https_domains == ["dane-mismatch.test", "dane-ok.test", "sts-testing.test"],
        "{https_domains:?}"
    );

    // mailto: sts-enforce, sts-enforce-badcert, sts-testing, queued as report mails.
    let mut mailto_domains = Vec::new();
    for entry in spool.list()? {
        let message = spool.message(entry.id)?.context("listed message")?;
        ensure!(message.envelope.kind == MessageKind::TlsReport);
        ensure!(message.envelope.mail_from == "tlsrpt-reports@relay.test");
        ensure!(entry.recipients.len() == 1 && entry.recipients[0].address == lab.tlsrpt().mailto);
        let body = String::from_utf8(spool.body(entry.id)?)?;
        // RFC 5322 §2.2.3: unfold before reading header values.
        let head = body
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n ", " ")
            .replace("\r\n\t", "\t");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
        };
        let domain = header("TLS-Report-Domain").context("TLS-Report-Domain header")?;
        ensure!(header("TLS-Report-Submitter").as_deref() == Some(submitter.as_str()));
        ensure!(header("TLS-Required").as_deref() == Some("No"));
        let report_id = by_domain[domain.as_str()]
            .report_id
            .clone()
            .context("report id")?;
        let subject = header("Subject").context("Subject")?;
        ensure!(
            subject
                == format!(
                    "Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}@{submitter}>"
                ),
            "{subject}"
        );
        ensure!(
            body.contains("multipart/report") && body.contains("report-type=\"tlsrpt\""),
            "{body}"
        );
        let unique = report_id.rsplit('_').next().unwrap_or_default();
        let file = format!(
            "{submitter}!{domain}!{}!{}!{unique}.json.gz",
            day.start_secs(),
            day.end_secs()
        );
        ensure!(
            body.contains(&format!("filename=\"{file}\"")),
            "attachment named {file}: {body}"
        );
        let report = gunzip(&attachment(&body)?)?;
        check_counts(&report, &domain)?;
        python_schema_check(&report)?;
        mailto_domains.push(domain);
    }
    mailto_domains.sort();
    ensure!(
        mailto_domains
            == [
                "sts-enforce-badcert.test",
                "sts-enforce.test",
                "sts-testing.test"
            ],
        "{mailto_domains:?}"
    );

    // A second run sends nothing: the day is marked sent per domain.
    for outcome in reporter.send_day(day, now).await? {
        if outcome.skipped.as_deref() != Some("already sent") {
            bail!("sent twice: {outcome:?}");
        }
    }
    Ok(())
}
