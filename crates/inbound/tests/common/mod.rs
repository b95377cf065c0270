//! Loopback fixtures for the inbound tests: an in-memory queue, a server builder on
//! 127.0.0.1:0, a small SMTP client that speaks plain or TLS, and throwaway certificates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use strictmx_inbound::{
    Inbound, InboundHandle, InboundSettings, ListenerSettings, Queue, QueueError, Role,
    ServerTlsSettings, User,
};
use strictmx_protocol::{Reply, ReplyParse};
use strictmx_spool::{Envelope, IdempotencyKey, MessageId, Submitted, TransferReceipt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// What the test queue answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    Accept,
    FailTransient,
    FailPermanent,
}

#[derive(Debug, thiserror::Error)]
#[error("test queue refused the message")]
pub struct TestQueueError {
    transient: bool,
}

impl QueueError for TestQueueError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// An accepted envelope and body.
pub type Accepted = (Envelope, Vec<u8>);

/// Keeps accepted messages in memory.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    pub messages: Arc<Mutex<Vec<Accepted>>>,
    mode: QueueMode,
    reserved: Arc<AtomicU64>,
    /// Idempotency keys and their first answers.
    keys: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>,
}

impl Queue for MemoryQueue {
    type Error = TestQueueError;

    fn reserve_id(&self) -> MessageId {
        0xff00 + self.reserved.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn submit(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> Result<MessageId, TestQueueError> {
        match self.mode {
            QueueMode::Accept => {
                let mut messages = self.messages.lock().expect("test queue lock");
                messages.push((envelope, body));
                Ok(id)
            }
            QueueMode::FailTransient => Err(TestQueueError { transient: true }),
            QueueMode::FailPermanent => Err(TestQueueError { transient: false }),
        }
    }

    async fn submit_once(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: Vec<u8>,
        once: IdempotencyKey,
    ) -> Result<Submitted, TestQueueError> {
        let IdempotencyKey { key, answer, .. } = once;
        if let Some(first) = self.keys.lock().expect("test queue lock").get(&key) {
            return Ok(Submitted::Repeat(first.clone()));
        }
        let id = self.submit(id, envelope, body).await?;
        self.keys
            .lock()
            .expect("test queue lock")
            .insert(key, answer);
        Ok(Submitted::New(id))
    }

    /// Keeps no memory of transfers: every one is queued (the spool's tests cover repeats).
    async fn submit_transfer(
        &self,
        id: MessageId,
        _transfer: String,
        envelope: Envelope,
        body: Vec<u8>,
    ) -> Result<TransferReceipt, TestQueueError> {
        let id = self.submit(id, envelope, body).await?;
        Ok(TransferReceipt {
            id: Some(id),
            repeated: 0,
        })
    }
}

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";

/// Test certificate for "localhost", written to a private temp directory.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub settings: ServerTlsSettings,
    pub der: CertificateDer<'static>,
}

pub fn test_cert() -> TestCert {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let dir = std::env::temp_dir().join(format!(
        "strictmx-inbound-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    TestCert {
        settings: ServerTlsSettings {
            cert_path,
            key_path,
        },
        der: certified.cert.der().clone(),
    }
}

/// Builder for a server on 127.0.0.1:0.
pub struct TestServer {
    pub settings: InboundSettings,
    pub mode: QueueMode,
    pub cert: Option<TestCert>,
}

pub struct Running {
    pub addrs: Vec<(SocketAddr, Role)>,
    pub handle: InboundHandle,
    pub queue: MemoryQueue,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub cert: Option<TestCert>,
}

impl TestServer {
    pub fn new(role: Role) -> TestServer {
        let mut settings = InboundSettings {
            listeners: vec![ListenerSettings {
                address: SocketAddr::from(([127, 0, 0, 1], 0)),
                role,
                insecure_allow_plaintext_auth: false,
            }],
            hostname: "mx.test.example".into(),
            ..InboundSettings::default()
        };
        settings.limits.auth_failure_delay = Duration::from_millis(10);
        settings.users = vec![User {
            name: USER.into(),
            argon2_phc_hash: strictmx_inbound::hash_password(PASSWORD),
            senders: Vec::new(),
            require_tls: None,
        }];
        TestServer {
            settings,
            mode: QueueMode::Accept,
            cert: None,
        }
    }

    pub fn with_tls(mut self) -> TestServer {
        let cert = test_cert();
        self.settings.tls = Some(cert.settings.clone());
        self.cert = Some(cert);
        self
    }

    pub fn untrusted(mut self) -> TestServer {
        self.settings.trusted_networks.clear();
        self
    }

    pub fn insecure_plaintext_auth(mut self) -> TestServer {
        self.settings.listeners[0].insecure_allow_plaintext_auth = true;
        self
    }

    pub fn dkim(mut self, key: strictmx_inbound::DkimKey) -> TestServer {
        self.settings.dkim.push(key);
        self
    }

    pub fn queue_mode(mut self, mode: QueueMode) -> TestServer {
        self.mode = mode;
        self
    }

    /// The queue a started server would get, without starting one.
    pub fn start_queue_only(self) -> MemoryQueue {
        MemoryQueue {
            messages: Arc::default(),
            mode: self.mode,
            reserved: Arc::default(),
            keys: Arc::default(),
        }
    }

    pub fn start(self) -> Running {
        let queue = MemoryQueue {
            messages: Arc::default(),
            mode: self.mode,
            reserved: Arc::default(),
            keys: Arc::default(),
        };
        let inbound = Inbound::bind(self.settings, queue.clone()).expect("bind");
        let addrs = inbound.local_addrs();
        let handle = inbound.handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(inbound.run(shutdown.clone()));
        Running {
            addrs,
            handle,
            queue,
            shutdown,
            task,
            cert: self.cert,
        }
    }
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0].0
    }

