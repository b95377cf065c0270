//! Runs the real `strictmx` binary for end-to-end tests: writes its config into a fresh directory,
//! starts `serve`, reads its JSON log, and can SIGTERM or SIGKILL it and start it again.
//!
//! The listener binds port 0; the test learns the address from the `listening` log record.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> anyhow::Result<TestDir> {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("strictmx-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TestDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `strictmx serve`.
#[derive(Debug)]
pub struct Relay {
    bin: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<Value>>>,
    /// The first listener's address.
    pub smtp: SocketAddr,
    /// Every listener's address, in the order of the config.
    pub listeners: Vec<SocketAddr>,
    /// Extra environment for the next start (see [`Relay::set_env`]).
    env: Vec<(String, String)>,
    /// Keep only warnings and errors from now on (see [`Relay::keep_warnings_only`]).
    warnings_only: Arc<AtomicBool>,
    /// Extra `serve` arguments for the next start (see [`Relay::set_serve_args`]).
    serve_args: Vec<String>,
}

impl Relay {
    /// Writes `dir/strictmx.toml` as `[server]`, `[log]` and `[control]` tables pointing into
    /// `dir`, followed by `rest` (listeners, routes, retry settings...), and starts the server.
    /// Without a `[[listener]]` in `rest`, the embedded default listener is replaced by one on
    /// 127.0.0.1 port 0. A `[log]` table in `rest` replaces the default one; it must keep the JSON
    /// format and at least the info level, which the harness reads.
    pub async fn start(bin: &Path, dir: &Path, rest: &str) -> anyhow::Result<Relay> {
        Relay::start_with_env(bin, dir, rest, &[]).await
    }

    /// [`Relay::start`] with extra environment for the server (kept for restarts until
    /// [`Relay::set_env`] changes it).
    pub async fn start_with_env(
        bin: &Path,
        dir: &Path,
        rest: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Relay> {
        let listener = if rest.contains("[[listener]]") {
            ""
        } else {
            "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"relay\"\n\n"
        };
        // Tests never send traffic off loopback: without a `[dns]` table of the test's own, DNS
        // (the startup DNSSEC self-test included) goes to a loopback port where nothing listens,
        // not to the system's resolver.
        let dns = if rest.contains("[dns]") {
            ""
        } else {
            "[dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout = \"1s\"\nattempts = 1\n\n"
        };
        let log = if rest.contains("[log]") {
            ""
        } else {
            "[log]\nformat = \"json\"\nlevel = \"info,strictmx_delivery=debug\"\n\n"
        };
        let config = format!(
            "[server]\nhostname = \"relay.test\"\ndata_dir = \"{d}/data\"\nshutdown_grace = \"5s\"\n\n\
             {log}{dns}[control]\nsocket = \"{d}/control.sock\"\n\n{listener}{rest}\n",
            d = dir.display()
        );
        let config_path = dir.join("strictmx.toml");
        std::fs::write(&config_path, config)?;
        let mut relay = Relay {
            bin: bin.to_path_buf(),
            config_path,
            child: None,
            logs: Arc::default(),
            smtp: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: Vec::new(),
            env: Vec::new(),
            warnings_only: Arc::default(),
            serve_args: Vec::new(),
        };
        relay.set_env(env);
        relay.spawn().await?;
        Ok(relay)
    }

    /// Starts the server again on the same config and data (after `kill9` or `terminate`).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn().await
    }

    /// Sets the environment of the next (re)start to exactly `env` (plus the inherited one), e.g.
    /// libfaketime's variables to run the server on another day.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Sets the extra arguments of the next (re)start's `strictmx serve`, e.g. `--drain`.
    pub fn set_serve_args(&mut self, args: &[&str]) {
        self.serve_args = args.iter().map(|a| (*a).to_owned()).collect();
    }

    /// Waits for the server to exit on its own (after `--drain`); returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                bail!("strictmx did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.serve_args)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        self.logs = logs.clone();
        self.warnings_only.store(false, Ordering::Relaxed);
        let warnings_only = self.warnings_only.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if warnings_only.load(Ordering::Relaxed)
                    && !line.contains("\"level\":\"WARN\"")
                    && !line.contains("\"level\":\"ERROR\"")
                {
                    continue;
                }
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "unparsed": true }));
                logs.lock().expect("log lock poisoned").push(value);
            }
        });
        self.child = Some(child);
        let serving = self
            .wait_log(Duration::from_secs(30), |v| {
                v["message"] == "strictmx is serving"
            })
            .await
            .or_else(|e| {
                let tail: Vec<String> = self
                    .logs()
                    .iter()
                    .rev()
                    .take(10)
                    .map(|v| v.to_string())
                    .collect();
                bail!("{e}; last log lines: {tail:#?}")
            });
        serving?;
        self.listeners = self
            .logs()
            .iter()
            .filter(|v| v["message"] == "listening")
            .filter_map(|v| v["address"].as_str().and_then(|a| a.parse().ok()))
            .collect();
        self.smtp = *self
            .listeners
            .first()
            .context("the server logged no listening address")?;
        Ok(())
    }

    /// From now until the next (re)start, drop log records below `warn` unread: a benchmark
    /// that logs two records per message should not spend the load generator's CPU on parsing
    /// them, nor its memory on keeping them.
    pub fn keep_warnings_only(&self) {
        self.warnings_only.store(true, Ordering::Relaxed);
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Every log record so far (JSON objects; event fields at the top level).
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("log lock poisoned").clone()
    }

    /// Waits for a log record matching `pred`.
    pub async fn wait_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs().into_iter().find(|v| pred(v)) {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!("no matching log record within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for the process to exit; returns its exit status code.
    pub async fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                child.kill()?;
                bail!("strictmx did not exit within 30s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `strictmx <args> --config <this config>` and returns its output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()?)
    }

    /// Like [`Relay::cli`], with `input` on standard input.
    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> anyhow::Result<Output> {
        use std::io::Write as _;
        let mut child = Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?
            .write_all(input)?;
        Ok(child.wait_with_output()?)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
