//! The destinations' security postures, kept in the spool so that a weakening is noticed across
//! restarts: per destination domain the last posture seen, and a history of the changes that
//! weakened one, by time. Both are opaque bytes here (JSON written by `strictmx-delivery`'s
//! watch); what a posture is and what weakens it is `strictmx-policy`'s.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::error::SpoolError;
use crate::spool::Spool;
use crate::writer::OpError;

/// destination domain → its last posture.
const POSTURES: TableDefinition<&str, &[u8]> = TableDefinition::new("postures");
/// (Unix milliseconds, destination domain) → one recorded change.
const POSTURE_CHANGES: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("posture_changes");

/// How many old changes one write prunes at most, so no write scans a long history.
const PRUNE_BATCH: usize = 64;

fn abort(e: impl Into<redb::Error>) -> OpError {
    OpError::Abort(e.into())
}

fn read_fail(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::storage("reading the destination postures")(e.into())
}

/// A posture to store, with the change it makes when it weakened the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostureWrite {
    pub domain: String,
    pub posture: Vec<u8>,
    /// (Unix milliseconds, the change record).
    pub change: Option<(u64, Vec<u8>)>,
    /// Changes recorded before this time (Unix milliseconds) are dropped.
    pub keep_after_ms: u64,
}

impl Spool {
    /// Stores a destination's posture (and its change), durably; prunes a batch of changes
    /// older than `keep_after_ms`.
    pub async fn posture_put(&self, write: PostureWrite) -> Result<(), SpoolError> {
        self.execute(move |t, _| {
            let mut postures = t.txn.open_table(POSTURES).map_err(abort)?;
            postures
                .insert(write.domain.as_str(), write.posture.as_slice())
                .map_err(abort)?;
            let mut changes = t.txn.open_table(POSTURE_CHANGES).map_err(abort)?;
            if let Some((at, change)) = &write.change {
                changes
                    .insert((*at, write.domain.as_str()), change.as_slice())
                    .map_err(abort)?;
            }
            let old: Vec<(u64, String)> = changes
                .range(..(write.keep_after_ms, ""))
                .map_err(abort)?
                .take(PRUNE_BATCH)
                .filter_map(|entry| entry.ok())
                .map(|(key, _)| {
                    let (at, domain) = key.value();
                    (at, domain.to_owned())
                })
                .collect();
            for (at, domain) in old {
                changes.remove((at, domain.as_str())).map_err(abort)?;
            }
            Ok(())
        })
        .await
    }

    /// Every destination's last posture.
    pub fn postures(&self) -> Result<Vec<(String, Vec<u8>)>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let table = match txn.open_table(POSTURES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_fail(e)),
        };
        let mut all = Vec::new();
        for entry in table.iter().map_err(read_fail)? {
            let (key, value) = entry.map_err(read_fail)?;
            all.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(all)
    }

    /// The changes recorded at or after `since_ms`, oldest first: (time, domain, record).
    pub fn posture_changes(
        &self,
        since_ms: u64,
    ) -> Result<Vec<(u64, String, Vec<u8>)>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let table = match txn.open_table(POSTURE_CHANGES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_fail(e)),
        };
        let mut all = Vec::new();
        for entry in table.range((since_ms, "")..).map_err(read_fail)? {
            let (key, value) = entry.map_err(read_fail)?;
            let (at, domain) = key.value();
            all.push((at, domain.to_owned(), value.value().to_vec()));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Spool, SpoolSettings};

    use super::*;

    #[tokio::test]
    async fn postures_and_their_changes_survive_a_reopen_and_old_changes_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = SpoolSettings {
            data_dir: dir.path().to_owned(),
            ..SpoolSettings::default()
        };
        let spool = Spool::open(&settings).expect("spool");
        let write = |domain: &str, at: u64, keep_after_ms: u64| PostureWrite {
            domain: domain.to_owned(),
            posture: format!("{domain}@{at}").into_bytes(),
            change: Some((at, b"weaker".to_vec())),
            keep_after_ms,
        };
        spool
            .posture_put(write("a.example", 1_000, 0))
            .await
            .expect("put");
        spool
            .posture_put(write("b.example", 2_000, 0))
            .await
            .expect("put");
        spool
            .posture_put(write("a.example", 3_000, 1_500))
            .await
            .expect("put");
        drop(spool);
        let spool = Spool::open(&settings).expect("reopen");
        let mut postures = spool.postures().expect("postures");
        postures.sort();
        assert_eq!(
            postures,
            [
                ("a.example".to_owned(), b"a.example@3000".to_vec()),
                ("b.example".to_owned(), b"b.example@2000".to_vec()),
            ]
        );
        let changes: Vec<(u64, String)> = spool
            .posture_changes(0)
            .expect("changes")
            .into_iter()
            .map(|(at, domain, _)| (at, domain))
            .collect();
        // The change at 1,000 fell before keep_after_ms = 1,500 and was pruned.
        assert_eq!(
            changes,
            [
                (2_000, "b.example".to_owned()),
                (3_000, "a.example".to_owned())
            ]
        );
        assert_eq!(spool.posture_changes(2_500).expect("since").len(), 1);
    }
}
