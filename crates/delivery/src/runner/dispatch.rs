//! The runner's in-memory view of destinations: due work waiting for a connection slot, the
//! global and per-destination semaphores, and destination-wide backoff. Owned by the loop task
//! alone; what a job does with its messages is `settle`'s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strictmx_protocol::ErrorChain;
use strictmx_spool::{DueMessage, DueRecipient, MessageId, MessageIdDisplay};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};

use super::work::{PendingMessage, Reach, TaskDone};
use super::{Context, QueueError, QueueSettings, settle};
use crate::job::Deliver;

/// Due work held in memory (leased, bodies not loaded) is bounded by this many batches.
const PENDING_BATCHES: usize = 4;
/// A destination without work, failures or jobs is forgotten after this long.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// A job takes messages until their bodies add up to this many octets (at least one message):
/// a job holds its bodies in memory, so this times `max_connections` bounds delivery's memory.
const JOB_BODY_BUDGET: u64 = 16 * 1024 * 1024;

/// What one look at the spool found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fetched {
    /// As many messages as asked for: more may be due right away.
    Full,
    /// Fewer: the spool has nothing more due now.
    Some,
    /// The in-memory backlog is full; jobs must finish first.
    NoRoom,
    /// The spool could not be read.
    Failed,
}

#[derive(Debug)]
struct Destination {
    slots: Arc<Semaphore>,
    pending: VecDeque<PendingMessage>,
    /// Consecutive jobs that found no MX host reachable.
    failures: u32,
    not_before: Option<SystemTime>,
    /// The last job connected; until then one probe job at a time.
    reachable: bool,
    /// Jobs started and not yet taken in by `finish`. A job gives its connection slot back
    /// as it ends, before the loop has learnt what it found, so the slots alone would let a
    /// second probe start in between.
    jobs: usize,
    last_used: SystemTime,
}

impl Destination {
    fn new(max_per_destination: usize, now: SystemTime) -> Self {
        Destination {
            slots: Arc::new(Semaphore::new(max_per_destination)),
            pending: VecDeque::new(),
            failures: 0,
            not_before: None,
            reachable: false,
            jobs: 0,
            last_used: now,
        }
    }

    fn backed_off(&self, now: SystemTime) -> Option<SystemTime> {
        self.not_before.filter(|until| *until > now)
    }
}

#[derive(Debug)]
pub(super) struct Dispatcher {
    global: Arc<Semaphore>,
    destinations: HashMap<String, Destination>,
    /// Task id → destination, to name the destination of a job that panicked.
    running: HashMap<Id, String>,
    /// Task id → the backlog entries a reschedule task holds: counted in `pending_messages`
    /// until it ends, however it ends, and their leases given back if it panicked.
    rescheduling: HashMap<Id, Vec<(MessageId, Vec<usize>)>>,
    pending_messages: usize,
    pending_limit: usize,
    max_per_destination: usize,
}

impl Dispatcher {
    pub(super) fn new(settings: &QueueSettings) -> Self {
        let batch = settings.batch_size.max(1);
        Dispatcher {
            global: Arc::new(Semaphore::new(settings.max_connections.max(1))),
            destinations: HashMap::new(),
            running: HashMap::new(),
            rescheduling: HashMap::new(),
            pending_messages: 0,
            pending_limit: batch.saturating_mul(PENDING_BATCHES),
            max_per_destination: settings.max_per_destination.max(1),
        }
    }

    /// An operator asked for a retry: the named destinations (all when `None`) forget their
    /// backoff, so what the spool hands out next is tried at once. Returns how many were in
    /// backoff.
    pub(super) fn clear_backoff(&mut self, domains: Option<&[String]>) -> usize {
        let mut cleared = 0;
        for (domain, destination) in &mut self.destinations {
            let named = domains
                .is_none_or(|names| names.iter().any(|name| name.eq_ignore_ascii_case(domain)));
            if named && destination.not_before.is_some() {
                destination.failures = 0;
                destination.not_before = None;
                cleared += 1;
            }
        }
        cleared
    }

    /// The destinations in backoff now, with the time their backoff ends, by name.
    pub(super) fn backoffs(&self, now: SystemTime) -> Vec<(String, SystemTime)> {
        let mut list: Vec<_> = self
            .destinations
            .iter()
            .filter_map(|(domain, d)| d.backed_off(now).map(|until| (domain.clone(), until)))
            .collect();
        list.sort();
        list
    }

