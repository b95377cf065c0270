//! Server TLS: loads the certificate chain and key (PEM) into a rustls acceptor with the ring
//! provider (at bind and again on reload), and describes a finished handshake for logs and
//! `Received:`. Client certificates are left out.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::{InboundError, ServerTlsSettings};

/// Build the acceptor; any problem with the files is an error before serving starts.
pub(crate) fn acceptor(settings: &ServerTlsSettings) -> Result<TlsAcceptor, InboundError> {
    let certs = CertificateDer::pem_file_iter(&settings.cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| InboundError::Certificate {
            path: settings.cert_path.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(InboundError::NoCertificate {
            path: settings.cert_path.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_path).map_err(|source| {
        InboundError::PrivateKey {
            path: settings.key_path.clone(),
            source,
        }
    })?;
    let config_error = |source| InboundError::TlsConfig {
        cert_path: settings.cert_path.clone(),
        key_path: settings.key_path.clone(),
        source,
    };
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(config_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// `TLSv1.3 TLS13_AES_256_GCM_SHA384`, the form logs and `Received:` use.
pub fn describe(connection: &rustls::ServerConnection) -> String {
    let version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_owned(),
    };
    match connection.negotiated_cipher_suite() {
        Some(suite) => {
            let name = suite.suite();
            let name = name
                .as_str()
                .map_or_else(|| format!("{name:?}"), str::to_owned);
            format!("{version} {name}")
        }
        None => version,
    }
}
