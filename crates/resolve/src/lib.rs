//! Gathers the facts delivery decides from: MX, A/AAAA and TLSA answers with their DNSSEC
//! status, MTA-STS records and policies (fetched over HTTPS, cached in the spool), and the
//! DNSSEC self-test.
//!
//! This crate only looks things up and classifies failures; what to do with the answers is the
//! business of `strictmx-policy` (the plan) and the delivery transport (connecting).

#![forbid(unsafe_code)]

mod ad_client;
mod answer;
mod error;
mod gather;
mod https;
mod mta_sts;
mod mx;
mod resolver;
mod shared;
mod sts_fetch;
mod tlsa;

pub use error::ResolveError;
pub use gather::{FactGatherer, GatherSettings};
pub use https::{HttpsTimeouts, https_client_with, report_client, webhook_client};
pub use mta_sts::{StsSettings, StsSource};
pub use mx::MxAnswer;
pub use resolver::{AddressAnswer, DnsResolver, DnssecMode, ResolverSettings, Secured};
pub use shared::{BoxFuture, SharedStsCache};
pub use strictmx_policy::MxHost;
