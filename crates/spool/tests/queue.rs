//! The queue's lifecycle through the public API on a real redb file: submit, due, record,
//! deletion, schedule order, leasing, the admin operations and restart recovery.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use strictmx_spool::{AttemptOutcome, MessageId, RecipientState, SpoolError, format_id};

#[tokio::test]
async fn a_submitted_message_is_due_and_deleted_once_every_recipient_is_final() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let env = envelope(&["a@Example.NET", "b@example.net"]);
    let id = spool.submit(env.clone(), body(2048)).await.expect("submit");

    let due = spool.due(SystemTime::now(), 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    assert_eq!(*due[0].envelope, env);
    let domains: Vec<_> = due[0]
        .recipients
        .iter()
        .map(|r| r.domain.as_str())
        .collect();
    assert_eq!(domains, ["example.net", "example.net"]);
    assert_eq!(spool.body(id).expect("body"), body(2048));
    assert_eq!(
        spool.kept_body(id).as_deref(),
        Some(&body(2048)),
        "the body is kept for delivery since its commit"
    );

    spool
        .record(
            id,
            vec![delivered(0)],
            vec![attempt(vec![0], AttemptOutcome::Delivered)],
        )
        .await
        .expect("record first delivery");
    let stored = spool.message(id).expect("read").expect("still queued");
    assert!(matches!(stored.states[0], RecipientState::Delivered { .. }));
    assert_eq!(stored.attempts.len(), 1);
    assert_eq!(spool.stats().recipients_queued, 1);

    spool
        .record(
            id,
            vec![bounced(1)],
            vec![attempt(vec![1], AttemptOutcome::Bounced)],
        )
        .await
        .expect("record the last recipient");
    assert!(spool.message(id).expect("read").is_none());
    assert!(matches!(spool.body(id), Err(SpoolError::NotFound { .. })));
    assert_eq!(
        spool.kept_body(id),
        None,
        "a deleted message's body is let go"
    );
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    assert_eq!(spool.next_due(), None);
    let stats = spool.stats();
    assert_eq!((stats.messages, stats.recipients_queued), (0, 0));
}

#[tokio::test]
async fn due_follows_the_schedule_and_never_returns_future_recipients() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let first = spool
        .submit(envelope(&["a@one.test"]), body(10))
        .await
        .expect("submit");
    let second = spool
        .submit(envelope(&["b@two.test"]), body(10))
        .await
        .expect("submit");
    let third = spool
        .submit(envelope(&["c@three.test"]), body(10))
        .await
        .expect("submit");
    spool.due(SystemTime::now(), 10).expect("lease all three");

    // Reschedule out of submission order: third first, then first, second in the future.
    let now = SystemTime::now();
    spool
        .record(
            third,
            vec![deferred(0, now - Duration::from_secs(30), 1)],
            vec![],
        )
        .await
        .expect("record");
    spool
        .record(
            first,
            vec![deferred(0, now - Duration::from_secs(10), 1)],
            vec![],
        )
        .await
        .expect("record");
    spool
        .record(second, vec![deferred(0, later(3600), 1)], vec![])
        .await
        .expect("record");

    let due = spool.due(SystemTime::now(), 10).expect("due");
    let order: Vec<_> = due.iter().map(|m| m.id).collect();
    assert_eq!(order, [third, first]);
    assert_eq!(due[0].recipients[0].attempts, 1);

    let next = spool.next_due().expect("second is still queued");
    let expected = later(3600);
    assert!(next <= expected && next + Duration::from_secs(5) >= expected);

    let limited = {
        spool.release_leases(third, &[0]);
        spool.release_leases(first, &[0]);
        spool.due(SystemTime::now(), 1).expect("due")
    };
    assert_eq!(limited.len(), 1, "the limit counts messages");
    assert_eq!(limited[0].id, third);
}

