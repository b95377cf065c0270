//! The messages of one job while it runs: what has become of each recipient so far, the
//! attempt records, and the last failure, which decides the outcome when no host is left.

use strictmx_spool::{AttemptOutcome, AttemptRecord};

use crate::job::{Diagnostic, JobMessage, MessageReport, RecipientOutcome, RecipientResult};
use crate::transport::attempt::{AttemptScope, record_attempt};
use crate::transport::outcome::Failure;

/// A message of the job and what has become of its recipients so far.
pub(crate) struct Pending<'j> {
    pub(crate) message: &'j JobMessage,
    /// (envelope index, address, outcome once decided)
    pub(crate) recipients: Vec<(usize, &'j str, Option<RecipientOutcome>)>,
    pub(crate) attempts: Vec<AttemptRecord>,
    /// Why the last host could not take it: used when no host is left.
    pub(crate) last_failure: Option<Failure>,
    /// Whether any host failed for a reason other than a REQUIRETLS condition.
    pub(crate) transient_failure: bool,
}

impl<'j> Pending<'j> {
    pub(crate) fn new(message: &'j JobMessage) -> Self {
        Pending {
            message,
            recipients: message
                .recipients
                .iter()
                .map(|r| (r.index, r.address.as_str(), None))
                .collect(),
            attempts: Vec::new(),
            last_failure: None,
            transient_failure: false,
        }
    }

    pub(crate) fn open(&self) -> Vec<usize> {
        self.recipients
            .iter()
            .filter(|(_, _, outcome)| outcome.is_none())
            .map(|(index, _, _)| *index)
            .collect()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.recipients.iter().all(|(_, _, o)| o.is_some())
    }

    pub(crate) fn decide(&mut self, index: usize, outcome: RecipientOutcome) {
        if let Some(slot) = self.recipients.iter_mut().find(|(i, _, _)| *i == index) {
            slot.2 = Some(outcome);
        }
    }

    /// Gives every open recipient the same outcome.
    pub(crate) fn decide_open(&mut self, outcome: &RecipientOutcome) {
        for slot in self.recipients.iter_mut().filter(|s| s.2.is_none()) {
            slot.2 = Some(outcome.clone());
        }
    }

    pub(crate) fn into_report(self) -> MessageReport {
        MessageReport {
            id: self.message.id,
            recipients: self
                .recipients
                .into_iter()
                .filter_map(|(index, _, outcome)| {
                    outcome.map(|outcome| RecipientResult { index, outcome })
                })
                .collect(),
            attempts: self.attempts,
        }
    }
}

/// Records `failure` for every message still open and remembers it as their latest failure.
pub(crate) fn fail_open(scope: &AttemptScope, pending: &mut [Pending<'_>], failure: &Failure) {
    for message in pending.iter_mut().filter(|p| !p.is_done()) {
        fail_message(scope, message, failure);
    }
}

pub(crate) fn fail_message(scope: &AttemptScope, message: &mut Pending<'_>, failure: &Failure) {
    let reply = match &failure.diagnostic {
        Diagnostic::Smtp(text) | Diagnostic::Local(text) => text.clone(),
    };
    let record = record_attempt(
        scope,
        message.message.id,
        message.open(),
        AttemptOutcome::Deferred,
        &reply,
    );
    message.attempts.push(record);
    message.transient_failure |= !failure.requiretls;
    message.last_failure = Some(failure.clone());
}

/// Gives every open recipient `outcome` without a connection (a bounce or deferral the plan
/// decided), with one attempt record per message.
pub(crate) fn settle_without_connection(
    domain: &str,
    pending: &mut [Pending<'_>],
    outcome: &RecipientOutcome,
    reason: &str,
) {
    let attempt_outcome = match outcome {
        RecipientOutcome::Bounced { .. } => AttemptOutcome::Bounced,
        _ => AttemptOutcome::Deferred,
    };
    let scope = AttemptScope::new(domain, "mx-lookup");
    for message in pending.iter_mut().filter(|p| !p.is_done()) {
        let recipients = message.open();
        message.decide_open(outcome);
        let record = record_attempt(
            &scope,
            message.message.id,
            recipients,
            attempt_outcome,
            reason,
        );
        message.attempts.push(record);
    }
}
