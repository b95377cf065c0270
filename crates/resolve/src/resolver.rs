//! The DNS client: MX, A/AAAA, TLSA and TXT lookups, each answer with its DNSSEC status, in one
//! of two modes (in-process validation from a trust anchor, or the AD bit of a trusted
//! validating resolver), plus the startup self-test of that mode.
//!
//! Answers are returned as facts; deciding what they mean for delivery is left to
//! `strictmx-policy`, and which lookups to make for a domain to `gather`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use strictmx_policy::{Dnssec, DnssecHealth, MxHost, TlsaRecord};
use strictmx_protocol::ErrorChain;

use crate::ad_client::AdClient;
use crate::answer::{Answer, from_proof, normalise, weakest_of};
use crate::error::ResolveError;
use crate::mx::MxAnswer;

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The IANA root KSKs (20326, 38696) in zone-file form, the default trust anchor.
const ROOT_ANCHORS: &str = include_str!("root-anchors.key");

/// How DNSSEC status is established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnssecMode {
    /// Validate in-process from a trust anchor file of DNSKEY records in zone-file form;
    /// `None` is the embedded IANA root anchor.
    Validate { trust_anchor: Option<PathBuf> },
    /// Trust the AD bit of the configured resolvers, which must each be on loopback or in
    /// `trusted_nameservers` (the path to them must not be able to forge it).
    TrustResolver,
}

impl DnssecMode {
    /// The name used in config, logs and `explain`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DnssecMode::Validate { .. } => "validate",
            DnssecMode::TrustResolver => "trust-resolver",
        }
    }
}

impl Default for DnssecMode {
    fn default() -> Self {
        DnssecMode::Validate { trust_anchor: None }
    }
}

/// How to reach DNS; built by `strictmx-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Recursive resolvers to ask; empty means the `nameserver` lines of /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Time allowed for one query to one server.
    pub timeout: Duration,
    /// How many times in all a query is sent before giving up (tries, not retries; at least 1).
    pub attempts: usize,
    pub dnssec: DnssecMode,
    /// Resolvers off loopback whose AD bit `TrustResolver` may trust (the path to them must be
    /// protected, e.g. a resolver on the same host's private network).
    pub trusted_nameservers: Vec<SocketAddr>,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            dnssec: DnssecMode::default(),
            trusted_nameservers: Vec::new(),
        }
    }
}

/// A value from DNS with the DNSSEC status of the answer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secured<T> {
    pub value: T,
    pub dnssec: Dnssec,
}

/// The addresses of one host and how they were found.
#[derive(Debug)]
pub struct AddressAnswer {
    pub addresses: Result<Vec<IpAddr>, ResolveError>,
    /// The weakest status of the A and AAAA answers.
    pub dnssec: Dnssec,
    /// Where the CNAME chain ended, when the host name is an alias.
    pub canonical: Option<String>,
}

/// Who answers the questions.
#[derive(Clone)]
enum Backend {
    Validating(Arc<TokioResolver>),
    TrustAd(Arc<AdClient>),
}

/// A DNS client; cheap to clone.
#[derive(Clone)]
pub struct DnsResolver {
    backend: Backend,
    mode: &'static str,
    /// Upper bound on one lookup, whatever the library does internally.
    deadline: Duration,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("mode", &self.mode)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl DnsResolver {
    /// Builds the client; refuses `TrustResolver` with a resolver that is neither on loopback
    /// nor listed as trusted, and a trust anchor file without DNSKEY records.
    pub fn new(settings: &ResolverSettings) -> Result<Self, ResolveError> {
        let nameservers = configured_nameservers(settings)?;
        let deadline = lookup_deadline(settings, nameservers.len());
        let backend = match &settings.dnssec {
            DnssecMode::Validate { trust_anchor } => {
                let anchors = trust_anchors(trust_anchor.as_ref())?;
                Backend::Validating(Arc::new(validating(&nameservers, settings, anchors)?))
            }
            DnssecMode::TrustResolver => {
                if let Some(untrusted) = nameservers.iter().find(|server| {
                    !server.ip().is_loopback() && !settings.trusted_nameservers.contains(server)
                }) {
                    return Err(ResolveError::UntrustedResolver {
                        nameserver: *untrusted,
                    });
                }
                Backend::TrustAd(Arc::new(AdClient {
                    servers: nameservers,
                    timeout: settings.timeout,
                    attempts: settings.attempts.max(1),
                }))
            }
        };
        Ok(DnsResolver {
            backend,
            mode: settings.dnssec.as_str(),
            deadline,
        })
    }

    /// `validate` or `trust-resolver`.
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// The MX answer for `domain`: hosts in try order, a null MX, or an implicit MX.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, ResolveError> {
        self.mx_secured(domain).await.map(|answer| answer.value)
    }

