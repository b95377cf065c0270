//! A minimal SMTP client for submitting test mail, and a scriptable in-process SMTP receiver.
//!
//! Both speak over real sockets on 127.0.0.1. The receiver records what it got, so a test can
//! assert on the envelope and the body exactly as they crossed the wire. For benchmarks it can
//! also offer STARTTLS, answer the end of data late, and refuse a fixed share of recipients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// One reply: its code and its lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// A plaintext SMTP client for tests: send commands, read replies, submit a message.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<TcpStream>,
    /// The greeting the server sent.
    pub greeting: Reply,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .context("connect timed out")??;
        tcp.set_nodelay(true)?;
        let mut stream = BufReader::new(tcp);
        let greeting = read_reply(&mut stream).await?;
        Ok(Client { stream, greeting })
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, self.stream.get_mut().write_all(bytes))
            .await
            .context("write timed out")??;
        Ok(())
    }

    pub async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        read_reply(&mut self.stream).await
    }

    /// Sends a message body after a 354: dot-stuffs it and ends it with CRLF.CRLF.
    pub async fn data(&mut self, body: &[u8]) -> anyhow::Result<Reply> {
        let reply = self.command("DATA").await?;
        if reply.code != 354 {
            return Ok(reply);
        }
        let mut wire = Vec::with_capacity(body.len() + 8);
        let mut at_line_start = true;
        for &b in body {
            if at_line_start && b == b'.' {
                wire.push(b'.');
            }
            wire.push(b);
            at_line_start = b == b'\n';
        }
        if !wire.ends_with(b"\r\n") {
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        self.send_raw(&wire).await?;
        self.read_reply().await
    }

    /// EHLO, MAIL, RCPT for each recipient, DATA; returns the reply to the end of data.
    /// Any unexpected reply before that is an error naming the command.
    pub async fn send_mail(
        &mut self,
        from: &str,
        to: &[&str],
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        let ehlo = self.command("EHLO client.test").await?;
        expect(&ehlo, 250, "EHLO")?;
        self.transaction(from, to, body).await
    }

    /// MAIL, RCPT, DATA on a session that has already said EHLO.
    pub async fn transaction(
        &mut self,
        from: &str,
        to: &[&str],
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        let mail = self.command(&format!("MAIL FROM:<{from}>")).await?;
        expect(&mail, 250, "MAIL")?;
        for rcpt in to {
            let r = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            expect(&r, 250, "RCPT")?;
        }
        self.data(body).await
    }

    pub async fn quit(mut self) -> anyhow::Result<()> {
        let _ = self.command("QUIT").await?;
        Ok(())
    }
}

fn expect(reply: &Reply, code: u16, what: &str) -> anyhow::Result<()> {
    if reply.code != code {
        bail!("{what}: expected {code}, got {} {}", reply.code, reply.text);
    }
    Ok(())
}

async fn read_reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> anyhow::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(IO_TIMEOUT, r.read_line(&mut line))
            .await
            .context("reading a reply timed out")??;
        if n == 0 {
            bail!("connection closed while reading a reply (so far: {lines:?})");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.len() < 3 {
            bail!("malformed reply line {line:?}");
        }
        let code: u16 = line[..3]
            .parse()
            .with_context(|| format!("malformed reply line {line:?}"))?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if last {
            return Ok(Reply {
                code,
                text: lines.join("\n"),
            });
        }
    }
}

/// How the receiver answers each recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RcptScript {
    /// 250 to every recipient.
    #[default]
    Accept,
    /// 451 4.3.0 the first time a recipient is seen, 250 after that.
    TempFailFirst,
    /// 550 5.1.1 to every recipient.
    Reject,
    /// Chosen by a hash of the address, so the same address always gets the same treatment:
    /// `temp_per_mille` of addresses get 451 4.3.0 the first time they are seen (250 after),
    /// `reject_per_mille` get 550 5.1.1 every time, the rest 250.
    Mixed {
        temp_per_mille: u32,
        reject_per_mille: u32,
    },
}

