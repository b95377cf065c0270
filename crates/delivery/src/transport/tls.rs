//! TLS for STARTTLS: trust roots, one client configuration whose sessions can be resumed, the
//! checks that compute what the policy needs to judge the peer (the chain, web PKI validation,
//! DANE-TA and pinned-issuer validation), and the facts of a finished handshake.
//!
//! Nothing here decides. During the handshake the verifier only checks the handshake
//! signatures (so the peer holds the key of the certificate it shows); once it is done, the
//! chain the peer proved is checked under the host's demands, and `strictmx_policy::judge_peer`
//! decides, before anything but EHLO is sent. What to do after a failed handshake is left to
//! the delivery run.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion,
    RootCertStore, SignatureScheme,
};
use strictmx_policy::rules::{Pin, TlsVersion};
use strictmx_policy::{PeerFacts, TlsaRecord, WebpkiVerdict, pin_anchor_candidates, tlsa};
use tokio_rustls::TlsConnector;

use crate::transport::error::TransportError;

/// What became of the certificate check during one handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateCheck {
    /// Chains to a trusted root and matches one of the expected names.
    Verified,
    /// Did not verify, with the reason given by webpki.
    Failed(String),
}

/// The facts of an established TLS session, for the attempt record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The IANA name of the cipher suite.
    pub cipher: String,
    pub certificate: CertificateCheck,
    /// The session resumed an earlier one (RFC 8446 §2.2): the certificate checks ran on the
    /// chain of that earlier full handshake.
    pub resumed: bool,
}

impl TlsInfo {
    pub fn cert_verified(&self) -> bool {
        self.certificate == CertificateCheck::Verified
    }
}

/// How many MX host names the resumption store remembers sessions for; the oldest is
/// forgotten first. Each entry holds a few tickets and the chain they were issued under, a few
/// kilobytes, so the store stays within a few megabytes however many destinations there are.
const RESUMPTION_SERVERS: usize = 1024;

/// The trust roots, the crypto provider and the client configuration, made once when the
/// transport starts.
#[derive(Debug, Clone)]
pub(crate) struct TlsSetup {
    provider: Arc<CryptoProvider>,
    webpki: Arc<WebPkiServerVerifier>,
    /// One configuration for every handshake, so a new connection to a host can resume the
    /// session of an earlier one (RFC 8446 §2.2) instead of a full handshake: rustls resumes
    /// only under the verifier that made the session.
    client: Arc<ClientConfig>,
    /// The configuration's session store, to forget a host's sessions.
    sessions: Arc<ClientSessionMemoryCache>,
}

