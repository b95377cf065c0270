//! The server's fact source: one `FactGatherer` shared by delivery, `explain` and the MTA-STS
//! refresher task.
//!
//! Gathering is `strictmx-resolve`'s; this only lets the transport hold the gatherer behind the
//! same `Arc` the refresher runs on.

use std::sync::Arc;

use strictmx_delivery::transport::{FactSource, Transport};
use strictmx_policy::{DomainFacts, HostFacts};
use strictmx_resolve::FactGatherer;

/// The transport as the server runs it.
pub type ServerTransport = Transport<SharedGatherer>;

/// A shared [`FactGatherer`].
#[derive(Debug, Clone)]
pub struct SharedGatherer(pub Arc<FactGatherer>);

impl FactSource for SharedGatherer {
    async fn domain_facts(&self, domain: &str) -> DomainFacts {
        self.0.domain_facts(domain).await
    }

    async fn host_facts(&self, host: &str, port: u16) -> HostFacts {
        self.0.host_facts(host, port).await
    }
}
