//! The crate's one error type. Every variant means the shared state could not be used just
//! now: callers fall back to local state and try again later.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot parse cluster.database")]
    Url {
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot set up the database connection pool")]
    Build {
        #[source]
        source: deadpool_postgres::BuildError,
    },
    #[error("no database connection while {what}")]
    Connect {
        what: &'static str,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("database query failed while {what}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("no answer from the database within {after:?} while {what}")]
    Timeout { what: &'static str, after: Duration },
    /// Another node, newer than this one, migrated the database further.
    #[error("the database schema is at version {found}; this strictmx knows up to {known}")]
    SchemaTooNew { found: i32, known: i32 },
}
