//! The cluster end to end (docs/cluster.md): three real strictmx nodes, each with its own spool,
//! sharing one real PostgreSQL, delivering into the lab. Ignored by plain `cargo test`:
//! `tests/cluster/run` starts a private PostgreSQL and runs these with `--ignored`, passing
//! where it is in `STRICTMX_CLUSTER_PG_*`.
//!
//! The outage test also reads, through one node's `policy changes`, a weakening another
//! node recorded in the shared history, and through one node's `audit search` and `audit
//! show` (by queue id and by Message-ID) the records of a message another node delivered,
//! before, during and after the outage.
//!
//! Like `tlsrpt.rs`, the traffic runs with the nodes' clocks one day back (libfaketime), so that
//! its day is over when the nodes run on the real clock again and send the reports.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use strictmx_delivery::watch::PostureChange;
use strictmx_policy::posture::{Posture, Weakening};
use strictmx_test_support::lab::{Lab, unique_rcpt, wait_for};
use strictmx_test_support::relay::{Relay, TestDir};

use crate::tlsrpt::{LIBFAKETIME, config as tlsrpt_config, gunzip_json, summary};
use crate::{bin, submit};

const WAIT: Duration = Duration::from_secs(60);
const YESTERDAY: [(&str, &str); 3] = [
    ("LD_PRELOAD", LIBFAKETIME),
    ("FAKETIME", "-1d"),
    ("DONT_FAKE_MONOTONIC", "1"),
];

/// The traffic of the report test, in order: node `i % 3` gets message `i`. The first two go
/// to one MTA-STS domain through two nodes, so the second node finds the first one's policy.
const TRAFFIC: [(&str, &str); 6] = [
    ("sts-testing.test", "delivered"),
    ("sts-testing.test", "delivered"),
    ("dane-ok.test", "delivered"),
    ("dane-mismatch.test", "deferred"),
    ("sts-testing.test", "delivered"),
    ("dane-ok.test", "delivered"),
];

/// The domains of `TRAFFIC` whose `_smtp._tls` record has an `https:` rua.
const HTTPS_DOMAINS: [&str; 3] = ["dane-mismatch.test", "dane-ok.test", "sts-testing.test"];

/// The PostgreSQL server `tests/cluster/run` started.
struct Pg {
    bin: PathBuf,
    dir: PathBuf,
    port: String,
    password_file: PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} unset: run tests/cluster/run"))
}

impl Pg {
    fn from_env() -> Pg {
        Pg {
            bin: env("STRICTMX_CLUSTER_PG_BIN").into(),
            dir: env("STRICTMX_CLUSTER_PG_DIR").into(),
            port: env("STRICTMX_CLUSTER_PG_PORT"),
            password_file: env("STRICTMX_CLUSTER_PG_PASSWORD_FILE").into(),
        }
    }

    /// `psql -At -c sql` on `db` as the administrator; its output, trimmed.
    fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// [`Pg::sql`], the error text on failure.
    fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p", &self.port, "-U", "postgres", "-At", "-d", db, "-c", sql,
            ])
            .output()
            .expect("psql runs");
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// A new database for one test, owned by the nodes' role.
    fn create_db(&self, name: &str) -> String {
        let db = format!("{name}_{}", std::process::id());
        self.sql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
        self.sql("postgres", &format!("CREATE DATABASE {db} OWNER strictmx"));
        db
    }

    fn ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-m", "fast", "-l"])
            .arg(self.dir.join("server.log"));
        if action == "start" {
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {}",
                self.port,
                self.dir.display()
            );
            command.args(["-o", &options]);
        }
        let status = command.arg(action).status().expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl {action}");
    }

    /// The `[cluster]` table of a node on `db`, with quick syncs and leases for the test.
    fn cluster_config(&self, db: &str) -> String {
        format!(
            "\n[cluster]\ndatabase = \"postgres://strictmx@127.0.0.1:{port}/{db}\"\n\
             password_file = \"{file}\"\npool_size = 2\nconnect_timeout = \"2s\"\n\
             query_timeout = \"2s\"\nsync_interval = \"1s\"\nlease_ttl = \"3s\"\n\
             report_delay = \"0s\"\n",
            port = self.port,
            file = self.password_file.display(),
        )
    }

    /// Sessions counted for `domain` over every node; 0 before the nodes created the tables.
    fn sessions(&self, db: &str, domain: &str) -> u64 {
        self.try_sql(
            db,
            &format!(
                "SELECT coalesce(sum(successes + failures), 0) FROM strictmx_tlsrpt_policies \
                 WHERE report_domain = '{domain}'"
            ),
        )
        .map_or(0, |n| n.parse().expect("a number"))
    }
}

