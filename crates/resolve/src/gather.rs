//! Gathers every fact the planner needs about a destination: the MX answer and its DNSSEC
//! status, each host's addresses and TLSA records (looked up concurrently, bounded, with a
//! time limit), the MTA-STS facts and the DNSSEC self-test's verdict.
//!
//! Deciding from the facts is `strictmx_policy`'s job; the background refresh of MTA-STS
//! policies and the self-test, with its backoff after a failure, run here too.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use strictmx_policy::tlsa::lookup;
use strictmx_policy::{AddressFailure, Dnssec, DnssecHealth, DomainFacts, HostFacts, TlsaFacts};
use strictmx_protocol::ErrorChain;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::answer::normalise;
use crate::mta_sts::StsSource;
use crate::mx::MxAnswer;
use crate::resolver::DnsResolver;
use crate::tlsa;

/// The SMTP port, where TLSA records of MX hosts live (RFC 7672 §2.2.3: `_25._tcp`).
const SMTP_PORT: u16 = 25;

/// Limits of fact gathering; built by `strictmx-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatherSettings {
    /// MX hosts looked up at the same time for one domain.
    pub host_concurrency: usize,
    /// MX hosts looked up per domain, in MX order; the rest are not used.
    pub max_hosts: usize,
    /// Time allowed for one host's address and TLSA lookups together.
    pub host_timeout: Duration,
}

impl Default for GatherSettings {
    fn default() -> Self {
        GatherSettings {
            host_concurrency: 4,
            max_hosts: 10,
            host_timeout: Duration::from_secs(30),
        }
    }
}

/// Gathers [`DomainFacts`] and [`HostFacts`]; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct FactGatherer {
    resolver: DnsResolver,
    sts: StsSource,
    settings: GatherSettings,
    health: RwLock<DnssecHealth>,
    /// Run the self-test with each lookup instead of relying on a background task (a one-off
    /// `explain` without a server).
    test_on_demand: bool,
}

impl FactGatherer {
    /// Builds the gatherer and runs the DNSSEC self-test once; a failing test is logged as an
    /// error and reported in every [`DomainFacts`] until a later test passes.
    pub async fn new(resolver: DnsResolver, sts: StsSource, settings: GatherSettings) -> Self {
        let gatherer = FactGatherer::untested(resolver, sts, settings);
        gatherer.self_test().await;
        gatherer
    }

    /// Builds the gatherer without waiting on DNS: DNSSEC counts as broken (DANE hosts defer)
    /// until [`FactGatherer::run_self_test`] or [`FactGatherer::self_test`] passes.
    pub fn untested(resolver: DnsResolver, sts: StsSource, settings: GatherSettings) -> Self {
        metrics::gauge!("strictmx_dnssec_healthy").set(0.0);
        FactGatherer {
            health: RwLock::new(DnssecHealth::Broken {
                mode: resolver.mode().to_owned(),
                reason: "the self-test has not passed yet".into(),
            }),
            resolver,
            sts,
            settings,
            test_on_demand: false,
        }
    }

    /// A gatherer for one-off questions: no background task, the self-test runs alongside each
    /// domain's MX lookup (so it adds no wait of its own), and a next hop written as an IP
    /// address, which the transport never looks up, needs neither.
    pub fn testing_on_demand(
        resolver: DnsResolver,
        sts: StsSource,
        settings: GatherSettings,
    ) -> Self {
        FactGatherer {
            test_on_demand: true,
            ..FactGatherer::untested(resolver, sts, settings)
        }
    }

    /// The self-test's verdict for a lookup starting now: the stored one, or a fresh one for
    /// an on-demand gatherer.
    async fn current_health(&self) -> DnssecHealth {
        if self.test_on_demand {
            self.self_test().await
        } else {
            self.dnssec_health()
        }
    }

    pub fn resolver(&self) -> &DnsResolver {
        &self.resolver
    }

    pub fn sts(&self) -> &StsSource {
        &self.sts
    }

