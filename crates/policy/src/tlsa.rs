//! DANE TLSA records for SMTP (RFC 6698, RFC 7671, RFC 7672): which records are usable and
//! which presented certificates they match.
//!
//! Pure byte work on DER the transport hands in; the transport runs the handshake and, for
//! DANE-TA, the chain validation up to the matched trust anchor (see [`dane_ta_candidates`]).
//! Whether TLSA applies to a host at all, and what an answer means, is [`lookup`].

use ring::digest;

use crate::facts::TlsaRecord;

pub mod lookup;

/// RFC 6698 §2.1.1 certificate usages that SMTP uses (RFC 7672 §3.1).
pub const USAGE_DANE_TA: u8 = 2;
pub const USAGE_DANE_EE: u8 = 3;

impl TlsaRecord {
    /// Whether an SMTP client may use this record (RFC 7672 §3.1, RFC 6698 §2.1).
    pub fn is_usable(&self) -> bool {
        self.unusable_reason().is_none()
    }

    /// Why this record is unusable for SMTP, or `None` when it is usable.
    pub fn unusable_reason(&self) -> Option<&'static str> {
        // RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are not for SMTP; clients treat them as
        // unusable.
        if !matches!(self.usage, USAGE_DANE_TA | USAGE_DANE_EE) {
            return Some("certificate usage other than DANE-TA(2) or DANE-EE(3)");
        }
        // RFC 6698 §2.1.2: selectors 0 (Cert) and 1 (SPKI) are defined.
        if self.selector > 1 {
            return Some("unknown selector");
        }
        // RFC 6698 §2.1.3: matching types 0 (Full), 1 (SHA2-256), 2 (SHA2-512); RFC 7671 §5:
        // data whose length cannot be the output of its digest is malformed, hence unusable.
        match (self.matching_type, self.data.len()) {
            (0, 0) => Some("empty certificate association data"),
            (0, _) | (1, 32) | (2, 64) => None,
            (1 | 2, _) => Some("association data length does not fit the matching type"),
            _ => Some("unknown matching type"),
        }
    }

    /// Presentation form, `3 1 1 <HEX>` (RFC 6698 §2.2): one TLSRPT `policy-string` entry.
    pub fn presentation(&self) -> String {
        format!(
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.matching_type,
            crate::facts::hex_string(&self.data).to_ascii_uppercase()
        )
    }

    /// Whether this record's association data matches the certificate `cert_der` (RFC 6698
    /// §2.1.2, §2.1.3). A certificate whose SPKI cannot be found matches no selector-1 record.
    pub fn matches_certificate(&self, cert_der: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert_der,
            1 => match spki(cert_der) {
                Some(spki) => spki,
                None => return false,
            },
            _ => return false,
        };
        match self.matching_type {
            0 => selected == self.data.as_slice(),
            1 => digest::digest(&digest::SHA256, selected).as_ref() == self.data.as_slice(),
            2 => digest::digest(&digest::SHA512, selected).as_ref() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// The usable records an SMTP client considers, after digest agility (RFC 7671 §9): among
/// records of the same usage and selector, when a SHA2-512 record exists the SHA2-256 ones are
/// ignored, so a weaker digest cannot stand in for the stronger one the domain also published.
/// Full (matching type 0) records are not digests and always stay.
pub fn effective_records(records: &[TlsaRecord]) -> Vec<&TlsaRecord> {
    let usable: Vec<&TlsaRecord> = records.iter().filter(|r| r.is_usable()).collect();
    usable
        .iter()
        .copied()
        .filter(|record| {
            record.matching_type != 1
                || !usable.iter().any(|other| {
                    other.matching_type == 2
                        && other.usage == record.usage
                        && other.selector == record.selector
                })
        })
        .collect()
}

/// Whether a DANE-EE(3) record matches the leaf (`chain[0]`). RFC 7672 §3.1.1: only the leaf
/// counts, and its names and validity dates are not checked.
pub fn dane_ee_matches(records: &[TlsaRecord], chain: &[Vec<u8>]) -> bool {
    let Some(leaf) = chain.first() else {
        return false;
    };
    effective_records(records)
        .into_iter()
        .any(|record| record.usage == USAGE_DANE_EE && record.matches_certificate(leaf))
}

/// The indices in `chain` (DER, leaf first, as presented) of certificates that a usable
/// DANE-TA(2) record matches: the candidate trust anchors (RFC 7672 §3.1.2; the server must
/// include the trust anchor certificate in its chain).
///
/// For each candidate the transport validates the leaf up to that certificate as the only
/// trust anchor, with the chain's intermediates, checking validity dates and the reference
/// identifiers of [`crate::TlsRequirement::Dane`] `names` (RFC 7672 §3.2.2: the TLSA base
/// domain and the MX host name); the result goes into [`crate::PeerFacts::dane_ta`].
pub fn dane_ta_candidates(records: &[TlsaRecord], chain: &[Vec<u8>]) -> Vec<usize> {
    let ta_records: Vec<&TlsaRecord> = effective_records(records)
        .into_iter()
        .filter(|record| record.usage == USAGE_DANE_TA)
        .collect();
    chain
        .iter()
        .enumerate()
        .filter(|(_, cert)| ta_records.iter().any(|r| r.matches_certificate(cert)))
        .map(|(index, _)| index)
        .collect()
}

/// SHA-256 of a certificate's DER (for certificate pins).
pub fn certificate_sha256(cert_der: &[u8]) -> [u8; 32] {
    sha256(cert_der)
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (for SPKI pins); `None` when the DER does
/// not have the X.509 shape.
pub fn spki_sha256(cert_der: &[u8]) -> Option<[u8; 32]> {
    spki(cert_der).map(sha256)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// The DER of the SubjectPublicKeyInfo inside an X.509 certificate (RFC 5280 §4.1):
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }.
pub fn spki(cert_der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = der_element(cert_der, TAG_SEQUENCE)?;
    let (tbs, _) = der_element(certificate.content, TAG_SEQUENCE)?;
    let mut rest = tbs.content;
    if rest.first() == Some(&TAG_VERSION) {
        rest = der_element(rest, TAG_VERSION)?.1;
    }
    rest = der_element(rest, TAG_INTEGER)?.1; // serialNumber
    for _ in 0..4 {
        // signature, issuer, validity, subject
        rest = der_element(rest, TAG_SEQUENCE)?.1;
    }
    der_element(rest, TAG_SEQUENCE).map(|(spki, _)| spki.whole)
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_VERSION: u8 = 0xa0;

struct DerElement<'a> {
    whole: &'a [u8],
    content: &'a [u8],
}

/// One DER element with the expected tag at the start of `input`, and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(DerElement<'_>, &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = *input.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        // Long form: 0x81..=0x84 give the number of length bytes that follow.
        let count = usize::from(first & 0x7f);
        if !(1..=4).contains(&count) {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        let length = bytes
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        (length, 2 + count)
    };
    let end = header.checked_add(length)?;
    let whole = input.get(..end)?;
    Some((
        DerElement {
            whole,
            content: &whole[header..],
        },
        &input[end..],
    ))
}

#[cfg(test)]
pub(crate) mod tests;