    /// The MX answer with its DNSSEC status (for an implicit MX: the status of the denial of
    /// MX records). A bogus answer is an error, never an answer.
    pub async fn mx_secured(&self, domain: &str) -> Result<Secured<MxAnswer>, ResolveError> {
        recipient_domain(domain)?;
        let answer = self.query(domain, RecordType::MX).await?;
        if answer.nxdomain {
            return Err(ResolveError::NoSuchDomain {
                name: domain.to_owned(),
            });
        }
        let records = answer
            .data_of(RecordType::MX)
            .filter_map(|data| match data {
                RData::MX(mx) => Some(MxHost {
                    name: mx.exchange.to_ascii(),
                    preference: mx.preference,
                }),
                _ => None,
            })
            .collect();
        Ok(Secured {
            value: MxAnswer::from_records(domain, records, &mut rand::rng()),
            dnssec: answer.dnssec,
        })
    }

    /// The IPv4 then IPv6 addresses of `host`. Both families are asked; one failing while the
    /// other answers still yields the addresses found.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.host_addresses(host).await.addresses
    }

    /// The addresses of `host` with the weakest DNSSEC status of its A and AAAA answers and
    /// the end of its CNAME chain.
    pub async fn host_addresses(&self, host: &str) -> AddressAnswer {
        let (v4, v6) = tokio::join!(
            self.query(host, RecordType::A),
            self.query(host, RecordType::AAAA)
        );
        let mut found = Vec::new();
        let mut failure = None;
        let mut statuses = Vec::new();
        let mut canonical = None;
        let mut nxdomain = false;
        for answer in [v4, v6] {
            match answer {
                Ok(answer) => {
                    statuses.push(answer.dnssec);
                    nxdomain |= answer.nxdomain;
                    canonical = canonical.or_else(|| answer.canonical_name(host));
                    found.extend(answer.records.iter().filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                        _ => None,
                    }));
                }
                Err(error) => {
                    tracing::debug!(domain = host, error = %ErrorChain(&error), "address lookup failed");
                    statuses.push(error.dnssec());
                    failure.get_or_insert(error);
                }
            }
        }
        let dnssec = weakest_of(statuses, Dnssec::Indeterminate);
        let addresses = if !found.is_empty() {
            Ok(found)
        } else if let Some(error) = failure {
            Err(error)
        } else if nxdomain {
            Err(ResolveError::NoSuchDomain {
                name: host.to_owned(),
            })
        } else {
            Err(ResolveError::NoAddresses {
                host: host.to_owned(),
            })
        };
        AddressAnswer {
            addresses,
            dnssec,
            canonical,
        }
    }

    /// The TLSA records at `name` (e.g. `_25._tcp.mx.example`), empty when there are none
    /// (NODATA or NXDOMAIN), with the status of the answer or of the denial.
    pub async fn tlsa(&self, name: &str) -> Result<Secured<Vec<TlsaRecord>>, ResolveError> {
        let answer = self.query(name, RecordType::TLSA).await?;
        let value = answer
            .data_of(RecordType::TLSA)
            .filter_map(|data| match data {
                RData::TLSA(tlsa) => Some(TlsaRecord {
                    usage: u8::from(tlsa.cert_usage),
                    selector: u8::from(tlsa.selector),
                    matching_type: u8::from(tlsa.matching),
                    data: tlsa.cert_data.clone(),
                }),
                _ => None,
            })
            .collect();
        Ok(Secured {
            value,
            dnssec: answer.dnssec,
        })
    }

    /// The CNAME at `name` alone, not followed (`None` when `name` is no alias), with the status
    /// of that one record: the first link of a chain (RFC 7672 §2.2.2).
    pub async fn alias(&self, name: &str) -> Result<Secured<Option<String>>, ResolveError> {
        let answer = self.query(name, RecordType::CNAME).await?;
        let owner = normalise(name);
        let value = answer.records.iter().find_map(|record| match &record.data {
            RData::CNAME(target) if normalise(&record.name.to_ascii()) == owner => {
                Some(normalise(&target.0.to_ascii()))
            }
            _ => None,
        });
        Ok(Secured {
            value,
            dnssec: answer.dnssec,
        })
    }

    /// The TXT strings at `name`, each record's character-strings joined (RFC 7208 §3.3 style,
    /// as RFC 8461 §3.1 and RFC 8460 §3 expect); empty when there are none.
    pub async fn txt(&self, name: &str) -> Result<Secured<Vec<String>>, ResolveError> {
        let answer = self.query(name, RecordType::TXT).await?;
        let value = answer
            .data_of(RecordType::TXT)
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        Ok(Secured {
            value,
            dnssec: answer.dnssec,
        })
    }

    /// Startup check of the DNSSEC mode: the root zone's DNSKEY RRset must come back secure.
    /// It is signed by the very keys the trust anchor names (or, in `trust-resolver` mode, by the
    /// keys the resolver trusts), so anything else means validation cannot work here.
    pub async fn self_test(&self) -> DnssecHealth {
        let mode = self.mode.to_owned();
        match self.query(".", RecordType::DNSKEY).await {
            Ok(answer) if answer.dnssec == Dnssec::Secure && !answer.records.is_empty() => {
                DnssecHealth::Working { mode }
            }
            Ok(answer) => DnssecHealth::Broken {
                mode,
                reason: format!(
                    "the root DNSKEY answer is {:?} with {} records, expected secure",
                    answer.dnssec,
                    answer.records.len()
                ),
            },
            Err(error) => DnssecHealth::Broken {
                mode,
                reason: format!("the root DNSKEY lookup failed: {error}"),
            },
        }
    }

    /// One lookup with a hard deadline. NODATA and NXDOMAIN are answers (with their status);
    /// bogus data and server failures are errors.
    async fn query(&self, name: &str, record_type: RecordType) -> Result<Answer, ResolveError> {
        let fqdn = fully_qualified(name)?;
        let started = Instant::now();
        let lookup = async {
            match &self.backend {
                Backend::Validating(resolver) => {
                    validated_lookup(resolver, name, fqdn, record_type, started).await
                }
                Backend::TrustAd(client) => client.query(&fqdn, record_type).await,
            }
        };
        tokio::time::timeout(self.deadline, lookup)
            .await
            .map_err(|_| ResolveError::Timeout {
                name: name.to_owned(),
                record_type: record_type_label(record_type),
                elapsed: started.elapsed(),
            })?
    }
}