    /// The verdict of the last self-test.
    pub fn dnssec_health(&self) -> DnssecHealth {
        self.health
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs the DNSSEC self-test, keeps and returns its verdict (also as the gauge
    /// `strictmx_dnssec_healthy`, 1 or 0), and logs it: an error when it fails after passing
    /// or for the first time, a warning while it keeps failing, info when it passes again.
    pub async fn self_test(&self) -> DnssecHealth {
        let verdict = self.resolver.self_test().await;
        let previous = std::mem::replace(
            &mut *self.health.write().unwrap_or_else(PoisonError::into_inner),
            verdict.clone(),
        );
        let healthy = matches!(verdict, DnssecHealth::Working { .. });
        metrics::gauge!("strictmx_dnssec_healthy").set(if healthy { 1.0 } else { 0.0 });
        match (&verdict, &previous) {
            (
                DnssecHealth::Broken { mode, reason },
                DnssecHealth::Broken { reason: before, .. },
            ) if reason == before => {
                tracing::warn!(mode, reason, "DNSSEC self-test still failing");
            }
            (DnssecHealth::Broken { mode, reason }, _) => tracing::error!(
                mode,
                reason,
                "DNSSEC self-test failed: DANE hosts are deferred until it passes; check [dns] nameservers, dnssec and trust_anchor"
            ),
            (DnssecHealth::Working { mode }, _) if previous != verdict => {
                tracing::info!(mode, "DNSSEC self-test passed");
            }
            (DnssecHealth::Working { .. }, _) => {}
        }
        verdict
    }

    /// The background self-test: runs it at once, then again after `self_test_delay` (seconds
    /// after a failure, doubling; the refresh interval after a pass, so a resolver that breaks
    /// later is noticed), until `token` is cancelled.
    pub async fn run_self_test(self: Arc<Self>, token: CancellationToken) {
        let interval = self.refresh_period();
        let mut failures: u32 = 0;
        loop {
            let verdict = tokio::select! {
                () = token.cancelled() => return,
                verdict = self.self_test() => verdict,
            };
            failures = match verdict {
                DnssecHealth::Working { .. } => 0,
                DnssecHealth::Broken { .. } => failures.saturating_add(1),
            };
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(self_test_delay(failures, interval)) => {}
            }
        }
    }

    fn refresh_period(&self) -> Duration {
        self.sts
            .settings()
            .refresh_interval
            .max(Duration::from_secs(1))
    }

    /// Everything about `domain`: MX (with status), hosts (addresses, TLSA), MTA-STS, health.
    pub async fn domain_facts(&self, domain: &str) -> DomainFacts {
        let domain = normalise(domain);
        let (mx, sts, health) = tokio::join!(
            self.resolver.mx_secured(&domain),
            self.sts.facts(&domain),
            self.current_health()
        );
        let (mx, mx_dnssec, targets, gate) = match mx {
            Ok(answer) => {
                let dnssec = answer.dnssec;
                let (targets, gate) = match &answer.value {
                    MxAnswer::Hosts(hosts) => (
                        hosts
                            .iter()
                            .filter(|host| !host.name.is_empty())
                            .take(self.settings.max_hosts)
                            .map(|host| host.name.clone())
                            .collect(),
                        Some(dnssec),
                    ),
                    // RFC 7672 §2.2.1: for an implicit MX the address answer alone decides.
                    MxAnswer::Implicit(host) => (vec![host.clone()], None),
                    MxAnswer::Null => (Vec::new(), None),
                };
                (answer.value.to_facts(), dnssec, targets, gate)
            }
            Err(error) => (error.to_mx_facts(), error.dnssec(), Vec::new(), None),
        };
        // RFC 8461 §5.1: before mail defers on a cached enforce policy that no MX host
        // matches, look for an updated one.
        let sts = if strictmx_policy::sts::refuses_every_mx(&sts, &targets) {
            self.sts.recheck(&domain, &sts).await.unwrap_or(sts)
        } else {
            sts
        };
        let hosts = self.hosts(targets, SMTP_PORT, gate, &health).await;
        DomainFacts {
            domain,
            mx,
            mx_dnssec,
            hosts,
            sts,
            dnssec_health: health,
        }
    }

    /// The facts of a configured route's host; TLSA at `_<port>._tcp.<host>` when its address
    /// answer is secure.
    pub async fn host_facts(&self, host: &str, port: u16) -> HostFacts {
        let health = self.current_health().await;
        let mut hosts = self.hosts(vec![normalise(host)], port, None, &health).await;
        hosts.pop().unwrap_or_else(|| timed_out(normalise(host)))
    }

    /// Looks the hosts up at most `host_concurrency` at a time; results in the given order.
    async fn hosts(
        &self,
        names: Vec<String>,
        port: u16,
        gate: Option<Dnssec>,
        health: &DnssecHealth,
    ) -> Vec<HostFacts> {
        let permits = Arc::new(Semaphore::new(self.settings.host_concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for (index, name) in names.iter().enumerate() {
            let permits = Arc::clone(&permits);
            let resolver = self.resolver.clone();
            let health = health.clone();
            let name = name.clone();
            let limit = self.settings.host_timeout;
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let lookup = one_host(&resolver, name.clone(), port, gate, &health);
                let facts = tokio::time::timeout(limit, lookup)
                    .await
                    .unwrap_or_else(|_| timed_out(name));
                (index, facts)
            });
        }
        let mut found: Vec<Option<HostFacts>> = vec![None; names.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, facts)) = joined
                && let Some(slot) = found.get_mut(index)
            {
                *slot = Some(facts);
            }
        }
        found
            .into_iter()
            .zip(names)
            .map(|(facts, name)| facts.unwrap_or_else(|| timed_out(name)))
            .collect()
    }

    /// The background task: every `refresh_interval`, refreshes MTA-STS policies close to
    /// expiry, until `token` is cancelled (the self-test has its own task, `run_self_test`).
    pub async fn run_refresher(self: Arc<Self>, token: CancellationToken) {
        let period = self.refresh_period();
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let refreshed = self.sts.refresh_due().await;
            if refreshed > 0 {
                tracing::info!(refreshed, "MTA-STS policies refreshed ahead of expiry");
            }
        }
    }
}