    /// Takes due recipients from the spool into the per-destination backlog; recipients of a
    /// destination in backoff are rescheduled to its end without connecting.
    pub(super) fn fill<D: Deliver>(
        &mut self,
        context: &Arc<Context<D>>,
        tasks: &mut JoinSet<TaskDone>,
    ) -> Fetched {
        let room = self.pending_limit.saturating_sub(self.pending_messages);
        if room == 0 {
            return Fetched::NoRoom;
        }
        let limit = room.min(context.settings.batch_size.max(1));
        let now = context.clock.now();
        let due = match context.spool.due(now, limit) {
            Ok(due) => due,
            Err(source) => {
                tracing::error!(error = %ErrorChain(&QueueError::Due { source }), "queue runner cannot read the spool");
                return Fetched::Failed;
            }
        };
        let fetched = if due.len() >= limit {
            Fetched::Full
        } else {
            Fetched::Some
        };
        let mut postponed: BTreeMap<SystemTime, Vec<(MessageId, Vec<usize>)>> = BTreeMap::new();
        for message in due {
            self.accept(&mut postponed, message, now);
        }
        // One task and one spool commit for each backoff end, not one per message: a
        // destination that is down can have the whole queue come due at once.
        for (until, work) in postponed {
            self.pending_messages += work.len();
            self.reschedule(context, tasks, work, until);
        }
        fetched
    }

    /// Puts a due message's recipients in the backlog of their destinations; those of a
    /// destination in backoff go to `postponed`, by the time the backoff ends.
    fn accept(
        &mut self,
        postponed: &mut BTreeMap<SystemTime, Vec<(MessageId, Vec<usize>)>>,
        message: DueMessage,
        now: SystemTime,
    ) {
        let mut by_domain: BTreeMap<String, Vec<DueRecipient>> = BTreeMap::new();
        for recipient in message.recipients {
            by_domain
                .entry(recipient.domain.clone())
                .or_default()
                .push(recipient);
        }
        for (domain, recipients) in by_domain {
            let destination = self
                .destinations
                .entry(domain.clone())
                .or_insert_with(|| Destination::new(self.max_per_destination, now));
            destination.last_used = now;
            if let Some(until) = destination.backed_off(now) {
                let indexes = recipients.iter().map(|r| r.index).collect();
                postponed
                    .entry(until)
                    .or_default()
                    .push((message.id, indexes));
                continue;
            }
            destination.pending.push_back(PendingMessage {
                id: message.id,
                envelope: Arc::clone(&message.envelope),
                recipients,
                size: message.size,
            });
            self.pending_messages += 1;
        }
    }

    /// Starts jobs for backlogged destinations while connection slots are free. A destination
    /// not known to be reachable gets one probe job with one message; the rest waits for its
    /// outcome, so a destination that is down sees one connection attempt per backoff period.
    pub(super) fn dispatch<D: Deliver>(
        &mut self,
        context: &Arc<Context<D>>,
        tasks: &mut JoinSet<TaskDone>,
    ) {
        let now = context.clock.now();
        let mut reschedule = Vec::new();
        for (domain, destination) in &mut self.destinations {
            if destination.pending.is_empty() {
                continue;
            }
            if let Some(until) = destination.backed_off(now) {
                let work: Vec<_> = destination
                    .pending
                    .drain(..)
                    .map(|m| (m.id, m.recipients.iter().map(|r| r.index).collect()))
                    .collect();
                // Still counted in the backlog until the task has put them back.
                reschedule.push((work, until));
                continue;
            }
            let free = destination.slots.available_permits();
            let jobs = match (destination.reachable, destination.jobs) {
                (true, _) => free,
                (false, 0) => 1,
                (false, _) => 0,
            };
            for started in 0..jobs {
                if destination.pending.is_empty() {
                    break;
                }
                let Some(permits) = acquire(&self.global, &destination.slots) else {
                    break;
                };
                let take = if destination.reachable {
                    within_budget(
                        &destination.pending,
                        destination.pending.len().div_ceil(jobs - started),
                    )
                } else {
                    1
                };
                let messages: Vec<_> = destination.pending.drain(..take).collect();
                self.pending_messages = self.pending_messages.saturating_sub(messages.len());
                destination.last_used = now;
                destination.jobs += 1;
                let handle = tasks.spawn(settle::run_job(
                    Arc::clone(context),
                    domain.clone(),
                    messages,
                    permits,
                ));
                self.running.insert(handle.id(), domain.clone());
            }
        }
        for (work, until) in reschedule {
            self.reschedule(context, tasks, work, until);
        }
    }

