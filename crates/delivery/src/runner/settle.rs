//! One delivery job from start to finish: load the bodies, call the transport, turn each
//! recipient's outcome into its next state (delivered, retry later, bounced), compose the DSNs
//! the sender asked for, and persist each message with one `Spool::record`.
//!
//! The retry arithmetic is `retry`'s, the DSN text `dsn`'s, choosing jobs `dispatch`'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strictmx_protocol::{ErrorChain, status};
use strictmx_spool::{
    AttemptRecord, MessageId, MessageIdDisplay, RecipientState, RecipientUpdate, SpoolError,
};
use tokio::sync::OwnedSemaphorePermit;

use super::work::{PendingMessage, Reach, TaskDone};
use super::{Context, QueueError};
use crate::dsn::{self, DsnKind, DsnRecipient, DsnRequest};
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
    // What the spool said about each recipient when it was handed out (it stays leased to
    // this job, so only an administrator's hold changes it meanwhile, and `record` keeps that).
    let before: HashMap<(MessageId, usize), Before> = messages
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
        .collect();
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
        Ok(report) => {
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

/// Reads each body just before the job needs it (bodies are never kept for queued work). A
/// message whose body cannot be read is tried again after the retry schedule's first interval.
async fn load_bodies<D>(
    context: &Arc<Context<D>>,
    messages: Vec<PendingMessage>,
) -> Vec<JobMessage> {
    let mut loaded = Vec::with_capacity(messages.len());
    for message in messages {
        let spool = context.spool.clone();
        let id = message.id;
        let body = tokio::task::spawn_blocking(move || spool.body(id)).await;
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
                body: Arc::new(body),
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
    dsns: HashMap<DsnKind, Vec<(usize, DsnRecipient)>>,
    counts: Counts,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    delivered: u64,
    deferred: u64,
    bounced: u64,
}

/// What strictmx last knew about a recipient before this attempt.
#[derive(Debug, Clone, Copy, Default)]
struct Before {
    attempts: u32,
    delay_dsn_sent: bool,
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
        Ok(()) => {
            metrics::counter!("strictmx_messages_delivered_total").increment(counts.delivered);
            metrics::counter!("strictmx_messages_deferred_total").increment(counts.deferred);
            if counts.deferred > 0 {
                // Domains come from senders' recipients: the label set is bounded (the rest
                // count as "other").
                let label = context.destination_labels.label(domain);
                metrics::counter!("strictmx_destination_deferrals_total", "domain" => label)
                    .increment(counts.deferred);
            }
            metrics::counter!("strictmx_messages_bounced_total").increment(counts.bounced);
        }
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
        let envelope = &message.envelope;
        let params = envelope
            .recipients
            .get(recipient.index)
            .map(|r| r.params.clone())
            .unwrap_or_default();
        let orcpt = params.orcpt.clone();
        let dsn_recipient =
            |status: &str, remote_mta: Option<String>, diagnostic: Diagnostic| DsnRecipient {
                address: recipient.address.clone(),
                orcpt: orcpt.clone(),
                status: status.to_owned(),
                remote_mta,
                diagnostic: Some(diagnostic),
                last_attempt: Some(now),
            };
        let wants = |kind| dsn::requested(envelope, &params, kind);
        let (state, dsn, outcome_name) = match outcome {
            RecipientOutcome::Delivered { remote_mta, reply } => {
                self.counts.delivered += 1;
                let dsn = wants(DsnKind::Success).then(|| {
                    let entry = dsn_recipient(
                        &status::SUCCESS.to_string(),
                        Some(remote_mta.clone()),
                        Diagnostic::Smtp(reply.clone()),
                    );
                    (DsnKind::Success, entry)
                });
                let state = RecipientState::Delivered {
                    at: now,
                    mx: remote_mta,
                    reply,
                };
                (state, dsn, "delivered")
            }
            RecipientOutcome::Bounced {
                remote_mta,
                diagnostic,
                status,
            } => {
                self.counts.bounced += 1;
                let state = RecipientState::Bounced {
                    at: now,
                    reply: diagnostic_text(&diagnostic),
                    status: status.clone(),
                };
                let dsn = wants(DsnKind::Failure).then(|| {
                    (
                        DsnKind::Failure,
                        dsn_recipient(&status, remote_mta, diagnostic),
                    )
                });
                (state, dsn, "bounced")
            }
            RecipientOutcome::Deferred {
                remote_mta,
                diagnostic,
                status,
            } => {
                let attempts = before.attempts.saturating_add(1);
                if retry.expired(envelope.received_at, now) {
                    // RFC 3463 §3.5: the transient failure becomes 5.4.7 when time runs out.
                    self.counts.bounced += 1;
                    let state = RecipientState::Bounced {
                        at: now,
                        reply: diagnostic_text(&diagnostic),
                        status: status::DELIVERY_TIME_EXPIRED.to_string(),
                    };
                    let dsn = wants(DsnKind::Failure).then(|| {
                        (
                            DsnKind::Failure,
                            dsn_recipient(
                                &status::DELIVERY_TIME_EXPIRED.to_string(),
                                remote_mta,
                                diagnostic,
                            ),
                        )
                    });
                    (state, dsn, "expired")
                } else {
                    self.counts.deferred += 1;
                    let delay_due =
                        !before.delay_dsn_sent && retry.delay_dsn_due(envelope.received_at, now);
                    let state = RecipientState::Queued {
                        next_attempt: retry.next_attempt(attempts, now, &mut rand::rng()),
                        attempts,
                        last_reply: Some(diagnostic_text(&diagnostic)),
                        delay_dsn_sent: before.delay_dsn_sent || delay_due,
                    };
                    let dsn = (delay_due && wants(DsnKind::Delay)).then(|| {
                        (
                            DsnKind::Delay,
                            dsn_recipient(&status, remote_mta, diagnostic),
                        )
                    });
                    (state, dsn, "deferred")
                }
            }
        };
        log_outcome(message.id, recipient, &state, outcome_name);
        if let Some((kind, entry)) = dsn {
            self.dsns
                .entry(kind)
                .or_default()
                .push((self.updates.len(), entry));
        }
        self.updates.push(RecipientUpdate {
            index: recipient.index,
            state,
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
    for kind in [DsnKind::Failure, DsnKind::Delay, DsnKind::Success] {
        let Some(entries) = dsns.get(&kind) else {
            continue;
        };
        let recipients: Vec<DsnRecipient> = entries.iter().map(|(_, r)| r.clone()).collect();
        let composed = dsn::compose(&DsnRequest {
            kind,
            hostname: &settings.hostname,
            original_id: message.id,
            original: &message.envelope,
            original_body: &message.body,
            recipients: &recipients,
            retry_until: Some(settings.retry.retry_until(message.envelope.received_at)),
            full_body_limit: settings.dsn_full_body_limit,
            now,
        });
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
                        undo_for_dsn(update, kind, context, now);
                    }
                }
            }
        }
    }
}

