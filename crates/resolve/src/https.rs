//! The HTTPS client for MTA-STS policy fetches (and TLSRPT `https:` reports): rustls on ring
//! with the web PKI roots plus an optional extra CA bundle, host names resolved through our
//! own [`DnsResolver`], no redirects, no proxies from the environment, timeouts.
//!
//! What a policy body must look like is checked in `sts_fetch`; TLSRPT's use is its own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

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

/// The HTTPS client strictmx uses for MTA-STS policies and TLSRPT reports, with the default
/// timeouts (each request may set a shorter total with `RequestBuilder::timeout`).
pub fn https_client(
    resolver: &DnsResolver,
    extra_ca: Option<&Path>,
) -> Result<reqwest::Client, ResolveError> {
    https_client_with(resolver, extra_ca, HttpsTimeouts::default())
}

/// [`https_client`] with chosen timeouts.
///
/// RFC 8461 §3.3: redirects are not followed (a 3xx is returned as is); HTTP caches are not
/// used (reqwest has none). Proxies from the environment are ignored so that a stray
/// `HTTPS_PROXY` cannot reroute policy fetches.
pub fn https_client_with(
    resolver: &DnsResolver,
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
        .dns_resolver(OurDns(resolver.clone()))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .user_agent(concat!("strictmx/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| ResolveError::HttpsClient { source })
}