    fn reschedule<D: Deliver>(
        &mut self,
        context: &Arc<Context<D>>,
        tasks: &mut JoinSet<TaskDone>,
        work: Vec<(MessageId, Vec<usize>)>,
        until: SystemTime,
    ) {
        let handle = tasks.spawn(settle::reschedule(Arc::clone(context), work.clone(), until));
        self.rescheduling.insert(handle.id(), work);
    }

    /// A reschedule task ended: what it held leaves the backlog.
    fn rescheduled(&mut self, id: Id) -> Vec<(MessageId, Vec<usize>)> {
        let work = self.rescheduling.remove(&id).unwrap_or_default();
        self.pending_messages = self.pending_messages.saturating_sub(work.len());
        work
    }

    /// Takes in what a finished task learnt about its destination.
    pub(super) fn finish<D>(
        &mut self,
        context: &Context<D>,
        done: Result<(Id, TaskDone), JoinError>,
    ) {
        let now = context.clock.now();
        match done {
            Ok((id, TaskDone::Job { domain, reach })) => {
                self.running.remove(&id);
                if let Some(destination) = self.destinations.get_mut(&domain) {
                    destination.jobs = destination.jobs.saturating_sub(1);
                    learn(&context.settings, destination, &domain, reach, now);
                }
            }
            Ok((id, TaskDone::Rescheduled)) => {
                self.rescheduled(id);
            }
            Err(source) if self.rescheduling.contains_key(&source.id()) => {
                for (message, indexes) in self.rescheduled(source.id()) {
                    context.spool.release_leases(message, &indexes);
                }
                tracing::error!(error = %ErrorChain(&source), "reschedule task failed; its recipients are queued again");
            }
            Err(source) => {
                let domain = self.running.remove(&source.id()).unwrap_or_default();
                if let Some(destination) = self.destinations.get_mut(&domain) {
                    destination.jobs = destination.jobs.saturating_sub(1);
                }
                let error = QueueError::JobAborted { domain, source };
                tracing::error!(error = %ErrorChain(&error), "delivery task failed");
            }
        }
        self.forget_idle(&context.settings, now);
    }

    /// On shutdown: the backlog is dropped and its leases released, so that a runner started
    /// again on the same spool (tests, a restart of the component) sees the work.
    pub(super) fn abandon<D>(&mut self, context: &Context<D>) {
        for destination in self.destinations.values_mut() {
            for message in destination.pending.drain(..) {
                let indexes: Vec<usize> = message.recipients.iter().map(|r| r.index).collect();
                context.spool.release_leases(message.id, &indexes);
                tracing::debug!(msg_id = %MessageIdDisplay(message.id), "left queued at shutdown");
            }
        }
        self.pending_messages = 0;
    }

    fn forget_idle(&mut self, settings: &QueueSettings, now: SystemTime) {
        let max_per_destination = self.max_per_destination;
        let backoff_horizon = settings.retry.max_interval.max(FORGET_AFTER);
        self.destinations.retain(|_, destination| {
            let idle = destination.pending.is_empty()
                && destination.jobs == 0
                && destination.slots.available_permits() == max_per_destination
                && now
                    .duration_since(destination.last_used)
                    .is_ok_and(|idle| idle >= FORGET_AFTER);
            let backoff_over = destination.not_before.is_none_or(|until| {
                now.duration_since(until)
                    .is_ok_and(|past| past >= backoff_horizon)
            });
            !(idle && backoff_over)
        });
    }
}

/// How many of the first `wanted` pending messages one job takes: as many as fit in
/// [`JOB_BODY_BUDGET`], and at least one.
fn within_budget(pending: &VecDeque<PendingMessage>, wanted: usize) -> usize {
    let mut total = 0u64;
    let mut take = 0;
    for message in pending.iter().take(wanted) {
        total = total.saturating_add(message.size);
        if take > 0 && total > JOB_BODY_BUDGET {
            break;
        }
        take += 1;
    }
    take.max(1)
}

/// One global and one per-destination connection slot, or nothing.
fn acquire(
    global: &Arc<Semaphore>,
    destination: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let global = Arc::clone(global).try_acquire_owned().ok()?;
    let destination = Arc::clone(destination).try_acquire_owned().ok()?;
    Some((global, destination))
}

