//! Connections kept open between jobs. A session that has sent its job's messages, with room
//! left under `max_messages_per_connection`, waits here for the next job to the same host at
//! the same address under the same demands, for about [`IDLE_FOR`]; then one sweeper task per
//! pool, which wakes every [`SWEEP_EVERY`], takes it out to say QUIT.
//! Reusing it saves the TCP and TLS handshakes, EHLO and the judgement of the peer. It never
//! weakens a plan: a session is handed only to a job whose plan asks exactly what the plan
//! that judged it asked of that host (requirement, pins, TLS floor, REQUIRETLS, credentials).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use strictmx_policy::PlannedHost;

use crate::transport::attempt::{AttemptScope, WhatIf};

/// How long a spare session waits for another job.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(5);
/// How often the sweeper looks for spare sessions that waited long enough.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Spare sessions kept at once, over all destinations.
const MAX_SPARE: usize = 64;

/// What a session was judged for: only an equal key may reuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdleKey {
    pub(crate) domain: String,
    pub(crate) host: PlannedHost,
    pub(crate) addr: SocketAddr,
    pub(crate) requiretls: bool,
    /// The route's AUTH user the session logged in as, if any.
    pub(crate) login: Option<String>,
    /// What the matching shadow rules and exceptions asked of the host: their verdicts on
    /// the session go into every attempt over it, so they must be the same.
    pub(crate) what_if: Vec<WhatIf>,
}

/// A spare session with what its attempts record, and how many messages it carried.
#[derive(Debug)]
pub(crate) struct Spare<T> {
    pub(crate) session: T,
    pub(crate) scope: AttemptScope,
    pub(crate) sent: usize,
}

#[derive(Debug)]
struct Entry<T> {
    parked_at: Instant,
    key: IdleKey,
    spare: Box<Spare<T>>,
}

/// The spare sessions, behind one short-held lock.
#[derive(Debug)]
pub(crate) struct IdlePool<T> {
    entries: Mutex<Vec<Entry<T>>>,
    sweeper: AtomicBool,
}

impl<T> Default for IdlePool<T> {
    fn default() -> Self {
        IdlePool {
            entries: Mutex::new(Vec::new()),
            sweeper: AtomicBool::new(false),
        }
    }
}

impl<T> IdlePool<T> {
    fn entries(&self) -> MutexGuard<'_, Vec<Entry<T>>> {
        // Entries are whole values moved in and out; a panic elsewhere leaves them usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A spare session judged for exactly `key`, if one waits.
    pub(crate) fn take(&self, key: &IdleKey) -> Option<Box<Spare<T>>> {
        let mut entries = self.entries();
        let at = entries.iter().position(|entry| entry.key == *key)?;
        Some(entries.swap_remove(at).spare)
    }

    /// Keeps `spare` for reuse; hands it back when the pool is full.
    pub(crate) fn park(&self, key: IdleKey, spare: Box<Spare<T>>) -> Result<(), Box<Spare<T>>> {
        let mut entries = self.entries();
        if entries.len() >= MAX_SPARE {
            return Err(spare);
        }
        entries.push(Entry {
            parked_at: Instant::now(),
            key,
            spare,
        });
        Ok(())
    }

    /// Takes out the sessions that have waited [`IDLE_FOR`] by `now`.
    pub(crate) fn expired(&self, now: Instant) -> Vec<Box<Spare<T>>> {
        let mut entries = self.entries();
        let mut expired = Vec::new();
        let mut at = 0;
        while at < entries.len() {
            if now.saturating_duration_since(entries[at].parked_at) >= IDLE_FOR {
                expired.push(entries.swap_remove(at).spare);
            } else {
                at += 1;
            }
        }
        expired
    }

    /// True the first time only: the caller starts the pool's one sweeper.
    pub(crate) fn claim_sweeper(&self) -> bool {
        !self.sweeper.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use strictmx_policy::TlsRequirement;
    use strictmx_policy::report::{PolicyType, ReportPolicy};

    use super::*;

    fn key(requirement: TlsRequirement, port: u16) -> IdleKey {
        IdleKey {
            domain: "example.org".to_owned(),
            host: PlannedHost {
                host: "mx.example.org".to_owned(),
                preference: 10,
                requirement,
                pins: Vec::new(),
                min_tls_version: None,
                report: ReportPolicy {
                    policy_type: PolicyType::NoPolicyFound,
                    policy_string: Vec::new(),
                    policy_domain: "example.org".to_owned(),
                    mx_host: Vec::new(),
                },
                testing: None,
            },
            addr: SocketAddr::from(([192, 0, 2, 1], port)),
            requiretls: false,
            login: None,
            what_if: Vec::new(),
        }
    }

    fn spare(sent: usize) -> Box<Spare<&'static str>> {
        Box::new(Spare {
            session: "session",
            scope: AttemptScope::new("example.org", "none"),
            sent,
        })
    }

    #[test]
    fn a_spare_session_goes_only_to_a_job_that_demands_exactly_the_same() {
        let pool = IdlePool::default();
        let opportunistic = key(TlsRequirement::Opportunistic, 25);
        pool.park(opportunistic.clone(), spare(3)).expect("room");
        assert!(pool.take(&key(TlsRequirement::Encrypted, 25)).is_none());
        assert!(pool.take(&key(TlsRequirement::Opportunistic, 26)).is_none());
        let mut requiretls = opportunistic.clone();
        requiretls.requiretls = true;
        assert!(pool.take(&requiretls).is_none());
        let mut login = opportunistic.clone();
        login.login = Some("relay-user".to_owned());
        assert!(pool.take(&login).is_none());
        // Issue 11: its shadow verdicts are recorded for every attempt over it.
        let mut shadow = opportunistic.clone();
        shadow.what_if = vec![crate::transport::attempt::WhatIf {
            kind: crate::transport::attempt::Kind::Shadow,
            term: strictmx_policy::RuleTerm {
                rule: "dane-trial".to_owned(),
                expires: None,
                reason: None,
            },
            standing: strictmx_policy::Standing::Judge {
                rule: "dane-trial".to_owned(),
                host: opportunistic.host.clone(),
            },
            verdict: None,
        }];
        assert!(pool.take(&shadow).is_none());
        assert_eq!(pool.take(&opportunistic).map(|s| s.sent), Some(3));
        assert!(pool.take(&opportunistic).is_none(), "taken once");
    }

    #[test]
    fn only_sessions_that_waited_long_enough_expire() {
        let pool = IdlePool::default();
        pool.park(key(TlsRequirement::Opportunistic, 25), spare(1))
            .expect("room");
        let now = Instant::now();
        assert!(pool.expired(now).is_empty());
        assert_eq!(pool.expired(now + IDLE_FOR).len(), 1);
        assert!(pool.take(&key(TlsRequirement::Opportunistic, 25)).is_none());
        assert!(pool.claim_sweeper());
        assert!(!pool.claim_sweeper(), "one sweeper per pool");
    }

    #[test]
    fn the_pool_hands_a_session_back_when_full() {
        let pool = IdlePool::default();
        for port in 0..MAX_SPARE as u16 {
            pool.park(key(TlsRequirement::Opportunistic, port), spare(0))
                .expect("room");
        }
        assert!(
            pool.park(key(TlsRequirement::Opportunistic, 9999), spare(0))
                .is_err()
        );
    }
}
