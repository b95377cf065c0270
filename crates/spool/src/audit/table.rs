//! The audit trail's tables in the spool's store. The records are kept in the order they were
//! written, under a sequence number, so that the commit making recipients final only appends
//! to one table (one page at its right edge, beside the `meta` counters it already writes).
//! Four indexes (final time, queue id, `Message-ID`, recipient domain) are built from the
//! records a batch at a time by later commits, up to a watermark kept in `meta`; readers look
//! at the few records past the watermark directly. Pruning takes the oldest indexed records.
//!
//! A crash loses nothing: records and the watermark are committed together with what they
//! describe, and indexing resumes from the watermark. What a record says is `audit`'s.

use std::collections::VecDeque;

use redb::{ReadableTable, Table, TableDefinition, TableError, WriteTransaction};
use serde::Deserialize;
use strictmx_protocol::ErrorChain;

use super::{AuditRecord, message_id_key};
use crate::error::SpoolError;
use crate::id::MessageId;

/// sequence number → JSON [`AuditRecord`], in the order they were written.
pub(crate) const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// (final time in unix ms, sequence) → ().
pub(crate) const BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("audit_by_time");
/// (queue id, recipient index) → sequence.
pub(crate) const BY_QUEUE_ID: TableDefinition<(u64, u32), u64> =
    TableDefinition::new("audit_by_queue_id");
/// (Message-ID without angle brackets, sequence) → ().
pub(crate) const BY_MESSAGE_ID: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("audit_by_message_id");
/// (recipient domain, final time in unix ms, sequence) → ().
pub(crate) const BY_DOMAIN: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("audit_by_domain");

/// `meta` keys: the sequence number the next record gets, and the first one not indexed.
pub(crate) const META_NEXT: &str = "audit_next";
pub(crate) const META_INDEXED: &str = "audit_indexed";

type Meta<'t> = Table<'t, &'static str, u64>;

/// What indexing and pruning need of a record, decoded without the rest.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct Facts {
    #[serde(with = "crate::id::hex")]
    queue_id: MessageId,
    index: u32,
    message_id: Option<String>,
    domain: String,
    #[serde(with = "crate::time::millis")]
    final_at: std::time::SystemTime,
}

impl Facts {
    pub(crate) fn of(record: &AuditRecord) -> Facts {
        Facts {
            queue_id: record.queue_id,
            index: record.index,
            message_id: record.message_id.clone(),
            domain: record.domain.clone(),
            // Stored in whole milliseconds.
            final_at: crate::time::from_unix_millis(crate::time::unix_millis(record.final_at)),
        }
    }

    fn final_ms(&self) -> u64 {
        crate::time::unix_millis(self.final_at)
    }
}

fn meta_value(meta: &Meta<'_>, key: &str) -> Result<u64, redb::StorageError> {
    Ok(meta.get(key)?.map_or(0, |v| v.value()))
}

/// Appends one record; the only audit write on the path that makes recipients final.
/// Appends `records` in order, with what indexing will need of each: `written` keeps those
/// facts so that the commit that indexes them need not decode the records again.
pub(crate) fn append(
    records: &mut Records<'_>,
    meta: &mut Meta<'_>,
    entries: Vec<(Vec<u8>, Facts)>,
    written: &mut Written,
) -> Result<(), redb::StorageError> {
    let mut seq = meta_value(meta, META_NEXT)?;
    for (bytes, facts) in entries {
        records.insert(seq, bytes.as_slice())?;
        written.keep(seq, facts);
        seq = seq.saturating_add(1);
    }
    meta.insert(META_NEXT, seq)?;
    Ok(())
}

/// The facts of the records this writer appended and did not index yet, oldest first, at
/// most [`Written::MAX`] (older ones are decoded from their records when indexed). They
/// describe what is committed only while every commit since they were kept succeeded: the
/// writer forgets them all when one fails.
#[derive(Debug, Default)]
pub(crate) struct Written {
    facts: VecDeque<(u64, Facts)>,
}

impl Written {
    const MAX: usize = 4096;

    fn keep(&mut self, seq: u64, facts: Facts) {
        if self.facts.len() >= Self::MAX {
            self.facts.pop_front();
        }
        self.facts.push_back((seq, facts));
    }

    /// The facts kept for `seq`, dropping any kept for earlier records.
    fn take(&mut self, seq: u64) -> Option<Facts> {
        while let Some(&(kept, _)) = self.facts.front() {
            if kept > seq {
                return None;
            }
            let (kept, facts) = self.facts.pop_front()?;
            if kept == seq {
                return Some(facts);
            }
        }
        None
    }

    pub(crate) fn forget(&mut self) {
        self.facts.clear();
    }
}

/// How many records were written and not yet indexed.
pub(crate) fn unindexed(meta: &Meta<'_>) -> Result<u64, redb::StorageError> {
    Ok(meta_value(meta, META_NEXT)?.saturating_sub(meta_value(meta, META_INDEXED)?))
}

type Records<'t> = Table<'t, u64, &'static [u8]>;

/// The index tables of one write transaction, opened only by a commit that indexes or prunes.
pub(crate) struct AuditIndexes<'t> {
    by_time: Table<'t, (u64, u64), ()>,
    by_queue_id: Table<'t, (u64, u32), u64>,
    by_message_id: Table<'t, (&'static str, u64), ()>,
    by_domain: Table<'t, (&'static str, u64, u64), ()>,
}

