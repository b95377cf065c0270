//! Gathers DNS facts for delivery: a domain's MX answer (null MX, implicit MX) and host addresses.
//!
//! This crate only looks things up and classifies failures; what to do with the answers is the
//! business of `strictmx-policy` (the plan) and the delivery transport (connecting).

#![forbid(unsafe_code)]

mod error;
mod mx;
mod resolver;

pub use error::ResolveError;
pub use mx::MxAnswer;
pub use resolver::{DnsResolver, ResolverSettings};
pub use strictmx_policy::MxHost;