fn node_id(dir: &TestDir) -> String {
    std::fs::read_to_string(dir.path().join("data/node-id"))
        .expect("the node id")
        .trim()
        .to_owned()
}

fn count_logs(relay: &Relay, pred: impl Fn(&Value) -> bool) -> usize {
    relay.logs().iter().filter(|v| pred(v)).count()
}

/// Waits until `relay` has logged `n` delivery attempts to `domain` with `outcome`.
async fn attempts(relay: &Relay, domain: &str, outcome: &str, n: usize) {
    let is = |v: &Value| {
        v["message"] == "delivery attempt" && v["domain"] == domain && v["outcome"] == outcome
    };
    wait_for(WAIT, || Ok((count_logs(relay, is) >= n).then_some(())))
        .await
        .unwrap_or_else(|e| panic!("{domain} {outcome} x{n}: {e}"));
}

/// Sends `TRAFFIC` through `nodes` round robin, one message at a time. Two messages to one
/// domain are kept apart by more than the time a node keeps a connection open for the next
/// job, so that each makes a session of its own on one node as on three (TLSRPT counts
/// sessions).
async fn send_traffic(nodes: &[&Relay]) {
    let mut sent = vec![Vec::<&str>::new(); nodes.len()];
    let mut last: Vec<(&str, std::time::Instant)> = Vec::new();
    for (i, (domain, outcome)) in TRAFFIC.into_iter().enumerate() {
        if let Some((_, at)) = last.iter().find(|(d, _)| *d == domain) {
            let apart = Duration::from_secs(6);
            tokio::time::sleep(apart.saturating_sub(at.elapsed())).await;
        }
        let node = i % nodes.len();
        submit(nodes[node], &unique_rcpt(domain)).await;
        sent[node].push(domain);
        let n = sent[node].iter().filter(|d| **d == domain).count();
        attempts(nodes[node], domain, outcome, n).await;
        last.retain(|(d, _)| *d != domain);
        last.push((domain, std::time::Instant::now()));
    }
}

fn sts_requests(lab: &Lab, host: &str, since: f64) -> usize {
    lab.sts_requests()
        .expect("policy host records")
        .iter()
        .filter(|r| r.host == host && r.time >= since)
        .count()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Reports by report domain: (domain, (policy type, successes, failures, result types)).
type Reports = Vec<(String, (String, u64, u64, Vec<String>))>;

/// The https reports of organisation `submitter`, by report domain: (domain, summary).
fn https_reports(lab: &Lab, submitter: &str) -> Reports {
    let mut found: Vec<_> = lab
        .tlsrpt_https_reports()
        .expect("collector records")
        .into_iter()
        .filter_map(|request| {
            let report = gunzip_json(&request.body().ok()?)?;
            (report["organization-name"] == submitter).then_some(report)
        })
        .map(|report| {
            let policy_domain = report["policies"][0]["policy"]["policy-domain"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let domain = HTTPS_DOMAINS
                .into_iter()
                .find(|d| policy_domain == *d || policy_domain.ends_with(&format!(".{d}")))
                .unwrap_or_else(|| panic!("unexpected policy domain {policy_domain}"))
                .to_owned();
            let mut summary = summary(&report);
            summary.3.sort();
            (domain, summary)
        })
        .collect();
    found.sort();
    found
}

async fn wait_reports(lab: &Lab, submitter: &str) -> Reports {
    wait_for(WAIT, || {
        let found = https_reports(lab, submitter);
        Ok((found.len() >= HTTPS_DOMAINS.len()).then_some(found))
    })
    .await
    .unwrap_or_else(|e| panic!("reports of {submitter}: {e}"))
}

fn yesterday() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(86_400)).to_string()
        [..10]
        .to_owned()
}

/// What one node alone reports for `TRAFFIC`.
async fn single_node_reports(lab: &Lab, submitter: &str) -> Reports {
    let dir = TestDir::new("cluster-single").unwrap();
    let mut relay = Relay::start_with_env(
        bin(),
        dir.path(),
        &tlsrpt_config(lab, submitter),
        &YESTERDAY,
    )
    .await
    .unwrap();
    send_traffic(&[&relay]).await;
    assert_eq!(relay.terminate().await.unwrap(), Some(0));
    relay.set_env(&[]);
    relay.restart().await.unwrap();
    let out = relay
        .cli(&["tlsrpt", "send", "--date", &yesterday()])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = wait_reports(lab, submitter).await;
    assert_eq!(relay.terminate().await.unwrap(), Some(0));
    reports
}

