//! The writer thread: the only place that opens write transactions. It takes every queued
//! operation (up to `commit_batch_max`), applies them in one transaction and commits (group
//! commit). A batch holding an operation whose caller needs it on disk (a submission, an
//! administrator's change) commits with `Durability::Immediate` (fdatasync) before any caller
//! is answered. A batch of delivery outcomes alone commits without a flush; the next flushing
//! commit carries it to disk, and the writer makes one itself at most [`FLUSH_WITHIN`] after
//! the first unflushed commit. A failed commit aborts the whole transaction, answers every
//! caller in it with the error and leaves the thread running. The operations' rules (merging states, deleting finished
//! messages, writing the audit records of recipients that became final and pruning old ones)
//! live here too; reads for queries are left to `spool`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use strictmx_protocol::{EnhancedStatus, ErrorChain, status};
use tokio::sync::{mpsc, oneshot};

use crate::audit::table::{self as audit_table, AuditIndexes};
use crate::audit::{self, Cause};
use crate::bodies::KeptEnvelope;
use crate::error::SpoolError;
use crate::held::HeldEnvelopes;
use crate::id::{IdAllocator, MessageId, MessageIdDisplay};
use crate::index::Counts;
use crate::settings::{AuditSettings, WebhookSettings};
use crate::spool::Shared;
use crate::store::{
    self, ATTEMPTS, BODIES, ENVELOPES, EnvelopeRecord, META, META_LAST_ID, RECIPIENTS, SCHEDULE,
    Slot,
};
use crate::time::unix_millis;
use crate::types::{
    AttemptRecord, BouncedMessage, Envelope, Glance, MessageKind, RecipientState, RecipientUpdate,
    Standing, StoredMessage,
};
use crate::webhook::{self, WebhookEvent};

/// The reply to the administrator for an administrative bounce (RFC 3463 §3.1: X.0.0, other
/// undefined status).
pub(crate) const ADMIN_BOUNCE_REPLY: &str = "administratively bounced";
pub(crate) const ADMIN_BOUNCE_STATUS: EnhancedStatus = status::OTHER_PERMANENT;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

/// The longest a committed but unflushed change waits for the fdatasync that makes it durable.
/// A crash inside that window loses at most the delivery outcomes recorded in it: those
/// recipients are delivered again (SMTP is at-least-once), and nothing accepted is lost.
pub(crate) const FLUSH_WITHIN: Duration = Duration::from_millis(100);

/// How long a batch of delivery outcomes alone waits for a submission to share its commit.
const HOLD_OUTCOMES: Duration = Duration::from_millis(2);

/// How often a commit also prunes expired audit records, and how many at most: a backlog
/// (after a long stop, or a shorter `keep`) goes a batch per commit, never all at once.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: usize = 128;

/// A commit indexes the audit records written since the last indexing once this many are
/// waiting, or once the oldest waited [`INDEX_WITHIN`]; at most [`INDEX_BATCH`] at a time.
/// Indexing many at once touches few index pages, where one at a time would touch four per
/// commit.
const INDEX_AFTER: u64 = 128;
const INDEX_WITHIN: Duration = Duration::from_secs(1);
const INDEX_BATCH: u64 = 512;

/// When the caller may be answered: after the fdatasync, or once committed (flushed within
/// [`FLUSH_WITHIN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    BeforeAnswer,
    Within,
}

/// One unit of work for the writer, boxed so that each operation keeps its own answer type.
pub(crate) type Command = Box<dyn Operation>;