/// The most CNAME links [`follow_chain`] follows one by one (RFC 1034 §3.6.2 leaves the bound
/// to the resolver; a longer chain keeps the answer hickory gave).
const MAX_CNAME_LINKS: usize = 8;

/// One lookup validated in-process. RFC 4035 §5: each RRset is validated in the zone it comes
/// from. hickory 0.26 does that for the links of a CNAME chain, but judges a denial at the end
/// of the chain (say, no AAAA at a CNAME'd MX host) against the first name of the chain and
/// its zone, and so calls every such answer bogus. A bogus answer is therefore looked at again
/// one link at a time: the alias at each name, then the question at its target.
async fn validated_lookup(
    resolver: &TokioResolver,
    name: &str,
    fqdn: Name,
    record_type: RecordType,
    started: Instant,
) -> Result<Answer, ResolveError> {
    let direct = classify(
        name,
        record_type,
        resolver.lookup(fqdn.clone(), record_type).await,
        started.elapsed(),
    );
    if !is_bogus(&direct) || record_type == RecordType::CNAME {
        return direct;
    }
    follow_chain(resolver, name, fqdn, record_type, started)
        .await
        .unwrap_or(direct)
}

/// Follows the CNAME chain from `start` link by link, each answer validated on its own, and
/// asks `record_type` at each target; the answer holds the CNAME records and the weakest status
/// of all links. `None` when `start` is no alias or the chain is too long, so the bogus answer
/// stands.
async fn follow_chain(
    resolver: &TokioResolver,
    name: &str,
    start: Name,
    record_type: RecordType,
    started: Instant,
) -> Option<Result<Answer, ResolveError>> {
    let mut links = Vec::new();
    let mut statuses = Vec::new();
    let mut current = start;
    for _ in 0..MAX_CNAME_LINKS {
        let lookup = resolver.lookup(current.clone(), RecordType::CNAME).await;
        let alias = match classify(name, RecordType::CNAME, lookup, started.elapsed()) {
            Ok(alias) => alias,
            Err(error) => return Some(Err(error)),
        };
        let target = alias.records.iter().find_map(|record| match &record.data {
            RData::CNAME(target) if record.name == current => Some(target.0.clone()),
            _ => None,
        })?;
        statuses.push(alias.dnssec);
        links.extend(
            alias
                .records
                .into_iter()
                .filter(|record| record.record_type() == RecordType::CNAME),
        );
        let lookup = resolver.lookup(target.clone(), record_type).await;
        let end = classify(name, record_type, lookup, started.elapsed());
        if !is_bogus(&end) {
            return Some(end.map(|mut answer| {
                statuses.push(answer.dnssec);
                answer.dnssec = weakest_of(statuses, Dnssec::Indeterminate);
                links.append(&mut answer.records);
                answer.records = links;
                answer
            }));
        }
        current = target;
    }
    None
}

