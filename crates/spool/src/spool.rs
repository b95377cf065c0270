//! The public face of the spool: opening and recovering the store, the async calls that go
//! through the writer thread, and the read-only queries (due work, listings, bodies) that run
//! in the caller's thread on redb read transactions. Leases for in-flight recipients live here,
//! in memory only, so they die with the process. Writing is left to `writer`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use strictmx_protocol::ErrorChain;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::audit::table::AuditIndexes;
use crate::bodies::{KeptBodies, KeptEnvelope};
use crate::error::SpoolError;
use crate::id::{IdAllocator, MessageId, MessageIdDisplay};
use crate::index::{Counts, Index};
use crate::settings::{SpoolSettings, WebhookSettings};
use crate::store::{
    self, ATTEMPTS, BODIES, DB_FILE, ENVELOPES, META, META_LAST_ID, META_SCHEMA, RECIPIENTS,
    SCHEDULE, SCHEMA_VERSION, Slot,
};
use crate::types::{
    AttemptRecord, BouncedMessage, DueMessage, DueRecipient, Envelope, QueueEntry, QueueRecipient,
    RecipientState, RecipientUpdate, SpoolStats, StoredMessage,
};
use crate::webhook::{self, WebhookEvent};
use crate::writer::{self, AdminAction, Command, Effect, Flush, Op, Writer};

/// How long the writer waits for readers to let go of a failed database before reopening it.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The durable queue. Cheap to clone; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after its current batch; joining it releases the
        // database file before the spool is gone, so it can be opened again at once.
        self.commands.take();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("spool writer thread panicked");
        }
    }
}

/// State shared by the callers and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    path: PathBuf,
    opener: Arc<dyn StoreOpener>,
    db: RwLock<Option<Arc<Database>>>,
    index: Mutex<Index>,
    leases: Mutex<HashSet<(MessageId, u32)>>,
    /// Bodies committed lately, for the delivery jobs that follow.
    bodies: Mutex<KeptBodies>,
    /// Counts the events that can make a recipient due earlier than the schedule last showed:
    /// a commit that put a recipient in the schedule (or left a touched one there), a lease
    /// given back, a reopened store. Changed under the lease lock or after the commit is
    /// visible, and read under the lease lock before the snapshot.
    schedule_changes: AtomicU64,
    /// What the last look at the schedule found; see [`Spool::due`].
    known: Mutex<Option<Known>>,
    notify: Arc<Notify>,
    ids: Arc<Mutex<IdAllocator>>,
    /// Webhook events dropped from full queues since the spool was opened.
    pub(crate) webhook_dropped: Arc<AtomicU64>,
    /// The webhooks whose events are queued now; each batch takes the current ones.
    pub(crate) webhooks: RwLock<Arc<WebhookSettings>>,
    /// This node's id (`node-id` in the data directory).
    pub(crate) node: Arc<str>,
    /// How long ids of messages received from other nodes are remembered (`transfer`).
    pub(crate) transfer_memory: Duration,
}

