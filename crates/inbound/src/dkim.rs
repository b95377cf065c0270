//! DKIM signing at acceptance (RFC 6376): picks the key for the message's RFC 5322 `From:`
//! domain and makes the `DKIM-Signature:` field with `mail-auth`. Reading key files and checking
//! the configuration is `strictmx-config`'s; where the field goes is `headers::prepare`'s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mail_auth::common::crypto::{self, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

/// The header fields signed when a `[[dkim]]` table names none. `From` is listed twice: the
/// second entry over-signs it (RFC 6376 §8.15), so no second `From:` can be added later. Any
/// listed field the message lacks is signed as absent, so it cannot be added either.
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "In-Reply-To",
    "References",
];

/// Why a DKIM key could not be loaded or a message not signed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key is not PEM")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("the PEM holds no RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) private key")]
    UnsupportedKey,
    #[error("the key is not a usable {algorithm} key")]
    Key {
        algorithm: &'static str,
        #[source]
        source: mail_auth::Error,
    },
    #[error("RFC 6376 §5.4 requires `From` among the signed headers")]
    FromNotSigned,
    #[error("signing for {domain} with selector {selector} failed")]
    Sign {
        domain: String,
        selector: String,
        #[source]
        source: mail_auth::Error,
    },
}

/// One `[[dkim]]` key: the signing domain (`d=`), selector (`s=`) and the fields to sign.
#[derive(Clone)]
pub struct DkimKey {
    domain: String,
    selector: String,
    headers: Vec<String>,
    algorithm: &'static str,
    signer: Arc<DkimSigner<crypto::DkimKey, Done>>,
    /// Where the key was read from, if from a file: shown by `check-config`.
    key_file: Option<PathBuf>,
    /// Compared instead of the private key, so that settings can be compared on reload.
    public_key: Vec<u8>,
}

impl DkimKey {
    /// Reads the PEM private key at `path`; see [`DkimKey::from_pem`].
    pub fn load(
        domain: &str,
        selector: &str,
        headers: Vec<String>,
        path: &Path,
    ) -> Result<Self, DkimError> {
        let pem = std::fs::read(path).map_err(|source| DkimError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut key = Self::from_pem(domain, selector, headers, &pem)?;
        key.key_file = Some(path.to_path_buf());
        Ok(key)
    }

    /// Loads a PEM private key: RSA as PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8, Ed25519 as PKCS#8
    /// (`PRIVATE KEY`, as `openssl genpkey -algorithm ed25519` writes it).
    pub fn from_pem(
        domain: &str,
        selector: &str,
        headers: Vec<String>,
        pem: &[u8],
    ) -> Result<Self, DkimError> {
        if !headers.iter().any(|h| h.eq_ignore_ascii_case("from")) {
            return Err(DkimError::FromNotSigned);
        }
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => DkimError::UnsupportedKey,
            other => DkimError::Pem(other),
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(pkcs8) => {
                match Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                    Ok(ed) => crypto::DkimKey::Ed25519(ed),
                    Err(_) => crypto::DkimKey::Rsa(rsa(der.clone_key())?),
                }
            }
            PrivateKeyDer::Pkcs1(_) => crypto::DkimKey::Rsa(rsa(der.clone_key())?),
            _ => return Err(DkimError::UnsupportedKey),
        };
        let (algorithm, public_key) = match &key {
            crypto::DkimKey::Rsa(k) => ("rsa", k.public_key()),
            crypto::DkimKey::Ed25519(k) => ("ed25519", k.public_key()),
        };
        let domain = domain.to_ascii_lowercase();
        // Relaxed/relaxed (RFC 6376 §3.4.2, §3.4.4) survives the re-folding and trailing-space
        // changes that relays make; simple/simple would break on them.
        let signer = DkimSigner::from_key(key)
            .domain(domain.clone())
            .selector(selector)
            .headers(headers.iter().map(String::as_str))
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(Self {
            domain,
            selector: selector.to_string(),
            headers,
            algorithm,
            signer: Arc::new(signer),
            key_file: None,
            public_key,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn key_file(&self) -> Option<&Path> {
        self.key_file.as_deref()
    }

    /// `rsa` or `ed25519`, as in the `k=` tag of the DNS record (RFC 6376 §3.6.1, RFC 8463).
    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    /// The `DKIM-Signature:` field for `message`, with its CRLF, ready to prepend.
    fn sign(&self, message: &[u8]) -> Result<String, DkimError> {
        self.signer
            .sign(message)
            .map(|signature| signature.to_header())
            .map_err(|source| DkimError::Sign {
                domain: self.domain.clone(),
                selector: self.selector.clone(),
                source,
            })
    }
}

fn rsa(der: PrivateKeyDer<'static>) -> Result<RsaKey<Sha256>, DkimError> {
    RsaKey::<Sha256>::from_key_der(der).map_err(|source| DkimError::Key {
        algorithm: "rsa",
        source,
    })
}

impl fmt::Debug for DkimKey {
    // The private key never appears in logs or `check-config` output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .field("headers", &self.headers)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DkimKey {
    fn eq(&self, other: &Self) -> bool {
        self.domain == other.domain
            && self.selector == other.selector
            && self.headers == other.headers
            && self.public_key == other.public_key
    }
}

impl Eq for DkimKey {}

/// What signing did to one message.
#[derive(Debug)]
pub(crate) enum Signing {
    /// No key for the message's author domain, or no single author: left unsigned.
    NoKey,
    Signed(String),
    Failed(DkimError),
}

/// Signs `message` with the key of its `From:` domain, if one is configured.
pub(crate) fn sign(keys: &[DkimKey], message: &[u8], header_end: usize) -> Signing {
    // Without keys the header block is not even parsed.
    if keys.is_empty() {
        return Signing::NoKey;
    }
    let Some(domain) = author_domain(&message[..header_end]) else {
        return Signing::NoKey;
    };
    let Some(key) = keys.iter().find(|k| k.domain == domain) else {
        return Signing::NoKey;
    };
    match key.sign(message) {
        Ok(field) => Signing::Signed(field),
        Err(e) => Signing::Failed(e),
    }
}

/// The domain of the one mailbox in the one `From:` field, lowercased. DMARC (RFC 7489 §3.1)
/// aligns with this domain, so it picks the key; a message with no `From:`, several `From:`
/// fields or several authors has no single domain to sign for (RFC 7489 §6.6.1).
fn author_domain(header_block: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(header_block)?;
    let mut from_fields = parsed
        .headers()
        .iter()
        .filter(|h| h.name == mail_parser::HeaderName::From);
    let field = from_fields.next()?;
    if from_fields.next().is_some() {
        return None;
    }
    let address = field.value().as_address()?;
    let mut mailboxes = address.iter();
    let mailbox = mailboxes.next()?;
    if mailboxes.next().is_some() {
        return None;
    }
    let (_, domain) = mailbox.address()?.rsplit_once('@')?;
    Some(domain.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