/// An operation inside a batch: applied to the open transaction, answered after the commit.
pub(crate) trait Operation: Send {
    /// Applies the operation. A rejection (bad input, missing message, damaged record) is kept
    /// as this operation's answer and has written nothing; an error returned here is a failed
    /// write, and the caller aborts the whole batch.
    fn apply(&mut self, tables: &mut Tables<'_>, ctx: &mut Ctx) -> Result<(), redb::Error>;
    /// The transaction committed: send the result.
    fn answer(self: Box<Self>);
    /// The transaction failed: send `error`, unless the operation was already rejected.
    fn fail(self: Box<Self>, error: SpoolError);
    /// Whether the transaction carrying this operation must be flushed before answering.
    fn flush(&self) -> Flush;
}

/// Why an operation did not apply.
pub(crate) enum OpError {
    /// Bad input, a missing message or a damaged record, found before anything was written.
    Rejected(SpoolError),
    /// A write failed: the transaction is unusable and the batch is aborted.
    Abort(redb::Error),
}

impl From<SpoolError> for OpError {
    fn from(e: SpoolError) -> Self {
        OpError::Rejected(e)
    }
}

impl From<redb::StorageError> for OpError {
    fn from(e: redb::StorageError) -> Self {
        OpError::Abort(e.into())
    }
}

impl From<redb::TableError> for OpError {
    fn from(e: redb::TableError) -> Self {
        OpError::Abort(e.into())
    }
}

impl From<redb::Error> for OpError {
    fn from(e: redb::Error) -> Self {
        OpError::Abort(e)
    }
}

/// An operation made of a closure and the channel its caller waits on.
pub(crate) struct Op<F, T> {
    run: Option<F>,
    reply: Reply<T>,
    result: Option<Result<T, SpoolError>>,
    flush: Flush,
}

impl<F, T> Op<F, T>
where
    F: FnOnce(&mut Tables<'_>, &mut Ctx) -> Result<T, OpError> + Send + 'static,
    T: Send + 'static,
{
    pub(crate) fn command(run: F, reply: Reply<T>, flush: Flush) -> Command {
        Box::new(Op {
            run: Some(run),
            reply,
            result: None,
            flush,
        })
    }
}

impl<F, T> Operation for Op<F, T>
where
    F: FnOnce(&mut Tables<'_>, &mut Ctx) -> Result<T, OpError> + Send,
    T: Send,
{
    fn apply(&mut self, tables: &mut Tables<'_>, ctx: &mut Ctx) -> Result<(), redb::Error> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        match run(tables, ctx) {
            Ok(value) => self.result = Some(Ok(value)),
            Err(OpError::Rejected(e)) => self.result = Some(Err(e)),
            Err(OpError::Abort(e)) => return Err(e),
        }
        Ok(())
    }

    fn answer(self: Box<Self>) {
        let result = self.result.unwrap_or(Err(SpoolError::WriterStopped));
        // A caller that stopped waiting (a timed-out SMTP session) gets nothing; the operation
        // is committed regardless, and inbound's own timeout decides what the client hears.
        let _ = self.reply.send(result);
    }

    fn fail(self: Box<Self>, error: SpoolError) {
        let result = match self.result {
            Some(Err(rejected)) => Err(rejected),
            _ => Err(error),
        };
        let _ = self.reply.send(result);
    }

    fn flush(&self) -> Flush {
        self.flush
    }
}

/// In-memory changes to make once the transaction committed, in order.
#[derive(Debug)]
pub(crate) enum Effect {
    /// A message that counted for `before` in the queue figures now counts for `after`.
    Counted {
        before: Counts,
        after: Counts,
    },
    /// The message was deleted.
    Removed(MessageId),
    /// The body and envelope stored for a new message, kept for its delivery jobs and the
    /// queue runner.
    Kept(MessageId, Arc<Vec<u8>>, KeptEnvelope),
    Unlease(MessageId, Vec<u32>),
    UnleaseAll(MessageId),
    /// A recipient was put in the schedule, or one a job touched stays there: it may be due
    /// before what the runner's last look found.
    Scheduled,
    Wake,
}

/// What operations see besides the tables: the batch's clock, id allocation, effects, and
/// the audit trail's settings.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) now: SystemTime,
    /// Shared with `Spool::reserve_id`, so that ids handed out early never collide.
    ids: Arc<Mutex<IdAllocator>>,
    effects: Vec<Effect>,
    audit: AuditSettings,
    /// This batch's webhooks (`Shared::webhooks` when it began).
    webhooks: Arc<WebhookSettings>,
    /// Webhook events dropped because a webhook's queue was full; shared with the spool.
    webhook_dropped: Arc<AtomicU64>,
    /// When a commit next prunes the audit trail.
    next_prune: SystemTime,
    /// When a commit next indexes audit records, however few wait.
    next_index: SystemTime,
    /// This node's id, written into every audit record.
    node: Arc<str>,
    /// What indexing needs of the audit records appended since the last index.
    audit_written: audit_table::Written,
    /// Envelopes stored lately, decoded, for recording their outcomes.
    held: HeldEnvelopes,
}

impl Ctx {
    fn next_id(&self) -> MessageId {
        lock_ids(&self.ids).next(self.now)
    }
}

/// The allocator's lock; its state is one integer, consistent across a panic.
pub(crate) fn lock_ids(ids: &Mutex<IdAllocator>) -> MutexGuard<'_, IdAllocator> {
    ids.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The tables of one write transaction.
pub(crate) struct Tables<'t> {
    /// For tables an operation opens itself (TLSRPT counters, caches), so that batches which
    /// do not touch them do not open them.
    pub(crate) txn: &'t WriteTransaction,
    envelopes: Table<'t, u64, &'static [u8]>,
    bodies: Table<'t, u64, &'static [u8]>,
    recipients: Table<'t, (u64, u32), &'static [u8]>,
    /// Opened by the first operation that reads or writes attempt records: most commits do
    /// neither (a message delivered at its first attempt is deleted with none stored).
    attempts: Option<Table<'t, (u64, u32), &'static [u8]>>,
    schedule: Table<'t, (u64, u64, u32), ()>,
    meta: Table<'t, &'static str, u64>,
    /// Opened by the first operation that writes audit records.
    audit_records: Option<Table<'t, u64, &'static [u8]>>,
    /// Opened by a commit that indexes or prunes them.
    audit_indexes: Option<AuditIndexes<'t>>,
    /// Opened by the first operation that queues webhook events.
    webhook_events: Option<WebhookEvents<'t>>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Tables {
            txn,
            envelopes: txn.open_table(ENVELOPES)?,
            bodies: txn.open_table(BODIES)?,
            recipients: txn.open_table(RECIPIENTS)?,
            attempts: None,
            schedule: txn.open_table(SCHEDULE)?,
            meta: txn.open_table(META)?,
            audit_records: None,
            audit_indexes: None,
            webhook_events: None,
        })
    }

    /// The attempt records.
    fn attempts(&mut self) -> Result<&mut Table<'t, (u64, u32), &'static [u8]>, redb::TableError> {
        let txn = self.txn;
        Ok(match &mut self.attempts {
            Some(attempts) => attempts,
            slot => slot.insert(txn.open_table(ATTEMPTS)?),
        })
    }

    /// The audit records table and `meta`, which holds its counters.
    fn audit_records(
        &mut self,
    ) -> Result<(&mut AuditRecords<'t>, &mut Meta<'t>), redb::TableError> {
        let txn = self.txn;
        let records = match &mut self.audit_records {
            Some(records) => records,
            slot => slot.insert(txn.open_table(audit_table::RECORDS)?),
        };
        Ok((records, &mut self.meta))
    }

    /// The webhook events table and `meta`, which holds its counters.
    pub(crate) fn webhook_events(
        &mut self,
    ) -> Result<(&mut WebhookEvents<'t>, &mut Meta<'t>), redb::TableError> {
        let txn = self.txn;
        let events = match &mut self.webhook_events {
            Some(events) => events,
            slot => slot.insert(txn.open_table(webhook::EVENTS)?),
        };
        Ok((events, &mut self.meta))
    }

    /// The audit records, their indexes and `meta`.
    fn audit_all(
        &mut self,
    ) -> Result<(&mut AuditRecords<'t>, &mut AuditIndexes<'t>, &mut Meta<'t>), redb::TableError>
    {
        let txn = self.txn;
        let indexes = match &mut self.audit_indexes {
            Some(indexes) => indexes,
            slot => slot.insert(AuditIndexes::open(txn)?),
        };
        let records = match &mut self.audit_records {
            Some(records) => records,
            slot => slot.insert(txn.open_table(audit_table::RECORDS)?),
        };
        Ok((records, indexes, &mut self.meta))
    }
}

type AuditRecords<'t> = Table<'t, u64, &'static [u8]>;
type Meta<'t> = Table<'t, &'static str, u64>;
pub(crate) type WebhookEvents<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

