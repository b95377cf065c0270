//! Reading the audit trail: one message's records by queue id or `Message-ID`, and searches
//! over a time range, through the recipient domain's index when the query names a domain.
//! Each runs on one redb read transaction in the caller's thread, beside the writer, and adds
//! the few records written since the last indexing (`table`) to what the indexes find.
//! `audit_after` reads the records in the order they were written, for a cluster's shared
//! index.

use redb::ReadableDatabase;

use super::table::{self, BY_DOMAIN, BY_MESSAGE_ID, BY_QUEUE_ID, BY_TIME, RECORDS, read_err};
use super::{AuditPage, AuditQuery, AuditRecord, message_id_key};
use crate::error::SpoolError;
use crate::id::MessageId;
use crate::spool::Spool;
use crate::store::META;
use crate::time::unix_millis;

impl Spool {
    /// Every record kept for message `id`, in recipient order; empty when none is (still
    /// queued, never seen, or pruned).
    pub fn audit_by_queue_id(&self, id: MessageId) -> Result<Vec<AuditRecord>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_err)?;
        let records = txn.open_table(RECORDS).map_err(read_err)?;
        let by_queue_id = txn.open_table(BY_QUEUE_ID).map_err(read_err)?;
        let meta = txn.open_table(META).map_err(read_err)?;
        let mut found = Vec::new();
        for seq in table::seqs_of_queue_id(&by_queue_id, id)? {
            found.extend(table::read_record(&records, seq)?);
        }
        found.extend(
            table::read_unindexed(&records, &meta)?
                .into_iter()
                .filter(|r| r.queue_id == id),
        );
        found.sort_by_key(|r| r.index);
        Ok(found)
    }

    /// Every record of the messages that carried `message_id` (with or without its angle
    /// brackets), by queue id and then recipient.
    pub fn audit_by_message_id(&self, message_id: &str) -> Result<Vec<AuditRecord>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_err)?;
        let records = txn.open_table(RECORDS).map_err(read_err)?;
        let by_message_id = txn.open_table(BY_MESSAGE_ID).map_err(read_err)?;
        let meta = txn.open_table(META).map_err(read_err)?;
        let key = message_id_key(message_id);
        let mut found = Vec::new();
        for seq in table::seqs_of_message_id(&by_message_id, key)? {
            found.extend(table::read_record(&records, seq)?);
        }
        found.extend(
            table::read_unindexed(&records, &meta)?
                .into_iter()
                .filter(|r| r.message_id.as_deref().map(message_id_key) == Some(key)),
        );
        found.sort_by_key(|r| (r.queue_id, r.index));
        Ok(found)
    }

    /// Up to `max` records from sequence number `first` on, in the order they were written,
    /// each with its sequence number: what a cluster node has not yet shared. A record that
    /// does not decode is logged and skipped (its number is not returned).
    pub fn audit_after(
        &self,
        first: u64,
        max: usize,
    ) -> Result<Vec<(u64, AuditRecord)>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_err)?;
        let records = txn.open_table(RECORDS).map_err(read_err)?;
        let mut found = Vec::new();
        for entry in records.range(first..).map_err(read_err)?.take(max) {
            let (key, _) = entry.map_err(read_err)?;
            let seq = key.value();
            found.extend(table::read_record(&records, seq)?.map(|r| (seq, r)));
        }
        Ok(found)
    }

    /// The records `query` selects, oldest first, at most `query.limit`. A query naming a
    /// recipient domain reads only that domain's index; any other reads every record in its
    /// time range. A record that does not decode is logged and skipped.
    pub fn audit_search(&self, query: &AuditQuery) -> Result<AuditPage, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_err)?;
        let records = txn.open_table(RECORDS).map_err(read_err)?;
        let meta = txn.open_table(META).map_err(read_err)?;
        let since = query.since.map_or(0, unix_millis);
        let until = query.until.map_or(u64::MAX, unix_millis);
        let mut found = Vec::new();
        // One more than the limit tells that the page is truncated.
        let mut take = |seq: u64| -> Result<bool, SpoolError> {
            if let Some(record) = table::read_record(&records, seq)?
                && query.matches(&record)
            {
                found.push(record);
            }
            Ok(found.len() <= query.limit)
        };
        match query.indexed_domain() {
            Some(domain) => {
                let by_domain = txn.open_table(BY_DOMAIN).map_err(read_err)?;
                let range = (domain.as_str(), since, 0)..(domain.as_str(), until, 0);
                for entry in by_domain.range(range).map_err(read_err)? {
                    let (key, _) = entry.map_err(read_err)?;
                    if !take(key.value().2)? {
                        break;
                    }
                }
            }
            None => {
                let by_time = txn.open_table(BY_TIME).map_err(read_err)?;
                for entry in by_time.range((since, 0)..(until, 0)).map_err(read_err)? {
                    let (key, _) = entry.map_err(read_err)?;
                    if !take(key.value().1)? {
                        break;
                    }
                }
            }
        }
        if found.len() <= query.limit {
            found.extend(
                table::read_unindexed(&records, &meta)?
                    .into_iter()
                    .filter(|r| query.matches(r)),
            );
            found.sort_by_key(|r| r.final_at);
        }
        let truncated = found.len() > query.limit;
        found.truncate(query.limit);
        Ok(AuditPage {
            records: found,
            truncated,
        })
    }
}