impl RcptScript {
    /// The reply to `RCPT TO:<addr>`, given how often `addr` was seen before this one.
    fn reply(self, addr: &str, seen_before: u32) -> &'static str {
        const ACCEPT: &str = "250 2.1.5 ok\r\n";
        const TEMP: &str = "451 4.3.0 try again later\r\n";
        const REJECT: &str = "550 5.1.1 no such user here\r\n";
        match self {
            RcptScript::Accept => ACCEPT,
            RcptScript::Reject => REJECT,
            RcptScript::TempFailFirst if seen_before == 0 => TEMP,
            RcptScript::TempFailFirst => ACCEPT,
            RcptScript::Mixed {
                temp_per_mille,
                reject_per_mille,
            } => {
                let bucket = fnv1a(addr.as_bytes()) % 1000;
                if bucket < reject_per_mille {
                    REJECT
                } else if bucket < reject_per_mille + temp_per_mille && seen_before == 0 {
                    TEMP
                } else {
                    ACCEPT
                }
            }
        }
    }

    /// The code of the reply to the first `RCPT TO:<addr>`: 250, 451 or 550.
    pub fn first_reply_code(self, addr: &str) -> u16 {
        match self.reply(addr, 0).as_bytes()[0] {
            b'5' => 550,
            b'4' => 451,
            _ => 250,
        }
    }
}

/// FNV-1a, 32 bits: a stable hash, the same in every run and build.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Everything a [`Sink`] can be told; `SinkOptions::default()` is the plain accepting sink.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    pub script: RcptScript,
    /// Offer STARTTLS with this server configuration (see [`self_signed_tls`]).
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    /// While set and false, STARTTLS is not offered after all (as if a middlebox stripped
    /// it); connections made after a change see it.
    pub starttls_on: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Wait this long before answering the end of data.
    pub data_reply_delay: Duration,
    /// Keep at most this many bytes of each body (`None`: all of it). Benchmarks keep the
    /// headers only, so that many large messages do not fill the load generator's memory.
    pub body_limit: Option<usize>,
}

/// A TLS server configuration with a fresh self-signed certificate for 127.0.0.1, which
/// opportunistic delivery accepts.
pub fn self_signed_tls() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.self_signed(&key)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("test key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    Ok(Arc::new(config))
}

/// A message as the receiver got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    /// The MAIL FROM parameters, as sent.
    pub mail_params: String,
    pub rcpts: Vec<String>,
    /// The body, dot-unstuffed, lines ending in CRLF, without the final dot.
    pub body: Vec<u8>,
}

impl Received {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An SMTP receiver on 127.0.0.1, answering per its script and recording every message.
#[derive(Debug, Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<Mutex<usize>>,
    counts: Arc<Counts>,
}

/// Running totals, readable without copying what was received.
#[derive(Debug, Default)]
struct Counts {
    messages: AtomicUsize,
    recipients: AtomicUsize,
    tls_sessions: AtomicUsize,
    resumed_tls_sessions: AtomicUsize,
}

#[derive(Debug, Default)]
struct SinkState {
    seen: HashMap<String, u32>,
}

impl Sink {
    /// Starts a receiver that does not offer STARTTLS.
    pub async fn start(script: RcptScript) -> anyhow::Result<Sink> {
        Sink::start_at("127.0.0.1:0".parse()?, script).await
    }

    /// [`Sink::start`] on a chosen loopback address, e.g. one a relay already tried in vain.
    pub async fn start_at(addr: std::net::SocketAddr, script: RcptScript) -> anyhow::Result<Sink> {
        Sink::start_with(
            addr,
            SinkOptions {
                script,
                ..SinkOptions::default()
            },
        )
        .await
    }

