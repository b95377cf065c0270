//! The spool's settings type; `strictmx-config` builds it from TOML, this crate only reads it.

use std::path::PathBuf;

/// Where the spool lives and how much work one commit may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The directory holding `spool.redb`; created on open if missing.
    pub data_dir: PathBuf,
    /// The most operations the writer puts into one write transaction (one fdatasync).
    /// Zero is treated as one.
    pub commit_batch_max: usize,
    /// Bytes of database pages kept in memory (redb's page cache). Memory use does not grow with
    /// the queue beyond this.
    pub cache_size: usize,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            data_dir: PathBuf::from("./data"),
            commit_batch_max: 256,
            cache_size: 32 << 20,
        }
    }
}
