//! Named leases: a row naming its holder and when the claim runs out, by the database's clock
//! (so nodes' clocks need not agree). A node takes a lease that is free or expired and renews
//! its own; a node that dies stops renewing, and after `ttl` another takes over.

use std::time::Duration;

use crate::db::{Cluster, query};
use crate::error::ClusterError;

impl Cluster {
    /// Takes or renews lease `name` for `ttl`; true when this node holds it now.
    pub async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, ClusterError> {
        let what = "claiming a lease";
        let client = self.client(what).await?;
        let secs = ttl.as_secs_f64();
        let node = self.node();
        let rows = self
            .timed(what, async {
                client
                    .query(
                        "INSERT INTO strictmx_leases (name, holder, expires_at) \
                         VALUES ($1, $2, now() + make_interval(secs => $3)) \
                         ON CONFLICT (name) DO UPDATE \
                         SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                         WHERE strictmx_leases.holder = EXCLUDED.holder \
                            OR strictmx_leases.expires_at < now() \
                         RETURNING holder",
                        &[&name, &node, &secs],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(!rows.is_empty())
    }
}
