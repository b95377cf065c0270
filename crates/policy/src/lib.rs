//! Pure transport-security decisions: facts about a destination plus settings become a plan.
//!
//! This crate decides; it never looks anything up. DNS answers arrive as [`MxFacts`] (produced by
//! `strictmx-resolve`), and the delivery transport executes the resulting [`DeliveryPlan`].
//! MTA-STS, DANE and per-domain rules will add facts and precedence steps here later.

#![forbid(unsafe_code)]

mod facts;
mod plan;
pub mod report;
pub mod rules;
pub mod sts;

pub use facts::{
    AddressFailure, Dnssec, DnssecHealth, DomainFacts, HostFacts, MessageFacts, MxFacts, MxHost,
    StsFacts, StsFetchFailure, StsPolicyFacts, StsRecordFacts, TlsaFacts, TlsaRecord,
};
pub use plan::{
    DefaultRequirement, DeliveryPlan, PlanOutcome, PlannedHost, PolicyLabel, PolicySettings,
    TlsRequirement, plan, plan_route,
};
