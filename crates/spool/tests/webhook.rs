//! The webhook outbox through the public API on a real redb file: events are written by the
//! commit that records the outcome, survive a restart, are removed one by one once sent, and a
//! full queue drops its oldest.

mod common;

use std::path::Path;

use common::*;
use strictmx_spool::{
    AttemptOutcome, MessageKind, PeerAuth, Spool, SpoolSettings, WebhookEventKind, WebhookSettings,
    WebhookTarget,
};

const ALL: &str = "https://hooks.example/all";
const BOUNCES: &str = "https://hooks.example/bounces";

fn with_hooks(dir: &Path, max_queued: u64) -> Spool {
    let settings = SpoolSettings {
        webhooks: WebhookSettings {
            hooks: vec![
                WebhookTarget {
                    name: ALL.into(),
                    events: WebhookEventKind::ALL.to_vec(),
                    max_queued,
                },
                WebhookTarget {
                    name: BOUNCES.into(),
                    events: vec![WebhookEventKind::Bounced],
                    max_queued,
                },
            ],
        },
        ..settings(dir)
    };
    Spool::open(&settings).expect("open spool")
}

fn kinds(spool: &Spool, hook: &str) -> Vec<WebhookEventKind> {
    let pending = spool.webhook_pending(hook, 100).expect("read");
    pending.into_iter().map(|(_, e)| e.event).collect()
}

#[tokio::test]
async fn each_outcome_is_queued_with_its_receipt_by_the_commit_that_records_it_and_survives_a_restart()
 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let id = {
        let spool = with_hooks(dir.path(), 100);
        let id = spool
            .submit(
                envelope(&["a@example.net", "b@example.net", "c@example.net"]),
                b"Message-ID: <hook-1@app.test>\r\n\r\nhi\r\n".to_vec(),
            )
            .await
            .expect("submit");
        let mut dane = attempt(vec![0], AttemptOutcome::Delivered);
        dane.auth = PeerAuth::Dane;
        spool
            .record(
                id,
                vec![delivered(0), deferred(1, later(60), 1), bounced(2)],
                vec![
                    dane,
                    attempt(vec![1], AttemptOutcome::Deferred),
                    attempt(vec![2], AttemptOutcome::Bounced),
                ],
            )
            .await
            .expect("record");
        id
    };
    let spool = with_hooks(dir.path(), 100);
    let pending = spool.webhook_pending(ALL, 100).expect("read");
    let seen: Vec<_> = pending
        .iter()
        .map(|(_, e)| (e.event, e.recipient.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (WebhookEventKind::Delivered, "a@example.net"),
            (WebhookEventKind::Deferred, "b@example.net"),
            (WebhookEventKind::Bounced, "c@example.net"),
        ]
    );
    let delivered = &pending[0].1;
    assert_eq!(delivered.queue_id, id);
    assert_eq!(delivered.message_id.as_deref(), Some("<hook-1@app.test>"));
    let receipt = delivered.receipt.as_ref().expect("a receipt");
    assert_eq!(receipt.auth, PeerAuth::Dane);
    assert_eq!(kinds(&spool, BOUNCES), [WebhookEventKind::Bounced]);
    assert_eq!(spool.webhook_queued(ALL).expect("count"), 3);

    assert!(spool.webhook_sent(ALL, pending[0].0).await.expect("remove"));
    assert!(!spool.webhook_sent(ALL, pending[0].0).await.expect("remove"));
    drop(spool);
    let spool = with_hooks(dir.path(), 100);
    assert_eq!(
        kinds(&spool, ALL),
        [WebhookEventKind::Deferred, WebhookEventKind::Bounced]
    );
    assert_eq!(spool.webhook_queued(ALL).expect("count"), 2);
}

