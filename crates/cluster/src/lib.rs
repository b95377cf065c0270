//! strictmx-cluster: what several strictmx nodes share, in PostgreSQL. Each node keeps its own
//! spool and serves from it; the database holds what must agree across nodes: the MTA-STS
//! policy cache (`sts`), each node's TLSRPT totals and the reports' sent marks (`tlsrpt`),
//! leases that let one node do a job for all (`lease`), the destinations' policy weakenings
//! (`postures`), every node's audit records (`audit`), and each node's heartbeat with the
//! hash of its rules (`nodes`). Schema changes are versioned migrations applied under an
//! advisory lock (`migrate`). When the database cannot be reached every caller goes on with
//! local state; the pool and the health figures are `db`'s.
#![forbid(unsafe_code)]

mod audit;
mod db;
mod error;
mod lease;
mod migrate;
mod nodes;
mod postures;
mod settings;
mod sts;
mod tlsrpt;

pub use audit::SharedAudit;
pub use db::Cluster;
pub use error::ClusterError;
pub use migrate::MIGRATIONS;
pub use nodes::rules_hash;
pub use postures::SharedPostures;
pub use settings::{ClusterSettings, DatabaseSettings, Secret, check_database_url};
pub use sts::SharedPolicies;
pub use tlsrpt::{SharedCounters, run};