/// Addresses, then TLSA when the gate allows it.
async fn one_host(
    resolver: &DnsResolver,
    name: String,
    port: u16,
    gate: Option<Dnssec>,
    health: &DnssecHealth,
) -> HostFacts {
    let answer = resolver.host_addresses(&name).await;
    let addresses = answer.addresses.map_err(|error| AddressFailure {
        transient: error.is_transient(),
        reason: ErrorChain(&error).to_string(),
    });
    let tlsa = if let Err(failure) = &addresses {
        TlsaFacts::NotApplicable {
            reason: format!("no address to connect to: {}", failure.reason),
        }
    } else {
        let alias = match (&answer.canonical, answer.dnssec) {
            // RFC 7672 §2.2.2: an insecure chain may still start with a secure CNAME.
            (Some(_), Dnssec::Insecure) => Some(match resolver.alias(&name).await {
                Ok(alias) if alias.value.is_some() => alias.dnssec,
                Ok(_) => Dnssec::Insecure,
                Err(error) => error.dnssec(),
            }),
            _ => None,
        };
        match lookup::gate(gate, answer.dnssec, alias, health) {
            Ok(()) => {
                let bases = lookup::base_domains(&name, answer.canonical.as_deref(), answer.dnssec);
                tlsa::lookup(resolver, &bases, port).await
            }
            Err(facts) => facts,
        }
    };
    HostFacts {
        name,
        canonical: answer.canonical,
        addresses,
        addresses_dnssec: answer.dnssec,
        tlsa,
    }
}

/// The first wait after a failed self-test; each further failure doubles it.
const SELF_TEST_RETRY: Duration = Duration::from_secs(2);

/// How long to wait before the next self-test after `failures` failures in a row (0: the last
/// one passed): 2 s, 4 s, 8 s, ... capped at `interval`, and `interval` after a pass. A
/// resolver that starts after strictmx (compose, boot order) is noticed within seconds.
fn self_test_delay(failures: u32, interval: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    SELF_TEST_RETRY.saturating_mul(factor).min(interval)
}

fn timed_out(name: String) -> HostFacts {
    HostFacts {
        name,
        canonical: None,
        addresses: Err(AddressFailure {
            transient: true,
            reason: "the host's lookups did not finish in time".into(),
        }),
        addresses_dnssec: Dnssec::Indeterminate,
        tlsa: TlsaFacts::Failed {
            dnssec: Dnssec::Indeterminate,
            reason: "the host's lookups did not finish in time".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_test_is_repeated_within_seconds_after_a_failure_doubling_up_to_the_interval() {
        let hour = Duration::from_secs(3600);
        let delays: Vec<u64> = (1..=13)
            .map(|failures| self_test_delay(failures, hour).as_secs())
            .collect();
        assert_eq!(
            delays,
            [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        assert_eq!(self_test_delay(u32::MAX, hour), hour);
        assert_eq!(
            self_test_delay(1, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn after_a_pass_the_self_test_waits_the_refresh_interval() {
        let hour = Duration::from_secs(3600);
        assert_eq!(self_test_delay(0, hour), hour);
    }

    #[test]
    fn a_host_that_timed_out_is_unusable_and_never_dane_free() {
        let facts = timed_out("mx.example".into());
        assert!(facts.addresses.as_ref().is_err_and(|f| f.transient));
        assert!(matches!(facts.tlsa, TlsaFacts::Failed { .. }));
    }
}