fn is_bogus(answer: &Result<Answer, ResolveError>) -> bool {
    match answer {
        Ok(answer) => answer.dnssec == Dnssec::Bogus,
        Err(error) => error.dnssec() == Dnssec::Bogus,
    }
}

/// The upper bound on one lookup: `attempts` tries of `timeout` each, per server (our own
/// client asks each server in turn; hickory's pool spends at most `timeout` on all servers per
/// try, so it finishes well inside this).
fn lookup_deadline(settings: &ResolverSettings, servers: usize) -> Duration {
    let tries = u32::try_from(settings.attempts.max(1)).unwrap_or(u32::MAX);
    settings
        .timeout
        .saturating_mul(tries)
        .saturating_mul(u32::try_from(servers.max(1)).unwrap_or(u32::MAX))
}

fn configured_nameservers(settings: &ResolverSettings) -> Result<Vec<SocketAddr>, ResolveError> {
    let nameservers = if settings.nameservers.is_empty() {
        let text =
            std::fs::read_to_string(RESOLV_CONF).map_err(|error| ResolveError::NoNameservers {
                reason: format!("cannot read {RESOLV_CONF}: {error}"),
            })?;
        system_nameservers(&text)
    } else {
        settings.nameservers.clone()
    };
    if nameservers.is_empty() {
        return Err(ResolveError::NoNameservers {
            reason: format!("none configured and none usable in {RESOLV_CONF}"),
        });
    }
    Ok(nameservers)
}

/// The trust anchor file's DNSKEYs, or the embedded IANA root KSKs.
fn trust_anchors(path: Option<&PathBuf>) -> Result<TrustAnchors, ResolveError> {
    let (text, path) = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ResolveError::TrustAnchor {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            (text, path.clone())
        }
        None => (
            ROOT_ANCHORS.to_owned(),
            PathBuf::from("(embedded IANA root)"),
        ),
    };
    let anchors = TrustAnchors::from_str(&text).map_err(|e| ResolveError::TrustAnchor {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if anchors.is_empty() {
        return Err(ResolveError::TrustAnchor {
            path,
            reason: "no DNSKEY record for the root zone".into(),
        });
    }
    Ok(anchors)
}

/// hickory's resolver with validation on. `ResolverOpts::trust_anchor` is ignored by hickory
/// 0.26 (DEPENDENCIES.md), so the anchors go through the builder.
fn validating(
    nameservers: &[SocketAddr],
    settings: &ResolverSettings,
    anchors: TrustAnchors,
) -> Result<TokioResolver, ResolveError> {
    let servers = nameservers.iter().map(|addr| {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
    });
    let config = ResolverConfig::from_name_servers(servers.collect());
    let mut options = ResolverOpts::default();
    options.timeout = settings.timeout;
    // hickory's `attempts` counts retries after the first try (its `RetryDnsHandle`); ours
    // counts tries.
    options.attempts = settings.attempts.max(1) - 1;
    // Mail routing comes from DNS alone; /etc/hosts must not redirect an MX host.
    options.use_hosts_file = ResolveHosts::Never;
    options.ndots = 0;
    options.validate = true;
    // CNAMEs stay in the answer: RFC 7672 §2.2.2 needs the chain and its status.
    options.preserve_intermediates = true;
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .with_trust_anchor(Arc::new(anchors))
        .build()
        .map_err(|error| ResolveError::NoNameservers {
            reason: error.to_string(),
        })
}

/// hickory's answer or error as an [`Answer`]: the weakest proof of the records (or of the
/// denial's authority records), NXDOMAIN and NODATA as empty answers.
fn classify(
    name: &str,
    record_type: RecordType,
    result: Result<hickory_resolver::lookup::Lookup, NetError>,
    elapsed: Duration,
) -> Result<Answer, ResolveError> {
    let label = record_type_label(record_type);
    let error = match result {
        Ok(lookup) => {
            let records = lookup.answers().to_vec();
            let dnssec = weakest_of(
                records.iter().map(|r| from_proof(r.proof)),
                Dnssec::Indeterminate,
            );
            return Ok(Answer {
                records,
                dnssec,
                nxdomain: false,
            });
        }
        Err(error) => error,
    };
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            let dnssec = weakest_of(
                no_records
                    .authorities
                    .iter()
                    .flat_map(|records| records.iter())
                    .map(|r| from_proof(r.proof)),
                Dnssec::Indeterminate,
            );
            Ok(Answer {
                records: Vec::new(),
                dnssec,
                nxdomain: no_records.response_code == ResponseCode::NXDomain,
            })
        }
        NetError::Dns(DnsError::Nsec {
            response, proof, ..
        }) => Ok(Answer {
            records: Vec::new(),
            dnssec: from_proof(proof),
            nxdomain: response.metadata.response_code == ResponseCode::NXDomain,
        }),
        NetError::Dns(DnsError::DnssecBogus) => Err(ResolveError::Bogus {
            name: name.to_owned(),
            record_type: label,
        }),
        NetError::Dns(DnsError::ResponseCode(code)) => Err(ResolveError::ServerFailure {
            name: name.to_owned(),
            record_type: label,
            response_code: code.to_string(),
        }),
        NetError::Timeout => Err(ResolveError::Timeout {
            name: name.to_owned(),
            record_type: label,
            elapsed,
        }),
        source => Err(ResolveError::Lookup {
            name: name.to_owned(),
            record_type: label,
            source: Box::new(source),
        }),
    }
}

