//! The audit trail through the public API on a real redb file: a recipient's record is
//! written by the commit that makes it final, outlives its message and a restart, is found by
//! queue id, Message-ID and searches, and is pruned once past its retention window.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use strictmx_spool::fault::FillableStore;
use strictmx_spool::{
    AttemptOutcome, AttemptRecord, AuditOutcome, AuditQuery, AuditRecord, AuditSettings,
    AuthFilter, PeerAuth, RecipientState, RecipientUpdate, Spool, SpoolError, SpoolSettings,
};

fn with_message_id(message_id: &str) -> Vec<u8> {
    format!("Message-ID: {message_id}\r\nSubject: reset\r\n\r\nyour code is 1234\r\n").into_bytes()
}

fn delivered_at(index: usize, at: SystemTime) -> RecipientUpdate {
    RecipientUpdate {
        index,
        state: RecipientState::Delivered {
            at,
            mx: "mx.example.net".into(),
            reply: "250 2.0.0 ok".into(),
        },
    }
}

fn days_ago(days: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(days * 86_400)
}

/// Submits a one-recipient message to `rcpt` and records its delivery at `at` over `auth`.
async fn deliver(spool: &Spool, rcpt: &str, at: SystemTime, auth: PeerAuth) -> u64 {
    let id = spool
        .submit(
            envelope(&[rcpt]),
            with_message_id(&format!("<{rcpt}.{auth:?}@app.test>")),
        )
        .await
        .expect("submit");
    let mut tried = attempt(vec![0], AttemptOutcome::Delivered);
    tried.auth = auth;
    tried.at = at;
    spool
        .record(id, vec![delivered_at(0, at)], vec![tried])
        .await
        .expect("record");
    id
}

#[tokio::test]
async fn the_commit_that_finishes_a_message_writes_each_recipients_record() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(
            envelope(&["a@example.net", "b@example.net"]),
            with_message_id("<reset-1@app.test>"),
        )
        .await
        .expect("submit");
    spool
        .record(
            id,
            vec![deferred(0, later(60), 1), delivered(1)],
            vec![
                attempt(vec![0], AttemptOutcome::Deferred),
                attempt(vec![1], AttemptOutcome::Delivered),
            ],
        )
        .await
        .expect("first outcome");
    let kept = spool.audit_by_queue_id(id).expect("read");
    assert_eq!(kept.len(), 1, "only the recipient that became final");
    assert_eq!(kept[0].recipient, "b@example.net");
    assert!(spool.message(id).expect("read").is_some());

    spool
        .record(
            id,
            vec![bounced(0)],
            vec![attempt(vec![0], AttemptOutcome::Bounced)],
        )
        .await
        .expect("last outcome");
    assert!(
        spool.message(id).expect("read").is_none(),
        "the message left the queue"
    );
    let kept = spool.audit_by_queue_id(id).expect("read");
    let outcomes: Vec<_> = kept.iter().map(|r| (r.index, r.outcome)).collect();
    assert_eq!(
        outcomes,
        [(0, AuditOutcome::Bounced), (1, AuditOutcome::Delivered)]
    );
    let bounced = &kept[0];
    assert_eq!(bounced.status.as_deref(), Some("5.1.1"));
    assert_eq!(bounced.attempts.len(), 2, "the deferral and the bounce");
    assert_eq!(bounced.message_id.as_deref(), Some("<reset-1@app.test>"));
    assert_eq!(bounced.sender, "sender@example.org");
    assert_eq!(bounced.submitter.auth_user.as_deref(), Some("alice"));
    assert_eq!(
        bounced.node.as_deref(),
        Some(spool.node_id()),
        "the node that wrote it"
    );
    let receipt = bounced.receipt.as_ref().expect("receipt");
    assert_eq!(receipt.auth, PeerAuth::Dane);
    assert_eq!(receipt.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(receipt.requirement.as_deref(), Some("dane"));
}