/// The writer thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    ctx: Ctx,
    batch_max: usize,
    /// When the oldest commit not yet flushed was made.
    unflushed_since: Option<Instant>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        ids: Arc<Mutex<IdAllocator>>,
        batch_max: usize,
        audit: AuditSettings,
    ) -> Self {
        let now = SystemTime::now();
        let webhook_dropped = Arc::clone(&shared.webhook_dropped);
        let webhooks = current_webhooks(&shared);
        let node = Arc::clone(&shared.node);
        Writer {
            shared,
            ctx: Ctx {
                now,
                ids,
                effects: Vec::new(),
                audit,
                webhooks,
                webhook_dropped,
                next_prune: now,
                next_index: now,
                node,
                audit_written: audit_table::Written::default(),
                held: HeldEnvelopes::default(),
            },
            batch_max: batch_max.max(1),
            unflushed_since: None,
        }
    }

    /// Runs until every sender is gone (the spool was dropped), then flushes what is left.
    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // A timer of its own, to wait for commands no longer than the flush deadline.
        let timer = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(timer) => timer,
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "spool writer has no timer; every commit is flushed");
                return self.run_flushing_always(commands);
            }
        };
        loop {
            let first = match self.unflushed_since {
                None => commands.blocking_recv(),
                Some(since) => {
                    let left = FLUSH_WITHIN.saturating_sub(since.elapsed());
                    match timer
                        .block_on(async { tokio::time::timeout(left, commands.recv()).await })
                    {
                        Ok(command) => command,
                        Err(_) => {
                            self.commit_batch(Vec::new(), Flush::BeforeAnswer);
                            continue;
                        }
                    }
                }
            };
            let Some(first) = first else { break };
            let mut batch = self.gather(first, &mut commands);
            self.hold_for_company(&mut batch, &mut commands, &timer);
            let flush = match self.unflushed_since {
                Some(since) if since.elapsed() >= FLUSH_WITHIN => Flush::BeforeAnswer,
                _ => Flush::Within,
            };
            self.commit_batch(batch, flush);
        }
        if self.unflushed_since.is_some() {
            self.commit_batch(Vec::new(), Flush::BeforeAnswer);
        }
    }

    /// A batch of delivery outcomes alone waits up to [`HOLD_OUTCOMES`] for more operations,
    /// and stops waiting when one that must be flushed (a submission) arrives: they share one
    /// transaction, so the pages both touch are written once. Under load that is most outcomes.
    fn hold_for_company(
        &self,
        batch: &mut Vec<Command>,
        commands: &mut mpsc::Receiver<Command>,
        timer: &tokio::runtime::Runtime,
    ) {
        if batch.iter().any(|op| op.flush() == Flush::BeforeAnswer) {
            return;
        }
        let until = Instant::now() + HOLD_OUTCOMES;
        while batch.len() < self.batch_max {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match timer.block_on(async { tokio::time::timeout(left, commands.recv()).await }) {
                Ok(Some(op)) => {
                    let flushing = op.flush() == Flush::BeforeAnswer;
                    batch.push(op);
                    if flushing {
                        while batch.len() < self.batch_max {
                            match commands.try_recv() {
                                Ok(op) => batch.push(op),
                                Err(_) => break,
                            }
                        }
                        return;
                    }
                }
                // Closed (the loop ends after this batch) or waited long enough.
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Without a timer nothing may wait for a later flush.
    fn run_flushing_always(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let batch = self.gather(first, &mut commands);
            self.commit_batch(batch, Flush::BeforeAnswer);
        }
    }

    /// `first` and whatever else is already waiting, up to `batch_max`.
    fn gather(&self, first: Command, commands: &mut mpsc::Receiver<Command>) -> Vec<Command> {
        let mut batch = Vec::with_capacity(self.batch_max);
        batch.push(first);
        while batch.len() < self.batch_max {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        batch
    }

    /// Commits `batch` in one transaction, flushed when `flush` or any operation in it says
    /// so. An empty batch with `Flush::BeforeAnswer` only flushes earlier commits.
    fn commit_batch(&mut self, mut batch: Vec<Command>, flush: Flush) {
        let started = Instant::now();
        let operations = batch.len();
        let flush = if batch.iter().any(|op| op.flush() == Flush::BeforeAnswer) {
            Flush::BeforeAnswer
        } else {
            flush
        };
        let db = match self.shared.database() {
            Ok(db) => db,
            Err(_) => match self.shared.reopen() {
                Ok(db) => {
                    self.ctx.held.clear();
                    db
                }
                Err(e) => {
                    tracing::error!(error = %ErrorChain(&e), outcome = "failed", "spool store unavailable");
                    for op in batch {
                        op.fail(SpoolError::Reopening);
                    }
                    return;
                }
            },
        };
        self.ctx.now = SystemTime::now();
        self.ctx.effects.clear();
        self.ctx.webhooks = current_webhooks(&self.shared);
        match self.transact(&db, &mut batch, flush) {
            Ok(()) => {
                let latency = started.elapsed();
                let flushed = flush == Flush::BeforeAnswer;
                self.unflushed_since = match (flushed, self.unflushed_since) {
                    (true, _) => None,
                    (false, None) => Some(started),
                    (false, since) => since,
                };
                let effects = std::mem::take(&mut self.ctx.effects);
                self.shared.committed(effects, operations, latency, flushed);
                tracing::debug!(
                    operations,
                    flushed,
                    latency_us = latency.as_micros() as u64,
                    "spool commit"
                );
                for op in batch {
                    op.answer();
                }
            }
            Err(e) => {
                let source = Arc::new(e);
                tracing::error!(error = %ErrorChain(&source), operations, outcome = "aborted", "spool commit failed");
                self.shared.commit_failed();
                // The facts kept for indexing describe records this commit took back.
                self.ctx.audit_written.forget();
                self.ctx.held.clear();
                drop(db);
                let latched = matches!(*source, redb::Error::Io(_) | redb::Error::PreviousIo);
                for op in batch {
                    op.fail(SpoolError::Commit {
                        operations,
                        source: Arc::clone(&source),
                    });
                }
                if latched {
                    // redb refuses every later operation after an I/O error until the
                    // database is closed and opened again; do that now so the next batch has
                    // a chance (a full disk may have space again by then). Reopening rereads
                    // what reached the disk: nothing unflushed is left to flush.
                    match self.shared.reopen() {
                        Ok(_) => self.unflushed_since = None,
                        Err(e) => {
                            tracing::error!(error = %ErrorChain(&e), "spool store could not be reopened");
                        }
                    }
                }
            }
        }
    }

    /// One write transaction over the whole batch. On error the transaction is dropped, which
    /// aborts it: nothing of the batch reaches the file.
    fn transact(
        &mut self,
        db: &Database,
        batch: &mut [Command],
        flush: Flush,
    ) -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(match flush {
            Flush::BeforeAnswer => Durability::Immediate,
            Flush::Within => Durability::None,
        })?;
        {
            let mut tables = Tables::open(&txn)?;
            for op in batch.iter_mut() {
                op.apply(&mut tables, &mut self.ctx)?;
            }
            maintain_audit(&mut tables, &mut self.ctx)?;
            let last_id = lock_ids(&self.ctx.ids).last();
            tables.meta.insert(META_LAST_ID, last_id)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// The message's envelope record, as kept since its submission or read from the store.
fn held_envelope(
    tables: &Tables<'_>,
    ctx: &Ctx,
    id: MessageId,
) -> Result<Arc<EnvelopeRecord>, SpoolError> {
    if let Some(held) = ctx.held.get(id) {
        return Ok(Arc::clone(&held.record));
    }
    let record = store::read_envelope(&tables.envelopes, id)?.ok_or(SpoolError::NotFound {
        id: MessageIdDisplay(id),
    })?;
    Ok(Arc::new(record))
}

/// The stored facts about one message, read before changing its recipients' states.
struct Loaded {
    states: Vec<RecipientState>,
}

fn load(tables: &Tables<'_>, id: MessageId) -> Result<Loaded, SpoolError> {
    let count =
        store::read_recipient_count(&tables.envelopes, id)?.ok_or(SpoolError::NotFound {
            id: MessageIdDisplay(id),
        })?;
    let states = store::read_states_counted(&tables.recipients, id, count)?;
    Ok(Loaded { states })
}

/// Stores a message under `reserved` (from `Spool::reserve_id`) or a new id, and queues each
/// recipient for now.
pub(crate) fn submit(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    reserved: Option<MessageId>,
    envelope: Envelope,
    body: Vec<u8>,
) -> Result<MessageId, OpError> {
    let count = envelope.recipients.len();
    if count == 0 {
        return Err(SpoolError::NoRecipients.into());
    }
    let max = u32::MAX as usize;
    if count > max {
        return Err(SpoolError::TooManyRecipients { count, max }.into());
    }
    let id = match reserved {
        Some(id) if tables.envelopes.get(id)?.is_some() => {
            return Err(SpoolError::Inconsistent {
                table: "envelopes",
                id: MessageIdDisplay(id),
                detail: "a reserved id is already in use",
            }
            .into());
        }
        Some(id) => id,
        None => ctx.next_id(),
    };
    // Encoded as the record decodes: `received_at` is stored in whole seconds either way.
    let record = Arc::new(
        EnvelopeRecord {
            size: body.len() as u64,
            envelope: Arc::new(envelope),
            message_id: audit::message_id_header(&body),
        }
        .into_stored(),
    );
    let record_bytes = store::encode("envelope", id, &*record)?;
    let fresh = RecipientState::fresh(ctx.now);
    let state_bytes = store::encode("recipient state", id, &fresh)?;

    if record.envelope.kind == MessageKind::Dsn {
        let events = webhook::expanded(id, &record, ctx.now);
        write_webhooks(tables, ctx, &events)?;
    }
    tables.envelopes.insert(id, record_bytes.as_slice())?;
    tables.bodies.insert(id, body.as_slice())?;
    for index in (0..count).filter_map(store::stored_index) {
        tables
            .recipients
            .insert((id, index), state_bytes.as_slice())?;
        tables
            .schedule
            .insert(Slot::new(ctx.now, id, index).key(), ())?;
    }
    ctx.effects.push(Effect::Counted {
        before: Counts::NONE,
        after: Counts::uniform(&fresh, count),
    });
    let octets = record_bytes.len();
    ctx.effects.push(Effect::Kept(
        id,
        Arc::new(body),
        KeptEnvelope {
            bytes: Arc::new(record_bytes),
            record: Arc::clone(&record),
        },
    ));
    ctx.effects.push(Effect::Scheduled);
    ctx.effects.push(Effect::Wake);
    ctx.held.keep(id, record, octets);
    Ok(id)
}

/// The state a recipient ends up in when `update` arrives while it is in `current`.
/// Final states never change (a delivery cannot be undone); a recipient an administrator held
/// while it was being delivered stays held when the attempt only deferred it.
fn merge(current: &RecipientState, update: RecipientState) -> RecipientState {
    match (current, update) {
        (current, _) if current.is_final() => current.clone(),
        (
            RecipientState::Held { .. },
            RecipientState::Queued {
                attempts,
                last_reply,
                delay_dsn_sent,
                ..
            },
        ) => RecipientState::Held {
            attempts,
            last_reply,
            delay_dsn_sent,
        },
        (_, update) => update,
    }
}

/// Applies delivery results and appends attempt records; deletes the message when its last
/// recipient became final.
pub(crate) fn record(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    id: MessageId,
    updates: Vec<RecipientUpdate>,
    attempts: Vec<AttemptRecord>,
) -> Result<(), OpError> {
    // The audit trail and webhooks need the whole envelope: decode it once, not its head too.
    let (count, stored) = if ctx.audit.enabled || !ctx.webhooks.hooks.is_empty() {
        let stored = held_envelope(tables, ctx, id)?;
        (stored.envelope.recipients.len(), Some(stored))
    } else {
        let count =
            store::read_recipient_count(&tables.envelopes, id)?.ok_or(SpoolError::NotFound {
                id: MessageIdDisplay(id),
            })?;
        (count, None)
    };
    // Only the recipients this outcome is for are decoded whole: a message to fifty
    // recipients in ten domains is recorded ten times.
    let before = store::read_glances(&tables.recipients, id, count)?;
    let mut changed: BTreeMap<usize, (RecipientState, RecipientState)> = BTreeMap::new();
    let mut touched = Vec::with_capacity(updates.len());
    for update in updates {
        let index = store::stored_index(update.index)
            .filter(|_| update.index < count)
            .ok_or(SpoolError::NoSuchRecipient {
                id: MessageIdDisplay(id),
                index: update.index,
                count,
            })?;
        let pair = match changed.entry(update.index) {
            Entry::Occupied(pair) => pair.into_mut(),
            Entry::Vacant(slot) => {
                let old = store::read_state(&tables.recipients, id, index)?;
                slot.insert((old.clone(), old))
            }
        };
        pair.1 = merge(&pair.1, update.state);
        touched.push(index);
    }
    for attempt in &attempts {
        if let Some(&index) = attempt.recipients.iter().find(|&&i| i >= count) {
            return Err(SpoolError::NoSuchRecipient {
                id: MessageIdDisplay(id),
                index,
                count,
            }
            .into());
        }
    }
    let encoded: Vec<Vec<u8>> = attempts
        .iter()
        .map(|a| store::encode("attempt record", id, a))
        .collect::<Result<_, _>>()?;
    let first_seq = match ctx.held.get(id) {
        Some(held) => u32::try_from(held.attempts.len()).unwrap_or(u32::MAX),
        None => store::next_attempt_seq(tables.attempts()?, id)?,
    };
    let mut changes = Vec::new();
    for (&index, (old, new)) in changed.iter().filter(|(_, (old, new))| old != new) {
        if let Some(change) = Change::of(id, index, old, new)? {
            changes.push(change);
        }
    }
    let finals: Vec<(usize, &RecipientState)> = changed
        .iter()
        .filter(|(_, (old, new))| !old.is_final() && new.is_final())
        .map(|(&index, (_, new))| (index, new))
        .collect();
    let wants_audit = ctx.audit.enabled && !finals.is_empty();
    if let Some(stored) = stored.as_ref().filter(|_| !ctx.webhooks.hooks.is_empty()) {
        let events: Vec<WebhookEvent> = touched
            .iter()
            .filter_map(|&index| {
                let index = index as usize;
                let (old, new) = changed.get(&index)?;
                webhook::event_for(id, stored, index, old, new, &attempts, ctx.now)
            })
            .collect();
        write_webhooks(tables, ctx, &events)?;
    }
    let audit = if let Some(stored) = stored.filter(|_| wants_audit) {
        let mut history = match ctx.held.get(id) {
            Some(held) => held.attempts.clone(),
            None => store::read_attempts(tables.attempts()?, id)?,
        };
        history.extend(attempts.iter().cloned());
        let found = Found {
            id,
            stored: &stored,
            attempts: &history,
        };
        audit_records(&found, &finals, Cause::Delivery, ctx.now, &ctx.node)?
    } else {
        Vec::new()
    };

    write_audit(tables, ctx, audit)?;
    let mut after = before.clone();
    for (&index, (_, new)) in &changed {
        after[index] = Glance::of(new);
    }
    let deleted = write_changes(tables, ctx, id, &before, &after, changes)?;
    // Counted whether or not the message stays: delivered messages leave the spool.
    crate::shadow::count(tables.txn, &attempts).map_err(OpError::Abort)?;
    if !deleted {
        let table = tables.attempts()?;
        for (seq, bytes) in (first_seq..).zip(&encoded) {
            table.insert((id, seq), bytes.as_slice())?;
        }
        let stored = attempts
            .into_iter()
            .map(AttemptRecord::into_stored)
            .collect();
        let octets = encoded.iter().map(Vec::len).sum();
        ctx.held.add_attempts(id, stored, octets);
        // A recipient left queued with its state unchanged keeps its schedule entry, which
        // its lease hid from the runner until now.
        if changed
            .values()
            .any(|(_, new)| new.next_attempt().is_some())
        {
            ctx.effects.push(Effect::Scheduled);
        }
        ctx.effects.push(Effect::Unlease(id, touched));
    }
    Ok(())
}

/// Puts the named recipients of each message back in the schedule at `when` without counting
/// an attempt (nothing was tried: their destination is in backoff), and gives back their
/// leases. Only queued recipients move; held and final ones, and messages deleted meanwhile,
/// are left as they are, and a damaged message is skipped and logged, so that one message
/// cannot hold back the rest. Everything is read and planned before anything is written.
/// Returns how many recipients were postponed.
pub(crate) fn postpone(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    work: Vec<(MessageId, Vec<usize>)>,
    when: SystemTime,
) -> Result<usize, OpError> {
    let mut planned = Vec::with_capacity(work.len());
    let mut skipped = Vec::new();
    let mut postponed = 0;
    for (id, indexes) in work {
        let leased: Vec<u32> = indexes
            .iter()
            .filter_map(|&i| store::stored_index(i))
            .collect();
        let loaded = match load(tables, id) {
            Ok(loaded) => loaded,
            Err(e) => {
                if !matches!(e, SpoolError::NotFound { .. }) {
                    tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&e), "damaged message not postponed");
                }
                skipped.push((id, leased));
                continue;
            }
        };
        let mut after = loaded.states.clone();
        for &index in &indexes {
            if let Some(RecipientState::Queued { next_attempt, .. }) = after.get_mut(index) {
                *next_attempt = when;
                postponed += 1;
            }
        }
        let changes = plan_changes(id, &loaded.states, &after)?;
        planned.push((id, loaded, after, changes, leased));
    }
    for (id, loaded, after, changes, leased) in planned {
        write_loaded_changes(tables, ctx, id, &loaded, &after, changes)?;
        ctx.effects.push(Effect::Unlease(id, leased));
    }
    for (id, leased) in skipped {
        ctx.effects.push(Effect::Unlease(id, leased));
    }
    // A recipient already due at `when` keeps its schedule entry, which its lease hid.
    ctx.effects.push(Effect::Scheduled);
    Ok(postponed)
}

/// Administrative changes to every recipient of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminAction {
    Hold,
    Release,
    RetryNow,
}

impl AdminAction {
    /// The action's name in logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AdminAction::Hold => "hold",
            AdminAction::Release => "release",
            AdminAction::RetryNow => "retry",
        }
    }

    fn apply(self, state: &RecipientState, now: SystemTime) -> RecipientState {
        match (self, state) {
            (
                AdminAction::Hold,
                RecipientState::Queued {
                    attempts,
                    last_reply,
                    delay_dsn_sent,
                    ..
                },
            ) => RecipientState::Held {
                attempts: *attempts,
                last_reply: last_reply.clone(),
                delay_dsn_sent: *delay_dsn_sent,
            },
            (
                AdminAction::Release,
                RecipientState::Held {
                    attempts,
                    last_reply,
                    delay_dsn_sent,
                },
            )
            | (
                AdminAction::RetryNow,
                RecipientState::Queued {
                    attempts,
                    last_reply,
                    delay_dsn_sent,
                    ..
                },
            ) => RecipientState::Queued {
                next_attempt: now,
                attempts: *attempts,
                last_reply: last_reply.clone(),
                delay_dsn_sent: *delay_dsn_sent,
            },
            (_, other) => other.clone(),
        }
    }
}

