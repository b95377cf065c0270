//! Report JSON against the RFC 8460 §4.5 example, aggregation through the spool, the schema
//! check, and the §5.1 file name and §5.3 subject.

use std::net::IpAddr;

use serde_json::Value;
use strictmx_policy::report::{
    PolicyType, ReportPolicy, ResultType, SessionFailure, SessionResult,
};
use strictmx_spool::{Spool, SpoolSettings, TlsrptCounters, TlsrptDetailCount};

use super::*;
use crate::recorder::{MAX_DETAIL_ROWS, OVERFLOW_REASON, session_row};
use crate::schema;

const RFC_EXAMPLE: &str = include_str!("../../tests/fixtures/rfc8460-example.json");

fn company_x() -> Submitter {
    Submitter {
        organization_name: "Company-X".into(),
        contact_info: "sts-reporting@company-x.example".into(),
        domain: "mail.company-x.example".into(),
    }
}

fn detail(fields: &[(&str, &str)], count: u64) -> TlsrptDetailCount {
    let mut stored = StoredDetail {
        result_type: String::new(),
        sending_mta_ip: None,
        receiving_mx_hostname: None,
        receiving_mx_helo: None,
        receiving_ip: None,
        additional_information: None,
        failure_reason_code: None,
    };
    for (name, value) in fields {
        let text = (*value).to_owned();
        let value = Some(text.clone());
        match *name {
            "result-type" => stored.result_type = text,
            "sending-mta-ip" => stored.sending_mta_ip = value,
            "receiving-mx-hostname" => stored.receiving_mx_hostname = value,
            "receiving-ip" => stored.receiving_ip = value,
            "additional-information" => stored.additional_information = value,
            "failure-reason-code" => stored.failure_reason_code = value,
            other => panic!("fixture field {other}"),
        }
    }
    TlsrptDetailCount {
        detail: serde_json::to_string(&stored).unwrap(),
        count,
    }
}

