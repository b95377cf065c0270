//! The RFC 8460 §4 aggregate report: its JSON model, building it from one day's counters of one
//! report domain, the report id, the §5.1 file name and the §5.3 subject. Counting is left to
//! `recorder`, checking against the schema to `schema`, sending to `send`.

use serde::{Deserialize, Serialize};
use strictmx_spool::TlsrptCounters;

use crate::day::Day;
use crate::recorder::{StoredDetail, StoredPolicy};

/// RFC 8460 §4.4: the report. Optional fields are omitted, never `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    pub start_datetime: String,
    pub end_datetime: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyReport {
    pub policy: PolicyDescription,
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDescription {
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mx_host: Option<MxHost>,
}

/// `mx-host`: RFC 8460 §4.4's example writes one pattern as a string, but consumers read an
/// array: the `mail-auth` crate (Stalwart's parser) accepts only an array of strings and rejects
/// the whole report for a string, and parsers that take both take the array. So strictmx always
/// writes an array, one entry per policy `mx` pattern (docs/tlsrpt.md); reading accepts both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MxHost {
    One(String),
    Several(Vec<String>),
}

impl MxHost {
    fn of(hosts: &[String]) -> Option<MxHost> {
        (!hosts.is_empty()).then(|| MxHost::Several(hosts.to_vec()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    pub result_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_helo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    pub failed_session_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

/// Who we are in reports: `organization-name`, `contact-info` and the submitter domain used in
/// the report id, the file name and the mail headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    pub organization_name: String,
    pub contact_info: String,
    pub domain: String,
}

/// The report for `domain` on `day` from its counters; `None` when none decodes (a damaged or
/// foreign row is logged and left out rather than sent wrong).
pub fn build_report(
    submitter: &Submitter,
    day: Day,
    domain: &str,
    counters: &[TlsrptCounters],
) -> Option<Report> {
    let mut policies: Vec<PolicyReport> = counters
        .iter()
        .filter(|c| c.report_domain == domain)
        .filter_map(policy_report)
        .collect();
    if policies.is_empty() {
        return None;
    }
    policies.sort_by(|a, b| {
        (
            &a.policy.policy_type,
            &a.policy.policy_domain,
            &a.policy.policy_string,
        )
            .cmp(&(
                &b.policy.policy_type,
                &b.policy.policy_domain,
                &b.policy.policy_string,
            ))
    });
    Some(Report {
        organization_name: submitter.organization_name.clone(),
        date_range: DateRange {
            start_datetime: day.start_datetime(),
            end_datetime: day.end_datetime(),
        },
        contact_info: submitter.contact_info.clone(),
        report_id: report_id(&submitter.domain, day, domain),
        policies,
    })
}

fn policy_report(counters: &TlsrptCounters) -> Option<PolicyReport> {
    let policy = match StoredPolicy::decode(&counters.policy) {
        Ok(policy) => policy,
        Err(e) => {
            tracing::error!(domain = %counters.report_domain, error = %e, "undecodable TLSRPT policy row left out of the report");
            return None;
        }
    };
    let mut failure_details: Vec<FailureDetail> = counters
        .details
        .iter()
        .filter_map(|row| match StoredDetail::decode(&row.detail) {
            Ok(detail) => Some(detail.into_report(row.count)),
            Err(e) => {
                tracing::error!(domain = %counters.report_domain, error = %e, "undecodable TLSRPT detail row left out of the report");
                None
            }
        })
        .collect();
    failure_details.sort_by(|a, b| {
        b.failed_session_count
            .cmp(&a.failed_session_count)
            .then_with(|| a.result_type.cmp(&b.result_type))
    });
    Some(PolicyReport {
        policy: PolicyDescription {
            policy_type: policy.policy_type,
            policy_string: policy.policy_string,
            policy_domain: policy.policy_domain,
            mx_host: MxHost::of(&policy.mx_host),
        },
        summary: Summary {
            total_successful_session_count: counters.successes,
            total_failure_session_count: counters.failures,
        },
        failure_details,
    })
}

/// RFC 8460 §4.4 `report-id`: unique per report. Made of the day, the domain and a hash of the
/// submitter, day and domain, so that a preview and the send of the same report agree and two
/// submitters never clash. No `:` or `@`, so that `<id@submitter>` is a valid §5.3 subject id.
pub fn report_id(submitter: &str, day: Day, domain: &str) -> String {
    let seed = format!("{submitter}\n{day}\n{domain}");
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{day}_{domain}_{hash:016x}")
}

/// RFC 8460 §5.1: `sender "!" policy-domain "!" begin-timestamp "!" end-timestamp
/// ["!" unique-id] "." extension`, timestamps in unix seconds, extension `json.gz` (§5.2).
pub fn file_name(submitter: &str, domain: &str, day: Day, unique_id: &str) -> String {
    format!(
        "{submitter}!{domain}!{}!{}!{unique_id}.json.gz",
        day.start_secs(),
        day.end_secs()
    )
}

/// RFC 8460 §5.3: `Report Domain: <domain> Submitter: <submitter> Report-ID: <id-left@id-right>`
/// (the id in message-id form, RFC 5322 §3.6.4).
pub fn subject(domain: &str, submitter: &str, report_id: &str) -> String {
    format!("Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}@{submitter}>")
}

#[cfg(test)]
mod tests;