/// Destination-wide backoff: `destination_backoff` doubled per consecutive unreachable job,
/// capped at the retry schedule's longest interval.
fn learn(
    settings: &QueueSettings,
    destination: &mut Destination,
    domain: &str,
    reach: Reach,
    now: SystemTime,
) {
    match reach {
        Reach::Reachable => {
            destination.failures = 0;
            destination.not_before = None;
            destination.reachable = true;
        }
        // Jobs that ran side by side all learn the same fact: only the first of them opens
        // a backoff period; the others finishing inside it must not double it again.
        Reach::Unreachable if destination.backed_off(now).is_some() => {
            destination.reachable = false;
        }
        Reach::Unreachable => {
            destination.failures = destination.failures.saturating_add(1);
            destination.reachable = false;
            let backoff = destination_backoff(settings, destination.failures);
            destination.not_before = Some(now + backoff);
            tracing::warn!(
                domain,
                failures = destination.failures,
                backoff_secs = backoff.as_secs(),
                outcome = "unreachable",
                "destination backed off"
            );
        }
        Reach::Unknown => {}
    }
}

pub(super) fn destination_backoff(settings: &QueueSettings, failures: u32) -> Duration {
    let cap = settings
        .retry
        .max_interval
        .max(settings.destination_backoff);
    let doublings = failures.saturating_sub(1).min(32);
    settings
        .destination_backoff
        .checked_mul(1u32 << doublings.min(31))
        .map_or(cap, |backoff| backoff.min(cap))
}

#[cfg(test)]
mod tests {
    use strictmx_spool::{Envelope, MessageId};

    use super::*;

    fn pending(sizes: &[u64]) -> VecDeque<PendingMessage> {
        let envelope = Arc::new(Envelope {
            mail_from: String::new(),
            params: strictmx_protocol::MailParams::default(),
            recipients: Vec::new(),
            received_at: SystemTime::UNIX_EPOCH,
            client: strictmx_spool::ClientInfo {
                ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                helo: "client.test".to_owned(),
                auth_user: None,
                tls: None,
            },
            kind: strictmx_spool::MessageKind::Normal,
            require_tls: None,
        });
        sizes
            .iter()
            .enumerate()
            .map(|(n, &size)| PendingMessage {
                id: n as MessageId,
                envelope: Arc::clone(&envelope),
                recipients: Vec::new(),
                size,
            })
            .collect()
    }

    #[test]
    fn a_job_takes_messages_up_to_its_body_budget_and_always_one() {
        const MIB: u64 = 1024 * 1024;
        let table: [(&[u64], usize, usize); 5] = [
            (&[2048; 10], 10, 10),
            (&[2048; 10], 4, 4),
            (&[10 * MIB, 10 * MIB, 10 * MIB], 3, 1),
            (&[6 * MIB, 6 * MIB, 6 * MIB], 3, 2),
            (&[40 * MIB], 1, 1),
        ];
        for (sizes, wanted, take) in table {
            assert_eq!(within_budget(&pending(sizes), wanted), take, "{sizes:?}");
        }
    }

    #[test]
    fn destination_backoff_doubles_from_one_minute_up_to_the_retry_cap() {
        let settings = QueueSettings::default();
        let table = [
            (1, 60),
            (2, 120),
            (3, 240),
            (8, 7680),
            (9, 14400),
            (40, 14400),
        ];
        for (failures, secs) in table {
            assert_eq!(
                destination_backoff(&settings, failures),
                Duration::from_secs(secs),
                "failures {failures}"
            );
        }
    }

    #[test]
    fn jobs_that_fail_side_by_side_open_one_backoff_period_not_two() {
        let settings = QueueSettings::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut destination = Destination::new(10, now);
        destination.reachable = true;
        learn(
            &settings,
            &mut destination,
            "example.org",
            Reach::Unreachable,
            now,
        );
        let later = now + Duration::from_millis(2);
        learn(
            &settings,
            &mut destination,
            "example.org",
            Reach::Unreachable,
            later,
        );
        assert_eq!(destination.failures, 1);
        assert_eq!(destination.not_before, Some(now + Duration::from_secs(60)));
        let after = now + Duration::from_secs(61);
        learn(
            &settings,
            &mut destination,
            "example.org",
            Reach::Unreachable,
            after,
        );
        assert_eq!(destination.failures, 2);
        assert_eq!(
            destination.not_before,
            Some(after + Duration::from_secs(120))
        );
    }
}
