//! The HTTPS clients: for MTA-STS policy fetches, and for TLSRPT `https:` reports. Both use
//! rustls on ring with the web PKI roots plus an optional extra CA bundle, host names resolved
//! through our own [`DnsResolver`], no redirects, no proxies from the environment, timeouts. The
//! report client connects only to public addresses: the URIs come from strangers' DNS.
//!
//! What a policy body must look like is checked in `sts_fetch`; which report URIs are used is
//! `strictmx_policy::tlsrpt_record`'s; posting is `strictmx-tlsrpt`'s.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use strictmx_policy::address::special_range;

use crate::error::ResolveError;
use crate::resolver::DnsResolver;

/// Timeouts of the client; a request's own total timeout may be shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsTimeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// Whole request, body included.
    pub total: Duration,
}

impl Default for HttpsTimeouts {
    fn default() -> Self {
        HttpsTimeouts {
            connect: Duration::from_secs(10),
            total: Duration::from_secs(30),
        }
    }
}

/// Resolves HTTP host names through strictmx's resolver (so that the configured name servers
/// are used, not the system's), on the port reqwest fills in.
struct OurDns(DnsResolver);

impl Resolve for OurDns {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolver.addresses(&host).await?;
            let addrs: Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

/// Resolves TLSRPT report hosts like [`OurDns`], then keeps only the addresses that are on the
/// public internet or in `allowed`. reqwest connects to exactly the addresses a resolver
/// returns, so the addresses checked are the addresses connected to: a second lookup that
/// answers differently (DNS rebinding) is never made.
struct PublicOnlyDns {
    resolver: DnsResolver,
    allowed: Arc<[IpNet]>,
}

impl Resolve for PublicOnlyDns {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.resolver.clone();
        let allowed = Arc::clone(&self.allowed);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolver.addresses(&host).await?;
            let (usable, refused) = public_addresses(addresses, &allowed);
            if usable.is_empty() {
                return Err(Box::new(ResolveError::ReportHostRefused { host, refused }) as _);
            }
            if !refused.is_empty() {
                tracing::warn!(host, refused = %refused.join(", "), "report host addresses not used");
            }
            let addrs: Addrs = Box::new(
                usable
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

/// Splits `addresses` into those reports may go to and the others, each described with its
/// range ("10.1.2.3 (private)").
fn public_addresses(addresses: Vec<IpAddr>, allowed: &[IpNet]) -> (Vec<IpAddr>, Vec<String>) {
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    for ip in addresses {
        match special_range(ip) {
            Some(range) if !allowed.iter().any(|net| net.contains(&ip)) => {
                refused.push(format!("{ip} ({range})"));
            }
            _ => usable.push(ip),
        }
    }
    (usable, refused)
}

/// The web PKI roots plus every certificate in `extra_ca` (PEM).
fn roots(extra_ca: Option<&Path>) -> Result<RootCertStore, ResolveError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = extra_ca else {
        return Ok(roots);
    };
    let bundle_error = |reason: String| ResolveError::CaBundle {
        path: path.to_owned(),
        reason,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bundle_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bundle_error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(bundle_error("no certificate in the file".into()));
    }
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| bundle_error(e.to_string()))?;
    }
    Ok(roots)
}

/// The HTTPS client for MTA-STS policy fetches, with chosen timeouts (each request may set a
/// shorter total with `RequestBuilder::timeout`).
///
/// RFC 8461 §3.3: redirects are not followed (a 3xx is returned as is); HTTP caches are not
/// used (reqwest has none). Proxies from the environment are ignored so that a stray
/// `HTTPS_PROXY` cannot reroute policy fetches.
pub fn https_client_with(
    resolver: &DnsResolver,
    extra_ca: Option<&Path>,
    timeouts: HttpsTimeouts,
) -> Result<reqwest::Client, ResolveError> {
    client(OurDns(resolver.clone()), extra_ca, timeouts)
}

/// The HTTPS client for TLSRPT `https:` reports: like [`https_client_with`], but it connects
/// only to addresses on the public internet, or in `allowed` (for test labs), whatever the
/// report host's DNS answers. No proxy, no redirects: the address checked is the peer.
pub fn report_client(
    resolver: &DnsResolver,
    extra_ca: Option<&Path>,
    allowed: &[IpNet],
    timeouts: HttpsTimeouts,
) -> Result<reqwest::Client, ResolveError> {
    let dns = PublicOnlyDns {
        resolver: resolver.clone(),
        allowed: allowed.into(),
    };
    client(dns, extra_ca, timeouts)
}

/// The client for webhook POSTs: web PKI roots, no proxy, no redirects. Plain `http://` is
/// accepted because `[[webhook]] url` allows it only to loopback addresses.
pub fn webhook_client(timeouts: HttpsTimeouts) -> Result<reqwest::Client, ResolveError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ResolveError::CaBundle {
            path: std::path::PathBuf::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots(None)?)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .user_agent(concat!("strictmx/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| ResolveError::HttpsClient { source })
}

fn client(
    dns: impl Resolve + 'static,
    extra_ca: Option<&Path>,
    timeouts: HttpsTimeouts,
) -> Result<reqwest::Client, ResolveError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ResolveError::CaBundle {
            path: extra_ca.map(Path::to_owned).unwrap_or_default(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots(extra_ca)?)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(dns)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .user_agent(concat!("strictmx/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| ResolveError::HttpsClient { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_hosts_keep_only_public_or_explicitly_allowed_addresses() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("test address");
        let lab: IpNet = "127.77.0.0/16".parse().expect("test network");
        /// (rule, resolved, allowed networks, used, refused)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [IpNet],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            (
                "public addresses are used",
                &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
                &[],
                &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
                &[],
            ),
            (
                "loopback, private and link-local are refused",
                &["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"],
                &[],
                &[],
                &[
                    "127.0.0.1 (loopback)",
                    "10.1.2.3 (private)",
                    "169.254.169.254 (link-local)",
                    "::1 (loopback)",
                ],
            ),
            (
                "a private address beside a public one is dropped, the public one kept",
                &["192.168.1.1", "93.184.215.14"],
                &[],
                &["93.184.215.14"],
                &["192.168.1.1 (private)"],
            ),
            (
                "an allowed network opens only itself",
                &["127.77.3.1", "127.0.0.1"],
                std::slice::from_ref(&lab),
                &["127.77.3.1"],
                &["127.0.0.1 (loopback)"],
            ),
        ];
        for (rule, addresses, allowed, usable, refused) in cases {
            let (got_usable, got_refused) =
                public_addresses(addresses.iter().map(|a| ip(a)).collect(), allowed);
            let expected: Vec<IpAddr> = usable.iter().map(|a| ip(a)).collect();
            assert_eq!(got_usable, expected, "{rule}");
            assert_eq!(got_refused, *refused, "{rule}");
        }
    }
}