    pub async fn connect(&self) -> Client<TcpStream> {
        Client::new(TcpStream::connect(self.addr()).await.expect("connect"))
    }

    pub fn messages(&self) -> Vec<Accepted> {
        self.queue.messages.lock().expect("test queue lock").clone()
    }

    pub fn tls_connector(&self) -> TlsConnector {
        let cert = self.cert.as_ref().expect("server has a certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der.clone()).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// Connect and handshake at once (submissions, RFC 8314).
    pub async fn connect_tls(&self) -> Client<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr()).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let tls = self
            .tls_connector()
            .connect(name, tcp)
            .await
            .expect("handshake");
        Client::new(tls)
    }

    /// EHLO, STARTTLS, handshake; returns the TLS client before its second EHLO.
    pub async fn connect_starttls(&self) -> Client<TlsStream<TcpStream>> {
        let mut client = self.connect().await;
        client.expect(220).await;
        client.command("EHLO client.test").await.code(250);
        client.command("STARTTLS").await.code(220);
        let name = ServerName::try_from("localhost").expect("name");
        let tls = self
            .tls_connector()
            .connect(name, client.into_inner())
            .await
            .expect("handshake");
        Client::new(tls)
    }
}

/// A deliberately simple SMTP client for asserting on replies.
pub struct Client<S> {
    stream: S,
    input: Vec<u8>,
}

pub trait ReplyExt {
    fn code(&self, code: u16) -> &Self;
    fn has_status(&self, status: &str) -> &Self;
}

impl ReplyExt for Reply {
    fn code(&self, code: u16) -> &Self {
        assert_eq!(self.code, code, "unexpected reply {self:?}");
        self
    }

    fn has_status(&self, status: &str) -> &Self {
        let found = self.status.map(|s| s.to_string());
        assert_eq!(found.as_deref(), Some(status), "unexpected reply {self:?}");
        self
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Client<S> {
        Client {
            stream,
            input: Vec::new(),
        }
    }

    pub fn into_inner(self) -> S {
        assert!(self.input.is_empty(), "unread input before TLS");
        self.stream
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Read one reply; panics after 10 s so a hung server fails the test instead of hanging it.
    pub async fn reply(&mut self) -> Reply {
        tokio::time::timeout(Duration::from_secs(10), self.read_reply())
            .await
            .expect("a reply within 10 s")
            .expect("a reply before the connection closed")
    }

    /// `None` when the server closed the connection.
    pub async fn read_reply(&mut self) -> Option<Reply> {
        loop {
            match Reply::parse(&self.input).expect("well-formed reply") {
                ReplyParse::Complete { reply, consumed } => {
                    self.input.drain(..consumed);
                    return Some(reply);
                }
                ReplyParse::Incomplete => {
                    let mut chunk = [0u8; 4096];
                    let count = self.stream.read(&mut chunk).await.unwrap_or(0);
                    if count == 0 {
                        return None;
                    }
                    self.input.extend_from_slice(&chunk[..count]);
                }
            }
        }
    }

    pub async fn expect(&mut self, code: u16) -> Reply {
        let reply = self.reply().await;
        reply.code(code);
        reply
    }

    pub async fn command(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// MAIL, RCPT and DATA for one sender and recipient, each answered as expected, so the
    /// caller can send content.
    pub async fn open_data(&mut self) {
        self.command("MAIL FROM:<a@example.org>").await.code(250);
        self.command("RCPT TO:<b@example.net>").await.code(250);
        self.command("DATA").await.code(354);
    }

    /// True once the server has closed the connection (EOF within 10 s).
    pub async fn closed(&mut self) -> bool {
        tokio::time::timeout(Duration::from_secs(10), self.read_reply())
            .await
            .expect("close within 10 s")
            .is_none()
    }
}

/// Base64 of SASL PLAIN credentials.
pub fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn unused_path() -> PathBuf {
    std::env::temp_dir().join("strictmx-inbound-test-missing/cert.pem")
}