/// Keeps a recipient whose DSN could not be queued in a state that produces the DSN again.
fn undo_for_dsn<D>(
    update: &mut RecipientUpdate,
    kind: DsnKind,
    context: &Context<D>,
    now: SystemTime,
) {
    match (kind, &mut update.state) {
        (DsnKind::Delay, RecipientState::Queued { delay_dsn_sent, .. }) => *delay_dsn_sent = false,
        (DsnKind::Failure, RecipientState::Bounced { reply, .. }) => {
            update.state = RecipientState::Queued {
                next_attempt: now + context.settings.retry.initial,
                attempts: 0,
                last_reply: Some(reply.clone()),
                delay_dsn_sent: false,
            };
        }
        // A delivered recipient stays delivered: the success report is lost, the mail is not.
        _ => {}
    }
}

/// Puts leased recipients back in the schedule at `when`, without counting an attempt.
pub(super) async fn reschedule<D>(
    context: Arc<Context<D>>,
    work: Vec<(MessageId, Vec<usize>)>,
    when: SystemTime,
) -> TaskDone {
    for (id, indexes) in work {
        let stored = match context.spool.message(id) {
            Ok(Some(stored)) => stored,
            Ok(None) => continue,
            Err(source) => {
                let error = QueueError::Message {
                    id: MessageIdDisplay(id),
                    source,
                };
                tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&error), "not rescheduled; its recipients are queued again");
                context.spool.release_leases(id, &indexes);
                continue;
            }
        };
        let updates: Vec<RecipientUpdate> = indexes
            .iter()
            .filter_map(|&index| match stored.states.get(index) {
                Some(RecipientState::Queued {
                    attempts,
                    last_reply,
                    delay_dsn_sent,
                    ..
                }) => Some(RecipientUpdate {
                    index,
                    state: RecipientState::Queued {
                        next_attempt: when,
                        attempts: *attempts,
                        last_reply: last_reply.clone(),
                        delay_dsn_sent: *delay_dsn_sent,
                    },
                }),
                _ => None,
            })
            .collect();
        if let Err(source) = record(&context, id, updates, Vec::new()).await {
            let error = QueueError::Record {
                id: MessageIdDisplay(id),
                source,
            };
            tracing::error!(msg_id = %MessageIdDisplay(id), error = %ErrorChain(&error), "not rescheduled; its recipients are queued again");
            context.spool.release_leases(id, &indexes);
        }
    }
    TaskDone::Rescheduled
}

fn diagnostic_text(diagnostic: &Diagnostic) -> String {
    match diagnostic {
        Diagnostic::Smtp(reply) | Diagnostic::Local(reply) => reply.clone(),
    }
}

fn log_outcome(id: MessageId, recipient: &JobRecipient, state: &RecipientState, outcome: &str) {
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
