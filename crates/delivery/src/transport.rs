//! The outbound SMTP transport: turns a `DeliveryJob` into SMTP sessions that execute the plan.
//!
//! It gathers the destination's facts once per job (or its configured route's), asks
//! `strictmx-policy` for a plan per message, runs the messages that share a plan over shared
//! connections and reports per recipient, with one `AttemptRecord` per connection attempt and
//! message and one TLSRPT `SessionResult` per TLS negotiation. Scheduling, retries and DSNs are
//! left to the queue runner; the transport never touches the spool.
//!
//! The session types enforce the plan's TLS requirement by construction: `MAIL FROM` exists
//! only on a [`MailSession`], which a [`PlainSession`] yields only when the plan allows
//! plaintext, and a TLS session yields only after the peer passed the policy's judgement.

mod attempt;
mod error;
mod facts;
mod idle;
mod loops;
mod message;
mod negotiation;
mod outcome;
mod pending;
mod run;
mod session;
mod sessions;
mod settings;
mod tls;
mod transfer;
mod wire;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use strictmx_policy::posture::History;
use strictmx_policy::rules::Rule;
use strictmx_policy::{Alternatives, MessageFacts, PlanOutcome, PolicySettings, RuleTerm};

pub use error::{Stage, TransportError};
pub use facts::{Destination, FactSource};
pub use message::floor_of;
pub use session::{MailSession, PlainSession, SecureSession, StartTlsError, TlsSession};
pub use settings::{
    Route, RouteCredentials, RouteTable, TlsRequiredNoPermission, TransportSettings,
    default_never_deliver_to,
};
pub use tls::{CertificateCheck, TlsInfo};
pub use transfer::{Hop, TransferError, TransferMessage, TransferOutcome, hop_refusal};
pub use wire::Capabilities;

use crate::job::{Deliver, DeliveryJob, DeliveryReport};
use crate::watch::PostureWatch;
use tls::TlsSetup;

/// What `explain` shows: the facts gathered for a domain, the plan made from them, and apart
/// from it what each matching shadow rule and exception changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub domain: String,
    pub message: MessageFacts,
    pub facts: Destination,
    pub outcome: PlanOutcome,
    /// The plans had each matching shadow rule been enforced, and without each exception.
    pub alternatives: Alternatives,
    /// Matching rules that expired and no longer apply.
    pub expired: Vec<RuleTerm>,
}

/// What may change while the transport runs (`replace_policy`, `replace_routes`), swapped as
/// a whole.
#[derive(Debug, Clone)]
pub(crate) struct LivePolicy {
    pub(crate) policy: PolicySettings,
    pub(crate) tls_required_no: TlsRequiredNoPermission,
    pub(crate) routes: RouteTable,
}

/// The SMTP client side of delivery; cheap to share behind an `Arc`. `F` gathers the facts:
/// the fact gatherer of `strictmx-resolve` (behind an `Arc`, shared with `explain` and the
/// MTA-STS refresher).
#[derive(Debug)]
pub struct Transport<F> {
    settings: TransportSettings,
    facts: F,
    tls: TlsSetup,
    live: RwLock<Arc<LivePolicy>>,
    /// Sessions kept open for the next job to the same host (`idle`).
    idle: Arc<idle::IdlePool<run::Established>>,
    /// The expired rules already warned about, by name and expiry.
    expired_noted: Mutex<HashSet<(String, u64)>>,
    /// Where destinations' weakenings are remembered, for rules that pin the last good policy.
    watch: Option<Arc<PostureWatch>>,
}

impl<F: FactSource> Transport<F> {
    /// Loads the trust roots (webpki-roots plus `extra_ca_file`).
    pub fn new(settings: TransportSettings, facts: F) -> Result<Self, TransportError> {
        let tls = TlsSetup::new(settings.extra_ca_file.as_deref())?;
        let live = LivePolicy {
            policy: settings.policy.clone(),
            tls_required_no: settings.tls_required_no.clone(),
            routes: settings.route_table(),
        };
        Ok(Transport {
            settings,
            facts,
            tls,
            live: RwLock::new(Arc::new(live)),
            idle: Arc::default(),
            expired_noted: Mutex::default(),
            watch: None,
        })
    }

    /// Plans with the weakenings `watch` remembers, so that `pin_last_good` rules hold.
    pub fn with_watch(mut self, watch: Arc<PostureWatch>) -> Self {
        self.watch = Some(watch);
        self
    }

    /// What `domain` offered before, as the watch remembers it; nothing without a watch.
    fn history(&self, domain: &str) -> History {
        self.watch
            .as_ref()
            .map(|watch| watch.history(domain, std::time::SystemTime::now()))
            .unwrap_or_default()
    }

