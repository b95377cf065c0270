//! Durability: a message that got `250` after DATA survives `kill -9` of the server.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{Client, RcptScript, Sink};

use crate::{bin, message};

#[tokio::test]
async fn every_acknowledged_message_is_delivered_after_kill_9_mid_load() {
    let dir = TestDir::new("crash").unwrap();
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let config = format!(
        "[retry]\ninitial = \"1s\"\nmax_interval = \"2s\"\njitter = 0.0\ndestination_backoff = \"1s\"\n\n\
         [[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n",
        sink.addr
    );
    let mut relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();

    let mut submitters = Vec::new();
    for worker in 0..8 {
        let acked = acked.clone();
        let addr = relay.smtp;
        submitters.push(tokio::spawn(async move {
            let Ok(mut c) = Client::connect(addr).await else {
                return;
            };
            if c.command("EHLO load.test").await.map(|r| r.code).ok() != Some(250) {
                return;
            }
            for n in 0.. {
                let subject = format!("crash-{worker}-{n}");
                let body = message("load@src.test", "sink@dest.test", &subject);
                match c
                    .transaction("load@src.test", &["sink@dest.test"], &body)
                    .await
                {
                    Ok(r) if r.code == 250 => {
                        acked.lock().unwrap().insert(subject);
                    }
                    _ => return,
                }
            }
        }));
    }
    // Killed once the load has been going for a while: by acknowledgements, not by the clock,
    // so a loaded machine does not end the load before it began.
    let started = tokio::time::Instant::now();
    while acked.lock().unwrap().len() <= 20 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.kill9().unwrap();
    for s in submitters {
        let _ = s.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the load should have been going for a while: {} acknowledged",
        acked.len()
    );

    relay.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let delivered: BTreeSet<String> = sink
            .received()
            .iter()
            .filter_map(|m| {
                let body = m.body_text();
                body.lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
            })
            .collect();
        let missing: Vec<&String> = acked.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} acknowledged messages never arrived, e.g. {:?}",
            missing.len(),
            acked.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
