//! Reading the audit trail: one message's records by queue id or `Message-ID`, and searches
//! over a time range, through the recipient domain's index when the query names a domain.
//! Each runs on one redb read transaction in the caller's thread, beside the writer.

use redb::ReadableDatabase;
use strictmx_protocol::ErrorChain;

use super::table::{self, BY_DOMAIN, BY_MESSAGE_ID, BY_QUEUE_ID, RECORDS, read_err};
use super::{AuditPage, AuditQuery, AuditRecord};
use crate::error::SpoolError;
use crate::id::{MessageId, MessageIdDisplay};
use crate::spool::Spool;
use crate::time::unix_millis;

impl Spool {
    /// Every record kept for message `id`, in recipient order; empty when none is (still
    /// queued, never seen, or pruned).
    pub fn audit_by_queue_id(&self, id: MessageId) -> Result<Vec<AuditRecord>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_err)?;
        let by_queue_id = txn.open_table(BY_QUEUE_ID).map_err(read_err)?;
        let records = txn.open_table(RECORDS).map_err(read_err)?;
        let mut found = Vec::new();
        for key in table::keys_of_queue_id(&by_queue_id, id)? {
            found.extend(table::read_record(&records, key)?);
        }
        Ok(found)
    }

    /// Every record of the messages that carried `message_id` (with or without its angle
    /// brackets), by queue id and then recipient.
    pub fn audit_by_message_id(&self, message_id: &str) -> Result<Vec<AuditRecord>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_err)?;
        let by_message_id = txn.open_table(BY_MESSAGE_ID).map_err(read_err)?;
        let by_queue_id = txn.open_table(BY_QUEUE_ID).map_err(read_err)?;
        let records = txn.open_table(RECORDS).map_err(read_err)?;
        let mut found = Vec::new();
        for (id, index) in table::recipients_of_message_id(&by_message_id, message_id)? {
            let Some(at) = by_queue_id.get((id, index)).map_err(read_err)? else {
                continue;
            };
            found.extend(table::read_record(&records, (at.value(), id, index))?);
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
        let since = query.since.map_or(0, unix_millis);
        let until = query.until.map_or(u64::MAX, unix_millis);
        let mut page = AuditPage {
            records: Vec::new(),
            truncated: false,
        };
        let mut take = |record: AuditRecord| {
            if !query.matches(&record) {
                return true;
            }
            if page.records.len() >= query.limit {
                page.truncated = true;
                return false;
            }
            page.records.push(record);
            true
        };
        match query.indexed_domain() {
            Some(domain) => {
                let by_domain = txn.open_table(BY_DOMAIN).map_err(read_err)?;
                let range = (domain.as_str(), since, 0, 0)..(domain.as_str(), until, 0, 0);
                for entry in by_domain.range(range).map_err(read_err)? {
                    let (key, _) = entry.map_err(read_err)?;
                    let (_, at, id, index) = key.value();
                    let record = match table::read_record(&records, (at, id, index)) {
                        Ok(Some(record)) => record,
                        Ok(None) => continue,
                        Err(e) => {
                            skip_damaged(id, &e);
                            continue;
                        }
                    };
                    if !take(record) {
                        break;
                    }
                }
            }
            None => {
                for entry in records
                    .range((since, 0, 0)..(until, 0, 0))
                    .map_err(read_err)?
                {
                    let (key, value) = entry.map_err(read_err)?;
                    let (_, id, _) = key.value();
                    match crate::store::decode::<AuditRecord>("audit", id, value.value()) {
                        Ok(record) => {
                            if !take(record) {
                                break;
                            }
                        }
                        Err(e) => skip_damaged(id, &e),
                    }
                }
            }
        }
        Ok(page)
    }
}

fn skip_damaged(id: MessageId, error: &SpoolError) {
    tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(error), "damaged audit record skipped");
}