#[tokio::test]
async fn a_leased_recipient_is_not_handed_out_twice_until_recorded_or_released() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@y.test"]), body(10))
        .await
        .expect("submit");

    let first = spool.due(SystemTime::now(), 10).expect("due");
    assert_eq!(first[0].recipients.len(), 2);
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    assert_eq!(spool.next_due(), None, "leased recipients are not waiting");

    spool.release_leases(id, &[1]);
    let again = spool.due(SystemTime::now(), 10).expect("due");
    assert_eq!(again[0].recipients.len(), 1);
    assert_eq!(again[0].recipients[0].index, 1);

    let past = SystemTime::now() - Duration::from_secs(1);
    spool
        .record(
            id,
            vec![deferred(0, past, 1)],
            vec![attempt(vec![0], AttemptOutcome::Deferred)],
        )
        .await
        .expect("record");
    let after_record = spool.due(SystemTime::now(), 10).expect("due");
    assert_eq!(after_record[0].recipients.len(), 1);
    assert_eq!(after_record[0].recipients[0].index, 0);
    assert_eq!(after_record[0].recipients[0].attempts, 1);
}

/// `due` and `next_due` skip the scan while nothing was scheduled or given back since a look
/// that found nothing due: every way a recipient becomes due again must still be seen.
#[tokio::test]
async fn a_look_that_found_nothing_due_misses_nothing_that_becomes_due_later() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@y.test", "c@z.test"]), body(10))
        .await
        .expect("submit");
    assert_eq!(spool.due(SystemTime::now(), 10).expect("due").len(), 1);
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    assert_eq!(spool.next_due(), None);

    // A delivery makes nothing due; a deferral into the past does.
    spool
        .record(id, vec![delivered(0)], vec![])
        .await
        .expect("record");
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    // Whole seconds, so that the state recorded again below is the one stored.
    let past = whole_seconds(SystemTime::now() - Duration::from_secs(1));
    spool
        .record(id, vec![deferred(1, past, 1)], vec![])
        .await
        .expect("record");
    let due = spool.due(SystemTime::now(), 10).expect("due");
    assert_eq!(due[0].recipients[0].index, 1);

    // The same state recorded again changes nothing stored, but gives the lease back.
    spool
        .record(id, vec![deferred(1, past, 1)], vec![])
        .await
        .expect("record");
    assert_eq!(spool.due(SystemTime::now(), 10).expect("due").len(), 1);

    // A deferral into the future is due once its time comes, with nothing else changing.
    spool
        .record(id, vec![deferred(1, later(3600), 2)], vec![])
        .await
        .expect("record");
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    assert!(spool.next_due().is_some());
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    assert_eq!(spool.due(later(7200), 10).expect("due").len(), 1);

    // A lease given back, a retry and a new message are each seen at once.
    spool.release_leases(id, &[1, 2]);
    let due = spool.due(later(7200), 10).expect("due");
    assert_eq!(due[0].recipients.len(), 2);
    spool
        .record(id, vec![deferred(2, later(3600), 1)], vec![])
        .await
        .expect("record");
    spool.release_leases(id, &[1]);
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    assert_eq!(spool.retry_now(id).await.expect("retry"), 2);
    assert_eq!(
        spool.due(SystemTime::now(), 10).expect("due")[0]
            .recipients
            .len(),
        2
    );
    let other = spool
        .submit(envelope(&["d@x.test"]), body(10))
        .await
        .expect("submit");
    let due = spool.due(SystemTime::now(), 10).expect("due");
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), [other]);
}

#[tokio::test]
async fn held_recipients_are_not_due_until_released() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@x.test"]), body(10))
        .await
        .expect("submit");

    assert_eq!(spool.hold(id).await.expect("hold"), 2);
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    let stats = spool.stats();
    assert_eq!((stats.held, stats.recipients_queued), (2, 0));
    let listed = spool.list().expect("list");
    assert!(listed[0].held);
    assert_eq!(listed[0].next_attempt, None);

    let notify = spool.work_notify();
    let woken = notify.notified();
    assert_eq!(spool.release(id).await.expect("release"), 2);
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("release wakes the runner");
    assert_eq!(
        spool.due(SystemTime::now(), 10).expect("due")[0]
            .recipients
            .len(),
        2
    );
}

