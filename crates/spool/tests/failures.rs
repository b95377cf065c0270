//! What the spool does when storage misbehaves: a commit that fails because the disk is full
//! fails every operation in its batch and nothing else, and the spool keeps working once space
//! is back; damaged records are reported with their message id and table, never a panic.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use common::*;
use redb::{Database, TableDefinition};
use strictmx_spool::fault::FillableStore;
use strictmx_spool::{Spool, SpoolError};

#[tokio::test]
async fn a_full_disk_fails_the_whole_batch_and_the_spool_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FillableStore::default();
    let spool = Spool::open_with(&settings(dir.path()), Arc::new(store.clone())).expect("open");
    let before = spool
        .submit(envelope(&["a@x.test"]), body(2048))
        .await
        .expect("submit");

    store.set_full(true);
    // A delivery outcome is answered before its flush: it either fails at once or is lost with
    // the flush that fails next. Either way it never reaches the file.
    match spool.record(before, vec![delivered(0)], vec![]).await {
        Ok(()) | Err(SpoolError::Commit { .. } | SpoolError::Reopening) => {}
        Err(error) => panic!("unexpected record error: {error}"),
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let spool = spool.clone();
        tasks.spawn(async move { spool.submit(envelope(&["b@x.test"]), body(2048)).await });
    }
    while let Some(result) = tasks.join_next().await {
        let error = result
            .expect("task")
            .expect_err("nothing commits on a full disk");
        assert!(error.is_transient(), "{error}");
    }
    assert!(spool.stats().failed_commits >= 1);
    let reserved = spool.reserve_id();
    spool
        .submit_reserved(reserved, envelope(&["d@x.test"]), body(2048))
        .await
        .expect_err("nothing commits on a full disk");
    assert_eq!(
        spool.kept_body(reserved),
        None,
        "a body whose commit failed is not kept"
    );

    store.set_full(false);
    let after = spool
        .submit(envelope(&["c@x.test"]), body(2048))
        .await
        .expect("space is back");
    assert_eq!(spool.kept_body(after).as_deref(), Some(&body(2048)));
    assert_eq!(spool.body(before).expect("body"), body(2048));
    let stored = spool
        .message(before)
        .expect("read")
        .expect("the failed record changed nothing");
    assert!(!stored.states[0].is_final());
    assert_eq!(
        spool.stats().messages,
        2,
        "only the committed messages count"
    );
    drop(spool);

    let spool = open(dir.path());
    assert!(spool.message(before).expect("read").is_some());
    assert!(spool.message(after).expect("read").is_some());
    assert_eq!(
        spool.stats().messages,
        2,
        "nothing of the failed batches reached the file"
    );
}

const ENVELOPES: TableDefinition<u64, &[u8]> = TableDefinition::new("envelopes");

#[tokio::test]
async fn a_damaged_envelope_is_reported_with_its_id_and_does_not_block_the_queue() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (damaged, healthy) = {
        let spool = open(dir.path());
        let damaged = spool
            .submit(envelope(&["a@x.test"]), body(10))
            .await
            .expect("submit");
        let healthy = spool
            .submit(envelope(&["b@x.test"]), body(10))
            .await
            .expect("submit");
        (damaged, healthy)
    };
    {
        let db = Database::create(settings(dir.path()).data_dir.join("spool.redb")).expect("open");
        let txn = db.begin_write().expect("write");
        txn.open_table(ENVELOPES)
            .expect("table")
            .insert(damaged, b"{not json".as_slice())
            .expect("overwrite");
        txn.commit().expect("commit");
    }

    let spool = open(dir.path());
    assert_eq!(
        spool.stats().messages,
        1,
        "the damaged message is left out, not fatal"
    );
    let error = spool.message(damaged).expect_err("decoding fails");
    assert!(
        matches!(&error, SpoolError::Corrupt { table: "envelopes", id, .. } if id.0 == damaged),
        "{error}"
    );
    assert!(!error.is_transient());
    let due: Vec<_> = spool
        .due(SystemTime::now(), 10)
        .expect("due")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(due, [healthy]);
    assert!(
        spool
            .due(SystemTime::now(), 10)
            .expect("due again")
            .is_empty()
    );
}