    /// The settings the transport was built with; `policy`, `tls_required_no` and `routes`
    /// there are the initial ones (see [`Transport::policy`], [`Transport::routes`]).
    pub fn settings(&self) -> &TransportSettings {
        &self.settings
    }

    /// The policy in force now.
    pub fn policy(&self) -> PolicySettings {
        self.live().policy.clone()
    }

    /// Replaces the rules and the global default; jobs that start afterwards use them, jobs
    /// in flight finish under the policy they started with.
    pub fn replace_policy(&self, policy: PolicySettings) {
        self.swap(|live| live.policy = policy);
    }

    /// Replaces who may use `TLS-Required: No`, like `replace_policy`.
    pub fn replace_tls_required_no(&self, permission: TlsRequiredNoPermission) {
        self.swap(|live| live.tls_required_no = permission);
    }

    /// The routes in force now.
    pub fn routes(&self) -> Vec<Route> {
        self.live().routes.routes().to_vec()
    }

    /// Replaces the routes (and their credentials), like `replace_policy`.
    pub fn replace_routes(&self, routes: Vec<Route>) {
        let table = RouteTable::new(routes);
        self.swap(|live| live.routes = table);
    }

    fn swap(&self, change: impl FnOnce(&mut LivePolicy)) {
        // A poisoned lock only means a panic elsewhere while swapping an `Arc`; the value
        // inside is whole either way.
        let mut guard = self
            .live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = LivePolicy::clone(&guard);
        change(&mut next);
        *guard = Arc::new(next);
    }

    pub(crate) fn live(&self) -> Arc<LivePolicy> {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The facts for `domain`: its route's next hop if one is configured, else its MX hosts.
    pub async fn destination(&self, domain: &str) -> Destination {
        let route = self.live().routes.get(domain).cloned();
        match route {
            Some(route) => Destination::Route {
                domain: domain.to_owned(),
                port: route.port,
                host: match facts::literal_host(&route.host) {
                    Some(literal) => literal,
                    None => Box::pin(self.facts.host_facts(&route.host, route.port)).await,
                },
                credentials: route.credentials,
            },
            // Boxed: the lookups' futures are large and a delivery job's is copied whole
            // when it starts.
            None => Destination::Mx(Box::pin(self.facts.domain_facts(domain)).await),
        }
    }

    /// Live lookups for `domain` through the same fact source (and its caches) as delivery,
    /// then the plan a message with `message`'s facts would get.
    pub async fn explain(&self, domain: &str, message: MessageFacts) -> Explanation {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let facts = self.destination(&domain).await;
        let history = self.history(&domain);
        let evaluation =
            run::evaluate_for(&facts, &message, &self.policy(), run::unix_now(), &history);
        Explanation {
            domain,
            message,
            facts,
            outcome: evaluation.outcome,
            alternatives: evaluation.alternatives,
            expired: evaluation.expired,
        }
    }

    /// Warns once per rule (and expiry) that it expired at `now` and no longer applies: a rule
    /// stops on its own at the time given, without a reload.
    fn note_expired(&self, rules: &[Rule], now: u64) {
        let expired = rules.iter().filter(|rule| rule.expired(now));
        for rule in expired {
            let Some(expires) = rule.expires else {
                continue;
            };
            let first = self
                .expired_noted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((rule.name.clone(), expires));
            if first {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires);
                tracing::warn!(
                    rule = %rule.name,
                    expires = %humantime::format_rfc3339_seconds(at),
                    reason = rule.reason.as_deref().unwrap_or("-"),
                    exception = rule.is_exception(),
                    "rule expired: it no longer applies"
                );
            }
        }
    }

    /// Why `target` must not be connected to, if it must not (a loop back to our own
    /// listeners, or a `never_deliver_to` network for hosts not named by a route).
    fn refusal(&self, routed: bool, target: std::net::SocketAddr) -> Option<loops::Refusal> {
        loops::refusal(
            target,
            &self.settings.own_listeners,
            &self.settings.never_deliver_to,
            routed,
            loops::is_local_address,
        )
    }

    /// The local address to bind for a connection to `remote`, if one is configured.
    fn source_for(&self, remote: IpAddr) -> Option<IpAddr> {
        match remote {
            IpAddr::V4(_) => self.settings.source_ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.settings.source_ipv6.map(IpAddr::V6),
        }
    }
}

impl<F: FactSource> Deliver for Transport<F> {
    async fn deliver(&self, job: DeliveryJob) -> DeliveryReport {
        run::deliver(self, &job).await
    }
}
