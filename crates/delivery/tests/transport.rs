//! The transport against real SMTP receivers on 127.0.0.1:0 written here: plain, STARTTLS with
//! rcgen certificates, refusing, pipelining. Routes point the test domain at them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use strictmx_delivery::job::{
    Deliver, DeliveryJob, DeliveryReport, Diagnostic, JobMessage, JobRecipient, RecipientOutcome,
};
use strictmx_delivery::transport::{
    FactSource, Route, RouteCredentials, Transport, TransportSettings,
};
use strictmx_policy::{
    AddressFailure, DefaultRequirement, Dnssec, DnssecHealth, DomainFacts, HostFacts, MxFacts,
    PolicySettings, StsFacts, StsRecordFacts, TlsaFacts,
};
use strictmx_protocol::{MailParams, RcptParams};
use strictmx_resolve::{DnsResolver, DnssecMode, ResolverSettings};
use strictmx_spool::{AttemptOutcome, ClientInfo, Envelope, EnvelopeRecipient, MessageKind};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const DOMAIN: &str = "dest.test";

/// What a receiver saw of one mail transaction.
#[derive(Debug, Clone, Default)]
struct Transaction {
    mail: String,
    rcpts: Vec<String>,
    body: Vec<u8>,
    tls: bool,
    pipelined: bool,
}

#[derive(Debug, Default)]
struct Log {
    connections: usize,
    commands: Vec<String>,
    transactions: Vec<Transaction>,
    /// The (user, password) pairs clients sent with AUTH, decoded.
    logins: Vec<(String, String)>,
    /// How each TLS handshake went: full or resumed.
    handshakes: Vec<rustls::HandshakeKind>,
    /// For each RSET: whether the commands after it came in the same write (RFC 2920).
    rsets_led_a_group: Vec<bool>,
}

/// A relay's AUTH (RFC 4954): what it advertises and whom it lets in.
#[derive(Clone)]
struct Login {
    /// The EHLO line, e.g. `AUTH PLAIN LOGIN`.
    advertise: &'static str,
    user: &'static str,
    password: &'static str,
    /// Advertise AUTH before STARTTLS too (as a careless relay would).
    in_plaintext: bool,
}

type RcptReply = Arc<dyn Fn(&str) -> &'static str + Send + Sync>;

/// How a test receiver behaves.
#[derive(Clone)]
struct Behaviour {
    extensions: Vec<&'static str>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The TLS configuration from the second connection on, e.g. a renewed certificate.
    tls_later: Option<Arc<rustls::ServerConfig>>,
    /// Replaces the EHLO reply, e.g. to reject it.
    ehlo_reply: Option<&'static str>,
    mail_reply: &'static str,
    rcpt_reply: RcptReply,
    end_reply: &'static str,
    /// Read MAIL..DATA before answering anything: only a pipelining client gets through.
    demand_pipelining: bool,
    /// Answer STARTTLS with 220, then send garbage instead of a handshake.
    break_tls: bool,
    /// Offer AUTH and refuse MAIL (530) until a client logged in.
    login: Option<Login>,
    /// Close the connection after each finished transaction, as a server that drops idle
    /// clients would.
    hang_up_after_data: bool,
}

impl Behaviour {
    fn plain() -> Self {
        Behaviour {
            extensions: vec!["8BITMIME", "SMTPUTF8", "SIZE 100000", "DSN"],
            tls: None,
            tls_later: None,
            ehlo_reply: None,
            mail_reply: "250 2.1.0 ok",
            rcpt_reply: Arc::new(|_| "250 2.1.5 ok"),
            end_reply: "250 2.0.0 queued as 1",
            demand_pipelining: false,
            break_tls: false,
            login: None,
            hang_up_after_data: false,
        }
    }

    fn with_login(mut self, login: Login) -> Self {
        self.login = Some(login);
        self
    }

    fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = {
                    let mut log = shared.lock().expect("log");
                    log.connections += 1;
                    log.connections
                };
                let behaviour = behaviour.clone();
                let log = shared.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let Some(mut stream) = serve(stream, &behaviour, &log, false).await else {
                        return;
                    };
                    if behaviour.break_tls {
                        // Wait for the ClientHello, then answer with something that is not TLS.
                        let mut hello = [0u8; 512];
                        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut hello).await;
                        let _ = stream.write_all(b"this is not tls\r\n").await;
                        return;
                    }
                    let later = behaviour.tls_later.clone().filter(|_| connection > 1);
                    let Some(config) = later.or_else(|| behaviour.tls.clone()) else {
                        return;
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    if let Ok(tls) = acceptor.accept(stream).await {
                        if let Some(kind) = tls.get_ref().1.handshake_kind() {
                            log.lock().expect("log").handshakes.push(kind);
                        }
                        serve(tls, &behaviour, &log, true).await;
                    }
                });
            }
        });
        Receiver { addr, log }
    }

    fn transactions(&self) -> Vec<Transaction> {
        self.log.lock().expect("log").transactions.clone()
    }

    fn connections(&self) -> usize {
        self.log.lock().expect("log").connections
    }

    fn rsets_led_a_group(&self) -> Vec<bool> {
        self.log.lock().expect("log").rsets_led_a_group.clone()
    }

    fn commands(&self) -> Vec<String> {
        self.log.lock().expect("log").commands.clone()
    }

    fn logins(&self) -> Vec<(String, String)> {
        self.log.lock().expect("log").logins.clone()
    }

    fn handshakes(&self) -> Vec<rustls::HandshakeKind> {
        self.log.lock().expect("log").handshakes.clone()
    }
}

async fn read_line<S: AsyncRead + AsyncWrite + Unpin>(reader: &mut BufReader<S>) -> Option<String> {
    let mut line = Vec::new();
    let read = reader.read_until(b'\n', &mut line).await.ok()?;
    if read == 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&line).trim_end().to_owned())
}

async fn write<S: AsyncRead + AsyncWrite + Unpin>(reader: &mut BufReader<S>, text: &str) {
    let _ = reader
        .get_mut()
        .write_all(format!("{text}\r\n").as_bytes())
        .await;
}

/// Reads DATA content up to the lone dot, undoing dot-stuffing (RFC 5321 §4.5.2).
async fn read_body<S: AsyncRead + AsyncWrite + Unpin>(reader: &mut BufReader<S>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            return body;
        }
        if line == b".\r\n" {
            return body;
        }
        let content = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        body.extend_from_slice(content);
    }
}

