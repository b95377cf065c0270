//! Retiring a node: `queue xfer` moves queued mail to another strictmx node, which delivers it
//! to a sink; every message arrives once, also when the sending node is killed with `kill -9`
//! in the middle of the transfer and the transfer is run again; an untrusting node takes
//! nothing and nothing is lost; `serve --drain --to` empties a node and exits 0.

use std::collections::BTreeMap;
use std::time::Duration;

use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{Client, RcptScript, Sink};
use tokio::time::Instant;

use crate::{bin, message};

/// A loopback port where nothing listens: the retiring node's next hop is dead.
fn dead_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The node being retired: mail to dest.test goes to a dead next hop and stays queued.
async fn retiring(dir: &TestDir) -> Relay {
    let config = format!(
        "[retry]\ninitial = \"1h\"\njitter = 0.0\ndestination_backoff = \"1h\"\n\n\
         [[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n",
        dead_port()
    );
    Relay::start(bin(), dir.path(), &config).await.unwrap()
}

/// The node that takes over: it delivers dest.test to `sink`; `trusted` are its trusted
/// networks (loopback by default).
async fn successor(dir: &TestDir, sink: &Sink, trusted: Option<&str>) -> Relay {
    let relay = trusted.map_or_else(String::new, |nets| {
        format!("[relay]\ntrusted_networks = [\"{nets}\"]\n\n")
    });
    let config = format!(
        "{relay}[retry]\ninitial = \"1s\"\njitter = 0.0\ndestination_backoff = \"1s\"\n\n\
         [[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n",
        sink.addr
    );
    Relay::start(bin(), dir.path(), &config).await.unwrap()
}

/// Submits `count` messages, one recipient each (`r{n}@dest.test`), over one connection.
async fn queue_mail(node: &Relay, count: usize) -> Vec<String> {
    let mut client = Client::connect(node.smtp).await.unwrap();
    assert_eq!(client.command("EHLO app.test").await.unwrap().code, 250);
    let mut rcpts = Vec::new();
    for n in 0..count {
        let rcpt = format!("r{n}@dest.test");
        let body = message("app@src.test", &rcpt, &format!("xfer {n}"));
        let reply = client
            .transaction("app@src.test", &[rcpt.as_str()], &body)
            .await
            .unwrap();
        assert_eq!(reply.code, 250, "{reply:?}");
        rcpts.push(rcpt);
    }
    rcpts
}

