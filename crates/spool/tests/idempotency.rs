//! Idempotency keys through the public API on a real redb file: a repeat gets the first answer
//! and queues nothing, also after a restart; another key queues another message.

mod common;

use common::*;
use strictmx_spool::{IdempotencyKey, Submitted};

/// A key with the fingerprint of the request that brings it, and the answer to remember.
fn once(key: &str, fingerprint: &[u8], answer: &[u8]) -> IdempotencyKey {
    IdempotencyKey {
        key: key.to_owned(),
        fingerprint: fingerprint.to_vec(),
        answer: answer.to_vec(),
    }
}

#[tokio::test]
async fn a_repeated_key_gets_the_first_answer_and_queues_nothing_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let first = spool.reserve_id();
    let submitted = spool
        .submit_once(
            first,
            envelope(&["a@x.example"]),
            body(100),
            once("app:k1", b"request", b"first"),
        )
        .await
        .expect("submit");
    assert_eq!(submitted, Submitted::New(first));
    let again = spool.reserve_id();
    let repeat = spool
        .submit_once(
            again,
            envelope(&["a@x.example"]),
            body(100),
            once("app:k1", b"request", b"second"),
        )
        .await
        .expect("repeat");
    assert_eq!(repeat, Submitted::Repeat(b"first".to_vec()));
    assert_eq!(spool.list().expect("list").len(), 1);
    drop(spool);

    let spool = open(dir.path());
    let id = spool.reserve_id();
    let repeat = spool
        .submit_once(
            id,
            envelope(&["a@x.example"]),
            body(100),
            once("app:k1", b"request", b"third"),
        )
        .await
        .expect("repeat after restart");
    assert_eq!(repeat, Submitted::Repeat(b"first".to_vec()));
    let other = spool.reserve_id();
    let new = spool
        .submit_once(
            other,
            envelope(&["a@x.example"]),
            body(100),
            once("app:k2", b"request", b"k2"),
        )
        .await
        .expect("another key");
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
    let submitted = spool
        .submit_once(
            first,
            envelope(&["a@x.example"]),
            body(100),
            once("app:k1", b"reset for a", b"first"),
        )
        .await
        .expect("submit");
    assert_eq!(submitted, Submitted::New(first));
    let other = spool
        .submit_once(
            spool.reserve_id(),
            envelope(&["b@x.example"]),
            body(100),
            once("app:k1", b"reset for b", b"second"),
        )
        .await
        .expect("reused");
    assert_eq!(other, Submitted::Reused);
    assert_eq!(spool.list().expect("list").len(), 1);
    drop(spool);

    let spool = open(dir.path());
    let repeat = spool
        .submit_once(
            spool.reserve_id(),
            envelope(&["a@x.example"]),
            body(100),
            once("app:k1", b"reset for a", b"third"),
        )
        .await
        .expect("repeat");
    assert_eq!(repeat, Submitted::Repeat(b"first".to_vec()));
    assert_eq!(spool.list().expect("list").len(), 1);
}