/// Holds, releases or retries every recipient the action applies to; returns how many changed.
pub(crate) fn admin(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    id: MessageId,
    action: AdminAction,
) -> Result<usize, OpError> {
    let loaded = load(tables, id)?;
    let states: Vec<RecipientState> = loaded
        .states
        .iter()
        .map(|s| action.apply(s, ctx.now))
        .collect();
    let changes = plan_changes(id, &loaded.states, &states)?;
    let changed = changes.len();
    write_loaded_changes(tables, ctx, id, &loaded, &states, changes)?;
    if action != AdminAction::Hold && changed > 0 {
        ctx.effects.push(Effect::Wake);
    }
    Ok(changed)
}

/// Makes every queued recipient of every message due now; returns how many were moved.
/// A record that does not decode is skipped and logged: one damaged message must not block
/// the others.
pub(crate) fn retry_all(tables: &mut Tables<'_>, ctx: &mut Ctx) -> Result<usize, OpError> {
    let now_ms = crate::time::unix_millis(ctx.now);
    let mut moves = Vec::new();
    for entry in tables.schedule.range((now_ms.saturating_add(1), 0, 0)..)? {
        let (key, _) = entry?;
        let (_, id, index) = key.value();
        moves.push((id, index));
    }
    let mut rewritten = Vec::with_capacity(moves.len());
    for (id, index) in moves {
        let Some(bytes) = tables.recipients.get((id, index))? else {
            tracing::error!(msg_id = %MessageIdDisplay(id), index, "schedule entry without recipient state");
            continue;
        };
        let state: RecipientState = match store::decode("recipients", id, bytes.value()) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&e), "skipping damaged recipient");
                continue;
            }
        };
        drop(bytes);
        let retried = AdminAction::RetryNow.apply(&state, ctx.now);
        let encoded = store::encode("recipient state", id, &retried)?;
        rewritten.push((id, index, state, retried, encoded));
    }
    for (id, index, old, new, bytes) in &rewritten {
        write_state(
            tables,
            &mut ctx.effects,
            *id,
            *index,
            old.next_attempt(),
            new.next_attempt(),
            bytes,
        )?;
    }
    if !rewritten.is_empty() {
        ctx.effects.push(Effect::Wake);
    }
    Ok(rewritten.len())
}