#[tokio::test]
async fn an_outcome_that_never_reaches_the_disk_leaves_no_record_either() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FillableStore::default();
    let spool = Spool::open_with(&settings(dir.path()), Arc::new(store.clone())).expect("open");
    let id = spool
        .submit(
            envelope(&["a@example.net"]),
            with_message_id("<lost@app.test>"),
        )
        .await
        .expect("submit");
    store.set_full(true);
    match spool
        .record(
            id,
            vec![delivered(0)],
            vec![attempt(vec![0], AttemptOutcome::Delivered)],
        )
        .await
    {
        Ok(()) | Err(SpoolError::Commit { .. } | SpoolError::Reopening) => {}
        Err(error) => panic!("unexpected record error: {error}"),
    }
    // The flush that would have carried it fails too.
    let _ = spool.submit(envelope(&["b@example.net"]), body(10)).await;
    store.set_full(false);
    drop(spool);

    let spool = open(dir.path());
    assert!(
        spool.message(id).expect("read").is_some(),
        "the recipient is still queued"
    );
    assert!(spool.audit_by_queue_id(id).expect("read").is_empty());
    assert!(
        spool
            .audit_by_message_id("lost@app.test")
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn records_survive_a_restart_and_are_found_by_queue_id_and_message_id() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let id = {
        let spool = open(dir.path());
        deliver(&spool, "a@bank.test", SystemTime::now(), PeerAuth::Dane).await
    };
    let spool = open(dir.path());
    let by_id = spool.audit_by_queue_id(id).expect("read");
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].auth(), PeerAuth::Dane);
    for message_id in ["<a@bank.test.Dane@app.test>", "a@bank.test.Dane@app.test"] {
        assert_eq!(
            spool.audit_by_message_id(message_id).expect("read"),
            by_id,
            "{message_id}"
        );
    }
    assert!(
        spool
            .audit_by_message_id("<A@bank.test.Dane@app.test>")
            .expect("read")
            .is_empty()
    );
}

/// An attempt at `at` (times are stored in whole milliseconds, and `at` need not be one).
fn attempt_at(outcome: AttemptOutcome, at: SystemTime) -> AttemptRecord {
    let mut tried = attempt(vec![0], outcome);
    tried.at = at;
    tried
}

/// Records a deferral of recipient 0 of `id`, tried at `at`.
async fn defer(spool: &Spool, id: u64, at: SystemTime) {
    spool
        .record(
            id,
            vec![deferred(0, later(60), 1)],
            vec![attempt_at(AttemptOutcome::Deferred, at)],
        )
        .await
        .expect("record the deferral");
}

/// Records the delivery of recipient 0 of `id`, tried at `at`, and gives back its audit
/// record with what differs between two messages (queue id, when it became final) blanked.
async fn delivered_record(spool: &Spool, id: u64, at: SystemTime) -> AuditRecord {
    spool
        .record(
            id,
            vec![delivered(0)],
            vec![attempt_at(AttemptOutcome::Delivered, at)],
        )
        .await
        .expect("record the delivery");
    let mut kept = spool.audit_by_queue_id(id).expect("read");
    assert_eq!(kept.len(), 1);
    let mut record = kept.remove(0);
    record.queue_id = 0;
    record.final_at = SystemTime::UNIX_EPOCH;
    record
}

#[tokio::test]
async fn a_record_carries_what_was_stored_whether_recorded_at_once_after_a_failed_commit_or_after_a_restart()
 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FillableStore::default();
    let mut sent = envelope(&["a@example.net"]);
    // Stored in whole seconds and milliseconds: every path must give back the same times.
    sent.received_at += Duration::from_millis(750);
    let deferred_at = sent.received_at + Duration::from_nanos(1_234_567);
    let delivered_at = sent.received_at + Duration::from_nanos(2_345_678);
    let submit = |spool: Spool| {
        let sent = sent.clone();
        async move {
            spool
                .submit(sent, with_message_id("<same@app.test>"))
                .await
                .expect("submit")
        }
    };

    let spool = Spool::open_with(&settings(dir.path()), Arc::new(store.clone())).expect("open");
    let at_once = submit(spool.clone()).await;
    defer(&spool, at_once, deferred_at).await;
    let waiting = submit(spool.clone()).await;
    defer(&spool, waiting, deferred_at).await;
    let at_once = delivered_record(&spool, at_once, delivered_at).await;
    assert_eq!(at_once.received_at, whole_seconds(sent.received_at));
    assert_eq!(at_once.message_id.as_deref(), Some("<same@app.test>"));
    let tried: Vec<_> = at_once.attempts.iter().map(|a| (a.outcome, a.at)).collect();
    assert_eq!(
        tried,
        [
            (
                AttemptOutcome::Deferred,
                sent.received_at + Duration::from_millis(1)
            ),
            (
                AttemptOutcome::Delivered,
                sent.received_at + Duration::from_millis(2)
            )
        ]
    );

    // Its submission flushes the deferrals recorded before it.
    let after_failure = submit(spool.clone()).await;
    store.set_full(true);
    let lost = spool.submit(envelope(&["b@example.net"]), body(10)).await;
    assert!(lost.is_err(), "nothing commits on a full disk");
    store.set_full(false);
    // A deferral recorded before the failure may have been lost with its flush.
    defer(&spool, after_failure, deferred_at).await;
    assert_eq!(
        delivered_record(&spool, after_failure, delivered_at).await,
        at_once
    );
    drop(spool);

    let spool = Spool::open_with(&settings(dir.path()), Arc::new(store)).expect("reopen");
    assert_eq!(
        delivered_record(&spool, waiting, delivered_at).await,
        at_once
    );
}

