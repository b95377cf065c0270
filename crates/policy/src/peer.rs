//! Judges a peer after the TLS handshake (or its absence) against one planned host.
//!
//! The transport observes and computes the facts ([`PeerFacts`]: version, chain, web PKI and
//! DANE-TA validation results); this module decides whether `MAIL FROM` may follow, how the peer
//! counts as authenticated, and which RFC 8460 §4.3 result type a failure is reported under.

use serde::Serialize;

use crate::plan::{PlannedHost, TlsRequirement};
use crate::report::{PolicyType, ResultType};
use crate::rules::{Pin, TlsVersion};
use crate::tlsa;

/// The result of a web PKI (RFC 5280 path, RFC 6125 name) validation the transport ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WebpkiVerdict {
    Valid,
    /// A certificate in the path is outside its validity period.
    Expired,
    /// No path to a trusted root (unknown issuer, self-signed, bad signature).
    NotTrusted,
    /// The leaf names none of the reference identifiers.
    HostMismatch,
    /// Any other failure (malformed certificate, unsupported algorithm, ...).
    Invalid {
        reason: String,
    },
}

/// What the transport saw of one TLS session, for [`judge_peer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerFacts {
    /// The negotiated protocol version.
    pub tls_version: TlsVersion,
    /// The presented chain, DER, leaf first, in the order the server sent it.
    #[serde(skip)]
    pub chain: Vec<Vec<u8>>,
    /// Web PKI validation of the chain against the trusted roots (plus the configured extra
    /// CA bundle) for the names of a `Verified` requirement, or the host name otherwise.
    pub webpki: WebpkiVerdict,
    /// DANE-TA(2) only: for the candidates [`tlsa::dane_ta_candidates`] returns, the transport
    /// validates the chain with that one certificate as the only trust anchor, checking
    /// validity dates and the `Dane` requirement's `names` (RFC 7672 §3.2.2). `Valid` if any
    /// candidate validated, else the first candidate's problem; `None` when there was no
    /// candidate or the requirement is not `Dane`.
    pub dane_ta: Option<WebpkiVerdict>,
    /// Pins on an issuing certificate only: for the candidates [`pin_anchor_candidates`]
    /// returns, the transport validates the chain with that one certificate as the only trust
    /// anchor, checking validity dates and the names [`pin_anchor_names`] gives. `Valid` if any
    /// candidate validated, else the first candidate's problem; `None` when there was no
    /// candidate.
    pub pin_anchor: Option<WebpkiVerdict>,
}

/// How the peer was authenticated, for attempt records and logs (`auth` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerAuth {
    /// A usable TLSA record matched (RFC 7672).
    Dane,
    /// Web PKI for the MX host name under an MTA-STS policy (RFC 8461 §4.1).
    Sts,
    /// Web PKI demanded by a local rule, the global default or REQUIRETLS.
    Webpki,
    /// Nothing was required beyond what the plan allowed (opportunistic or encrypted only).
    None,
}

impl PeerAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerAuth::Dane => "dane",
            PeerAuth::Sts => "sts",
            PeerAuth::Webpki => "webpki",
            PeerAuth::None => "none",
        }
    }
}

/// Why a peer does not meet its host's requirement, as TLSRPT reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerFailure {
    pub result_type: ResultType,
    pub reason: String,
}

/// A session that did not reach TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NoTls {
    /// The EHLO reply did not offer STARTTLS (or STARTTLS was refused).
    NotOffered,
    /// STARTTLS was offered but the handshake failed.
    HandshakeFailed { reason: String },
}

/// Whether `MAIL FROM` may follow this TLS session with `host`, and how the peer counts as
/// authenticated. Checks, in order: the version floor, the requirement, then the pins.
pub fn judge_peer(host: &PlannedHost, peer: &PeerFacts) -> Result<PeerAuth, PeerFailure> {
    if let Some(floor) = host.min_tls_version
        && peer.tls_version < floor
    {
        // RFC 8460 §4.3.1 has no category for a version floor: "validation-failure".
        return Err(failure(
            ResultType::ValidationFailure,
            format!(
                "negotiated {}, a rule requires at least {}",
                peer.tls_version.as_str(),
                floor.as_str()
            ),
        ));
    }
    let auth = judge_requirement(&host.requirement, host.report.policy_type, peer)?;
    check_pins(host, peer)?;
    Ok(auth)
}

