//! The files a configuration names, checked when it is loaded so that `check-config` finds what
//! `serve` would otherwise stumble on later: the server certificate and key (readable, PEM of
//! the right kind, the key belongs to the certificate), the extra CA bundle, the DNSSEC trust
//! anchor. The users file is read with the users (`auth.rs`); a secret any local user can read
//! is warned of (`warn_if_world_readable`).
//!
//! Each check reads the file the way its user will (rustls with the ring provider, hickory's
//! trust anchor parser), so what passes here loads there.

use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use hickory_resolver::proto::dnssec::TrustAnchors;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use toml::Spanned;

use crate::error::Source;

/// The PEM sections of a file, in order.
fn pem_sections(path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))
}

fn is_private_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let sections = pem_sections(path)?;
    let certificates: Vec<CertificateDer<'static>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if !certificates.is_empty() {
        return Ok(certificates);
    }
    if sections.iter().any(|(kind, _)| is_private_key(*kind)) {
        return Err(format!(
            "{} holds a private key, not a certificate: are tls.certificate and tls.private_key swapped?",
            path.display()
        ));
    }
    Err(format!(
        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    ))
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let sections = pem_sections(path)?;
    let mut keys = sections
        .iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(*kind, der.clone()));
    match (keys.next(), keys.next()) {
        (Some(key), None) => Ok(key),
        (Some(_), Some(_)) => Err(format!(
            "{} holds more than one private key: give the server's key alone",
            path.display()
        )),
        (None, _) if sections.iter().any(|(k, _)| *k == SectionKind::Certificate) => Err(format!(
            "{} holds a certificate, not a private key: tls.private_key names the key file (such as privkey.pem)",
            path.display()
        )),
        (None, _) => Err(format!(
            "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
            path.display()
        )),
    }
}

/// `[tls]`: both files load, and the key is the certificate's. Problems are recorded at the key
/// of the file that has them; a mismatch at `tls.private_key`.
pub(crate) fn server_tls(
    src: &mut Source<'_>,
    cert: (&Spanned<String>, &Path),
    key: (&Spanned<String>, &Path),
) {
    let chain = certificates(cert.1);
    let private = private_key(key.1);
    let (chain, private) = match (chain, private) {
        (Ok(chain), Ok(private)) => (chain, private),
        (chain, private) => {
            if let Err(m) = chain {
                src.error(cert.0.span(), "tls.certificate", m);
            }
            if let Err(m) = private {
                src.error(key.0.span(), "tls.private_key", m);
            }
            return;
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    match CertifiedKey::from_der(chain, private, &provider) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => src.error(
            key.0.span(),
            "tls.private_key",
            format!(
                "{} is not the private key of the certificate in {}",
                key.1.display(),
                cert.1.display()
            ),
        ),
        Err(rustls::Error::InvalidCertificate(e)) => src.error(
            cert.0.span(),
            "tls.certificate",
            format!(
                "the first certificate in {} cannot be read: {e}",
                cert.1.display()
            ),
        ),
        Err(e) => src.error(
            key.0.span(),
            "tls.private_key",
            format!("the private key in {} cannot be used: {e}", key.1.display()),
        ),
    }
}

/// `delivery.extra_ca_file`: at least one certificate, each usable as a trust anchor.
pub(crate) fn ca_bundle(path: &Path) -> Result<(), String> {
    let certificates = certificates(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, certificate) in certificates.into_iter().enumerate() {
        roots.add(certificate).map_err(|e| {
            format!(
                "certificate {} in {} cannot be a CA: {e}",
                i + 1,
                path.display()
            )
        })?;
    }
    Ok(())
}

/// `dns.trust_anchor`: DNSKEY records in zone-file form, at least one for the root zone (what
/// strictmx-resolve loads at start).
pub(crate) fn trust_anchor(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let anchors = TrustAnchors::from_str(&text).map_err(|e| {
        format!(
            "{} is not DNSKEY records in zone-file form: {e}",
            path.display()
        )
    })?;
    if anchors.is_empty() {
        return Err(format!(
            "{} holds no DNSKEY record for the root zone",
            path.display()
        ));
    }
    Ok(())
}

/// A secret (the TLS key, the password hashes) that every local user can read is worth a
/// warning: it still works, and group access (e.g. Debian's `ssl-cert`) is a deliberate choice.
pub(crate) fn warn_if_world_readable(
    src: &mut Source<'_>,
    span: Range<usize>,
    key: &str,
    path: &Path,
) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        src.warn(
            span,
            key,
            format!(
                "{} is readable by every local user (mode {:o}): chmod o-r it",
                path.display(),
                mode & 0o777
            ),
        );
    }
}
