//! Idempotency keys through the public API on a real redb file: a repeat gets the first answer
//! and queues nothing, also after a restart; another key queues another message.

mod common;

use common::*;

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
            "app:k1".into(),
            b"first".to_vec(),
        )
        .await
        .expect("submit");
    assert_eq!(submitted, strictmx_spool::Submitted::New(first));
    let again = spool.reserve_id();
    let repeat = spool
        .submit_once(
            again,
            envelope(&["a@x.example"]),
            body(100),
            "app:k1".into(),
            b"second".to_vec(),
        )
        .await
        .expect("repeat");
    assert_eq!(repeat, strictmx_spool::Submitted::Repeat(b"first".to_vec()));
    assert_eq!(spool.list().expect("list").len(), 1);
    drop(spool);

    let spool = open(dir.path());
    let id = spool.reserve_id();
    let repeat = spool
        .submit_once(
            id,
            envelope(&["a@x.example"]),
            body(100),
            "app:k1".into(),
            b"third".to_vec(),
        )
        .await
        .expect("repeat after restart");
    assert_eq!(repeat, strictmx_spool::Submitted::Repeat(b"first".to_vec()));
    let other = spool.reserve_id();
    let new = spool
        .submit_once(
            other,
            envelope(&["a@x.example"]),
            body(100),
            "app:k2".into(),
            b"k2".to_vec(),
        )
        .await
        .expect("another key");
    assert_eq!(new, strictmx_spool::Submitted::New(other));
    assert_eq!(spool.list().expect("list").len(), 2);
    assert_eq!(
        spool.prune_idempotency(100).await.expect("prune"),
        0,
        "both keys are fresh"
    );
}
