//! MTA-STS discovery and caching (RFC 8461 §3, §5.1, §10.2): the `_mta-sts` TXT record, a fetch
//! when its id differs from the cached policy's (or nothing usable is cached), the spool cache
//! that survives restarts, and the proactive refresh of policies close to expiry. With a
//! cluster's shared cache, a policy another node fetched is taken from there before fetching,
//! and a refresh is made by the node that claims it; the spool cache stays the fallback.
//!
//! One fetch is `sts_fetch`; parsing is `strictmx_policy::sts`; applying a policy is the
//! planner's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strictmx_policy::report::ResultType;
use strictmx_policy::sts::{parse_policy, select_record};
use strictmx_policy::{StsFacts, StsFetchFailure, StsPolicyFacts, StsRecordFacts};
use strictmx_protocol::ErrorChain;
use strictmx_spool::{CachedStsPolicy, Spool};

use crate::answer::normalise;
use crate::error::ResolveError;
use crate::https::{HttpsTimeouts, https_client_with};
use crate::resolver::{DnsResolver, recipient_domain};
use crate::shared::SharedStsCache;
use crate::sts_fetch::fetch_policy;

/// MTA-STS behaviour; built by `strictmx-config` from `[mta_sts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsSettings {
    /// Off: no lookups, every domain is treated as publishing no policy.
    pub enabled: bool,
    /// Whole policy fetch (connect, TLS, request, body).
    pub fetch_timeout: Duration,
    /// TCP connect plus TLS handshake to the policy host.
    pub connect_timeout: Duration,
    /// Largest policy body accepted, in bytes.
    pub max_policy_size: usize,
    /// Cached policies expiring within this window (at most half their `max_age`) are
    /// refreshed in the background.
    pub refresh_before: Duration,
    /// How often the background refresher looks at the cache.
    pub refresh_interval: Duration,
    /// Policies of domains no mail went to for this long are no longer refreshed, and are
    /// dropped from the cache once expired.
    pub forget_unused_after: Duration,
    /// PEM file of CAs trusted for policy hosts on top of the web PKI roots.
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for StsSettings {
    fn default() -> Self {
        StsSettings {
            enabled: true,
            fetch_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_policy_size: 64 * 1024,
            refresh_before: Duration::from_secs(24 * 3600),
            refresh_interval: Duration::from_secs(3600),
            forget_unused_after: Duration::from_secs(30 * 24 * 3600),
            extra_ca_file: None,
        }
    }
}

/// Finds, fetches and caches MTA-STS policies.
#[derive(Debug)]
pub struct StsSource {
    resolver: DnsResolver,
    client: reqwest::Client,
    spool: Spool,
    settings: StsSettings,
    /// Last time mail asked about each domain, Unix seconds; a domain missing here counts as
    /// used when this process started.
    used: Mutex<HashMap<String, u64>>,
    started: u64,
    /// One fetch at a time per domain; deliveries that asked meanwhile take its result.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<RecentFetch>>>>>,
    fetches: AtomicU64,
    /// When each domain's cached policy was last fetched again for matching no MX host.
    rechecked: Mutex<HashMap<String, Instant>>,
    /// The cluster's shared cache, if any.
    shared: Option<Arc<dyn SharedStsCache>>,
}

/// What the last fetch of a domain gave, for the deliveries that waited for it.
#[derive(Debug)]
struct RecentFetch {
    id: String,
    at: Instant,
    result: Result<StsPolicyFacts, StsFetchFailure>,
}

/// How long a fetch's result answers deliveries that were waiting for it.
const SHARE_FETCH_FOR: Duration = Duration::from_secs(10);
/// A domain's cached policy is fetched again for matching no MX host at most this often.
const RECHECK_AFTER: Duration = Duration::from_secs(5 * 60);

/// Unix seconds now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// An error with its causes, for the human-readable `reason` fields and the logs.
fn describe(error: &dyn std::error::Error) -> String {
    ErrorChain(error).to_string()
}

impl StsSource {
    pub fn new(
        resolver: DnsResolver,
        spool: Spool,
        settings: StsSettings,
    ) -> Result<Self, ResolveError> {
        let client = https_client_with(
            &resolver,
            settings.extra_ca_file.as_deref(),
            HttpsTimeouts {
                connect: settings.connect_timeout,
                total: settings.fetch_timeout,
            },
        )?;
        Ok(StsSource {
            resolver,
            client,
            spool,
            settings,
            used: Mutex::new(HashMap::new()),
            started: now(),
            fetching: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
            rechecked: Mutex::new(HashMap::new()),
            shared: None,
        })
    }