#[tokio::test]
async fn a_deferral_arriving_for_a_held_recipient_keeps_it_held() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test"]), body(10))
        .await
        .expect("submit");
    spool.due(SystemTime::now(), 10).expect("lease");
    spool.hold(id).await.expect("hold while in flight");
    spool
        .record(id, vec![deferred(0, SystemTime::now(), 1)], vec![])
        .await
        .expect("record");
    let stored = spool.message(id).expect("read").expect("queued");
    assert!(matches!(
        stored.states[0],
        RecipientState::Held { attempts: 1, .. }
    ));
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
}

#[tokio::test]
async fn retry_now_and_retry_all_make_deferred_recipients_due_at_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let a = spool
        .submit(envelope(&["a@x.test"]), body(10))
        .await
        .expect("submit");
    let b = spool
        .submit(envelope(&["b@y.test"]), body(10))
        .await
        .expect("submit");
    spool.due(SystemTime::now(), 10).expect("lease");
    spool
        .record(a, vec![deferred(0, later(600), 1)], vec![])
        .await
        .expect("record");
    spool
        .record(b, vec![deferred(0, later(600), 1)], vec![])
        .await
        .expect("record");
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());

    assert_eq!(spool.retry_now(a).await.expect("retry"), 1);
    let due: Vec<_> = spool
        .due(SystemTime::now(), 10)
        .expect("due")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(due, [a]);

    assert_eq!(
        spool.retry_all().await.expect("retry all"),
        1,
        "only b was in the future"
    );
    let due: Vec<_> = spool
        .due(SystemTime::now(), 10)
        .expect("due")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(due, [b]);
}

#[tokio::test]
async fn delete_removes_a_message_and_its_leases() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@x.test"]), body(10))
        .await
        .expect("submit");
    spool.due(SystemTime::now(), 10).expect("lease");
    assert_eq!(spool.delete(id).await.expect("delete"), 2);
    assert!(spool.message(id).expect("read").is_none());
    assert_eq!(spool.kept_body(id), None);
    assert_eq!(spool.stats().messages, 0);
    let late = spool.record(id, vec![delivered(0)], vec![]).await;
    assert!(matches!(late, Err(SpoolError::NotFound { .. })), "{late:?}");
    assert!(matches!(
        spool.delete(id).await,
        Err(SpoolError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_administrative_bounce_returns_the_message_for_dsns_and_removes_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@x.test", "c@x.test"]), body(100))
        .await
        .expect("submit");
    spool.due(SystemTime::now(), 10).expect("lease");
    spool
        .record(
            id,
            vec![delivered(0)],
            vec![attempt(vec![0], AttemptOutcome::Delivered)],
        )
        .await
        .expect("record");
    spool.hold(id).await.expect("hold");

    let (bounced, report) = spool.bounce(id, |_, _| None).await.expect("bounce");
    assert_eq!(report, None);
    assert_eq!(bounced.body, body(100));
    assert_eq!(bounced.message.attempts.len(), 1);
    assert!(matches!(
        bounced.message.states[0],
        RecipientState::Delivered { .. }
    ));
    for state in &bounced.message.states[1..] {
        let RecipientState::Bounced { reply, status, .. } = state else {
            panic!("every non-final recipient is bounced: {state:?}");
        };
        assert_eq!(
            (reply.as_str(), status.as_str()),
            ("administratively bounced", "5.0.0")
        );
    }
    assert!(spool.message(id).expect("read").is_none());
    assert_eq!(spool.stats().messages, 0);
}

#[tokio::test]
async fn an_administrative_bounce_queues_its_report_in_the_same_commit() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@x.test"]), body(100))
        .await
        .expect("submit");
    let (bounced, report) = spool
        .bounce(id, |bounced, before| {
            assert!(before.iter().all(|s| !s.is_final()), "{before:?}");
            assert!(bounced.message.states.iter().all(RecipientState::is_final));
            Some((envelope(&["sender@y.test"]), body(50)))
        })
        .await
        .expect("bounce");
    let report = report.expect("the report was queued");
    assert_eq!(bounced.message.id, id);
    assert!(spool.message(id).expect("read").is_none());
    let queued = spool.message(report).expect("read").expect("report queued");
    assert_eq!(queued.envelope.recipients[0].address, "sender@y.test");
    assert_eq!(spool.body(report).expect("body"), body(50));
    assert_eq!(spool.stats().messages, 1);
}

#[tokio::test]
async fn a_refused_bounce_report_leaves_the_message_queued() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test"]), body(100))
        .await
        .expect("submit");
    let refused = spool
        .bounce(id, |_, _| Some((envelope(&[]), body(10))))
        .await;
    assert!(
        matches!(refused, Err(SpoolError::NoRecipients)),
        "{refused:?}"
    );
    let stored = spool.message(id).expect("read").expect("still queued");
    assert!(matches!(stored.states[0], RecipientState::Queued { .. }));
    assert_eq!(spool.stats().messages, 1);
}

