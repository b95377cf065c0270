//! One MTA-STS policy fetch (RFC 8461 §3.3): GET `https://mta-sts.<domain>/.well-known/mta-sts.txt`,
//! 200 only, `text/plain` only, a size cap, a total timeout, failures classified for TLSRPT.
//!
//! The client's properties (web PKI, no redirects, no proxies) come from `https`; parsing is
//! `strictmx_policy::sts::parse_policy`; when to fetch and what to cache is `mta_sts`'s call.

use std::error::Error as _;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use strictmx_policy::sts::{StsPolicy, parse_policy};

use crate::error::ResolveError;

/// What the policy host served: the body exactly as fetched and its parsed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchedPolicy {
    pub(crate) text: String,
    pub(crate) policy: StsPolicy,
}

/// RFC 8461 §3.3: the policy lives at this path on host `mta-sts.<domain>`.
pub(crate) fn policy_url(domain: &str) -> String {
    format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
}

/// Fetches and parses the policy of `domain` within `timeout`, reading at most `max_size`
/// bytes of body.
pub(crate) async fn fetch_policy(
    client: &reqwest::Client,
    domain: &str,
    max_size: usize,
    timeout: Duration,
) -> Result<FetchedPolicy, ResolveError> {
    crate::resolver::recipient_domain(domain)?;
    let started = Instant::now();
    let transfer = async {
        let response = client
            .get(policy_url(domain))
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| transport_error(domain, source))?;
        // RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed"; only 200 carries a policy.
        if response.status() != StatusCode::OK {
            return Err(ResolveError::StsStatus {
                domain: domain.to_owned(),
                status: response.status().as_u16(),
            });
        }
        check_media_type(domain, response.headers().get(CONTENT_TYPE))?;
        read_capped(domain, response, max_size).await
    };
    let body = tokio::time::timeout(timeout, transfer)
        .await
        .map_err(|_| ResolveError::StsTimeout {
            domain: domain.to_owned(),
            elapsed: started.elapsed(),
        })??;
    let text = String::from_utf8(body).map_err(|_| ResolveError::StsInvalid {
        domain: domain.to_owned(),
        reason: "the body is not UTF-8".into(),
    })?;
    let policy = parse_policy(&text).map_err(|error| ResolveError::StsInvalid {
        domain: domain.to_owned(),
        reason: error.to_string(),
    })?;
    Ok(FetchedPolicy { text, policy })
}

/// RFC 8461 §3.2: the policy is served as `text/plain` (parameters such as `charset` allowed).
fn check_media_type(
    domain: &str,
    value: Option<&reqwest::header::HeaderValue>,
) -> Result<(), ResolveError> {
    let found = value
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if is_text_plain(&found) {
        return Ok(());
    }
    Err(ResolveError::StsContentType {
        domain: domain.to_owned(),
        found,
    })
}

fn is_text_plain(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/plain"))
}

/// Reads the body, refusing it as soon as it grows past `max_size`.
async fn read_capped(
    domain: &str,
    mut response: reqwest::Response,
    max_size: usize,
) -> Result<Vec<u8>, ResolveError> {
    let too_large = || ResolveError::StsTooLarge {
        domain: domain.to_owned(),
        limit: max_size,
    };
    if response
        .content_length()
        .is_some_and(|length| length > u64::try_from(max_size).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| transport_error(domain, source))?
    {
        if body.len().saturating_add(chunk.len()) > max_size {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport failure, or a certificate the web PKI does not accept (RFC 8460 §4.3.2
/// `sts-webpki-invalid`), found by walking the error's causes down to rustls.
fn transport_error(domain: &str, source: reqwest::Error) -> ResolveError {
    if let Some(reason) = certificate_problem(&source) {
        return ResolveError::StsCertificate {
            domain: domain.to_owned(),
            reason,
        };
    }
    if source.is_timeout() {
        return ResolveError::StsTimeout {
            domain: domain.to_owned(),
            elapsed: Duration::ZERO,
        };
    }
    ResolveError::StsTransport {
        domain: domain.to_owned(),
        source,
    }
}

fn certificate_problem(error: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(current) = cause {
        if let Some(tls) = rustls_error(current) {
            return match tls {
                rustls::Error::InvalidCertificate(problem) => Some(format!("{problem:?}")),
                _ => None,
            };
        }
        cause = current.source();
    }
    None
}

/// An `io::Error` hides its payload from `source()`; look inside it too (io errors may nest).
fn rustls_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut current = error;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_plain_is_a_policy_media_type() {
        let rows = [
            ("RFC 8461 §3.2: text/plain", "text/plain", true),
            (
                "RFC 8461 §3.2: parameters are allowed",
                "text/plain; charset=utf-8",
                true,
            ),
            (
                "RFC 2045 §5.1: media types are case-insensitive",
                "Text/Plain",
                true,
            ),
            ("RFC 8461 §3.2: html is not a policy", "text/html", false),
            ("RFC 8461 §3.2: a missing type is not text/plain", "", false),
            ("RFC 8461 §3.2: no prefix matching", "text/plainx", false),
        ];
        for (rule, value, expected) in rows {
            assert_eq!(is_text_plain(value), expected, "{rule}");
        }
    }

    #[tokio::test]
    async fn no_policy_url_is_built_for_a_domain_that_is_not_a_host_name() {
        // Issue 14: `x.test/#` would make `https://mta-sts.x.test/#/.well-known/...`.
        let resolver = crate::DnsResolver::new(&crate::ResolverSettings {
            nameservers: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 9))],
            timeout: Duration::from_millis(100),
            attempts: 1,
            ..crate::ResolverSettings::default()
        })
        .expect("resolver");
        let client =
            crate::https::https_client_with(&resolver, None, crate::HttpsTimeouts::default())
                .expect("client");
        for domain in ["x.test/#", "x.test?a=1", "user@x.test", "x_y.test"] {
            let error = fetch_policy(&client, domain, 1024, Duration::from_secs(1))
                .await
                .expect_err(domain);
            assert!(
                matches!(error, ResolveError::NotAHostName { .. }),
                "{domain}: {error:?}"
            );
        }
    }

    #[test]
    fn the_policy_url_is_the_well_known_path_on_the_mta_sts_host() {
        assert_eq!(
            policy_url("example.com"),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
    }
}
