//! TLSRPT across nodes (RFC 8460 §4.1: one report per reporting organisation, day and
//! domain). Each node keeps counting in its own spool, and `sync` writes its absolute totals,
//! keyed by node: written again after an outage they replace what was there, so counts made
//! while the database was down arrive later and nothing is counted twice. Reports read the
//! sum over the nodes (`strictmx_tlsrpt::merge_counters`), and the sent marks are shared.
//! Which node sends is the `tlsrpt-reporter` lease's business (`run`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use strictmx_protocol::ErrorChain;
use strictmx_spool::{Spool, TlsrptCounters, TlsrptDetailCount};
use strictmx_tlsrpt::{BoxFuture, CounterStore, Day, Reporter, TlsrptError, merge_counters};
use tokio_util::sync::CancellationToken;

use crate::audit::SharedAudit;
use crate::db::{Cluster, query};
use crate::error::ClusterError;
use crate::nodes::hex;

/// The lease whose holder sends the cluster's reports.
const REPORTER_LEASE: &str = "tlsrpt-reporter";

/// The counters of every node, through the cluster database.
#[derive(Debug, Clone)]
pub struct SharedCounters {
    cluster: Cluster,
    spool: Spool,
    /// Set when a sync failed (and at start): the next sync writes every local day, not only
    /// the last two.
    full_sync: Arc<AtomicBool>,
}

