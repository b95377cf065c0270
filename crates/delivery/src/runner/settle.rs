//! One delivery job from start to finish: load the bodies, call the transport, apply each
//! recipient's next state, queue the DSNs the sender asked for, and persist each message with
//! one `Spool::record`.
//!
//! What an outcome means for a recipient is `transition`'s, which DSNs it calls for `notify`'s,
//! the DSN text `dsn`'s, choosing jobs `dispatch`'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strictmx_protocol::{ErrorChain, status};
use strictmx_spool::{
    AttemptRecord, MessageId, MessageIdDisplay, RecipientState, RecipientUpdate, SpoolError,
};
use tokio::sync::OwnedSemaphorePermit;

use super::transition::{self, Before, Verdict};
use super::work::{PendingMessage, Reach, TaskDone};
use super::{Context, QueueError, notify};
use crate::dsn::{self, DsnRecipient};
use crate::job::{
    Deliver, DeliveryJob, Diagnostic, JobMessage, JobRecipient, MessageReport, RecipientOutcome,
};

/// The pauses before recording a job's outcome again after a transient spool failure.
const RECORD_RETRIES: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

/// Runs one job for `domain`; the permits are its connection slots, released when it ends.
pub(super) async fn run_job<D: Deliver>(
    context: Arc<Context<D>>,
    domain: String,
    messages: Vec<PendingMessage>,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) -> TaskDone {
    let before = befores(&messages);
    let job = DeliveryJob {
        domain: domain.clone(),
        messages: load_bodies(&context, messages).await,
    };
    if job.messages.is_empty() {
        return TaskDone::Job {
            domain,
            reach: Reach::Unknown,
        };
    }
    let timeout = context.settings.job_timeout;
    // Boxed: the transport's future is large (about 14 KB), and inline it made every job's
    // task that large, copied at each spawn and again when the task finished.
    let delivering = Box::pin(context.deliver.deliver(job.clone()));
    let delivered = tokio::time::timeout(timeout, delivering).await;
    drop(permits);
    let (report, reach, missing) = match delivered {
        Ok(mut report) => {
            if let (Some(watch), Some(posture)) = (&context.watch, report.posture.take()) {
                watch.observe(&domain, posture, context.clock.now()).await;
            }
            // RFC 8460 §4: every negotiation counts towards the recipient domain's report;
            // the transport already leaves out jobs that carry only TLSRPT reports.
            if let Some(recorder) = &context.tlsrpt
                && !report.sessions.is_empty()
            {
                recorder.record(&report.sessions);
            }
            let reach = if report.destination_unreachable {
                Reach::Unreachable
            } else {
                Reach::Reachable
            };
            let missing = Diagnostic::Local("the transport reported no outcome".to_owned());
            (report.messages, reach, missing)
        }
        Err(_) => {
            tracing::warn!(
                domain,
                timeout_secs = timeout.as_secs(),
                outcome = "deferred",
                "delivery job timed out"
            );
            let missing = Diagnostic::Local(format!(
                "delivery gave no result within {} s",
                timeout.as_secs()
            ));
            (Vec::new(), Reach::Unknown, missing)
        }
    };
    let mut reports = merge_reports(report);
    for message in &job.messages {
        let report = reports.remove(&message.id);
        settle(&context, &domain, message, report, &missing, &before).await;
    }
    TaskDone::Job { domain, reach }
}

/// What the spool said about each recipient when it was handed out (it stays leased to this
/// job, so only an administrator's hold changes it meanwhile, and `record` keeps that).
fn befores(messages: &[PendingMessage]) -> HashMap<(MessageId, usize), Before> {
    messages
        .iter()
        .flat_map(|m| {
            m.recipients.iter().map(|r| {
                let before = Before {
                    attempts: r.attempts,
                    delay_dsn_sent: r.delay_dsn_sent,
                };
                ((m.id, r.index), before)
            })
        })
        .collect()
}

/// Takes each body the spool kept since its commit, or reads it from the store (on a blocking
/// thread) just before the job needs it. A message whose body cannot be read is tried again
/// after the retry schedule's first interval.
async fn load_bodies<D>(
    context: &Arc<Context<D>>,
    messages: Vec<PendingMessage>,
) -> Vec<JobMessage> {
    let mut loaded = Vec::with_capacity(messages.len());
    for message in messages {
        let id = message.id;
        let body = match context.spool.kept_body(id) {
            Some(body) => Ok(Ok(body)),
            None => {
                let spool = context.spool.clone();
                tokio::task::spawn_blocking(move || spool.body(id).map(Arc::new)).await
            }
        };
        let indexes: Vec<usize> = message.recipients.iter().map(|r| r.index).collect();
        match body {
            Ok(Ok(body)) => loaded.push(JobMessage {
                id,
                envelope: message.envelope,
                recipients: message
                    .recipients
                    .into_iter()
                    .map(|r| JobRecipient {
                        index: r.index,
                        address: r.address,
                    })
                    .collect(),
                body,
            }),
            // Deleted meanwhile by an administrator: nothing left to do.
            Ok(Err(SpoolError::NotFound { .. })) => context.spool.release_leases(id, &indexes),
            Ok(Err(source)) => {
                let error = QueueError::Body {
                    id: MessageIdDisplay(id),
                    source,
                };
                tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&error), "body unreadable");
                let later = context.clock.now() + context.settings.retry.initial;
                reschedule(Arc::clone(context), vec![(id, indexes)], later).await;
            }
            Err(join) => {
                tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&join), "body read aborted");
            }
        }
    }
    loaded
}