/// A recipient domain must be a host name before it is looked up or put into a URL (the
/// inbound RCPT check already refuses others; DSNs and queued mail come this way too). A root
/// dot is allowed here, as DNS allows it.
pub(crate) fn recipient_domain(domain: &str) -> Result<(), ResolveError> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    strictmx_protocol::check_host_name(name).map_err(|problem| ResolveError::NotAHostName {
        name: domain.to_owned(),
        problem,
    })
}

fn fully_qualified(name: &str) -> Result<Name, ResolveError> {
    let text = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&text).map_err(|error| ResolveError::InvalidName {
        name: name.to_owned(),
        source: Box::new(NetError::from(error)),
    })
}

pub(crate) fn record_type_label(record_type: RecordType) -> &'static str {
    match record_type {
        RecordType::MX => "MX",
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::TLSA => "TLSA",
        RecordType::TXT => "TXT",
        RecordType::DNSKEY => "DNSKEY",
        RecordType::CNAME => "CNAME",
        _ => "other",
    }
}

/// The `nameserver` addresses of a resolv.conf text, on port 53. Entries that do not parse as
/// an IP address (for instance with an IPv6 zone index) are skipped.
fn system_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(address)) => address.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameserver_lines_become_port_53_servers() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver ::1\n\
                    nameserver fe80::1%eth0\noptions edns0\n";
        assert_eq!(
            system_nameservers(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().expect("literal"),
                "[::1]:53".parse::<SocketAddr>().expect("literal"),
            ]
        );
    }

    #[test]
    fn the_embedded_anchor_is_the_iana_root_ksk_set() {
        let embedded = trust_anchors(None).expect("embedded anchor parses");
        let reference = TrustAnchors::default();
        assert_eq!(embedded.len(), 2);
        for index in 0..2 {
            let ours = embedded.get(index).expect("key");
            assert!(
                reference.contains(ours),
                "key {index} is not an IANA root KSK"
            );
        }
    }

    #[test]
    fn the_resolver_mode_refuses_an_ad_bit_from_off_loopback() {
        let remote: SocketAddr = "192.0.2.53:53".parse().expect("literal");
        let settings = ResolverSettings {
            nameservers: vec![remote],
            dnssec: DnssecMode::TrustResolver,
            ..ResolverSettings::default()
        };
        assert!(matches!(
            DnsResolver::new(&settings),
            Err(ResolveError::UntrustedResolver { nameserver }) if nameserver == remote
        ));
        let trusted = ResolverSettings {
            trusted_nameservers: vec![remote],
            ..settings
        };
        assert_eq!(
            DnsResolver::new(&trusted).expect("trusted").mode(),
            "trust-resolver"
        );
    }

    #[test]
    fn a_trust_anchor_file_without_keys_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("anchor.key");
        std::fs::write(&path, "; nothing here\n").expect("write");
        assert!(matches!(
            trust_anchors(Some(&path)),
            Err(ResolveError::TrustAnchor { .. })
        ));
    }

    #[test]
    fn names_are_queried_fully_qualified() {
        let name = fully_qualified("example.org").expect("valid name");
        assert!(name.is_fqdn());
        assert_eq!(name.to_ascii(), "example.org.");
        assert_eq!(
            fully_qualified("example.org.").expect("valid").to_ascii(),
            "example.org."
        );
    }
}
