//! The connection pool, the timeouts every query runs under, migrations on first use, and the
//! database's health as metrics: `strictmx_cluster_database_up` (1 after a query succeeded, 0
//! after one failed) and `strictmx_cluster_database_errors_total` by operation.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::error::ClusterError;
use crate::migrate;
use crate::settings::{ClusterSettings, DatabaseSettings};

/// A node's handle on the shared database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    node: String,
    hostname: String,
    settings: ClusterSettings,
    /// Set once this process saw the schema at the version it knows.
    migrated: AtomicBool,
    /// Held while migrating, so that one task of this process migrates.
    migrating: tokio::sync::Mutex<()>,
    rules_hash: Mutex<String>,
}

impl Cluster {
    /// The pool for `database`; connects lazily, so a database that is down now does not stop
    /// the node (migrations run on the first query that reaches it).
    pub fn new(
        database: &DatabaseSettings,
        settings: ClusterSettings,
        node: String,
        hostname: String,
    ) -> Result<Cluster, ClusterError> {
        let mut config: tokio_postgres::Config = database
            .url
            .parse()
            .map_err(|source| ClusterError::Url { source })?;
        config
            .connect_timeout(settings.connect_timeout)
            .application_name("strictmx");
        if let Some(password) = &database.password {
            config.password(password.expose());
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let wait = Some(settings.query_timeout);
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(wait)
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(wait)
            .build()
            .map_err(|source| ClusterError::Build { source })?;
        ::metrics::gauge!("strictmx_cluster_database_up").set(0.0);
        Ok(Cluster {
            inner: Arc::new(Inner {
                pool,
                node,
                hostname,
                settings,
                migrated: AtomicBool::new(false),
                migrating: tokio::sync::Mutex::new(()),
                rules_hash: Mutex::new(String::new()),
            }),
        })
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub(crate) fn hostname(&self) -> &str {
        &self.inner.hostname
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.inner.settings
    }

    /// The hash of this node's effective rules, published with its heartbeat.
    pub fn set_rules_hash(&self, hash: String) {
        *self
            .inner
            .rules_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = hash;
    }

    pub(crate) fn rules_hash(&self) -> String {
        self.inner
            .rules_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A pooled connection to a database migrated to this version's schema.
    pub(crate) async fn client(&self, what: &'static str) -> Result<Object, ClusterError> {
        let client = match self.inner.pool.get().await {
            Ok(client) => client,
            Err(source) => return Err(self.failed(ClusterError::Connect { what, source }, what)),
        };
        if !self.inner.migrated.load(Ordering::Acquire) {
            let _migrating = self.inner.migrating.lock().await;
            if !self.inner.migrated.load(Ordering::Acquire) {
                let mut client = client;
                let migrated = self
                    .timed("migrating", migrate::run(&mut client, &self.inner.node))
                    .await?;
                self.inner.migrated.store(migrated, Ordering::Release);
                return Ok(client);
            }
        }
        Ok(client)
    }

    /// `query` within `query_timeout`, its failure counted under `what`.
    pub(crate) async fn timed<T>(
        &self,
        what: &'static str,
        query: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        let after = self.inner.settings.query_timeout;
        let result = match tokio::time::timeout(after, query).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Timeout { what, after }),
        };
        match result {
            Ok(value) => {
                ::metrics::gauge!("strictmx_cluster_database_up").set(1.0);
                Ok(value)
            }
            Err(error) => Err(self.failed(error, what)),
        }
    }

    fn failed(&self, error: ClusterError, what: &'static str) -> ClusterError {
        ::metrics::gauge!("strictmx_cluster_database_up").set(0.0);
        ::metrics::counter!("strictmx_cluster_database_errors_total", "op" => what).increment(1);
        if matches!(error, ClusterError::SchemaTooNew { .. }) {
            tracing::error!(error = %error, "cluster database unusable");
        }
        error
    }
}

/// A query error as the crate's error, for `what`.
pub(crate) fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> ClusterError {
    move |source| ClusterError::Query { what, source }
}
