//! The MTA-STS policy cache shared by a cluster's nodes, as `StsSource` sees it: a policy one
//! node fetched serves every node, and a refresh near expiry is done by the node that claims
//! it. The store itself (PostgreSQL) is `strictmx-cluster`'s; when it cannot be reached,
//! `StsSource` goes on with the spool's cache and its own fetches.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use strictmx_spool::CachedStsPolicy;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A policy cache several nodes share. Errors are text for the logs: every one of them means
/// "use the local cache and fetch yourself".
pub trait SharedStsCache: Send + Sync + fmt::Debug {
    /// The shared copy of `domain`'s policy, expired or not.
    fn get<'a>(&'a self, domain: &'a str)
    -> BoxFuture<'a, Result<Option<CachedStsPolicy>, String>>;
    /// Stores `policy` unless the shared copy was fetched later.
    fn put<'a>(&'a self, policy: &'a CachedStsPolicy) -> BoxFuture<'a, Result<(), String>>;
    /// Claims the refresh of `domain`'s policy for a while; false when another node holds
    /// the claim (it refreshes, and this node takes its result later).
    fn claim_refresh<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<bool, String>>;
}
