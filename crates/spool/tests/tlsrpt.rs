//! The spool's TLSRPT counters: aggregation per day, domain and policy, the bound on detail
//! rows with its overflow row, sent marks, pruning, and survival across a restart.

mod common;

use strictmx_spool::{Spool, TlsrptCounters, TlsrptFailure, TlsrptSession};

fn success(day: u32, domain: &str, policy: &str) -> TlsrptSession {
    TlsrptSession {
        day,
        report_domain: domain.into(),
        policy: policy.into(),
        failure: None,
    }
}

fn failure(day: u32, domain: &str, policy: &str, detail: &str) -> TlsrptSession {
    TlsrptSession {
        failure: Some(TlsrptFailure {
            detail: detail.into(),
            overflow: "other".into(),
        }),
        ..success(day, domain, policy)
    }
}

fn only(counters: Vec<TlsrptCounters>) -> TlsrptCounters {
    assert_eq!(counters.len(), 1, "{counters:?}");
    counters.into_iter().next().expect("one row checked above")
}

#[tokio::test]
async fn sessions_of_one_policy_are_summed_and_details_counted_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let spool = common::open(dir.path());
    let sessions = vec![
        success(100, "a.test", "p1"),
        success(100, "a.test", "p1"),
        failure(100, "a.test", "p1", "d1"),
        failure(100, "a.test", "p1", "d1"),
        failure(100, "a.test", "p1", "d2"),
        success(100, "a.test", "p2"),
        success(100, "b.test", "p1"),
        success(101, "a.test", "p1"),
    ];
    assert_eq!(spool.tlsrpt_record(sessions, 100).await.unwrap(), 0);
    let day = spool.tlsrpt_day(100).unwrap();
    assert_eq!(day.len(), 3);
    let p1 = day
        .iter()
        .find(|c| c.report_domain == "a.test" && c.policy == "p1")
        .unwrap();
    assert_eq!((p1.successes, p1.failures), (2, 3));
    let mut details: Vec<_> = p1
        .details
        .iter()
        .map(|d| (d.detail.as_str(), d.count))
        .collect();
    details.sort();
    assert_eq!(details, [("d1", 2), ("d2", 1)]);
    assert_eq!(spool.tlsrpt_days().unwrap(), [100, 101]);
}

#[tokio::test]
async fn distinct_detail_rows_beyond_the_bound_go_to_the_overflow_row() {
    let dir = tempfile::tempdir().unwrap();
    let spool = common::open(dir.path());
    let sessions = (0..5)
        .map(|i| failure(7, "a.test", "p", &format!("d{i}")))
        .chain([failure(7, "a.test", "p", "d0")])
        .collect();
    spool.tlsrpt_record(sessions, 3).await.unwrap();
    let counters = only(spool.tlsrpt_day(7).unwrap());
    assert_eq!(counters.failures, 6);
    let mut details: Vec<_> = counters
        .details
        .iter()
        .map(|d| (d.detail.as_str(), d.count))
        .collect();
    details.sort();
    assert_eq!(details, [("d0", 2), ("d1", 1), ("d2", 1), ("other", 2)]);
}

#[tokio::test]
async fn counters_and_sent_marks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = common::open(dir.path());
        spool
            .tlsrpt_record(vec![failure(9, "a.test", "p", "d")], 100)
            .await
            .unwrap();
        assert!(spool.tlsrpt_mark_sent(9, "a.test".into(), 1).await.unwrap());
    }
    let spool: Spool = common::open(dir.path());
    let counters = only(spool.tlsrpt_day(9).unwrap());
    assert_eq!((counters.successes, counters.failures), (0, 1));
    assert!(spool.tlsrpt_sent(9, "a.test").unwrap());
    assert!(!spool.tlsrpt_mark_sent(9, "a.test".into(), 2).await.unwrap());
    assert!(!spool.tlsrpt_sent(9, "b.test").unwrap());
}

#[tokio::test]
async fn pruning_removes_only_days_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let spool = common::open(dir.path());
    let sessions = vec![
        failure(1, "a.test", "p", "d"),
        success(2, "a.test", "p"),
        success(3, "a.test", "p"),
    ];
    spool.tlsrpt_record(sessions, 100).await.unwrap();
    spool.tlsrpt_mark_sent(1, "a.test".into(), 1).await.unwrap();
    assert_eq!(spool.tlsrpt_prune(3).await.unwrap(), 2);
    assert_eq!(spool.tlsrpt_days().unwrap(), [3]);
    assert!(spool.tlsrpt_day(1).unwrap().is_empty());
    assert!(!spool.tlsrpt_sent(1, "a.test").unwrap());
}

#[tokio::test]
async fn a_spool_that_only_counted_successes_reads_back_without_detail_rows() {
    let dir = tempfile::tempdir().unwrap();
    let spool = common::open(dir.path());
    spool
        .tlsrpt_record(vec![success(4, "a.test", "p")], 100)
        .await
        .unwrap();
    let counters = only(spool.tlsrpt_day(4).unwrap());
    assert_eq!((counters.successes, counters.failures), (1, 0));
    assert!(counters.details.is_empty());
}

#[tokio::test]
async fn a_fresh_spool_has_no_counters() {
    let dir = tempfile::tempdir().unwrap();
    let spool = common::open(dir.path());
    assert!(spool.tlsrpt_days().unwrap().is_empty());
    assert!(spool.tlsrpt_day(0).unwrap().is_empty());
    assert!(!spool.tlsrpt_sent(0, "a.test").unwrap());
}
