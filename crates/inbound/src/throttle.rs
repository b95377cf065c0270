//! Server-wide defences for AUTH: a failure budget per client network that outlives sessions,
//! with a delay that grows with each failure, and a bound on password checks running at once
//! (each argon2 check costs about 19 MiB and a core). The SASL dialogue is `session::auth`'s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Limits;

/// How many client networks the failure table remembers; the outsider chooses how many
/// addresses to try from, so the table is bounded and sheds its stalest entry when full.
const MAX_TRACKED: usize = 10_000;
/// The longest pause before a failure is answered, however many failures came before.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// Why a password check may not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// This client network used up its failure budget.
    Budget,
    /// Every password-check slot is taken.
    Busy,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Budget => "budget",
            Refusal::Busy => "busy",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug)]
pub(crate) struct AuthThrottle {
    /// Failed attempts a client network may make within `window` before AUTH is refused.
    budget: u32,
    window: Duration,
    /// The pause after the first failure; it doubles with each further one.
    first_delay: Duration,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    checks: Arc<Semaphore>,
}

impl AuthThrottle {
    pub(crate) fn new(limits: &Limits) -> AuthThrottle {
        AuthThrottle {
            budget: limits.auth_failures_per_client,
            window: limits.auth_failure_window,
            first_delay: limits.auth_failure_delay,
            failures: Mutex::new(HashMap::new()),
            checks: Arc::new(Semaphore::new(limits.max_concurrent_auth)),
        }
    }

    /// A slot for one password check from `ip`, or why there is none.
    pub(crate) fn admit(&self, ip: IpAddr, now: Instant) -> Result<OwnedSemaphorePermit, Refusal> {
        if self.recent_failures(ip, now) >= self.budget {
            return Err(Refusal::Budget);
        }
        Arc::clone(&self.checks)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)
    }

    /// Count a failure from `ip` (a wrong password or a malformed exchange) and return how long
    /// to wait before answering it.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let key = client_network(ip);
        let mut table = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.contains_key(&key) && table.len() >= MAX_TRACKED {
            table.retain(|_, f| now.duration_since(f.last) < self.window);
            if table.len() >= MAX_TRACKED
                && let Some(stalest) = table.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k)
            {
                table.remove(&stalest);
            }
        }
        let entry = table.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= self.window {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let count = entry.count;
        let tracked = table.len();
        drop(table);
        metrics::gauge!("strictmx_auth_clients_tracked").set(tracked as f64);
        growing_delay(self.first_delay, count)
    }

    fn recent_failures(&self, ip: IpAddr, now: Instant) -> u32 {
        let table = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match table.get(&client_network(ip)) {
            Some(f) if now.duration_since(f.last) < self.window => f.count,
            _ => 0,
        }
    }
}

/// `first` after the first failure, doubling with each further one, at most [`MAX_DELAY`].
fn growing_delay(first: Duration, count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(16);
    first
        .saturating_mul(1 << doublings)
        .min(MAX_DELAY.max(first))
}

/// The unit a budget is kept for: the address itself for IPv4, its /64 for IPv6, since one
/// IPv6 client usually holds a whole /64.
fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(failures: u32, checks: usize) -> AuthThrottle {
        AuthThrottle::new(&Limits {
            auth_failures_per_client: failures,
            auth_failure_window: Duration::from_secs(600),
            auth_failure_delay: Duration::from_secs(1),
            max_concurrent_auth: checks,
            ..Limits::default()
        })
    }

    #[test]
    fn the_delay_doubles_with_each_failure_up_to_a_minute() {
        let t = throttle(100, 1);
        let ip = IpAddr::from([192, 0, 2, 1]);
        let now = Instant::now();
        let delays: Vec<u64> = (0..8).map(|_| t.failed(ip, now).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn a_spent_budget_refuses_checks_from_that_client_until_the_window_passes() {
        let t = throttle(3, 4);
        let ip = IpAddr::from([192, 0, 2, 1]);
        let other = IpAddr::from([192, 0, 2, 2]);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.admit(ip, now).is_ok());
            t.failed(ip, now);
        }
        assert_eq!(t.admit(ip, now).err(), Some(Refusal::Budget));
        assert!(
            t.admit(other, now).is_ok(),
            "other clients keep their budget"
        );
        let later = now + Duration::from_secs(601);
        assert!(
            t.admit(ip, later).is_ok(),
            "failures are forgotten after the window"
        );
    }

    #[test]
    fn one_ipv6_64_shares_a_budget_and_mapped_ipv4_counts_as_ipv4() {
        let t = throttle(2, 4);
        let now = Instant::now();
        t.failed("2001:db8:1:2::1".parse().expect("ip"), now);
        t.failed("2001:db8:1:2::ffff".parse().expect("ip"), now);
        let neighbour: IpAddr = "2001:db8:1:2:abcd::9".parse().expect("ip");
        assert_eq!(t.admit(neighbour, now).err(), Some(Refusal::Budget));
        t.failed("::ffff:192.0.2.7".parse().expect("ip"), now);
        t.failed(IpAddr::from([192, 0, 2, 7]), now);
        assert_eq!(
            t.admit(IpAddr::from([192, 0, 2, 7]), now).err(),
            Some(Refusal::Budget)
        );
    }

    #[test]
    fn checks_beyond_the_concurrency_bound_are_refused_as_busy() {
        let t = throttle(10, 2);
        let ip = IpAddr::from([192, 0, 2, 1]);
        let now = Instant::now();
        let first = t.admit(ip, now).expect("slot 1");
        let _second = t.admit(ip, now).expect("slot 2");
        assert_eq!(t.admit(ip, now).err(), Some(Refusal::Busy));
        drop(first);
        assert!(t.admit(ip, now).is_ok());
    }

    #[test]
    fn the_failure_table_stays_bounded_under_many_addresses() {
        let t = throttle(10, 1);
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 50) {
            t.failed(IpAddr::from(n.to_be_bytes()), now);
        }
        let size = t.failures.lock().expect("lock").len();
        assert!(size <= MAX_TRACKED, "{size}");
    }
}