    /// Takes policies from, and gives fetched ones to, a cache the cluster's nodes share.
    pub fn with_shared(mut self, shared: Arc<dyn SharedStsCache>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The HTTPS client policy fetches use (shared with TLSRPT's `https:` reports).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn settings(&self) -> &StsSettings {
        &self.settings
    }

    /// The MTA-STS facts of `domain` for one delivery decision (RFC 8461 §5.1).
    pub async fn facts(&self, domain: &str) -> StsFacts {
        let domain = normalise(domain);
        if !self.settings.enabled {
            return StsFacts {
                record: StsRecordFacts::Absent,
                policy: None,
                fetch_failure: None,
            };
        }
        // Nothing is looked up, cached or fetched for a name that is not a host name.
        if let Err(error) = recipient_domain(&domain) {
            return StsFacts {
                record: StsRecordFacts::LookupFailed {
                    reason: describe(&error),
                },
                policy: None,
                fetch_failure: None,
            };
        }
        self.touch(&domain);
        let cached = self.cached(&domain);
        let record = self.record(&domain).await;
        let StsRecordFacts::Present { id } = &record else {
            // RFC 8461 §5.1: without a usable TXT record (absent, invalid, or not obtainable
            // now) a cached, unexpired policy stays in force.
            return StsFacts {
                record,
                policy: cached,
                fetch_failure: None,
            };
        };
        // RFC 8461 §3.1: an unchanged id means the cached policy is current.
        if let Some(policy) = &cached
            && policy.id == *id
        {
            return StsFacts {
                record,
                policy: cached,
                fetch_failure: None,
            };
        }
        if let Some(policy) = self.adopt_shared(&domain, Some(id)).await {
            return StsFacts {
                record,
                policy: Some(policy),
                fetch_failure: None,
            };
        }
        let fetched = self.fetch_shared(&domain, id).await;
        after_fetch(record, fetched, cached)
    }

    /// The shared cache's unexpired policy of `domain` (fetched under TXT id `id`, when given),
    /// copied into the spool cache; `None` when there is none or the store is unreachable.
    async fn adopt_shared(&self, domain: &str, id: Option<&str>) -> Option<StsPolicyFacts> {
        let shared = self.shared.as_ref()?;
        let entry = match shared.get(domain).await {
            Ok(entry) => entry?,
            Err(error) => {
                tracing::warn!(
                    domain,
                    error,
                    "shared MTA-STS cache unreachable; fetching here"
                );
                return None;
            }
        };
        if id.is_some_and(|id| entry.id != id) || entry.expires_at <= now() {
            return None;
        }
        let policy = parse_policy(&entry.text).ok()?;
        if let Err(error) = self.spool.sts_cache_put(entry.clone()).await {
            tracing::warn!(domain, error = %describe(&error), "MTA-STS policy not cached");
        }
        tracing::info!(domain, id = %entry.id, "MTA-STS policy taken from the cluster's cache");
        Some(StsPolicyFacts {
            policy,
            text: entry.text,
            id: entry.id,
            fetched_at: entry.fetched_at,
            expires_at: entry.expires_at,
            from_cache: true,
        })
    }

    /// RFC 8461 §5.1: `facts` for `domain` held a cached enforce policy that matches none of
    /// its MX hosts. Unless this was done for the domain within `RECHECK_AFTER`, fetch the
    /// policy again whatever the TXT id says and return the new facts; otherwise `None`.
    pub async fn recheck(&self, domain: &str, facts: &StsFacts) -> Option<StsFacts> {
        let domain = normalise(domain);
        {
            let mut rechecked = self
                .rechecked
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            rechecked.retain(|_, at| now.saturating_duration_since(*at) < RECHECK_AFTER);
            if rechecked.contains_key(&domain) {
                return None;
            }
            rechecked.insert(domain.clone(), now);
        }
        let record = self.record(&domain).await;
        let id = match &record {
            StsRecordFacts::Present { id } => id.clone(),
            // The record itself is gone or broken now: the cached policy stays (RFC 8461 §5.1).
            _ => facts.policy.as_ref()?.id.clone(),
        };
        tracing::info!(
            domain,
            "cached MTA-STS policy matches no MX host: fetching it again"
        );
        let fetched = self.fetch_shared(&domain, &id).await;
        Some(after_fetch(record, fetched, facts.policy.clone()))
    }

    /// Policy fetches made since start (each one HTTPS request to a policy host).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// [`StsSource::fetch_and_store`] once per domain at a time: deliveries to a domain that
    /// ask while its policy is being fetched wait and take that fetch's result, if it was for
    /// the same TXT id and is at most `SHARE_FETCH_FOR` old.
    async fn fetch_shared(
        &self,
        domain: &str,
        id: &str,
    ) -> Result<StsPolicyFacts, StsFetchFailure> {
        let slot = {
            let mut fetching = self.fetching.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(fetching.entry(domain.to_owned()).or_default())
        };
        let result = {
            let mut last = slot.lock().await;
            match last.as_ref() {
                Some(recent) if recent.id == id && recent.at.elapsed() < SHARE_FETCH_FOR => {
                    recent.result.clone()
                }
                _ => {
                    let result = self
                        .fetch_and_store(domain, id)
                        .await
                        .map_err(|error| failure(&error));
                    *last = Some(RecentFetch {
                        id: id.to_owned(),
                        at: Instant::now(),
                        result: result.clone(),
                    });
                    result
                }
            }
        };
        // The last one out forgets the domain: the map holds only fetches in progress.
        let mut fetching = self.fetching.lock().unwrap_or_else(PoisonError::into_inner);
        if fetching
            .get(domain)
            .is_some_and(|held| Arc::ptr_eq(held, &slot) && Arc::strong_count(held) == 2)
        {
            fetching.remove(domain);
        }
        result
    }

    /// The `_mta-sts` TXT record of `domain` (RFC 8461 §3.1; the resolver follows CNAMEs).
    async fn record(&self, domain: &str) -> StsRecordFacts {
        match self.resolver.txt(&format!("_mta-sts.{domain}")).await {
            Ok(answer) => select_record(&answer.value),
            Err(error) => StsRecordFacts::LookupFailed {
                reason: describe(&error),
            },
        }
    }

    /// The cached policy of `domain` if it is unexpired and still parses.
    fn cached(&self, domain: &str) -> Option<StsPolicyFacts> {
        let entry = match self.spool.sts_cache_get(domain) {
            Ok(entry) => entry?,
            Err(error) => {
                tracing::warn!(domain, error = %describe(&error), "MTA-STS policy cache unreadable");
                return None;
            }
        };
        // RFC 8461 §5.1: an expired policy is no policy.
        if entry.expires_at <= now() {
            return None;
        }
        match parse_policy(&entry.text) {
            Ok(policy) => Some(StsPolicyFacts {
                policy,
                text: entry.text,
                id: entry.id,
                fetched_at: entry.fetched_at,
                expires_at: entry.expires_at,
                from_cache: true,
            }),
            Err(error) => {
                tracing::warn!(domain, error = %ErrorChain(&error), "cached MTA-STS policy no longer parses; ignored");
                None
            }
        }
    }

    /// Fetches the policy of `domain` published under TXT id `id` and caches it.
    async fn fetch_and_store(
        &self,
        domain: &str,
        id: &str,
    ) -> Result<StsPolicyFacts, ResolveError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = fetch_policy(
            &self.client,
            domain,
            self.settings.max_policy_size,
            self.settings.fetch_timeout,
        )
        .await
        .inspect_err(|error| {
            tracing::warn!(domain, error = %describe(error), "MTA-STS policy fetch failed");
        })?;
        let fetched_at = now();
        let expires_at = fetched_at.saturating_add(fetched.policy.max_age);
        let entry = CachedStsPolicy {
            domain: domain.to_owned(),
            text: fetched.text.clone(),
            id: id.to_owned(),
            fetched_at,
            expires_at,
        };
        // A policy that cannot be cached is still this delivery's policy.
        if let Some(shared) = &self.shared
            && let Err(error) = shared.put(&entry).await
        {
            tracing::warn!(
                domain,
                error,
                "MTA-STS policy not put in the cluster's cache"
            );
        }
        if let Err(error) = self.spool.sts_cache_put(entry).await {
            tracing::warn!(domain, error = %describe(&error), "MTA-STS policy not cached");
        }
        tracing::info!(
            domain,
            id,
            mode = fetched.policy.mode.as_str(),
            "MTA-STS policy fetched"
        );
        Ok(StsPolicyFacts {
            policy: fetched.policy,
            text: fetched.text,
            id: id.to_owned(),
            fetched_at,
            expires_at,
            from_cache: false,
        })
    }

