//! DKIM signing at acceptance, checked by a second implementation: Python's dkimpy (installed by
//! `tests/lab/up`) verifies what strictmx queued, with the DNS record handed to it directly.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{ReplyExt, TestServer};
use base64::Engine;
use strictmx_inbound::{DEFAULT_SIGNED_HEADERS, DkimKey, Role};

/// A fresh `openssl genpkey` key in PEM and the `v=DKIM1` TXT record that publishes it.
fn generate(algorithm: &str) -> (Vec<u8>, String) {
    let mut args = vec!["genpkey", "-algorithm", algorithm];
    if algorithm == "RSA" {
        args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
    }
    let pem = Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl runs")
        .stdout;
    let public = pipe("openssl", &["pkey", "-pubout", "-outform", "DER"], &pem);
    let (k, p) = match algorithm {
        "RSA" => ("rsa", &public[..]),
        // RFC 8463 §4.2: the raw 32-octet Ed25519 key.
        _ => ("ed25519", &public[public.len() - 32..]),
    };
    let p = base64::engine::general_purpose::STANDARD.encode(p);
    (pem, format!("v=DKIM1; k={k}; p={p}"))
}

fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("program runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{program} {args:?} failed");
    out.stdout
}

/// dkimpy's verdict on the topmost signature, with `record` as the only DNS answer.
fn dkimpy_verifies(message: &[u8], record: &str) -> bool {
    let script = "import sys, dkim\n\
        record = sys.argv[1].encode()\n\
        names = []\n\
        def dns(name, timeout=5):\n    names.append(name)\n    return record\n\
        ok = dkim.verify(sys.stdin.buffer.read(), dnsfunc=dns)\n\
        print(names)\n\
        sys.exit(0 if ok else 1)\n";
    let probe = Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "python3 cannot import dkim (dkimpy) and nacl (pynacl): run tests/lab/up, which installs them"
    );
    let mut child = Command::new("python3")
        .args(["-c", script, record])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let asked = String::from_utf8_lossy(&out.stdout);
    assert!(
        asked.contains("s1._domainkey.example.com."),
        "dkimpy asked for {asked}"
    );
    out.status.success()
}

/// Sends `content` through a relay listener that signs for example.com; returns what was queued.
async fn accepted(key: DkimKey, content: &str) -> Vec<u8> {
    let server = TestServer::new(Role::Relay).dkim(key).start();
    let mut client = server.connect().await;
    client.expect(220).await;
    client.command("EHLO client.test").await.code(250);
    client
        .command("MAIL FROM:<bounce@example.com>")
        .await
        .code(250);
    client.command("RCPT TO:<user@example.net>").await.code(250);
    client.command("DATA").await.code(354);
    client.send_raw(content.as_bytes()).await;
    client.send_raw(b".\r\n").await;
    client.expect(250).await;
    client.command("QUIT").await.code(221);
    let messages = server.messages();
    messages[0].1.clone()
}

fn key(pem: &[u8]) -> DkimKey {
    let headers = DEFAULT_SIGNED_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect();
    DkimKey::from_pem("example.com", "s1", headers, pem).expect("key loads")
}

/// No Message-ID or Date: the ones strictmx adds must be signed too. A long body with a
/// trailing-space line and an empty last line exercises relaxed body canonicalization.
fn reset_mail() -> String {
    let mut body = String::from(
        "From: \"Example App\" <noreply@example.com>\r\nTo: user@example.net\r\nSubject: Your password reset\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    for i in 0..2000 {
        body.push_str(&format!("line {i} of the reset mail   \r\n"));
    }
    body.push_str("\r\n");
    body
}

#[tokio::test]
async fn dkimpy_verifies_an_rsa_2048_signature_made_at_acceptance() {
    let (pem, record) = generate("RSA");
    let queued = accepted(key(&pem), &reset_mail()).await;
    let text = String::from_utf8_lossy(&queued);
    // Our Received: stays first (RFC 5321 §4.4); the signature tops the signed block.
    assert!(text.starts_with("Received: from client.test"), "{text}");
    let signature_at = text
        .find("\r\nDKIM-Signature: v=1; a=rsa-sha256; s=s1; d=example.com;")
        .expect("signed");
    assert!(signature_at < text.find("\r\nFrom:").expect("from"));
    assert!(text.contains("Message-ID"), "{text}");
    assert!(dkimpy_verifies(&queued, &record));
}

#[tokio::test]
async fn dkimpy_verifies_an_ed25519_signature_made_at_acceptance() {
    let (pem, record) = generate("ED25519");
    let queued = accepted(key(&pem), &reset_mail()).await;
    assert!(String::from_utf8_lossy(&queued).contains("a=ed25519-sha256"));
    assert!(dkimpy_verifies(&queued, &record));
}

#[tokio::test]
async fn dkimpy_rejects_the_signature_once_the_subject_is_changed() {
    let (pem, record) = generate("ED25519");
    let queued = accepted(key(&pem), &reset_mail()).await;
    let text = String::from_utf8(queued).expect("ascii");
    let tampered = text.replace(
        "Subject: Your password reset",
        "Subject: Urgent: verify now",
    );
    assert!(!dkimpy_verifies(tampered.as_bytes(), &record));
}

#[tokio::test]
async fn mail_from_another_domain_is_accepted_unsigned() {
    let (pem, _) = generate("ED25519");
    let queued = accepted(
        key(&pem),
        "From: someone@example.org\r\nSubject: hi\r\n\r\nbody\r\n",
    )
    .await;
    assert!(!String::from_utf8_lossy(&queued).contains("DKIM-Signature"));
}