/// One SMTP dialogue; returns the stream when the client asked for STARTTLS.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    behaviour: &Behaviour,
    log: &Mutex<Log>,
    tls: bool,
) -> Option<S> {
    let mut reader = BufReader::new(stream);
    if !tls {
        write(&mut reader, "220 sink.test ESMTP").await;
    }
    let mut current: Option<Transaction> = None;
    let mut accepted = 0;
    let mut logged_in = false;
    while let Some(line) = read_line(&mut reader).await {
        log.lock().expect("log").commands.push(line.clone());
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                if let Some(reply) = behaviour.ehlo_reply {
                    write(&mut reader, reply).await;
                    continue;
                }
                let mut lines = vec!["sink.test".to_owned()];
                if !tls && behaviour.tls.is_some() {
                    lines.push("STARTTLS".to_owned());
                }
                if behaviour.demand_pipelining {
                    lines.push("PIPELINING".to_owned());
                }
                lines.extend(behaviour.extensions.iter().map(|e| (*e).to_owned()));
                if let Some(login) = behaviour.login.as_ref().filter(|l| tls || l.in_plaintext) {
                    lines.push(login.advertise.to_owned());
                }
                let last = lines.len() - 1;
                for (i, text) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    write(&mut reader, &format!("250{sep}{text}")).await;
                }
            }
            "HELO" => write(&mut reader, "250 sink.test").await,
            "STARTTLS" => {
                write(&mut reader, "220 2.0.0 ready for tls").await;
                return Some(reader.into_inner());
            }
            "MAIL" if behaviour.demand_pipelining => {
                let mut transaction = Transaction {
                    mail: line.clone(),
                    tls,
                    ..Transaction::default()
                };
                // Wait for the whole batch before answering: a client that waits for the
                // MAIL reply never sends DATA, and the transaction is not recorded.
                let batch = tokio::time::timeout(Duration::from_secs(2), async {
                    let mut rcpts = Vec::new();
                    while let Some(next) = read_line(&mut reader).await {
                        if next.eq_ignore_ascii_case("DATA") {
                            return Some(rcpts);
                        }
                        rcpts.push(next);
                    }
                    None
                })
                .await;
                let Ok(Some(rcpts)) = batch else {
                    return None;
                };
                transaction.pipelined = true;
                write(&mut reader, behaviour.mail_reply).await;
                for rcpt in &rcpts {
                    write(&mut reader, (behaviour.rcpt_reply)(rcpt)).await;
                }
                transaction.rcpts = rcpts;
                write(&mut reader, "354 go ahead").await;
                transaction.body = read_body(&mut reader).await;
                write(&mut reader, behaviour.end_reply).await;
                log.lock().expect("log").transactions.push(transaction);
                if behaviour.hang_up_after_data {
                    return None;
                }
            }
            "AUTH" => {
                let Some(login) = &behaviour.login else {
                    write(&mut reader, "502 5.5.2 unknown command").await;
                    continue;
                };
                let Some((user, password)) = read_login(&mut reader, &line).await else {
                    write(&mut reader, "501 5.5.2 cannot decode").await;
                    continue;
                };
                logged_in = user == login.user && password == login.password;
                log.lock().expect("log").logins.push((user, password));
                let reply = if logged_in {
                    "235 2.7.0 authentication succeeded"
                } else {
                    "535 5.7.8 authentication credentials invalid"
                };
                write(&mut reader, reply).await;
            }
            "MAIL" if behaviour.login.is_some() && !logged_in => {
                write(&mut reader, "530 5.7.0 authentication required").await;
            }
            // RFC 5321 §4.1.4: no MAIL while a transaction is open.
            "MAIL" if current.is_some() => {
                write(&mut reader, "503 5.5.1 nested MAIL command").await;
            }
            "MAIL" => {
                current = Some(Transaction {
                    mail: line.clone(),
                    tls,
                    ..Transaction::default()
                });
                accepted = 0;
                write(&mut reader, behaviour.mail_reply).await;
            }
            "RCPT" => {
                let reply = (behaviour.rcpt_reply)(&line);
                if reply.starts_with('2') {
                    accepted += 1;
                    if let Some(t) = current.as_mut() {
                        t.rcpts.push(line.clone());
                    }
                }
                write(&mut reader, reply).await;
            }
            "DATA" => {
                let Some(mut transaction) = current.take().filter(|_| accepted > 0) else {
                    write(&mut reader, "554 5.5.1 no valid recipients").await;
                    continue;
                };
                write(&mut reader, "354 go ahead").await;
                transaction.body = read_body(&mut reader).await;
                write(&mut reader, behaviour.end_reply).await;
                log.lock().expect("log").transactions.push(transaction);
                if behaviour.hang_up_after_data {
                    return None;
                }
            }
            "RSET" => {
                let led = !reader.buffer().is_empty();
                log.lock().expect("log").rsets_led_a_group.push(led);
                current = None;
                write(&mut reader, "250 2.0.0 reset").await;
            }
            "QUIT" => {
                write(&mut reader, "221 2.0.0 bye").await;
                return None;
            }
            _ => write(&mut reader, "502 5.5.2 unknown command").await,
        }
    }
    None
}

/// The user and password of `AUTH PLAIN <initial response>` (RFC 4616) or of an AUTH LOGIN
/// exchange, which this reads to its end.
async fn read_login<S: AsyncRead + AsyncWrite + Unpin>(
    reader: &mut BufReader<S>,
    line: &str,
) -> Option<(String, String)> {
    use base64::Engine;
    let decode = |text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    let mut words = line.split_ascii_whitespace().skip(1);
    match words.next()?.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let message = decode(words.next()?)?;
            let mut parts = message.split('\0').skip(1);
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        }
        "LOGIN" => {
            write(reader, "334 VXNlcm5hbWU6").await;
            let user = decode(&read_line(reader).await?)?;
            write(reader, "334 UGFzc3dvcmQ6").await;
            let password = decode(&read_line(reader).await?)?;
            Some((user, password))
        }
        _ => None,
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it; returns (server config, CA PEM).
fn certificates() -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf params");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
    (Arc::new(config), ca.pem())
}

fn settings(port: u16, default_requirement: DefaultRequirement) -> TransportSettings {
    TransportSettings {
        helo_name: "client.test".to_owned(),
        connect_timeout: Duration::from_secs(5),
        greeting_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
        routes: vec![Route {
            domain: DOMAIN.to_owned(),
            host: "127.0.0.1".to_owned(),
            port,
            credentials: None,
        }],
        policy: PolicySettings {
            default_requirement,
            insecure_plaintext_fallback: false,
            ..PolicySettings::default()
        },
        ..TransportSettings::default()
    }
}

/// Facts from the scripted DNS server, which signs nothing: MX and addresses only, with no
/// DNSSEC status, no TLSA and no MTA-STS, so every plan here is made without DANE or MTA-STS.
#[derive(Debug)]
struct PlainDns(DnsResolver);

impl FactSource for PlainDns {
    async fn domain_facts(&self, domain: &str) -> DomainFacts {
        let mx = match self.0.mx(domain).await {
            Ok(answer) => answer.to_facts(),
            Err(error) => error.to_mx_facts(),
        };
        let names: Vec<String> = match &mx {
            MxFacts::Hosts(hosts) => hosts.iter().map(|host| host.name.clone()).collect(),
            MxFacts::Implicit { host } => vec![host.clone()],
            _ => Vec::new(),
        };
        let mut hosts = Vec::with_capacity(names.len());
        for name in names {
            hosts.push(self.host_facts(&name, 25).await);
        }
        DomainFacts {
            domain: domain.to_owned(),
            mx,
            mx_dnssec: Dnssec::Insecure,
            hosts,
            sts: StsFacts {
                record: StsRecordFacts::Absent,
                policy: None,
                fetch_failure: None,
            },
            dnssec_health: DnssecHealth::Working {
                mode: "trust-resolver".to_owned(),
            },
        }
    }

    async fn host_facts(&self, host: &str, _port: u16) -> HostFacts {
        let addresses = self
            .0
            .addresses(host)
            .await
            .map_err(|error| AddressFailure {
                transient: error.is_transient(),
                reason: error.to_string(),
            });
        HostFacts {
            name: host.to_owned(),
            canonical: None,
            addresses,
            addresses_dnssec: Dnssec::Insecure,
            tlsa: TlsaFacts::NotApplicable {
                reason: "the scripted DNS server signs nothing".to_owned(),
            },
        }
    }
}

fn transport(settings: TransportSettings) -> Transport<PlainDns> {
    // Routes point at IP literals, so this resolver is never asked anything.
    let resolver = DnsResolver::new(&ResolverSettings {
        nameservers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9)],
        timeout: Duration::from_millis(200),
        attempts: 1,
        // The scripted DNS server sets no AD bit: every answer is insecure, never validated.
        dnssec: DnssecMode::TrustResolver,
        ..ResolverSettings::default()
    })
    .expect("resolver");
    Transport::new(settings, PlainDns(resolver)).expect("transport")
}

fn message(id: u64, from: &str, rcpts: &[&str], body: &[u8]) -> JobMessage {
    let envelope = Envelope {
        mail_from: from.to_owned(),
        params: MailParams::default(),
        recipients: rcpts
            .iter()
            .map(|address| EnvelopeRecipient {
                address: (*address).to_owned(),
                params: RcptParams::default(),
            })
            .collect(),
        received_at: SystemTime::now(),
        client: ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "submitter.test".to_owned(),
            auth_user: None,
            tls: None,
        },
        kind: MessageKind::Normal,
        require_tls: None,
    };
    JobMessage {
        id,
        envelope: Arc::new(envelope),
        recipients: rcpts
            .iter()
            .enumerate()
            .map(|(index, address)| JobRecipient {
                index,
                address: (*address).to_owned(),
            })
            .collect(),
        body: Arc::new(body.to_vec()),
    }
}

