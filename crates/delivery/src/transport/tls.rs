//! TLS for STARTTLS: trust roots, a certificate verifier that always runs web PKI verification
//! and records the result, and the facts of a finished handshake.
//!
//! Whether a failed verification is fatal is the plan's decision, passed in as `enforce`; what
//! to do after a failed handshake is left to the delivery run.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
};
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
}

impl TlsInfo {
    pub fn cert_verified(&self) -> bool {
        self.certificate == CertificateCheck::Verified
    }
}

/// The trust roots and the crypto provider, loaded once when the transport starts.
#[derive(Debug, Clone)]
pub(crate) struct TlsSetup {
    provider: Arc<CryptoProvider>,
    webpki: Arc<WebPkiServerVerifier>,
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
        Ok(TlsSetup { provider, webpki })
    }

    /// A connector for one handshake. The certificate is checked against `names`; with
    /// `enforce`, a failed check fails the handshake, otherwise it is only recorded.
    pub(crate) fn connector(
        &self,
        names: &[String],
        enforce: bool,
    ) -> Result<(TlsConnector, CheckSlot), TransportError> {
        let slot = CheckSlot::default();
        let verifier = RecordingVerifier {
            webpki: self.webpki.clone(),
            names: names
                .iter()
                .filter_map(|name| ServerName::try_from(name.clone()).ok())
                .collect(),
            enforce,
            slot: slot.clone(),
        };
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TransportError::TlsConfig)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok((TlsConnector::from(Arc::new(config)), slot))
    }
}

/// Where the verifier leaves its finding for the session to pick up after the handshake.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckSlot(Arc<Mutex<Option<CertificateCheck>>>);

impl CheckSlot {
    fn put(&self, check: CertificateCheck) {
        // A poisoned lock only means another thread panicked while holding it; the value is
        // a plain enum and still usable.
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(check);
    }

    pub(crate) fn take(&self) -> CertificateCheck {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .unwrap_or_else(|| CertificateCheck::Failed("no certificate was checked".to_owned()))
    }
}

/// Runs webpki verification on every handshake and records the result; rejects only when told
/// to enforce. Handshake signatures are always verified, so the peer must hold the key of the
/// certificate it shows even when the certificate itself is not trusted.
struct RecordingVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
    enforce: bool,
    slot: CheckSlot,
}

impl fmt::Debug for RecordingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingVerifier")
            .field("names", &self.names)
            .field("enforce", &self.enforce)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last_error = rustls::Error::General("no name to verify against".to_owned());
        let names: Vec<&ServerName<'_>> = if self.names.is_empty() {
            vec![server_name]
        } else {
            self.names.iter().collect()
        };
        for name in names {
            match self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => {
                    self.slot.put(CertificateCheck::Verified);
                    return Ok(verified);
                }
                Err(error) => last_error = error,
            }
        }
        self.slot
            .put(CertificateCheck::Failed(last_error.to_string()));
        if self.enforce {
            Err(last_error)
        } else {
            Ok(ServerCertVerified::assertion())
        }
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
