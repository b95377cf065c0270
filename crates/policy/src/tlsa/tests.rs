//! Table-driven tests of TLSA usability and matching; each row cites the rule it checks.

use super::*;

/// One DER element (lengths up to 65535).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match u16::try_from(content.len()).expect("test content fits") {
        short @ 0..=0x7f => out.push(short as u8),
        long => {
            out.push(0x82);
            out.extend_from_slice(&long.to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

/// The DER SubjectPublicKeyInfo used by [`certificate`] for `key`.
pub(crate) fn spki_of_key(key: &[u8]) -> Vec<u8> {
    let algorithm = der(0x30, &der(0x06, &[0x2b, 0x65, 0x70]));
    let mut bits = vec![0];
    bits.extend_from_slice(key);
    der(0x30, &[algorithm, der(0x03, &bits)].concat())
}

/// A certificate shaped like X.509 (RFC 5280 §4.1) around `key`; `serial` tells copies apart.
/// Signatures are not checked here, so they are dummies.
pub(crate) fn certificate(key: &[u8], serial: u8) -> Vec<u8> {
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[serial]),
            der(0x30, &der(0x06, &[0x2b, 0x65, 0x70])),
            der(0x30, b""),
            der(0x30, b""),
            der(0x30, b""),
            spki_of_key(key),
            der(0xa3, &[0; 200]),
        ]
        .concat(),
    );
    let signature_algorithm = der(0x30, &der(0x06, &[0x2b, 0x65, 0x70]));
    der(
        0x30,
        &[tbs, signature_algorithm, der(0x03, &[0; 65])].concat(),
    )
}

pub(crate) fn record(usage: u8, selector: u8, matching_type: u8, data: Vec<u8>) -> TlsaRecord {
    TlsaRecord {
        usage,
        selector,
        matching_type,
        data,
    }
}

pub(crate) fn sha256_of(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

fn sha512_of(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA512, data).as_ref().to_vec()
}

#[test]
fn only_dane_records_of_known_shape_are_usable_for_smtp() {
    let rows = [
        (
            "RFC 7672 §3.1.1: DANE-EE(3) SPKI SHA2-256 is usable",
            record(3, 1, 1, vec![0; 32]),
            true,
        ),
        (
            "RFC 7672 §3.1.2: DANE-TA(2) full certificate SHA2-512 is usable",
            record(2, 0, 2, vec![0; 64]),
            true,
        ),
        (
            "RFC 6698 §2.1.3: Full(0) carries the data itself",
            record(3, 1, 0, vec![1, 2, 3]),
            true,
        ),
        (
            "RFC 7672 §3.1.3: PKIX-TA(0) is unusable for SMTP",
            record(0, 1, 1, vec![0; 32]),
            false,
        ),
        (
            "RFC 7672 §3.1.3: PKIX-EE(1) is unusable for SMTP",
            record(1, 1, 1, vec![0; 32]),
            false,
        ),
        (
            "RFC 6698 §2.1.1: an unassigned usage is unusable",
            record(4, 1, 1, vec![0; 32]),
            false,
        ),
        (
            "RFC 6698 §2.1.2: an unassigned selector is unusable",
            record(3, 2, 1, vec![0; 32]),
            false,
        ),
        (
            "RFC 6698 §2.1.3: an unassigned matching type is unusable",
            record(3, 1, 3, vec![0; 32]),
            false,
        ),
        (
            "RFC 7671 §5: a SHA2-256 record of the wrong length is unusable",
            record(3, 1, 1, vec![0; 31]),
            false,
        ),
        (
            "RFC 7671 §5: a SHA2-512 record of the wrong length is unusable",
            record(3, 1, 2, vec![0; 32]),
            false,
        ),
        (
            "RFC 6698 §2.1.3: Full(0) without data is unusable",
            record(3, 1, 0, Vec::new()),
            false,
        ),
    ];
    for (rule, record, usable) in rows {
        assert_eq!(record.is_usable(), usable, "{rule}");
    }
}