fn job(messages: Vec<JobMessage>) -> DeliveryJob {
    DeliveryJob {
        domain: DOMAIN.to_owned(),
        messages,
    }
}

fn outcomes(report: &DeliveryReport, message: usize) -> Vec<RecipientOutcome> {
    let mut results = report.messages[message].recipients.clone();
    results.sort_by_key(|r| r.index);
    results.into_iter().map(|r| r.outcome).collect()
}

fn status(outcome: &RecipientOutcome) -> &str {
    match outcome {
        RecipientOutcome::Delivered { .. } => "delivered",
        RecipientOutcome::Deferred { status, .. } | RecipientOutcome::Bounced { status, .. } => {
            status
        }
    }
}

const BODY: &[u8] = b"Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n";

#[tokio::test]
async fn a_plain_receiver_gets_the_envelope_and_the_dot_unstuffed_body() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let transport = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ));
    let report = transport
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;

    let seen = receiver.transactions();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].mail,
        format!("MAIL FROM:<alice@src.test> SIZE={}", BODY.len())
    );
    assert_eq!(seen[0].rcpts, ["RCPT TO:<bob@dest.test>"]);
    assert_eq!(seen[0].body, BODY);
    assert!(!seen[0].tls);

    assert!(!report.destination_unreachable);
    assert_eq!(
        outcomes(&report, 0),
        [RecipientOutcome::Delivered {
            remote_mta: "127.0.0.1".to_owned(),
            reply: "250 2.0.0 queued as 1".to_owned(),
        }]
    );
    let attempts = &report.messages[0].attempts;
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(attempt.domain, DOMAIN);
    assert_eq!(attempt.mx.as_deref(), Some("127.0.0.1"));
    assert_eq!(attempt.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(attempt.tls_version, None);
    assert_eq!(attempt.cert_verified, None);
    assert_eq!(attempt.policy, "route");
    assert_eq!(attempt.recipients, [0]);
    assert_eq!(attempt.outcome, AttemptOutcome::Delivered);
    assert_eq!(attempt.reply, "250 2.0.0 queued as 1");
}

#[tokio::test]
async fn opportunistic_starttls_accepts_an_untrusted_certificate_and_records_it() {
    let (config, _) = certificates();
    let receiver = Receiver::start(Behaviour::plain().with_tls(config)).await;
    let transport = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ));
    let report = transport
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;

    let seen = receiver.transactions();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].tls, "the mail went over TLS");
    // RFC 3207 §4.2: EHLO again after the handshake.
    let ehlos = receiver
        .commands()
        .iter()
        .filter(|c| c.starts_with("EHLO"))
        .count();
    assert_eq!(ehlos, 2);
    let attempt = &report.messages[0].attempts[0];
    assert_eq!(attempt.outcome, AttemptOutcome::Delivered);
    assert!(
        attempt
            .tls_version
            .as_deref()
            .is_some_and(|v| v.starts_with("TLSv1."))
    );
    assert!(attempt.cipher.is_some());
    assert_eq!(attempt.cert_verified, Some(false));
}

#[tokio::test]
async fn verified_plans_deliver_when_the_certificate_chains_to_the_extra_ca() {
    let (config, ca_pem) = certificates();
    let receiver = Receiver::start(Behaviour::plain().with_tls(config)).await;
    let dir = std::env::temp_dir().join(format!("strictmx-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = dir.join("verified-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca");
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Verified);
    settings.extra_ca_file = Some(ca_file);
    let report = transport(settings)
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;

    assert_eq!(status(&outcomes(&report, 0)[0]), "delivered");
    let attempt = &report.messages[0].attempts[0];
    assert_eq!(attempt.cert_verified, Some(true));
    assert!(receiver.transactions()[0].tls);
}

/// RFC 8446 §2.2: a new connection resumes the session of an earlier one. The resumed
/// handshake shows no certificate, so the chain kept from the full handshake is checked again:
/// the second message is delivered under `verified` as the first was, never judged unchecked.
#[tokio::test]
async fn a_resumed_tls_session_is_judged_on_the_chain_of_its_full_handshake() {
    let (config, ca_pem) = certificates();
    let receiver = Receiver::start(Behaviour::plain().with_tls(config)).await;
    let dir = std::env::temp_dir().join(format!("strictmx-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = dir.join("resume-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca");
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Verified);
    settings.extra_ca_file = Some(ca_file);
    settings.max_messages_per_connection = 1;
    let report = transport(settings)
        .deliver(job(vec![
            message(1, "alice@src.test", &["bob@dest.test"], BODY),
            message(2, "alice@src.test", &["carol@dest.test"], BODY),
        ]))
        .await;

    assert_eq!(
        receiver.handshakes(),
        [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed]
    );
    for index in 0..2 {
        assert_eq!(status(&outcomes(&report, index)[0]), "delivered");
        assert_eq!(report.messages[index].attempts[0].cert_verified, Some(true));
    }
    assert_eq!(receiver.transactions().len(), 2);
}

/// A server that renewed its certificate may still resume sessions made under the old one,
/// whose chain the resumed session carries. When the policy refuses that old chain, the
/// transport forgets the host's sessions and judges the current certificate in a full
/// handshake, instead of deferring until the sessions expire.
#[tokio::test]
async fn a_resumed_session_refused_on_an_old_chain_is_tried_again_with_a_full_handshake() {
    let (old, _) = certificates();
    let (renewed, ca_pem) = certificates();
    let mut renewed = (*renewed).clone();
    renewed.session_storage = old.session_storage.clone();
    let mut behaviour = Behaviour::plain().with_tls(old);
    behaviour.tls_later = Some(Arc::new(renewed));
    let receiver = Receiver::start(behaviour).await;
    let dir = std::env::temp_dir().join(format!("strictmx-renewed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = dir.join("renewed-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca");
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Verified);
    settings.extra_ca_file = Some(ca_file);
    let transport = transport(settings);

    // The old certificate does not verify: deferred, and the session's tickets are kept.
    let first = transport
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    assert!(matches!(
        outcomes(&first, 0)[0],
        RecipientOutcome::Deferred { .. }
    ));
    let second = transport
        .deliver(job(vec![message(
            2,
            "alice@src.test",
            &["carol@dest.test"],
            BODY,
        )]))
        .await;

    assert_eq!(
        receiver.handshakes(),
        [
            rustls::HandshakeKind::Full,
            rustls::HandshakeKind::Resumed,
            rustls::HandshakeKind::Full
        ]
    );
    assert_eq!(status(&outcomes(&second, 0)[0]), "delivered");
    assert_eq!(second.messages[0].attempts.len(), 1);
    assert_eq!(second.messages[0].attempts[0].cert_verified, Some(true));
    assert_eq!(receiver.transactions().len(), 1);
}

#[tokio::test]
async fn verified_plans_never_send_mail_when_the_certificate_does_not_verify() {
    let (config, _) = certificates();
    let receiver = Receiver::start(Behaviour::plain().with_tls(config)).await;
    let report = transport(settings(receiver.addr.port(), DefaultRequirement::Verified))
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;

    assert!(receiver.transactions().is_empty());
    assert!(!receiver.commands().iter().any(|c| c.starts_with("MAIL")));
    let outcome = &outcomes(&report, 0)[0];
    // RFC 3463 X.7.5: cryptographic failure; deferred, then the runner retries.
    assert_eq!(status(outcome), "4.7.5");
    assert!(matches!(outcome, RecipientOutcome::Deferred { .. }));
    assert_eq!(
        report.messages[0].attempts[0].outcome,
        AttemptOutcome::Deferred
    );
}

#[tokio::test]
async fn encrypted_plans_never_send_mail_in_plaintext_when_starttls_is_missing() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Encrypted,
    ))
    .deliver(job(vec![message(
        1,
        "alice@src.test",
        &["bob@dest.test"],
        BODY,
    )]))
    .await;

    assert!(!receiver.commands().iter().any(|c| c.starts_with("MAIL")));
    let outcome = &outcomes(&report, 0)[0];
    assert!(matches!(outcome, RecipientOutcome::Deferred { .. }));
    // RFC 3463 X.7.4: security features not supported.
    assert_eq!(status(outcome), "4.7.4");
    assert!(!report.destination_unreachable, "the host answered");
}

