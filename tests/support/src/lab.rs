//! The lab's fake mail internet as Rust tests see it: its description (`tests/lab/run/lab.json`),
//! a liveness check of its resolver, and what its receivers and HTTPS hosts recorded. Starting
//! and stopping the lab is left to `tests/lab/up` and `tests/lab/down`; judging strictmx's
//! behaviour is left to the tests.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

/// What every test that needs the lab says when it is not running.
pub const NOT_UP: &str = "the lab is not up: run tests/lab/up";

/// How long `Lab::get` waits for the lab's resolver to answer.
const RESOLVER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a switched zone takes to reach the tests through resolver caches: its TTL (2 s)
/// and a second of margin.
const SWITCH_SETTLE: Duration = Duration::from_secs(3);

/// How often `wait_for` polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The running lab: addresses, trust material and where each host records what it received.
#[derive(Debug, Clone, Deserialize)]
pub struct Lab {
    run_dir: PathBuf,
    authoritative: SocketAddr,
    resolver: SocketAddr,
    nonvalidating_resolver: SocketAddr,
    ca_bundle: PathBuf,
    trust_anchor: PathBuf,
    trust_anchor_ds: PathBuf,
    dane_ta_ca: PathBuf,
    /// Missing in a lab.json from before it was added.
    #[serde(default)]
    intermediate_ca: Option<PathBuf>,
    hosts: HashMap<String, LabHost>,
    sts: HashMap<String, StsHost>,
    tlsrpt: TlsrptCollectors,
}

/// One lab host under one of its DNS names.
#[derive(Debug, Clone, Deserialize)]
pub struct LabHost {
    pub ip: IpAddr,
    pub port: u16,
    pub kind: HostKind,
    pub tls: TlsSetup,
    /// False for hosts that exist in DNS with nothing listening (connection refused).
    pub listening: bool,
    /// The JSON-lines file this host (or, for a stripper, its backend) appends to.
    pub records: PathBuf,
    /// A receiver's PEM chain, leaf first, as it serves it; `None` without TLS (and for
    /// strippers and HTTPS hosts).
    #[serde(default)]
    pub chain: Option<PathBuf>,
    /// The highest TLS version a receiver negotiates (`"TLSv1.2"`), `None` for no cap.
    #[serde(default)]
    pub max_tls: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// An SMTP receiver on port 25.
    Receiver,
    /// A STARTTLS-stripping proxy on port 25 in front of a receiver.
    Stripper,
    /// An MTA-STS policy host (`mta-sts.<domain>`) on port 443.
    MtaSts,
    /// An HTTPS endpoint on port 443 keeping TLSRPT reports.
    Collector,
}

/// The certificate a host serves, as the lab made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsSetup {
    None,
    Valid,
    Expired,
    WrongHost,
    SelfSigned,
    /// Issued by the lab's private CA that only a TLSA usage 2 record vouches for.
    DaneTa,
}

/// An MTA-STS policy domain and the way its policy host behaves.
#[derive(Debug, Clone, Deserialize)]
pub struct StsHost {
    pub host: String,
    pub ip: IpAddr,
    /// `ok`, or how it breaks RFC 8461 section 3.3: `redirect`, `content-type`, `oversized`,
    /// `malformed`, `refused`, `expired-cert`.
    pub variant: String,
    pub mode: String,
    pub policy: String,
}

/// Where TLSRPT reports end up.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsrptCollectors {
    pub mailto: String,
    pub mailto_records: PathBuf,
    pub https_url: Option<String>,
    pub https_records: Option<PathBuf>,
}

/// One message a lab receiver accepted, as it recorded it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedMessage {
    pub id: String,
    pub host: String,
    pub ip: IpAddr,
    pub peer: Option<String>,
    pub helo: Option<String>,
    pub mail_from: String,
    /// ESMTP parameters of MAIL FROM, keys upper case, `None` for a parameter without value.
    pub mail_params: BTreeMap<String, Option<String>>,
    pub rcpts: Vec<ReceivedRcpt>,
    pub tls: bool,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    /// The server name the client sent in its TLS ClientHello.
    pub sni: Option<String>,
    pub size: u64,
    data: String,
    data_encoding: String,
    /// Unix time, seconds.
    pub time: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedRcpt {
    pub address: String,
    pub params: BTreeMap<String, Option<String>>,
}