/// The earliest recipient that was neither held nor leased when the schedule was last read
/// (`None`: there was none), and `schedule_changes` at that read. While the count is the same,
/// nothing can be due before `next`, so the runner's looks after every job skip the scan over
/// the recipients being delivered.
#[derive(Debug, Clone, Copy)]
struct Known {
    changes: u64,
    next: Option<SystemTime>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic (every update is a single call), so a
    // poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn database(&self) -> Result<Arc<Database>, SpoolError> {
        let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or(SpoolError::Reopening)
    }

    /// When the oldest message in the store was received.
    fn oldest_received(&self) -> Result<Option<SystemTime>, SpoolError> {
        let fail = SpoolError::storage("reading the oldest message");
        let db = self.database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let envelopes = txn.open_table(ENVELOPES).map_err(|e| fail(e.into()))?;
        store::oldest_received(&envelopes)
    }

    pub(crate) fn committed(
        &self,
        effects: Vec<Effect>,
        operations: usize,
        latency: Duration,
        flushed: bool,
    ) {
        let mut wake = false;
        {
            let mut index = lock(&self.index);
            index.committed(operations, latency, flushed);
            for effect in &effects {
                if let Effect::Counted { before, after } = effect {
                    index.changed(*before, *after);
                }
            }
        }
        {
            let mut bodies = lock(&self.bodies);
            for effect in &effects {
                match effect {
                    Effect::Kept(id, body, envelope) => {
                        bodies.keep(*id, Arc::clone(body), envelope.clone());
                    }
                    Effect::Removed(id) => bodies.forget(*id),
                    _ => {}
                }
            }
        }
        {
            let mut leases = lock(&self.leases);
            for effect in effects {
                match effect {
                    Effect::Unlease(id, indexes) => {
                        for index in indexes {
                            leases.remove(&(id, index));
                        }
                    }
                    Effect::UnleaseAll(id) => leases.retain(|(leased, _)| *leased != id),
                    Effect::Scheduled => self.schedule_changed(),
                    Effect::Wake => wake = true,
                    Effect::Counted { .. } | Effect::Removed(_) | Effect::Kept(..) => {}
                }
            }
        }
        if wake {
            self.wake();
        }
    }

    /// Something may be due earlier than the last look at the schedule found.
    fn schedule_changed(&self) {
        self.schedule_changes.fetch_add(1, Ordering::SeqCst);
    }

    /// What the last look found, if nothing changed since.
    fn known(&self) -> Option<Known> {
        let changes = self.schedule_changes.load(Ordering::SeqCst);
        lock(&self.known).filter(|known| known.changes == changes)
    }

    fn remember(&self, known: Known) {
        *lock(&self.known) = Some(known);
    }

    /// Tells the runner that work may be due now.
    fn wake(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    pub(crate) fn commit_failed(&self) {
        lock(&self.index).commit_failed();
    }

    /// Called by the writer thread only. Closes the database and opens it again, then rebuilds the index from what is on disk
    /// (a failed commit may or may not have reached the file). Readers get `Reopening` meanwhile.
    pub(crate) fn reopen(&self) -> Result<Arc<Database>, SpoolError> {
        let taken = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut db) = taken {
            let deadline = Instant::now() + REOPEN_WAIT;
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        db = still_shared;
                        pause_writer_thread(Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        *self.db.write().unwrap_or_else(PoisonError::into_inner) =
                            Some(still_shared);
                        return Err(SpoolError::Reopening);
                    }
                }
            }
        }
        let (db, _) = open_database(self.opener.as_ref(), &self.path)?;
        let (index, _) = recover(&db)?;
        {
            lock(&self.index).absorb(index);
        }
        lock(&self.bodies).clear();
        let db = Arc::new(db);
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&db));
        tracing::warn!(path = %self.path.display(), "spool store reopened after an i/o failure");
        // What was committed but not flushed is gone: recipients recorded in it are due again.
        self.schedule_changed();
        self.wake();
        Ok(db)
    }
}

/// Only ever called on the writer thread, which is a plain OS thread.
#[expect(
    clippy::disallowed_methods,
    reason = "runs on the dedicated writer thread, never on a runtime worker"
)]
fn pause_writer_thread(pause: Duration) {
    std::thread::sleep(pause);
}

/// Opens the redb database behind the spool. [`FileStore`] is the one production uses; tests
/// inject an opener whose backend fails writes on demand, to show that a failed commit leaves
/// the spool usable.
pub trait StoreOpener: Send + Sync + fmt::Debug + 'static {
    /// Opens `path`, creating an empty database when the file is missing or empty.
    fn open(&self, path: &Path) -> Result<Database, redb::DatabaseError>;
}

/// Opens `spool.redb` with redb's own file backend and a bounded page cache.
#[derive(Debug, Clone, Copy)]
pub struct FileStore {
    /// Bytes of database pages redb may keep in memory. redb's own default (1 GiB) would let the
    /// process grow with the queue; a body is read back from disk when a delivery needs it and
    /// it is not among the few kept since their commit (`bodies.rs`).
    pub cache_size: usize,
}

impl Default for FileStore {
    fn default() -> Self {
        FileStore {
            cache_size: SpoolSettings::default().cache_size,
        }
    }
}

impl StoreOpener for FileStore {
    fn open(&self, path: &Path) -> Result<Database, redb::DatabaseError> {
        Database::builder()
            .set_cache_size(self.cache_size)
            .create(path)
    }
}

/// Opens (creating if needed) the database file. Returns whether the file was created.
///
/// The file holds every queued message, so it is made 0600 before redb writes to it (redb
/// initialises an empty file), and an existing one that others could read is tightened.
fn open_database(opener: &dyn StoreOpener, path: &Path) -> Result<(Database, bool), SpoolError> {
    let existed = path.exists();
    let private = |source| SpoolError::Permissions {
        path: path.to_owned(),
        source,
    };
    if existed {
        tighten(path, 0o600).map_err(private)?;
    } else {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(private)?;
    }
    let db = opener.open(path).map_err(|source| SpoolError::Open {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    Ok((db, !existed))
}

/// Make `path` no more open than `mode` (0700 or 0600): group and other bits are cleared, with
/// a warning, since whatever they allowed exposed queued mail to other local users.
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        tracing::warn!(path = %path.display(), was = %format!("{current:o}"), now = %format!("{mode:o}"), "spool path was open to other users; permissions tightened");
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SpoolError::SyncDir {
            path: dir.to_owned(),
            source,
        })
}