/// MTA-STS `testing` (RFC 8461 §5): what enforce mode would have rejected in this session, for
/// TLSRPT only; `None` when nothing would have failed or the host is not under testing.
pub fn judge_testing(host: &PlannedHost, peer: &PeerFacts) -> Option<PeerFailure> {
    let testing = host.testing.as_ref()?;
    judge_requirement(testing, PolicyType::Sts, peer).err()
}

/// Whether a session without TLS may carry mail to `host`; the failure to report when not.
pub fn judge_without_tls(host: &PlannedHost, what: &NoTls) -> Result<(), PeerFailure> {
    if host.requirement.allows_plaintext() {
        return Ok(());
    }
    Err(no_tls_failure(&host.requirement, what))
}

/// Testing mode's view of a session without TLS: the failure enforce mode would have had.
pub fn testing_without_tls(host: &PlannedHost, what: &NoTls) -> Option<PeerFailure> {
    host.testing
        .as_ref()
        .map(|requirement| no_tls_failure(requirement, what))
}

/// What TLSRPT counts for a session that did not reach TLS (RFC 8460 §4.3.1): under MTA-STS
/// `testing` the failure enforce mode would have had (RFC 8461 §5); under a requirement that
/// forbids plaintext, that requirement's failure; and where plaintext may carry the mail, the
/// failure to negotiate TLS all the same. A session without TLS is never a success.
pub fn report_without_tls(host: &PlannedHost, what: &NoTls) -> PeerFailure {
    if let Some(failure) = testing_without_tls(host, what) {
        return failure;
    }
    if let Err(failure) = judge_without_tls(host, what) {
        return failure;
    }
    match what {
        NoTls::NotOffered => failure(
            ResultType::StarttlsNotSupported,
            "STARTTLS not offered".to_owned(),
        ),
        NoTls::HandshakeFailed { reason } => failure(ResultType::ValidationFailure, reason.clone()),
    }
}

/// What TLSRPT counts for a TLS session whose peer the policy judged as `verdict`: under
/// MTA-STS `testing` what enforce mode would have refused (RFC 8461 §5, the delivery went on
/// under the plan), otherwise the judgement's own failure. `None` is a successful session.
pub fn report_tls_session(
    host: &PlannedHost,
    peer: &PeerFacts,
    verdict: &Result<PeerAuth, PeerFailure>,
) -> Option<PeerFailure> {
    if host.testing.is_some() {
        return judge_testing(host, peer);
    }
    verdict.as_ref().err().cloned()
}

fn no_tls_failure(requirement: &TlsRequirement, what: &NoTls) -> PeerFailure {
    match what {
        // RFC 8460 §4.3.1: "starttls-not-supported: the recipient MX did not support
        // STARTTLS". RFC 7672 §2.2 / RFC 8461 §5: a mandatory-TLS host is then unusable.
        NoTls::NotOffered => failure(
            ResultType::StarttlsNotSupported,
            format!(
                "STARTTLS not offered; {} requires TLS",
                requirement.as_str()
            ),
        ),
        // RFC 8460 §4.3.1: a handshake failure outside the named categories.
        NoTls::HandshakeFailed { reason } => failure(
            ResultType::ValidationFailure,
            format!(
                "TLS handshake failed under {}: {reason}",
                requirement.as_str()
            ),
        ),
    }
}

fn judge_requirement(
    requirement: &TlsRequirement,
    policy_type: PolicyType,
    peer: &PeerFacts,
) -> Result<PeerAuth, PeerFailure> {
    match requirement {
        TlsRequirement::Opportunistic | TlsRequirement::Encrypted => Ok(PeerAuth::None),
        TlsRequirement::Verified { names } => {
            webpki_result(&peer.webpki, names)?;
            Ok(match policy_type {
                PolicyType::Sts => PeerAuth::Sts,
                PolicyType::Tlsa | PolicyType::NoPolicyFound => PeerAuth::Webpki,
            })
        }
        TlsRequirement::Dane { records, names } => judge_dane(records, names, peer),
    }
}

