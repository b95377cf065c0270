//! The DNS client: MX and A/AAAA lookups through hickory with failures classified.
//!
//! Answers are returned as facts; DNSSEC status (for DANE) will be added to them in a later issue.
//! Planning and connecting are left to `strictmx-policy` and the delivery transport.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use strictmx_policy::MxHost;

use crate::error::ResolveError;
use crate::mx::MxAnswer;

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// How to reach DNS; built by `strictmx-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Recursive resolvers to ask; empty means the `nameserver` lines of /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Time allowed for one query to one server.
    pub timeout: Duration,
    /// How many times a query is sent before giving up.
    pub attempts: usize,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// A caching DNS client; cheap to clone.
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
    /// Upper bound on one lookup, whatever the library does internally.
    deadline: Duration,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl DnsResolver {
    pub fn new(settings: &ResolverSettings) -> Result<Self, ResolveError> {
        let nameservers = if settings.nameservers.is_empty() {
            let text = std::fs::read_to_string(RESOLV_CONF).map_err(|error| {
                ResolveError::NoNameservers {
                    reason: format!("cannot read {RESOLV_CONF}: {error}"),
                }
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
        options.attempts = settings.attempts.max(1);
        // Mail routing comes from DNS alone; /etc/hosts must not redirect an MX host.
        options.use_hosts_file = ResolveHosts::Never;
        options.ndots = 0;
        let inner = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|error| ResolveError::NoNameservers {
                reason: error.to_string(),
            })?;
        let tries = u32::try_from(settings.attempts.max(1)).unwrap_or(u32::MAX);
        let deadline = settings
            .timeout
            .saturating_mul(tries.saturating_add(1))
            .saturating_mul(u32::try_from(nameservers.len()).unwrap_or(u32::MAX));
        Ok(DnsResolver { inner, deadline })
    }

    /// The MX answer for `domain`: hosts in try order, a null MX, or an implicit MX.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, ResolveError> {
        let lookup = self.query(domain, RecordType::MX).await?;
        let records = lookup
            .into_iter()
            .filter_map(|data| match data {
                RData::MX(mx) => Some(MxHost {
                    name: mx.exchange.to_ascii(),
                    preference: mx.preference,
                }),
                _ => None,
            })
            .collect();
        Ok(MxAnswer::from_records(domain, records, &mut rand::rng()))
    }

    /// The IPv4 then IPv6 addresses of `host`. Both families are asked; one failing while the
    /// other answers still yields the addresses found.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let (v4, v6) = tokio::join!(
            self.query(host, RecordType::A),
            self.query(host, RecordType::AAAA)
        );
        let mut found = Vec::new();
        let mut failure = None;
        for answer in [v4, v6] {
            match answer {
                Ok(data) => found.extend(data.into_iter().filter_map(|data| match data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                })),
                Err(error) => {
                    tracing::debug!(domain = host, %error, "address lookup failed");
                    failure.get_or_insert(error);
                }
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
        Err(failure.unwrap_or_else(|| ResolveError::NoAddresses {
            host: host.to_owned(),
        }))
    }

    /// One lookup with a hard deadline. "No records" (NOERROR, empty) is an empty answer;
    /// NXDOMAIN is `NoSuchDomain`.
    async fn query(&self, name: &str, record_type: RecordType) -> Result<Vec<RData>, ResolveError> {
        let fqdn = fully_qualified(name)?;
        let started = Instant::now();
        let result = tokio::time::timeout(self.deadline, self.inner.lookup(fqdn, record_type))
            .await
            .map_err(|_| ResolveError::Timeout {
                name: name.to_owned(),
                record_type: record_type_label(record_type),
                elapsed: started.elapsed(),
            })?;
        match result {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .map(|record| record.data.clone())
                .collect()),
            Err(error) => classify(name, record_type, error, started.elapsed()),
        }
    }
}

fn classify(
    name: &str,
    record_type: RecordType,
    error: NetError,
    elapsed: Duration,
) -> Result<Vec<RData>, ResolveError> {
    let label = record_type_label(record_type);
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            if no_records.response_code == ResponseCode::NXDomain {
                Err(ResolveError::NoSuchDomain {
                    name: name.to_owned(),
                })
            } else {
                Ok(Vec::new())
            }
        }
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

fn record_type_label(record_type: RecordType) -> &'static str {
    match record_type {
        RecordType::MX => "MX",
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
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