/// Creates the tables if missing and checks the schema version; returns the last message id.
fn prepare(db: &Database, path: &Path) -> Result<MessageId, SpoolError> {
    let fail = SpoolError::storage("preparing the spool tables");
    let txn = db.begin_write().map_err(|e| fail(e.into()))?;
    let last_id = {
        let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
        for table in [ENVELOPES, BODIES] {
            txn.open_table(table).map_err(|e| fail(e.into()))?;
        }
        for table in [RECIPIENTS, ATTEMPTS] {
            txn.open_table(table).map_err(|e| fail(e.into()))?;
        }
        txn.open_table(SCHEDULE).map_err(|e| fail(e.into()))?;
        AuditIndexes::create(&txn).map_err(|e| fail(e.into()))?;
        let found = meta
            .get(META_SCHEMA)
            .map_err(|e| fail(e.into()))?
            .map(|v| v.value());
        match found {
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION)
                    .map_err(|e| fail(e.into()))?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(SpoolError::SchemaVersion {
                    path: path.to_owned(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        }
        meta.get(META_LAST_ID)
            .map_err(|e| fail(e.into()))?
            .map_or(0, |v| v.value())
    };
    let mut txn = txn;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| fail(e.into()))?;
    txn.commit().map_err(|e| fail(e.into()))?;
    Ok(last_id)
}

/// Reads every envelope and recipient state once to rebuild the in-memory index. A message
/// whose records do not decode is left out of the figures and logged, not fatal.
fn recover(db: &Database) -> Result<(Index, MessageId), SpoolError> {
    let fail = SpoolError::storage("recovering the spool");
    let txn = db.begin_read().map_err(|e| fail(e.into()))?;
    let envelopes = txn.open_table(ENVELOPES).map_err(|e| fail(e.into()))?;
    let recipients = txn.open_table(RECIPIENTS).map_err(|e| fail(e.into()))?;
    let mut index = Index::default();
    let mut last = 0;
    for entry in envelopes.iter().map_err(|e| fail(e.into()))? {
        let (key, value) = entry.map_err(|e| fail(e.into()))?;
        let id = key.value();
        last = last.max(id);
        let summary = store::decode::<store::EnvelopeRecord>("envelopes", id, value.value())
            .and_then(|record| {
                let states = store::read_states_for(&recipients, id, &record.envelope)?;
                Ok(Counts::of(&states))
            });
        match summary {
            Ok(counts) => index.changed(Counts::NONE, counts),
            Err(e) => {
                tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&e), "damaged message left out of the queue figures")
            }
        }
    }
    Ok((index, last))
}

impl Spool {
    /// Opens the spool in `settings.data_dir` (creating the directory and `spool.redb` if
    /// needed), rebuilds the in-memory index and starts the writer thread.
    pub fn open(settings: &SpoolSettings) -> Result<Spool, SpoolError> {
        Spool::open_with(
            settings,
            Arc::new(FileStore {
                cache_size: settings.cache_size,
            }),
        )
    }

