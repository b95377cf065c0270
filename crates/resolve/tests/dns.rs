//! Lookups against a tiny in-process DNS server on 127.0.0.1:0 answering from a fixed table
//! (unsigned, through the `trust-resolver` DNSSEC mode's client); DNSSEC itself is tested in `lab.rs`.
//! The TLSRPT report client's address check runs against the same server and an HTTPS receiver
//! on loopback.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use strictmx_policy::MxFacts;
use strictmx_resolve::{
    DnsResolver, DnssecMode, HttpsTimeouts, MxAnswer, MxHost, ResolveError, ResolverSettings,
    report_client,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const TYPE_A: u16 = 1;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;

#[derive(Clone)]
enum Answer {
    Records(Vec<(u16, Vec<u8>)>),
    NoData,
    NxDomain,
    ServFail,
    /// Never answer: the client must time out.
    Silence,
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(u8::try_from(label.len()).expect("test labels are short"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn mx_rdata(preference: u16, exchange: &str) -> (u16, Vec<u8>) {
    let mut data = preference.to_be_bytes().to_vec();
    data.extend(encode_name(exchange));
    (TYPE_MX, data)
}

fn a(ip: Ipv4Addr) -> (u16, Vec<u8>) {
    (TYPE_A, ip.octets().to_vec())
}

fn aaaa(ip: Ipv6Addr) -> (u16, Vec<u8>) {
    (TYPE_AAAA, ip.octets().to_vec())
}

/// Parses the question of a query: (lowercase name without final dot, qtype, end of question).
fn question(packet: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(packet.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

fn response(query: &[u8], answer: &Answer, end: usize) -> Vec<u8> {
    let (rcode, records): (u16, &[(u16, Vec<u8>)]) = match answer {
        Answer::Records(records) => (0, records),
        Answer::NoData | Answer::Silence => (0, &[]),
        Answer::NxDomain => (3, &[]),
        Answer::ServFail => (2, &[]),
    };
    let rd = u16::from_be_bytes([query[2], query[3]]) & 0x0100;
    let flags = 0x8000 | rd | 0x0080 | rcode;
    let mut out = Vec::new();
    out.extend_from_slice(&query[0..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::try_from(records.len()).expect("few").to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    for (rtype, data) in records {
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&u16::try_from(data.len()).expect("small").to_be_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Starts the server; unknown questions get NXDOMAIN.
async fn dns_server(zone: HashMap<(String, u16), Answer>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let addr = socket.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let query = &buf[..len];
            let Some((name, qtype, end)) = question(query) else {
                continue;
            };
            let answer = zone
                .get(&(name, qtype))
                .cloned()
                .unwrap_or(Answer::NxDomain);
            if matches!(answer, Answer::Silence) {
                continue;
            }
            let _ = socket.send_to(&response(query, &answer, end), peer).await;
        }
    });
    addr
}

fn zone() -> HashMap<(String, u16), Answer> {
    let mut zone = HashMap::new();
    let mut put = |name: &str, qtype: u16, answer: Answer| {
        zone.insert((name.to_owned(), qtype), answer);
    };
    put(
        "multi.test",
        TYPE_MX,
        Answer::Records(vec![
            mx_rdata(20, "backup.multi.test"),
            mx_rdata(10, "mx1.multi.test"),
            mx_rdata(10, "mx2.multi.test"),
        ]),
    );
    put(
        "nullmx.test",
        TYPE_MX,
        Answer::Records(vec![mx_rdata(0, ".")]),
    );
    put("implicit.test", TYPE_MX, Answer::NoData);
    put("broken.test", TYPE_MX, Answer::ServFail);
    put("slow.test", TYPE_MX, Answer::Silence);
    put(
        "host.test",
        TYPE_A,
        Answer::Records(vec![a(Ipv4Addr::new(192, 0, 2, 10))]),
    );
    put(
        "host.test",
        TYPE_AAAA,
        Answer::Records(vec![aaaa("2001:db8::10".parse().expect("literal"))]),
    );
    put("v6only.test", TYPE_A, Answer::NoData);
    put(
        "v6only.test",
        TYPE_AAAA,
        Answer::Records(vec![aaaa("2001:db8::6".parse().expect("literal"))]),
    );
    put("empty.test", TYPE_A, Answer::NoData);
    put("empty.test", TYPE_AAAA, Answer::NoData);
    put("flaky.test", TYPE_A, Answer::ServFail);
    put("flaky.test", TYPE_AAAA, Answer::ServFail);
    put(
        "collector.report.test",
        TYPE_A,
        Answer::Records(vec![a(Ipv4Addr::LOCALHOST)]),
    );
    put("collector.report.test", TYPE_AAAA, Answer::NoData);
    put(
        "mixed.report.test",
        TYPE_A,
        Answer::Records(vec![a(Ipv4Addr::LOCALHOST), a(Ipv4Addr::new(127, 0, 0, 2))]),
    );
    put("mixed.report.test", TYPE_AAAA, Answer::NoData);
    zone
}

async fn resolver() -> DnsResolver {
    let server = dns_server(zone()).await;
    DnsResolver::new(&ResolverSettings {
        nameservers: vec![server],
        timeout: Duration::from_millis(300),
        attempts: 1,
        // The fixture serves unsigned answers; its AD-less replies read as insecure.
        dnssec: DnssecMode::TrustResolver,
        ..ResolverSettings::default()
    })
    .expect("resolver")
}

#[tokio::test]
async fn mx_hosts_come_back_in_preference_order() {
    let resolver = resolver().await;
    let MxAnswer::Hosts(hosts) = resolver.mx("multi.test").await.expect("answer") else {
        panic!("expected hosts");
    };
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    // RFC 5321 §5.1: lowest preference first; the two at 10 in either order.
    assert_eq!(names.len(), 3);
    assert!(names[..2].contains(&"mx1.multi.test") && names[..2].contains(&"mx2.multi.test"));
    assert_eq!(
        hosts[2],
        MxHost {
            name: "backup.multi.test".to_owned(),
            preference: 20
        }
    );
}

#[tokio::test]
async fn a_null_mx_is_recognised() {
    // RFC 7505 §3: a single MX whose exchange is the root.
    let answer = resolver().await.mx("nullmx.test").await.expect("answer");
    assert_eq!(answer, MxAnswer::Null);
    assert_eq!(answer.to_facts(), MxFacts::Null);
}

#[tokio::test]
async fn a_domain_without_mx_records_gets_an_implicit_mx() {
    // RFC 5321 §5.1: an empty MX answer means the domain is its own MX with preference 0.
    let answer = resolver().await.mx("implicit.test").await.expect("answer");
    assert_eq!(answer, MxAnswer::Implicit("implicit.test".to_owned()));
}

#[tokio::test]
async fn a_nonexistent_domain_is_a_permanent_error() {
    let error = resolver().await.mx("nowhere.test").await.unwrap_err();
    assert!(
        matches!(error, ResolveError::NoSuchDomain { .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(error.to_mx_facts(), MxFacts::NoSuchDomain);
}

#[tokio::test]
async fn a_domain_that_is_not_a_host_name_is_refused_before_any_query() {
    // Issue 14: a name like `foo_bar.test` or `x.test/#` reaches neither DNS nor an MTA-STS URL.
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let server = socket.local_addr().expect("local addr");
    let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = queries.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let resolver = DnsResolver::new(&ResolverSettings {
        nameservers: vec![server],
        timeout: Duration::from_millis(300),
        attempts: 1,
        dnssec: DnssecMode::TrustResolver,
        ..ResolverSettings::default()
    })
    .expect("resolver");
    for domain in ["foo_bar.test", "x.test/#", "-x.test", "a..test"] {
        let error = resolver.mx(domain).await.unwrap_err();
        assert!(
            matches!(error, ResolveError::NotAHostName { .. }),
            "{domain}: {error:?}"
        );
        assert!(!error.is_transient(), "{domain}");
        assert!(
            matches!(error.to_mx_facts(), MxFacts::NotAHostName { .. }),
            "{domain}"
        );
    }
    assert_eq!(queries.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn servfail_is_transient() {
    // RFC 5321 §5.1: a temporary error means queue and retry, never bounce.
    let error = resolver().await.mx("broken.test").await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(matches!(error.to_mx_facts(), MxFacts::Unavailable { .. }));
}

#[tokio::test]
async fn an_unanswered_query_times_out_as_transient() {
    let error = resolver().await.mx("slow.test").await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn addresses_include_both_families_ipv4_first() {
    let addresses = resolver()
        .await
        .addresses("host.test")
        .await
        .expect("addresses");
    assert_eq!(
        addresses,
        vec![
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            "2001:db8::10".parse::<IpAddr>().expect("literal"),
        ]
    );
}

#[tokio::test]
async fn one_family_is_enough() {
    let addresses = resolver()
        .await
        .addresses("v6only.test")
        .await
        .expect("addresses");
    assert_eq!(
        addresses,
        vec!["2001:db8::6".parse::<IpAddr>().expect("literal")]
    );
}

#[tokio::test]
async fn address_failures_are_classified() {
    let resolver = resolver().await;
    let rows = [
        ("empty.test", false, "no A or AAAA records"),
        ("missing.test", false, "does not exist"),
        ("flaky.test", true, "failed"),
    ];
    for (host, transient, text) in rows {
        let error = resolver.addresses(host).await.unwrap_err();
        assert_eq!(error.is_transient(), transient, "{host}: {error:?}");
        assert!(error.to_string().contains(text), "{host}: {error}");
    }
}

/// An HTTPS receiver on 127.0.0.1:0 for the report hosts, its CA in a PEM file, and how many
/// connections it accepted.
struct Collector {
    port: u16,
    connections: Arc<AtomicUsize>,
    ca_file: tempfile::NamedTempFile,
}

async fn collector() -> Collector {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let names = vec![
        "collector.report.test".to_owned(),
        "mixed.report.test".to_owned(),
    ];
    let leaf = rcgen::CertificateParams::new(names)
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let ca_file = tempfile::NamedTempFile::new().expect("ca file");
    std::fs::write(ca_file.path(), ca.pem()).expect("write ca");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                // Headers and a small body arrive within a read or two; answer once they did.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Collector {
        port,
        connections,
        ca_file,
    }
}

async fn post(
    collector: &Collector,
    host: &str,
    allowed: &[ipnet::IpNet],
) -> Result<reqwest::StatusCode, String> {
    let client = report_client(
        &resolver().await,
        Some(collector.ca_file.path()),
        allowed,
        HttpsTimeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(10),
        },
    )
    .expect("client");
    let url = format!("https://{host}:{}/tlsrpt", collector.port);
    match client.post(url).body("report").send().await {
        Ok(response) => Ok(response.status()),
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Err(text)
        }
    }
}

// Issue 14, item 8: a recipient domain's `_smtp._tls` record names the report host, so its DNS
// could point our POST at loopback, a private network or a cloud metadata address.
#[tokio::test]
async fn the_report_client_never_connects_to_a_loopback_address() {
    let collector = collector().await;
    let error = post(&collector, "collector.report.test", &[])
        .await
        .expect_err("refused");
    assert!(
        error.contains("collector.report.test has no public address reports may be posted to: 127.0.0.1 (loopback)"),
        "{error}"
    );
    assert_eq!(collector.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_allowed_network_lets_the_report_client_post_there() {
    let collector = collector().await;
    let allowed = ["127.0.0.1/32".parse().expect("net")];
    let status = post(&collector, "collector.report.test", &allowed)
        .await
        .expect("posted");
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(collector.connections.load(Ordering::SeqCst), 1);
}

// The addresses checked are the addresses connected to: of 127.0.0.1 (refused) and 127.0.0.2
// (allowed, nothing listening), only 127.0.0.2 is tried, and the collector on 127.0.0.1 never
// sees a connection.
#[tokio::test]
async fn the_report_client_connects_only_to_the_addresses_it_checked() {
    let collector = collector().await;
    let allowed = ["127.0.0.2/32".parse().expect("net")];
    let error = post(&collector, "mixed.report.test", &allowed)
        .await
        .expect_err("127.0.0.2 refuses the connection");
    assert!(error.contains("Connection refused"), "{error}");
    assert_eq!(collector.connections.load(Ordering::SeqCst), 0);
}

/// A UDP port on 127.0.0.1 where nothing listens: bound, then closed.
fn closed_udp_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket.local_addr().expect("local addr")
}

/// A DNS server that reads every query and answers none, counting what it received.
async fn silent_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let addr = socket.local_addr().expect("local addr");
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, queries)
}

fn both_modes() -> [DnssecMode; 2] {
    [
        DnssecMode::TrustResolver,
        DnssecMode::Validate { trust_anchor: None },
    ]
}

#[tokio::test]
async fn a_refused_loopback_resolver_fails_at_once_not_after_the_timeout() {
    // Issue 13, bug 5: nothing listens on the resolver's port, so the kernel answers with ICMP
    // port unreachable; a connected UDP socket reports it and the lookup fails there and then.
    // Only our own client (`trust-resolver`) so far: hickory's validating resolver still waits
    // for its timeout (docs/dns-and-mta-sts.md).
    for dnssec in [DnssecMode::TrustResolver] {
        let mode = dnssec.as_str();
        let resolver = DnsResolver::new(&ResolverSettings {
            nameservers: vec![closed_udp_port()],
            timeout: Duration::from_secs(5),
            attempts: 2,
            dnssec,
            ..ResolverSettings::default()
        })
        .expect("resolver");
        let started = std::time::Instant::now();
        let error = resolver.mx("example.test").await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(1),
            "{mode}: took {elapsed:?} ({error:?})"
        );
        assert!(error.is_transient(), "{mode}: {error:?}");
    }
}

#[tokio::test]
async fn attempts_counts_every_query_sent_not_the_retries_after_the_first() {
    // Issue 13, bug 5: `[dns] attempts = 3` sends a question three times in all, so a lookup
    // against a silent server ends after three timeouts, not four.
    for dnssec in both_modes() {
        let mode = dnssec.as_str();
        let (server, queries) = silent_server().await;
        let timeout = Duration::from_millis(300);
        let resolver = DnsResolver::new(&ResolverSettings {
            nameservers: vec![server],
            timeout,
            attempts: 3,
            dnssec,
            ..ResolverSettings::default()
        })
        .expect("resolver");
        let started = std::time::Instant::now();
        let error = resolver.mx("silent.test").await.unwrap_err();
        let elapsed = started.elapsed();
        // Let a late retransmission arrive before counting.
        tokio::time::sleep(timeout).await;
        assert_eq!(queries.load(Ordering::SeqCst), 3, "{mode}: {error:?}");
        assert!(error.is_transient(), "{mode}: {error:?}");
        assert!(
            elapsed < timeout * 3 + Duration::from_millis(250),
            "{mode}: took {elapsed:?}"
        );
    }
}