/// A failure DSN about a REQUIRETLS message, as `dsn::compose` queues it: null sender,
/// REQUIRETLS, kind `Dsn`.
fn requiretls_report() -> JobMessage {
    let mut report = message(1, "", &["alice@dest.test"], BODY);
    let envelope = Arc::make_mut(&mut report.envelope);
    envelope.params.requiretls = true;
    envelope.kind = MessageKind::Dsn;
    report
}

// RFC 8689 §5 (issue 14, item 9): the report about a REQUIRETLS message is protected like the
// message. It used to be planned as ordinary mail and go out in plaintext or over unverified TLS.
#[tokio::test]
async fn a_report_about_a_requiretls_message_never_goes_in_plaintext_or_over_unverified_tls() {
    let (config, _) = certificates();
    for behaviour in [Behaviour::plain(), Behaviour::plain().with_tls(config)] {
        let tls = behaviour.tls.is_some();
        let receiver = Receiver::start(behaviour).await;
        let report = transport(settings(
            receiver.addr.port(),
            DefaultRequirement::Opportunistic,
        ))
        .deliver(job(vec![requiretls_report()]))
        .await;
        assert!(
            !receiver.commands().iter().any(|c| c.starts_with("MAIL")),
            "STARTTLS offered: {tls}; {:?}",
            receiver.commands()
        );
        let outcome = &outcomes(&report, 0)[0];
        assert!(
            matches!(outcome, RecipientOutcome::Deferred { .. }),
            "{outcome:?}"
        );
        assert_eq!(report.messages[0].attempts[0].policy, "requiretls");
    }
}

// RFC 8689 §5: "the REQUIRETLS parameter SHOULD NOT cause a bounce message to be discarded even
// if the next-hop relay does not advertise REQUIRETLS"; it is sent where the server offers it.
#[tokio::test]
async fn a_report_about_a_requiretls_message_goes_over_verified_tls_with_the_parameter_where_offered()
 {
    let (config, ca_pem) = certificates();
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca");
    for advertised in [false, true] {
        let mut behaviour = Behaviour::plain().with_tls(config.clone());
        if advertised {
            behaviour.extensions.push("REQUIRETLS");
        }
        let receiver = Receiver::start(behaviour).await;
        let mut settings = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
        settings.extra_ca_file = Some(ca_file.clone());
        let report = transport(settings)
            .deliver(job(vec![requiretls_report()]))
            .await;
        assert_eq!(status(&outcomes(&report, 0)[0]), "delivered");
        assert_eq!(report.messages[0].attempts[0].cert_verified, Some(true));
        let seen = receiver.transactions();
        assert!(seen[0].tls);
        let expected = if advertised {
            format!("MAIL FROM:<> SIZE={} REQUIRETLS", BODY.len())
        } else {
            format!("MAIL FROM:<> SIZE={}", BODY.len())
        };
        assert_eq!(seen[0].mail, expected);
    }
}

#[tokio::test]
async fn a_4xx_to_rcpt_defers_that_recipient_and_the_others_are_delivered() {
    let mut behaviour = Behaviour::plain();
    behaviour.rcpt_reply = Arc::new(|line| {
        if line.contains("busy@") {
            "452 4.2.2 mailbox full"
        } else if line.contains("gone@") {
            "550 5.1.1 no such user"
        } else {
            "250 2.1.5 ok"
        }
    });
    let receiver = Receiver::start(behaviour).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![message(
        1,
        "alice@src.test",
        &["busy@dest.test", "gone@dest.test", "bob@dest.test"],
        BODY,
    )]))
    .await;

    let outcomes = outcomes(&report, 0);
    assert_eq!(
        outcomes[0],
        RecipientOutcome::Deferred {
            remote_mta: Some("127.0.0.1".to_owned()),
            diagnostic: Diagnostic::Smtp("452 4.2.2 mailbox full".to_owned()),
            status: "4.2.2".to_owned(),
        }
    );
    assert_eq!(
        outcomes[1],
        RecipientOutcome::Bounced {
            remote_mta: Some("127.0.0.1".to_owned()),
            diagnostic: Diagnostic::Smtp("550 5.1.1 no such user".to_owned()),
            status: "5.1.1".to_owned(),
        }
    );
    assert_eq!(status(&outcomes[2]), "delivered");
    assert_eq!(
        receiver.transactions()[0].rcpts,
        ["RCPT TO:<bob@dest.test>"]
    );
    assert_eq!(
        report.messages[0].attempts[0].outcome,
        AttemptOutcome::Deferred
    );
}

#[tokio::test]
async fn a_5xx_to_every_rcpt_bounces_them_without_sending_data() {
    let mut behaviour = Behaviour::plain();
    behaviour.rcpt_reply = Arc::new(|_| "550 5.1.1 no such user");
    let receiver = Receiver::start(behaviour).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![message(
        1,
        "alice@src.test",
        &["gone@dest.test"],
        BODY,
    )]))
    .await;

    assert_eq!(status(&outcomes(&report, 0)[0]), "5.1.1");
    assert!(!receiver.commands().iter().any(|c| c == "DATA"));
    assert_eq!(
        report.messages[0].attempts[0].outcome,
        AttemptOutcome::Bounced
    );
}

#[tokio::test]
async fn a_message_needing_smtputf8_bounces_at_a_server_without_it() {
    let mut behaviour = Behaviour::plain();
    behaviour.extensions = vec!["8BITMIME"];
    let receiver = Receiver::start(behaviour).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![message(
        1,
        "alice@src.test",
        &["jörg@dest.test"],
        BODY,
    )]))
    .await;

    // RFC 6531 §3.4: never send an SMTPUTF8 message to a server that did not offer it.
    let outcome = &outcomes(&report, 0)[0];
    assert!(matches!(outcome, RecipientOutcome::Bounced { .. }));
    assert_eq!(status(outcome), "5.6.7");
    assert!(!receiver.commands().iter().any(|c| c.starts_with("MAIL")));
}

#[tokio::test]
async fn a_pipelining_server_gets_mail_rcpt_and_data_in_one_batch() {
    let mut behaviour = Behaviour::plain();
    behaviour.demand_pipelining = true;
    let receiver = Receiver::start(behaviour).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![message(
        1,
        "alice@src.test",
        &["bob@dest.test", "carol@dest.test"],
        BODY,
    )]))
    .await;

    let seen = receiver.transactions();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].pipelined);
    assert_eq!(seen[0].rcpts.len(), 2);
    assert_eq!(seen[0].body, BODY);
    assert!(
        outcomes(&report, 0)
            .iter()
            .all(|o| status(o) == "delivered")
    );
}

// RFC 5321 §3.3, §4.1.1.4: the reply to the end of the data ends the transaction, so the next
// MAIL needs no RSET before it.
#[tokio::test]
async fn messages_of_one_job_share_a_connection_without_rset_after_a_finished_transaction() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![
        message(1, "alice@src.test", &["bob@dest.test"], b"one\r\n"),
        message(2, "", &["carol@dest.test"], b"two\r\n"),
    ]))
    .await;

    assert_eq!(receiver.connections(), 1);
    let seen = receiver.transactions();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].mail, "MAIL FROM:<> SIZE=5", "null sender kept");
    assert_eq!(seen[1].body, b"two\r\n");
    assert_eq!(
        receiver.commands().iter().filter(|c| *c == "RSET").count(),
        0
    );
    assert_eq!(report.messages.len(), 2);
    assert!(report.messages.iter().all(|m| m.attempts.len() == 1));
}

