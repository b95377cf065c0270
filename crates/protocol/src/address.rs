//! Small helpers over mailbox strings: the domain, the local part, domain comparison, the
//! SMTPUTF8 test, whether a domain is a host name DNS may be asked about, and its A-label form.
//! Address syntax is the command parser's.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// The domain of an address: everything after the last `@` (a domain cannot contain `@`,
/// a quoted local part can). `None` for the null sender and for addresses without a domain.
pub fn domain_of(address: &str) -> Option<&str> {
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then_some(domain)
}

/// The local part of an address: everything before the last `@`.
pub fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(local, _)| local)
}

/// Compare two domains as one destination: case-insensitive, a trailing root dot ignored, a
/// U-label equal to its A-label (see [`ascii_domain`]).
pub fn domains_equal(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    ascii_domain(a) == ascii_domain(b)
}

/// The form of a domain that routing, policy, DNS and the logs use: lowercase, with each
/// U-label replaced by its A-label (RFC 5890 §2.3.2.1), so that `bücher.example` and
/// `xn--bcher-kva.example` are one destination that rules written with either match. A domain
/// that [`check_host_name`] refuses is only lowercased: it is refused again before any lookup.
/// The address itself is sent on as the submitter wrote it (with SMTPUTF8, RFC 6531).
pub fn ascii_domain(domain: &str) -> String {
    if domain.is_ascii() {
        return domain.to_ascii_lowercase();
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if check_host_name(name).is_err() {
        return domain.to_lowercase();
    }
    match Uts46::new().to_ascii(
        domain.as_bytes(),
        AsciiDenyList::STD3,
        Hyphens::Check,
        DnsLength::Ignore,
    ) {
        Ok(ascii) => ascii.to_ascii_lowercase(),
        Err(_) => domain.to_lowercase(),
    }
}

/// Whether any of the addresses needs SMTPUTF8 to be transmitted (RFC 6531 §3.2).
pub fn needs_smtputf8<'a>(addresses: impl IntoIterator<Item = &'a str>) -> bool {
    addresses.into_iter().any(|address| !address.is_ascii())
}

/// The longest domain name in octets, in its presentation form without the root dot
/// (RFC 1035 §2.3.4: 255 octets on the wire).
const MAX_NAME: usize = 253;
/// RFC 1035 §2.3.4: labels are 63 octets or less.
const MAX_LABEL: usize = 63;

/// Why a domain is not a host name; see [`check_host_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostNameProblem {
    Empty,
    /// An address literal (`[192.0.2.1]`, RFC 5321 §4.1.3); strictmx relays to names only.
    AddressLiteral,
    TooLong,
    EmptyLabel,
    LabelTooLong,
    /// A character other than a letter, a digit or a hyphen in an ASCII label.
    NotLdh,
    /// A label that starts or ends with a hyphen.
    HyphenAtEdge,
    /// A label that is not a valid IDNA label (a malformed `xn--` A-label, or non-ASCII text
    /// that is not a U-label as written).
    NotIdna,
}

impl std::fmt::Display for HostNameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::AddressLiteral => "address literals are not accepted",
            Self::TooLong => "it is longer than 253 octets",
            Self::EmptyLabel => "it has an empty label",
            Self::LabelTooLong => "a label is longer than 63 octets",
            Self::NotLdh => "a label holds a character other than letters, digits and hyphens",
            Self::HyphenAtEdge => "a label starts or ends with a hyphen",
            Self::NotIdna => "a label is not a valid internationalised (IDNA) label",
        })
    }
}