fn merge_reports(reports: Vec<MessageReport>) -> HashMap<MessageId, MessageReport> {
    let mut merged: HashMap<MessageId, MessageReport> = HashMap::new();
    for report in reports {
        match merged.get_mut(&report.id) {
            Some(existing) => {
                existing.recipients.extend(report.recipients);
                existing.attempts.extend(report.attempts);
            }
            None => {
                merged.insert(report.id, report);
            }
        }
    }
    merged
}

/// The recipients of one message that go into one DSN kind, plus the updates to persist.
#[derive(Debug, Default)]
struct Settlement {
    updates: Vec<RecipientUpdate>,
    /// Per DSN kind: (index into `updates`, what the DSN says).
    dsns: notify::Entries,
    counts: Counts,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    delivered: u64,
    deferred: u64,
    bounced: u64,
}

impl Counts {
    /// Adds the recorded outcomes of one message for `domain` to the metrics.
    fn publish<D>(self, context: &Context<D>, domain: &str) {
        metrics::counter!("strictmx_messages_delivered_total").increment(self.delivered);
        metrics::counter!("strictmx_messages_deferred_total").increment(self.deferred);
        if self.deferred > 0 {
            // Domains come from senders' recipients: the label set is bounded (the rest
            // count as "other").
            let label = context.destination_labels.label(domain);
            metrics::counter!("strictmx_destination_deferrals_total", "domain" => label)
                .increment(self.deferred);
        }
        metrics::counter!("strictmx_messages_bounced_total").increment(self.bounced);
    }
}

/// Applies one message's outcomes: next states, DSNs, then one `record`.
async fn settle<D>(
    context: &Arc<Context<D>>,
    domain: &str,
    message: &JobMessage,
    report: Option<MessageReport>,
    missing: &Diagnostic,
    befores: &HashMap<(MessageId, usize), Before>,
) {
    let id = message.id;
    let indexes: Vec<usize> = message.recipients.iter().map(|r| r.index).collect();
    let (outcomes, attempts) = match report {
        Some(report) => (report.recipients, report.attempts),
        None => (Vec::new(), Vec::new()),
    };
    let outcomes: HashMap<usize, RecipientOutcome> =
        outcomes.into_iter().map(|r| (r.index, r.outcome)).collect();
    let now = context.clock.now();
    let mut settlement = Settlement::default();
    for recipient in &message.recipients {
        let outcome =
            outcomes
                .get(&recipient.index)
                .cloned()
                .unwrap_or_else(|| RecipientOutcome::Deferred {
                    remote_mta: None,
                    diagnostic: missing.clone(),
                    status: status::NO_ANSWER.to_string(),
                });
        let before = befores
            .get(&(id, recipient.index))
            .copied()
            .unwrap_or_default();
        settlement.apply(context, message, recipient, outcome, before, now);
    }
    send_dsns(context, message, &mut settlement, now).await;
    let counts = settlement.counts;
    match record(context, id, settlement.updates, attempts).await {
        Ok(()) => counts.publish(context, domain),
        // Deleted meanwhile by an administrator.
        Err(SpoolError::NotFound { .. }) => context.spool.release_leases(id, &indexes),
        Err(source) => {
            let error = QueueError::Record {
                id: MessageIdDisplay(id),
                source,
            };
            // SMTP is at-least-once: the recipients are handed out again rather than kept
            // leased, so a delivered one may be delivered twice, and none is stuck.
            tracing::error!(msg_id = %MessageIdDisplay(id), domain, error = %ErrorChain(&error), "outcome not recorded; its recipients are queued again");
            context.spool.release_leases(id, &indexes);
        }
    }
}

/// `Spool::record`, tried again after [`RECORD_RETRIES`] pauses when the failure is transient
/// (a failed commit, a store reopening after an I/O error).
async fn record<D>(
    context: &Context<D>,
    id: MessageId,
    updates: Vec<RecipientUpdate>,
    attempts: Vec<AttemptRecord>,
) -> Result<(), SpoolError> {
    let mut pauses = RECORD_RETRIES.iter();
    loop {
        match context
            .spool
            .record(id, updates.clone(), attempts.clone())
            .await
        {
            Err(error) if error.is_transient() => match pauses.next() {
                Some(pause) => {
                    tracing::warn!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&error), retry_in_ms = pause.as_millis() as u64, "outcome not recorded yet; trying again");
                    tokio::time::sleep(*pause).await;
                }
                None => return Err(error),
            },
            done => return done,
        }
    }
}

