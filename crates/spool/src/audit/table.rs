//! The audit trail's tables in the spool's store: the records ordered by the time their
//! recipient became final, so a time range is one range read and pruning takes from the
//! front, plus three small indexes (queue id, `Message-ID`, recipient domain). Writing and
//! pruning run inside the writer's transactions; what a record says is `audit`'s.

use redb::{ReadableTable, Table, TableDefinition, TableError, WriteTransaction};

use super::{AuditRecord, message_id_key};
use crate::error::SpoolError;
use crate::id::{MessageId, MessageIdDisplay};
use crate::store;
use crate::time::unix_millis;

/// (final time in unix ms, queue id, recipient index) → JSON [`AuditRecord`].
pub(crate) const RECORDS: TableDefinition<(u64, u64, u32), &[u8]> = TableDefinition::new("audit");
/// (queue id, recipient index) → final time in unix ms: the record's key.
pub(crate) const BY_QUEUE_ID: TableDefinition<(u64, u32), u64> =
    TableDefinition::new("audit_by_queue_id");
/// (Message-ID without angle brackets, queue id, recipient index) → ().
pub(crate) const BY_MESSAGE_ID: TableDefinition<(&str, u64, u32), ()> =
    TableDefinition::new("audit_by_message_id");
/// (recipient domain, final time in unix ms, queue id, recipient index) → ().
pub(crate) const BY_DOMAIN: TableDefinition<(&str, u64, u64, u32), ()> =
    TableDefinition::new("audit_by_domain");

/// The audit tables of one write transaction, opened by the first operation that needs them.
pub(crate) struct AuditTables<'t> {
    records: Table<'t, (u64, u64, u32), &'static [u8]>,
    by_queue_id: Table<'t, (u64, u32), u64>,
    by_message_id: Table<'t, (&'static str, u64, u32), ()>,
    by_domain: Table<'t, (&'static str, u64, u64, u32), ()>,
}

impl<'t> AuditTables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, TableError> {
        Ok(AuditTables {
            records: txn.open_table(RECORDS)?,
            by_queue_id: txn.open_table(BY_QUEUE_ID)?,
            by_message_id: txn.open_table(BY_MESSAGE_ID)?,
            by_domain: txn.open_table(BY_DOMAIN)?,
        })
    }

    /// Creates the tables in a new store, so that readers find them.
    pub(crate) fn create(txn: &WriteTransaction) -> Result<(), TableError> {
        AuditTables::open(txn).map(drop)
    }

    /// Stores `record` (encoded as `bytes`) and its index entries. A record already kept for
    /// the same recipient is replaced, so each recipient has at most one.
    pub(crate) fn insert(
        &mut self,
        record: &AuditRecord,
        bytes: &[u8],
    ) -> Result<(), redb::StorageError> {
        let (id, index) = (record.queue_id, record.index);
        let at = unix_millis(record.final_at);
        let previous = self.by_queue_id.insert((id, index), at)?.map(|v| v.value());
        if let Some(previous) = previous {
            self.remove((previous, id, index))?;
        }
        self.records.insert((at, id, index), bytes)?;
        if let Some(message_id) = &record.message_id {
            self.by_message_id
                .insert((message_id_key(message_id), id, index), ())?;
        }
        self.by_domain
            .insert((record.domain.as_str(), at, id, index), ())?;
        Ok(())
    }

    /// Removes the record under `key` and its index entries (not the queue-id entry, which
    /// the caller replaces or removes).
    fn remove(&mut self, key: (u64, u64, u32)) -> Result<(), redb::StorageError> {
        let (at, id, index) = key;
        let Some(bytes) = self.records.remove(key)? else {
            return Ok(());
        };
        match store::decode::<AuditRecord>("audit", id, bytes.value()) {
            Ok(record) => {
                if let Some(message_id) = &record.message_id {
                    self.by_message_id
                        .remove((message_id_key(message_id), id, index))?;
                }
                self.by_domain
                    .remove((record.domain.as_str(), at, id, index))?;
            }
            // Its index entries stay; readers skip entries whose record is gone.
            Err(e) => {
                tracing::error!(msg_id = %MessageIdDisplay(id), error = %strictmx_protocol::ErrorChain(&e), "damaged audit record removed")
            }
        }
        Ok(())
    }

    /// Removes up to `max` records that became final before `cutoff_ms`, oldest first, with
    /// their index entries; returns how many.
    pub(crate) fn prune(
        &mut self,
        cutoff_ms: u64,
        max: usize,
    ) -> Result<usize, redb::StorageError> {
        let mut old = Vec::with_capacity(max);
        for entry in self.records.range(..(cutoff_ms, 0, 0))?.take(max) {
            let (key, _) = entry?;
            old.push(key.value());
        }
        for &key in &old {
            let (_, id, index) = key;
            self.remove(key)?;
            self.by_queue_id.remove((id, index))?;
        }
        Ok(old.len())
    }
}

pub(crate) fn read_err(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::storage("reading the audit trail")(e.into())
}

/// The record under `key`, if it is still there.
pub(crate) fn read_record(
    records: &impl ReadableTable<(u64, u64, u32), &'static [u8]>,
    key: (u64, u64, u32),
) -> Result<Option<AuditRecord>, SpoolError> {
    match records.get(key).map_err(read_err)? {
        Some(bytes) => store::decode("audit", key.1, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// The keys of every record kept for message `id`, in recipient order.
pub(crate) fn keys_of_queue_id(
    by_queue_id: &impl ReadableTable<(u64, u32), u64>,
    id: MessageId,
) -> Result<Vec<(u64, u64, u32)>, SpoolError> {
    let mut keys = Vec::new();
    for entry in by_queue_id
        .range((id, 0)..=(id, u32::MAX))
        .map_err(read_err)?
    {
        let (key, at) = entry.map_err(read_err)?;
        let (_, index) = key.value();
        keys.push((at.value(), id, index));
    }
    Ok(keys)
}

/// The (queue id, recipient index) pairs indexed under a Message-ID, in queue-id order.
pub(crate) fn recipients_of_message_id(
    by_message_id: &impl ReadableTable<(&'static str, u64, u32), ()>,
    message_id: &str,
) -> Result<Vec<(MessageId, u32)>, SpoolError> {
    let key = message_id_key(message_id);
    let mut found = Vec::new();
    for entry in by_message_id
        .range((key, 0, 0)..=(key, u64::MAX, u32::MAX))
        .map_err(read_err)?
    {
        let (key, _) = entry.map_err(read_err)?;
        let (_, id, index) = key.value();
        found.push((id, index));
    }
    Ok(found)
}
