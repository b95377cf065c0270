//! Where the transport gets its facts: the `FactSource` seam between delivery and
//! `strictmx-resolve`, and the facts of a destination as one job sees them.
//!
//! Looking things up (DNSSEC, TLSA, MTA-STS, caches) is the resolver's; deciding from the facts
//! is the planner's. The transport gathers once per job and plans once per message.

use std::future::Future;
use std::net::IpAddr;

use serde::Serialize;

use crate::transport::RouteCredentials;
use strictmx_policy::{
    AddressFailure, Dnssec, DnssecHealth, DomainFacts, HostFacts, MxFacts, StsFacts,
    StsRecordFacts, TlsaFacts,
};

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

/// Facts from a plain resolver: MX and addresses only, with no DNSSEC status, no TLSA and no
/// MTA-STS. It is what the transport had before the fact gatherer of `strictmx-resolve`, and
/// what tests with a scripted DNS server use; it can never produce DANE or MTA-STS plans.
impl FactSource for strictmx_resolve::DnsResolver {
    async fn domain_facts(&self, domain: &str) -> DomainFacts {
        let mx = match self.mx(domain).await {
            Ok(answer) => answer.to_facts(),
            Err(error) => error.to_mx_facts(),
        };
        let names: Vec<String> = match &mx {
            MxFacts::Hosts(hosts) => hosts.iter().map(|host| host.name.clone()).collect(),
            MxFacts::Implicit { host } => vec![host.clone()],
            MxFacts::Null
            | MxFacts::NoSuchDomain
            | MxFacts::Unavailable { .. }
            | MxFacts::NotAHostName { .. } => Vec::new(),
        };
        let mut hosts = Vec::with_capacity(names.len());
        for name in names {
            hosts.push(self.host_facts(&name, 25).await);
        }
        DomainFacts {
            domain: domain.to_owned(),
            mx,
            mx_dnssec: Dnssec::Indeterminate,
            hosts,
            sts: StsFacts {
                record: StsRecordFacts::Absent,
                policy: None,
                fetch_failure: None,
            },
            dnssec_health: DnssecHealth::Broken {
                mode: "none".to_owned(),
                reason: "a plain resolver reports no DNSSEC status".to_owned(),
            },
        }
    }

    async fn host_facts(&self, host: &str, _port: u16) -> HostFacts {
        if let Some(literal) = literal_host(host) {
            return literal;
        }
        let addresses = self.addresses(host).await.map_err(|error| AddressFailure {
            transient: error.is_transient(),
            reason: error.to_string(),
        });
        HostFacts {
            name: host.to_owned(),
            canonical: None,
            addresses,
            addresses_dnssec: Dnssec::Indeterminate,
            tlsa: TlsaFacts::NotApplicable {
                reason: "a plain resolver reports no DNSSEC status".to_owned(),
            },
        }
    }
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