/// The counters the RFC's example report would come from.
fn rfc_example_counters() -> Vec<TlsrptCounters> {
    let policy = StoredPolicy {
        policy_type: "sts".into(),
        policy_string: [
            "version: STSv1",
            "mode: testing",
            "mx: *.mail.company-y.example",
            "max_age: 86400",
        ]
        .map(String::from)
        .to_vec(),
        policy_domain: "company-y.example".into(),
        mx_host: vec!["*.mail.company-y.example".into()],
    };
    vec![TlsrptCounters {
        day: Day::parse("2016-04-01").unwrap().0,
        report_domain: "company-y.example".into(),
        policy: policy.encode(),
        successes: 5326,
        failures: 303,
        details: vec![
            detail(
                &[
                    ("result-type", "certificate-expired"),
                    ("sending-mta-ip", "2001:db8:abcd:0012::1"),
                    ("receiving-mx-hostname", "mx1.mail.company-y.example"),
                ],
                100,
            ),
            detail(
                &[
                    ("result-type", "starttls-not-supported"),
                    ("sending-mta-ip", "2001:db8:abcd:0013::1"),
                    ("receiving-mx-hostname", "mx2.mail.company-y.example"),
                    ("receiving-ip", "203.0.113.56"),
                    (
                        "additional-information",
                        "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported",
                    ),
                ],
                200,
            ),
            detail(
                &[
                    ("result-type", "validation-failure"),
                    ("sending-mta-ip", "198.51.100.62"),
                    ("receiving-ip", "203.0.113.58"),
                    ("receiving-mx-hostname", "mx-backup.mail.company-y.example"),
                    (
                        "failure-reason-code",
                        "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                    ),
                ],
                3,
            ),
        ],
    }]
}

fn sorted_details(mut report: Value) -> Value {
    if let Some(details) = report["policies"][0]["failure-details"].as_array_mut() {
        details.sort_by_key(|d| d["result-type"].as_str().unwrap_or_default().to_owned());
    }
    report
}

#[test]
fn the_report_built_from_the_rfc_example_counters_is_the_rfc_8460_4_5_example() {
    let day = Day::parse("2016-04-01").unwrap();
    let mut report = build_report(
        &company_x(),
        day,
        "company-y.example",
        &rfc_example_counters(),
    )
    .unwrap();
    report.report_id = "5065427c-23d3-47ca-b6e0-946ea0e8c4be".into();
    let ours = sorted_details(serde_json::to_value(&report).unwrap());
    let mut rfc = sorted_details(serde_json::from_str(RFC_EXAMPLE).unwrap());
    // The one difference, on purpose: `mx-host` is always an array (see `MxHost`).
    let pattern = rfc["policies"][0]["policy"]["mx-host"].take();
    rfc["policies"][0]["policy"]["mx-host"] = Value::Array(vec![pattern]);
    assert_eq!(ours, rfc);
}

// RFC 8460 §4.4 read by a parser this project did not write (mail-auth's TLSRPT parser): the
// same organisation, dates, policies, counts and result types come back.
#[test]
fn a_report_reads_back_the_same_through_mail_auth() {
    use mail_auth::report::tlsrpt::{PolicyType as TheirPolicyType, TlsReport};
    let day = Day::parse("2016-04-01").unwrap();
    let report = build_report(
        &company_x(),
        day,
        "company-y.example",
        &rfc_example_counters(),
    )
    .unwrap();
    let json = serde_json::to_vec(&report).unwrap();
    let theirs = TlsReport::parse_json(&json).expect("mail-auth reads the report");
    assert_eq!(
        theirs.organization_name.as_deref(),
        Some(report.organization_name.as_str())
    );
    assert_eq!(theirs.report_id, report.report_id);
    assert_eq!(theirs.policies.len(), report.policies.len());
    for (their, ours) in theirs.policies.iter().zip(&report.policies) {
        assert_eq!(their.policy.policy_domain, ours.policy.policy_domain);
        assert_eq!(
            matches!(their.policy.policy_type, TheirPolicyType::Sts),
            ours.policy.policy_type == "sts"
        );
        assert_eq!(
            their.summary.total_success as u64,
            ours.summary.total_successful_session_count
        );
        assert_eq!(
            their.summary.total_failure as u64,
            ours.summary.total_failure_session_count
        );
        assert_eq!(their.failure_details.len(), ours.failure_details.len());
        let mut their_types: Vec<String> = their
            .failure_details
            .iter()
            .map(|d| {
                serde_json::to_value(d.result_type)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let mut our_types: Vec<String> = ours
            .failure_details
            .iter()
            .map(|d| d.result_type.clone())
            .collect();
        their_types.sort();
        our_types.sort();
        assert_eq!(their_types, our_types);
        assert_eq!(their.policy.mx_host, ["*.mail.company-y.example"]);
    }
}

#[test]
fn the_rfc_example_passes_the_schema_and_reads_back_as_a_report() {
    let rfc: Value = serde_json::from_str(RFC_EXAMPLE).unwrap();
    assert_eq!(schema::validate(&rfc), Ok(()));
    let report: Report = serde_json::from_value(rfc.clone()).unwrap();
    assert_eq!(serde_json::to_value(&report).unwrap(), rfc);
}

#[test]
fn the_schema_check_rejects_missing_required_fields_nulls_and_unknown_result_types() {
    let rfc: Value = serde_json::from_str(RFC_EXAMPLE).unwrap();
    let mut no_org = rfc.clone();
    no_org.as_object_mut().unwrap().remove("organization-name");
    let mut no_summary_count = rfc.clone();
    no_summary_count["policies"][0]["summary"]
        .as_object_mut()
        .unwrap()
        .remove("total-failure-session-count");
    let mut null_ip = rfc.clone();
    null_ip["policies"][0]["failure-details"][0]["receiving-ip"] = Value::Null;
    let mut bad_type = rfc.clone();
    bad_type["policies"][0]["failure-details"][0]["result-type"] = "tls-broken".into();
    let mut bad_date = rfc;
    bad_date["date-range"]["end-datetime"] = "2016-04-01".into();
    let cases = [
        (no_org, "$: required field organization-name is missing"),
        (
            no_summary_count,
            "$.policies[0].summary: required field total-failure-session-count is missing",
        ),
        (
            null_ip,
            "$.policies[0].failure-details[0].receiving-ip: expected type \"string\", found null",
        ),
        (
            bad_type,
            "$.policies[0].failure-details[0].result-type: \"tls-broken\" is not one of",
        ),
        (
            bad_date,
            "$.date-range.end-datetime: \"2016-04-01\" is not an RFC 3339 date-time",
        ),
    ];
    for (report, expected) in cases {
        let errors = schema::validate(&report).unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected}: {errors:?}"
        );
    }
}

#[test]
fn rfc_8460_5_1_file_name_and_5_3_subject() {
    let day = Day::parse("2016-04-01").unwrap();
    assert_eq!(
        file_name("mail.sender.example.com", "example.net", day, "0011"),
        "mail.sender.example.com!example.net!1459468800!1459555199!0011.json.gz"
    );
    assert_eq!(
        subject(
            "example.net",
            "mail.sender.example.com",
            "2016-04-01_example.net_00ff"
        ),
        "Report Domain: example.net Submitter: mail.sender.example.com \
         Report-ID: <2016-04-01_example.net_00ff@mail.sender.example.com>"
    );
}

#[test]
fn report_ids_are_stable_per_report_and_differ_between_domains_days_and_submitters() {
    let day = Day(100);
    let id = report_id("a.example", day, "x.test");
    assert_eq!(id, report_id("a.example", day, "x.test"));
    assert!(id.starts_with("1970-04-11_x.test_"), "{id}");
    assert!(!id.contains(':') && !id.contains('@'));
    let others = [
        report_id("b.example", day, "x.test"),
        report_id("a.example", Day(101), "x.test"),
        report_id("a.example", day, "y.test"),
    ];
    assert!(!others.contains(&id));
}

fn result(domain: &str, failure: Option<(ResultType, &str)>) -> SessionResult {
    SessionResult {
        report_domain: domain.into(),
        policy: ReportPolicy {
            policy_type: PolicyType::Sts,
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
            policy_domain: domain.into(),
            mx_host: vec!["mx.example.test".into()],
        },
        failure: failure.map(|(result_type, ip)| SessionFailure {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: Some("mx.example.test".into()),
            receiving_mx_helo: None,
            receiving_ip: Some(ip.parse::<IpAddr>().unwrap()),
            additional_information: None,
            failure_reason_code: None,
        }),
    }
}

#[tokio::test]
async fn sessions_aggregate_into_one_policy_with_counted_and_bounded_details() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&SpoolSettings {
        data_dir: dir.path().join("spool"),
        ..SpoolSettings::default()
    })
    .unwrap();
    let day = Day(20_000);
    let mut rows = vec![
        session_row(day, &result("Example.TEST.", None)),
        session_row(day, &result("example.test", None)),
        session_row(
            day,
            &result(
                "example.test",
                Some((ResultType::CertificateExpired, "192.0.2.1")),
            ),
        ),
        session_row(
            day,
            &result(
                "example.test",
                Some((ResultType::CertificateExpired, "192.0.2.1")),
            ),
        ),
    ];
    // One more distinct failure than the bound allows: it lands in the overflow row.
    for i in 0..MAX_DETAIL_ROWS {
        let ip = format!("198.51.100.{}", i % 250);
        let ip = if i < 250 {
            ip
        } else {
            format!("203.0.113.{i}")
        };
        rows.push(session_row(
            day,
            &result(
                "example.test",
                Some((ResultType::StarttlsNotSupported, &ip)),
            ),
        ));
    }
    spool.tlsrpt_record(rows, MAX_DETAIL_ROWS).await.unwrap();
    let counters = spool.tlsrpt_day(day.0).unwrap();
    let report = build_report(&company_x(), day, "example.test", &counters).unwrap();
    assert_eq!(report.policies.len(), 1);
    let policy = &report.policies[0];
    assert_eq!(policy.summary.total_successful_session_count, 2);
    assert_eq!(
        policy.summary.total_failure_session_count,
        2 + u64::from(MAX_DETAIL_ROWS)
    );
    assert_eq!(policy.failure_details.len(), MAX_DETAIL_ROWS as usize + 1);
    let expired = &policy.failure_details[0];
    assert_eq!(
        (expired.result_type.as_str(), expired.failed_session_count),
        ("certificate-expired", 2)
    );
    let overflow: Vec<_> = policy
        .failure_details
        .iter()
        .filter(|d| d.failure_reason_code.as_deref() == Some(OVERFLOW_REASON))
        .collect();
    assert_eq!(overflow.len(), 1);
    assert_eq!(overflow[0].result_type, "starttls-not-supported");
    assert_eq!(overflow[0].receiving_ip, None);
    let total: u64 = policy
        .failure_details
        .iter()
        .map(|d| d.failed_session_count)
        .sum();
    assert_eq!(total, policy.summary.total_failure_session_count);
    assert_eq!(
        schema::validate(&serde_json::to_value(&report).unwrap()),
        Ok(())
    );
}