/// Whether `domain` is a host name that may be looked up: an LDH name (RFC 1123 §2.1, RFC 5321
/// §4.1.2 `Domain`: labels of 1 to 63 letters, digits and hyphens, not starting or ending with
/// a hyphen, 253 octets in all, no root dot) whose `xn--` labels are valid A-labels; or a name
/// with U-labels (RFC 6531 §3.3, for SMTPUTF8) that IDNA (UTS #46 with STD3 rules, hyphens
/// and DNS lengths checked) accepts as written, apart from case. Whether non-ASCII is allowed
/// at all (SMTPUTF8) is the caller's question.
pub fn check_host_name(domain: &str) -> Result<(), HostNameProblem> {
    if domain.is_empty() {
        return Err(HostNameProblem::Empty);
    }
    if domain.starts_with('[') {
        return Err(HostNameProblem::AddressLiteral);
    }
    if domain.is_ascii() {
        check_ldh(domain)?;
        if !domain.split('.').any(is_a_label) {
            return Ok(());
        }
    }
    // Labels with `xn--` or non-ASCII text: IDNA must accept them, and their A-label form must
    // fit DNS.
    let uts46 = Uts46::new();
    let ascii = uts46
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Verify,
        )
        .map_err(|_| HostNameProblem::NotIdna)?;
    check_ldh(&ascii)?;
    // Mapping must not change the name (full-width dots, compatibility characters, ...):
    // each label as written must be its A-label or its U-label, apart from case. Otherwise
    // what reaches DNS would not be what the sender wrote.
    let (unicode, result) = uts46.to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Check);
    let as_written = result.is_ok()
        && domain.split('.').count() == ascii.split('.').count()
        && domain
            .split('.')
            .zip(ascii.split('.').zip(unicode.split('.')))
            .all(|(written, (a_label, u_label))| {
                written.eq_ignore_ascii_case(a_label) || written.to_lowercase() == u_label
            });
    if !as_written {
        return Err(HostNameProblem::NotIdna);
    }
    Ok(())
}

/// RFC 1123 §2.1 LDH labels within the RFC 1035 §2.3.4 lengths.
fn check_ldh(domain: &str) -> Result<(), HostNameProblem> {
    if domain.len() > MAX_NAME {
        return Err(HostNameProblem::TooLong);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(HostNameProblem::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(HostNameProblem::LabelTooLong);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(HostNameProblem::NotLdh);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostNameProblem::HyphenAtEdge);
        }
    }
    Ok(())
}

