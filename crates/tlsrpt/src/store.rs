//! Where the reporter reads counters and keeps its sent marks: the local spool, or (with
//! `[cluster]`) a store shared by several nodes that sums their counters. The shared store is
//! `strictmx-cluster`'s; merging several nodes' counters into what one node would have
//! counted is [`merge_counters`], here, next to the rules that counting follows.

use std::collections::BTreeMap;
use std::fmt;

use strictmx_spool::{Spool, TlsrptCounters, TlsrptDetailCount};

use crate::error::TlsrptError;
use crate::recorder::{MAX_DETAIL_ROWS, StoredDetail};
use crate::send::BoxFuture;

/// The counters and sent marks reports are built from.
pub trait CounterStore: Send + Sync + fmt::Debug {
    /// The days that have counters, oldest first.
    fn days(&self) -> BoxFuture<'_, Result<Vec<u32>, TlsrptError>>;
    /// Every counter of `day`, ordered by report domain.
    fn day(&self, day: u32) -> BoxFuture<'_, Result<Vec<TlsrptCounters>, TlsrptError>>;
    /// Whether the report of (day, domain) was sent.
    fn sent<'a>(&'a self, day: u32, domain: &'a str) -> BoxFuture<'a, Result<bool, TlsrptError>>;
    /// Marks the report of (day, domain) sent; false when it already was, so that of two
    /// senders racing each other one sends.
    fn mark_sent<'a>(
        &'a self,
        day: u32,
        domain: &'a str,
        at_secs: u64,
    ) -> BoxFuture<'a, Result<bool, TlsrptError>>;
    /// Removes counters and marks of days before `before_day`; how many policy rows went.
    fn prune(&self, before_day: u32) -> BoxFuture<'_, Result<usize, TlsrptError>>;
}

/// The counters of this node's own spool.
#[derive(Debug, Clone)]
pub struct LocalCounters(pub Spool);

impl CounterStore for LocalCounters {
    fn days(&self) -> BoxFuture<'_, Result<Vec<u32>, TlsrptError>> {
        Box::pin(async move {
            self.0
                .tlsrpt_days()
                .map_err(TlsrptError::spool("listing counter days"))
        })
    }

    fn day(&self, day: u32) -> BoxFuture<'_, Result<Vec<TlsrptCounters>, TlsrptError>> {
        Box::pin(async move {
            self.0
                .tlsrpt_day(day)
                .map_err(TlsrptError::spool("reading a day's counters"))
        })
    }

    fn sent<'a>(&'a self, day: u32, domain: &'a str) -> BoxFuture<'a, Result<bool, TlsrptError>> {
        Box::pin(async move {
            self.0
                .tlsrpt_sent(day, domain)
                .map_err(TlsrptError::spool("reading sent marks"))
        })
    }

    fn mark_sent<'a>(
        &'a self,
        day: u32,
        domain: &'a str,
        at_secs: u64,
    ) -> BoxFuture<'a, Result<bool, TlsrptError>> {
        Box::pin(async move {
            self.0
                .tlsrpt_mark_sent(day, domain.to_owned(), at_secs)
                .await
                .map_err(TlsrptError::spool("marking a report sent"))
        })
    }

    fn prune(&self, before_day: u32) -> BoxFuture<'_, Result<usize, TlsrptError>> {
        Box::pin(async move {
            self.0
                .tlsrpt_prune(before_day)
                .await
                .map_err(TlsrptError::spool("pruning counters"))
        })
    }
}

