//! TLSRPT end to end (RFC 8460): the real binary delivers under MTA-STS and DANE in the lab on
//! one day, then `strictmx tlsrpt send` for that day makes the lab's collectors receive reports
//! whose counts and failure details match the attempts. Needs the lab (`tests/lab/up`), which
//! also installs libfaketime: the deliveries run with the server's clock set one day back, so
//! that their day is over when the reports are sent.
//!
//! DNSSEC is taken from the lab's validating resolver (`trust-resolver`) here, because the
//! server's own validation would judge the lab's fresh signatures by the shifted clock. The lab's
//! collector is on 127.77.3.1 with a lab certificate: `[tlsrpt]` opts in to both
//! (`insecure_https_allow_networks`, `https_extra_ca_file`); without them the report client
//! refuses it.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use mail_parser::MimeHeaders as _;
use serde_json::Value;
use strictmx_test_support::lab::{Lab, unique_rcpt, wait_for};
use strictmx_test_support::relay::{Relay, TestDir};

use crate::{bin, repo_root, submit};

const WAIT: Duration = Duration::from_secs(60);
pub(crate) const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

pub(crate) fn config(lab: &Lab, submitter: &str) -> String {
    format!(
        "[dns]\nnameservers = [\"{resolver}\"]\ntimeout = \"3s\"\ndnssec = \"trust-resolver\"\n\n\
         [delivery]\nextra_ca_file = \"{ca}\"\n# The lab's MX hosts are on loopback.\nnever_deliver_to = []\n\n\
         [retry]\ninitial = \"1h\"\n\n\
         [tlsrpt]\nenabled = true\norganization_name = \"{submitter}\"\n\
         contact_info = \"mailto:pm@relay.test\"\nsubmitter = \"{submitter}\"\n\
         mail_from = \"tlsrpt@relay.test\"\n\
         https_extra_ca_file = \"{ca}\"\ninsecure_https_allow_networks = [\"127.77.0.0/16\"]\n",
        resolver = lab.resolver(),
        ca = lab.ca_bundle().display(),
    )
}

/// The JSON inside a gzip body; `None` for anything else (the collectors are shared).
pub(crate) fn gunzip_json(bytes: &[u8]) -> Option<Value> {
    let mut json = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut json)
        .ok()?;
    serde_json::from_str(&json).ok()
}

/// Runs `python3 -c script args...` with `input` on standard input; its output.
fn python(script: &str, args: &[&std::ffi::OsStr], input: &[u8]) -> std::process::Output {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("input written");
    child.wait_with_output().expect("python3 finishes")
}

