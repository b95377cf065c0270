//! The spool's shadow rule counters (issue 11, "Shadow rules"): counted by the commit that
//! records a delivered attempt, kept after the message leaves the queue, across a restart, and
//! for [`SHADOW_KEEP_DAYS`] days.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{attempt, body, deferred, delivered, envelope, later, open};
use strictmx_spool::{
    AttemptOutcome, AttemptRecord, SHADOW_KEEP_DAYS, ShadowOutcome, ShadowVerdict,
};

fn with_verdicts(
    mut record: AttemptRecord,
    verdicts: &[(&str, ShadowOutcome, &str)],
) -> AttemptRecord {
    record.shadow = verdicts
        .iter()
        .map(|(rule, outcome, reason)| ShadowVerdict {
            rule: (*rule).into(),
            outcome: *outcome,
            reason: (*reason).into(),
        })
        .collect();
    record
}

fn today() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    u32::try_from(secs / 86_400).unwrap()
}

#[tokio::test]
async fn delivered_attempts_are_counted_after_the_message_left_and_deferred_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@example.net", "b@example.net"]), body(10))
        .await
        .unwrap();
    let would = [(
        "dane-trial",
        ShadowOutcome::WouldDefer,
        "mx.example.net: no TLSA",
    )];
    // A deferred attempt says what the rule would have done, but nothing was let through.
    let first = with_verdicts(attempt(vec![0, 1], AttemptOutcome::Deferred), &would);
    spool
        .record(
            id,
            vec![deferred(0, later(60), 1), deferred(1, later(60), 1)],
            vec![first],
        )
        .await
        .unwrap();
    assert!(spool.shadow_counts(0, None).unwrap().is_empty());
    let second = with_verdicts(
        attempt(vec![0, 1], AttemptOutcome::Delivered),
        &[would[0], ("verified-trial", ShadowOutcome::Pass, "")],
    );
    spool
        .record(id, vec![delivered(0), delivered(1)], vec![second])
        .await
        .unwrap();
    assert!(
        spool.message(id).unwrap().is_none(),
        "delivered: gone from the queue"
    );
    let rows = spool.shadow_counts(today(), None).unwrap();
    let seen: Vec<(&str, &str, ShadowOutcome, u64)> = rows
        .iter()
        .map(|r| (r.rule.as_str(), r.domain.as_str(), r.outcome, r.count))
        .collect();
    assert_eq!(
        seen,
        [
            ("dane-trial", "example.net", ShadowOutcome::WouldDefer, 1),
            ("verified-trial", "example.net", ShadowOutcome::Pass, 1),
        ]
    );
    let report = spool.shadow_report(today(), Some("dane-trial")).unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!((report[0].messages, report[0].stopped), (1, 1));
    assert_eq!(
        report[0].domains[0].reasons[0].reason,
        "mx.example.net: no TLSA"
    );

    drop(spool);
    let spool = open(dir.path());
    assert_eq!(
        spool.shadow_counts(today(), None).unwrap().len(),
        2,
        "after a restart"
    );
    assert!(spool.shadow_counts(today() + 1, None).unwrap().is_empty());
}

#[tokio::test]
async fn counters_older_than_the_kept_days_go_when_a_new_day_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let day = |n: u32| UNIX_EPOCH + Duration::from_secs(u64::from(n) * 86_400 + 3600);
    let newest = today();
    for at in [
        newest - SHADOW_KEEP_DAYS,
        newest - SHADOW_KEEP_DAYS + 1,
        newest,
    ] {
        let id = spool
            .submit(envelope(&["a@example.net"]), body(10))
            .await
            .unwrap();
        let mut record = with_verdicts(
            attempt(vec![0], AttemptOutcome::Delivered),
            &[("dane-trial", ShadowOutcome::Pass, "")],
        );
        record.at = day(at);
        spool
            .record(id, vec![delivered(0)], vec![record])
            .await
            .unwrap();
    }
    let days: Vec<u32> = spool
        .shadow_counts(0, None)
        .unwrap()
        .iter()
        .map(|r| r.day)
        .collect();
    assert_eq!(days, [newest - SHADOW_KEEP_DAYS + 1, newest]);
}