impl TlsSetup {
    /// webpki-roots plus every certificate of `extra_ca_file`.
    pub(crate) fn new(extra_ca_file: Option<&Path>) -> Result<Self, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = extra_ca_file {
            let bundle_error = |source| TransportError::CaBundle {
                path: path.to_owned(),
                source,
            };
            for certificate in CertificateDer::pem_file_iter(path).map_err(bundle_error)? {
                roots
                    .add(certificate.map_err(bundle_error)?)
                    .map_err(|source| TransportError::CaCertificate {
                        path: path.to_owned(),
                        source,
                    })?;
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?;
        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TransportError::TlsConfig)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignatureVerifier {
                webpki: webpki.clone(),
            }))
            .with_no_client_auth();
        // Early data stays off (the default): nothing is sent before the peer is judged.
        let sessions = Arc::new(ClientSessionMemoryCache::new(RESUMPTION_SERVERS));
        client.resumption = Resumption::store(sessions.clone());
        Ok(TlsSetup {
            provider,
            webpki,
            client: Arc::new(client),
            sessions,
        })
    }

    /// The facts of a finished session's `peer` under other checks (another plan's host
    /// entry), computed now from the chain it presented: the same validations a handshake
    /// under those checks would have run. `name` is the host's name, for web PKI when the
    /// checks name none.
    pub(crate) fn recheck(
        &self,
        check: CertificateChecks,
        name: &str,
        peer: &PeerFacts,
    ) -> PeerFacts {
        let checker = self.checker(check);
        let certificates: Vec<CertificateDer<'_>> = peer
            .chain
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        let Some((end_entity, intermediates)) = certificates.split_first() else {
            return PeerFacts {
                webpki: WebpkiVerdict::Invalid {
                    reason: "no certificate was presented".to_owned(),
                },
                dane_ta: None,
                pin_anchor: None,
                ..peer.clone()
            };
        };
        let findings = checker.findings(
            peer.chain.clone(),
            end_entity,
            intermediates,
            name,
            UnixTime::now(),
        );
        PeerFacts {
            tls_version: peer.tls_version,
            chain: findings.chain,
            webpki: findings.webpki,
            dane_ta: findings.dane_ta,
            pin_anchor: findings.pin_anchor,
        }
    }

    /// The connector for a STARTTLS handshake; it offers the sessions kept for resumption.
    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.client.clone())
    }

    /// What the checks find in the chain the peer of `connection` proved, for `name` (the name
    /// sent as SNI). A full handshake proved it with its signature; a resumed one called no
    /// verifier, but the server proved it holds the secret of an earlier full handshake with
    /// this client, whose chain rustls kept with the ticket (RFC 8446 §2.2). Either way the
    /// chain is checked now, against this connection's demands and the current time.
    pub(crate) fn findings(
        &self,
        check: CertificateChecks,
        connection: &ClientConnection,
        name: &str,
    ) -> Findings {
        let Some(certificates @ [end_entity, intermediates @ ..]) = connection.peer_certificates()
        else {
            return Findings {
                chain: Vec::new(),
                webpki: WebpkiVerdict::Invalid {
                    reason: "no certificate was presented".to_owned(),
                },
                dane_ta: None,
                pin_anchor: None,
            };
        };
        let chain = certificates
            .iter()
            .map(|cert| cert.as_ref().to_vec())
            .collect();
        self.checker(check)
            .findings(chain, end_entity, intermediates, name, UnixTime::now())
    }

    /// Forgets every session kept for `name`, so the next handshake with it is a full one. A
    /// resumed session carries the chain of the handshake that made it, and a server may
    /// resume sessions made before it changed its certificate: when the policy refuses that
    /// old chain, only a full handshake shows the current one.
    pub(crate) fn forget(&self, name: &str) {
        let Ok(name) = ServerName::try_from(name.to_owned()) else {
            return;
        };
        self.sessions.remove_tls12_session(&name);
        while self.sessions.take_tls13_ticket(&name).is_some() {}
    }

    fn checker(&self, check: CertificateChecks) -> Checker {
        Checker {
            provider: self.provider.clone(),
            webpki: self.webpki.clone(),
            check,
        }
    }
}

/// What the checks compute for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CertificateChecks {
    /// Web PKI reference identifiers (the `Verified` names, or the MX host name).
    pub(crate) names: Vec<String>,
    /// The usable TLSA records of a `Dane` requirement and its reference identifiers for
    /// DANE-TA (RFC 7672 §3.2.2); empty records: no DANE check.
    pub(crate) dane_records: Vec<TlsaRecord>,
    pub(crate) dane_names: Vec<String>,
    /// The host's pins and the names a leaf must carry when it is accepted through a pinned
    /// issuer (`strictmx_policy::pin_anchor_names`); empty pins: no pin check.
    pub(crate) pins: Vec<Pin>,
    pub(crate) pin_names: Vec<String>,
}

/// The verifier's findings: the chain and the validation verdicts `PeerFacts` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Findings {
    pub(crate) chain: Vec<Vec<u8>>,
    pub(crate) webpki: WebpkiVerdict,
    pub(crate) dane_ta: Option<WebpkiVerdict>,
    pub(crate) pin_anchor: Option<WebpkiVerdict>,
}

impl Findings {
    /// The facts for `judge_peer`, with the version the handshake settled on.
    pub(crate) fn into_peer_facts(self, version: Option<ProtocolVersion>) -> PeerFacts {
        PeerFacts {
            // rustls speaks only TLS 1.2 and 1.3; anything else counts as the lower one.
            tls_version: match version {
                Some(ProtocolVersion::TLSv1_3) => TlsVersion::Tls13,
                _ => TlsVersion::Tls12,
            },
            chain: self.chain,
            webpki: self.webpki,
            dane_ta: self.dane_ta,
            pin_anchor: self.pin_anchor,
        }
    }
}

/// Computes the findings for one session's chain under the host's demands.
struct Checker {
    provider: Arc<CryptoProvider>,
    webpki: Arc<WebPkiServerVerifier>,
    check: CertificateChecks,
}