    /// [`Spool::open`] with another way to open the database (see [`StoreOpener`]).
    pub fn open_with(
        settings: &SpoolSettings,
        opener: Arc<dyn StoreOpener>,
    ) -> Result<Spool, SpoolError> {
        let dir = &settings.data_dir;
        let dir_existed = dir.is_dir();
        // The data directory holds the spool and the control socket: its owner only.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SpoolError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        tighten(dir, 0o700).map_err(|source| SpoolError::Permissions {
            path: dir.clone(),
            source,
        })?;
        if !dir_existed && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        let node: Arc<str> = crate::node::node_id(dir)?.into();
        let path = dir.join(DB_FILE);
        let (db, created) = open_database(opener.as_ref(), &path)?;
        if created {
            // redb fsyncs the file but not the directory entry naming it: without this, the
            // first acknowledged commits could vanish together with the file's name on power
            // loss (measured, see docs/storage.md).
            sync_dir(dir)?;
        }
        let last_id = prepare(&db, &path)?;
        let (index, last_envelope) = recover(&db)?;
        let stats = index.stats(None, SystemTime::now());
        tracing::info!(
            path = %path.display(),
            messages = stats.messages,
            queued = stats.recipients_queued,
            held = stats.held,
            "spool opened"
        );
        let shared = Arc::new(Shared {
            path,
            opener,
            db: RwLock::new(Some(Arc::new(db))),
            index: Mutex::new(index),
            leases: Mutex::new(HashSet::new()),
            bodies: Mutex::new(KeptBodies::default()),
            schedule_changes: AtomicU64::new(0),
            known: Mutex::new(None),
            notify: Arc::new(Notify::new()),
            ids: Arc::new(Mutex::new(IdAllocator::new(last_id.max(last_envelope)))),
            webhook_dropped: Arc::new(AtomicU64::new(0)),
            webhooks: RwLock::new(Arc::new(settings.webhooks.clone())),
            node,
            transfer_memory: settings.transfer_memory,
        });
        let batch_max = settings.commit_batch_max.max(1);
        let (commands, receiver) = mpsc::channel(batch_max.saturating_mul(4));
        let writer = Writer::new(
            Arc::clone(&shared),
            Arc::clone(&shared.ids),
            batch_max,
            settings.audit,
        );
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|source| SpoolError::WriterThread { source })?;
        Ok(Spool {
            inner: Arc::new(Inner {
                shared,
                commands: Some(commands),
                writer: Some(handle),
            }),
        })
    }

    /// The leases of recipients being delivered or transferred now.
    pub(crate) fn lock_leases(&self) -> MutexGuard<'_, HashSet<(MessageId, u32)>> {
        lock(&self.shared().leases)
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Sends one operation to the writer and waits for the flushed commit that carries it.
    pub(crate) async fn execute<T, F>(&self, run: F) -> Result<T, SpoolError>
    where
        F: FnOnce(&mut writer::Tables<'_>, &mut writer::Ctx) -> Result<T, writer::OpError>
            + Send
            + 'static,
        T: Send + 'static,
    {
        self.execute_flushing(run, Flush::BeforeAnswer).await
    }

    /// [`Spool::execute`] for a change whose loss in a crash costs no accepted mail: answered
    /// once committed, on disk within `writer::FLUSH_WITHIN`.
    pub(crate) async fn execute_lazily<T, F>(&self, run: F) -> Result<T, SpoolError>
    where
        F: FnOnce(&mut writer::Tables<'_>, &mut writer::Ctx) -> Result<T, writer::OpError>
            + Send
            + 'static,
        T: Send + 'static,
    {
        self.execute_flushing(run, Flush::Within).await
    }

    async fn execute_flushing<T, F>(&self, run: F, flush: Flush) -> Result<T, SpoolError>
    where
        F: FnOnce(&mut writer::Tables<'_>, &mut writer::Ctx) -> Result<T, writer::OpError>
            + Send
            + 'static,
        T: Send + 'static,
    {
        let commands = self
            .inner
            .commands
            .as_ref()
            .ok_or(SpoolError::WriterStopped)?;
        let (reply, answer) = oneshot::channel();
        commands
            .send(Op::command(run, reply, flush))
            .await
            .map_err(|_| SpoolError::WriterStopped)?;
        answer.await.map_err(|_| SpoolError::WriterStopped)?
    }

    /// Stores a message. Returns its id only after the transaction containing it committed
    /// with fdatasync; only then may inbound answer `250`.
    pub async fn submit(&self, envelope: Envelope, body: Vec<u8>) -> Result<MessageId, SpoolError> {
        self.submit_with(None, envelope, body).await
    }

    /// A fresh message id for a message not yet submitted, e.g. to name it in its own
    /// `Received:` field; [`Spool::submit_reserved`] then stores the message under it. An id
    /// reserved and never used is simply skipped.
    pub fn reserve_id(&self) -> MessageId {
        writer::lock_ids(&self.shared().ids).next(SystemTime::now())
    }

    /// [`Spool::submit`] under an id from [`Spool::reserve_id`].
    pub async fn submit_reserved(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> Result<MessageId, SpoolError> {
        self.submit_with(Some(id), envelope, body).await
    }

    async fn submit_with(
        &self,
        reserved: Option<MessageId>,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> Result<MessageId, SpoolError> {
        let recipients = envelope.recipients.len();
        let size = body.len();
        let id = self
            .execute(move |t, ctx| writer::submit(t, ctx, reserved, envelope, body))
            .await?;
        // Debug only: inbound's "message accepted" and the runner's "dsn queued" say it at info.
        tracing::debug!(msg_id = %MessageIdDisplay(id), recipients, size, outcome = "queued", "message spooled");
        Ok(id)
    }

    /// Applies delivery results and appends attempt records in one transaction, then releases
    /// the leases of the updated recipients. When the last recipient becomes final, the message
    /// is deleted in that same transaction. On error nothing is applied and the leases stay, so
    /// the recipients are not handed out again before `release_leases` or a restart.
    ///
    /// Answered once committed, without waiting for the flush: a crash before it (at most
    /// 100 ms later) loses the outcome, and the recipients are attempted again.
    pub async fn record(
        &self,
        id: MessageId,
        updates: Vec<RecipientUpdate>,
        attempts: Vec<AttemptRecord>,
    ) -> Result<(), SpoolError> {
        self.execute_lazily(move |t, ctx| writer::record(t, ctx, id, updates, attempts))
            .await
    }

    /// Puts the leased recipients in `work` (message id, recipient indexes) back in the
    /// schedule at `when`, in one commit, without counting an attempt: for a destination in
    /// backoff, where nothing was tried. Recipients that are no longer queued, and messages
    /// gone meanwhile, are left alone; every lease named is given back. Returns how many
    /// recipients were postponed. Like [`Spool::record`], it does not wait for the flush: a
    /// postponement lost in a crash only makes recipients due sooner.
    pub async fn postpone(
        &self,
        work: Vec<(MessageId, Vec<usize>)>,
        when: SystemTime,
    ) -> Result<usize, SpoolError> {
        self.execute_lazily(move |t, ctx| writer::postpone(t, ctx, work, when))
            .await
    }

    /// Keeps every queued recipient of the message out of the schedule; returns how many.
    pub async fn hold(&self, id: MessageId) -> Result<usize, SpoolError> {
        self.admin(id, AdminAction::Hold).await
    }

    /// Queues every held recipient of the message for now; returns how many.
    pub async fn release(&self, id: MessageId) -> Result<usize, SpoolError> {
        self.admin(id, AdminAction::Release).await
    }

    /// Makes every queued recipient of the message due now; returns how many.
    pub async fn retry_now(&self, id: MessageId) -> Result<usize, SpoolError> {
        self.admin(id, AdminAction::RetryNow).await
    }

    async fn admin(&self, id: MessageId, action: AdminAction) -> Result<usize, SpoolError> {
        let changed = self
            .execute(move |t, ctx| writer::admin(t, ctx, id, action))
            .await?;
        tracing::info!(msg_id = %MessageIdDisplay(id), action = action.as_str(), changed, "queue admin");
        Ok(changed)
    }

    /// Makes every queued recipient of every message due now; returns how many were moved.
    pub async fn retry_all(&self) -> Result<usize, SpoolError> {
        let moved = self.execute(writer::retry_all).await?;
        tracing::info!(moved, "queue admin retry all");
        Ok(moved)
    }

    /// Removes the message without any DSN; returns how many recipients were not final.
    pub async fn delete(&self, id: MessageId) -> Result<usize, SpoolError> {
        let dropped = self
            .execute(move |t, ctx| writer::delete(t, ctx, id))
            .await?;
        tracing::warn!(msg_id = %MessageIdDisplay(id), dropped, outcome = "deleted", "message deleted by admin");
        Ok(dropped)
    }

    /// Removes every audit record older than `[audit] keep`, in one transaction; returns how
    /// many. Commits also do this on their own, a small batch at a time.
    pub async fn prune_audit(&self) -> Result<usize, SpoolError> {
        self.execute(|t, ctx| writer::prune_audit_now(t, ctx).map_err(writer::OpError::Abort))
            .await
    }

    /// Bounces every recipient that is not final ("administratively bounced", 5.0.0) and
    /// removes the message. `report` composes the report to the sender from the bounced message
    /// and the recipient states before the bounce (`None`: no report); it is queued in the same
    /// transaction, so the message is never gone while its report is lost (a crash loses both
    /// or neither). `report` runs on the writer thread: it must not block. Returns the bounced
    /// message, with its body, and the report's id.
    pub async fn bounce<F>(
        &self,
        id: MessageId,
        report: F,
    ) -> Result<(BouncedMessage, Option<MessageId>), SpoolError>
    where
        F: FnOnce(&BouncedMessage, &[RecipientState]) -> Option<(Envelope, Vec<u8>)>
            + Send
            + 'static,
    {
        let (bounced, report_id) = self
            .execute(move |t, ctx| writer::bounce(t, ctx, id, report))
            .await?;
        tracing::warn!(msg_id = %MessageIdDisplay(id), reported = report_id.is_some(), outcome = "bounced", "message bounced by admin");
        Ok((bounced, report_id))
    }

    /// Clears leases that `due` handed out for recipients the caller will not attempt now, and
    /// wakes whoever waits for work: they are due again at their scheduled time.
    pub fn release_leases(&self, id: MessageId, indexes: &[usize]) {
        let mut released = false;
        {
            let mut leases = lock(&self.shared().leases);
            for index in indexes.iter().filter_map(|&i| store::stored_index(i)) {
                released |= leases.remove(&(id, index));
            }
            if released {
                self.shared().schedule_changed();
            }
        }
        if released {
            self.shared().wake();
        }
    }

    /// Recipients due at `now`, from the schedule index in time order, grouped by message, at
    /// most `limit` messages. Each returned recipient is leased: later calls skip it until
    /// `record` or `release_leases`. A message whose records are damaged is logged and leased
    /// too (so it is not reported again on every call) until the next restart.
    pub fn due(&self, now: SystemTime, limit: usize) -> Result<Vec<DueMessage>, SpoolError> {
        let fail = SpoolError::storage("reading due recipients");
        // Taken before the snapshot and held for the whole call. A commit releases its leases
        // only after it is durable and under this lock, so every recipient the snapshot still
        // shows as queued is either really queued or still leased: a recipient whose outcome
        // was recorded after the snapshot began is never handed out again. Holding the lock
        // also keeps concurrent callers from picking the same recipient.
        let mut leases = lock(&self.shared().leases);
        // Nothing was scheduled or given back since a look that found nothing due before
        // `next`: most looks come after a job finished, while the schedule's first entries
        // are the recipients other jobs are delivering.
        if let Some(known) = self.shared().known()
            && known.next.is_none_or(|next| next > now)
        {
            return Ok(Vec::new());
        }
        let changes = self.shared().schedule_changes.load(Ordering::SeqCst);
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let schedule = txn.open_table(SCHEDULE).map_err(|e| fail(e.into()))?;

        let now_ms = Slot::new(now, 0, 0).at_ms;
        let mut picked: Vec<(MessageId, Vec<u32>)> = Vec::new();
        let mut positions: BTreeMap<MessageId, usize> = BTreeMap::new();
        // The first free recipient after `now`, when every one due now was picked.
        let mut next = None;
        let mut complete = true;
        for entry in schedule.iter().map_err(|e| fail(e.into()))? {
            let (key, _) = entry.map_err(|e| fail(e.into()))?;
            let (at_ms, id, index) = key.value();
            if leases.contains(&(id, index)) {
                continue;
            }
            if at_ms > now_ms {
                next = Some(Slot { at_ms, id, index }.at());
                break;
            }
            match positions.get(&id) {
                Some(&at) => picked[at].1.push(index),
                None if picked.len() >= limit => {
                    complete = false;
                    break;
                }
                None => {
                    positions.insert(id, picked.len());
                    picked.push((id, vec![index]));
                }
            }
        }
        if complete {
            self.shared().remember(Known { changes, next });
        }

        if picked.is_empty() {
            return Ok(Vec::new());
        }
        // Opened only when something is due: opening a table is not free, and the runner
        // often looks when nothing is.
        let envelopes = txn.open_table(ENVELOPES).map_err(|e| fail(e.into()))?;
        let recipients = txn.open_table(RECIPIENTS).map_err(|e| fail(e.into()))?;
        let kept: Vec<Option<KeptEnvelope>> = {
            let bodies = lock(&self.shared().bodies);
            picked.iter().map(|(id, _)| bodies.envelope(*id)).collect()
        };
        let mut due = Vec::with_capacity(picked.len());
        for ((id, indexes), kept) in picked.into_iter().zip(kept) {
            leases.extend(indexes.iter().map(|&index| (id, index)));
            match due_message(&envelopes, &recipients, id, &indexes, kept) {
                Ok(message) => due.push(message),
                Err(e) => {
                    tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&e), "damaged message skipped until restart");
                }
            }
        }
        Ok(due)
    }

    /// When the earliest recipient that is neither held nor leased is due. On a read failure
    /// it answers "now", so that the runner calls `due` and meets the error there.
    pub fn next_due(&self) -> Option<SystemTime> {
        match self.next_due_inner() {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "cannot read the schedule");
                Some(SystemTime::now())
            }
        }
    }

    fn next_due_inner(&self) -> Result<Option<SystemTime>, SpoolError> {
        let fail = SpoolError::storage("reading the schedule");
        // Before the snapshot, for the reason given in `due`.
        let leases = lock(&self.shared().leases);
        if let Some(known) = self.shared().known() {
            return Ok(known.next);
        }
        let changes = self.shared().schedule_changes.load(Ordering::SeqCst);
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let schedule = txn.open_table(SCHEDULE).map_err(|e| fail(e.into()))?;
        let mut next = None;
        for entry in schedule.iter().map_err(|e| fail(e.into()))? {
            let (key, _) = entry.map_err(|e| fail(e.into()))?;
            let (at_ms, id, index) = key.value();
            if !leases.contains(&(id, index)) {
                next = Some(Slot { at_ms, id, index }.at());
                break;
            }
        }
        self.shared().remember(Known { changes, next });
        Ok(next)
    }

    /// Notified whenever work may have become due: a submit, a release, a retry.
    pub fn work_notify(&self) -> Arc<Notify> {
        Arc::clone(&self.shared().notify)
    }

    /// Up to `limit` events waiting for the webhook `hook`, oldest first, each with the
    /// sequence number [`Spool::webhook_sent`] takes.
    pub fn webhook_pending(
        &self,
        hook: &str,
        limit: usize,
    ) -> Result<Vec<(u64, WebhookEvent)>, SpoolError> {
        let fail = SpoolError::storage("reading webhook events");
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let events = match txn.open_table(webhook::EVENTS) {
            Ok(events) => events,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(fail(e.into())),
        };
        let mut found = Vec::new();
        for entry in events
            .range((hook, 0)..=(hook, u64::MAX))
            .map_err(|e| fail(e.into()))?
            .take(limit)
        {
            let (key, value) = entry.map_err(|e| fail(e.into()))?;
            let seq = key.value().1;
            match store::decode::<WebhookEvent>("webhook_events", seq, value.value()) {
                Ok(event) => found.push((seq, event)),
                Err(e) => {
                    tracing::error!(webhook = hook, seq, error = %ErrorChain(&e), "damaged webhook event skipped");
                }
            }
        }
        Ok(found)
    }

    /// Removes the event `seq` of `hook` once its endpoint accepted it (or it was damaged);
    /// returns whether it was still queued. Flushed before answering, so a sent event is not
    /// sent again after a crash.
    pub async fn webhook_sent(&self, hook: &str, seq: u64) -> Result<bool, SpoolError> {
        let hook = hook.to_owned();
        self.execute(move |t, _| {
            let (events, meta) = t
                .webhook_events()
                .map_err(|e| writer::OpError::Abort(e.into()))?;
            Ok(webhook::remove(events, meta, &hook, seq)?)
        })
        .await
    }

    /// How many events wait for `hook`.
    pub fn webhook_queued(&self, hook: &str) -> Result<u64, SpoolError> {
        let fail = SpoolError::storage("counting webhook events");
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
        webhook::queued_read(&meta, hook).map_err(|e| fail(e.into()))
    }

    /// Queues events for `webhooks` from the next commit on (`reload`); events already queued
    /// for a webhook no longer listed stay until [`Spool::webhook_forget`].
    pub fn replace_webhooks(&self, webhooks: WebhookSettings) {
        *self
            .shared()
            .webhooks
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(webhooks);
    }

    /// Removes the queued events of every webhook not in `keep` (by name), in one
    /// transaction; returns how many.
    pub async fn webhook_forget(&self, keep: Vec<String>) -> Result<u64, SpoolError> {
        self.execute(move |t, _| {
            let (events, meta) = t
                .webhook_events()
                .map_err(|e| writer::OpError::Abort(e.into()))?;
            Ok(webhook::forget(events, meta, &keep)?)
        })
        .await
    }

    /// How many webhook events were dropped from full queues since the spool was opened.
    pub fn webhook_dropped(&self) -> u64 {
        self.shared().webhook_dropped.load(Ordering::Relaxed)
    }

    /// The body as accepted, if it is among those kept in memory since their commit (see
    /// `bodies.rs`); otherwise [`Spool::body`] reads it from the store.
    pub fn kept_body(&self, id: MessageId) -> Option<Arc<Vec<u8>>> {
        lock(&self.shared().bodies).get(id)
    }

    /// The body as accepted, read from the store.
    pub fn body(&self, id: MessageId) -> Result<Vec<u8>, SpoolError> {
        let fail = SpoolError::storage("reading a body");
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let bodies = txn.open_table(BODIES).map_err(|e| fail(e.into()))?;
        store::read_body(&bodies, id)?.ok_or(SpoolError::NotFound {
            id: MessageIdDisplay(id),
        })
    }

    /// Envelope, recipient states and attempt records of a message, if it is queued.
    pub fn message(&self, id: MessageId) -> Result<Option<StoredMessage>, SpoolError> {
        let fail = SpoolError::storage("reading a message");
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let envelopes = txn.open_table(ENVELOPES).map_err(|e| fail(e.into()))?;
        let recipients = txn.open_table(RECIPIENTS).map_err(|e| fail(e.into()))?;
        let attempts = txn.open_table(ATTEMPTS).map_err(|e| fail(e.into()))?;
        let Some(record) = store::read_envelope(&envelopes, id)? else {
            return Ok(None);
        };
        let states = store::read_states_for(&recipients, id, &record.envelope)?;
        let attempts = store::read_attempts(&attempts, id)?;
        Ok(Some(StoredMessage {
            id,
            size: record.size,
            envelope: Arc::unwrap_or_clone(record.envelope),
            states,
            attempts,
        }))
    }

    /// Every queued message, oldest id first, for the admin CLI. Reads envelopes and states
    /// (never bodies); a damaged message fails the listing with its id.
    pub fn list(&self) -> Result<Vec<QueueEntry>, SpoolError> {
        let fail = SpoolError::storage("listing the queue");
        let now = SystemTime::now();
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let envelopes = txn.open_table(ENVELOPES).map_err(|e| fail(e.into()))?;
        let recipients = txn.open_table(RECIPIENTS).map_err(|e| fail(e.into()))?;
        let mut entries = Vec::new();
        for entry in envelopes.iter().map_err(|e| fail(e.into()))? {
            let (key, value) = entry.map_err(|e| fail(e.into()))?;
            let id = key.value();
            let record: store::EnvelopeRecord = store::decode("envelopes", id, value.value())?;
            let states = store::read_states_for(&recipients, id, &record.envelope)?;
            let envelope = Arc::unwrap_or_clone(record.envelope);
            entries.push(QueueEntry {
                id,
                sender: envelope.mail_from,
                next_attempt: states.iter().filter_map(RecipientState::next_attempt).min(),
                held: states
                    .iter()
                    .any(|s| matches!(s, RecipientState::Held { .. })),
                recipients: envelope
                    .recipients
                    .into_iter()
                    .zip(states)
                    .map(|(r, state)| QueueRecipient {
                        address: r.address,
                        state,
                    })
                    .collect(),
                received_at: envelope.received_at,
                age: now
                    .duration_since(envelope.received_at)
                    .unwrap_or(Duration::ZERO),
                size: record.size,
            });
        }
        Ok(entries)
    }

    /// This node's id, kept in the data directory (see [`crate::node_id`]).
    pub fn node_id(&self) -> &str {
        &self.shared().node
    }

    /// Queue figures and commit timings for metrics. The counts are kept in memory; the
    /// oldest message's age reads one envelope, the first in the store.
    pub fn stats(&self) -> SpoolStats {
        let shared = self.shared();
        let oldest = shared.oldest_received().unwrap_or_else(|e| {
            tracing::warn!(error = %ErrorChain(&e), "the oldest message's age could not be read");
            None
        });
        lock(&shared.index).stats(oldest, SystemTime::now())
    }
}