/// One HTTPS request a lab host received (MTA-STS fetches, TLSRPT `https:` reports).
#[derive(Debug, Clone, Deserialize)]
pub struct HttpsRequest {
    pub host: String,
    pub method: String,
    pub path: String,
    /// Header names lower case.
    pub headers: BTreeMap<String, String>,
    pub sni: Option<String>,
    body: String,
    pub time: f64,
}

impl Lab {
    /// Reads the running lab's description and checks that its resolver answers; fails with
    /// [`NOT_UP`] otherwise, so tests that need the lab fail loudly instead of being skipped.
    pub fn get() -> anyhow::Result<Lab> {
        let path = lab_json_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => bail!("{NOT_UP} ({} unreadable: {e})", path.display()),
        };
        let lab: Lab = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab description", path.display()))?;
        ensure!(
            lab.run_dir.join("services.ready").exists(),
            "{NOT_UP} (its services are not running)"
        );
        if let Err(e) = probe_resolver(lab.resolver, RESOLVER_PROBE_TIMEOUT) {
            bail!(
                "{NOT_UP} (its resolver {} does not answer: {e:#})",
                lab.resolver
            );
        }
        Ok(lab)
    }

    /// The validating resolver (unbound): AD on signed answers, SERVFAIL on bogus ones.
    /// Serves `state` of a lab zone that has states (`tests/lab/switch`), then waits past the
    /// zone's short TTL so that resolvers and their caches see it.
    pub async fn switch(&self, zone: &str, state: &str) -> anyhow::Result<()> {
        // The running lab's own script, beside its run directory.
        let script = self
            .run_dir
            .parent()
            .context("the lab's run directory has no parent")?
            .join("switch");
        let done = tokio::process::Command::new(&script)
            .args([zone, state])
            .output()
            .await
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            done.status.success(),
            "{} {zone} {state}: {}",
            script.display(),
            String::from_utf8_lossy(&done.stderr)
        );
        tokio::time::sleep(SWITCH_SETTLE).await;
        Ok(())
    }

    pub fn resolver(&self) -> SocketAddr {
        self.resolver
    }

    /// A recursive resolver (unbound) that does not validate: it passes signatures through,
    /// broken ones included, so strictmx's in-process validation must judge them itself.
    pub fn nonvalidating_resolver(&self) -> SocketAddr {
        self.nonvalidating_resolver
    }

    /// The authoritative server (nsd) serving every lab zone.
    pub fn authoritative(&self) -> SocketAddr {
        self.authoritative
    }

    /// PEM file with the lab's root CA, the only web-PKI root lab certificates chain to.
    pub fn ca_bundle(&self) -> &Path {
        &self.ca_bundle
    }

    /// The lab root's DNSKEY records in zone-file form, for in-process DNSSEC validation.
    pub fn trust_anchor(&self) -> &Path {
        &self.trust_anchor
    }

    /// The lab root's DS record in zone-file form.
    pub fn trust_anchor_ds(&self) -> &Path {
        &self.trust_anchor_ds
    }

    /// PEM file with the private CA that only TLSA usage 2 records vouch for.
    pub fn dane_ta_ca(&self) -> &Path {
        &self.dane_ta_ca
    }

    /// The certificates `host` serves, DER, leaf first (for `[[rule]] pins`).
    pub fn chain(&self, host: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        let path = self
            .host(host)?
            .chain
            .as_ref()
            .with_context(|| format!("{host} serves no certificate"))?;
        read_pem_certificates(path)
    }

    /// The lab intermediate CA's certificate, DER: it issues every valid leaf.
    pub fn intermediate_ca(&self) -> anyhow::Result<Vec<u8>> {
        let path = self
            .intermediate_ca
            .as_ref()
            .context("this lab.json names no intermediate_ca: run tests/lab/down and up")?;
        read_pem_certificates(path)?
            .into_iter()
            .next()
            .with_context(|| format!("{} holds no certificate", path.display()))
    }

    /// A host by any of its DNS names (`mx1.multi.test`, `mta-sts.sts-enforce.test`).
    pub fn host(&self, name: &str) -> anyhow::Result<&LabHost> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        self.hosts
            .get(&key)
            .with_context(|| format!("the lab has no host named {name} (see tests/lab/world.py)"))
    }

    /// A host's loopback address.
    pub fn addr(&self, name: &str) -> anyhow::Result<IpAddr> {
        Ok(self.host(name)?.ip)
    }

    /// The MTA-STS policy domain `domain`.
    pub fn sts(&self, domain: &str) -> anyhow::Result<&StsHost> {
        self.sts
            .get(domain.trim_end_matches('.'))
            .with_context(|| format!("the lab has no MTA-STS domain {domain}"))
    }

    pub fn tlsrpt(&self) -> &TlsrptCollectors {
        &self.tlsrpt
    }

    /// Every message the receiver behind `host` accepted, oldest first. For a stripper, the
    /// messages its backend received.
    pub fn received(&self, host: &str) -> anyhow::Result<Vec<ReceivedMessage>> {
        read_records(&self.host(host)?.records)
    }

    /// The messages `host` accepted for `rcpt`: with [`unique_rcpt`], only this test's mail.
    pub fn received_for(&self, host: &str, rcpt: &str) -> anyhow::Result<Vec<ReceivedMessage>> {
        let mut all = self.received(host)?;
        all.retain(|m| m.has_rcpt(rcpt));
        Ok(all)
    }

    /// Every request the MTA-STS policy hosts received.
    pub fn sts_requests(&self) -> anyhow::Result<Vec<HttpsRequest>> {
        let any = self
            .sts
            .values()
            .next()
            .context("the lab has no MTA-STS hosts")?;
        read_records(&self.host(&any.host)?.records)
    }

    /// Every report POSTed to the TLSRPT `https:` collector.
    pub fn tlsrpt_https_reports(&self) -> anyhow::Result<Vec<HttpsRequest>> {
        let path = self
            .tlsrpt
            .https_records
            .as_ref()
            .context("the lab has no TLSRPT https collector")?;
        read_records(path)
    }
}

