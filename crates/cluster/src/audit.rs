//! The cluster's audit index: each node adds the audit records of its spool to
//! `strictmx_audit` in the background (`SharedAudit::sync`, from the cluster task), and
//! `audit search` and `audit show` read the other nodes' rows from there
//! (`Cluster::audit_search`, `Cluster::audit_show`). A row is keyed by its node and the
//! record's sequence number in that node's spool, and the node's watermark moves in the same
//! transaction as the rows: after an outage a node resumes where it stopped, and a batch
//! written twice adds nothing. Merging with this node's own records is the binary's.

use std::time::{Duration, SystemTime};

use strictmx_protocol::ErrorChain;
use strictmx_spool::{
    AuditOutcome, AuditPage, AuditQuery, AuditRecord, AuthFilter, MessageId, Spool, format_id,
    message_id_key,
};

use crate::db::{Cluster, query};
use crate::error::ClusterError;

/// Records added per transaction.
const BATCH: usize = 500;
/// Transactions per sync at most, so that a node back after a long outage catches up over a
/// few intervals without holding the cluster task.
const BATCHES_PER_SYNC: usize = 20;

/// A node's side of the shared index: its spool, and how long rows are kept (`[audit] keep`).
#[derive(Debug, Clone)]
pub struct SharedAudit {
    cluster: Cluster,
    spool: Spool,
    keep: Duration,
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SharedAudit {
    pub fn new(cluster: Cluster, spool: Spool, keep: Duration) -> SharedAudit {
        SharedAudit {
            cluster,
            spool,
            keep,
        }
    }

    /// Adds this node's records past its watermark, a batch per transaction, then prunes
    /// rows older than `keep`; returns how many records were added.
    pub async fn sync(&self) -> Result<usize, ClusterError> {
        let mut added = 0;
        for _ in 0..BATCHES_PER_SYNC {
            let (written, more) = self.sync_batch().await?;
            added += written;
            if !more {
                break;
            }
        }
        self.prune().await?;
        Ok(added)
    }

    /// One batch; returns how many records it held and whether more may follow.
    async fn sync_batch(&self) -> Result<(usize, bool), ClusterError> {
        let what = "writing the audit index";
        let mut client = self.cluster.client(what).await?;
        let node = self.cluster.node().to_owned();
        let first = self
            .cluster
            .timed(what, async {
                client
                    .query_opt(
                        "SELECT next_seq FROM strictmx_audit_sync WHERE node = $1",
                        &[&node],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?
            .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0));
        let records = match self.spool.audit_after(first, BATCH) {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "audit trail unreadable; not shared now");
                return Ok((0, false));
            }
        };
        let Some(&(last, _)) = records.last() else {
            return Ok((0, false));
        };
        let next = signed(last.saturating_add(1));
        self.cluster
            .timed(what, async {
                let tx = client.transaction().await.map_err(query(what))?;
                let insert = tx
                    .prepare(
                        "INSERT INTO strictmx_audit (node, seq, queue_id, rcpt_index, \
                         message_id, sender, recipient, domain, outcome, auth, final_at_ms, \
                         record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                         CAST($12::text AS jsonb)) ON CONFLICT DO NOTHING",
                    )
                    .await
                    .map_err(query(what))?;
                for (seq, record) in &records {
                    // Serialising plain data cannot fail.
                    let json = serde_json::to_string(record).unwrap_or_default();
                    let message_id = record.message_id.as_deref().map(message_id_key);
                    let index = i32::try_from(record.index).unwrap_or(i32::MAX);
                    tx.execute(
                        &insert,
                        &[
                            &node,
                            &signed(*seq),
                            &format_id(record.queue_id),
                            &index,
                            &message_id,
                            &record.sender,
                            &record.recipient,
                            &record.domain,
                            &record.outcome.as_str(),
                            &record.auth().as_str(),
                            &millis(record.final_at),
                            &json,
                        ],
                    )
                    .await
                    .map_err(query(what))?;
                }
                tx.execute(
                    "INSERT INTO strictmx_audit_sync (node, next_seq) VALUES ($1, $2) \
                     ON CONFLICT (node) DO UPDATE \
                     SET next_seq = GREATEST(strictmx_audit_sync.next_seq, EXCLUDED.next_seq)",
                    &[&node, &next],
                )
                .await
                .map_err(query(what))?;
                tx.commit().await.map_err(query(what))
            })
            .await?;
        Ok((records.len(), records.len() == BATCH))
    }

    /// Removes every node's rows older than `keep`, as each spool prunes its own.
    async fn prune(&self) -> Result<u64, ClusterError> {
        let what = "pruning the audit index";
        let client = self.cluster.client(what).await?;
        let cutoff = millis(
            SystemTime::now()
                .checked_sub(self.keep)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        self.cluster
            .timed(what, async {
                client
                    .execute(
                        "DELETE FROM strictmx_audit WHERE final_at_ms < $1",
                        &[&cutoff],
                    )
                    .await
                    .map_err(query(what))
            })
            .await
    }
}

/// `query`'s conditions as the parameters of the search statement: each is `NULL` when the
/// query does not set it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Conditions {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    domain: Option<String>,
    recipient: Option<String>,
    recipient_domain: Option<String>,
    sender: Option<String>,
    sender_domain: Option<String>,
    outcome: Option<&'static str>,
    delivered_over: Option<&'static str>,
    not_delivered_over: Option<&'static str>,
}