impl Settlement {
    /// Moves `recipient` to its next state after `outcome` and notes the DSN it calls for.
    fn apply<D>(
        &mut self,
        context: &Context<D>,
        message: &JobMessage,
        recipient: &JobRecipient,
        outcome: RecipientOutcome,
        before: Before,
        now: SystemTime,
    ) {
        let retry = &context.settings.retry;
        let received_at = message.envelope.received_at;
        let transition =
            transition::next_state(before, outcome, retry, received_at, now, &mut rand::rng());
        match transition.verdict {
            Verdict::Delivered => self.counts.delivered += 1,
            Verdict::Bounced | Verdict::Expired => self.counts.bounced += 1,
            Verdict::Deferred => self.counts.deferred += 1,
        }
        log_outcome(message.id, recipient, &transition.state, transition.verdict);
        let entry = transition
            .notice
            .and_then(|notice| notify::entry(message, recipient, notice, now));
        if let Some((kind, entry)) = entry {
            self.dsns
                .entry(kind)
                .or_default()
                .push((self.updates.len(), entry));
        }
        self.updates.push(RecipientUpdate {
            index: recipient.index,
            state: transition.state,
        });
    }
}

/// Composes and queues one DSN per kind for this message. A failure DSN that cannot be queued
/// leaves its recipients queued, to be bounced again later, rather than losing the report; a
/// delay DSN that cannot be queued is tried again on the next deferral.
async fn send_dsns<D>(
    context: &Arc<Context<D>>,
    message: &JobMessage,
    settlement: &mut Settlement,
    now: SystemTime,
) {
    let settings = &context.settings;
    let dsns = std::mem::take(&mut settlement.dsns);
    for kind in notify::KINDS {
        let Some(entries) = dsns.get(&kind) else {
            continue;
        };
        let recipients: Vec<DsnRecipient> = entries.iter().map(|(_, r)| r.clone()).collect();
        let composed = dsn::compose(&notify::request(kind, message, &recipients, settings, now));
        match context.spool.submit(composed.envelope, composed.body).await {
            Ok(dsn_id) => {
                metrics::counter!("strictmx_dsn_sent_total", "kind" => kind.label()).increment(1);
                tracing::info!(
                    msg_id = %MessageIdDisplay(message.id),
                    dsn_id = %MessageIdDisplay(dsn_id),
                    rcpt = %message.envelope.mail_from,
                    kind = kind.label(),
                    outcome = "queued",
                    "dsn queued"
                );
            }
            Err(source) => {
                let error = QueueError::SubmitDsn {
                    id: MessageIdDisplay(message.id),
                    kind,
                    source,
                };
                tracing::error!(msg_id = %MessageIdDisplay(message.id), error = %ErrorChain(&error), "dsn not queued");
                for (position, _) in entries {
                    if let Some(update) = settlement.updates.get_mut(*position) {
                        transition::after_unqueued_dsn(
                            &mut update.state,
                            kind,
                            &settings.retry,
                            now,
                        );
                    }
                }
            }
        }
    }
}

/// Puts leased recipients back in the schedule at `when`, without counting an attempt, in
/// one spool commit. On failure their leases are given back, so they are due again.
pub(super) async fn reschedule<D>(
    context: Arc<Context<D>>,
    work: Vec<(MessageId, Vec<usize>)>,
    when: SystemTime,
) -> TaskDone {
    let count = work.len();
    if let Err(source) = context.spool.postpone(work.clone(), when).await {
        let error = QueueError::Postpone { count, source };
        tracing::error!(error = %ErrorChain(&error), "not rescheduled; their recipients are queued again");
        for (id, indexes) in &work {
            context.spool.release_leases(*id, indexes);
        }
    }
    TaskDone::Rescheduled
}

fn log_outcome(id: MessageId, recipient: &JobRecipient, state: &RecipientState, verdict: Verdict) {
    let outcome = verdict.as_str();
    match state {
        RecipientState::Delivered { mx, .. } => tracing::info!(
            msg_id = %MessageIdDisplay(id), rcpt = %recipient.address, mx = %mx, outcome,
            "recipient delivered"
        ),
        RecipientState::Queued {
            attempts,
            last_reply,
            ..
        } => tracing::info!(
            msg_id = %MessageIdDisplay(id), rcpt = %recipient.address, attempts, outcome,
            reply = last_reply.as_deref().unwrap_or_default(), "recipient deferred"
        ),
        RecipientState::Bounced { status, reply, .. } => tracing::info!(
            msg_id = %MessageIdDisplay(id), rcpt = %recipient.address, status = %status, outcome,
            reply = %reply, "recipient bounced"
        ),
        RecipientState::Held { .. } => {}
    }
}