impl ReceivedMessage {
    /// Whether `rcpt` is among the accepted recipients (case-insensitive).
    pub fn has_rcpt(&self, rcpt: &str) -> bool {
        self.rcpts
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(rcpt))
    }

    /// The message as received after un-dot-stuffing (RFC 5321 section 4.5.2).
    pub fn body(&self) -> anyhow::Result<Vec<u8>> {
        match self.data_encoding.as_str() {
            "text" => Ok(self.data.clone().into_bytes()),
            "base64" => base64_decode(&self.data),
            other => bail!("record {} has unknown data encoding {other}", self.id),
        }
    }
}

impl HttpsRequest {
    pub fn body(&self) -> anyhow::Result<Vec<u8>> {
        base64_decode(&self.body)
    }
}

/// A recipient address no other test uses, so each test sees only its own mail in the shared
/// receivers' records (tests run in parallel, so clearing the records would race).
pub fn unique_rcpt(domain: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("t{}-{nanos}-{n}@{domain}", std::process::id())
}

/// Polls `probe` until it returns `Some`, an error, or `timeout` passes.
pub async fn wait_for<T, F>(timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> anyhow::Result<Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!("no outcome within {timeout:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn read_pem_certificates(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .map(|cert| cert.map(|der| der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    ensure!(
        !certificates.is_empty(),
        "{} holds no certificate",
        path.display()
    );
    Ok(certificates)
}

fn lab_json_path() -> PathBuf {
    match std::env::var_os("STRICTMX_LAB_RUN") {
        Some(dir) => PathBuf::from(dir).join("lab.json"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab/run/lab.json"),
    }
}

/// Reads a JSON-lines records file. A last line without its newline is a record still being
/// written by the lab and is left for the next read.
fn read_records<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading lab records {}", path.display()))?;
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a lab record", path.display(), i + 1))
        })
        .collect()
}