/// An address pattern (`a@b` or `@b`) as (address, domain), lowercased.
fn address_or_domain(pattern: Option<&str>) -> (Option<String>, Option<String>) {
    match pattern.map(str::to_lowercase) {
        None => (None, None),
        Some(p) => match p.strip_prefix('@') {
            Some(domain) => (None, Some(domain.to_owned())),
            None => (Some(p), None),
        },
    }
}

impl Conditions {
    fn of(query: &AuditQuery) -> Conditions {
        let (recipient, recipient_domain) = address_or_domain(query.recipient.as_deref());
        let (sender, sender_domain) = address_or_domain(query.sender.as_deref());
        let (delivered_over, not_delivered_over) = match query.auth {
            Some(AuthFilter::DeliveredOver(a)) => (Some(a.as_str()), None),
            Some(AuthFilter::NotDeliveredOver(a)) => (None, Some(a.as_str())),
            None => (None, None),
        };
        Conditions {
            since_ms: query.since.map(millis),
            until_ms: query.until.map(millis),
            domain: query.domain.as_deref().map(str::to_lowercase),
            recipient,
            recipient_domain,
            sender,
            sender_domain,
            outcome: query.outcome.map(AuditOutcome::as_str),
            delivered_over,
            not_delivered_over,
        }
    }
}

fn decoded(rows: &[tokio_postgres::Row]) -> Vec<AuditRecord> {
    rows.iter()
        .filter_map(|row| {
            serde_json::from_str(row.get::<_, &str>(0))
                .map_err(
                    |e| tracing::warn!(error = %e, "undecodable row of the audit index skipped"),
                )
                .ok()
        })
        .collect()
}

impl Cluster {
    /// The other nodes' records that `query` selects, oldest first, at most `query.limit`.
    pub async fn audit_search(&self, wanted: &AuditQuery) -> Result<AuditPage, ClusterError> {
        let what = "searching the audit index";
        let client = self.client(what).await?;
        let c = Conditions::of(wanted);
        let limit = signed(
            u64::try_from(wanted.limit)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        );
        let node = self.node();
        let rows = self
            .timed(what, async {
                client
                    .query(
                        "SELECT record::text FROM strictmx_audit WHERE node <> $1 \
                         AND ($2::bigint IS NULL OR final_at_ms >= $2) \
                         AND ($3::bigint IS NULL OR final_at_ms < $3) \
                         AND ($4::text IS NULL OR domain = $4) \
                         AND ($5::text IS NULL OR lower(recipient) = $5) \
                         AND ($6::text IS NULL OR domain = $6) \
                         AND ($7::text IS NULL OR lower(sender) = $7) \
                         AND ($8::text IS NULL OR lower(substring(sender from '@([^@]*)$')) = $8) \
                         AND ($9::text IS NULL OR outcome = $9) \
                         AND ($10::text IS NULL OR (outcome = 'delivered' AND auth = $10)) \
                         AND ($11::text IS NULL OR NOT (outcome = 'delivered' AND auth = $11)) \
                         ORDER BY final_at_ms, node, seq LIMIT $12",
                        &[
                            &node,
                            &c.since_ms,
                            &c.until_ms,
                            &c.domain,
                            &c.recipient,
                            &c.recipient_domain,
                            &c.sender,
                            &c.sender_domain,
                            &c.outcome,
                            &c.delivered_over,
                            &c.not_delivered_over,
                            &limit,
                        ],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        let truncated = rows.len() > wanted.limit;
        let mut records: Vec<AuditRecord> = decoded(&rows)
            .into_iter()
            .filter(|r| wanted.matches(r))
            .collect();
        records.truncate(wanted.limit);
        Ok(AuditPage { records, truncated })
    }

    /// The other nodes' records of the message with queue id `queue_id` or `Message-ID`
    /// `message_id` (with or without its angle brackets), by node, queue id and recipient.
    pub async fn audit_show(
        &self,
        queue_id: Option<MessageId>,
        message_id: &str,
    ) -> Result<Vec<AuditRecord>, ClusterError> {
        let what = "reading the audit index";
        let client = self.client(what).await?;
        let queue_id = queue_id.map(format_id);
        let key = message_id_key(message_id);
        let node = self.node();
        let rows = self
            .timed(what, async {
                client
                    .query(
                        "SELECT record::text FROM strictmx_audit WHERE node <> $1 \
                         AND (queue_id = $2 OR message_id = $3) \
                         ORDER BY node, queue_id, rcpt_index",
                        &[&node, &queue_id, &key],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(decoded(&rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strictmx_spool::PeerAuth;

    #[test]
    fn a_query_becomes_the_search_statements_parameters() {
        let query = AuditQuery {
            recipient: Some("@Bank.Example".into()),
            sender: Some("Billing@App.Test".into()),
            auth: Some(AuthFilter::NotDeliveredOver(PeerAuth::Dane)),
            outcome: Some(AuditOutcome::Delivered),
            ..AuditQuery::default()
        };
        assert_eq!(
            Conditions::of(&query),
            Conditions {
                recipient_domain: Some("bank.example".into()),
                sender: Some("billing@app.test".into()),
                outcome: Some("delivered"),
                not_delivered_over: Some("dane"),
                ..Conditions::default()
            }
        );
        let null_sender = AuditQuery {
            sender: Some(String::new()),
            domain: Some("Bank.Example".into()),
            ..AuditQuery::default()
        };
        let c = Conditions::of(&null_sender);
        assert_eq!(
            c.sender.as_deref(),
            Some(""),
            "the null sender is an address"
        );
        assert_eq!(c.domain.as_deref(), Some("bank.example"));
        assert_eq!(c.sender_domain, None);
    }
}
