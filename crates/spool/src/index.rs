//! In-memory figures about the queue: a small summary per message (no bodies, no envelopes),
//! totals for metrics and commit timings. Rebuilt from the tables on open and changed only after
//! a commit succeeded, so it never shows uncommitted state. Leases live in `spool`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::id::MessageId;
use crate::types::{SpoolStats, Standing};

/// What the index keeps about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) received_at: SystemTime,
    pub(crate) queued: usize,
    pub(crate) held: usize,
}

impl Summary {
    pub(crate) fn of<S: Standing>(received_at: SystemTime, states: &[S]) -> Self {
        Summary {
            received_at,
            queued: states.iter().filter(|s| s.is_queued()).count(),
            held: states.iter().filter(|s| s.is_held()).count(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    messages: HashMap<MessageId, Summary>,
    by_age: BTreeSet<(SystemTime, MessageId)>,
    queued: usize,
    held: usize,
    commits: u64,
    flushes: u64,
    failed_commits: u64,
    committed_operations: u64,
    last_commit_latency: Option<Duration>,
    total_commit_latency: Duration,
}

impl Index {
    /// Sets (or with `None` removes) the summary of message `id`.
    pub(crate) fn set(&mut self, id: MessageId, summary: Option<Summary>) {
        if let Some(old) = self.messages.remove(&id) {
            self.by_age.remove(&(old.received_at, id));
            self.queued = self.queued.saturating_sub(old.queued);
            self.held = self.held.saturating_sub(old.held);
        }
        if let Some(new) = summary {
            self.by_age.insert((new.received_at, id));
            self.queued += new.queued;
            self.held += new.held;
            self.messages.insert(id, new);
        }
    }

    /// Forgets every message, keeping the commit figures (used when rebuilding after a reopen).
    pub(crate) fn clear_messages(&mut self) {
        self.messages.clear();
        self.by_age.clear();
        self.queued = 0;
        self.held = 0;
    }

    /// Takes the message summaries of a freshly recovered index.
    pub(crate) fn absorb(&mut self, other: Index) {
        for (id, summary) in other.messages {
            self.set(id, Some(summary));
        }
    }

    pub(crate) fn committed(&mut self, operations: usize, latency: Duration, flushed: bool) {
        self.commits += 1;
        self.flushes += u64::from(flushed);
        self.committed_operations += operations as u64;
        self.last_commit_latency = Some(latency);
        self.total_commit_latency += latency;
    }

    pub(crate) fn commit_failed(&mut self) {
        self.failed_commits += 1;
    }

    pub(crate) fn stats(&self, now: SystemTime) -> SpoolStats {
        let oldest_age = self
            .by_age
            .first()
            .map(|(at, _)| now.duration_since(*at).unwrap_or(Duration::ZERO));
        SpoolStats {
            messages: self.messages.len(),
            recipients_queued: self.queued,
            held: self.held,
            oldest_age,
            commits: self.commits,
            flushes: self.flushes,
            failed_commits: self.failed_commits,
            committed_operations: self.committed_operations,
            last_commit_latency: self.last_commit_latency,
            total_commit_latency: self.total_commit_latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn totals_follow_summaries_being_replaced_and_removed() {
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        let mut index = Index::default();
        let summary = |secs, queued, held| Summary {
            received_at: t0 + Duration::from_secs(secs),
            queued,
            held,
        };
        index.set(1, Some(summary(0, 2, 0)));
        index.set(2, Some(summary(10, 1, 1)));
        index.set(1, Some(summary(0, 1, 1)));
        let stats = index.stats(t0 + Duration::from_secs(30));
        assert_eq!(
            (stats.messages, stats.recipients_queued, stats.held),
            (2, 2, 2)
        );
        assert_eq!(stats.oldest_age, Some(Duration::from_secs(30)));
        index.set(1, None);
        let stats = index.stats(t0 + Duration::from_secs(30));
        assert_eq!(stats.oldest_age, Some(Duration::from_secs(20)));
        assert_eq!(
            (stats.messages, stats.recipients_queued, stats.held),
            (1, 1, 1)
        );
    }
}
