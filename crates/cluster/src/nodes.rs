//! Heartbeats: every `sync_interval` a node writes when it was seen and the hash of the rules
//! it runs, and reads the other live nodes' hashes. Nodes that run different rules decide
//! differently for the same destination, so a difference is a warning and the
//! `strictmx_cluster_rules_mismatch` gauge (the number of other live nodes whose hash differs).

use ring::digest;
use strictmx_protocol::ErrorChain;

use crate::db::{Cluster, query};
use crate::error::ClusterError;

/// A node counts as live this many sync intervals after its last heartbeat.
const LIVE_INTERVALS: u32 = 3;

/// The hash nodes compare: SHA-256 of the effective rules as text, in hex.
pub fn rules_hash(effective_rules: &str) -> String {
    hex(digest::digest(&digest::SHA256, effective_rules.as_bytes()).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Another live node and its rules hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub hostname: String,
    pub rules_hash: String,
}

impl Cluster {
    /// Writes this node's heartbeat; returns the other live nodes whose rules differ.
    pub async fn heartbeat(&self) -> Result<Vec<Peer>, ClusterError> {
        let what = "writing the heartbeat";
        let client = self.client(what).await?;
        let hash = self.rules_hash();
        let live = self.settings().sync_interval * LIVE_INTERVALS;
        let secs = live.as_secs_f64();
        let (node, hostname) = (self.node(), self.hostname());
        let rows = self
            .timed(what, async {
                client
                    .execute(
                        "INSERT INTO strictmx_nodes (node, hostname, rules_hash, seen_at) \
                         VALUES ($1, $2, $3, now()) ON CONFLICT (node) DO UPDATE \
                         SET hostname = EXCLUDED.hostname, rules_hash = EXCLUDED.rules_hash, \
                             seen_at = EXCLUDED.seen_at",
                        &[&node, &hostname, &hash],
                    )
                    .await
                    .map_err(query(what))?;
                client
                    .query(
                        "SELECT node, hostname, rules_hash FROM strictmx_nodes \
                         WHERE node <> $1 AND rules_hash <> $2 \
                           AND seen_at > now() - make_interval(secs => $3) ORDER BY node",
                        &[&node, &hash, &secs],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| Peer {
                node: row.get(0),
                hostname: row.get(1),
                rules_hash: row.get(2),
            })
            .collect())
    }

    /// One heartbeat and its warning; returns whether the database answered.
    pub async fn beat(&self) -> bool {
        match self.heartbeat().await {
            Ok(differing) => {
                ::metrics::gauge!("strictmx_cluster_rules_mismatch").set(differing.len() as f64);
                for peer in &differing {
                    tracing::warn!(
                        peer = %peer.node,
                        peer_hostname = %peer.hostname,
                        peer_rules = %peer.rules_hash,
                        rules = %self.rules_hash(),
                        "another node runs different rules"
                    );
                }
                true
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cluster database unreachable; going on with local state");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_hash_is_sha256_in_hex() {
        assert_eq!(
            rules_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(rules_hash("[[rule]]\n"), rules_hash(""));
    }
}