async fn start_nodes(
    lab: &Lab,
    pg: &Pg,
    db: &str,
    submitter: &str,
    name: &str,
    env: &[(&str, &str)],
    metrics: Option<std::net::SocketAddr>,
) -> (Vec<TestDir>, Vec<Relay>) {
    let dirs: Vec<TestDir> = (0..3)
        .map(|i| TestDir::new(&format!("{name}-{i}")).unwrap())
        .collect();
    let config = format!("{}{}", tlsrpt_config(lab, submitter), pg.cluster_config(db));
    // Node 0 exports metrics when asked to.
    let first = match metrics {
        Some(addr) => format!("[metrics]\nlisten = \"{addr}\"\n\n{config}"),
        None => config.clone(),
    };
    // Started together: the migrations' advisory lock keeps concurrent starts apart.
    let (a, b, c) = tokio::join!(
        Relay::start_with_env(bin(), dirs[0].path(), &first, env),
        Relay::start_with_env(bin(), dirs[1].path(), &config, env),
        Relay::start_with_env(bin(), dirs[2].path(), &config, env),
    );
    (dirs, vec![a.unwrap(), b.unwrap(), c.unwrap()])
}

/// The Prometheus exposition at `addr`.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// `strictmx audit ARGS --json` on `relay`: its answer and what it wrote on stderr.
fn audit(relay: &Relay, args: &[&str]) -> (Value, String) {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = relay.cli(&all).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "audit {args:?}: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// Rows of the shared audit index, and of its distinct recipients.
fn audit_rows(pg: &Pg, db: &str) -> String {
    pg.try_sql(
        db,
        "SELECT count(*), count(DISTINCT recipient) FROM strictmx_audit",
    )
    .unwrap_or_default()
}

fn logged(relay: &Relay, message: &str) -> usize {
    count_logs(relay, |v| v["message"] == message)
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run tests/cluster/run"]
async fn three_nodes_share_policies_and_send_what_one_node_would_once_when_the_reporter_dies() {
    let lab = Lab::get().unwrap();
    let pg = Pg::from_env();
    let db = pg.create_db("reports");
    let stamp = format!("{}-{}", std::process::id(), unix_now() as u64);
    let alone = format!("single-{stamp}.relay.test");
    let together = format!("cluster-{stamp}.relay.test");
    let expected = single_node_reports(&lab, &alone).await;

    let (dirs, mut nodes) = start_nodes(
        &lab,
        &pg,
        &db,
        &together,
        "cluster-reports",
        &YESTERDAY,
        None,
    )
    .await;
    // Each node migrates on its first query; concurrent starts apply each version once.
    wait_for(WAIT, || {
        let versions = pg.try_sql(
            &db,
            "SELECT count(*), max(version) FROM strictmx_migrations",
        );
        Ok((versions.as_deref() == Ok("3|3")).then_some(()))
    })
    .await
    .unwrap();
    let since = unix_now();
    {
        let refs: Vec<&Relay> = nodes.iter().collect();
        send_traffic(&refs).await;
    }
    // Node 0 fetched the policy of sts-testing.test; node 1 used it without a request.
    assert_eq!(logged(&nodes[0], "MTA-STS policy fetched"), 1);
    assert_eq!(logged(&nodes[1], "MTA-STS policy fetched"), 0);
    assert_eq!(
        logged(&nodes[1], "MTA-STS policy taken from the cluster's cache"),
        1
    );
    assert_eq!(
        sts_requests(&lab, "mta-sts.sts-testing.test", since),
        1,
        "one fetch of the policy for the whole cluster"
    );

    // Every node's counts reach the database before the reporter is killed.
    let total: u64 = expected.iter().map(|(_, s)| s.1 + s.2).sum();
    wait_for(WAIT, || {
        let counted: u64 = HTTPS_DOMAINS.iter().map(|d| pg.sessions(&db, d)).sum();
        Ok((counted == total).then_some(()))
    })
    .await
    .unwrap();
    let reporter = nodes
        .iter()
        .position(|n| logged(n, "this node sends the cluster's TLSRPT reports") > 0)
        .expect("one node holds the reporter lease");
    let dead = node_id(&dirs[reporter]);
    nodes[reporter].kill9().unwrap();
    for (i, node) in nodes.iter_mut().enumerate() {
        if i == reporter {
            continue;
        }
        assert_eq!(node.terminate().await.unwrap(), Some(0));
        node.set_env(&[]);
        node.restart().await.unwrap();
    }

    let reports = wait_reports(&lab, &together).await;
    // Time for a second sender to show itself, were there one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reports_now = https_reports(&lab, &together);
    assert_eq!(reports_now, reports, "each domain's report was sent once");
    assert_eq!(reports, expected, "the cluster reports what one node does");
    let senders = pg.sql(&db, "SELECT DISTINCT node FROM strictmx_tlsrpt_sent");
    assert!(
        !senders.is_empty() && !senders.contains(&dead),
        "sent by {senders}, killed {dead}"
    );
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != reporter {
            assert_eq!(node.terminate().await.unwrap(), Some(0));
        }
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run tests/cluster/run"]
async fn with_postgresql_stopped_no_message_is_refused_or_lost_and_the_counters_converge() {
    let lab = Lab::get().unwrap();
    let pg = Pg::from_env();
    let db = pg.create_db("outage");
    let submitter = format!("outage-{}.relay.test", std::process::id());
    let domain = "sts-testing.test";
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (dirs, mut nodes) = start_nodes(
        &lab,
        &pg,
        &db,
        &submitter,
        "cluster-outage",
        &[],
        Some(metrics),
    )
    .await;
    let mut rcpts = Vec::new();
    for node in &nodes {
        let rcpt = unique_rcpt(domain);
        submit(node, &rcpt).await;
        rcpts.push(rcpt);
        attempts(node, domain, "delivered", 1).await;
    }
    wait_for(WAIT, || Ok((pg.sessions(&db, domain) == 3).then_some(())))
        .await
        .unwrap();

    // Node 1 finds, through the shared index, the message node 0 delivered.
    wait_for(WAIT, || Ok((audit_rows(&pg, &db) == "3|3").then_some(())))
        .await
        .unwrap();
    let (found, _) = audit(&nodes[1], &["search", "--rcpt", &rcpts[0]]);
    assert_eq!(found["cluster"]["shared"], true, "{found}");
    let record = &found["records"][0];
    assert_eq!(record["recipient"], rcpts[0].as_str(), "{found}");
    assert_eq!(record["node"], node_id(&dirs[0]), "{found}");
    assert_eq!(
        found["records"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let queue_id = record["queue_id"].as_str().expect("a queue id").to_owned();
    let (shown, _) = audit(&nodes[1], &["show", &queue_id]);
    assert_eq!(shown["records"][0], *record, "{shown}");
    assert_eq!(shown["in_queue"], false);
    // And by the Message-ID the message carried, which node 1 never saw.
    let message_id = record["message_id"]
        .as_str()
        .expect("a Message-ID")
        .to_owned();
    let (by_message_id, _) = audit(&nodes[1], &["show", &message_id]);
    assert_eq!(
        by_message_id["records"].as_array().map(Vec::len),
        Some(1),
        "{by_message_id}"
    );
    assert_eq!(by_message_id["records"][0], *record, "{by_message_id}");
    let unknown = nodes[1]
        .cli(&["audit", "show", "00000000000000ff"])
        .unwrap();
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && said.contains("on any node"),
        "{said}"
    );
    let (own, _) = audit(&nodes[1], &["search", "--domain", domain]);
    assert_eq!(own["records"].as_array().map(Vec::len), Some(3), "{own}");
    // Sharing again from the start adds nothing: each record is keyed by node and sequence.
    pg.sql(&db, "UPDATE strictmx_audit_sync SET next_seq = 0");
    wait_for(WAIT, || {
        let marks = pg.sql(&db, "SELECT min(next_seq) FROM strictmx_audit_sync");
        Ok((marks == "1").then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(audit_rows(&pg, &db), "3|3");

    // Same file, same rules: no node warns. A node that publishes another hash is warned of.
    for node in &nodes {
        assert_eq!(logged(node, "another node runs different rules"), 0);
    }
    pg.sql(
        &db,
        "INSERT INTO strictmx_nodes (node, hostname, rules_hash, seen_at) \
         VALUES ('feedfacefeedface', 'other.test', 'not-the-same', now())",
    );
    nodes[0]
        .wait_log(WAIT, |v| {
            v["message"] == "another node runs different rules" && v["peer"] == "feedfacefeedface"
        })
        .await
        .unwrap();

    // A weakening another node saw is in this node's `policy changes`.
    let change = PostureChange {
        domain: "weakened.example".into(),
        at_ms: unix_now() as u64 * 1_000,
        weakenings: vec![Weakening::DnssecLost],
        during_alarm: false,
        before: Posture::default(),
        after: Posture::default(),
    };
    let record = serde_json::to_string(&change).unwrap().replace('\'', "''");
    pg.sql(
        &db,
        &format!(
            "INSERT INTO strictmx_posture_changes (at_ms, domain, node, change) \
             VALUES ({}, 'weakened.example', 'feedfacefeedface', '{record}')",
            change.at_ms
        ),
    );
    let out = nodes[0]
        .cli(&[
            "policy",
            "changes",
            "--domain",
            "weakened.example",
            "--json",
        ])
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        answer["changes"][0]["domain"],
        "weakened.example",
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let exposition = scrape(metrics).await;
    let info = format!("strictmx_node_info{{node=\"{}\"}} 1", node_id(&dirs[0]));
    for line in [info.as_str(), "strictmx_cluster_database_up 1"] {
        assert!(exposition.contains(line), "{line} in {exposition}");
    }

    // Past the time a connection waits for the next message: the outage's mail opens new
    // sessions, counted while the database is away.
    tokio::time::sleep(Duration::from_secs(6)).await;
    pg.ctl("stop");
    for round in 0..2 {
        for node in &nodes {
            let rcpt = unique_rcpt(domain);
            // `submit` asserts the 250: acceptance never waits for the database.
            submit(node, &rcpt).await;
            rcpts.push(rcpt);
            attempts(node, domain, "delivered", round + 2).await;
        }
    }
    // TLSRPT counts sessions, and a node reuses a connection for the next message: the
    // receiver's record of each message's client address tells the sessions apart.
    let mut peers = std::collections::BTreeSet::new();
    for rcpt in &rcpts {
        let got = lab.received_for("mx.sts-testing.test", rcpt).unwrap();
        assert_eq!(got.len(), 1, "{rcpt} delivered once");
        peers.insert(
            got[0]
                .peer
                .clone()
                .expect("the receiver records the client"),
        );
    }
    let sessions = u64::try_from(peers.len()).expect("a few");
    assert!(
        sessions >= 6,
        "{sessions} sessions: the outage made none of its own"
    );
    for node in &nodes {
        node.wait_log(WAIT, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("kept locally") || m.contains("unreachable"))
        })
        .await
        .expect("the node noticed the database was down");
    }
    // Without the database a node answers from its own spool, and says so.
    let (alone, stderr) = audit(&nodes[1], &["search", "--domain", domain]);
    assert_eq!(alone["cluster"]["shared"], false, "{alone}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    let records = alone["records"].as_array().cloned().unwrap_or_default();
    let node1 = node_id(&dirs[1]);
    assert_eq!(records.len(), 3, "node 1's three: {alone}");
    assert!(
        records.iter().all(|r| r["node"] == node1.as_str()),
        "{alone}"
    );
    let exposition = scrape(metrics).await;
    for line in [
        "strictmx_cluster_database_up 0",
        "strictmx_cluster_database_errors_total{op=\"writing the heartbeat\"}",
    ] {
        assert!(exposition.contains(line), "{line} in {exposition}");
    }

    pg.ctl("start");
    wait_for(WAIT, || {
        Ok((pg.sessions(&db, domain) == sessions).then_some(()))
    })
    .await
    .unwrap_or_else(|e| {
        let rows = "SELECT node, day, successes, failures FROM strictmx_tlsrpt_policies";
        let warnings: Vec<String> = nodes
            .iter()
            .flat_map(|n| n.logs())
            .filter(|v| v["level"] != "INFO" && v["level"] != "DEBUG")
            .map(|v| v.to_string())
            .collect();
        panic!("{e}: {}\n{}", pg.sql(&db, rows), warnings.join("\n"))
    });
    // The records written while the database was away are shared once it is back.
    let every = format!("{0}|{0}", rcpts.len());
    wait_for(WAIT, || Ok((audit_rows(&pg, &db) == every).then_some(())))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", audit_rows(&pg, &db)));
    let (late, _) = audit(&nodes[1], &["search", "--rcpt", &rcpts[rcpts.len() - 3]]);
    assert_eq!(late["records"][0]["node"], node_id(&dirs[0]), "{late}");
    // Several more syncs: totals replace totals, nothing is added twice.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(pg.sessions(&db, domain), sessions);
    assert_eq!(audit_rows(&pg, &db), every);
    for node in &mut nodes {
        assert_eq!(node.terminate().await.unwrap(), Some(0));
    }
}