    /// A receiver on a chosen loopback address (port 0 for any) with every option.
    pub async fn start_with(addr: SocketAddr, options: SinkOptions) -> anyhow::Result<Sink> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "test sinks listen on loopback only"
        );
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sink = Sink {
            addr,
            received: Arc::default(),
            connections: Arc::default(),
            counts: Arc::default(),
        };
        let state = Arc::new(Mutex::new(SinkState::default()));
        let options = Arc::new(options);
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                *s.connections.lock().expect("sink lock poisoned") += 1;
                let s = s.clone();
                let state = state.clone();
                let options = options.clone();
                tokio::spawn(async move {
                    let _ = s.serve(tcp, &options, &state).await;
                });
            }
        });
        Ok(sink)
    }

    /// Messages received so far (one per DATA, whatever its number of recipients).
    pub fn message_count(&self) -> usize {
        self.counts.messages.load(Ordering::Relaxed)
    }

    /// Recipients received so far, over all messages.
    pub fn recipient_count(&self) -> usize {
        self.counts.recipients.load(Ordering::Relaxed)
    }

    /// Sessions that completed a STARTTLS handshake.
    pub fn tls_sessions(&self) -> usize {
        self.counts.tls_sessions.load(Ordering::Relaxed)
    }

    /// Of those, the sessions that resumed an earlier one (RFC 8446 §2.2).
    pub fn resumed_tls_sessions(&self) -> usize {
        self.counts.resumed_tls_sessions.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("sink lock poisoned").clone()
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().expect("sink lock poisoned")
    }

    /// Waits until at least `n` messages arrived, or fails after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Copied only once there is enough: a poll must not copy every body received.
            let got = self.message_count();
            if got >= n {
                return Ok(self.received());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("expected {n} message(s) at the sink within {timeout:?}, got {got}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One connection: the plaintext session, then, after STARTTLS, the session over TLS.
    async fn serve(
        &self,
        tcp: TcpStream,
        options: &SinkOptions,
        state: &Mutex<SinkState>,
    ) -> anyhow::Result<()> {
        let mut plain = BufReader::new(tcp);
        write(&mut plain, "220 sink.test ESMTP test sink\r\n").await?;
        let stripped = options
            .starttls_on
            .as_ref()
            .is_some_and(|on| !on.load(Ordering::Relaxed));
        let acceptor = options
            .starttls
            .clone()
            .filter(|_| !stripped)
            .map(TlsAcceptor::from);
        let Some(acceptor) = acceptor else {
            self.session(&mut plain, options, state, false).await?;
            return Ok(());
        };
        if !self.session(&mut plain, options, state, true).await? {
            return Ok(());
        }
        // RFC 3207 section 4.2: nothing the client sent before the handshake may be used after it.
        anyhow::ensure!(plain.buffer().is_empty(), "data pipelined after STARTTLS");
        let tls = acceptor.accept(plain.into_inner()).await?;
        self.counts.tls_sessions.fetch_add(1, Ordering::Relaxed);
        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.counts
                .resumed_tls_sessions
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut secure = BufReader::new(tls);
        self.session(&mut secure, options, state, false).await?;
        Ok(())
    }

    /// Commands until QUIT or the end of the connection (false), or until a STARTTLS that was
    /// offered and answered 220 (true).
    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut BufReader<S>,
        options: &SinkOptions,
        state: &Mutex<SinkState>,
        offer_starttls: bool,
    ) -> anyhow::Result<bool> {
        let mut from = String::new();
        let mut params = String::new();
        let mut rcpts = Vec::new();
        loop {
            let mut line = String::new();
            if s.read_line(&mut line).await? == 0 {
                return Ok(false);
            }
            let upper = line.to_ascii_uppercase();
            let cmd = upper.trim_end();
            if cmd.starts_with("EHLO") {
                let starttls = if offer_starttls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                let ehlo = format!(
                    "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n{starttls}250 SIZE 52428800\r\n"
                );
                write(s, &ehlo).await?;
            } else if cmd == "STARTTLS" && offer_starttls {
                write(s, "220 2.0.0 ready to start TLS\r\n").await?;
                return Ok(true);
            } else if cmd.starts_with("HELO") {
                write(s, "250 sink.test\r\n").await?;
            } else if cmd.starts_with("MAIL FROM:") {
                let rest = line.trim_end()[10..].trim();
                let (addr, p) = split_path(rest);
                from = addr;
                params = p;
                rcpts.clear();
                write(s, "250 2.1.0 ok\r\n").await?;
            } else if cmd.starts_with("RCPT TO:") {
                let (addr, _) = split_path(line.trim_end()[8..].trim());
                let seen_before = match options.script {
                    RcptScript::Accept | RcptScript::Reject => 0,
                    RcptScript::TempFailFirst | RcptScript::Mixed { .. } => {
                        let mut st = state.lock().expect("sink lock poisoned");
                        let n = st.seen.entry(addr.clone()).or_insert(0);
                        *n += 1;
                        *n - 1
                    }
                };
                let reply = options.script.reply(&addr, seen_before);
                if reply.starts_with('2') {
                    rcpts.push(addr);
                }
                write(s, reply).await?;
            } else if cmd == "DATA" {
                if rcpts.is_empty() {
                    write(s, "554 5.5.1 no valid recipients\r\n").await?;
                    continue;
                }
                write(s, "354 go ahead\r\n").await?;
                let mut body = read_data(s).await?;
                if let Some(limit) = options.body_limit {
                    body.truncate(limit);
                }
                if !options.data_reply_delay.is_zero() {
                    tokio::time::sleep(options.data_reply_delay).await;
                }
                self.counts
                    .recipients
                    .fetch_add(rcpts.len(), Ordering::Relaxed);
                self.received
                    .lock()
                    .expect("sink lock poisoned")
                    .push(Received {
                        mail_from: from.clone(),
                        mail_params: params.clone(),
                        rcpts: std::mem::take(&mut rcpts),
                        body,
                    });
                self.counts.messages.fetch_add(1, Ordering::Relaxed);
                write(s, "250 2.0.0 queued at the sink\r\n").await?;
            } else if cmd == "RSET" {
                rcpts.clear();
                write(s, "250 2.0.0 ok\r\n").await?;
            } else if cmd == "NOOP" {
                write(s, "250 2.0.0 ok\r\n").await?;
            } else if cmd == "QUIT" {
                write(s, "221 2.0.0 bye\r\n").await?;
                return Ok(false);
            } else {
                write(s, "502 5.5.2 not implemented\r\n").await?;
            }
        }
    }
}

