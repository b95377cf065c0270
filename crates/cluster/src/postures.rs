//! The shared history of destination policy weakenings behind
//! `strictmx_delivery::watch::SharedHistory`: each node adds the changes it saw, keyed by time,
//! domain and node; reading returns every node's.

use std::sync::Arc;

use strictmx_delivery::watch::{BoxFuture, PostureChange, SharedHistory};
use strictmx_protocol::ErrorChain;

use crate::db::{Cluster, query};
use crate::error::ClusterError;

/// The cluster's posture history as the watch uses it.
#[derive(Debug, Clone)]
pub struct SharedPostures(pub Cluster);

impl SharedPostures {
    pub fn shared(cluster: &Cluster) -> Arc<dyn SharedHistory> {
        Arc::new(SharedPostures(cluster.clone()))
    }
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Cluster {
    pub async fn posture_publish(
        &self,
        change: &PostureChange,
        keep_after_ms: u64,
    ) -> Result<(), ClusterError> {
        let what = "writing a policy change";
        let client = self.client(what).await?;
        // Serialising plain data cannot fail; an empty record would be skipped when read.
        let record = serde_json::to_string(change).unwrap_or_default();
        let (at, keep) = (signed(change.at_ms), signed(keep_after_ms));
        let node = self.node();
        self.timed(what, async {
            client
                .execute(
                    "INSERT INTO strictmx_posture_changes (at_ms, domain, node, change) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&at, &change.domain, &node, &record],
                )
                .await
                .map_err(query(what))?;
            client
                .execute(
                    "DELETE FROM strictmx_posture_changes WHERE at_ms < $1",
                    &[&keep],
                )
                .await
                .map_err(query(what))
        })
        .await?;
        Ok(())
    }

    pub async fn posture_changes(
        &self,
        since_ms: u64,
        domain: Option<&str>,
    ) -> Result<Vec<PostureChange>, ClusterError> {
        let what = "reading policy changes";
        let client = self.client(what).await?;
        let since = signed(since_ms);
        let domain = domain.map(str::to_ascii_lowercase);
        let rows = self
            .timed(what, async {
                client
                    .query(
                        "SELECT change FROM strictmx_posture_changes \
                         WHERE at_ms >= $1 AND ($2::text IS NULL OR lower(domain) = $2) \
                         ORDER BY at_ms, domain, node",
                        &[&since, &domain],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_str(row.get::<_, &str>(0)).ok())
            .collect())
    }
}

impl SharedHistory for SharedPostures {
    fn publish<'a>(
        &'a self,
        change: &'a PostureChange,
        keep_after_ms: u64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .posture_publish(change, keep_after_ms)
                .await
                .map_err(|e| ErrorChain(&e).to_string())
        })
    }

    fn changes<'a>(
        &'a self,
        since_ms: u64,
        domain: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<PostureChange>, String>> {
        Box::pin(async move {
            self.0
                .posture_changes(since_ms, domain)
                .await
                .map_err(|e| ErrorChain(&e).to_string())
        })
    }
}
