//! `[[dkim]]` through the binary: mail accepted by `strictmx serve` reaches the next hop with a
//! DKIM-Signature that a second implementation (Python's dkimpy, installed by `tests/lab/up`)
//! verifies, and `strictmx reload` puts a new key in force when the key file changes in place.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{Client, RcptScript, Sink};

use crate::{bin, message};

const WAIT: Duration = Duration::from_secs(30);

/// Writes a fresh Ed25519 key to `path` and returns the `v=DKIM1` TXT record publishing it.
fn new_key(path: &Path) -> String {
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(path)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey failed");
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(path)
        .output()
        .expect("openssl runs")
        .stdout;
    // RFC 8463 §4.2: the record carries the raw 32-octet Ed25519 key.
    let raw = &public[public.len() - 32..];
    let p = base64::engine::general_purpose::STANDARD.encode(raw);
    format!("v=DKIM1; k=ed25519; p={p}")
}

/// dkimpy's verdict on the topmost signature, with `record` as the answer for
/// `s1._domainkey.src.test`.
fn dkimpy_verifies(message: &[u8], record: &str) -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "python3 cannot import dkim (dkimpy) and nacl (pynacl): run tests/lab/up, which installs them"
    );
    let script = "import sys, dkim\n\
        record = sys.argv[1].encode()\n\
        def dns(name, timeout=5):\n    return record if name == b's1._domainkey.src.test.' else None\n\
        sys.exit(0 if dkim.verify(sys.stdin.buffer.read(), dnsfunc=dns) else 1)\n";
    let mut child = Command::new("python3")
        .args(["-c", script, record])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write");
    child.wait().expect("wait").success()
}

async fn submit(relay: &Relay, subject: &str) {
    let mut client = Client::connect(relay.smtp).await.unwrap();
    let reply = client
        .send_mail(
            "app@src.test",
            &["user@dest.test"],
            &message("app@src.test", "user@dest.test", subject),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
}

// RFC 6376 §3.5: the message reaching the next hop carries a signature for the From: domain,
// and a key rotated in place (same path, new contents) signs the mail accepted after a reload.
#[tokio::test]
async fn delivered_mail_carries_a_dkim_signature_that_verifies_and_a_key_replaced_in_place_is_used_after_reload()
 {
    let dir = TestDir::new("dkim").unwrap();
    let key_file = dir.path().join("dkim.pem");
    let first = new_key(&key_file);
    let sink = Sink::start(RcptScript::Accept).await.unwrap();
    let config = format!(
        "[[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n\n\
         [[dkim]]\ndomain = \"src.test\"\nselector = \"s1\"\nkey_file = \"{}\"\n",
        sink.addr,
        key_file.display()
    );
    let relay = Relay::start(bin(), dir.path(), &config).await.unwrap();

    submit(&relay, "signed with the first key").await;
    let got = sink.wait_for(1, WAIT).await.unwrap();
    let body = &got[0].body;
    assert!(
        got[0].body_text().contains("DKIM-Signature:"),
        "{}",
        got[0].body_text()
    );
    assert!(dkimpy_verifies(body, &first), "{}", got[0].body_text());

    let second = new_key(&key_file);
    let out = relay.cli(&["reload"]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("dkim: 1 key(s) now in force"), "{stdout}");
    assert!(!stdout.contains("[[dkim]]"), "not a restart: {stdout}");

    submit(&relay, "signed with the second key").await;
    let got = sink.wait_for(2, WAIT).await.unwrap();
    let body = &got[1].body;
    assert!(dkimpy_verifies(body, &second), "{}", got[1].body_text());
    assert!(!dkimpy_verifies(body, &first), "still the old key");
}
