//! The MTA-STS policy cache (RFC 8461 §5.1) kept in the spool so that policies survive a
//! restart: per policy domain, the policy text as fetched, the TXT id it was fetched under and
//! when it was fetched and expires. Parsing the text, deciding when to fetch and refreshing are
//! left to `strictmx-resolve`.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::error::SpoolError;
use crate::spool::Spool;
use crate::writer::OpError;

/// policy domain → (policy text, id, fetched at, expires at); times in Unix seconds.
const STS_POLICIES: TableDefinition<&str, (&str, &str, u64, u64)> =
    TableDefinition::new("sts_policies");

/// One cached MTA-STS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedStsPolicy {
    /// The policy domain, lowercase, without the trailing dot.
    pub domain: String,
    /// The body exactly as fetched.
    pub text: String,
    /// The `id` of the `_mta-sts` TXT record it was fetched under.
    pub id: String,
    /// Unix seconds.
    pub fetched_at: u64,
    /// Unix seconds: `fetched_at + max_age`.
    pub expires_at: u64,
}

fn abort(e: impl Into<redb::Error>) -> OpError {
    OpError::Abort(e.into())
}

fn read_fail(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::storage("reading the MTA-STS policy cache")(e.into())
}

fn cached(domain: &str, row: (&str, &str, u64, u64)) -> CachedStsPolicy {
    let (text, id, fetched_at, expires_at) = row;
    CachedStsPolicy {
        domain: domain.to_owned(),
        text: text.to_owned(),
        id: id.to_owned(),
        fetched_at,
        expires_at,
    }
}

impl Spool {
    /// Stores (or replaces) the cached policy of `policy.domain`, durably.
    pub async fn sts_cache_put(&self, policy: CachedStsPolicy) -> Result<(), SpoolError> {
        self.execute(move |t, _| {
            let mut table = t.txn.open_table(STS_POLICIES).map_err(abort)?;
            let row = (
                policy.text.as_str(),
                policy.id.as_str(),
                policy.fetched_at,
                policy.expires_at,
            );
            table.insert(policy.domain.as_str(), row).map_err(abort)?;
            Ok(())
        })
        .await
    }

    /// Forgets the cached policy of `domain`; returns whether there was one.
    pub async fn sts_cache_remove(&self, domain: &str) -> Result<bool, SpoolError> {
        let domain = domain.to_owned();
        self.execute(move |t, _| {
            let mut table = t.txn.open_table(STS_POLICIES).map_err(abort)?;
            let removed = table.remove(domain.as_str()).map_err(abort)?.is_some();
            Ok(removed)
        })
        .await
    }

    /// The cached policy of `domain`, expired or not.
    pub fn sts_cache_get(&self, domain: &str) -> Result<Option<CachedStsPolicy>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let table = match txn.open_table(STS_POLICIES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(read_fail(e)),
        };
        Ok(table
            .get(domain)
            .map_err(read_fail)?
            .map(|row| cached(domain, row.value())))
    }

    /// Every cached policy, by domain.
    pub fn sts_cache_all(&self) -> Result<Vec<CachedStsPolicy>, SpoolError> {
        let db = self.shared().database()?;
        let txn = db.begin_read().map_err(read_fail)?;
        let table = match txn.open_table(STS_POLICIES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_fail(e)),
        };
        let mut all = Vec::new();
        for entry in table.iter().map_err(read_fail)? {
            let (key, row) = entry.map_err(read_fail)?;
            all.push(cached(key.value(), row.value()));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Spool, SpoolSettings};

    use super::*;

    fn policy(domain: &str, id: &str) -> CachedStsPolicy {
        CachedStsPolicy {
            domain: domain.to_owned(),
            text: "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n".to_owned(),
            id: id.to_owned(),
            fetched_at: 1_700_000_000,
            expires_at: 1_700_086_400,
        }
    }

    #[tokio::test]
    async fn cached_policies_are_replaced_listed_removed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = SpoolSettings {
            data_dir: dir.path().to_owned(),
            ..SpoolSettings::default()
        };
        {
            let spool = Spool::open(&settings).expect("open");
            assert_eq!(spool.sts_cache_get("a.example").expect("read"), None);
            assert!(spool.sts_cache_all().expect("list").is_empty());
            spool
                .sts_cache_put(policy("a.example", "1"))
                .await
                .expect("put");
            spool
                .sts_cache_put(policy("a.example", "2"))
                .await
                .expect("put");
            spool
                .sts_cache_put(policy("b.example", "1"))
                .await
                .expect("put");
        }
        let spool = Spool::open(&settings).expect("reopen");
        assert_eq!(
            spool.sts_cache_get("a.example").expect("read"),
            Some(policy("a.example", "2"))
        );
        assert_eq!(spool.sts_cache_all().expect("list").len(), 2);
        assert!(spool.sts_cache_remove("b.example").await.expect("remove"));
        assert!(!spool.sts_cache_remove("b.example").await.expect("remove"));
        assert_eq!(spool.sts_cache_all().expect("list").len(), 1);
    }
}