// RFC 5321 §4.1.1.5: a transaction left open (MAIL accepted, every RCPT refused, so no DATA) is
// reset before the next MAIL, which the server would otherwise refuse as nested (§4.1.4).
#[tokio::test]
async fn a_transaction_left_open_is_reset_before_the_next_message() {
    let mut behaviour = Behaviour::plain();
    behaviour.rcpt_reply = Arc::new(|line| {
        if line.contains("gone@") {
            "550 5.1.1 no such user"
        } else {
            "250 2.1.5 ok"
        }
    });
    let receiver = Receiver::start(behaviour).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![
        message(1, "alice@src.test", &["gone@dest.test"], b"one\r\n"),
        message(2, "alice@src.test", &["carol@dest.test"], b"two\r\n"),
    ]))
    .await;

    assert_eq!(receiver.connections(), 1);
    assert_eq!(
        receiver.commands().iter().filter(|c| *c == "RSET").count(),
        1
    );
    let seen = receiver.transactions();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"two\r\n");
    assert!(matches!(
        outcomes(&report, 0)[..],
        [RecipientOutcome::Bounced { .. }]
    ));
    assert!(matches!(
        outcomes(&report, 1)[..],
        [RecipientOutcome::Delivered { .. }]
    ));
}

#[tokio::test]
async fn the_per_connection_limit_opens_a_new_connection() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
    settings.max_messages_per_connection = 1;
    transport(settings)
        .deliver(job(vec![
            message(1, "a@src.test", &["bob@dest.test"], b"one\r\n"),
            message(2, "a@src.test", &["bob@dest.test"], b"two\r\n"),
        ]))
        .await;
    assert_eq!(receiver.connections(), 2);
    assert_eq!(receiver.transactions().len(), 2);
}

#[tokio::test]
async fn an_ehlo_rejected_with_5xx_falls_back_to_helo_under_an_opportunistic_plan() {
    let mut behaviour = Behaviour::plain();
    behaviour.ehlo_reply = Some("502 5.5.1 what is EHLO");
    let receiver = Receiver::start(behaviour).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![message(
        1,
        "alice@src.test",
        &["bob@dest.test"],
        b"hi\r\n",
    )]))
    .await;

    assert!(receiver.commands().iter().any(|c| c == "HELO client.test"));
    assert_eq!(status(&outcomes(&report, 0)[0]), "delivered");
    assert_eq!(
        receiver.transactions()[0].mail,
        "MAIL FROM:<alice@src.test>"
    );
}

#[tokio::test]
async fn an_unreachable_destination_is_reported_as_such() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let report = transport(settings(port, DefaultRequirement::Opportunistic))
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;

    assert!(report.destination_unreachable);
    let outcome = &outcomes(&report, 0)[0];
    assert!(matches!(outcome, RecipientOutcome::Deferred { .. }));
    // RFC 3463 X.4.1: no answer from host.
    assert_eq!(status(outcome), "4.4.1");
    let attempt = &report.messages[0].attempts[0];
    assert_eq!(attempt.outcome, AttemptOutcome::Deferred);
    assert_eq!(attempt.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
}

#[tokio::test]
async fn a_421_greeting_defers_without_sending_anything() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"421 4.3.2 too busy\r\n").await;
        }
    });
    let report = transport(settings(port, DefaultRequirement::Opportunistic))
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    let outcome = &outcomes(&report, 0)[0];
    assert_eq!(
        *outcome,
        RecipientOutcome::Deferred {
            remote_mta: Some("127.0.0.1".to_owned()),
            diagnostic: Diagnostic::Smtp("421 4.3.2 too busy".to_owned()),
            status: "4.3.2".to_owned(),
        }
    );
    assert!(!report.destination_unreachable, "the host answered");
}

fn broken_tls() -> Behaviour {
    let (config, _) = certificates();
    let mut behaviour = Behaviour::plain().with_tls(config);
    behaviour.break_tls = true;
    behaviour
}

#[tokio::test]
async fn a_failed_handshake_never_falls_back_to_plaintext_by_default() {
    let receiver = Receiver::start(broken_tls()).await;
    let report = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ))
    .deliver(job(vec![message(
        1,
        "alice@src.test",
        &["bob@dest.test"],
        BODY,
    )]))
    .await;

    assert_eq!(receiver.connections(), 1);
    assert!(receiver.transactions().is_empty());
    assert_eq!(status(&outcomes(&report, 0)[0]), "4.7.5");
    // Issue 14: the record says why the handshake failed, not only that it did.
    let reply = &report.messages[0].attempts[0].reply;
    assert!(
        reply
            .strip_prefix("tls handshake failed: ")
            .is_some_and(|why| !why.is_empty()),
        "{reply:?}"
    );
}

#[tokio::test]
async fn the_insecure_fallback_retries_in_plaintext_after_a_failed_handshake() {
    let receiver = Receiver::start(broken_tls()).await;
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
    settings.policy.insecure_plaintext_fallback = true;
    let report = transport(settings)
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;

    assert_eq!(receiver.connections(), 2);
    let seen = receiver.transactions();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].tls);
    assert_eq!(status(&outcomes(&report, 0)[0]), "delivered");
    let attempts: Vec<AttemptOutcome> = report.messages[0]
        .attempts
        .iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        attempts,
        [AttemptOutcome::Deferred, AttemptOutcome::Delivered]
    );
}

#[tokio::test]
async fn data_sent_after_the_starttls_reply_ends_the_connection() {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = stream.write_all(b"220 sink\r\n").await;
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"250-sink\r\n250 STARTTLS\r\n").await;
            let _ = stream.read(&mut buf).await;
            // RFC 3207 §6: a reply injected after the 220 must not be taken as a TLS reply.
            let _ = stream.write_all(b"220 go\r\n250 injected\r\n").await;
            let _ = stream.read(&mut buf).await;
        }
    });
    let report = transport(settings(port, DefaultRequirement::Opportunistic))
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    let outcome = &outcomes(&report, 0)[0];
    assert!(matches!(outcome, RecipientOutcome::Deferred { .. }));
    assert_eq!(status(outcome), "4.7.5");
}

/// A minimal DNS server on 127.0.0.1:0: answers MX and A from `records` (name, type, rdata),
/// NXDOMAIN for any other name, an empty answer for other types of a known name.
/// A resolver asking only the scripted DNS server at `dns` (no AD bit: answers are insecure).
fn scripted_resolver(dns: SocketAddr) -> DnsResolver {
    DnsResolver::new(&ResolverSettings {
        nameservers: vec![dns],
        timeout: Duration::from_millis(500),
        attempts: 1,
        dnssec: DnssecMode::TrustResolver,
        ..ResolverSettings::default()
    })
    .expect("resolver")
}

async fn dns_server(records: Vec<(&'static str, u16, Vec<u8>)>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind udp");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
            let query = &buf[..len];
            let mut at = 12;
            let mut labels = Vec::new();
            while let Some(&n) = query.get(at) {
                at += 1;
                if n == 0 {
                    break;
                }
                let end = (at + usize::from(n)).min(query.len());
                labels.push(String::from_utf8_lossy(&query[at..end]).to_ascii_lowercase());
                at = end;
            }
            let (Some(&hi), Some(&lo)) = (query.get(at), query.get(at + 1)) else {
                continue;
            };
            let qtype = u16::from_be_bytes([hi, lo]);
            let name = labels.join(".");
            let known = records.iter().any(|(n, _, _)| *n == name);
            let answers: Vec<&Vec<u8>> = records
                .iter()
                .filter(|(n, t, _)| *n == name && *t == qtype)
                .map(|(_, _, data)| data)
                .collect();
            let rcode: u16 = if known { 0 } else { 3 };
            let mut out = query[0..2].to_vec();
            out.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&u16::try_from(answers.len()).expect("few").to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&query[12..at + 4]);
            for data in answers {
                out.extend_from_slice(&[0xC0, 0x0C]);
                out.extend_from_slice(&qtype.to_be_bytes());
                out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
                out.extend_from_slice(&u16::try_from(data.len()).expect("small").to_be_bytes());
                out.extend_from_slice(data);
            }
            let _ = socket.send_to(&out, peer).await;
        }
    });
    addr
}