    fn touch(&self, domain: &str) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        used.insert(domain.to_owned(), now());
    }

    fn last_used(&self, domain: &str) -> u64 {
        let used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        used.get(domain).copied().unwrap_or(self.started)
    }

    /// One pass of the background refresher; returns how many policies were fetched again.
    ///
    /// RFC 8461 §10.2: refreshing cached policies before they expire (whatever the TXT id)
    /// keeps an attacker who blocks the TXT lookup at expiry time from stripping the policy.
    pub async fn refresh_due(&self) -> usize {
        if !self.settings.enabled {
            return 0;
        }
        let entries = match self.spool.sts_cache_all() {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(error = %describe(&error), "MTA-STS policy cache unreadable");
                return 0;
            }
        };
        let mut refreshed = 0;
        for entry in entries {
            let now = now();
            let idle = now.saturating_sub(self.last_used(&entry.domain));
            if idle > self.settings.forget_unused_after.as_secs() {
                self.forget_if_expired(&entry, now).await;
                continue;
            }
            if !refresh_is_due(&entry, self.settings.refresh_before, now) {
                continue;
            }
            if !self.refresh_is_mine(&entry).await {
                continue;
            }
            if let StsRecordFacts::Present { id } = self.record(&entry.domain).await
                && self.fetch_and_store(&entry.domain, &id).await.is_ok()
            {
                refreshed += 1;
            }
        }
        refreshed
    }

    /// Whether this node refreshes `entry` itself: always without a shared cache; with one,
    /// not when another node already refreshed it (its copy is taken) or claimed the refresh.
    /// An unreachable store leaves the refresh to this node.
    async fn refresh_is_mine(&self, entry: &CachedStsPolicy) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        if let Ok(Some(newer)) = shared.get(&entry.domain).await
            && newer.fetched_at > entry.fetched_at
            && !refresh_is_due(&newer, self.settings.refresh_before, now())
            && self.adopt_shared(&entry.domain, None).await.is_some()
        {
            return false;
        }
        match shared.claim_refresh(&entry.domain).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(domain = %entry.domain, error, "shared MTA-STS cache unreachable; refreshing here");
                true
            }
        }
    }

    async fn forget_if_expired(&self, entry: &CachedStsPolicy, now: u64) {
        if entry.expires_at > now {
            return;
        }
        match self.spool.sts_cache_remove(&entry.domain).await {
            Ok(_) => {
                tracing::info!(domain = %entry.domain, "unused, expired MTA-STS policy dropped")
            }
            Err(error) => {
                tracing::warn!(domain = %entry.domain, error = %describe(&error), "MTA-STS policy not dropped");
            }
        }
    }
}

