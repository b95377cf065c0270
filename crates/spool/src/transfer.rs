//! Moving messages between strictmx nodes (`queue xfer`, `serve --drain`), the spool's part of
//! it on both sides: the sender leases a message's queued recipients so that the queue runner
//! leaves them alone while they travel, and the receiver remembers which (transfer id,
//! recipient) pairs it already queued, so that a repeat after a crash is answered `250` without
//! being queued twice. Speaking SMTP to the other node is `strictmx-delivery`'s.
//!
//! The memory is kept for `SpoolSettings::transfer_memory` and pruned a batch at a time by the
//! transfers themselves, so it never grows beyond what that period brought in.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::SpoolError;
use crate::id::{MessageId, MessageIdDisplay};
use crate::spool::Spool;
use crate::store::{self, ENVELOPES, RECIPIENTS};
use crate::time::unix_millis;
use crate::types::{DueMessage, DueRecipient, Envelope, RecipientState};
use crate::writer::{self, OpError};

/// "transfer id\nrecipient" → when it was received, in unix ms.
const RECEIVED: TableDefinition<&str, u64> = TableDefinition::new("transfers_received");
/// (received at in unix ms, "transfer id\nrecipient") → (), to prune the oldest first.
const RECEIVED_BY_AGE: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("transfers_received_by_age");

/// How many expired entries one transfer removes; enough to outpace what transfers add.
const PRUNE_BATCH: usize = 64;

/// What became of a message received from another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReceipt {
    /// The id it was queued under; `None` when every recipient had been received before.
    pub id: Option<MessageId>,
    /// Recipients left out because this node had already queued them under this transfer id.
    pub repeated: usize,
}

fn key(transfer: &str, recipient: &str) -> String {
    format!("{transfer}\n{recipient}")
}

fn abort(e: impl Into<redb::Error>) -> OpError {
    OpError::Abort(e.into())
}

impl Spool {
    /// The id this node gives message `id` when it transfers it: node id and queue id, unique
    /// across nodes and restarts.
    pub fn transfer_id(&self, id: MessageId) -> String {
        format!("{}.{}@strictmx", self.node_id(), MessageIdDisplay(id))
    }

    /// Queues a message another node transferred under `transfer`, without the recipients
    /// already received under that id, and remembers the new ones, in one transaction: a crash
    /// keeps both or neither. With every recipient a repeat, nothing is queued.
    pub async fn submit_transfer(
        &self,
        reserved: MessageId,
        transfer: String,
        mut envelope: Envelope,
        body: Vec<u8>,
    ) -> Result<TransferReceipt, SpoolError> {
        let keep = self.shared().transfer_memory;
        self.execute(move |t, ctx| {
            let now_ms = unix_millis(ctx.now);
            let mut received = t.txn.open_table(RECEIVED).map_err(abort)?;
            let mut by_age = t.txn.open_table(RECEIVED_BY_AGE).map_err(abort)?;
            if let Some(cutoff) = ctx.now.checked_sub(keep) {
                prune(&mut received, &mut by_age, unix_millis(cutoff))?;
            }
            let before = envelope.recipients.len();
            let mut fresh = Vec::with_capacity(before);
            for recipient in envelope.recipients {
                if received
                    .get(key(&transfer, &recipient.address).as_str())?
                    .is_none()
                {
                    fresh.push(recipient);
                }
            }
            let repeated = before - fresh.len();
            if fresh.is_empty() {
                return Ok(TransferReceipt { id: None, repeated });
            }
            for recipient in &fresh {
                let key = key(&transfer, &recipient.address);
                received.insert(key.as_str(), now_ms)?;
                by_age.insert((now_ms, key.as_str()), ())?;
            }
            drop((received, by_age));
            envelope.recipients = fresh;
            let id = writer::submit(t, ctx, Some(reserved), envelope, body)?;
            Ok(TransferReceipt {
                id: Some(id),
                repeated,
            })
        })
        .await
    }

    /// How many (transfer id, recipient) pairs this node remembers now.
    pub fn transfers_remembered(&self) -> Result<u64, SpoolError> {
        let fail = SpoolError::storage("reading the transfers received");
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        match txn.open_table(RECEIVED) {
            Ok(table) => table.len().map_err(|e| fail(e.into())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(fail(e.into())),
        }
    }

    /// Leases every queued recipient of `id` that no delivery holds now, for a transfer to
    /// another node; `None` when the message is gone or none is free (held recipients stay
    /// where they are). The caller records the ones the other node took (`record`) and gives
    /// the others back (`release_leases`); a crash gives them all back.
    pub fn lease_for_transfer(&self, id: MessageId) -> Result<Option<DueMessage>, SpoolError> {
        let fail = SpoolError::storage("reading a message to transfer");
        // Before the snapshot, for the reason `due` gives.
        let mut leases = self.lock_leases();
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let envelopes = txn.open_table(ENVELOPES).map_err(|e| fail(e.into()))?;
        let recipients = txn.open_table(RECIPIENTS).map_err(|e| fail(e.into()))?;
        let Some(record) = store::read_envelope(&envelopes, id)? else {
            return Ok(None);
        };
        let states = store::read_states_for(&recipients, id, &record.envelope)?;
        let mut free = Vec::new();
        for (index, (recipient, state)) in
            record.envelope.recipients.iter().zip(&states).enumerate()
        {
            let Some(stored) = store::stored_index(index) else {
                continue;
            };
            let RecipientState::Queued {
                attempts,
                delay_dsn_sent,
                ..
            } = state
            else {
                continue;
            };
            if leases.contains(&(id, stored)) {
                continue;
            }
            free.push(DueRecipient {
                index,
                address: recipient.address.clone(),
                domain: store::domain_of(&recipient.address),
                attempts: *attempts,
                delay_dsn_sent: *delay_dsn_sent,
            });
        }
        if free.is_empty() {
            return Ok(None);
        }
        for recipient in &free {
            if let Some(stored) = store::stored_index(recipient.index) {
                leases.insert((id, stored));
            }
        }
        Ok(Some(DueMessage {
            id,
            size: record.size,
            envelope: record.envelope,
            recipients: free,
        }))
    }
}

/// Removes up to [`PRUNE_BATCH`] entries received before `cutoff_ms`.
fn prune(
    received: &mut redb::Table<'_, &'static str, u64>,
    by_age: &mut redb::Table<'_, (u64, &'static str), ()>,
    cutoff_ms: u64,
) -> Result<(), OpError> {
    let mut old: Vec<(u64, String)> = Vec::new();
    for entry in by_age.range(..(cutoff_ms, ""))?.take(PRUNE_BATCH) {
        let (at_key, _) = entry?;
        let (at, key) = at_key.value();
        old.push((at, key.to_owned()));
    }
    for (at, key) in &old {
        by_age.remove((*at, key.as_str()))?;
        // A key received again later has a newer entry; only an entry this old goes.
        if received
            .get(key.as_str())?
            .is_some_and(|v| v.value() == *at)
        {
            received.remove(key.as_str())?;
        }
    }
    if !old.is_empty() {
        tracing::debug!(pruned = old.len(), "transfer ids past their memory removed");
    }
    Ok(())
}
