//! The shared MTA-STS policy cache behind `strictmx_resolve::SharedStsCache`: one row per
//! policy domain, replaced only by a later fetch; refresh claims are leases named after the
//! domain, so that one node refreshes a policy for all.

use std::sync::Arc;

use strictmx_protocol::ErrorChain;
use strictmx_resolve::SharedStsCache;
use strictmx_spool::CachedStsPolicy;

use crate::db::{Cluster, query};
use crate::error::ClusterError;

/// The cluster's policy cache as `StsSource` uses it.
#[derive(Debug, Clone)]
pub struct SharedPolicies(pub Cluster);

impl SharedPolicies {
    pub fn shared(cluster: &Cluster) -> Arc<dyn SharedStsCache> {
        Arc::new(SharedPolicies(cluster.clone()))
    }
}

fn text(error: &ClusterError) -> String {
    ErrorChain(error).to_string()
}

fn secs(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Cluster {
    pub async fn sts_get(&self, domain: &str) -> Result<Option<CachedStsPolicy>, ClusterError> {
        let what = "reading the MTA-STS cache";
        let client = self.client(what).await?;
        let row = self
            .timed(what, async {
                client
                    .query_opt(
                        "SELECT policy, txt_id, fetched_at, expires_at \
                         FROM strictmx_sts_policies WHERE domain = $1",
                        &[&domain],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(row.map(|row| CachedStsPolicy {
            domain: domain.to_owned(),
            text: row.get(0),
            id: row.get(1),
            fetched_at: secs(row.get(2)),
            expires_at: secs(row.get(3)),
        }))
    }

    pub async fn sts_put(&self, policy: &CachedStsPolicy) -> Result<(), ClusterError> {
        let what = "writing the MTA-STS cache";
        let client = self.client(what).await?;
        let (fetched, expires) = (signed(policy.fetched_at), signed(policy.expires_at));
        let node = self.node();
        self.timed(what, async {
            client
                .execute(
                    "INSERT INTO strictmx_sts_policies \
                     (domain, policy, txt_id, fetched_at, expires_at, fetched_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (domain) DO UPDATE \
                     SET policy = EXCLUDED.policy, txt_id = EXCLUDED.txt_id, \
                         fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at, \
                         fetched_by = EXCLUDED.fetched_by \
                     WHERE strictmx_sts_policies.fetched_at <= EXCLUDED.fetched_at",
                    &[
                        &policy.domain,
                        &policy.text,
                        &policy.id,
                        &fetched,
                        &expires,
                        &node,
                    ],
                )
                .await
                .map_err(query(what))
        })
        .await?;
        Ok(())
    }
}

impl SharedStsCache for SharedPolicies {
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> strictmx_resolve::BoxFuture<'a, Result<Option<CachedStsPolicy>, String>> {
        Box::pin(async move { self.0.sts_get(domain).await.map_err(|e| text(&e)) })
    }

    fn put<'a>(
        &'a self,
        policy: &'a CachedStsPolicy,
    ) -> strictmx_resolve::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.0.sts_put(policy).await.map_err(|e| text(&e)) })
    }

    fn claim_refresh<'a>(
        &'a self,
        domain: &'a str,
    ) -> strictmx_resolve::BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let ttl = self.0.settings().lease_ttl;
            self.0
                .claim(&format!("sts-refresh:{domain}"), ttl)
                .await
                .map_err(|e| text(&e))
        })
    }
}