#[tokio::test]
async fn bad_operations_are_refused_without_changing_anything() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let refused = spool.submit(envelope(&[]), body(10)).await;
    assert!(
        matches!(refused, Err(SpoolError::NoRecipients)),
        "{refused:?}"
    );

    let id = spool
        .submit(envelope(&["a@x.test"]), body(10))
        .await
        .expect("submit");
    let before = spool.message(id).expect("read");
    for (updates, attempts) in [
        (vec![delivered(0), delivered(1)], vec![]),
        (
            vec![delivered(0)],
            vec![attempt(vec![5], AttemptOutcome::Delivered)],
        ),
    ] {
        let result = spool.record(id, updates, attempts).await;
        assert!(
            matches!(result, Err(SpoolError::NoSuchRecipient { .. })),
            "{result:?}"
        );
        assert!(!result.as_ref().expect_err("refused").is_transient());
    }
    assert_eq!(spool.message(id).expect("read"), before);
}

#[tokio::test]
async fn final_states_are_never_overwritten() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@x.test"]), body(10))
        .await
        .expect("submit");
    spool
        .record(id, vec![delivered(0)], vec![])
        .await
        .expect("record");
    spool
        .record(id, vec![deferred(0, later(60), 2)], vec![])
        .await
        .expect("record");
    let stored = spool.message(id).expect("read").expect("queued");
    assert!(matches!(stored.states[0], RecipientState::Delivered { .. }));
}

#[tokio::test]
async fn reopening_recovers_messages_states_and_stats_and_forgets_leases() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (kept, held, first_ids) = {
        let spool = open(dir.path());
        let kept = spool
            .submit(envelope(&["a@x.test", "b@x.test"]), body(300))
            .await
            .expect("submit");
        let held = spool
            .submit(envelope(&["c@y.test"]), body(10))
            .await
            .expect("submit");
        let gone = spool
            .submit(envelope(&["d@z.test"]), body(10))
            .await
            .expect("submit");
        spool.due(SystemTime::now(), 10).expect("lease everything");
        spool
            .record(
                kept,
                vec![delivered(0)],
                vec![attempt(vec![0], AttemptOutcome::Delivered)],
            )
            .await
            .expect("record");
        spool.hold(held).await.expect("hold");
        spool
            .record(gone, vec![delivered(0)], vec![])
            .await
            .expect("record");
        (kept, held, [kept, held, gone])
    };

    let spool = open(dir.path());
    let stats = spool.stats();
    assert_eq!(
        (stats.messages, stats.recipients_queued, stats.held),
        (2, 1, 1)
    );
    assert!(stats.oldest_age.is_some());
    let due = spool.due(SystemTime::now(), 10).expect("due");
    assert_eq!(due.len(), 1, "the lease on b died with the old spool");
    assert_eq!((due[0].id, due[0].recipients[0].index), (kept, 1));
    let stored = spool.message(kept).expect("read").expect("queued");
    assert_eq!(stored.attempts.len(), 1);
    assert_eq!(stored.size, 300);
    assert!(spool.message(held).expect("read").is_some());

    let newer = spool
        .submit(envelope(&["e@x.test"]), body(10))
        .await
        .expect("submit");
    assert!(
        first_ids.iter().all(|&old| newer > old),
        "ids never repeat across a restart"
    );
    assert_eq!(format_id(newer).len(), 16);
}