/// Removes a message and everything about it; returns how many recipients were not final.
pub(crate) fn delete(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    id: MessageId,
) -> Result<usize, OpError> {
    let loaded = load(tables, id)?;
    let finals = newly_final(&loaded.states, &loaded.states, Cause::AdminDelete);
    let stored = match (ctx.audit.enabled || !ctx.webhooks.hooks.is_empty()) && !finals.is_empty() {
        true => Some(
            store::read_envelope(&tables.envelopes, id)?.ok_or(SpoolError::NotFound {
                id: MessageIdDisplay(id),
            })?,
        ),
        false => None,
    };
    if let Some(stored) = &stored {
        write_webhooks(tables, ctx, &webhook::deleted(id, stored, &finals, ctx.now))?;
    }
    if let Some(stored) = stored.as_ref().filter(|_| ctx.audit.enabled) {
        let history = store::read_attempts(tables.attempts()?, id)?;
        let found = Found {
            id,
            stored,
            attempts: &history,
        };
        let finals: Vec<_> = finals.iter().map(|&i| (i, &loaded.states[i])).collect();
        let audit = audit_records(&found, &finals, Cause::AdminDelete, ctx.now, &ctx.node)?;
        write_audit(tables, ctx, audit)?;
    }
    delete_message(tables, &mut ctx.held, id, &loaded.states)?;
    ctx.effects.push(Effect::Counted {
        before: Counts::of(&loaded.states),
        after: Counts::NONE,
    });
    ctx.effects.push(Effect::Removed(id));
    ctx.effects.push(Effect::UnleaseAll(id));
    Ok(loaded.states.iter().filter(|s| !s.is_final()).count())
}

