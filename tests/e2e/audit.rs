//! The audit trail through the real binary in the lab: a message delivered over DANE leaves
//! the queue, and `strictmx audit show` still answers with its receipt (`dane`) from the
//! running server, from the spool with no server running, and after a restart; `audit
//! search` finds it by domain and tells it apart from a delivery that was not over DANE.
//! Needs the lab (`tests/lab/up`).

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use strictmx_test_support::lab::{Lab, unique_rcpt, wait_for};
use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::Client;

use crate::bin;

const WAIT: Duration = Duration::from_secs(45);

/// A relay validating DNSSEC from the lab's root, trusting the lab's CA.
async fn relay_in_lab(lab: &Lab, dir: &TestDir) -> Relay {
    let config = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"3s\"\ndnssec = \"validate\"\ntrust_anchor = \"{}\"\n\n\
         [delivery]\nextra_ca_file = \"{}\"\n# The lab's MX hosts are on loopback.\nnever_deliver_to = []\n",
        lab.nonvalidating_resolver(),
        lab.trust_anchor().display(),
        lab.ca_bundle().display()
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    relay
        .wait_log(WAIT, |v| v["message"] == "DNSSEC self-test passed")
        .await
        .expect("the DNSSEC self-test passes with the lab's anchor");
    relay
}

/// Submits a message to `rcpt` carrying `message_id`.
async fn submit_with_id(relay: &Relay, rcpt: &str, message_id: &str) {
    let body = format!(
        "From: <app@src.test>\r\nTo: <{rcpt}>\r\nSubject: reset\r\nMessage-ID: {message_id}\r\n\r\nYour code is 1234.\r\n"
    );
    let mut client = Client::connect(relay.smtp).await.unwrap();
    let reply = client
        .send_mail("app@src.test", &[rcpt], body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `audit show ID --json`'s one record, once the commit that finished the message is made.
async fn shown(relay: &Relay, id: &str) -> Value {
    wait_for(WAIT, || {
        let out = relay.cli(&["audit", "show", id, "--json"])?;
        Ok(out
            .status
            .success()
            .then(|| json_of(&out)["records"][0].clone()))
    })
    .await
    .unwrap_or_else(|e| panic!("audit show {id}: {e}"))
}

#[tokio::test]
async fn a_dane_delivery_is_shown_with_its_receipt_from_the_server_without_it_and_after_a_restart()
{
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("audit-dane").unwrap();
    let mut relay = relay_in_lab(&lab, &dir).await;
    let dane_rcpt = unique_rcpt("dane-ok.test");
    let sts_rcpt = unique_rcpt("sts-enforce.test");
    let message_id = format!("<{}>", unique_rcpt("app.test"));
    submit_with_id(&relay, &dane_rcpt, &message_id).await;
    submit_with_id(&relay, &sts_rcpt, "<other@app.test>").await;
    wait_for(WAIT, || {
        Ok(lab.received_for("mx.dane-ok.test", &dane_rcpt)?.pop())
    })
    .await
    .unwrap();

    let record = shown(&relay, &message_id).await;
    assert_eq!(record["outcome"], "delivered", "{record}");
    assert_eq!(record["recipient"], dane_rcpt.as_str());
    assert_eq!(record["message_id"], message_id.as_str());
    assert_eq!(record["sender"], "app@src.test");
    assert_eq!(record["submitter"]["ip"], "127.0.0.1");
    let receipt = &record["receipt"];
    assert_eq!(receipt["auth"], "dane", "{record}");
    assert_eq!(receipt["mx"], "mx.dane-ok.test", "{record}");
    assert_eq!(receipt["requirement"], "dane", "{record}");
    assert!(receipt["tls_version"].as_str().is_some(), "{record}");
    assert!(receipt["cipher"].as_str().is_some(), "{record}");
    assert_eq!(record["requiretls"]["requested"], false);
    let queue_id = record["queue_id"].as_str().unwrap().to_owned();
    assert!(
        relay
            .cli(&["queue", "show", &queue_id])
            .unwrap()
            .status
            .code()
            != Some(0),
        "the message left the queue"
    );

    // No server: the command reads the spool itself.
    assert_eq!(relay.terminate().await.unwrap(), Some(0));
    let offline = shown(&relay, &queue_id).await;
    assert_eq!(offline, record);
    let human = relay.cli(&["audit", "show", &queue_id]).unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success(), "{text}");
    assert!(text.contains(&format!("{dane_rcpt}: delivered")), "{text}");
    assert!(text.contains("auth=dane policy=dane"), "{text}");

    relay.restart().await.unwrap();
    assert_eq!(shown(&relay, &queue_id).await, record);

    let sts = shown(&relay, "<other@app.test>").await;
    assert_eq!(sts["receipt"]["auth"], "sts", "{sts}");
    let search = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["audit", "search", "--since", "1h", "--json"];
        all.extend_from_slice(args);
        let page = json_of(&relay.cli(&all).unwrap());
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["recipient"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(search(&["--domain", "dane-ok.test"]), [dane_rcpt.as_str()]);
    assert_eq!(
        search(&["--domain", "dane-ok.test", "--not-auth", "dane"]),
        Vec::<String>::new()
    );
    assert_eq!(search(&["--not-auth", "dane"]), [sts_rcpt.as_str()]);
    assert_eq!(search(&["--auth", "dane"]), [dane_rcpt.as_str()]);

    let listed = relay
        .cli(&[
            "audit",
            "search",
            "--domain",
            "dane-ok.test",
            "--since",
            "1h",
        ])
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&queue_id), "{text}");
    assert!(text.contains("delivered      dane"), "{text}");
}