#[test]
fn records_match_certificates_by_selector_and_matching_type() {
    let cert = certificate(b"server key", 1);
    let spki = spki_of_key(b"server key");
    let other = certificate(b"other key", 1);
    let rows = [
        (
            "RFC 6698 §2.1.2: selector 0 hashes the whole certificate",
            record(3, 0, 1, sha256_of(&cert)),
            true,
        ),
        (
            "RFC 6698 §2.1.2: selector 1 hashes the SubjectPublicKeyInfo",
            record(3, 1, 1, sha256_of(&spki)),
            true,
        ),
        (
            "RFC 6698 §2.1.3: matching type 2 is SHA2-512",
            record(3, 1, 2, sha512_of(&spki)),
            true,
        ),
        (
            "RFC 6698 §2.1.3: matching type 0 compares the data itself",
            record(3, 1, 0, spki.clone()),
            true,
        ),
        (
            "RFC 6698 §2.1.3: a different key does not match",
            record(3, 1, 1, sha256_of(&spki_of_key(b"x"))),
            false,
        ),
    ];
    for (rule, record, expected) in rows {
        assert_eq!(record.matches_certificate(&cert), expected, "{rule}");
    }
    assert!(!record(3, 1, 1, sha256_of(&spki)).matches_certificate(&other));
    assert_eq!(
        spki_sha256(&cert),
        Some(sha256_of(&spki).try_into().expect("32 bytes"))
    );
    assert_eq!(
        super::spki(b"\x30\x03\x02\x01"),
        None,
        "truncated DER yields no SPKI"
    );
}

#[test]
fn dane_ee_looks_at_the_leaf_and_dane_ta_at_every_presented_certificate() {
    let leaf = certificate(b"leaf", 1);
    let issuer = certificate(b"issuer", 2);
    let chain = vec![leaf.clone(), issuer.clone()];
    // RFC 7672 §3.1.1: DANE-EE matches the leaf only.
    assert!(dane_ee_matches(
        &[record(3, 0, 1, sha256_of(&leaf))],
        &chain
    ));
    assert!(!dane_ee_matches(
        &[record(3, 0, 1, sha256_of(&issuer))],
        &chain
    ));
    // RFC 7672 §3.1.2: DANE-TA matches a certificate the server presents.
    assert_eq!(
        dane_ta_candidates(&[record(2, 0, 1, sha256_of(&issuer))], &chain),
        vec![1]
    );
    // RFC 7672 §3.1.3: an unusable record never matches, even with the right digest.
    assert!(!dane_ee_matches(
        &[record(1, 0, 1, sha256_of(&leaf))],
        &chain
    ));
    assert!(dane_ta_candidates(&[record(3, 0, 1, sha256_of(&issuer))], &chain).is_empty());
}

#[test]
fn a_published_stronger_digest_overrides_the_weaker_one() {
    let leaf = certificate(b"leaf", 1);
    let chain = vec![leaf.clone()];
    // RFC 7671 §9: with SHA2-512 published for the same usage and selector, SHA2-256 is ignored.
    let records = [
        record(3, 0, 1, sha256_of(&leaf)),
        record(3, 0, 2, vec![0; 64]),
    ];
    assert!(!dane_ee_matches(&records, &chain));
    // A different selector is a different group: its SHA2-256 record still counts.
    let records = [
        record(3, 0, 1, sha256_of(&leaf)),
        record(3, 1, 2, vec![0; 64]),
    ];
    assert!(dane_ee_matches(&records, &chain));
}

#[test]
fn presentation_form_is_usage_selector_type_and_hex() {
    // RFC 6698 §2.2: presentation format; RFC 8460 §4.4 uses it as the policy-string.
    assert_eq!(
        record(3, 1, 1, vec![0xab, 0x01]).presentation(),
        "3 1 1 AB01"
    );
}