#[tokio::test]
async fn an_administrative_bounce_and_a_deletion_are_kept_with_their_cause() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let bounced = spool
        .submit(envelope(&["a@example.net"]), body(10))
        .await
        .expect("submit");
    spool.bounce(bounced, |_, _| None).await.expect("bounce");
    let deleted = spool
        .submit(envelope(&["b@example.net", "c@example.net"]), body(10))
        .await
        .expect("submit");
    spool
        .record(
            deleted,
            vec![delivered(0)],
            vec![attempt(vec![0], AttemptOutcome::Delivered)],
        )
        .await
        .expect("record");
    spool.delete(deleted).await.expect("delete");

    let kept = spool.audit_by_queue_id(bounced).expect("read");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].outcome, AuditOutcome::AdminBounced);
    assert_eq!(kept[0].receipt, None, "never attempted");
    let kept: Vec<_> = spool
        .audit_by_queue_id(deleted)
        .expect("read")
        .iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(kept, [AuditOutcome::Delivered, AuditOutcome::Deleted]);
}

#[tokio::test]
async fn searches_select_a_time_range_a_domain_and_how_it_was_delivered() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let old = deliver(&spool, "a@bank.test", days_ago(10), PeerAuth::Dane).await;
    let dane = deliver(&spool, "b@bank.test", days_ago(2), PeerAuth::Dane).await;
    let webpki = deliver(&spool, "c@Bank.Test", days_ago(1), PeerAuth::Webpki).await;
    let elsewhere = deliver(&spool, "d@other.test", days_ago(1), PeerAuth::None).await;
    let failed = spool
        .submit(envelope(&["e@bank.test"]), body(10))
        .await
        .expect("submit");
    spool
        .record(
            failed,
            vec![bounced(0)],
            vec![attempt(vec![0], AttemptOutcome::Bounced)],
        )
        .await
        .expect("record");

    let ids = |query: AuditQuery| -> Vec<u64> {
        let page = spool.audit_search(&query).expect("search");
        page.records.iter().map(|r| r.queue_id).collect()
    };
    let last_week = AuditQuery {
        since: Some(days_ago(7)),
        ..AuditQuery::default()
    };
    assert_eq!(ids(last_week.clone()), [dane, webpki, elsewhere, failed]);
    let bank_not_dane = AuditQuery {
        domain: Some("BANK.test".into()),
        auth: Some(AuthFilter::NotDeliveredOver(PeerAuth::Dane)),
        ..last_week.clone()
    };
    assert_eq!(ids(bank_not_dane), [webpki, failed]);
    let until = AuditQuery {
        until: Some(days_ago(5)),
        ..AuditQuery::default()
    };
    assert_eq!(ids(until), [old]);
    let by_recipient = AuditQuery {
        recipient: Some("C@bank.test".into()),
        ..AuditQuery::default()
    };
    assert_eq!(ids(by_recipient), [webpki]);

    let page = spool
        .audit_search(&AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        })
        .expect("search");
    assert!(page.truncated);
    assert_eq!(page.records.len(), 2);
    assert!(!spool.audit_search(&last_week).expect("search").truncated);
}

