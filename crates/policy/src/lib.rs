//! Pure transport-security decisions: facts about a destination plus settings become a plan.
//!
//! This crate decides; it never looks anything up. DNS answers arrive as [`MxFacts`] (produced by
//! `strictmx-resolve`) with the rest of [`DomainFacts`]; [`plan_delivery`] applies REQUIRETLS,
//! DANE, MTA-STS, administrator rules and the default; [`evaluate`] decides which rules are in
//! force at a moment and plans what each shadow rule and exception changes; the delivery
//! transport executes the resulting [`DeliveryPlan`] and asks [`judge_peer`] about each TLS
//! session.

#![forbid(unsafe_code)]

pub mod address;
mod error;
mod evaluation;
mod facts;
mod peer;
mod plan;
pub mod posture;
pub mod report;
pub mod rules;
pub mod sts;
pub mod tlsa;
pub mod tlsrpt_record;

pub use error::StsError;
pub use evaluation::{
    Alternative, Alternatives, Evaluation, RuleTerm, SessionSeen, Standing, Verdict,
    VerdictOutcome, evaluate,
};
/// The error of [`sts::parse_record`].
pub type StsRecordError = StsError;
/// The error of [`sts::parse_policy`].
pub type StsPolicyError = StsError;
pub use facts::{
    AddressFailure, Dnssec, DnssecHealth, DomainFacts, HostFacts, MessageFacts, MxFacts, MxHost,
    StsFacts, StsFetchFailure, StsPolicyFacts, StsRecordFacts, TlsaFacts, TlsaRecord,
};
pub use peer::{
    NoTls, PeerAuth, PeerFacts, PeerFailure, WebpkiVerdict, judge_peer, judge_testing,
    judge_without_tls, pin_anchor_candidates, pin_anchor_names, report_tls_session,
    report_without_tls, testing_without_tls,
};
pub use plan::{
    DefaultRequirement, DeliveryPlan, HostPolicyFailure, PlanOutcome, PlannedHost, PolicyLabel,
    PolicySettings, TlsRequirement, plan_delivery, plan_route_delivery,
};
