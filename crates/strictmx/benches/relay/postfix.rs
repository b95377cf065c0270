//! Postfix as the yardstick (`--postfix`): a private Postfix instance (its own configuration,
//! queue and log in a temporary directory, nothing of the system's own mail setup used) set up
//! as a durable relay to the same sinks, fed by the same generator in the same run, so that
//! each figure can be quoted as a ratio measured on one machine at one time.
//!
//! Postfix is Debian's package (`crates/strictmx/benches/install-postfix` installs it without
//! configuring a system mailer); the instance needs root, as Postfix's master does. Its CPU
//! time is that of the master and every daemon it runs: the live ones read from `/proc`, the
//! ones that exited from the master's own count of its reaped children.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use strictmx_test_support::relay::TestDir;

use crate::probe;

/// The services of the instance: the standard set, none chrooted, and an SMTP listener on
/// `{listen}`. `tlsproxy` lets the SMTP client keep TLS connections open for reuse
/// (`smtp_tls_connection_reuse`), as strictmx does; without it Postfix makes a TLS handshake
/// per message.
const MASTER_CF: &str = "\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
tlsproxy unix - - n - 0 tlsproxy
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
";

/// A running private Postfix instance.
pub struct Postfix {
    /// Where it accepts SMTP.
    pub smtp: SocketAddr,
    config: PathBuf,
    master: u32,
    stopped: bool,
    /// Removed after the instance stopped (fields drop in order).
    dir: TestDir,
}

impl Postfix {
    /// Starts an instance that relays mail for each `(domain, next hop)` to that next hop,
    /// with opportunistic STARTTLS on delivery when `tls`, and waits until it accepts SMTP.
    pub async fn start(routes: &[(String, SocketAddr)], tls: bool) -> anyhow::Result<Postfix> {
        anyhow::ensure!(
            Path::new("/usr/sbin/postfix").exists(),
            "--postfix needs Postfix: run crates/strictmx/benches/install-postfix"
        );
        let dir = TestDir::new("postfix")?;
        let root = dir.path().to_owned();
        // The daemons run as the postfix user and reach the data directory by its path.
        run("chmod", &["0755".as_ref(), root.as_os_str()])?;
        let config = root.join("etc");
        let data = root.join("data");
        std::fs::create_dir_all(&config)?;
        std::fs::create_dir_all(root.join("spool"))?;
        std::fs::create_dir_all(&data)?;
        run("chown", &["postfix".as_ref(), data.as_os_str()])?;
        let smtp = probe::free_port()?;
        let transport: Vec<String> = routes
            .iter()
            .map(|(domain, hop)| format!("{domain}=smtp:[{}]:{}", hop.ip(), hop.port()))
            .collect();
        let root_text = root.display();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {root_text}/spool\n\
             data_directory = {root_text}/data\n\
             maillog_file_prefixes = {root_text}\n\
             maillog_file = {root_text}/maillog\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = postfix.bench.invalid\n\
             mydestination =\n\
             alias_maps =\n\
             alias_database =\n\
             local_recipient_maps =\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             smtpd_peername_lookup = no\n\
             smtp_dns_support_level = disabled\n\
             transport_maps = inline:{{{}}}\n\
             smtp_tls_security_level = {}\n\
             smtp_tls_connection_reuse = yes\n\
             smtp_tls_session_cache_database = btree:{root_text}/data/smtp_scache\n",
            transport.join(", "),
            if tls { "may" } else { "none" },
        );
        std::fs::write(config.join("main.cf"), main_cf)?;
        std::fs::write(
            config.join("master.cf"),
            MASTER_CF.replace("{listen}", &smtp.to_string()),
        )?;
        run(
            "postfix",
            &["-c".as_ref(), config.as_os_str(), "start".as_ref()],
        )
        .with_context(|| format!("Postfix did not start; see {root_text}/maillog"))?;
        let master = read_master_pid(&root.join("spool/pid/master.pid")).await?;
        let instance = Postfix {
            smtp,
            config,
            master,
            stopped: false,
            dir,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(smtp).await.is_err() {
            anyhow::ensure!(Instant::now() < until, "Postfix does not listen on {smtp}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(instance)
    }

    /// CPU time of the instance so far, in clock ticks: the master's own and its reaped
    /// children's, and every live daemon's.
    pub fn cpu_ticks(&self) -> u64 {
        let master = self.master.to_string();
        let mut ticks = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // After the command name in parentheses: ppid is field 4, utime to cstime 14-17
            // (proc(5)).
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            if pid == master || fields.get(1) == Some(&master.as_str()) {
                ticks += fields
                    .iter()
                    .skip(11)
                    .take(4)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        ticks
    }

    /// Stops the instance, waits until its master has exited, and returns the warnings and
    /// errors in its log (a misconfigured yardstick measures nothing).
    pub async fn stop(mut self) -> anyhow::Result<Vec<String>> {
        self.stopped = true;
        run(
            "postfix",
            &["-c".as_ref(), self.config.as_os_str(), "stop".as_ref()],
        )?;
        let until = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", self.master)).exists() {
            anyhow::ensure!(Instant::now() < until, "Postfix did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default();
        Ok(log
            .lines()
            .filter(|l| {
                ["warning:", "error:", "fatal:", "panic:"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            // tlsproxy says at start that it will not serve TLS to SMTP clients: none is asked
            // of it here.
            .filter(|l| !l.contains("TLS server role is disabled"))
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Postfix {
    /// A run that ended in an error still takes its instance down.
    fn drop(&mut self) {
        if !self.stopped {
            let _ = Command::new("postfix")
                .arg("-c")
                .arg(&self.config)
                .arg("abort")
                .status();
        }
    }
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let status = Command::new(program).args(args).status()?;
    anyhow::ensure!(status.success(), "{program} failed: {status}");
    Ok(())
}

/// The master writes its pid file once it runs.
async fn read_master_pid(path: &Path) -> anyhow::Result<u32> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(pid);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "no Postfix master pid in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many warnings a log had, and the first.
pub fn describe_warnings(warnings: &[String]) -> String {
    match warnings.first() {
        None => "Postfix warnings logged 0".to_owned(),
        Some(first) => format!(
            "Postfix warnings logged {} (first: {first})",
            warnings.len()
        ),
    }
}

/// Clock ticks to milliseconds.
pub fn ticks_to_ms(ticks: u64) -> f64 {
    ticks as f64 * 1e3 / probe::clock_ticks_per_sec()
}