impl<'t> AuditIndexes<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, TableError> {
        Ok(AuditIndexes {
            by_time: txn.open_table(BY_TIME)?,
            by_queue_id: txn.open_table(BY_QUEUE_ID)?,
            by_message_id: txn.open_table(BY_MESSAGE_ID)?,
            by_domain: txn.open_table(BY_DOMAIN)?,
        })
    }

    /// Creates every audit table in a new store, so that readers find them.
    pub(crate) fn create(txn: &WriteTransaction) -> Result<(), TableError> {
        txn.open_table(RECORDS)?;
        AuditIndexes::open(txn).map(drop)
    }

    /// Indexes up to `max` records past the watermark and moves it on; returns how many.
    pub(crate) fn index(
        &mut self,
        records: &Records<'_>,
        meta: &mut Meta<'_>,
        max: u64,
        written: &mut Written,
    ) -> Result<u64, redb::StorageError> {
        let first = meta_value(meta, META_INDEXED)?;
        let end = meta_value(meta, META_NEXT)?.min(first.saturating_add(max));
        for seq in first..end {
            let facts = match written.take(seq) {
                Some(facts) => facts,
                None => match facts(records, seq)? {
                    Some(facts) => facts,
                    None => continue,
                },
            };
            let at = facts.final_ms();
            self.by_time.insert((at, seq), ())?;
            self.by_queue_id
                .insert((facts.queue_id, facts.index), seq)?;
            if let Some(message_id) = &facts.message_id {
                self.by_message_id
                    .insert((message_id_key(message_id), seq), ())?;
            }
            self.by_domain
                .insert((facts.domain.as_str(), at, seq), ())?;
        }
        meta.insert(META_INDEXED, end)?;
        Ok(end - first)
    }

    /// Removes up to `max` indexed records that became final before `cutoff_ms`, oldest
    /// first, with their index entries; returns how many.
    pub(crate) fn prune(
        &mut self,
        records: &mut Records<'_>,
        cutoff_ms: u64,
        max: usize,
    ) -> Result<usize, redb::StorageError> {
        let mut old = Vec::with_capacity(max);
        for entry in self.by_time.range(..(cutoff_ms, 0))?.take(max) {
            let (key, _) = entry?;
            old.push(key.value());
        }
        for &(at, seq) in &old {
            self.by_time.remove((at, seq))?;
            if let Some(facts) = facts(records, seq)? {
                let queue_key = (facts.queue_id, facts.index);
                if self.by_queue_id.get(queue_key)?.map(|v| v.value()) == Some(seq) {
                    self.by_queue_id.remove(queue_key)?;
                }
                if let Some(message_id) = &facts.message_id {
                    self.by_message_id
                        .remove((message_id_key(message_id), seq))?;
                }
                self.by_domain.remove((facts.domain.as_str(), at, seq))?;
            }
            records.remove(seq)?;
        }
        Ok(old.len())
    }
}

/// The facts of record `seq`; `None` (logged) when it is missing or does not decode.
fn facts(records: &Records<'_>, seq: u64) -> Result<Option<Facts>, redb::StorageError> {
    let Some(bytes) = records.get(seq)? else {
        return Ok(None);
    };
    Ok(decode_facts(seq, bytes.value()))
}

/// The facts of a stored record; a damaged one is logged and left out.
pub(crate) fn decode_facts(seq: u64, bytes: &[u8]) -> Option<Facts> {
    serde_json::from_slice::<Facts>(bytes)
        .map_err(|e| {
            tracing::error!(seq, error = %ErrorChain(&e), "damaged audit record left out of the indexes");
        })
        .ok()
}

pub(crate) fn read_err(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::storage("reading the audit trail")(e.into())
}

/// Record `seq`, if it is still there and decodes (a damaged one is logged and skipped).
pub(crate) fn read_record(
    records: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
) -> Result<Option<AuditRecord>, SpoolError> {
    match records.get(seq).map_err(read_err)? {
        Some(bytes) => Ok(decode(seq, bytes.value())),
        None => Ok(None),
    }
}

fn decode(seq: u64, bytes: &[u8]) -> Option<AuditRecord> {
    serde_json::from_slice(bytes)
        .map_err(|e| {
            tracing::error!(seq, error = %ErrorChain(&e), "damaged audit record skipped");
        })
        .ok()
}

/// The records past the watermark, oldest first: written, not yet indexed.
pub(crate) fn read_unindexed(
    records: &impl ReadableTable<u64, &'static [u8]>,
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Vec<AuditRecord>, SpoolError> {
    let first = meta
        .get(META_INDEXED)
        .map_err(read_err)?
        .map_or(0, |v| v.value());
    let mut found = Vec::new();
    for entry in records.range(first..).map_err(read_err)? {
        let (key, value) = entry.map_err(read_err)?;
        found.extend(decode(key.value(), value.value()));
    }
    Ok(found)
}

/// The sequence numbers indexed under a Message-ID.
pub(crate) fn seqs_of_message_id(
    by_message_id: &impl ReadableTable<(&'static str, u64), ()>,
    message_id: &str,
) -> Result<Vec<u64>, SpoolError> {
    let key = message_id_key(message_id);
    let mut found = Vec::new();
    for entry in by_message_id
        .range((key, 0)..=(key, u64::MAX))
        .map_err(read_err)?
    {
        let (key, _) = entry.map_err(read_err)?;
        found.push(key.value().1);
    }
    Ok(found)
}

/// The sequence numbers indexed under a queue id, in recipient order.
pub(crate) fn seqs_of_queue_id(
    by_queue_id: &impl ReadableTable<(u64, u32), u64>,
    id: MessageId,
) -> Result<Vec<u64>, SpoolError> {
    let mut found = Vec::new();
    for entry in by_queue_id
        .range((id, 0)..=(id, u32::MAX))
        .map_err(read_err)?
    {
        let (_, seq) = entry.map_err(read_err)?;
        found.push(seq.value());
    }
    Ok(found)
}