#[tokio::test]
async fn concurrent_submitters_share_commits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let spool = spool.clone();
        tasks.spawn(async move {
            for _ in 0..30 {
                spool
                    .submit(envelope(&["a@x.test"]), body(2048))
                    .await
                    .expect("submit");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("submitter task");
    }
    let stats = spool.stats();
    assert_eq!(stats.messages, 300);
    assert_eq!(stats.committed_operations, 300);
    assert!(
        stats.commits < 300,
        "{} commits for 300 messages",
        stats.commits
    );
    assert!(stats.last_commit_latency.is_some());
}

#[tokio::test]
async fn the_listing_shows_sender_recipients_size_and_next_attempt() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@x.test"]), body(500))
        .await
        .expect("submit");
    spool
        .record(id, vec![delivered(1)], vec![])
        .await
        .expect("record");
    let listed = spool.list().expect("list");
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(
        (entry.id, entry.sender.as_str(), entry.size),
        (id, "sender@example.org", 500)
    );
    assert_eq!(entry.recipients.len(), 2);
    assert!(entry.next_attempt.is_some() && !entry.held);
    let json = serde_json::to_value(entry).expect("listing serialises");
    assert_eq!(json["id"], format_id(id));
    assert_eq!(json["recipients"][1]["state"]["state"], "delivered");
}

// Issue 14: queued mail is readable by its owner only. A new data directory is 0700 and the
// spool file 0600 whatever the umask; looser ones left by an earlier install are tightened.
#[tokio::test]
async fn the_data_directory_and_spool_file_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    // `open` keeps the spool in DIR/spool.
    let root = tempfile::tempdir().expect("temporary directory");
    let fresh = root.path().join("fresh");
    drop(open(&fresh));
    let data = fresh.join("spool");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("spool.redb")), 0o600);

    let loose = root.path().join("loose");
    drop(open(&loose));
    let data = loose.join("spool");
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    chmod(&data.join("spool.redb"), 0o644);
    chmod(&data, 0o755);
    drop(open(&loose));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("spool.redb")), 0o600);
}

#[tokio::test]
async fn a_delivery_outcome_is_answered_before_its_flush_and_flushed_within_100_ms() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.test", "b@x.test"]), body(100))
        .await
        .expect("submit");
    let after_submit = spool.stats();
    assert_eq!(
        after_submit.flushes, after_submit.commits,
        "a submission is flushed"
    );

    spool
        .record(id, vec![deferred(0, SystemTime::now(), 1)], vec![])
        .await
        .expect("record");
    let after_record = spool.stats();
    assert_eq!(after_record.commits, after_submit.commits + 1);
    assert_eq!(
        after_record.flushes, after_submit.flushes,
        "answered unflushed"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        spool.stats().flushes,
        after_submit.flushes + 1,
        "the writer flushed it by itself"
    );

    // A submission right after an outcome carries both in one flush, and no later flush is
    // needed.
    spool
        .record(id, vec![deferred(1, SystemTime::now(), 1)], vec![])
        .await
        .expect("record");
    spool
        .submit(envelope(&["c@x.test"]), body(100))
        .await
        .expect("submit");
    let carried = spool.stats();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(spool.stats().flushes, carried.flushes);
}

#[tokio::test]
async fn a_reserved_id_names_the_message_and_is_never_handed_out_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let reserved = spool.reserve_id();
    let other = spool
        .submit(envelope(&["a@x.test"]), body(10))
        .await
        .expect("submit");
    assert!(other > reserved, "later ids are larger");
    let stored = spool
        .submit_reserved(reserved, envelope(&["b@x.test"]), body(10))
        .await
        .expect("submit under the reserved id");
    assert_eq!(stored, reserved);
    assert_eq!(
        spool
            .message(reserved)
            .expect("read")
            .expect("stored")
            .envelope
            .recipients[0]
            .address,
        "b@x.test"
    );
    let reused = spool
        .submit_reserved(reserved, envelope(&["c@x.test"]), body(10))
        .await;
    assert!(
        matches!(reused, Err(SpoolError::Inconsistent { .. })),
        "{reused:?}"
    );
    drop(spool);
    let spool = open(dir.path());
    assert!(
        spool.reserve_id() > other,
        "ids stay unique across a restart"
    );
}

