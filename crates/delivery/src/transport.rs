//! The outbound SMTP transport: turns a `DeliveryJob` into SMTP sessions that execute the plan.
//!
//! It resolves the destination (or its configured route), asks `strictmx-policy` for the plan,
//! tries the candidate hosts in order and reports per recipient, with one `AttemptRecord` per
//! connection attempt and message. Scheduling, retries and DSNs are left to the queue runner;
//! the transport never touches the spool.
//!
//! The session types enforce the plan's TLS requirement by construction: `MAIL FROM` exists
//! only on a [`MailSession`], which a [`PlainSession`] yields only when the plan allows
//! plaintext, and a [`SecureSession`] yields only when its certificate meets the plan.

mod attempt;
mod error;
mod run;
mod session;
mod settings;
mod tls;
mod wire;

use std::net::IpAddr;

use strictmx_policy::{PlanOutcome, plan, plan_route};
use strictmx_resolve::DnsResolver;

pub use error::{Stage, TransportError};
pub use session::{MailSession, PlainSession, SecureSession, StartTlsError};
pub use settings::{Route, TransportSettings};
pub use tls::{CertificateCheck, TlsInfo};
pub use wire::Capabilities;

use crate::job::{Deliver, DeliveryJob, DeliveryReport};
use tls::TlsSetup;

/// The SMTP client side of delivery; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Transport {
    settings: TransportSettings,
    resolver: DnsResolver,
    tls: TlsSetup,
}

impl Transport {
    /// Loads the trust roots (webpki-roots plus `extra_ca_file`).
    pub fn new(settings: TransportSettings, resolver: DnsResolver) -> Result<Self, TransportError> {
        let tls = TlsSetup::new(settings.extra_ca_file.as_deref())?;
        Ok(Transport {
            settings,
            resolver,
            tls,
        })
    }

    pub fn settings(&self) -> &TransportSettings {
        &self.settings
    }

    /// The plan for `domain`: its route if one is configured, otherwise from its MX answer.
    pub async fn plan(&self, domain: &str) -> PlanOutcome {
        if let Some(route) = self.settings.route_for(domain) {
            return plan_route(domain, &route.host, &self.settings.policy);
        }
        let facts = match self.resolver.mx(domain).await {
            Ok(answer) => answer.to_facts(),
            Err(error) => error.to_mx_facts(),
        };
        plan(domain, &facts, &self.settings.policy)
    }

    /// The port to use for `domain`: the route's, or the SMTP port.
    fn port_for(&self, domain: &str) -> u16 {
        self.settings
            .route_for(domain)
            .map_or(self.settings.smtp_port, |route| route.port)
    }

    /// The local address to bind for a connection to `remote`, if one is configured.
    fn source_for(&self, remote: IpAddr) -> Option<IpAddr> {
        match remote {
            IpAddr::V4(_) => self.settings.source_ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.settings.source_ipv6.map(IpAddr::V6),
        }
    }
}

impl Deliver for Transport {
    async fn deliver(&self, job: DeliveryJob) -> DeliveryReport {
        run::deliver(self, &job).await
    }
}