/// Validates `report` against the project's RFC 8460 schema with Python's `jsonschema`
/// (installed by `tests/lab/up`), independently of the relay's own check.
fn assert_schema_valid(report: &Value) {
    let schema = repo_root().join("crates/tlsrpt/schema/tlsrpt-report.schema.json");
    let script = "import json,sys,jsonschema\n\
                  schema=json.load(open(sys.argv[1]))\n\
                  jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(json.load(sys.stdin))";
    let out = python(script, &[schema.as_os_str()], report.to_string().as_bytes());
    assert!(
        out.status.success(),
        "jsonschema rejects {report}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one policy of `report`, with its counts and failure result types.
pub(crate) fn summary(report: &Value) -> (String, u64, u64, Vec<String>) {
    let policies = report["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 1, "{report}");
    let policy = &policies[0];
    let types = policy["failure-details"]
        .as_array()
        .map(|details| {
            details
                .iter()
                .map(|d| d["result-type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (
        policy["policy"]["policy-type"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        policy["summary"]["total-successful-session-count"]
            .as_u64()
            .expect("success count"),
        policy["summary"]["total-failure-session-count"]
            .as_u64()
            .expect("failure count"),
        types,
    )
}

/// A report as it travelled: the whole mail (`mailto:`) or the gzip body POSTed (`https:`).
#[derive(Clone, Copy)]
enum Wire<'a> {
    Mail(&'a [u8]),
    Https(&'a [u8]),
}

/// What a consumer must read back from a report, per policy: (policy domain, policy type,
/// successful sessions, failed sessions, failure result types sorted).
type Reading = Vec<(String, String, u64, u64, Vec<String>)>;

/// The reading of our own JSON, the report strictmx meant to send.
fn reading_of(report: &Value) -> Reading {
    let mut reading: Reading = report["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|policy| {
            let mut types: Vec<String> = policy["failure-details"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| d["result-type"].as_str().unwrap_or_default().to_owned())
                .collect();
            types.sort();
            (
                policy["policy"]["policy-domain"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                policy["policy"]["policy-type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                policy["summary"]["total-successful-session-count"]
                    .as_u64()
                    .unwrap_or(0),
                policy["summary"]["total-failure-session-count"]
                    .as_u64()
                    .unwrap_or(0),
                types,
            )
        })
        .collect();
    reading.sort();
    reading
}

/// The report as parsedmarc (PyPI, installed by `tests/lab/up`) reads what travelled: the whole
/// mail through `parse_report_email`, the POSTed body through `parse_report_file`. Offline, so
/// it looks nothing up.
fn parsedmarc_reading(wire: Wire<'_>) -> Reading {
    let (mode, bytes) = match wire {
        Wire::Mail(bytes) => ("mail", bytes),
        Wire::Https(bytes) => ("https", bytes),
    };
    let script = "import json,sys,parsedmarc\n\
                  data=sys.stdin.buffer.read()\n\
                  parse=parsedmarc.parse_report_email if sys.argv[1]=='mail' else parsedmarc.parse_report_file\n\
                  parsed=parse(data,offline=True,always_use_local_files=True)\n\
                  assert parsed['report_type']=='smtp_tls', parsed['report_type']\n\
                  out=[[p['policy_domain'],p['policy_type'],p['successful_session_count'],p['failed_session_count'],sorted(d['result_type'] for d in p.get('failure_details',[]))] for p in parsed['report']['policies']]\n\
                  print(json.dumps(out))";
    let out = python(script, &[std::ffi::OsStr::new(mode)], bytes);
    assert!(
        out.status.success(),
        "parsedmarc refuses the {mode} report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reading: Reading = serde_json::from_slice(&out.stdout).expect("parsedmarc's reading");
    reading.sort();
    reading
}

/// The report as the `mail-auth` crate's TLSRPT parser reads what travelled.
fn mail_auth_reading(wire: Wire<'_>) -> Reading {
    let parsed = match wire {
        Wire::Mail(bytes) => mail_auth::report::tlsrpt::TlsReport::parse_rfc5322(bytes, 1 << 20),
        Wire::Https(bytes) => {
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut json)
                .expect("gzip");
            mail_auth::report::tlsrpt::TlsReport::parse_json(&json)
        }
    }
    .unwrap_or_else(|e| panic!("mail-auth refuses the report: {e:?}"));
    let mut reading: Reading = parsed
        .policies
        .iter()
        .map(|policy| {
            let mut types: Vec<String> = policy
                .failure_details
                .iter()
                .map(|d| json_name(&d.result_type))
                .collect();
            types.sort();
            (
                policy.policy.policy_domain.clone(),
                json_name(&policy.policy.policy_type),
                u64::from(policy.summary.total_success),
                u64::from(policy.summary.total_failure),
                types,
            )
        })
        .collect();
    reading.sort();
    reading
}

/// The RFC's JSON name of a `mail-auth` enum value (its serialisation).
fn json_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// RFC 8460 §4 and §5 (issue 15, point 8): two parsers nobody on this project wrote read the
/// report that travelled exactly as strictmx meant it: the same policy domains, policy types,
/// session counts and result types.
fn assert_consumers_agree(wire: Wire<'_>, report: &Value) {
    let ours = reading_of(report);
    assert_eq!(parsedmarc_reading(wire), ours, "parsedmarc: {report}");
    assert_eq!(mail_auth_reading(wire), ours, "mail-auth: {report}");
}

fn check_report(report: &Value, domain: &str, day: &str, submitter: &str) {
    assert_schema_valid(report);
    assert_eq!(report["organization-name"], submitter);
    assert_eq!(
        report["date-range"]["start-datetime"],
        format!("{day}T00:00:00Z")
    );
    assert_eq!(
        report["date-range"]["end-datetime"],
        format!("{day}T23:59:59Z")
    );
    let (policy_type, ok, failed, types) = summary(report);
    let expected_type = if domain.starts_with("dane") {
        "tlsa"
    } else {
        "sts"
    };
    assert_eq!(policy_type, expected_type, "{domain}: {report}");
    match domain {
        "sts-enforce.test" | "dane-ok.test" => {
            assert_eq!((ok, failed), (1, 0), "{domain}: {report}");
        }
        "sts-enforce-badcert.test" => {
            assert_eq!(ok, 0, "{report}");
            assert!(failed >= 1, "{report}");
            assert_eq!(types, ["certificate-host-mismatch"], "{report}");
        }
        "dane-mismatch.test" => {
            assert_eq!(ok, 0, "{report}");
            assert!(failed >= 1, "{report}");
            assert_eq!(types, ["validation-failure"], "{report}");
        }
        // RFC 8461 §5: delivered under `testing`, but reported as enforce would have judged.
        "sts-testing.test" => {
            assert_eq!((ok, failed), (0, 1), "{report}");
            assert_eq!(types, ["certificate-expired"], "{report}");
        }
        other => panic!("unexpected report domain {other}"),
    }
}

/// The `mailto:` reports for `submitter` that reached the lab's collector, by report domain.
fn mailto_reports(lab: &Lab, submitter: &str) -> anyhow::Result<Vec<(String, Value, Vec<u8>)>> {
    let mut found = Vec::new();
    for received in lab.received("mx.tlsrpt.test")? {
        let body = received.body()?;
        let parsed = mail_parser::MessageParser::default()
            .parse(&body)
            .expect("a report mail parses");
        let subject = parsed.subject().unwrap_or_default().to_owned();
        if !subject.contains(&format!("Submitter: {submitter} ")) {
            continue;
        }
        let header = |name: &str| {
            parsed
                .header_raw(name)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let domain = header("TLS-Report-Domain");
        // RFC 8460 §5.3: the subject line; §3 / RFC 8689 §5: report mail must not need TLS.
        assert!(
            subject.starts_with(&format!("Report Domain: {domain} ")),
            "{subject}"
        );
        assert_eq!(header("TLS-Report-Submitter"), submitter);
        assert_eq!(header("TLS-Required"), "No");
        let content_type = header("Content-Type");
        assert!(
            content_type.starts_with("multipart/report"),
            "{content_type}"
        );
        assert!(
            content_type.contains("report-type=\"tlsrpt\""),
            "{content_type}"
        );
        let attachment = parsed.attachment(0).expect("the report is attached");
        let name = attachment.attachment_name().unwrap_or_default();
        // RFC 8460 §5.1: sender!policy-domain!begin!end[!id].json.gz
        let parts: Vec<&str> = name.split('!').collect();
        assert!(parts.len() >= 4, "{name}");
        assert_eq!((parts[0], parts[1]), (submitter, domain.as_str()), "{name}");
        assert!(name.ends_with(".json.gz"), "{name}");
        let report = gunzip_json(attachment.contents()).expect("the attachment is gzip JSON");
        found.push((domain, report, body.clone()));
    }
    Ok(found)
}

#[tokio::test]
async fn reports_for_a_closed_day_reach_every_rua_with_counts_matching_the_deliveries() {
    let lab = Lab::get().unwrap();
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "libfaketime missing: run tests/lab/up, which installs it"
    );
    let dir = TestDir::new("tlsrpt-e2e").unwrap();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let submitter = format!("e2e-{}-{nanos}.relay.test", std::process::id());
    let yesterday_env = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", "-1d"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut relay =
        Relay::start_with_env(bin(), dir.path(), &config(&lab, &submitter), &yesterday_env)
            .await
            .unwrap();
    let day = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(86_400))
        .to_string()[..10]
        .to_owned();

    let deliveries = [
        ("sts-enforce.test", "delivered"),
        ("sts-enforce-badcert.test", "deferred"),
        ("sts-testing.test", "delivered"),
        ("dane-ok.test", "delivered"),
        ("dane-mismatch.test", "deferred"),
    ];
    for (domain, _) in deliveries {
        submit(&relay, &unique_rcpt(domain)).await;
    }
    for (domain, outcome) in deliveries {
        relay
            .wait_log(WAIT, |v| {
                v["message"] == "delivery attempt"
                    && v["domain"] == domain
                    && v["outcome"] == outcome
            })
            .await
            .unwrap_or_else(|e| panic!("{domain} {outcome}: {e}"));
    }
    // SIGTERM: the recorder writes what it holds before the server exits.
    assert_eq!(relay.terminate().await.unwrap(), Some(0));

    // Back to the real clock: the deliveries' day is over now.
    relay.set_env(&[]);
    relay.restart().await.unwrap();
    let out = relay.cli(&["tlsrpt", "send", "--date", &day]).unwrap();
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // https: dane-ok, dane-mismatch and sts-testing publish an https rua.
    let posted = wait_for(WAIT, || {
        let ours: Vec<_> = lab
            .tlsrpt_https_reports()?
            .into_iter()
            .filter_map(|request| {
                let report = gunzip_json(&request.body().ok()?)?;
                (report["organization-name"] == submitter.as_str()).then_some((request, report))
            })
            .collect();
        Ok((ours.len() >= 3).then_some(ours))
    })
    .await
    .unwrap();
    let mut https_domains = Vec::new();
    for (request, report) in &posted {
        assert_eq!(request.method, "POST");
        assert_consumers_agree(Wire::Https(&request.body().unwrap()), report);
        assert_eq!(
            request.headers.get("content-type").map(String::as_str),
            Some("application/tlsrpt+gzip")
        );
        let domain = report["policies"][0]["policy"]["policy-domain"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // For DANE the policy domain is the TLSA base domain, the MX host under the domain.
        let report_domain = ["dane-mismatch.test", "dane-ok.test", "sts-testing.test"]
            .into_iter()
            .find(|d| domain == *d || domain.ends_with(&format!(".{d}")))
            .unwrap_or_else(|| panic!("unexpected policy domain {domain}"))
            .to_owned();
        check_report(report, &report_domain, &day, &submitter);
        https_domains.push(report_domain);
    }
    https_domains.sort();
    assert_eq!(
        https_domains,
        ["dane-mismatch.test", "dane-ok.test", "sts-testing.test"]
    );

    // mailto: sts-enforce, sts-enforce-badcert and sts-testing, as mail through our own queue.
    let mailed = wait_for(WAIT, || {
        let ours = mailto_reports(&lab, &submitter)?;
        Ok((ours.len() >= 3).then_some(ours))
    })
    .await
    .unwrap();
    let mut mail_domains = Vec::new();
    for (domain, report, mail) in &mailed {
        check_report(report, domain, &day, &submitter);
        assert_consumers_agree(Wire::Mail(mail), report);
        mail_domains.push(domain.clone());
    }
    mail_domains.sort();
    assert_eq!(
        mail_domains,
        [
            "sts-enforce-badcert.test",
            "sts-enforce.test",
            "sts-testing.test"
        ]
    );

    // A second send for the same day sends nothing new.
    let again = relay.cli(&["tlsrpt", "send", "--date", &day]).unwrap();
    assert!(again.status.success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let total = lab
        .tlsrpt_https_reports()
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.body()
                .ok()
                .and_then(|b| gunzip_json(&b))
                .is_some_and(|report| report["organization-name"] == submitter.as_str())
        })
        .count();
    assert_eq!(total, 3, "a day's reports are sent once");

    // RFC 8460 §3: the report mail went through our own queue today, to tlsrpt.test's MX; a
    // session of a report is never counted, or reports would report on themselves.
    assert_eq!(relay.terminate().await.unwrap(), Some(0));
    relay.restart().await.unwrap();
    let today = humantime::format_rfc3339_seconds(SystemTime::now()).to_string()[..10].to_owned();
    let own = relay
        .cli(&[
            "tlsrpt",
            "preview",
            "--date",
            &today,
            "--domain",
            "tlsrpt.test",
            "--json",
        ])
        .unwrap();
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let own: Value = serde_json::from_slice(&own.stdout).expect("preview JSON");
    assert_eq!(
        own,
        serde_json::json!([]),
        "the report mail was counted: {own}"
    );
}