impl Checker {
    /// Web PKI validation against `verifier`'s roots: valid when any of `names` matches.
    fn validate(
        verifier: &WebPkiServerVerifier,
        names: &[String],
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> WebpkiVerdict {
        let mut verdict = WebpkiVerdict::Invalid {
            reason: "no reference identifier to check".to_owned(),
        };
        for name in names {
            let Ok(name) = ServerName::try_from(name.as_str()) else {
                continue;
            };
            match verifier.verify_server_cert(end_entity, intermediates, &name, &[], now) {
                Ok(_) => return WebpkiVerdict::Valid,
                Err(error) => verdict = classify(&error),
            }
        }
        verdict
    }

    /// What the checks find in a chain: web PKI validation for the check's names (or `name`),
    /// DANE-TA and pinned-issuer validation for their candidates.
    fn findings(
        &self,
        chain: Vec<Vec<u8>>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &str,
        now: UnixTime,
    ) -> Findings {
        let names = if self.check.names.is_empty() {
            vec![name.to_owned()]
        } else {
            self.check.names.clone()
        };
        let webpki = Self::validate(&self.webpki, &names, end_entity, intermediates, now);
        let presented = Presented {
            chain: &chain,
            end_entity,
            intermediates,
            now,
        };
        // RFC 7672 §3.2.2: DANE-TA(2): the chain validated up to a presented certificate that a
        // usable usage-2 record matches, taken as the only trust anchor, with validity dates
        // and the reference identifiers checked.
        let dane_ta = self.to_sole_anchor(
            &tlsa::dane_ta_candidates(&self.check.dane_records, &chain),
            &self.check.dane_names,
            &presented,
        );
        // A pin on an issuing certificate is checked the same way, for the names the host
        // requires (a leaf that is itself pinned needs nothing more: no candidates then).
        let pin_anchor = self.to_sole_anchor(
            &pin_anchor_candidates(&self.check.pins, &chain),
            &self.check.pin_names,
            &presented,
        );
        Findings {
            chain,
            webpki,
            dane_ta,
            pin_anchor,
        }
    }

    /// Validates the chain with each candidate certificate (an index into the chain) as the
    /// only trust anchor: `Valid` if any validates, else the first candidate's problem; `None`
    /// without candidates.
    fn to_sole_anchor(
        &self,
        candidates: &[usize],
        names: &[String],
        presented: &Presented<'_, '_>,
    ) -> Option<WebpkiVerdict> {
        let mut first_problem = None;
        for &index in candidates {
            let mut roots = RootCertStore::empty();
            let anchor = CertificateDer::from(presented.chain.get(index)?.clone());
            let verdict = match roots.add(anchor) {
                Err(error) => classify(&error),
                Ok(()) => match WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                {
                    Ok(verifier) => Self::validate(
                        &verifier,
                        names,
                        presented.end_entity,
                        presented.intermediates,
                        presented.now,
                    ),
                    Err(error) => WebpkiVerdict::Invalid {
                        reason: error.to_string(),
                    },
                },
            };
            if verdict == WebpkiVerdict::Valid {
                return Some(verdict);
            }
            first_problem.get_or_insert(verdict);
        }
        first_problem
    }
}

/// The certificates of one handshake, as the verifier received them.
struct Presented<'c, 'd> {
    /// DER, leaf first.
    chain: &'c [Vec<u8>],
    end_entity: &'c CertificateDer<'d>,
    intermediates: &'c [CertificateDer<'d>],
    now: UnixTime,
}

/// The RFC 8460 §4.3.1 reading of a certificate error.
fn classify(error: &rustls::Error) -> WebpkiVerdict {
    match error {
        rustls::Error::InvalidCertificate(problem) => match problem {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => WebpkiVerdict::Expired,
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                WebpkiVerdict::NotTrusted
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                WebpkiVerdict::HostMismatch
            }
            other => WebpkiVerdict::Invalid {
                reason: format!("{other:?}"),
            },
        },
        other => WebpkiVerdict::Invalid {
            reason: other.to_string(),
        },
    }
}

/// Accepts any certificate during the handshake and checks only the handshake signatures, so
/// the peer must hold the key of the certificate it shows, which is what a DANE-EE match and a
/// pin rely on. The chain is judged after the handshake (`TlsSetup::findings`).
struct SignatureVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifier").finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SignatureVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The protocol version as people write it.
pub(crate) fn version_name(version: Option<ProtocolVersion>) -> String {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    }
}