fn mx_record(preference: u16, exchange: &str) -> Vec<u8> {
    let mut data = preference.to_be_bytes().to_vec();
    for label in exchange.split('.') {
        data.push(u8::try_from(label.len()).expect("short label"));
        data.extend_from_slice(label.as_bytes());
    }
    data.push(0);
    data
}

#[tokio::test]
async fn a_dead_first_mx_is_skipped_for_the_next_one_in_preference_order() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    // 127.0.0.2 is loopback too, but nothing listens there on the receiver's port.
    let dns = dns_server(vec![
        ("dest.test", 15, mx_record(20, "mx2.dest.test")),
        ("dest.test", 15, mx_record(10, "mx1.dest.test")),
        ("mx1.dest.test", 1, vec![127, 0, 0, 2]),
        ("mx2.dest.test", 1, vec![127, 0, 0, 1]),
    ])
    .await;
    let resolver = PlainDns(scripted_resolver(dns));
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
    settings.routes.clear();
    settings.smtp_port = receiver.addr.port();
    // These MX hosts are on loopback.
    settings.never_deliver_to.clear();
    let report = Transport::new(settings, resolver)
        .expect("transport")
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;

    assert_eq!(
        outcomes(&report, 0),
        [RecipientOutcome::Delivered {
            remote_mta: "mx2.dest.test".to_owned(),
            reply: "250 2.0.0 queued as 1".to_owned(),
        }]
    );
    let tried: Vec<(Option<&str>, AttemptOutcome, &str)> = report.messages[0]
        .attempts
        .iter()
        .map(|a| (a.mx.as_deref(), a.outcome, a.policy.as_str()))
        .collect();
    assert_eq!(
        tried,
        [
            (
                Some("mx1.dest.test"),
                AttemptOutcome::Deferred,
                "default-opportunistic"
            ),
            (
                Some("mx2.dest.test"),
                AttemptOutcome::Delivered,
                "default-opportunistic"
            ),
        ]
    );
    assert!(!report.destination_unreachable);
}

// Issue 14 and RFC 5321 §5.1: a route (or MX) that leads to one of our own listeners is a loop.
// It bounces with 5.4.6 and nothing is connected to, so the message cannot circle forever.
#[tokio::test]
async fn mail_routed_to_our_own_listener_bounces_as_a_loop_without_connecting() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let mut looping = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
    looping.own_listeners = vec![receiver.addr];
    let report = transport(looping)
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    let outcome = outcomes(&report, 0).remove(0);
    assert_eq!(status(&outcome), "5.4.6", "{outcome:?}");
    assert!(
        matches!(&outcome, RecipientOutcome::Bounced { diagnostic: Diagnostic::Local(text), .. }
            if text.contains("loops back to myself")),
        "{outcome:?}"
    );
    assert_eq!(receiver.connections(), 0);

    // A listener on the unspecified address listens on every local address, loopback too.
    let mut wildcard = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
    wildcard.own_listeners = vec![SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        receiver.addr.port(),
    )];
    let report = transport(wildcard)
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    assert_eq!(status(&outcomes(&report, 0)[0]), "5.4.6");
    assert_eq!(receiver.connections(), 0);
}

// Issue 14: by default no MX host is connected to on loopback, where a hostile domain could
// reach this machine's own services; the destination bounces without a connection.
#[tokio::test]
async fn an_mx_on_loopback_is_refused_by_default_and_bounces() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let dns = dns_server(vec![
        ("dest.test", 15, mx_record(10, "mx.dest.test")),
        ("mx.dest.test", 1, vec![127, 0, 0, 1]),
    ])
    .await;
    let resolver = PlainDns(scripted_resolver(dns));
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
    settings.routes.clear();
    settings.smtp_port = receiver.addr.port();
    let report = Transport::new(settings, resolver)
        .expect("transport")
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    let outcome = outcomes(&report, 0).remove(0);
    assert!(
        matches!(outcome, RecipientOutcome::Bounced { .. }),
        "{outcome:?}"
    );
    assert_eq!(status(&outcome), "5.4.4");
    assert_eq!(receiver.connections(), 0);
}

#[tokio::test]
async fn a_null_mx_bounces_without_any_connection() {
    let dns = dns_server(vec![("dest.test", 15, vec![0, 0, 0])]).await;
    let resolver = PlainDns(scripted_resolver(dns));
    let settings = TransportSettings {
        helo_name: "client.test".to_owned(),
        ..TransportSettings::default()
    };
    let report = Transport::new(settings, resolver)
        .expect("transport")
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    // RFC 7505 §3: 5.1.10, and no attempt to connect anywhere.
    let outcome = &outcomes(&report, 0)[0];
    assert!(matches!(
        outcome,
        RecipientOutcome::Bounced {
            remote_mta: None,
            ..
        }
    ));
    assert_eq!(status(outcome), "5.1.10");
    assert_eq!(report.messages[0].attempts[0].mx, None);
}

/// A private CA and certificates for pin tests: what a genuine receiver and a man in the middle
/// present.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate (DER) and its private key.
struct Identity {
    der: rustls::pki_types::CertificateDer<'static>,
    key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Pki {
            ca: rcgen::CertifiedIssuer::self_signed(params, key).expect("ca"),
        }
    }

    fn ca_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A leaf for `name` issued by this CA.
    fn issue(&self, name: &str) -> Identity {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
        let der = params
            .signed_by(&key, &self.ca)
            .expect("leaf")
            .der()
            .clone();
        Identity { der, key }
    }
}

/// A self-signed leaf for 127.0.0.1, as a man in the middle would make.
fn foreign_leaf() -> Identity {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let der = params.self_signed(&key).expect("self-signed").der().clone();
    Identity { der, key }
}

