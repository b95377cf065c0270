//! The watch on what destinations publish: after every delivery job the destination's posture
//! (`strictmx_policy::posture`) is compared with the last one seen. A weakening is logged at
//! `warn`, counted (`strictmx_policy_weakened_total{kind}`) and kept in the spool's history for
//! `strictmx policy changes` and `explain`. With a cluster, each change is also published to a
//! history the nodes share ([`SharedHistory`], `strictmx-cluster`'s), and those two commands
//! answer from the local history and the shared one together.
//!
//! When many unrelated destinations stop offering STARTTLS within a short window, the cause is
//! almost certainly on our own path (a firewall's "SMTP inspection" stripping it). That raises
//! one site-wide alarm instead of a warning per destination: an `error` log, the gauge
//! `strictmx_downgrade_alarm` at 1 and a banner in `explain`, until the window passes without
//! another such drop.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strictmx_policy::posture::{
    History, PastWeakening, Posture, Weakening, earned, merged, weakenings,
};
use strictmx_spool::{PostureWrite, Spool, SpoolError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The posture changes a cluster's nodes share. Errors are text for the logs: the local
/// history always answers.
pub trait SharedHistory: Send + Sync + fmt::Debug {
    /// Adds a change this node saw, and drops shared changes older than `keep_after_ms`.
    fn publish<'a>(
        &'a self,
        change: &'a PostureChange,
        keep_after_ms: u64,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Every node's changes at or after `since_ms` (for `domain`, or all), oldest first.
    fn changes<'a>(
        &'a self,
        since_ms: u64,
        domain: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<PostureChange>, String>>;
}

/// `[watch]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// How many distinct destinations dropping STARTTLS within `alarm_window` raise the alarm.
    pub alarm_destinations: usize,
    pub alarm_window: Duration,
    /// How long recorded changes are kept.
    pub keep: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            alarm_destinations: 5,
            alarm_window: Duration::from_secs(600),
            keep: Duration::from_secs(90 * 86_400),
        }
    }
}

/// One recorded weakening of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureChange {
    pub domain: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub weakenings: Vec<Weakening>,
    /// Whether the site-wide STARTTLS alarm was up when it was seen (then the cause is most
    /// likely on our own path, not the destination's).
    pub during_alarm: bool,
    pub before: Posture,
    pub after: Posture,
}

/// The site-wide downgrade alarm while it is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DowngradeAlarm {
    /// Unix milliseconds.
    pub since_ms: u64,
    /// The destinations whose MX hosts stopped offering STARTTLS within the window.
    pub destinations: Vec<String>,
}

/// The most weakenings remembered per destination for pins (the oldest go first): enough for
/// any pin window, bounded whatever a destination's DNS does.
const REMEMBERED: usize = 32;

#[derive(Debug, Default)]
struct State {
    last: HashMap<String, Posture>,
    /// Per destination, its weakenings within `keep`, oldest first (`pin_last_good`).
    history: HashMap<String, VecDeque<PastWeakening>>,
    /// (when, destination) of each STARTTLS drop within the window.
    drops: VecDeque<(SystemTime, String)>,
    alarm: Option<DowngradeAlarm>,
}

/// Shared by the queue runner (which feeds it), the control socket and `explain`.
#[derive(Debug)]
pub struct PostureWatch {
    spool: Spool,
    settings: WatchSettings,
    state: Mutex<State>,
    shared: Option<Arc<dyn SharedHistory>>,
}