/// The figures are totals kept without a record per message; the oldest age is read from the
/// first envelope in the store, so it follows deletions of the oldest message.
#[tokio::test]
async fn the_figures_follow_every_change_and_the_oldest_age_follows_the_first_message() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let now = SystemTime::now();
    let mut old = envelope(&["a@example.net", "b@example.net"]);
    old.received_at = now - Duration::from_secs(600);
    let mut young = envelope(&["c@example.org"]);
    young.received_at = now - Duration::from_secs(60);
    let first = spool.submit(old, body(64)).await.expect("submit");
    let second = spool.submit(young, body(64)).await.expect("submit");
    let figures = |spool: &strictmx_spool::Spool| {
        let s = spool.stats();
        let age = s.oldest_age.map(|a| a.as_secs());
        (s.messages, s.recipients_queued, s.held, age)
    };
    let near = |age: Option<u64>, secs: u64| age.is_some_and(|a| a.abs_diff(secs) <= 2);

    let (messages, queued, held, age) = figures(&spool);
    assert_eq!((messages, queued, held), (2, 3, 0));
    assert!(near(age, 600), "oldest age {age:?}");

    spool.hold(second).await.expect("hold");
    spool.due(SystemTime::now(), 10).expect("lease");
    spool
        .record(first, vec![delivered(0)], vec![])
        .await
        .expect("record");
    let (messages, queued, held, _) = figures(&spool);
    assert_eq!((messages, queued, held), (2, 1, 1));

    spool
        .record(first, vec![bounced(1)], vec![])
        .await
        .expect("record");
    let (messages, queued, held, age) = figures(&spool);
    assert_eq!((messages, queued, held), (1, 0, 1));
    assert!(near(age, 60), "the next message is the oldest now: {age:?}");

    spool.release(second).await.expect("release");
    let (messages, queued, held, _) = figures(&spool);
    assert_eq!((messages, queued, held), (1, 1, 0));
    drop(spool);
    let spool = open(dir.path());
    let (messages, queued, held, age) = figures(&spool);
    assert_eq!((messages, queued, held), (1, 1, 0), "rebuilt on open");
    assert!(near(age, 60));

    spool.delete(second).await.expect("delete");
    assert_eq!(figures(&spool), (0, 0, 0, None));
}

/// `postpone` moves leased queued recipients of many messages in one commit, keeps their
/// attempt counts and replies, gives every lease back, and leaves held recipients and
/// deleted messages alone.
#[tokio::test]
async fn postpone_moves_queued_recipients_in_one_commit_and_leaves_the_rest_alone() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let tried = spool
        .submit(envelope(&["a@down.test", "b@down.test"]), body(64))
        .await
        .expect("submit");
    let fresh = spool
        .submit(envelope(&["c@down.test"]), body(64))
        .await
        .expect("submit");
    let gone = spool
        .submit(envelope(&["d@down.test"]), body(64))
        .await
        .expect("submit");
    let leased: Vec<MessageId> = spool
        .due(SystemTime::now(), 10)
        .expect("lease")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(leased, [tried, fresh, gone]);
    spool.hold(tried).await.expect("hold while leased");
    spool.delete(gone).await.expect("delete while leased");

    let commits = spool.stats().commits;
    let when = whole_seconds(SystemTime::now() + Duration::from_secs(600));
    let work = vec![(tried, vec![0, 1]), (fresh, vec![0]), (gone, vec![0])];
    assert_eq!(spool.postpone(work, when).await.expect("postpone"), 1);
    assert_eq!(spool.stats().commits, commits + 1, "one commit for all");

    let stored = spool.message(fresh).expect("read").expect("queued");
    assert!(matches!(
        stored.states[0],
        RecipientState::Queued { next_attempt, attempts: 0, .. } if next_attempt == when
    ));
    let held = spool.message(tried).expect("read").expect("queued");
    assert!(
        held.states
            .iter()
            .all(|s| matches!(s, RecipientState::Held { .. }))
    );
    assert!(spool.due(SystemTime::now(), 10).expect("due").is_empty());
    let later = spool.due(when, 10).expect("due at its new time");
    assert_eq!(
        later.iter().map(|m| m.id).collect::<Vec<_>>(),
        [fresh],
        "its lease was given back"
    );
}