/// The due recipients of message `id` as the snapshot holds them. Its envelope is decoded from
/// the snapshot's bytes, unless `kept` holds exactly those bytes, decoded already.
fn due_message(
    envelopes: &impl ReadableTable<u64, &'static [u8]>,
    recipients: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: MessageId,
    indexes: &[u32],
    kept: Option<KeptEnvelope>,
) -> Result<DueMessage, SpoolError> {
    let inconsistent = |detail| SpoolError::Inconsistent {
        table: "schedule",
        id: MessageIdDisplay(id),
        detail,
    };
    let stored = envelopes
        .get(id)
        .map_err(|e| SpoolError::storage("reading due recipients")(e.into()))?
        .ok_or_else(|| inconsistent("schedule entry without envelope"))?;
    let record = match kept {
        Some(kept) if kept.bytes.as_slice() == stored.value() => kept.record,
        _ => Arc::new(store::decode::<store::EnvelopeRecord>(
            "envelopes",
            id,
            stored.value(),
        )?),
    };
    let states = store::read_states_for(recipients, id, &record.envelope)?;
    let mut due = Vec::with_capacity(indexes.len());
    for &index in indexes {
        let i = index as usize;
        let (
            Some(recipient),
            Some(RecipientState::Queued {
                attempts,
                delay_dsn_sent,
                ..
            }),
        ) = (record.envelope.recipients.get(i), states.get(i))
        else {
            return Err(inconsistent(
                "schedule entry for a recipient that is not queued",
            ));
        };
        due.push(DueRecipient {
            index: i,
            address: recipient.address.clone(),
            domain: store::domain_of(&recipient.address),
            attempts: *attempts,
            delay_dsn_sent: *delay_dsn_sent,
        });
    }
    Ok(DueMessage {
        id,
        size: record.size,
        envelope: Arc::clone(&record.envelope),
        recipients: due,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held::tests::record;

    /// A store holding message 7 as `stored` encodes, with its one recipient queued.
    fn store_with(dir: &Path, stored: &store::EnvelopeRecord) -> Database {
        let db = Database::create(dir.join("spool.redb")).expect("create");
        let txn = db.begin_write().expect("begin");
        {
            let mut envelopes = txn.open_table(ENVELOPES).expect("envelopes");
            let bytes = store::encode("envelope", 7, stored).expect("encode");
            envelopes.insert(7, bytes.as_slice()).expect("insert");
            let mut recipients = txn.open_table(RECIPIENTS).expect("recipients");
            let fresh = store::encode(
                "recipient state",
                7,
                &RecipientState::fresh(SystemTime::UNIX_EPOCH),
            )
            .expect("encode");
            recipients.insert((7, 0), fresh.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        db
    }

    fn due_from(db: &Database, kept: Option<KeptEnvelope>) -> DueMessage {
        let txn = db.begin_read().expect("read");
        let envelopes = txn.open_table(ENVELOPES).expect("envelopes");
        let recipients = txn.open_table(RECIPIENTS).expect("recipients");
        due_message(&envelopes, &recipients, 7, &[0], kept).expect("due")
    }

    /// The runner's envelope comes from memory only when the kept bytes are the snapshot's own:
    /// anything else (an id used again, say) is decoded from what the snapshot holds.
    #[test]
    fn a_kept_envelope_serves_only_the_bytes_it_was_kept_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stored = record(1).into_stored();
        let db = store_with(dir.path(), &stored);
        let bytes = store::encode("envelope", 7, &stored).expect("encode");
        let same = KeptEnvelope {
            bytes: Arc::new(bytes),
            record: Arc::new(stored.clone()),
        };
        let due = due_from(&db, Some(same.clone()));
        assert!(Arc::ptr_eq(&due.envelope, &same.record.envelope));

        let mut other = stored.clone();
        Arc::make_mut(&mut other.envelope).mail_from = "mallory@example.net".into();
        let stale = KeptEnvelope {
            bytes: Arc::new(store::encode("envelope", 7, &other).expect("encode")),
            record: Arc::new(other),
        };
        let due = due_from(&db, Some(stale));
        assert_eq!(*due.envelope, *stored.envelope);
        assert_eq!(due.envelope.mail_from, "alice@example.com");

        let due = due_from(&db, None);
        assert_eq!(*due.envelope, *stored.envelope);
        assert_eq!(due.recipients.len(), 1);
    }
}