#[tokio::test]
async fn records_past_the_retention_window_are_pruned_by_later_commits_and_on_demand() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (expired, kept) = {
        let spool = open(dir.path());
        let expired = deliver(&spool, "a@bank.test", days_ago(31), PeerAuth::Dane).await;
        let kept = deliver(&spool, "b@bank.test", days_ago(29), PeerAuth::Dane).await;
        (expired, kept)
    };
    // A commit after opening prunes: here, the first submission.
    let spool = open(dir.path());
    assert_eq!(spool.audit_by_queue_id(expired).expect("read").len(), 1);
    spool
        .submit(envelope(&["c@bank.test"]), body(10))
        .await
        .expect("submit");
    assert!(spool.audit_by_queue_id(expired).expect("read").is_empty());
    assert!(
        spool
            .audit_by_message_id("a@bank.test.Dane@app.test")
            .expect("read")
            .is_empty()
    );
    let everything = spool.audit_search(&AuditQuery::default()).expect("search");
    let left: Vec<_> = everything.records.iter().map(|r| r.queue_id).collect();
    assert_eq!(left, [kept]);
    drop(spool);

    let shorter = SpoolSettings {
        audit: AuditSettings {
            keep: Duration::from_secs(86_400),
            ..AuditSettings::default()
        },
        ..settings(dir.path())
    };
    let spool = Spool::open(&shorter).expect("open");
    assert_eq!(spool.prune_audit().await.expect("prune"), 1);
    assert!(
        spool
            .audit_search(&AuditQuery::default())
            .expect("search")
            .records
            .is_empty()
    );
}

#[tokio::test]
async fn with_the_trail_off_nothing_is_written() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let off = SpoolSettings {
        audit: AuditSettings {
            enabled: false,
            ..AuditSettings::default()
        },
        ..settings(dir.path())
    };
    let spool = Spool::open(&off).expect("open");
    let id = deliver(&spool, "a@bank.test", SystemTime::now(), PeerAuth::Dane).await;
    assert!(spool.audit_by_queue_id(id).expect("read").is_empty());
}

#[tokio::test]
async fn records_are_found_before_and_after_later_commits_index_them_and_across_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let start = days_ago(1);
    let mut ids = Vec::new();
    {
        let spool = open(dir.path());
        // More than a commit indexes at once, each a second apart in final time.
        for n in 0..300u64 {
            let at = start + Duration::from_secs(n);
            let rcpt = if n % 2 == 0 {
                "a@bank.test"
            } else {
                "b@other.test"
            };
            ids.push(deliver(&spool, rcpt, at, PeerAuth::Dane).await);
        }
        check_found(&spool, &ids, start).await;
    }
    let spool = open(dir.path());
    check_found(&spool, &ids, start).await;
    spool
        .submit(envelope(&["c@bank.test"]), body(10))
        .await
        .expect("a commit that indexes what waits");
    check_found(&spool, &ids, start).await;
}

/// Every record of `ids` (delivered a second apart from `start`, alternating between two
/// domains) is found by queue id and by search, in order.
async fn check_found(spool: &Spool, ids: &[u64], start: SystemTime) {
    for &id in [ids[0], ids[150], ids[299]].iter() {
        assert_eq!(
            spool.audit_by_queue_id(id).expect("read").len(),
            1,
            "{id:x}"
        );
    }
    let all = spool
        .audit_search(&AuditQuery {
            limit: usize::MAX,
            ..AuditQuery::default()
        })
        .expect("search");
    let found: Vec<_> = all.records.iter().map(|r| r.queue_id).collect();
    assert_eq!(found, ids, "every record, oldest first");
    let bank = spool
        .audit_search(&AuditQuery {
            domain: Some("bank.test".into()),
            since: Some(start + Duration::from_secs(100)),
            until: Some(start + Duration::from_secs(200)),
            ..AuditQuery::default()
        })
        .expect("search");
    let found: Vec<_> = bank.records.iter().map(|r| r.queue_id).collect();
    let expected: Vec<_> = (100..200).step_by(2).map(|n| ids[n]).collect();
    assert_eq!(found, expected);
    let page = spool
        .audit_search(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .expect("search");
    assert!(page.truncated);
    let first: Vec<_> = page.records.iter().map(|r| r.queue_id).collect();
    assert_eq!(first, ids[..10]);
}

#[tokio::test]
async fn records_are_read_after_a_sequence_number_in_the_order_they_were_written() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let mut ids = Vec::new();
    for rcpt in ["a@one.test", "b@two.test", "c@one.test"] {
        ids.push(deliver(&spool, rcpt, days_ago(0), PeerAuth::Dane).await);
    }
    let all = spool.audit_after(0, 10).expect("read");
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [0, 1, 2]);
    let queue_ids: Vec<u64> = all.iter().map(|(_, r)| r.queue_id).collect();
    assert_eq!(queue_ids, ids);
    let rest = spool.audit_after(1, 1).expect("read");
    assert_eq!(rest.len(), 1, "at most max");
    assert_eq!(rest[0].0, 1);
    assert_eq!(rest[0].1.recipient, "b@two.test");
    assert!(spool.audit_after(3, 10).expect("read").is_empty());
}
