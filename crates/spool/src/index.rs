//! In-memory figures about the queue: totals of messages and recipients for metrics, and
//! commit timings. Rebuilt from the tables on open and changed only after a commit succeeded,
//! so they never show uncommitted state. They take the same memory however long the queue
//! is: nothing is kept per message. Leases live in `spool`.

use std::time::{Duration, SystemTime};

use crate::types::{SpoolStats, Standing};

/// What one message (or the whole queue) counts for: messages, queued recipients, held
/// recipients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) messages: usize,
    pub(crate) queued: usize,
    pub(crate) held: usize,
}

impl Counts {
    /// What a message that does not exist counts for.
    pub(crate) const NONE: Counts = Counts {
        messages: 0,
        queued: 0,
        held: 0,
    };

    /// One message whose recipients are in `states`.
    pub(crate) fn of<S: Standing>(states: &[S]) -> Self {
        Counts {
            messages: 1,
            queued: states.iter().filter(|s| s.is_queued()).count(),
            held: states.iter().filter(|s| s.is_held()).count(),
        }
    }

    /// One message whose `count` recipients are all in `state`.
    pub(crate) fn uniform<S: Standing>(state: &S, count: usize) -> Self {
        Counts {
            messages: 1,
            queued: if state.is_queued() { count } else { 0 },
            held: if state.is_held() { count } else { 0 },
        }
    }

    fn add(&mut self, other: Counts) {
        self.messages += other.messages;
        self.queued += other.queued;
        self.held += other.held;
    }

    fn take(&mut self, other: Counts) {
        self.messages = self.messages.saturating_sub(other.messages);
        self.queued = self.queued.saturating_sub(other.queued);
        self.held = self.held.saturating_sub(other.held);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    totals: Counts,
    commits: u64,
    flushes: u64,
    failed_commits: u64,
    committed_operations: u64,
    last_commit_latency: Option<Duration>,
    total_commit_latency: Duration,
}

impl Index {
    /// A message that counted for `before` now counts for `after` ([`Counts::NONE`] for a
    /// message that is new, or deleted).
    pub(crate) fn changed(&mut self, before: Counts, after: Counts) {
        self.totals.take(before);
        self.totals.add(after);
    }

    /// Takes the totals of a freshly recovered index in place of these, keeping the commit
    /// figures (used when rebuilding after a reopen).
    pub(crate) fn absorb(&mut self, other: Index) {
        self.totals = other.totals;
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

    /// The figures, with `oldest` the time the oldest message was received (read from the
    /// store by the caller).
    pub(crate) fn stats(&self, oldest: Option<SystemTime>, now: SystemTime) -> SpoolStats {
        let oldest_age = oldest
            .filter(|_| self.totals.messages > 0)
            .map(|at| now.duration_since(at).unwrap_or(Duration::ZERO));
        SpoolStats {
            messages: self.totals.messages,
            recipients_queued: self.totals.queued,
            held: self.totals.held,
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
    fn totals_follow_messages_being_added_changed_and_removed() {
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        let counts = |queued, held| Counts {
            messages: 1,
            queued,
            held,
        };
        let mut index = Index::default();
        index.changed(Counts::NONE, counts(2, 0));
        index.changed(Counts::NONE, counts(1, 1));
        index.changed(counts(2, 0), counts(1, 1));
        let stats = index.stats(Some(t0), t0 + Duration::from_secs(30));
        assert_eq!(
            (stats.messages, stats.recipients_queued, stats.held),
            (2, 2, 2)
        );
        assert_eq!(stats.oldest_age, Some(Duration::from_secs(30)));
        index.changed(counts(1, 1), Counts::NONE);
        let stats = index.stats(Some(t0), t0 + Duration::from_secs(30));
        assert_eq!(
            (stats.messages, stats.recipients_queued, stats.held),
            (1, 1, 1)
        );
        index.changed(counts(1, 1), Counts::NONE);
        let stats = index.stats(Some(t0), t0 + Duration::from_secs(30));
        assert_eq!((stats.messages, stats.oldest_age), (0, None));
    }

    #[test]
    fn an_oldest_time_after_now_is_age_zero() {
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        let mut index = Index::default();
        index.changed(
            Counts::NONE,
            Counts {
                messages: 1,
                queued: 1,
                held: 0,
            },
        );
        let stats = index.stats(Some(t0 + Duration::from_secs(5)), t0);
        assert_eq!(stats.oldest_age, Some(Duration::ZERO));
    }
}