/// Several nodes' counters (any order) as one node would have counted the same sessions: per
/// (day, report domain, policy) the sums, and at most [`MAX_DETAIL_ROWS`] distinct detail rows,
/// the rest added to their result type's overflow row (which rows are listed then depends on
/// the order the nodes saw them; the counts do not). Ordered by day, domain and policy.
pub fn merge_counters(rows: Vec<TlsrptCounters>) -> Vec<TlsrptCounters> {
    type Key = (u32, String, String);
    let mut merged: BTreeMap<Key, (u64, u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for row in rows {
        let entry = merged
            .entry((row.day, row.report_domain, row.policy))
            .or_default();
        entry.0 += row.successes;
        entry.1 += row.failures;
        for detail in row.details {
            *entry.2.entry(detail.detail).or_default() += detail.count;
        }
    }
    merged
        .into_iter()
        .map(
            |((day, report_domain, policy), (successes, failures, details))| TlsrptCounters {
                day,
                report_domain,
                policy,
                successes,
                failures,
                details: capped(details),
            },
        )
        .collect()
}

/// At most [`MAX_DETAIL_ROWS`] rows besides overflow rows; the others counted in overflow rows.
fn capped(details: BTreeMap<String, u64>) -> Vec<TlsrptDetailCount> {
    let mut kept: Vec<TlsrptDetailCount> = Vec::new();
    let mut overflow: BTreeMap<String, u64> = BTreeMap::new();
    let limit = usize::try_from(MAX_DETAIL_ROWS).unwrap_or(usize::MAX);
    let mut listed = 0;
    for (detail, count) in details {
        let decoded = StoredDetail::decode(&detail).ok();
        let is_overflow = decoded.as_ref().is_some_and(StoredDetail::is_overflow);
        if is_overflow || listed < limit {
            listed += usize::from(!is_overflow);
            match is_overflow {
                true => *overflow.entry(detail).or_default() += count,
                false => kept.push(TlsrptDetailCount { detail, count }),
            }
            continue;
        }
        let row = decoded.map_or_else(|| detail.clone(), |d| d.overflow().encode());
        *overflow.entry(row).or_default() += count;
    }
    kept.extend(
        overflow
            .into_iter()
            .map(|(detail, count)| TlsrptDetailCount { detail, count }),
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(result_type: &str, ip: &str) -> String {
        StoredDetail {
            result_type: result_type.into(),
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: Some(ip.into()),
            additional_information: None,
            failure_reason_code: None,
        }
        .encode()
    }

    fn row(domain: &str, ok: u64, details: &[(&str, u64)]) -> TlsrptCounters {
        TlsrptCounters {
            day: 20_000,
            report_domain: domain.into(),
            policy: "p".into(),
            successes: ok,
            failures: details.iter().map(|(_, n)| n).sum(),
            details: details
                .iter()
                .map(|(d, n)| TlsrptDetailCount {
                    detail: (*d).into(),
                    count: *n,
                })
                .collect(),
        }
    }

    #[test]
    fn nodes_counters_add_up_per_policy_and_detail() {
        let a = detail("certificate-expired", "192.0.2.1");
        let b = detail("starttls-not-supported", "192.0.2.2");
        let merged = merge_counters(vec![
            row("b.example", 1, &[]),
            row("a.example", 2, &[(&a, 1)]),
            row("a.example", 3, &[(&a, 2), (&b, 4)]),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].report_domain, "a.example");
        assert_eq!((merged[0].successes, merged[0].failures), (5, 7));
        let counts: Vec<u64> = merged[0].details.iter().map(|d| d.count).collect();
        assert_eq!(counts.iter().sum::<u64>(), 7);
        assert_eq!(merged[0].details.len(), 2);
        assert_eq!((merged[1].successes, merged[1].failures), (1, 0));
    }

    // RFC 8460 §4.4 leaves the number of failure-details rows to the sender; strictmx lists
    // at most MAX_DETAIL_ROWS per policy, merged or not, and counts every failure.
    #[test]
    fn merged_details_beyond_the_cap_go_to_the_overflow_row_of_their_result_type() {
        let limit = usize::try_from(MAX_DETAIL_ROWS).expect("small");
        let first: Vec<String> = (0..limit)
            .map(|i| detail("validation-failure", &format!("192.0.2.{i}")))
            .collect();
        let extra: Vec<String> = (0..5)
            .map(|i| detail("validation-failure", &format!("198.51.100.{i}")))
            .collect();
        let one: Vec<(&str, u64)> = first.iter().map(|d| (d.as_str(), 1)).collect();
        let two: Vec<(&str, u64)> = extra.iter().map(|d| (d.as_str(), 2)).collect();
        let merged = merge_counters(vec![row("a.example", 0, &one), row("a.example", 0, &two)]);
        let details = &merged[0].details;
        assert_eq!(details.len(), limit + 1);
        assert_eq!(details.iter().map(|d| d.count).sum::<u64>(), 110);
        let overflow = StoredDetail::decode(&details[limit].detail).expect("decodes");
        assert!(overflow.is_overflow());
        assert_eq!(overflow.result_type, "validation-failure");
    }
}