/// Bounces every recipient that is not final and removes the message; returns what it was and
/// the id of the report `report` composed from it (given the states before the bounce), queued
/// in this same transaction. The report is stored first: its refusal comes before any write,
/// so a refused report leaves the message untouched.
pub(crate) fn bounce<F>(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    id: MessageId,
    report: F,
) -> Result<(BouncedMessage, Option<MessageId>), OpError>
where
    F: FnOnce(&BouncedMessage, &[RecipientState]) -> Option<(Envelope, Vec<u8>)>,
{
    // The whole envelope: it goes back to the caller, for the report.
    let record = store::read_envelope(&tables.envelopes, id)?.ok_or(SpoolError::NotFound {
        id: MessageIdDisplay(id),
    })?;
    let loaded = Loaded {
        states: store::read_states_for(&tables.recipients, id, &record.envelope)?,
    };
    let attempts = store::read_attempts(tables.attempts()?, id)?;
    let body = store::read_body(&tables.bodies, id)?.ok_or(SpoolError::Inconsistent {
        table: "bodies",
        id: MessageIdDisplay(id),
        detail: "envelope without body",
    })?;
    let states: Vec<RecipientState> = loaded
        .states
        .iter()
        .map(|s| match s {
            s if s.is_final() => s.clone(),
            _ => RecipientState::Bounced {
                at: ctx.now,
                reply: ADMIN_BOUNCE_REPLY.to_owned(),
                status: ADMIN_BOUNCE_STATUS.to_string(),
            },
        })
        .collect();
    let changes = plan_changes(id, &loaded.states, &states)?;
    let finals = newly_final(&loaded.states, &states, Cause::AdminBounce);
    // No attempt decided an administrator's bounce: the events carry no receipt.
    let events: Vec<WebhookEvent> = finals
        .iter()
        .filter_map(|&index| {
            webhook::event_for(
                id,
                &record,
                index,
                &loaded.states[index],
                &states[index],
                &[],
                ctx.now,
            )
        })
        .collect();
    write_webhooks(tables, ctx, &events)?;
    let audit = match ctx.audit.enabled && !finals.is_empty() {
        true => {
            let found = Found {
                id,
                stored: &record,
                attempts: &attempts,
            };
            let finals: Vec<_> = finals.iter().map(|&i| (i, &states[i])).collect();
            audit_records(&found, &finals, Cause::AdminBounce, ctx.now, &ctx.node)?
        }
        false => Vec::new(),
    };
    let bounced = BouncedMessage {
        message: StoredMessage {
            id,
            size: record.size,
            envelope: Arc::unwrap_or_clone(record.envelope),
            states,
            attempts,
        },
        body,
    };
    let report_id = match report(&bounced, &loaded.states) {
        Some((envelope, body)) => Some(submit(tables, ctx, None, envelope, body)?),
        None => None,
    };
    write_audit(tables, ctx, audit)?;
    write_loaded_changes(tables, ctx, id, &loaded, &bounced.message.states, changes)?;
    Ok((bounced, report_id))
}

