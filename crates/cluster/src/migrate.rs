//! Versioned schema migrations, in `migrations/`, applied in order in one transaction that
//! first takes a transaction-level advisory lock: nodes starting together wait for each other,
//! and each migration is applied once, recorded in `strictmx_migrations`.

use deadpool_postgres::Object;

use crate::db::query;
use crate::error::ClusterError;

/// (version, name, SQL), oldest first. A version once released is never edited.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "shared state",
        include_str!("../migrations/0001_shared_state.sql"),
    ),
    (
        2,
        "posture changes",
        include_str!("../migrations/0002_posture_changes.sql"),
    ),
    (
        3,
        "audit index",
        include_str!("../migrations/0003_audit.sql"),
    ),
];

/// The advisory lock key of migrations ("strictmx" in ASCII).
const LOCK: i64 = 0x7374_7269_6374_6d78;

/// Applies what is missing; true once the schema is at the newest known version.
pub(crate) async fn run(client: &mut Object, node: &str) -> Result<bool, ClusterError> {
    let what = "migrating";
    let tx = client.transaction().await.map_err(query(what))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(query(what))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS strictmx_migrations (\
             version integer PRIMARY KEY, name text NOT NULL, \
             applied_by text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(query(what))?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM strictmx_migrations", &[])
        .await
        .map_err(query(what))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(&found) = applied.iter().max()
        && found > known
    {
        return Err(ClusterError::SchemaTooNew { found, known });
    }
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(query(what))?;
        tx.execute(
            "INSERT INTO strictmx_migrations (version, name, applied_by) VALUES ($1, $2, $3)",
            &[&version, &name, &node],
        )
        .await
        .map_err(query(what))?;
        tracing::info!(version, name, "cluster database migrated");
    }
    tx.commit().await.map_err(query(what))?;
    Ok(true)
}
