//! Measures group commit: 10 concurrent submitters of 2 KB bodies for a few seconds, against a
//! spool in a temporary directory (or the directory given as the first argument), next to the
//! raw fdatasync rate of the same disk. `--fsyncs-per-sec N` pads every fdatasync to 1/N s,
//! to see what a slower disk would give. Run with
//! `cargo run -p strictmx-spool --example group_commit [-- --fsyncs-per-sec 1600] [DIR]`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redb::backends::FileBackend;
use redb::{BackendError, Builder, Database, DatabaseError, StorageBackend};
use strictmx_protocol::{MailParams, RcptParams};
use strictmx_spool::{
    ClientInfo, Envelope, EnvelopeRecipient, FileStore, MessageKind, Spool, SpoolSettings,
    StoreOpener,
};

/// The file backend with every fdatasync taking at least `floor`.
#[derive(Debug)]
struct SlowDisk {
    file: FileBackend,
    floor: Duration,
}

impl StorageBackend for SlowDisk {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "redb calls this on the spool's writer thread, never on a runtime worker"
    )]
    fn sync_data(&self) -> Result<(), io::Error> {
        let started = Instant::now();
        self.file.sync_data()?;
        if let Some(rest) = self.floor.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.file.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[derive(Debug)]
struct SlowDiskOpener {
    floor: Duration,
}

impl StoreOpener for SlowDiskOpener {
    fn open(&self, path: &Path) -> Result<Database, DatabaseError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Builder::new().create_with_backend(SlowDisk {
            file: FileBackend::new(file)?,
            floor: self.floor,
        })
    }
}

const SUBMITTERS: usize = 10;
const BODY_LEN: usize = 2048;
const RUN_FOR: Duration = Duration::from_secs(5);

fn envelope() -> Envelope {
    Envelope {
        mail_from: "bench@example.org".into(),
        params: MailParams::default(),
        recipients: vec![EnvelopeRecipient {
            address: "rcpt@example.net".into(),
            params: RcptParams::default(),
        }],
        received_at: SystemTime::now(),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "bench".into(),
            auth_user: None,
            tls: None,
        },
        kind: MessageKind::Normal,
        require_tls: None,
    }
}

/// fdatasyncs per second for 4 KiB overwrites of one file, the disk's ceiling for one
/// commit per message.
fn fsync_rate(dir: &Path) -> std::io::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let block = [0u8; 4096];
    let started = Instant::now();
    let mut syncs = 0u32;
    while started.elapsed() < Duration::from_secs(1) {
        file.write_all(&block)?;
        file.sync_data()?;
        syncs += 1;
    }
    let rate = f64::from(syncs) / started.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut floor = None;
    if args.peek().map(String::as_str) == Some("--fsyncs-per-sec") {
        args.next();
        let rate: f64 = args.next().unwrap_or_default().parse()?;
        floor = Some(Duration::from_secs_f64(1.0 / rate));
    }
    let given = args.next().map(PathBuf::from);
    let dir = given.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("strictmx-spool-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    let fsyncs = fsync_rate(&dir)?;
    let opener: Arc<dyn StoreOpener> = match floor {
        Some(floor) => Arc::new(SlowDiskOpener { floor }),
        None => Arc::new(FileStore::default()),
    };
    let settings = SpoolSettings {
        data_dir: dir.join("spool"),
        ..SpoolSettings::default()
    };
    let spool = Spool::open_with(&settings, opener)?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SUBMITTERS {
        let spool = spool.clone();
        tasks.spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < RUN_FOR {
                spool.submit(envelope(), vec![b'x'; BODY_LEN]).await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut submitted = 0;
    while let Some(done) = tasks.join_next().await {
        submitted += done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = spool.stats();
    let mean_latency =
        stats.total_commit_latency.as_secs_f64() * 1000.0 / stats.commits.max(1) as f64;
    println!("disk: {fsyncs:.0} fdatasync/s (4 KiB overwrite)");
    if let Some(floor) = floor {
        println!(
            "simulated: every spool fdatasync padded to {} us",
            floor.as_micros()
        );
    }
    println!(
        "spool: {submitted} submissions in {elapsed:.1} s = {:.0}/s with {SUBMITTERS} submitters, {BODY_LEN} B bodies",
        submitted as f64 / elapsed
    );
    println!(
        "commits: {} ({:.1} messages per commit), mean commit latency {mean_latency:.2} ms",
        stats.commits,
        stats.committed_operations as f64 / stats.commits.max(1) as f64
    );
    drop(spool);
    if given.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