/// The messages in a node's queue, from `queue list --json`.
fn queued(node: &Relay) -> usize {
    let out = node.cli(&["queue", "list", "--json"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array().map_or(0, Vec::len)
}

/// Waits until the sink has every recipient, then a moment more for any duplicate; returns how
/// often each recipient arrived.
async fn arrivals(sink: &Sink, rcpts: &[String]) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = || {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for received in sink.received() {
            for rcpt in received.rcpts {
                *seen.entry(rcpt).or_default() += 1;
            }
        }
        seen
    };
    while count().len() < rcpts.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    count()
}

fn assert_once_each(seen: &BTreeMap<String, usize>, rcpts: &[String]) {
    let missing: Vec<&String> = rcpts.iter().filter(|r| !seen.contains_key(*r)).collect();
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(seen.len(), rcpts.len(), "{seen:?}");
}

/// `queue xfer --all --yes` until the node's queue is empty (a message being attempted when
/// the transfer ran is skipped and taken by the next one).
async fn xfer_until_empty(node: &Relay, to: &str) {
    for _ in 0..10 {
        if queued(node) == 0 {
            return;
        }
        let out = node
            .cli(&["queue", "xfer", "--to", to, "--all", "--yes"])
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(queued(node), 0, "the queue did not empty");
}

#[tokio::test]
async fn queue_xfer_moves_every_queued_message_to_another_node_once() {
    let (a_dir, b_dir) = (
        TestDir::new("xfer-a").unwrap(),
        TestDir::new("xfer-b").unwrap(),
    );
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let a = retiring(&a_dir).await;
    let b = successor(&b_dir, &sink, None).await;
    let rcpts = queue_mail(&a, 30).await;
    assert_eq!(queued(&a), 30);

    xfer_until_empty(&a, &b.smtp.to_string()).await;
    assert_once_each(&arrivals(&sink, &rcpts).await, &rcpts);
    // The envelope travelled: the sender is the original one, not the retiring node's.
    assert!(
        sink.received()
            .iter()
            .all(|r| r.mail_from == "app@src.test")
    );
    a.wait_log(Duration::from_secs(10), |v| {
        v["message"] == "message transferred to another node"
    })
    .await
    .expect("the retiring node logs each message it handed over");
}

#[tokio::test]
async fn a_transfer_cut_by_kill_9_and_run_again_still_delivers_each_message_once() {
    let (a_dir, b_dir) = (
        TestDir::new("xfer9-a").unwrap(),
        TestDir::new("xfer9-b").unwrap(),
    );
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let mut a = retiring(&a_dir).await;
    let b = successor(&b_dir, &sink, None).await;
    let rcpts = queue_mail(&a, 300).await;
    let to = b.smtp.to_string();

    // The transfer runs in the background; the sending node is killed once the other node has
    // taken some of the messages but not all.
    let config = a.config_path.clone();
    let transfer = std::thread::spawn(move || {
        std::process::Command::new(bin())
            .args(["queue", "xfer", "--to", &to, "--all", "--yes", "--config"])
            .arg(config)
            .output()
    });
    let received = |b: &Relay| {
        b.logs()
            .iter()
            .filter(|v| v["message"] == "transfer from another node received")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while received(&b) < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill9().unwrap();
    let _ = transfer.join();
    let before = received(&b);
    assert!(
        before < 300,
        "the kill came after the whole transfer ({before})"
    );

    a.restart().await.unwrap();
    let left = queued(&a);
    assert!(
        left > 0 && left < 300,
        "{left} message(s) left after the kill"
    );
    xfer_until_empty(&a, &b.smtp.to_string()).await;
    assert_once_each(&arrivals(&sink, &rcpts).await, &rcpts);
    let repeats: u64 = b
        .logs()
        .iter()
        .filter(|v| v["message"] == "transfer from another node received")
        .filter_map(|v| v["repeated"].as_u64())
        .sum();
    eprintln!(
        "killed after {before} of 300 received; {left} left; {repeats} repeat(s) answered 250 without a second copy"
    );
}

#[tokio::test]
async fn a_node_that_does_not_trust_the_sender_takes_nothing_and_nothing_is_lost() {
    let (a_dir, b_dir) = (
        TestDir::new("xferno-a").unwrap(),
        TestDir::new("xferno-b").unwrap(),
    );
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let a = retiring(&a_dir).await;
    let b = successor(&b_dir, &sink, Some("10.99.0.0/16")).await;
    queue_mail(&a, 5).await;

    let out = a
        .cli(&[
            "queue",
            "xfer",
            "--to",
            &b.smtp.to_string(),
            "--all",
            "--yes",
        ])
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("does not take transfers"), "{stdout}");
    assert_eq!(
        queued(&a),
        5,
        "every message stays queued on the sending node"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sink.received().is_empty());

    // And straight at its SMTP port: TRANSID from an untrusted client is refused.
    let mut client = Client::connect(b.smtp).await.unwrap();
    let ehlo = client.command("EHLO sneaky.test").await.unwrap();
    assert!(
        !format!("{ehlo:?}").contains("XSTRICTMX-TRANSFER"),
        "{ehlo:?}"
    );
    let reply = client
        .command("MAIL FROM:<a@src.test> TRANSID=<1.2@strictmx>")
        .await
        .unwrap();
    assert_eq!(reply.code, 550, "{reply:?}");
}

#[tokio::test]
async fn serve_drain_to_another_node_empties_the_queue_and_exits_0() {
    let (a_dir, b_dir) = (
        TestDir::new("drain-a").unwrap(),
        TestDir::new("drain-b").unwrap(),
    );
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let mut a = retiring(&a_dir).await;
    let b = successor(&b_dir, &sink, None).await;
    let rcpts = queue_mail(&a, 20).await;
    let old_listener = a.smtp;
    assert_eq!(a.terminate().await.unwrap(), Some(0));

    a.set_serve_args(&["--drain", "--to", &b.smtp.to_string()]);
    a.restart().await.unwrap();
    let code = a.wait_exit(Duration::from_secs(90)).await.unwrap();
    assert_eq!(code, Some(0), "{:#?}", a.logs());
    assert_once_each(&arrivals(&sink, &rcpts).await, &rcpts);
    let logs = a.logs();
    assert!(logs.iter().any(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("draining: the listeners close"))
    }));
    assert!(
        logs.iter()
            .any(|v| v["message"] == "drained: the queue is empty; stopping")
    );
    assert!(
        tokio::net::TcpStream::connect(old_listener).await.is_err(),
        "nothing listens any more"
    );
}

#[tokio::test]
async fn strictmx_drain_retires_a_running_node_and_it_exits_0() {
    let (a_dir, b_dir) = (
        TestDir::new("drainrun-a").unwrap(),
        TestDir::new("drainrun-b").unwrap(),
    );
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let mut a = retiring(&a_dir).await;
    let b = successor(&b_dir, &sink, None).await;
    let rcpts = queue_mail(&a, 10).await;

    let out = a.cli(&["drain", "--to", &b.smtp.to_string()]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("draining: no new mail"), "{stdout}");
    let code = a.wait_exit(Duration::from_secs(90)).await.unwrap();
    assert_eq!(code, Some(0), "{:#?}", a.logs());
    assert_once_each(&arrivals(&sink, &rcpts).await, &rcpts);
}
