//! What the spool does when storage misbehaves: a commit that fails because the disk is full
//! fails every operation in its batch and nothing else, and the spool keeps working once space
//! is back; damaged records are reported with their message id and table, never a panic.

mod common;

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use common::*;
use redb::backends::FileBackend;
use redb::{BackendError, Builder, Database, DatabaseError, StorageBackend, TableDefinition};
use strictmx_spool::{Spool, SpoolError, StoreOpener};

/// A file backend whose writes, syncs and resizes fail with "no space left" while `full` is set.
#[derive(Debug)]
struct FillableDisk {
    file: FileBackend,
    full: Arc<AtomicBool>,
}

impl FillableDisk {
    fn check(&self) -> Result<(), io::Error> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        Ok(())
    }
}

impl StorageBackend for FillableDisk {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check()?;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.check()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check()?;
        self.file.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[derive(Debug)]
struct FillableOpener {
    full: Arc<AtomicBool>,
}

impl StoreOpener for FillableOpener {
    fn open(&self, path: &Path) -> Result<Database, DatabaseError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let disk = FillableDisk {
            file: FileBackend::new(file)?,
            full: Arc::clone(&self.full),
        };
        Builder::new().create_with_backend(disk)
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_whole_batch_and_the_spool_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let full = Arc::new(AtomicBool::new(false));
    let opener = Arc::new(FillableOpener {
        full: Arc::clone(&full),
    });
    let spool = Spool::open_with(&settings(dir.path()), opener).expect("open");
    let before = spool
        .submit(envelope(&["a@x.test"]), body(2048))
        .await
        .expect("submit");

    full.store(true, Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let spool = spool.clone();
        tasks.spawn(async move { spool.submit(envelope(&["b@x.test"]), body(2048)).await });
    }
    let record = spool.record(before, vec![delivered(0)], vec![]).await;
    while let Some(result) = tasks.join_next().await {
        let error = result
            .expect("task")
            .expect_err("nothing commits on a full disk");
        assert!(error.is_transient(), "{error}");
    }
    let error = record.expect_err("the record was in a failed batch");
    assert!(
        matches!(error, SpoolError::Commit { .. } | SpoolError::Reopening),
        "{error}"
    );
    assert!(spool.stats().failed_commits >= 1);

    full.store(false, Ordering::SeqCst);
    let after = spool
        .submit(envelope(&["c@x.test"]), body(2048))
        .await
        .expect("space is back");
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
