//! Small helpers over mailbox strings: the domain, the local part, domain comparison and the
//! SMTPUTF8 test. Address validation is the command parser's; IDNA mapping is left to others.

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

/// Compare two domains as DNS does for ASCII: case-insensitive, a trailing root dot ignored.
/// Non-ASCII labels compare exactly; mapping U-labels to A-labels is left to callers.
pub fn domains_equal(a: &str, b: &str) -> bool {
    a.strip_suffix('.')
        .unwrap_or(a)
        .eq_ignore_ascii_case(b.strip_suffix('.').unwrap_or(b))
}

/// Whether any of the addresses needs SMTPUTF8 to be transmitted (RFC 6531 §3.2).
pub fn needs_smtputf8<'a>(addresses: impl IntoIterator<Item = &'a str>) -> bool {
    addresses.into_iter().any(|address| !address.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn domains_compare_case_insensitively_and_ignore_the_root_dot() {
        let cases = [
            ("Example.ORG", "example.org", true),
            ("example.org.", "EXAMPLE.org", true),
            ("example.org", "example.net", false),
            ("bücher.example", "BÜCHER.example", false),
        ];
        for (a, b, equal) in cases {
            assert_eq!(domains_equal(a, b), equal, "{a} vs {b}");
        }
    }

    #[test]
    fn only_non_ascii_addresses_need_smtputf8() {
        assert!(!needs_smtputf8(["a@example.org", ""]));
        assert!(needs_smtputf8(["a@example.org", "jörg@example.de"]));
    }
}
