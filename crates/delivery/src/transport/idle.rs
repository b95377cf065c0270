//! Connections kept open between jobs. A session that has sent its job's messages, with room
//! left under `max_messages_per_connection`, waits here for the next job to the same host at
//! the same address under the same demands, for at most [`IDLE_FOR`]; then it says QUIT.
//! Reusing it saves the TCP and TLS handshakes, EHLO and the judgement of the peer. It never
//! weakens a plan: a session is handed only to a job whose plan asks exactly what the plan
//! that judged it asked of that host (requirement, pins, TLS floor, REQUIRETLS, credentials).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use strictmx_policy::PlannedHost;

use crate::transport::attempt::AttemptScope;

/// How long a spare session waits for another job.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(5);
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
    id: u64,
    key: IdleKey,
    spare: Box<Spare<T>>,
}

/// The spare sessions, behind one short-held lock.
#[derive(Debug)]
pub(crate) struct IdlePool<T> {
    entries: Mutex<Vec<Entry<T>>>,
    next_id: AtomicU64,
}

impl<T> Default for IdlePool<T> {
    fn default() -> Self {
        IdlePool {
            entries: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
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

    /// Keeps `spare` for reuse and returns its ticket for [`IdlePool::expire`]; hands it back
    /// when the pool is full.
    pub(crate) fn park(&self, key: IdleKey, spare: Box<Spare<T>>) -> Result<u64, Box<Spare<T>>> {
        let mut entries = self.entries();
        if entries.len() >= MAX_SPARE {
            return Err(spare);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        entries.push(Entry { id, key, spare });
        Ok(id)
    }

    /// The session parked under `ticket`, if no job took it meanwhile.
    pub(crate) fn expire(&self, ticket: u64) -> Option<Box<Spare<T>>> {
        let mut entries = self.entries();
        let at = entries.iter().position(|entry| entry.id == ticket)?;
        Some(entries.swap_remove(at).spare)
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
        assert_eq!(pool.take(&opportunistic).map(|s| s.sent), Some(3));
        assert!(pool.take(&opportunistic).is_none(), "taken once");
    }

    #[test]
    fn an_expired_ticket_returns_the_session_unless_a_job_took_it() {
        let pool = IdlePool::default();
        let first = pool
            .park(key(TlsRequirement::Opportunistic, 25), spare(1))
            .expect("room");
        let second = pool
            .park(key(TlsRequirement::Opportunistic, 25), spare(2))
            .expect("room");
        assert!(pool.take(&key(TlsRequirement::Opportunistic, 25)).is_some());
        let left = [first, second]
            .into_iter()
            .filter(|ticket| pool.expire(*ticket).is_some())
            .count();
        assert_eq!(left, 1);
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
