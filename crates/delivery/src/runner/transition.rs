//! The next state of one recipient after one attempt: delivered, queued for a retry, or bounced,
//! and what its sender may be told about it. Pure: facts and the retry schedule in, the state
//! out.
//!
//! Persisting the state and sending DSNs are `settle`'s, whether the sender asked for a DSN and
//! what it says `notify`'s, the retry arithmetic `retry`'s.

use std::time::SystemTime;

use rand::Rng;
use strictmx_protocol::status;
use strictmx_spool::RecipientState;

use crate::dsn::DsnKind;
use crate::job::{Diagnostic, RecipientOutcome};
use crate::retry::RetrySettings;

/// What strictmx last knew about a recipient before this attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Before {
    pub(super) attempts: u32,
    pub(super) delay_dsn_sent: bool,
}

/// What became of a recipient, for the counters and the log's `outcome` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Delivered,
    Bounced,
    /// A transient failure after the queue lifetime: bounced too.
    Expired,
    Deferred,
}

impl Verdict {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Bounced => "bounced",
            Verdict::Expired => "expired",
            Verdict::Deferred => "deferred",
        }
    }
}

/// What a DSN of `kind` would say about the recipient (RFC 3464 §2.3); whether one is sent is
/// the sender's choice (`notify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Notice {
    pub(super) kind: DsnKind,
    pub(super) status: String,
    pub(super) remote_mta: Option<String>,
    pub(super) diagnostic: Diagnostic,
}

/// A recipient's next state, what it means, and the DSN it calls for, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transition {
    pub(super) state: RecipientState,
    pub(super) verdict: Verdict,
    pub(super) notice: Option<Notice>,
}

/// The state a recipient moves to after `outcome`, for a message that arrived at `received_at`,
/// at `now`. `rng` spreads the next attempt (the schedule's jitter).
pub(super) fn next_state(
    before: Before,
    outcome: RecipientOutcome,
    retry: &RetrySettings,
    received_at: SystemTime,
    now: SystemTime,
    rng: &mut impl Rng,
) -> Transition {
    match outcome {
        // RFC 3464 §2.3.3: "delivered", reported only when the sender asked (RFC 3461 §4.1).
        RecipientOutcome::Delivered { remote_mta, reply } => Transition {
            notice: Some(Notice {
                kind: DsnKind::Success,
                status: status::SUCCESS.to_string(),
                remote_mta: Some(remote_mta.clone()),
                diagnostic: Diagnostic::Smtp(reply.clone()),
            }),
            state: RecipientState::Delivered {
                at: now,
                mx: remote_mta,
                reply,
            },
            verdict: Verdict::Delivered,
        },
        RecipientOutcome::Bounced {
            remote_mta,
            diagnostic,
            status,
        } => bounced(Verdict::Bounced, status, remote_mta, diagnostic, now),
        // RFC 5321 §4.5.4.1: retries go on until the sender gives up, after a lifetime of
        // "at least 4-5 days"; RFC 3463 §3.5: the transient failure then becomes 5.4.7.
        RecipientOutcome::Deferred {
            remote_mta,
            diagnostic,
            ..
        } if retry.expired(received_at, now) => {
            let expired = status::DELIVERY_TIME_EXPIRED.to_string();
            bounced(Verdict::Expired, expired, remote_mta, diagnostic, now)
        }
        RecipientOutcome::Deferred {
            remote_mta,
            diagnostic,
            status,
        } => {
            let notice = Notice {
                kind: DsnKind::Delay,
                status,
                remote_mta,
                diagnostic,
            };
            deferred(before, notice, retry, received_at, now, rng)
        }
    }
}

/// Final: RFC 3464 §2.3.3 "failed".
fn bounced(
    verdict: Verdict,
    status: String,
    remote_mta: Option<String>,
    diagnostic: Diagnostic,
    now: SystemTime,
) -> Transition {
    Transition {
        state: RecipientState::Bounced {
            at: now,
            reply: diagnostic_text(&diagnostic),
            status: status.clone(),
        },
        verdict,
        notice: Some(Notice {
            kind: DsnKind::Failure,
            status,
            remote_mta,
            diagnostic,
        }),
    }
}

/// Queued again after the schedule's next interval (RFC 5321 §4.5.4.1: a failed destination is
/// not retried at once). Once the message is old enough, one delay DSN (RFC 3464 §2.3.3
/// "delayed") is due; it is marked sent whether or not the sender asked for it, so that it is
/// considered once.
fn deferred(
    before: Before,
    notice: Notice,
    retry: &RetrySettings,
    received_at: SystemTime,
    now: SystemTime,
    rng: &mut impl Rng,
) -> Transition {
    let attempts = before.attempts.saturating_add(1);
    let delay_due = !before.delay_dsn_sent && retry.delay_dsn_due(received_at, now);
    Transition {
        state: RecipientState::Queued {
            next_attempt: retry.next_attempt(attempts, now, rng),
            attempts,
            last_reply: Some(diagnostic_text(&notice.diagnostic)),
            delay_dsn_sent: before.delay_dsn_sent || delay_due,
        },
        verdict: Verdict::Deferred,
        notice: delay_due.then_some(notice),
    }
}

/// The state that makes a DSN of `kind`, which could not be queued, come again: a delay DSN is
/// due again at the next deferral, and a bounced recipient is queued again from scratch, to be
/// bounced (and reported) later rather than losing the report. A delivered recipient stays
/// delivered: the success report is lost, the mail is not.
pub(super) fn after_unqueued_dsn(
    state: &mut RecipientState,
    kind: DsnKind,
    retry: &RetrySettings,
    now: SystemTime,
) {
    match (kind, &mut *state) {
        (DsnKind::Delay, RecipientState::Queued { delay_dsn_sent, .. }) => *delay_dsn_sent = false,
        (DsnKind::Failure, RecipientState::Bounced { reply, .. }) => {
            *state = RecipientState::Queued {
                next_attempt: now + retry.initial,
                attempts: 0,
                last_reply: Some(reply.clone()),
                delay_dsn_sent: false,
            };
        }
        _ => {}
    }
}

fn diagnostic_text(diagnostic: &Diagnostic) -> String {
    match diagnostic {
        Diagnostic::Smtp(reply) | Diagnostic::Local(reply) => reply.clone(),
    }
}

#[cfg(test)]
mod tests;
