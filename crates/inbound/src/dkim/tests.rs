//! Key loading, key choice by `From:` domain, and signatures checked with mail-auth's verifier
//! (the end-to-end test checks them with dkimpy too).

use std::process::Command;
use std::time::Instant;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use super::*;

fn headers() -> Vec<String> {
    DEFAULT_SIGNED_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect()
}

/// A fresh private key in PEM from `openssl genpkey`, and the DNS record for it.
fn generate(algorithm: &str) -> (Vec<u8>, String) {
    let mut args = vec!["genpkey", "-algorithm", algorithm];
    if algorithm == "RSA" {
        args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
    }
    let pem = Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl runs");
    assert!(pem.status.success(), "openssl genpkey failed");
    let public = pipe(&["pkey", "-pubout", "-outform", "DER"], &pem.stdout);
    let der = public;
    let (k, p) = if algorithm == "RSA" {
        ("rsa", der.as_slice())
    } else {
        // RFC 8463 §4.2: the bare 32-octet key, not the SubjectPublicKeyInfo around it.
        ("ed25519", &der[der.len() - 32..])
    };
    use base64::Engine;
    let p = base64::engine::general_purpose::STANDARD.encode(p);
    (pem.stdout, format!("v=DKIM1; k={k}; p={p}"))
}

fn pipe(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

fn key(domain: &str, pem: &[u8]) -> DkimKey {
    DkimKey::from_pem(domain, "s1", headers(), pem).expect("key loads")
}

const MESSAGE: &str = "From: App <noreply@Example.COM>\r\nTo: user@example.net\r\nSubject: reset\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nYour code is 1234.\r\n";

struct OneKey(Box<str>, Txt);

impl ResolverCache<Box<str>, Txt> for OneKey {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let own: &Q = std::borrow::Borrow::borrow(&self.0);
        (own == name).then(|| self.1.clone())
    }
    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: Box<str>, _: Txt, _: Instant) {}
}

/// Verifies the first `DKIM-Signature:` of `signed` with mail-auth against `record`.
async fn verify(signed: &[u8], domain: &str, record: &str) -> DkimResult {
    let message = AuthenticatedMessage::parse(signed).expect("message parses");
    let domain_key = DomainKey::parse(record.as_bytes()).expect("record parses");
    let cache = OneKey(
        format!("s1._domainkey.{domain}.").into_boxed_str(),
        Txt::DomainKey(std::sync::Arc::new(domain_key)),
    );
    let authenticator = MessageAuthenticator::new_cloudflare().expect("resolver builds");
    let outputs = authenticator
        .verify_dkim(Parameters::new(&message).with_txt_cache(&cache))
        .await;
    outputs.first().expect("one signature").result().clone()
}

fn signed(keys: &[DkimKey], message: &str) -> Vec<u8> {
    let header_end = message.find("\r\n\r\n").expect("header block") + 2;
    match sign(keys, message.as_bytes(), header_end) {
        Signing::Signed(field) => [field.as_bytes(), message.as_bytes()].concat(),
        other => panic!("expected a signature, got {other:?}"),
    }
}

#[tokio::test]
async fn an_rsa_signature_verifies_with_the_published_record() {
    let (pem, record) = generate("RSA");
    let out = signed(&[key("example.com", &pem)], MESSAGE);
    assert_eq!(verify(&out, "example.com", &record).await, DkimResult::Pass);
}

#[tokio::test]
async fn an_ed25519_signature_verifies_with_the_published_record() {
    let (pem, record) = generate("ED25519");
    let out = signed(&[key("example.com", &pem)], MESSAGE);
    assert!(String::from_utf8_lossy(&out).contains("a=ed25519-sha256"));
    assert_eq!(verify(&out, "example.com", &record).await, DkimResult::Pass);
}

#[tokio::test]
async fn a_second_from_field_added_later_breaks_the_signature() {
    // RFC 6376 §8.15: From is over-signed, so a forged author cannot be added below.
    let (pem, record) = generate("ED25519");
    let out = signed(&[key("example.com", &pem)], MESSAGE);
    let text = String::from_utf8(out).expect("ascii");
    let forged = text.replacen("From: App", "From: evil@example.org\r\nFrom: App", 1);
    assert_ne!(
        verify(forged.as_bytes(), "example.com", &record).await,
        DkimResult::Pass
    );
}

#[test]
fn the_from_domain_picks_the_key_and_others_stay_unsigned() {
    let (pem, _) = generate("ED25519");
    let keys = [key("example.org", &pem), key("example.com", &pem)];
    let out = String::from_utf8(signed(&keys, MESSAGE)).expect("ascii");
    assert!(out.contains("d=example.com"), "{out}");
    let other = "From: a@example.net\r\n\r\nbody\r\n";
    assert!(matches!(sign(&keys, other.as_bytes(), 23), Signing::NoKey));
}

#[test]
fn no_single_author_means_no_signature() {
    // RFC 7489 §6.6.1: DMARC has no single domain to align with, so neither have we.
    let (pem, _) = generate("ED25519");
    let keys = [key("example.com", &pem)];
    for message in [
        "To: a@example.com\r\n\r\nbody\r\n",
        "From: a@example.com\r\nFrom: b@example.com\r\n\r\nbody\r\n",
        "From: a@example.com, b@example.com\r\n\r\nbody\r\n",
    ] {
        let end = message.find("\r\n\r\n").expect("block") + 2;
        assert!(
            matches!(sign(&keys, message.as_bytes(), end), Signing::NoKey),
            "{message}"
        );
    }
}

#[test]
fn pkcs1_rsa_keys_load_too() {
    let (pem, _) = generate("RSA");
    let pkcs1 = pipe(&["pkey", "-traditional"], &pem);
    assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PRIVATE KEY"));
    assert_eq!(key("example.com", &pkcs1).algorithm(), "rsa");
}

#[test]
fn bad_keys_and_header_lists_are_refused() {
    let (pem, _) = generate("ED25519");
    let no_from = vec!["To".to_string()];
    assert!(matches!(
        DkimKey::from_pem("example.com", "s1", no_from, &pem),
        Err(DkimError::FromNotSigned)
    ));
    assert!(matches!(
        DkimKey::from_pem("example.com", "s1", headers(), b"not a key"),
        Err(DkimError::UnsupportedKey)
    ));
    let ec = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .expect("openssl runs");
    assert!(DkimKey::from_pem("example.com", "s1", headers(), &ec.stdout).is_err());
}

#[test]
fn the_private_key_never_shows_in_debug_output() {
    let (pem, _) = generate("ED25519");
    let shown = format!("{:?}", key("example.com", &pem));
    assert!(
        shown.contains("example.com") && !shown.contains("inner"),
        "{shown}"
    );
}