/// A server presenting `leaf` (whose key it holds) followed by `appended`.
fn presenting(
    leaf: &Identity,
    appended: &[&rustls::pki_types::CertificateDer<'static>],
) -> Arc<rustls::ServerConfig> {
    let chain = std::iter::once(leaf.der.clone())
        .chain(appended.iter().map(|cert| (*cert).clone()))
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf.key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    Arc::new(config)
}

fn certificate_pin(cert: &[u8]) -> strictmx_policy::rules::Pin {
    strictmx_policy::rules::Pin::Certificate {
        sha256: strictmx_policy::tlsa::certificate_sha256(cert),
    }
}

fn spki_pin(cert: &[u8]) -> strictmx_policy::rules::Pin {
    strictmx_policy::rules::Pin::Spki {
        sha256: strictmx_policy::tlsa::spki_sha256(cert).expect("an X.509 certificate"),
    }
}

/// Delivers one message to a receiver presenting `server` under a rule demanding encryption
/// and `pins` for the test domain; returns the report and the receiver.
async fn deliver_pinned(
    server: Arc<rustls::ServerConfig>,
    pins: Vec<strictmx_policy::rules::Pin>,
) -> (DeliveryReport, Receiver) {
    use strictmx_policy::rules::{DomainPattern, MinRequirement, Rule};
    let receiver = Receiver::start(Behaviour::plain().with_tls(server)).await;
    let mut settings = settings(receiver.addr.port(), DefaultRequirement::Opportunistic);
    settings.policy.rules = vec![Rule {
        name: "partner-pinned".to_owned(),
        domains: vec![DomainPattern::Exact(DOMAIN.to_owned())],
        senders: Vec::new(),
        require: Some(MinRequirement::Encrypted),
        pins,
        min_tls_version: None,
        fail_closed: false,
        insecure_relax: None,
        ..Rule::default()
    }];
    let report = transport(settings)
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await;
    (report, receiver)
}

/// The session was refused after the handshake: no MAIL FROM, the recipient deferred.
fn assert_refused(report: &DeliveryReport, receiver: &Receiver, case: &str) {
    assert!(
        !receiver.commands().iter().any(|c| c.starts_with("MAIL")),
        "{case}: MAIL FROM was sent: {:?}",
        receiver.commands()
    );
    let outcome = &outcomes(report, 0)[0];
    assert!(
        matches!(outcome, RecipientOutcome::Deferred { .. }),
        "{case}: {outcome:?}"
    );
    assert_eq!(
        report.messages[0].attempts[0].outcome,
        AttemptOutcome::Deferred,
        "{case}"
    );
}

#[tokio::test]
async fn issue_14_a_foreign_leaf_with_the_pinned_certificate_appended_is_refused() {
    let pki = Pki::new();
    let genuine = pki.issue("127.0.0.1");
    let ca = pki.ca_der();
    let cases = [
        (
            "the pin is on the genuine leaf, which the attacker appends",
            certificate_pin(&genuine.der),
            genuine.der.clone(),
        ),
        (
            "the SPKI pin is on the genuine leaf, which the attacker appends",
            spki_pin(&genuine.der),
            genuine.der.clone(),
        ),
        (
            "the pin is on the issuing CA, which the attacker appends",
            certificate_pin(&ca),
            ca.clone(),
        ),
    ];
    for (case, pin, appended) in cases {
        let attacker = presenting(&foreign_leaf(), &[&appended]);
        let (report, receiver) = deliver_pinned(attacker, vec![pin]).await;
        assert_refused(&report, &receiver, case);
        assert!(
            report.messages[0].attempts[0]
                .reply
                .contains("pinned certificate is presented as issuer"),
            "{case}: {:?}",
            report.messages[0].attempts[0].reply
        );
    }
}

#[tokio::test]
async fn a_receiver_presenting_its_pinned_leaf_gets_the_mail() {
    let pki = Pki::new();
    let genuine = pki.issue("127.0.0.1");
    let ca = pki.ca_der();
    for (case, pin) in [
        ("an SPKI pin on the leaf", spki_pin(&genuine.der)),
        (
            "a certificate pin on the leaf",
            certificate_pin(&genuine.der),
        ),
    ] {
        let (report, receiver) = deliver_pinned(presenting(&genuine, &[&ca]), vec![pin]).await;
        assert_eq!(status(&outcomes(&report, 0)[0]), "delivered", "{case}");
        assert!(receiver.transactions()[0].tls, "{case}");
    }
}

#[tokio::test]
async fn a_leaf_issued_by_a_pinned_ca_gets_the_mail_only_for_the_host_name() {
    let pki = Pki::new();
    let ca = pki.ca_der();
    let (report, receiver) = deliver_pinned(
        presenting(&pki.issue("127.0.0.1"), &[&ca]),
        vec![spki_pin(&ca)],
    )
    .await;
    assert_eq!(status(&outcomes(&report, 0)[0]), "delivered");
    assert!(receiver.transactions()[0].tls);

    // The CA's word counts only for the host it is asked about.
    let (report, receiver) = deliver_pinned(
        presenting(&pki.issue("other.test"), &[&ca]),
        vec![certificate_pin(&ca)],
    )
    .await;
    assert_refused(&report, &receiver, "a leaf for another name");
    assert_eq!(
        report.messages[0].attempts[0].result_type.as_deref(),
        Some("certificate-host-mismatch")
    );
}

const RELAY_USER: &str = "relay-user";
const RELAY_PASSWORD: &str = "relay-s3cret";

fn relay_login(advertise: &'static str, in_plaintext: bool) -> Login {
    Login {
        advertise,
        user: RELAY_USER,
        password: RELAY_PASSWORD,
        in_plaintext,
    }
}

/// Settings whose route to `port` logs in with `password`; `ca_pem` is trusted when given.
fn smarthost_settings(port: u16, password: &str, ca_pem: Option<&str>) -> TransportSettings {
    // The global default stays opportunistic: the credentials alone make the route Verified.
    let mut settings = settings(port, DefaultRequirement::Opportunistic);
    settings.routes[0].credentials = Some(RouteCredentials {
        user: RELAY_USER.to_owned(),
        password: password.to_owned(),
        password_file: std::path::PathBuf::new(),
    });
    if let Some(pem) = ca_pem {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let ca_file = dir.join("relay-ca.pem");
        std::fs::write(&ca_file, pem).expect("write ca");
        settings.extra_ca_file = Some(ca_file);
    }
    settings
}

async fn deliver_one(transport: &Transport<PlainDns>) -> DeliveryReport {
    transport
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            BODY,
        )]))
        .await
}

fn assert_no_credentials_and_no_mail(receiver: &Receiver, report: &DeliveryReport, case: &str) {
    assert!(
        !receiver.commands().iter().any(|c| c.starts_with("AUTH")),
        "{case}: {:?}",
        receiver.commands()
    );
    assert!(receiver.logins().is_empty(), "{case}");
    assert!(receiver.transactions().is_empty(), "{case}");
    assert!(
        matches!(outcomes(report, 0)[0], RecipientOutcome::Deferred { .. }),
        "{case}: {:?}",
        outcomes(report, 0)
    );
}

// RFC 4954 §4, RFC 4616 §2: the route's login goes as AUTH PLAIN over TLS verified for the
// next hop, and the mail follows.
#[tokio::test]
async fn a_route_with_credentials_logs_in_with_auth_plain_over_verified_tls_and_delivers() {
    let (config, ca_pem) = certificates();
    let login = relay_login("AUTH LOGIN PLAIN", false);
    let receiver = Receiver::start(Behaviour::plain().with_tls(config).with_login(login)).await;
    let settings = smarthost_settings(receiver.addr.port(), RELAY_PASSWORD, Some(&ca_pem));
    let report = deliver_one(&transport(settings)).await;

    assert_eq!(status(&outcomes(&report, 0)[0]), "delivered");
    assert_eq!(
        receiver.logins(),
        [(RELAY_USER.to_owned(), RELAY_PASSWORD.to_owned())]
    );
    assert!(
        receiver
            .commands()
            .iter()
            .any(|c| c.starts_with("AUTH PLAIN "))
    );
    assert!(receiver.transactions()[0].tls);
    let attempt = &report.messages[0].attempts[0];
    assert_eq!(attempt.cert_verified, Some(true));
    assert_eq!(attempt.requirement.as_deref(), Some("verified"));
}

#[tokio::test]
async fn a_relay_offering_only_auth_login_gets_the_credentials_through_login() {
    let (config, ca_pem) = certificates();
    let login = relay_login("AUTH LOGIN", false);
    let receiver = Receiver::start(Behaviour::plain().with_tls(config).with_login(login)).await;
    let settings = smarthost_settings(receiver.addr.port(), RELAY_PASSWORD, Some(&ca_pem));
    let report = deliver_one(&transport(settings)).await;

    assert_eq!(status(&outcomes(&report, 0)[0]), "delivered");
    assert_eq!(
        receiver.logins(),
        [(RELAY_USER.to_owned(), RELAY_PASSWORD.to_owned())]
    );
    assert!(receiver.commands().iter().any(|c| c == "AUTH LOGIN"));
}

#[tokio::test]
async fn a_relay_whose_certificate_does_not_verify_gets_no_credentials_and_no_mail() {
    let (config, _) = certificates();
    let login = relay_login("AUTH PLAIN", true);
    let receiver = Receiver::start(Behaviour::plain().with_tls(config).with_login(login)).await;
    let settings = smarthost_settings(receiver.addr.port(), RELAY_PASSWORD, None);
    let report = deliver_one(&transport(settings)).await;

    assert_no_credentials_and_no_mail(&receiver, &report, "unverified tls");
    // RFC 3463 X.7.5: the certificate failed; a later attempt may pass.
    assert_eq!(status(&outcomes(&report, 0)[0]), "4.7.5");
}