/// Sends one `test. SOA` query and expects an answer with RCODE 0 (RFC 1035 section 4.1.1).
fn probe_resolver(resolver: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    const ID: u16 = 0x5a17;
    let mut query = Vec::with_capacity(26);
    query.extend_from_slice(&ID.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    query.extend_from_slice(b"\x04test\x00");
    query.extend_from_slice(&[0, 6, 0, 1]); // SOA, IN
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a UDP socket")?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(resolver)?;
    socket.send(&query)?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).context("waiting for the answer")?;
    ensure!(n >= 12, "answer of {n} bytes is shorter than a DNS header");
    ensure!(buf[..2] == ID.to_be_bytes(), "answer has another query id");
    ensure!(buf[2] & 0x80 != 0, "answer is not a response");
    let rcode = buf[3] & 0x0f;
    ensure!(rcode == 0, "answer has rcode {rcode}");
    Ok(())
}

/// Standard base64 (RFC 4648 section 4) with padding; the lab's Python side writes it.
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.trim().as_bytes();
    ensure!(
        bytes.len().is_multiple_of(4),
        "base64 length {} is not a multiple of 4",
        bytes.len()
    );
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = (i + 1) * 4 == bytes.len();
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        ensure!(pad <= 2 && (pad == 0 || last), "misplaced base64 padding");
        let mut acc = 0u32;
        for &c in &quad[..4 - pad] {
            let v = value(c).with_context(|| format!("{:?} is not base64", c as char))?;
            acc = (acc << 6) | v;
        }
        acc <<= 6 * pad as u32;
        let decoded = acc.to_be_bytes();
        out.extend_from_slice(&decoded[1..4 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB_JSON: &str = r#"{
      "version": 1, "run_dir": "/nonexistent/run",
      "authoritative": "127.77.0.2:53", "resolver": "127.77.0.3:53",
      "nonvalidating_resolver": "127.77.0.4:53",
      "ca_bundle": "/r/pki/ca.pem", "trust_anchor": "/r/trust-anchor.key",
      "trust_anchor_ds": "/r/trust-anchor.ds", "dane_ta_ca": "/r/pki/dane-ta-ca/cert.pem",
      "hosts": {
        "mx1.multi.test": {"ip": "127.77.1.1", "port": 25, "kind": "receiver", "tls": "valid",
                           "listening": true, "records": "/r/records/mx1.multi.test.jsonl"},
        "mx.dane-ta.test": {"ip": "127.77.1.32", "port": 25, "kind": "receiver", "tls": "dane-ta",
                            "listening": true, "records": "/r/records/mx.dane-ta.test.jsonl"},
        "mta-sts.sts-enforce.test": {"ip": "127.77.2.1", "port": 443, "kind": "mta-sts",
                                     "tls": "valid", "listening": true, "records": "/r/sts.jsonl"}
      },
      "sts": {"sts-enforce.test": {"host": "mta-sts.sts-enforce.test", "ip": "127.77.2.1",
              "variant": "ok", "mode": "enforce", "policy": "version: STSv1\r\n"}},
      "tlsrpt": {"mailto": "tlsrpt@tlsrpt.test", "mailto_records": "/r/records/mx.tlsrpt.test.jsonl",
                 "https_url": "https://reports.tlsrpt.test/tlsrpt", "https_records": null}
    }"#;

    const RECORD: &str = r#"{"cipher": "TLS_AES_256_GCM_SHA384", "data": "aGk=", "data_encoding": "base64", "helo": "c", "host": "mx1.multi.test", "id": "m-1", "ip": "127.77.1.1", "mail_from": "a@b.test", "mail_params": {"BODY": "8BITMIME", "SMTPUTF8": null}, "peer": "127.0.0.1:4000", "rcpts": [{"address": "X@multi.test", "params": {"NOTIFY": "FAILURE"}}], "size": 2, "sni": "mx1.multi.test", "time": 1.5, "tls": true, "tls_version": "TLSv1.3"}"#;

    fn lab() -> Lab {
        serde_json::from_str(LAB_JSON).expect("the sample lab.json is valid")
    }

    #[test]
    fn hosts_are_found_by_any_spelling_of_their_name() {
        let lab = lab();
        for name in ["mx1.multi.test", "MX1.multi.test.", "mx1.MULTI.test"] {
            assert_eq!(
                lab.addr(name).unwrap(),
                IpAddr::from([127, 77, 1, 1]),
                "{name}"
            );
        }
        assert_eq!(lab.host("mx.dane-ta.test").unwrap().tls, TlsSetup::DaneTa);
        assert_eq!(
            lab.host("mta-sts.sts-enforce.test").unwrap().kind,
            HostKind::MtaSts
        );
    }

    #[test]
    fn an_unknown_host_is_an_error_that_names_it() {
        let err = lab().host("mx.nowhere.test").unwrap_err().to_string();
        assert!(err.contains("mx.nowhere.test"), "{err}");
    }

    #[test]
    fn records_are_parsed_and_a_half_written_last_line_is_left_for_later() {
        let dir = std::env::temp_dir().join(format!("strictmx-lab-test-{}", unique_rcpt("x")));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.jsonl");
        std::fs::write(&path, format!("{RECORD}\n\n{}", &RECORD[..40])).unwrap();
        let got: Vec<ReceivedMessage> = read_records(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.len(), 1);
        let m = &got[0];
        assert!(m.tls && m.has_rcpt("x@MULTI.test") && !m.has_rcpt("y@multi.test"));
        assert_eq!(m.body().unwrap(), b"hi");
        assert_eq!(m.mail_params.get("SMTPUTF8"), Some(&None));
        assert_eq!(m.rcpts[0].params["NOTIFY"].as_deref(), Some("FAILURE"));
    }

    #[test]
    fn base64_decoding_follows_rfc_4648() {
        // RFC 4648 section 10 test vectors.
        let table: &[(&str, &[u8])] = &[
            ("", b""),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg==", b"foob"),
            ("Zm9vYmE=", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
        ];
        for (text, want) in table {
            assert_eq!(base64_decode(text).unwrap(), *want, "{text}");
        }
        for bad in ["Zg=", "Z===", "Zg==Zm9v", "Zm9*"] {
            assert!(base64_decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unique_recipients_never_repeat() {
        let a = unique_rcpt("multi.test");
        let b = unique_rcpt("multi.test");
        assert_ne!(a, b);
        assert!(a.ends_with("@multi.test"));
    }

    #[test]
    fn a_resolver_that_never_answers_fails_the_probe() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = silent.local_addr().unwrap();
        assert!(probe_resolver(addr, Duration::from_millis(100)).is_err());
    }

    #[tokio::test]
    async fn wait_for_returns_the_outcome_once_it_appears() {
        let mut calls = 0;
        let got = wait_for(Duration::from_secs(5), || {
            calls += 1;
            Ok((calls == 3).then_some(calls))
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn wait_for_gives_up_after_its_timeout() {
        let err = wait_for(Duration::from_millis(120), || Ok(None::<()>))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no outcome within"), "{err}");
    }

    /// Needs the running lab: fails, never skips, when `tests/lab/up` has not run (CI runs
    /// `tests/run-all`, which starts the lab first).
    #[test]
    fn the_running_lab_answers_and_describes_its_hosts() {
        let lab = Lab::get().unwrap();
        assert!(lab.ca_bundle().exists() && lab.trust_anchor().exists());
        assert!(lab.addr("mx1.multi.test").unwrap().is_loopback());
        probe_resolver(lab.nonvalidating_resolver(), RESOLVER_PROBE_TIMEOUT).unwrap();
        lab.received("mx1.multi.test").unwrap();
        lab.sts_requests().unwrap();
        lab.tlsrpt_https_reports().unwrap();
        assert_eq!(
            lab.chain("mx1.multi.test").unwrap().len(),
            2,
            "leaf and intermediate"
        );
        assert!(!lab.intermediate_ca().unwrap().is_empty());
        assert_eq!(
            lab.host("mx.tls12.test").unwrap().max_tls.as_deref(),
            Some("TLSv1.2")
        );
    }
}