fn millis(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

impl PostureWatch {
    /// Loads the last postures from the spool; a record that no longer decodes is skipped (a
    /// later delivery stores a fresh one).
    pub fn load(spool: Spool, settings: WatchSettings) -> Result<PostureWatch, SpoolError> {
        let mut last = HashMap::new();
        for (domain, bytes) in spool.postures()? {
            match serde_json::from_slice::<Posture>(&bytes) {
                Ok(posture) => {
                    last.insert(domain, posture);
                }
                Err(e) => tracing::warn!(domain, error = %e, "stored destination posture skipped"),
            }
        }
        let since = SystemTime::now()
            .checked_sub(settings.keep)
            .unwrap_or(UNIX_EPOCH);
        let mut history = HashMap::new();
        for change in changes(&spool, since, None)? {
            remember(&mut history, &change);
        }
        metrics::gauge!("strictmx_downgrade_alarm").set(0.0);
        Ok(PostureWatch {
            spool,
            settings,
            state: Mutex::new(State {
                last,
                history,
                ..State::default()
            }),
            shared: None,
        })
    }

    /// Publishes changes to, and answers `changes_everywhere` from, a cluster's history too.
    pub fn with_shared(mut self, shared: Arc<dyn SharedHistory>) -> Self {
        self.shared = Some(shared);
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in what one delivery to `domain` saw at `now`; returns the weakenings found.
    pub async fn observe(&self, domain: &str, seen: Posture, now: SystemTime) -> Vec<Weakening> {
        let (change, write) = {
            let mut state = self.state();
            let before = state.last.get(domain).cloned();
            let next = merged(before.as_ref().unwrap_or(&Posture::default()), &seen);
            let found = before
                .as_ref()
                .map(|before| weakenings(before, &next))
                .unwrap_or_default();
            if before.as_ref() == Some(&next) {
                self.expire_alarm(&mut state, now);
                return Vec::new();
            }
            let drops = found
                .iter()
                .any(|w| matches!(w, Weakening::StarttlsDropped { .. }));
            if drops {
                state.drops.push_back((now, domain.to_owned()));
            }
            self.expire_alarm(&mut state, now);
            if drops {
                self.maybe_raise_alarm(&mut state, now);
            }
            let during_alarm = state.alarm.is_some();
            state.last.insert(domain.to_owned(), next.clone());
            let change = (!found.is_empty()).then(|| PostureChange {
                domain: domain.to_owned(),
                at_ms: millis(now),
                weakenings: found.clone(),
                during_alarm,
                before: before.unwrap_or_default(),
                after: next.clone(),
            });
            if let Some(change) = &change {
                remember(&mut state.history, change);
            }
            (change, next)
        };
        if let Some(change) = &change {
            for weakening in &change.weakenings {
                metrics::counter!("strictmx_policy_weakened_total", "kind" => weakening.as_str())
                    .increment(1);
                let reason = weakening.describe();
                if change.during_alarm && matches!(weakening, Weakening::StarttlsDropped { .. }) {
                    tracing::debug!(domain, change = %reason, "destination policy weakened (part of the site-wide downgrade alarm)");
                } else {
                    tracing::warn!(domain, kind = weakening.as_str(), change = %reason, "destination policy weakened");
                }
            }
        }
        let stored = PostureWrite {
            domain: domain.to_owned(),
            posture: serde_json::to_vec(&write).unwrap_or_default(),
            change: change
                .as_ref()
                .map(|c| (c.at_ms, serde_json::to_vec(c).unwrap_or_default())),
            keep_after_ms: millis(now)
                .saturating_sub(u64::try_from(self.settings.keep.as_millis()).unwrap_or(u64::MAX)),
        };
        let keep_after_ms = stored.keep_after_ms;
        if let Err(e) = self.spool.posture_put(stored).await {
            tracing::warn!(domain, error = %strictmx_protocol::ErrorChain(&e), "destination posture not stored");
        }
        if let (Some(shared), Some(change)) = (&self.shared, &change)
            && let Err(error) = shared.publish(change, keep_after_ms).await
        {
            tracing::warn!(
                domain,
                error,
                "destination policy change not shared with the cluster; kept locally"
            );
        }
        change.map(|c| c.weakenings).unwrap_or_default()
    }

    fn expire_alarm(&self, state: &mut State, now: SystemTime) {
        let window = self.settings.alarm_window;
        while state
            .drops
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at).unwrap_or_default() > window)
        {
            state.drops.pop_front();
        }
        if state.alarm.is_some() && state.drops.is_empty() {
            state.alarm = None;
            metrics::gauge!("strictmx_downgrade_alarm").set(0.0);
            tracing::info!(
                "site-wide STARTTLS downgrade alarm over: no destination dropped STARTTLS within the window"
            );
        }
    }

    fn maybe_raise_alarm(&self, state: &mut State, now: SystemTime) {
        let mut destinations: Vec<String> = state.drops.iter().map(|(_, d)| d.clone()).collect();
        destinations.sort();
        destinations.dedup();
        match &mut state.alarm {
            Some(alarm) => alarm.destinations = destinations,
            None if destinations.len() >= self.settings.alarm_destinations.max(1) => {
                tracing::error!(
                    destinations = destinations.len(),
                    window = %strictmx_protocol::HumanDuration(self.settings.alarm_window),
                    list = %destinations.join(","),
                    "site-wide STARTTLS downgrade alarm: many unrelated destinations stopped offering STARTTLS at once; a middlebox on our own path (a firewall's SMTP inspection) is the likely cause"
                );
                metrics::gauge!("strictmx_downgrade_alarm").set(1.0);
                state.alarm = Some(DowngradeAlarm {
                    since_ms: millis(now),
                    destinations,
                });
            }
            None => {}
        }
    }

    /// The site-wide alarm, while it is up.
    pub fn alarm(&self) -> Option<DowngradeAlarm> {
        self.state().alarm.clone()
    }

    /// What `domain` offered when last seen, and its weakenings remembered within `keep` of
    /// `now` (oldest first), for rules that pin the last good policy.
    pub fn history(&self, domain: &str, now: SystemTime) -> History {
        let after = secs(now.checked_sub(self.settings.keep).unwrap_or(UNIX_EPOCH));
        let domain = domain.to_ascii_lowercase();
        let state = self.state();
        History {
            last_seen: state.last.get(&domain).and_then(earned),
            weakenings: state
                .history
                .get(&domain)
                .map(|past| past.iter().filter(|p| p.at >= after).cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// The last posture seen for `domain`.
    pub fn posture(&self, domain: &str) -> Option<Posture> {
        self.state().last.get(domain).cloned()
    }

    /// [`PostureWatch::changes`] and, with a cluster, every other node's too, oldest first and
    /// each once; the local history alone when the shared one cannot be read.
    pub async fn changes_everywhere(
        &self,
        since: SystemTime,
        domain: Option<&str>,
    ) -> Result<Vec<PostureChange>, SpoolError> {
        let mut all = self.changes(since, domain)?;
        let Some(shared) = &self.shared else {
            return Ok(all);
        };
        match shared.changes(millis(since), domain).await {
            Ok(theirs) => {
                for change in theirs {
                    if !all.contains(&change) {
                        all.push(change);
                    }
                }
                all.sort_by(|a, b| (a.at_ms, &a.domain).cmp(&(b.at_ms, &b.domain)));
            }
            Err(error) => {
                tracing::warn!(
                    error,
                    "the cluster's policy changes unreadable; answering with this node's"
                );
            }
        }
        Ok(all)
    }

    /// The recorded weakenings since `since` (all destinations, or one), oldest first.
    pub fn changes(
        &self,
        since: SystemTime,
        domain: Option<&str>,
    ) -> Result<Vec<PostureChange>, SpoolError> {
        changes(&self.spool, since, domain)
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Adds `change` to its destination's remembered weakenings, at most [`REMEMBERED`] of them.
fn remember(history: &mut HashMap<String, VecDeque<PastWeakening>>, change: &PostureChange) {
    let past = history
        .entry(change.domain.to_ascii_lowercase())
        .or_default();
    past.push_back(PastWeakening::of(
        change.at_ms / 1_000,
        &change.before,
        &change.weakenings,
    ));
    while past.len() > REMEMBERED {
        past.pop_front();
    }
}

/// The recorded weakenings in `spool` since `since`, for `domain` or every destination; used
/// by the watch and, without a running server, by `explain` and `policy changes` in-process.
pub fn changes(
    spool: &Spool,
    since: SystemTime,
    domain: Option<&str>,
) -> Result<Vec<PostureChange>, SpoolError> {
    Ok(spool
        .posture_changes(millis(since))?
        .into_iter()
        .filter(|(_, d, _)| domain.is_none_or(|wanted| d.eq_ignore_ascii_case(wanted)))
        .filter_map(|(_, _, bytes)| serde_json::from_slice(&bytes).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use strictmx_policy::posture::{StsPosture, TlsaPosture};
    use strictmx_policy::rules::MinRequirement;
    use strictmx_spool::SpoolSettings;

    use super::*;

    fn with_starttls(offered: bool) -> Posture {
        let mut posture = Posture {
            sts: StsPosture::NoRecord,
            tlsa: TlsaPosture::None,
            mx_secure: Some(false),
            ..Posture::default()
        };
        posture.starttls.insert("mx".to_owned(), offered);
        posture
    }

    fn watch(dir: &std::path::Path) -> PostureWatch {
        let spool = Spool::open(&SpoolSettings {
            data_dir: dir.to_owned(),
            ..SpoolSettings::default()
        })
        .expect("spool");
        let settings = WatchSettings {
            alarm_destinations: 3,
            alarm_window: Duration::from_secs(600),
            keep: Duration::from_secs(86_400),
        };
        PostureWatch::load(spool, settings).expect("watch")
    }

    #[tokio::test]
    async fn a_weakening_is_recorded_once_and_remembered_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = watch(dir.path());
        assert!(
            first
                .observe("a.example", with_starttls(true), t0)
                .await
                .is_empty()
        );
        drop(first);
        let again = watch(dir.path());
        let found = again
            .observe(
                "a.example",
                with_starttls(false),
                t0 + Duration::from_secs(60),
            )
            .await;
        assert_eq!(
            found,
            [Weakening::StarttlsDropped {
                host: "mx".to_owned()
            }]
        );
        // The same posture again is no new change.
        assert!(
            again
                .observe(
                    "a.example",
                    with_starttls(false),
                    t0 + Duration::from_secs(120)
                )
                .await
                .is_empty()
        );
        let recorded = again.changes(t0, None).expect("changes");
        assert_eq!(recorded.len(), 1);
        assert!(!recorded[0].during_alarm);
        assert_eq!(again.changes(t0, Some("b.example")).expect("none").len(), 0);
        // What the destination offered before the drop is remembered for pins, across a
        // restart too.
        drop(again);
        let reloaded = watch(dir.path());
        let history = reloaded.history("A.example", t0 + Duration::from_secs(180));
        let past = &history.weakenings;
        assert_eq!(past.len(), 1, "{past:?}");
        assert_eq!(past[0].earned, Some(MinRequirement::Encrypted));
        assert_eq!(past[0].at, 1_800_000_060);
        assert_eq!(history.last_seen, None, "STARTTLS is no longer offered");
        assert_eq!(reloaded.history("b.example", t0), History::default());
    }

    #[tokio::test]
    async fn many_destinations_dropping_starttls_at_once_raise_one_alarm_until_the_window_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watch = watch(dir.path());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let domains = ["a.example", "b.example", "c.example", "d.example"];
        for domain in domains {
            watch.observe(domain, with_starttls(true), t0).await;
        }
        let mut at = t0 + Duration::from_secs(10);
        for (n, domain) in domains.iter().enumerate() {
            watch.observe(domain, with_starttls(false), at).await;
            at += Duration::from_secs(10);
            assert_eq!(watch.alarm().is_some(), n + 1 >= 3, "after {} drops", n + 1);
        }
        let alarm = watch.alarm().expect("alarm");
        assert_eq!(alarm.destinations.len(), 4);
        let changes = watch.changes(t0, None).expect("changes");
        let during: Vec<bool> = changes.iter().map(|c| c.during_alarm).collect();
        assert_eq!(during, [false, false, true, true]);
        // A delivery after the window with no new drop ends it.
        watch
            .observe(
                "a.example",
                with_starttls(false),
                at + Duration::from_secs(700),
            )
            .await;
        assert!(watch.alarm().is_none());
    }
}