/// A postponed recipient keeps what its earlier attempts left: their count and last reply.
#[tokio::test]
async fn postpone_keeps_the_attempt_count_and_the_last_reply() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@down.test"]), body(64))
        .await
        .expect("submit");
    let now = SystemTime::now();
    spool.due(now, 10).expect("lease");
    spool
        .record(id, vec![deferred(0, now, 3)], vec![])
        .await
        .expect("record");
    spool.due(SystemTime::now(), 10).expect("lease again");
    let when = whole_seconds(SystemTime::now() + Duration::from_secs(60));
    assert_eq!(
        spool
            .postpone(vec![(id, vec![0])], when)
            .await
            .expect("postpone"),
        1
    );
    let stored = spool.message(id).expect("read").expect("queued");
    match &stored.states[0] {
        RecipientState::Queued {
            next_attempt,
            attempts,
            last_reply,
            delay_dsn_sent,
        } => {
            assert_eq!(*next_attempt, when);
            assert_eq!(*attempts, 3);
            assert_eq!(last_reply.as_deref(), Some("451 4.3.0 try later"));
            assert!(!delay_dsn_sent);
        }
        other => panic!("still queued, not {other:?}"),
    }
}

/// Deleting a message removes its attempt records whether the writer still kept the message
/// (it then knows whether any were stored) or met it only in the file, after a reopen.
#[tokio::test]
async fn a_deleted_message_leaves_no_attempt_records_behind() {
    const ATTEMPTS: redb::TableDefinition<(u64, u32), &[u8]> =
        redb::TableDefinition::new("attempts");
    /// One attempt for `recipients` of message `id`, delivered or deferred.
    async fn tried(spool: &strictmx_spool::Spool, id: MessageId, recipients: &[usize], done: bool) {
        let (updates, outcome) = if done {
            (
                recipients.iter().map(|&i| delivered(i)).collect(),
                AttemptOutcome::Delivered,
            )
        } else {
            (
                recipients
                    .iter()
                    .map(|&i| deferred(i, later(60), 1))
                    .collect(),
                AttemptOutcome::Deferred,
            )
        };
        spool
            .record(id, updates, vec![attempt(recipients.to_vec(), outcome)])
            .await
            .expect("record");
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let mut ids = Vec::new();
    for recipients in [&["a@x.test"][..], &["b@x.test", "c@x.test"], &["d@x.test"]] {
        ids.push(
            spool
                .submit(envelope(recipients), body(100))
                .await
                .expect("submit"),
        );
    }
    let [first_try, retried, across_reopen] = ids[..] else {
        unreachable!("three submitted")
    };
    tried(&spool, retried, &[0], false).await;
    tried(&spool, across_reopen, &[0], false).await;
    tried(&spool, first_try, &[0], true).await;
    tried(&spool, retried, &[0, 1], true).await;
    drop(spool);

    let spool = open(dir.path());
    tried(&spool, across_reopen, &[0], true).await;
    assert_eq!(spool.stats().messages, 0);
    drop(spool);

    let db = redb::Database::create(settings(dir.path()).data_dir.join("spool.redb"))
        .expect("open the file");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let attempts = txn.open_table(ATTEMPTS).expect("attempts table");
    let left = redb::ReadableTableMetadata::len(&attempts).expect("count");
    assert_eq!(left, 0, "attempt records of deleted messages");
}