#[tokio::test]
async fn a_queued_dsn_is_an_expanded_event() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = with_hooks(dir.path(), 100);
    let mut report = envelope(&["sender@app.test"]);
    report.kind = MessageKind::Dsn;
    report.mail_from = String::new();
    let id = spool.submit(report, body(100)).await.expect("submit");
    let pending = spool.webhook_pending(ALL, 100).expect("read");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.event, WebhookEventKind::Expanded);
    assert_eq!(pending[0].1.queue_id, id);
    assert_eq!(pending[0].1.recipient, "sender@app.test");
    assert!(kinds(&spool, BOUNCES).is_empty());
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_events_and_counts_them() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = with_hooks(dir.path(), 2);
    for rcpt in ["a@example.net", "b@example.net", "c@example.net"] {
        let id = spool
            .submit(envelope(&[rcpt]), body(10))
            .await
            .expect("submit");
        spool
            .record(
                id,
                vec![delivered(0)],
                vec![attempt(vec![0], AttemptOutcome::Delivered)],
            )
            .await
            .expect("record");
    }
    let pending = spool.webhook_pending(ALL, 100).expect("read");
    let recipients: Vec<_> = pending.iter().map(|(_, e)| e.recipient.as_str()).collect();
    assert_eq!(recipients, ["b@example.net", "c@example.net"]);
    assert_eq!(spool.webhook_queued(ALL).expect("count"), 2);
    assert_eq!(spool.webhook_dropped(), 1);
}

#[tokio::test]
async fn an_administrators_delete_and_bounce_are_events_for_the_recipients_still_queued() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = with_hooks(dir.path(), 100);
    let deleted = spool
        .submit(envelope(&["a@example.net", "b@example.net"]), body(10))
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
    assert_eq!(spool.delete(deleted).await.expect("delete"), 1);
    let bounced = spool
        .submit(envelope(&["c@example.net"]), body(10))
        .await
        .expect("submit");
    spool.bounce(bounced, |_, _| None).await.expect("bounce");
    let pending = spool.webhook_pending(ALL, 100).expect("read");
    let seen: Vec<_> = pending
        .iter()
        .map(|(_, e)| (e.event, e.recipient.as_str(), e.status.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (WebhookEventKind::Delivered, "a@example.net", None),
            (WebhookEventKind::Deleted, "b@example.net", None),
            (WebhookEventKind::Bounced, "c@example.net", Some("5.0.0")),
        ]
    );
    assert_eq!(pending[1].1.reply, "deleted by an administrator");
    assert!(pending[2].1.receipt.is_none(), "no attempt decided it");
    assert_eq!(kinds(&spool, BOUNCES), [WebhookEventKind::Bounced]);
}

#[tokio::test]
async fn replaced_webhooks_get_the_next_events_and_a_forgotten_webhooks_queue_is_removed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = with_hooks(dir.path(), 100);
    let deliver = |rcpt: &'static str| {
        let spool = spool.clone();
        async move {
            let id = spool
                .submit(envelope(&[rcpt]), body(10))
                .await
                .expect("submit");
            spool
                .record(
                    id,
                    vec![bounced(0)],
                    vec![attempt(vec![0], AttemptOutcome::Bounced)],
                )
                .await
                .expect("record");
        }
    };
    deliver("a@example.net").await;
    spool.replace_webhooks(WebhookSettings {
        hooks: vec![WebhookTarget {
            name: BOUNCES.into(),
            events: vec![WebhookEventKind::Bounced],
            max_queued: 100,
        }],
    });
    deliver("b@example.net").await;
    assert_eq!(spool.webhook_queued(ALL).expect("count"), 1, "only before");
    assert_eq!(spool.webhook_queued(BOUNCES).expect("count"), 2);
    assert_eq!(
        spool
            .webhook_forget(vec![BOUNCES.into()])
            .await
            .expect("forget"),
        1
    );
    assert!(spool.webhook_pending(ALL, 100).expect("read").is_empty());
    assert_eq!(spool.webhook_queued(ALL).expect("count"), 0);
    assert_eq!(spool.webhook_queued(BOUNCES).expect("count"), 2);
}