fn key(text: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn day_param(day: u32) -> i32 {
    i32::try_from(day).unwrap_or(i32::MAX)
}

fn shared(action: &'static str) -> impl Fn(ClusterError) -> TlsrptError {
    move |error| TlsrptError::Shared {
        action,
        reason: ErrorChain(&error).to_string(),
    }
}

impl SharedCounters {
    pub fn new(cluster: Cluster, spool: Spool) -> SharedCounters {
        SharedCounters {
            cluster,
            spool,
            full_sync: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Writes this node's totals of its recent days (every day after a failure); returns how
    /// many policy rows were written.
    pub async fn sync(&self) -> Result<usize, ClusterError> {
        let full = self.full_sync.load(Ordering::Acquire);
        let today = Day::of(SystemTime::now()).0;
        let days = match self.spool.tlsrpt_days() {
            Ok(days) => days,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "TLSRPT counters unreadable");
                return Ok(0);
            }
        };
        let mut rows = Vec::new();
        for day in days
            .into_iter()
            .filter(|&d| full || d.saturating_add(1) >= today)
        {
            match self.spool.tlsrpt_day(day) {
                Ok(counters) => rows.extend(counters),
                Err(error) => {
                    tracing::warn!(day, error = %ErrorChain(&error), "TLSRPT counters unreadable")
                }
            }
        }
        match self.write(&rows).await {
            Ok(()) => {
                self.full_sync.store(false, Ordering::Release);
                Ok(rows.len())
            }
            Err(error) => {
                self.full_sync.store(true, Ordering::Release);
                Err(error)
            }
        }
    }

    async fn write(&self, rows: &[TlsrptCounters]) -> Result<(), ClusterError> {
        let what = "writing TLSRPT counters";
        let mut client = self.cluster.client(what).await?;
        let node = self.cluster.node().to_owned();
        self.cluster
            .timed(what, async {
                let tx = client.transaction().await.map_err(query(what))?;
                let policy = tx
                    .prepare(
                        "INSERT INTO strictmx_tlsrpt_policies \
                         (node, day, report_domain, policy_key, policy, successes, failures) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (day, report_domain, policy_key, node) DO UPDATE \
                         SET successes = EXCLUDED.successes, failures = EXCLUDED.failures",
                    )
                    .await
                    .map_err(query(what))?;
                let detail = tx
                    .prepare(
                        "INSERT INTO strictmx_tlsrpt_details \
                         (node, day, report_domain, policy_key, detail_key, detail, count) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (day, report_domain, policy_key, detail_key, node) \
                         DO UPDATE SET count = EXCLUDED.count",
                    )
                    .await
                    .map_err(query(what))?;
                for row in rows {
                    let day = day_param(row.day);
                    let policy_key = key(&row.policy);
                    let (ok, failed) = (signed(row.successes), signed(row.failures));
                    tx.execute(
                        &policy,
                        &[
                            &node,
                            &day,
                            &row.report_domain,
                            &policy_key,
                            &row.policy,
                            &ok,
                            &failed,
                        ],
                    )
                    .await
                    .map_err(query(what))?;
                    for d in &row.details {
                        let count = signed(d.count);
                        tx.execute(
                            &detail,
                            &[
                                &node,
                                &day,
                                &row.report_domain,
                                &policy_key,
                                &key(&d.detail),
                                &d.detail,
                                &count,
                            ],
                        )
                        .await
                        .map_err(query(what))?;
                    }
                }
                tx.commit().await.map_err(query(what))
            })
            .await
    }

    /// Every node's counters of `day`, summed.
    async fn read_day(&self, day: u32) -> Result<Vec<TlsrptCounters>, ClusterError> {
        let what = "reading TLSRPT counters";
        let client = self.cluster.client(what).await?;
        let day = day_param(day);
        let (policies, details) = self
            .cluster
            .timed(what, async {
                let policies = client
                    .query(
                        "SELECT node, report_domain, policy_key, policy, successes, failures \
                         FROM strictmx_tlsrpt_policies WHERE day = $1",
                        &[&day],
                    )
                    .await
                    .map_err(query(what))?;
                let details = client
                    .query(
                        "SELECT node, report_domain, policy_key, detail, count \
                         FROM strictmx_tlsrpt_details WHERE day = $1",
                        &[&day],
                    )
                    .await
                    .map_err(query(what))?;
                Ok((policies, details))
            })
            .await?;
        let mut by_key: BTreeMap<(String, String, String), TlsrptCounters> = BTreeMap::new();
        for row in &policies {
            let id: (String, String, String) = (row.get(0), row.get(1), row.get(2));
            by_key.insert(
                id.clone(),
                TlsrptCounters {
                    day: u32::try_from(day).unwrap_or(0),
                    report_domain: id.1,
                    policy: row.get(3),
                    successes: unsigned(row.get(4)),
                    failures: unsigned(row.get(5)),
                    details: Vec::new(),
                },
            );
        }
        for row in &details {
            let id: (String, String, String) = (row.get(0), row.get(1), row.get(2));
            if let Some(counters) = by_key.get_mut(&id) {
                counters.details.push(TlsrptDetailCount {
                    detail: row.get(3),
                    count: unsigned(row.get(4)),
                });
            }
        }
        Ok(merge_counters(by_key.into_values().collect()))
    }

    async fn read_days(&self) -> Result<Vec<u32>, ClusterError> {
        let what = "listing TLSRPT days";
        let client = self.cluster.client(what).await?;
        let rows = self
            .cluster
            .timed(what, async {
                client
                    .query(
                        "SELECT DISTINCT day FROM strictmx_tlsrpt_policies ORDER BY day",
                        &[],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| u32::try_from(row.get::<_, i32>(0)).ok())
            .collect())
    }

    async fn is_sent(&self, day: u32, domain: &str) -> Result<bool, ClusterError> {
        let what = "reading TLSRPT sent marks";
        let client = self.cluster.client(what).await?;
        let day = day_param(day);
        let row = self
            .cluster
            .timed(what, async {
                client
                    .query_opt(
                        "SELECT node FROM strictmx_tlsrpt_sent \
                         WHERE day = $1 AND report_domain = $2",
                        &[&day, &domain],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(row.is_some())
    }

    async fn claim_sent(&self, day: u32, domain: &str, at: u64) -> Result<bool, ClusterError> {
        let what = "marking a TLSRPT report sent";
        let client = self.cluster.client(what).await?;
        let (day, at) = (day_param(day), signed(at));
        let node = self.cluster.node();
        let inserted = self
            .cluster
            .timed(what, async {
                client
                    .execute(
                        "INSERT INTO strictmx_tlsrpt_sent (day, report_domain, node, sent_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&day, &domain, &node, &at],
                    )
                    .await
                    .map_err(query(what))
            })
            .await?;
        Ok(inserted == 1)
    }

    async fn delete_before(&self, before: u32) -> Result<usize, ClusterError> {
        let what = "pruning TLSRPT counters";
        let client = self.cluster.client(what).await?;
        let before = day_param(before);
        let removed = self
            .cluster
            .timed(what, async {
                let removed = client
                    .execute(
                        "DELETE FROM strictmx_tlsrpt_policies WHERE day < $1",
                        &[&before],
                    )
                    .await
                    .map_err(query(what))?;
                for table in ["strictmx_tlsrpt_details", "strictmx_tlsrpt_sent"] {
                    client
                        .execute(&format!("DELETE FROM {table} WHERE day < $1"), &[&before])
                        .await
                        .map_err(query(what))?;
                }
                Ok(removed)
            })
            .await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}

impl CounterStore for SharedCounters {
    fn days(&self) -> BoxFuture<'_, Result<Vec<u32>, TlsrptError>> {
        Box::pin(async move {
            // This node's latest counts are part of what is reported.
            self.sync()
                .await
                .map_err(shared("writing this node's counters"))?;
            self.read_days()
                .await
                .map_err(shared("listing counter days"))
        })
    }

    fn day(&self, day: u32) -> BoxFuture<'_, Result<Vec<TlsrptCounters>, TlsrptError>> {
        Box::pin(async move {
            self.sync()
                .await
                .map_err(shared("writing this node's counters"))?;
            self.read_day(day)
                .await
                .map_err(shared("reading a day's counters"))
        })
    }

    fn sent<'a>(&'a self, day: u32, domain: &'a str) -> BoxFuture<'a, Result<bool, TlsrptError>> {
        Box::pin(async move {
            self.is_sent(day, domain)
                .await
                .map_err(shared("reading sent marks"))
        })
    }

    fn mark_sent<'a>(
        &'a self,
        day: u32,
        domain: &'a str,
        at_secs: u64,
    ) -> BoxFuture<'a, Result<bool, TlsrptError>> {
        Box::pin(async move {
            self.claim_sent(day, domain, at_secs)
                .await
                .map_err(shared("marking a report sent"))
        })
    }

    fn prune(&self, before_day: u32) -> BoxFuture<'_, Result<usize, TlsrptError>> {
        Box::pin(async move {
            if let Err(error) = self.spool.tlsrpt_prune(before_day).await {
                tracing::warn!(error = %ErrorChain(&error), "local TLSRPT counters not pruned");
            }
            self.delete_before(before_day)
                .await
                .map_err(shared("pruning counters"))
        })
    }
}

/// The node's cluster task: every `sync_interval` a heartbeat (with the rules check), this
/// node's new audit records, this node's TLSRPT totals, and, for the holder of the reporter lease, the reports of closed days
/// once `report_delay` after midnight UTC has passed. Runs until `shutdown`.
pub async fn run(
    cluster: Cluster,
    counters: Option<(SharedCounters, Reporter)>,
    audit: Option<SharedAudit>,
    shutdown: CancellationToken,
) {
    let settings = cluster.settings().clone();
    let mut reporter = false;
    // The last closed day this node sent (or found sent) everything for.
    let mut done_through: Option<u32> = None;
    loop {
        let up = cluster.beat().await;
        if up
            && let Some(audit) = &audit
            && let Err(error) = audit.sync().await
        {
            tracing::warn!(error = %ErrorChain(&error), "audit records not added to the cluster database; added later");
        }
        if up && let Some((counters, sender)) = &counters {
            if let Err(error) = counters.sync().await {
                tracing::warn!(error = %ErrorChain(&error), "TLSRPT counters not written to the cluster database; kept locally");
            }
            let holds = cluster
                .claim(REPORTER_LEASE, settings.lease_ttl)
                .await
                .unwrap_or(false);
            if holds != reporter {
                reporter = holds;
                ::metrics::gauge!("strictmx_cluster_tlsrpt_reporter")
                    .set(f64::from(u8::from(holds)));
                match holds {
                    true => tracing::info!("this node sends the cluster's TLSRPT reports"),
                    false => tracing::info!("another node sends the cluster's TLSRPT reports"),
                }
                done_through = None;
            }
            let now = SystemTime::now();
            let closed = Day::of(now).previous();
            let due = closed.closes_at() + settings.report_delay <= now;
            if holds && due && done_through.is_none_or(|d| d < closed.0) {
                match sender.send_closed_days(now).await {
                    Ok(()) => done_through = Some(closed.0),
                    Err(error) => {
                        tracing::warn!(error = %ErrorChain(&error), "TLSRPT reports not sent yet; trying again")
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(settings.sync_interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
