//! Kill -9 while submitting and recording: a child process (this test binary, re-run with an
//! environment variable) submits in a loop, records every other message as delivered (those
//! commits are not flushed before the answer) and prints every id the spool acknowledged and
//! every outcome it is about to record; the parent kills it with SIGKILL at a random point of its work,
//! reopens the spool and checks that every acknowledged message is there unless its delivery
//! was recorded. Three cycles on the same spool, so recovery after a kill is itself followed by
//! more work and another kill.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use common::*;
use strictmx_spool::{format_id, parse_id};

const CHILD_DIR: &str = "STRICTMX_SPOOL_CRASH_CHILD_DIR";
const ACKS_BEFORE_KILL: usize = 150;
const BODY_LEN: usize = 2048;

/// Not a test on its own: the body of the child process. Without the environment variable it
/// returns at once.
#[test]
fn crash_child_submits_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async move {
        let spool = open(&dir);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let spool = spool.clone();
            tasks.spawn(async move {
                // Bounded so that an orphaned child ends by itself.
                for n in 0..20_000 {
                    let id = spool
                        .submit(envelope(&["a@x.test"]), body(BODY_LEN))
                        .await
                        .expect("child submit");
                    println!("acked {}", format_id(id));
                    if n % 2 == 0 {
                        // Said before, since the outcome may reach the disk before the
                        // answer reaches this task.
                        println!("recording {}", format_id(id));
                        spool
                            .record(id, vec![delivered(0)], vec![])
                            .await
                            .expect("child record");
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// Kills the child if the parent fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_acknowledged_message_survives_a_kill_9() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let exe = std::env::current_exe().expect("test binary path");
    let mut acked = Vec::new();
    let mut recorded = HashSet::new();
    for cycle in 0..3 {
        let child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_submits_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut this_cycle = 0;
        while this_cycle < ACKS_BEFORE_KILL {
            let Some(Ok(line)) = lines.next() else {
                panic!("child stopped after {this_cycle} acks in cycle {cycle}");
            };
            if let Some(hex) = line.strip_prefix("acked ") {
                acked.push(parse_id(hex).expect("child prints ids"));
                this_cycle += 1;
            } else if let Some(hex) = line.strip_prefix("recording ") {
                recorded.insert(parse_id(hex).expect("child prints ids"));
            }
        }
        // Child::kill sends SIGKILL on Unix: no destructor, no flush, no clean close.
        child.0.kill().expect("kill -9");
        // What the child printed before it died was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(hex) = line.strip_prefix("acked ") {
                acked.push(parse_id(hex).expect("child prints ids"));
            } else if let Some(hex) = line.strip_prefix("recording ") {
                recorded.insert(parse_id(hex).expect("child prints ids"));
            }
        }
        child.0.wait().expect("reap child");

        // A recorded delivery may be lost with the flush the kill prevented (the message is
        // then queued again, a duplicate delivery at worst); an acknowledged message never is.
        let spool = open(dir.path());
        for id in acked.iter().filter(|id| !recorded.contains(*id)) {
            let body = spool
                .body(*id)
                .unwrap_or_else(|e| panic!("acknowledged {} lost: {e}", format_id(*id)));
            assert_eq!(body.len(), BODY_LEN);
        }
        let waiting = acked.iter().filter(|id| !recorded.contains(*id)).count();
        assert!(spool.stats().messages >= waiting);
        assert!(
            !spool
                .due(SystemTime::now(), usize::MAX)
                .expect("due after a crash")
                .is_empty()
        );
    }
}