fn split_path(rest: &str) -> (String, String) {
    let rest = rest.trim();
    match (rest.find('<'), rest.find('>')) {
        (Some(a), Some(b)) if a < b => {
            (rest[a + 1..b].to_string(), rest[b + 1..].trim().to_string())
        }
        _ => (rest.to_string(), String::new()),
    }
}

async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    text: &str,
) -> anyhow::Result<()> {
    s.get_mut().write_all(text.as_bytes()).await?;
    Ok(())
}

async fn read_data<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        if s.read_until(b'\n', &mut line).await? == 0 {
            bail!("connection closed during DATA");
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(body);
        }
        let line = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        body.extend_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixed_script_refuses_its_shares_of_addresses_and_lets_a_retried_451_through() {
        let script = RcptScript::Mixed {
            temp_per_mille: 50,
            reject_per_mille: 20,
        };
        let addrs: Vec<String> = (0..20_000).map(|n| format!("r{n}@dest.test")).collect();
        let share = |code| {
            addrs
                .iter()
                .filter(|a| script.first_reply_code(a) == code)
                .count() as f64
                / addrs.len() as f64
        };
        assert!((share(451) - 0.05).abs() < 0.01, "451 share {}", share(451));
        assert!((share(550) - 0.02).abs() < 0.01, "550 share {}", share(550));
        for a in &addrs {
            let retried = script.reply(a, 1);
            match script.first_reply_code(a) {
                550 => assert!(retried.starts_with("550"), "{a}: 550 every time"),
                _ => assert!(retried.starts_with("250"), "{a}: 250 once seen"),
            }
        }
    }
}
