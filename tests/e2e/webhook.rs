//! Webhooks end to end: a receiver on 127.0.0.1 that refuses connections for a while, then
//! answers 503 once, then 200, still gets every event (deferred, delivered, bounced, expanded)
//! exactly once, each with a valid `Strictmx-Signature`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::hmac;
use serde_json::Value;
use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{Client, RcptScript, Sink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{bin, message};

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "e2e-webhook-secret-0123456789";

/// What the receiver got: (signature header, body) per request answered 200.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Serves `listener`: the first request gets 503, every later one 200 (and is recorded).
async fn receive(listener: TcpListener, got: Received) {
    let answered = Arc::new(Mutex::new(0usize));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(connection(stream, Arc::clone(&got), Arc::clone(&answered)));
    }
}

async fn connection(mut stream: TcpStream, got: Received, answered: Arc<Mutex<usize>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        while buf.len() < end + 4 + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[end + 4..end + 4 + length].to_vec();
        buf.drain(..end + 4 + length);
        let first = {
            let mut n = answered.lock().expect("lock");
            *n += 1;
            *n == 1
        };
        let reply: &[u8] = if first {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
        } else {
            got.lock()
                .expect("lock")
                .push((header("strictmx-signature"), body));
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Checks `t=<secs>,v1=<hex>` against HMAC-SHA256(secret, t + "." + body).
fn signature_is_valid(header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let Some(tag) = (0..v1.len())
        .step_by(2)
        .map(|i| {
            v1.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let signed = [t.as_bytes(), b".", body].concat();
    hmac::verify(&key, &signed, &tag).is_ok()
}

fn route(domain: &str, sink: &Sink) -> String {
    format!(
        "[[route]]\ndomain = \"{domain}\"\nnext_hop = \"{}\"\n\n",
        sink.addr
    )
}

#[tokio::test]
async fn a_receiver_that_is_down_for_a_while_gets_every_event_once_with_a_valid_signature() {
    let dir = TestDir::new("webhook").unwrap();
    let later = Sink::start(RcptScript::TempFailFirst).await.unwrap();
    let refusing = Sink::start(RcptScript::Reject).await.unwrap();
    let senders = Sink::start(RcptScript::Accept).await.unwrap();
    // A port with nothing listening on it yet: connections are refused.
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let config = format!(
        "[retry]\ninitial = \"1s\"\nmax_interval = \"2s\"\njitter = 0.0\ndestination_backoff = \"1s\"\n\n{}{}{}[[webhook]]\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\n\n",
        route("later.test", &later),
        route("refusing.test", &refusing),
        route("src.test", &senders),
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    for rcpt in ["alice@later.test", "bob@refusing.test"] {
        let reply = c
            .send_mail(
                "app@src.test",
                &[rcpt],
                &message("app@src.test", rcpt, "hi"),
            )
            .await
            .unwrap();
        assert_eq!(reply.code, 250, "{reply:?}");
    }

    // Down while the outcomes happen; up (after one 503) later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got: Received = Arc::default();
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(receive(listener, Arc::clone(&got)));

    let expected: BTreeSet<(String, String)> = [
        ("deferred", "alice@later.test"),
        ("delivered", "alice@later.test"),
        ("bounced", "bob@refusing.test"),
        ("expanded", "app@src.test"),
        ("delivered", "app@src.test"),
    ]
    .into_iter()
    .map(|(e, r)| (e.to_owned(), r.to_owned()))
    .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.lock().unwrap().len() < expected.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events so far: {:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing is sent twice: wait a little for a stray repeat.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = got.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    for (signature, body) in &got {
        assert!(signature_is_valid(signature, body), "{signature} {body:?}");
        let event: Value = serde_json::from_slice(body).unwrap();
        assert!(event["queue_id"].is_string(), "{event}");
        assert!(event["sender"].is_string(), "{event}");
        let key = (
            event["event"].as_str().unwrap_or_default().to_owned(),
            event["recipient"].as_str().unwrap_or_default().to_owned(),
        );
        if key.0 != "expanded" {
            assert!(event["receipt"]["auth"].is_string(), "{event}");
        }
        assert!(seen.insert(key.clone()), "sent twice: {key:?}");
    }
    assert_eq!(seen, expected, "{got:?}");
}

// Issue 10: `reload` puts a new `[[webhook]]` in force and takes a removed one out, and an
// administrator's delete is told as a `deleted` event.
#[tokio::test]
async fn reload_adds_and_removes_webhooks_and_an_admins_delete_is_an_event() {
    let dir = TestDir::new("webhook-reload").unwrap();
    // Nothing listens at the next hop: the mail stays queued.
    let dead: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let config = format!("[[route]]\ndomain = \"dead.test\"\nnext_hop = \"{dead}\"\n\n");
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();
    let mut c = Client::connect(relay.smtp).await.unwrap();
    let reply = c
        .send_mail(
            "app@src.test",
            &["carol@dead.test"],
            &message("app@src.test", "carol@dead.test", "hi"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    let accepted = relay
        .wait_log(WAIT, |v| v["message"] == "message accepted")
        .await
        .unwrap();
    let id = accepted["msg_id"].as_str().unwrap().to_owned();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    tokio::spawn(receive(listener, Arc::clone(&got)));
    let original = std::fs::read_to_string(&relay.config_path).unwrap();
    let with_hook = format!("{original}\n[[webhook]]\nurl = \"{hook}\"\nsecret = \"{SECRET}\"\n");
    std::fs::write(&relay.config_path, &with_hook).unwrap();
    let out = relay.cli(&["reload"]).unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(&format!("webhook {hook} added")), "{said}");
    assert!(!said.contains("restart"), "{said}");

    let out = relay.cli(&["queue", "delete", &id]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let deleted = loop {
        let found = got.lock().unwrap().iter().find_map(|(signature, body)| {
            let event: Value = serde_json::from_slice(body).ok()?;
            (event["event"] == "deleted").then(|| (signature.clone(), body.clone(), event))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(signature_is_valid(&deleted.0, &deleted.1));
    assert_eq!(deleted.2["recipient"], "carol@dead.test", "{}", deleted.2);
    assert_eq!(deleted.2["queue_id"], id.as_str(), "{}", deleted.2);
    assert_eq!(
        deleted.2["reply"], "deleted by an administrator",
        "{}",
        deleted.2
    );

    std::fs::write(&relay.config_path, &original).unwrap();
    let out = relay.cli(&["reload"]).unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("webhook {hook} removed")), "{said}");
}
