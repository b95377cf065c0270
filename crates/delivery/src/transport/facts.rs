//! Where the transport gets its facts: the `FactSource` seam between delivery and
//! `strictmx-resolve`, and the facts of a destination as one job sees them.
//!
//! Looking things up (DNSSEC, TLSA, MTA-STS, caches) is the resolver's; deciding from the facts
//! is the planner's. The transport gathers once per job and plans once per message.

use std::future::Future;
use std::net::IpAddr;

use serde::Serialize;

use crate::transport::RouteCredentials;
use strictmx_policy::{Dnssec, DomainFacts, HostFacts, TlsaFacts};

/// Gathers what the planner needs to know about a destination.
pub trait FactSource: Send + Sync + 'static {
    /// Everything about a recipient domain: MX with DNSSEC status, per-host addresses and TLSA,
    /// MTA-STS, and the DNSSEC self-test's health.
    fn domain_facts(&self, domain: &str) -> impl Future<Output = DomainFacts> + Send;

    /// The addresses and TLSA records of a configured next hop (a route); `port` is the TLSA
    /// port (RFC 7672 §2.2: `_<port>._tcp.<host>`).
    fn host_facts(&self, host: &str, port: u16) -> impl Future<Output = HostFacts> + Send;
}

/// The facts one delivery job works from, gathered once for all its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Destination {
    /// Delivery through the domain's MX hosts.
    Mx(DomainFacts),
    /// A configured route to a fixed next hop.
    Route {
        domain: String,
        port: u16,
        host: HostFacts,
        /// The login the route sends to its next hop (only the user name is serialised).
        #[serde(skip_serializing_if = "Option::is_none")]
        credentials: Option<RouteCredentials>,
    },
}

impl Destination {
    /// The port to connect to: the route's, or `smtp_port` for MX hosts.
    pub fn port(&self, smtp_port: u16) -> u16 {
        match self {
            Destination::Mx(_) => smtp_port,
            Destination::Route { port, .. } => *port,
        }
    }

    /// The login for the next hop, when a route with credentials was chosen.
    pub fn credentials(&self) -> Option<&RouteCredentials> {
        match self {
            Destination::Mx(_) => None,
            Destination::Route { credentials, .. } => credentials.as_ref(),
        }
    }

    /// The gathered facts of the candidate host `name`, if it was looked up.
    pub fn host(&self, name: &str) -> Option<&HostFacts> {
        match self {
            Destination::Mx(facts) => facts.hosts.iter().find(|host| host.name == name),
            Destination::Route { host, .. } => Some(host).filter(|host| host.name == name),
        }
    }
}

/// The facts of a next hop written as an IP literal: nothing to look up, nothing secure.
pub(crate) fn literal_host(host: &str) -> Option<HostFacts> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let ip = literal.parse::<IpAddr>().ok()?;
    Some(HostFacts {
        name: host.to_owned(),
        canonical: None,
        addresses: Ok(vec![ip]),
        addresses_dnssec: Dnssec::Indeterminate,
        tlsa: TlsaFacts::NotApplicable {
            reason: "the next hop is an IP address".to_owned(),
        },
    })
}

/// The server's gatherer: DNSSEC-aware lookups, TLSA, MTA-STS with its spool cache.
impl FactSource for strictmx_resolve::FactGatherer {
    async fn domain_facts(&self, domain: &str) -> DomainFacts {
        strictmx_resolve::FactGatherer::domain_facts(self, domain).await
    }

    async fn host_facts(&self, host: &str, port: u16) -> HostFacts {
        strictmx_resolve::FactGatherer::host_facts(self, host, port).await
    }
}

/// A shared source (the server keeps one gatherer for delivery, `explain` and the refresher).
impl<T: FactSource> FactSource for std::sync::Arc<T> {
    async fn domain_facts(&self, domain: &str) -> DomainFacts {
        T::domain_facts(self, domain).await
    }

    async fn host_facts(&self, host: &str, port: u16) -> HostFacts {
        T::host_facts(self, host, port).await
    }
}