/// What the audit records of one message are made from.
struct Found<'a> {
    id: MessageId,
    stored: &'a EnvelopeRecord,
    /// Stored and new, oldest first.
    attempts: &'a [AttemptRecord],
}

/// The recipients that leave the queue: final in `new` but not in `old`, or, for a deletion,
/// every one not final.
fn newly_final(old: &[RecipientState], new: &[RecipientState], cause: Cause) -> Vec<usize> {
    old.iter()
        .zip(new)
        .enumerate()
        .filter(|(_, (before, after))| {
            !before.is_final() && (cause == Cause::AdminDelete || after.is_final())
        })
        .map(|(index, _)| index)
        .collect()
}

/// The audit records of `finals` (recipient indexes with their states now), encoded.
fn audit_records(
    found: &Found<'_>,
    finals: &[(usize, &RecipientState)],
    cause: Cause,
    now: SystemTime,
    node: &str,
) -> Result<Vec<(Vec<u8>, audit_table::Facts)>, SpoolError> {
    let mut records = Vec::with_capacity(finals.len());
    for &(index, state) in finals {
        let built = audit::record_for(
            found.id,
            found.stored,
            index,
            state,
            found.attempts,
            cause,
            now,
        );
        if let Some(mut record) = built {
            record.node = Some(node.to_owned());
            let bytes = store::encode("audit record", found.id, &record)?;
            records.push((bytes, audit_table::Facts::of(&record)));
        }
    }
    Ok(records)
}

/// Appends the encoded records: the end of one table, whatever their number.
fn write_audit(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    records: Vec<(Vec<u8>, audit_table::Facts)>,
) -> Result<(), OpError> {
    if records.is_empty() {
        return Ok(());
    }
    let (table, meta) = tables
        .audit_records()
        .map_err(|e| OpError::Abort(e.into()))?;
    audit_table::append(table, meta, records, &mut ctx.audit_written)?;
    Ok(())
}

fn current_webhooks(shared: &Shared) -> Arc<WebhookSettings> {
    Arc::clone(
        &shared
            .webhooks
            .read()
            .unwrap_or_else(PoisonError::into_inner),
    )
}

