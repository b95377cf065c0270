//! Idempotent submission for the HTTP API: a client's `idempotency_key` is stored with the
//! answer it got, in the transaction that stores the message, so a repeat within the window
//! gets that answer and queues nothing, even across a crash or restart. Keys are pruned by a
//! separate, lazily flushed transaction, never by the submissions themselves.
//!
//! What the answer says is the caller's: the spool keeps its octets.

use std::time::{Duration, SystemTime};

use redb::{ReadableTable, TableDefinition};

use crate::id::MessageId;
use crate::time::unix_millis;
use crate::writer::{self, Ctx, OpError, Tables};
use crate::{Envelope, Spool, SpoolError};

/// key → (stored at, unix ms; the first answer).
const KEYS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("idempotency_keys");
/// (stored at, key): the order keys expire in.
const BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("idempotency_by_time");
/// key → the fingerprint of the request that first used it; absent for keys stored before
/// fingerprints were.
const FINGERPRINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency_fingerprints");

/// How long a key is remembered: a repeat after this is a new message.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// An idempotency key as a submission brings it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// What identifies the request (a digest of it, the caller's to choose): a repeat must
    /// bring the same, or it is another request under a key already used.
    pub fingerprint: Vec<u8>,
    /// The answer to remember with the key.
    pub answer: Vec<u8>,
}

/// What a submission with a key came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Stored under this id; the answer was remembered with the key.
    New(MessageId),
    /// The key was used within the window: this is the first answer, and nothing was queued.
    Repeat(Vec<u8>),
    /// The key was used within the window for another request: nothing was queued, and the
    /// first answer is not this request's.
    Reused,
}

impl Spool {
    /// [`Spool::submit_reserved`] once per key within [`IDEMPOTENCY_WINDOW`]: the key, its
    /// fingerprint and answer are committed (with fdatasync) with the message; a repeat with
    /// the same fingerprint gets the first answer back, one with another gets
    /// [`Submitted::Reused`], and neither stores anything.
    pub async fn submit_once(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
        once: IdempotencyKey,
    ) -> Result<Submitted, SpoolError> {
        self.execute(move |t, ctx| submit_once(t, ctx, id, envelope, body, &once))
            .await
    }

    /// Forgets keys stored more than [`IDEMPOTENCY_WINDOW`] ago, at most `max` of them;
    /// returns how many. Answered once committed (a crash merely keeps them a little longer).
    pub async fn prune_idempotency(&self, max: usize) -> Result<usize, SpoolError> {
        self.execute_lazily(move |t, ctx| prune(t, ctx.now, max).map_err(OpError::Abort))
            .await
    }
}

fn submit_once(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    id: MessageId,
    envelope: Envelope,
    body: Vec<u8>,
    once: &IdempotencyKey,
) -> Result<Submitted, OpError> {
    let abort = |e: redb::TableError| OpError::Abort(e.into());
    let cutoff = cutoff(ctx.now);
    let key = once.key.as_str();
    {
        let keys = tables.txn.open_table(KEYS).map_err(abort)?;
        if let Some(found) = keys.get(key)? {
            let (stored, first) = found.value();
            if stored >= cutoff {
                let fingerprints = tables.txn.open_table(FINGERPRINTS).map_err(abort)?;
                let same = fingerprints
                    .get(key)?
                    .is_none_or(|f| f.value() == once.fingerprint.as_slice());
                return Ok(match same {
                    true => Submitted::Repeat(first.to_vec()),
                    false => Submitted::Reused,
                });
            }
        }
    }
    let id = writer::submit(tables, ctx, Some(id), envelope, body)?;
    let now = unix_millis(ctx.now);
    tables
        .txn
        .open_table(FINGERPRINTS)
        .map_err(abort)?
        .insert(key, once.fingerprint.as_slice())?;
    let mut keys = tables.txn.open_table(KEYS).map_err(abort)?;
    if let Some(old) = keys.insert(key, (now, once.answer.as_slice()))? {
        // An expired key used again: its old time index entry goes with it.
        let (stored, _) = old.value();
        let mut by_time = tables.txn.open_table(BY_TIME).map_err(abort)?;
        by_time.remove((stored, key))?;
    }
    let mut by_time = tables.txn.open_table(BY_TIME).map_err(abort)?;
    by_time.insert((now, key), ())?;
    Ok(Submitted::New(id))
}

fn cutoff(now: SystemTime) -> u64 {
    unix_millis(now).saturating_sub(u64::try_from(IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(0))
}

fn prune(tables: &mut Tables<'_>, now: SystemTime, max: usize) -> Result<usize, redb::Error> {
    let cutoff = cutoff(now);
    let mut by_time = tables.txn.open_table(BY_TIME)?;
    let mut expired = Vec::new();
    for entry in by_time.range::<(u64, &str)>(..(cutoff, ""))?.take(max) {
        let (key, _) = entry?;
        let (stored, name) = key.value();
        expired.push((stored, name.to_owned()));
    }
    let mut keys = tables.txn.open_table(KEYS)?;
    let mut fingerprints = tables.txn.open_table(FINGERPRINTS)?;
    for (stored, name) in &expired {
        by_time.remove((*stored, name.as_str()))?;
        keys.remove(name.as_str())?;
        fingerprints.remove(name.as_str())?;
    }
    Ok(expired.len())
}