#[tokio::test]
async fn a_relay_without_starttls_gets_no_credentials_even_when_it_offers_auth() {
    let login = relay_login("AUTH PLAIN LOGIN", true);
    let receiver = Receiver::start(Behaviour::plain().with_login(login)).await;
    let settings = smarthost_settings(receiver.addr.port(), RELAY_PASSWORD, None);
    let report = deliver_one(&transport(settings)).await;

    assert_no_credentials_and_no_mail(&receiver, &report, "no starttls");
    assert_eq!(status(&outcomes(&report, 0)[0]), "4.7.4");
}

// RFC 4954 §6: 535 means our credentials are wrong, which is no reason to bounce the mail.
#[tokio::test]
async fn a_535_from_the_relay_defers_the_mail_and_sends_none() {
    let (config, ca_pem) = certificates();
    let login = relay_login("AUTH PLAIN", false);
    let receiver = Receiver::start(Behaviour::plain().with_tls(config).with_login(login)).await;
    let settings = smarthost_settings(receiver.addr.port(), "wrong-password", Some(&ca_pem));
    let report = deliver_one(&transport(settings)).await;

    assert_eq!(receiver.logins().len(), 1);
    assert!(receiver.transactions().is_empty());
    assert!(!receiver.commands().iter().any(|c| c.starts_with("MAIL")));
    let outcome = &outcomes(&report, 0)[0];
    let RecipientOutcome::Deferred { diagnostic, .. } = outcome else {
        panic!("not deferred: {outcome:?}");
    };
    assert_eq!(status(outcome), "4.7.0");
    let Diagnostic::Local(text) = diagnostic else {
        panic!("no local diagnostic: {diagnostic:?}");
    };
    assert!(
        text.contains("refused the credentials of user relay-user"),
        "{text}"
    );
    assert!(text.contains("535 5.7.8"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
}

#[tokio::test]
async fn replaced_routes_take_effect_for_the_next_job_and_a_catch_all_takes_every_domain() {
    let first = Receiver::start(Behaviour::plain()).await;
    let second = Receiver::start(Behaviour::plain()).await;
    let transport = transport(settings(
        first.addr.port(),
        DefaultRequirement::Opportunistic,
    ));
    assert_eq!(
        status(&outcomes(&deliver_one(&transport).await, 0)[0]),
        "delivered"
    );
    transport.replace_routes(vec![Route {
        domain: "*".to_owned(),
        host: "127.0.0.1".to_owned(),
        port: second.addr.port(),
        credentials: None,
    }]);
    assert_eq!(
        status(&outcomes(&deliver_one(&transport).await, 0)[0]),
        "delivered"
    );
    assert_eq!(first.transactions().len(), 1);
    assert_eq!(second.transactions().len(), 1);
}

#[tokio::test]
async fn a_large_body_is_sent_in_pieces_and_arrives_unchanged_with_its_leading_dots() {
    // Lines that start with a dot fall on both sides of the 64 KiB piece boundary (the test
    // receiver takes up to 100,000 octets).
    let mut body = b"Subject: large\r\n\r\n".to_vec();
    let mut n = 0;
    while body.len() < 96 * 1024 {
        let line = if n % 7 == 0 {
            format!(".dotted line {n}\r\n")
        } else {
            format!("line {n} with some text to fill the message body\r\n")
        };
        body.extend_from_slice(line.as_bytes());
        n += 1;
    }
    body.extend_from_slice(b".");
    let receiver = Receiver::start(Behaviour::plain()).await;
    let transport = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ));
    let report = transport
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            &body,
        )]))
        .await;
    let outcome = outcomes(&report, 0);
    assert!(
        matches!(outcome[..], [RecipientOutcome::Delivered { .. }]),
        "{outcome:?}"
    );
    let seen = receiver.transactions();
    let mut expected = body.clone();
    expected.extend_from_slice(b"\r\n");
    assert_eq!(seen[0].body, expected, "the final lone dot gets its CRLF");
}

/// Delivers `jobs` jobs of one message each (ids 1, 2, ...), one after the other, and requires
/// each message delivered in one attempt.
async fn deliver_one_by_one(transport: &Transport<PlainDns>, jobs: u64) {
    for n in 1..=jobs {
        let report = transport
            .deliver(job(vec![message(
                n,
                "alice@src.test",
                &["bob@dest.test"],
                b"hello\r\n",
            )]))
            .await;
        assert!(
            matches!(
                outcomes(&report, 0)[..],
                [RecipientOutcome::Delivered { .. }]
            ),
            "job {n}"
        );
        assert_eq!(report.messages[0].attempts.len(), 1, "job {n}");
    }
}

#[tokio::test]
async fn the_next_job_to_the_same_host_reuses_the_open_connection() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let transport = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ));
    deliver_one_by_one(&transport, 3).await;
    assert_eq!(receiver.connections(), 1, "one connection for three jobs");
    assert_eq!(receiver.transactions().len(), 3);
    // RFC 5321 §4.1.1.5: each later transaction starts from a reset.
    assert_eq!(
        receiver.commands().iter().filter(|c| *c == "RSET").count(),
        2
    );
}

// RFC 2920 §3.1: RSET may lead a pipelined group, so checking a spare session costs no round
// trip of its own.
#[tokio::test]
async fn a_spare_session_of_a_pipelining_server_gets_its_rset_in_the_group() {
    let mut behaviour = Behaviour::plain();
    behaviour.demand_pipelining = true;
    let receiver = Receiver::start(behaviour).await;
    let transport = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ));
    deliver_one_by_one(&transport, 3).await;
    assert_eq!(receiver.connections(), 1);
    let seen = receiver.transactions();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|t| t.pipelined));
    assert_eq!(receiver.rsets_led_a_group(), [true, true]);
}

// A spare session whose server hung up fails its RSET; the message goes over a new connection,
// once, whether or not the RSET was pipelined.
#[tokio::test]
async fn a_message_for_a_spare_session_that_was_dropped_goes_over_a_new_connection() {
    for pipelining in [false, true] {
        let mut behaviour = Behaviour::plain();
        behaviour.demand_pipelining = pipelining;
        behaviour.hang_up_after_data = true;
        let receiver = Receiver::start(behaviour).await;
        let transport = transport(settings(
            receiver.addr.port(),
            DefaultRequirement::Opportunistic,
        ));
        deliver_one_by_one(&transport, 2).await;
        assert_eq!(receiver.connections(), 2, "pipelining {pipelining}");
        assert_eq!(receiver.transactions().len(), 2, "pipelining {pipelining}");
    }
}

#[tokio::test]
async fn a_spare_connection_is_not_reused_under_a_stricter_plan() {
    let receiver = Receiver::start(Behaviour::plain()).await;
    let transport = transport(settings(
        receiver.addr.port(),
        DefaultRequirement::Opportunistic,
    ));
    let first = transport
        .deliver(job(vec![message(
            1,
            "alice@src.test",
            &["bob@dest.test"],
            b"one\r\n",
        )]))
        .await;
    assert!(matches!(
        outcomes(&first, 0)[..],
        [RecipientOutcome::Delivered { .. }]
    ));
    // The plaintext session left open must not carry mail that now requires TLS.
    let mut policy = transport.policy();
    policy.default_requirement = DefaultRequirement::Encrypted;
    transport.replace_policy(policy);
    let second = transport
        .deliver(job(vec![message(
            2,
            "alice@src.test",
            &["bob@dest.test"],
            b"two\r\n",
        )]))
        .await;
    assert!(
        matches!(
            outcomes(&second, 0)[..],
            [RecipientOutcome::Deferred { .. }]
        ),
        "{:?}",
        outcomes(&second, 0)
    );
    assert_eq!(
        receiver.transactions().len(),
        1,
        "nothing sent in plaintext"
    );
}
