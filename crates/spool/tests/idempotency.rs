//! Idempotency keys through the public API on a real redb file: a repeat gets the first answer
//! and queues nothing, also after a restart; another key queues another message.

mod common;

use common::*;
use strictmx_spool::{IdempotencyKey, MessageId, Spool, Submitted};

/// Submits a message to `to` under `id` with `key`, the request's `fingerprint` and the
/// `answer` to remember.
async fn send(
    spool: &Spool,
    id: MessageId,
    to: &str,
    key: &str,
    fingerprint: &[u8],
    answer: &[u8],
) -> Submitted {
    let once = IdempotencyKey {
        key: key.to_owned(),
        fingerprint: fingerprint.to_vec(),
        answer: answer.to_vec(),
    };
    spool
        .submit_once(id, envelope(&[to]), body(100), once)
        .await
        .expect("submit")
}

#[tokio::test]
async fn a_repeated_key_gets_the_first_answer_and_queues_nothing_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let first = spool.reserve_id();
    let submitted = send(&spool, first, "a@x.example", "app:k1", b"request", b"first").await;
    assert_eq!(submitted, Submitted::New(first));
    let again = spool.reserve_id();
    let repeat = send(
        &spool,
        again,
        "a@x.example",
        "app:k1",
        b"request",
        b"second",
    )
    .await;
    assert_eq!(repeat, Submitted::Repeat(b"first".to_vec()));
    assert_eq!(spool.list().expect("list").len(), 1);
    drop(spool);

    let spool = open(dir.path());
    let id = spool.reserve_id();
    let repeat = send(&spool, id, "a@x.example", "app:k1", b"request", b"third").await;
    assert_eq!(repeat, Submitted::Repeat(b"first".to_vec()));
    let other = spool.reserve_id();
    let new = send(&spool, other, "a@x.example", "app:k2", b"request", b"k2").await;
    assert_eq!(new, Submitted::New(other));
    assert_eq!(spool.list().expect("list").len(), 2);
    assert_eq!(
        spool.prune_idempotency(100).await.expect("prune"),
        0,
        "both keys are fresh"
    );
}

/// A key used again within the window by a request with another fingerprint (a client bug
/// that would otherwise drop a different message silently) queues nothing and is told so; the
/// first request's repeat still gets its answer.
#[tokio::test]
async fn a_key_reused_for_another_request_is_refused_and_queues_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let first = spool.reserve_id();
    let submitted = send(
        &spool,
        first,
        "a@x.example",
        "app:k1",
        b"reset for a",
        b"first",
    )
    .await;
    assert_eq!(submitted, Submitted::New(first));
    let id = spool.reserve_id();
    let other = send(
        &spool,
        id,
        "b@x.example",
        "app:k1",
        b"reset for b",
        b"second",
    )
    .await;
    assert_eq!(other, Submitted::Reused);
    assert_eq!(spool.list().expect("list").len(), 1);
    drop(spool);

    let spool = open(dir.path());
    let id = spool.reserve_id();
    let repeat = send(
        &spool,
        id,
        "a@x.example",
        "app:k1",
        b"reset for a",
        b"third",
    )
    .await;
    assert_eq!(repeat, Submitted::Repeat(b"first".to_vec()));
    assert_eq!(spool.list().expect("list").len(), 1);
}