/// RFC 5890 §2.3.2.1: an ACE label begins with `xn--`.
fn is_a_label(label: &str) -> bool {
    label
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("xn--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_names_pass_the_host_name_check() {
        use HostNameProblem::*;
        let long_label = "a".repeat(64);
        let long_name = format!("{}.example", ["abcdefghi"; 25].join("."));
        let rows: [(&str, &str, Result<(), HostNameProblem>); 20] = [
            (
                "RFC 1123 §2.1: letters, digits, hyphens",
                "mx-1.Example.ORG",
                Ok(()),
            ),
            (
                "RFC 1123 §2.1: a label may start with a digit",
                "1and1.example",
                Ok(()),
            ),
            (
                "RFC 5321 §2.3.5: a single label is a name",
                "localhost",
                Ok(()),
            ),
            (
                "RFC 5890 §2.3.2.1: a valid A-label",
                "xn--bcher-kva.example",
                Ok(()),
            ),
            (
                "RFC 6531 §3.3: a U-label (SMTPUTF8)",
                "bücher.example",
                Ok(()),
            ),
            (
                "RFC 6531 §3.3: U-labels compare without case",
                "BÜCHER.example",
                Ok(()),
            ),
            ("an empty domain", "", Err(Empty)),
            (
                "RFC 5321 §4.1.3: address literals",
                "[192.0.2.1]",
                Err(AddressLiteral),
            ),
            (
                "RFC 1035 §2.3.4: 253 octets at most",
                &long_name,
                Err(TooLong),
            ),
            (
                "RFC 1035 §2.3.4: labels of 63 octets at most",
                &long_label,
                Err(LabelTooLong),
            ),
            (
                "RFC 5321 §4.1.2: no empty label",
                "a..example",
                Err(EmptyLabel),
            ),
            (
                "RFC 5321 §4.1.2: no root dot",
                "example.org.",
                Err(EmptyLabel),
            ),
            (
                "RFC 1123 §2.1: no underscore",
                "foo_bar.example",
                Err(NotLdh),
            ),
            (
                "RFC 1123 §2.1: no URL punctuation",
                "evil.example/#",
                Err(NotLdh),
            ),
            (
                "RFC 1123 §2.1: no leading hyphen",
                "-mx.example",
                Err(HyphenAtEdge),
            ),
            (
                "RFC 1123 §2.1: no trailing hyphen",
                "mx-.example",
                Err(HyphenAtEdge),
            ),
            (
                "RFC 5890 §2.3.2.1: A-labels compare without case",
                "XN--BCHER-KVA.Example",
                Ok(()),
            ),
            (
                "RFC 5891 §5.4: an A-label that decodes to no U-label",
                "xn--a.example",
                Err(NotIdna),
            ),
            (
                "RFC 5891 §5.4: no controls in U-labels",
                "bü\u{1b}cher.example",
                Err(NotIdna),
            ),
            (
                "UTS #46 §4: full-width dots would be mapped",
                "bücher\u{ff0e}example",
                Err(NotIdna),
            ),
        ];
        for (rule, domain, expected) in rows {
            assert_eq!(check_host_name(domain), expected, "{rule}: {domain:?}");
        }
    }

    #[test]
    fn the_domain_is_what_follows_the_last_at_sign() {
        let cases = [
            ("alice@example.org", Some("example.org")),
            ("\"a@b\"@example.org", Some("example.org")),
            ("", None),
            ("postmaster", None),
            ("alice@", None),
        ];
        for (address, domain) in cases {
            assert_eq!(domain_of(address), domain, "address {address:?}");
        }
        assert_eq!(local_part("\"a@b\"@example.org"), "\"a@b\"");
        assert_eq!(local_part("postmaster"), "postmaster");
    }

    #[test]
    fn domains_compare_case_insensitively_by_a_label_and_ignore_the_root_dot() {
        let cases = [
            ("Example.ORG", "example.org", true),
            ("example.org.", "EXAMPLE.org", true),
            ("example.org", "example.net", false),
            ("bücher.example", "BÜCHER.example", true),
            ("bücher.example.", "XN--BCHER-KVA.example", true),
            ("bücher.example", "bucher.example", false),
        ];
        for (a, b, equal) in cases {
            assert_eq!(domains_equal(a, b), equal, "{a} vs {b}");
        }
    }

    /// RFC 5890 §2.3.2.1 (A-labels and U-labels), RFC 5891 §5 (lookups use the A-label) and
    /// RFC 6531 §3.2 (SMTPUTF8 domains may be U-labels).
    #[test]
    fn a_domain_is_routed_by_its_lowercase_a_label_form() {
        let rows = [
            ("ASCII, lowercased", "Example.ORG", "example.org"),
            (
                "an A-label stays, lowercased",
                "XN--BCHER-KVA.example",
                "xn--bcher-kva.example",
            ),
            (
                "a U-label becomes its A-label",
                "bücher.example",
                "xn--bcher-kva.example",
            ),
            (
                "upper-case U-label, same A-label",
                "BÜCHER.Example",
                "xn--bcher-kva.example",
            ),
            (
                "every U-label of the name",
                "münchen.bücher.example",
                "xn--mnchen-3ya.xn--bcher-kva.example",
            ),
            ("non-Latin script", "例え.テスト", "xn--r8jz45g.xn--zckzah"),
            (
                "a root dot is kept",
                "bücher.example.",
                "xn--bcher-kva.example.",
            ),
            (
                "not a host name: only lowercased",
                "BÜCHER\u{ff0e}example",
                "bücher\u{ff0e}example",
            ),
            (
                "not a host name: only lowercased",
                "Bü/cher.example",
                "bü/cher.example",
            ),
        ];
        for (rule, domain, expected) in rows {
            assert_eq!(ascii_domain(domain), expected, "{rule}: {domain:?}");
        }
    }

    #[test]
    fn only_non_ascii_addresses_need_smtputf8() {
        assert!(!needs_smtputf8(["a@example.org", ""]));
        assert!(needs_smtputf8(["a@example.org", "jörg@example.de"]));
    }
}