/// Whether a cached policy is close enough to expiry to fetch again: within `refresh_before`
/// of it, but never in the first half of its lifetime, so that a short `max_age` does not
/// make every refresher pass fetch it.
fn refresh_is_due(entry: &CachedStsPolicy, refresh_before: Duration, now: u64) -> bool {
    let lifetime = entry.expires_at.saturating_sub(entry.fetched_at);
    let window = refresh_before.as_secs().min(lifetime / 2);
    entry.expires_at.saturating_sub(now) <= window
}

/// The RFC 8460 §4.3.2 result type and a reason for a failed fetch.
/// The facts after a fetch: its policy, or (RFC 8461 §5.1: a failed refresh leaves the cached
/// policy in force until it expires) the cached one and the failure.
fn after_fetch(
    record: StsRecordFacts,
    fetched: Result<StsPolicyFacts, StsFetchFailure>,
    cached: Option<StsPolicyFacts>,
) -> StsFacts {
    match fetched {
        Ok(policy) => StsFacts {
            record,
            policy: Some(policy),
            fetch_failure: None,
        },
        Err(failure) => StsFacts {
            record,
            policy: cached,
            fetch_failure: Some(failure),
        },
    }
}

fn failure(error: &ResolveError) -> StsFetchFailure {
    StsFetchFailure {
        result_type: error
            .tlsrpt_result()
            .unwrap_or(ResultType::StsPolicyFetchError),
        reason: describe(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fetched_at: u64, expires_at: u64) -> CachedStsPolicy {
        CachedStsPolicy {
            domain: "example.com".into(),
            text: String::new(),
            id: "1".into(),
            fetched_at,
            expires_at,
        }
    }

    #[test]
    fn policies_are_refreshed_near_expiry_but_not_in_the_first_half_of_their_life() {
        let day = 86_400;
        let week = 7 * day;
        let window = Duration::from_secs(day);
        let rows = [
            (
                "a week-long policy, two days left",
                entry(0, week),
                week - 2 * day,
                false,
            ),
            (
                "a week-long policy, half a day left",
                entry(0, week),
                week - day / 2,
                true,
            ),
            ("a day-long policy just fetched", entry(0, day), 60, false),
            (
                "a day-long policy past half its life",
                entry(0, day),
                day / 2 + 1,
                true,
            ),
            ("an expired policy", entry(0, day), day + 1, true),
        ];
        for (case, cached, now, due) in rows {
            assert_eq!(refresh_is_due(&cached, window, now), due, "{case}");
        }
    }
}