/// RFC 7672 §3.1: a session is authenticated when any usable record matches: DANE-EE(3) the
/// leaf alone, DANE-TA(2) a presented certificate from which the leaf validates.
fn judge_dane(
    records: &[crate::facts::TlsaRecord],
    names: &[String],
    peer: &PeerFacts,
) -> Result<PeerAuth, PeerFailure> {
    // RFC 7672 §3.1.1: DANE-EE ignores the leaf's names and validity dates.
    if tlsa::dane_ee_matches(records, &peer.chain) {
        return Ok(PeerAuth::Dane);
    }
    if !tlsa::dane_ta_candidates(records, &peer.chain).is_empty() {
        // RFC 7672 §3.1.2, §3.2.2: DANE-TA checks the chain and the reference identifiers.
        return match &peer.dane_ta {
            Some(verdict) => webpki_result(verdict, names).map(|()| PeerAuth::Dane),
            None => Err(failure(
                ResultType::ValidationFailure,
                "DANE-TA trust anchor presented but its chain was not validated".to_owned(),
            )),
        };
    }
    // RFC 8460 §4.3.1: no record matched: a general "validation-failure".
    Err(failure(
        ResultType::ValidationFailure,
        "no usable TLSA record matches the presented certificate chain".to_owned(),
    ))
}

/// The presented certificates other than the end-entity one that carry a pin: each is a
/// trust anchor the end-entity certificate may validate to (for the transport to check).
/// Empty when the end-entity certificate itself is pinned, since nothing more is needed.
pub fn pin_anchor_candidates(pins: &[Pin], chain: &[Vec<u8>]) -> Vec<usize> {
    if leaf_is_pinned(pins, chain) {
        return Vec::new();
    }
    chain
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, cert)| pins.iter().any(|pin| pin.matches(cert)))
        .map(|(index, _)| index)
        .collect()
}

/// The reference identifiers an end-entity certificate must name when it is accepted through
/// a pinned issuer: the requirement's names, or else the host's own name. Without a name
/// check, any certificate the pinned CA ever issued (to anyone) would pass.
pub fn pin_anchor_names(host: &PlannedHost) -> Vec<String> {
    match host.requirement.required_names() {
        Some(names) if !names.is_empty() => names.to_vec(),
        _ => vec![host.host.clone()],
    }
}

fn leaf_is_pinned(pins: &[Pin], chain: &[Vec<u8>]) -> bool {
    chain
        .first()
        .is_some_and(|leaf| pins.iter().any(|pin| pin.matches(leaf)))
}

/// Pins (when set) are met by the end-entity certificate, the key the handshake proved; or by a
/// presented issuing certificate that the end-entity certificate validates to as the only trust
/// anchor (dates and names checked). A pinned certificate merely appended to the chain proves
/// nothing: anyone can send a public certificate.
fn check_pins(host: &PlannedHost, peer: &PeerFacts) -> Result<(), PeerFailure> {
    if host.pins.is_empty() || leaf_is_pinned(&host.pins, &peer.chain) {
        return Ok(());
    }
    if pin_anchor_candidates(&host.pins, &peer.chain).is_empty() {
        return Err(failure(
            ResultType::ValidationFailure,
            "neither the end-entity certificate nor a presented issuer matches a configured pin"
                .to_owned(),
        ));
    }
    match &peer.pin_anchor {
        // RFC 8460 §4.3.1: the certificate result types, as for any other validation.
        Some(verdict) => webpki_result(verdict, &pin_anchor_names(host)).map_err(|problem| {
            failure(
                problem.result_type,
                format!(
                    "a pinned certificate is presented as issuer, but {}",
                    problem.reason
                ),
            )
        }),
        None => Err(failure(
            ResultType::ValidationFailure,
            "a pinned issuer was presented but the chain to it was not validated".to_owned(),
        )),
    }
}

/// RFC 8460 §4.3.1: a failed validation maps onto the certificate result types.
fn webpki_result(verdict: &WebpkiVerdict, names: &[String]) -> Result<(), PeerFailure> {
    Err(match verdict {
        WebpkiVerdict::Valid => return Ok(()),
        WebpkiVerdict::Expired => failure(
            ResultType::CertificateExpired,
            "a certificate in the chain is expired or not yet valid".to_owned(),
        ),
        WebpkiVerdict::NotTrusted => failure(
            ResultType::CertificateNotTrusted,
            "the chain does not lead to a trusted root".to_owned(),
        ),
        WebpkiVerdict::HostMismatch => failure(
            ResultType::CertificateHostMismatch,
            format!("the certificate names none of {}", names.join(", ")),
        ),
        WebpkiVerdict::Invalid { reason } => failure(
            ResultType::ValidationFailure,
            format!("certificate validation failed: {reason}"),
        ),
    })
}

fn failure(result_type: ResultType, reason: String) -> PeerFailure {
    PeerFailure {
        result_type,
        reason,
    }
}

#[cfg(test)]
mod tests;