/// Queues each event for every webhook that wants its kind, dropping the oldest events of a
/// webhook whose queue is full.
fn write_webhooks(
    tables: &mut Tables<'_>,
    ctx: &Ctx,
    events: &[WebhookEvent],
) -> Result<(), OpError> {
    if events.is_empty() || ctx.webhooks.hooks.is_empty() {
        return Ok(());
    }
    let (table, meta) = tables
        .webhook_events()
        .map_err(|e| OpError::Abort(e.into()))?;
    for event in events {
        let bytes = store::encode("webhook event", event.queue_id, event)?;
        for hook in ctx
            .webhooks
            .hooks
            .iter()
            .filter(|h| h.events.contains(&event.event))
        {
            let dropped = webhook::append(table, meta, &hook.name, &bytes, hook.max_queued)?;
            if dropped > 0 {
                tracing::error!(
                    webhook = %hook.name,
                    dropped,
                    max = hook.max_queued,
                    "webhook queue full: oldest events dropped"
                );
                ctx.webhook_dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// The audit trail's upkeep at the end of a batch: indexes what waits (see [`INDEX_AFTER`])
/// and, at most once per [`PRUNE_EVERY`], prunes a batch past the retention window.
fn maintain_audit(tables: &mut Tables<'_>, ctx: &mut Ctx) -> Result<(), redb::Error> {
    let waiting = audit_table::unindexed(&tables.meta)?;
    if waiting >= INDEX_AFTER || (waiting > 0 && ctx.now >= ctx.next_index) {
        let (records, indexes, meta) = tables.audit_all()?;
        indexes.index(records, meta, INDEX_BATCH, &mut ctx.audit_written)?;
        ctx.next_index = ctx.now + INDEX_WITHIN;
    }
    if ctx.now >= ctx.next_prune {
        let pruned = prune_audit(tables, ctx, PRUNE_BATCH)?;
        ctx.next_prune = match pruned {
            PRUNE_BATCH => ctx.now,
            _ => ctx.now + PRUNE_EVERY,
        };
    }
    Ok(())
}

/// Removes up to `max` indexed audit records older than the retention window; returns how
/// many.
fn prune_audit(tables: &mut Tables<'_>, ctx: &Ctx, max: usize) -> Result<usize, redb::Error> {
    let Some(cutoff) = ctx.now.checked_sub(ctx.audit.keep) else {
        return Ok(0);
    };
    let (records, indexes, _) = tables.audit_all()?;
    let pruned = indexes.prune(records, unix_millis(cutoff), max)?;
    if pruned > 0 {
        tracing::debug!(pruned, "audit records past retention removed");
    }
    Ok(pruned)
}

/// Indexes every waiting audit record, then removes every one past the retention window;
/// returns how many were removed.
pub(crate) fn prune_audit_now(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
) -> Result<usize, redb::Error> {
    while audit_table::unindexed(&tables.meta)? > 0 {
        let (records, indexes, meta) = tables.audit_all()?;
        indexes.index(records, meta, INDEX_BATCH, &mut ctx.audit_written)?;
    }
    let mut pruned = 0;
    loop {
        let batch = prune_audit(tables, ctx, PRUNE_BATCH)?;
        pruned += batch;
        if batch < PRUNE_BATCH {
            return Ok(pruned);
        }
    }
}

/// A recipient whose state changes, with the new state already encoded.
/// One recipient's new state, encoded, with the schedule times of its old and new state.
struct Change {
    index: u32,
    bytes: Vec<u8>,
    was_due: Option<SystemTime>,
    due: Option<SystemTime>,
}

impl Change {
    /// `None` for an index past what the store can hold (never stored, so never changed).
    fn of(
        id: MessageId,
        index: usize,
        old: &RecipientState,
        new: &RecipientState,
    ) -> Result<Option<Change>, SpoolError> {
        let Some(index) = store::stored_index(index) else {
            return Ok(None);
        };
        Ok(Some(Change {
            index,
            bytes: store::encode("recipient state", id, new)?,
            was_due: old.next_attempt(),
            due: new.next_attempt(),
        }))
    }
}

fn plan_changes(
    id: MessageId,
    old: &[RecipientState],
    new: &[RecipientState],
) -> Result<Vec<Change>, SpoolError> {
    let mut changes = Vec::new();
    for (index, (before, after)) in old.iter().zip(new).enumerate() {
        if before == after {
            continue;
        }
        if let Some(change) = Change::of(id, index, before, after)? {
            changes.push(change);
        }
    }
    Ok(changes)
}

/// Writes planned changes, or deletes the message when every recipient is now final.
/// Returns true when the message was deleted. Only writes: it never rejects.
fn write_changes<S: Standing>(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    id: MessageId,
    before: &[S],
    after: &[S],
    changes: Vec<Change>,
) -> Result<bool, redb::Error> {
    if after.iter().all(S::is_final) {
        delete_message(tables, &mut ctx.held, id, before)?;
        ctx.effects.push(Effect::Counted {
            before: Counts::of(before),
            after: Counts::NONE,
        });
        ctx.effects.push(Effect::Removed(id));
        ctx.effects.push(Effect::UnleaseAll(id));
        return Ok(true);
    }
    for change in changes {
        write_state(
            tables,
            &mut ctx.effects,
            id,
            change.index,
            change.was_due,
            change.due,
            &change.bytes,
        )?;
    }
    ctx.effects.push(Effect::Counted {
        before: Counts::of(before),
        after: Counts::of(after),
    });
    Ok(false)
}

/// [`write_changes`] from the states [`load`] read.
fn write_loaded_changes(
    tables: &mut Tables<'_>,
    ctx: &mut Ctx,
    id: MessageId,
    loaded: &Loaded,
    after: &[RecipientState],
    changes: Vec<Change>,
) -> Result<bool, redb::Error> {
    write_changes(tables, ctx, id, &loaded.states, after, changes)
}

/// Stores one recipient state and keeps the schedule index in step with it: `was_due` and
/// `due` are the schedule times of its old and new state.
fn write_state(
    tables: &mut Tables<'_>,
    effects: &mut Vec<Effect>,
    id: MessageId,
    index: u32,
    was_due: Option<SystemTime>,
    due: Option<SystemTime>,
    bytes: &[u8],
) -> Result<(), redb::StorageError> {
    if let Some(at) = was_due {
        tables.schedule.remove(Slot::new(at, id, index).key())?;
    }
    if let Some(at) = due {
        tables.schedule.insert(Slot::new(at, id, index).key(), ())?;
        effects.push(Effect::Scheduled);
    }
    tables.recipients.insert((id, index), bytes)?;
    Ok(())
}

/// Removes envelope, body, states, attempts and schedule entries of a message. `states` are
/// the stored states, whose schedule entries exist. A message kept since its submission with
/// no attempt records kept has none stored (every append to a kept message is kept too), so
/// its attempts are not looked for.
fn delete_message<S: Standing>(
    tables: &mut Tables<'_>,
    held: &mut HeldEnvelopes,
    id: MessageId,
    states: &[S],
) -> Result<(), redb::Error> {
    let no_attempts = held.get(id).is_some_and(|kept| kept.attempts.is_empty());
    held.forget(id);
    for (index, state) in states.iter().enumerate() {
        if let (Some(at), Some(index)) = (state.scheduled(), store::stored_index(index)) {
            tables.schedule.remove(Slot::new(at, id, index).key())?;
        }
    }
    tables
        .recipients
        .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
    if !no_attempts {
        tables
            .attempts()?
            .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
    }
    tables.envelopes.remove(id)?;
    tables.bodies.remove(id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn queued(attempts: u32) -> RecipientState {
        RecipientState::Queued {
            next_attempt: UNIX_EPOCH + Duration::from_secs(100),
            attempts,
            last_reply: None,
            delay_dsn_sent: false,
        }
    }

    fn held(attempts: u32) -> RecipientState {
        RecipientState::Held {
            attempts,
            last_reply: None,
            delay_dsn_sent: false,
        }
    }

    fn delivered() -> RecipientState {
        RecipientState::Delivered {
            at: UNIX_EPOCH,
            mx: "mx.example.net".into(),
            reply: "250 ok".into(),
        }
    }

    fn bounced() -> RecipientState {
        RecipientState::Bounced {
            at: UNIX_EPOCH,
            reply: "550 5.1.1 no".into(),
            status: "5.1.1".into(),
        }
    }

    #[test]
    fn updates_merge_into_the_current_state_by_the_spool_rules() {
        let cases = [
            (
                "a deferral replaces a queued state",
                queued(0),
                queued(1),
                queued(1),
            ),
            (
                "a delivery ends a queued recipient",
                queued(0),
                delivered(),
                delivered(),
            ),
            (
                "a delivery ends a held recipient",
                held(0),
                delivered(),
                delivered(),
            ),
            (
                "a deferral keeps a held recipient held",
                held(0),
                queued(2),
                held(2),
            ),
            (
                "a delivered recipient stays delivered",
                delivered(),
                queued(3),
                delivered(),
            ),
            (
                "a bounced recipient stays bounced",
                bounced(),
                delivered(),
                bounced(),
            ),
        ];
        for (why, current, update, expected) in cases {
            assert_eq!(merge(&current, update), expected, "{why}");
        }
    }

    #[test]
    fn admin_actions_touch_only_the_states_they_apply_to() {
        let now = UNIX_EPOCH + Duration::from_secs(500);
        let due_now = RecipientState::Queued {
            next_attempt: now,
            attempts: 1,
            last_reply: None,
            delay_dsn_sent: false,
        };
        let cases = [
            (AdminAction::Hold, queued(1), held(1)),
            (AdminAction::Hold, delivered(), delivered()),
            (AdminAction::Release, held(1), due_now.clone()),
            (AdminAction::Release, queued(1), queued(1)),
            (AdminAction::RetryNow, queued(1), due_now),
            (AdminAction::RetryNow, held(1), held(1)),
            (AdminAction::RetryNow, bounced(), bounced()),
        ];
        for (action, before, after) in cases {
            assert_eq!(
                action.apply(&before, now),
                after,
                "{action:?} on {before:?}"
            );
        }
    }
}
