//! Whether DANE can apply to a host at all, and what its TLSA answers mean (RFC 7672 §2.1 and
//! §2.2): the gate on the DNSSEC status of the MX RRset, the address records and a CNAME at the
//! host name; the TLSA base domains to try (§2.2.2); the meaning of one answer. Pure: the
//! resolver looks the records up and hands the statuses here.

use crate::facts::{Dnssec, DnssecHealth, TlsaFacts, TlsaRecord};

/// Whether TLSA records may be looked up for a host.
///
/// `mx` is the status of the MX RRset the host came from, `None` for an implicit MX or a
/// configured route (where the address answer alone decides). `alias` is the status of the
/// CNAME at the host name when the host is an alias whose chain is not secure as a whole.
pub fn gate(
    mx: Option<Dnssec>,
    addresses: Dnssec,
    alias: Option<Dnssec>,
    health: &DnssecHealth,
) -> Result<(), TlsaFacts> {
    // A broken DNSSEC setup must not read as "no DANE": every TLSA answer is unknown, so
    // hosts that might have DANE are deferred by the planner instead of downgraded.
    if let DnssecHealth::Broken { reason, .. } = health {
        return Err(TlsaFacts::Failed {
            dnssec: Dnssec::Indeterminate,
            reason: format!("the DNSSEC self-test failed: {reason}"),
        });
    }
    // RFC 7672 §2.2.1: DANE applies only to MX hosts from a secure MX RRset.
    if let Some(status) = mx
        && status != Dnssec::Secure
    {
        return Err(TlsaFacts::NotApplicable {
            reason: format!("RFC 7672 §2.2.1: the MX RRset is {}", status.as_str()),
        });
    }
    match (addresses, alias) {
        (Dnssec::Secure, _) => Ok(()),
        // RFC 7672 §2.1.1: a bogus answer is a failure, not an absence.
        (Dnssec::Bogus | Dnssec::Indeterminate, _) => Err(TlsaFacts::Failed {
            dnssec: addresses,
            reason: format!(
                "RFC 7672 §2.1.1: the host's address records are {}",
                addresses.as_str()
            ),
        }),
        // RFC 7672 §2.2.2: a secure CNAME whose chain ends in an insecure zone still names a
        // host in a signed zone: the original name is the TLSA base domain.
        (Dnssec::Insecure, Some(Dnssec::Secure)) => Ok(()),
        (Dnssec::Insecure, Some(status @ (Dnssec::Bogus | Dnssec::Indeterminate))) => {
            Err(TlsaFacts::Failed {
                dnssec: status,
                reason: format!(
                    "RFC 7672 §2.1.1: the CNAME at the host name is {}",
                    status.as_str()
                ),
            })
        }
        // RFC 7672 §2.2.2: TLSA records are looked up only when the address records (or the
        // first CNAME leading to them) are secure.
        (Dnssec::Insecure, None | Some(Dnssec::Insecure)) => Err(TlsaFacts::NotApplicable {
            reason: "RFC 7672 §2.2.2: the host's address records are insecure".into(),
        }),
    }
}

/// The TLSA base domains to try, in order (RFC 7672 §2.2.2): with a secure CNAME chain, the
/// fully expanded name first, then the original name; otherwise the original name alone (the
/// gate has made sure that it, or the first CNAME at it, is secure).
pub fn base_domains(host: &str, canonical: Option<&str>, chain: Dnssec) -> Vec<String> {
    match canonical {
        Some(target) if target != host && chain == Dnssec::Secure => {
            vec![target.to_owned(), host.to_owned()]
        }
        _ => vec![host.to_owned()],
    }
}

/// What one TLSA answer at `owner` (under base domain `base`) means, or `None` to go on with
/// the next base domain.
pub fn meaning(
    base: &str,
    owner: &str,
    records: Vec<TlsaRecord>,
    dnssec: Dnssec,
) -> Option<TlsaFacts> {
    match (records.is_empty(), dnssec) {
        (false, Dnssec::Secure) => Some(TlsaFacts::Records {
            base_domain: base.to_owned(),
            records,
        }),
        // RFC 7672 §2.1.1: bogus or unknown TLSA answers make the host unusable for DANE and
        // must never be read as "no TLSA".
        (_, Dnssec::Bogus | Dnssec::Indeterminate) => Some(TlsaFacts::Failed {
            dnssec,
            reason: format!("the TLSA answer at {owner} is {}", dnssec.as_str()),
        }),
        // RFC 7672 §2.2: records from an unsigned zone, and secure or insecure denials, leave
        // nothing to use here.
        (_, Dnssec::Secure | Dnssec::Insecure) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn working() -> DnssecHealth {
        DnssecHealth::Working {
            mode: "validate".into(),
        }
    }

    fn kind(result: Result<(), TlsaFacts>) -> &'static str {
        match result {
            Ok(()) => "lookup",
            Err(TlsaFacts::NotApplicable { .. }) => "not-applicable",
            Err(TlsaFacts::Failed { .. }) => "failed",
            Err(TlsaFacts::Absent { .. } | TlsaFacts::Records { .. }) => "other",
        }
    }

    #[test]
    fn tlsa_is_looked_up_only_behind_secure_mx_and_address_answers() {
        use Dnssec::*;
        // (rule, MX RRset, address answer, CNAME at the host name when the chain is insecure)
        let rows = [
            (
                "RFC 7672 §2.2.1: secure MX and addresses",
                Some(Secure),
                Secure,
                None,
                "lookup",
            ),
            (
                "RFC 7672 §2.2.1: insecure MX RRset",
                Some(Insecure),
                Secure,
                None,
                "not-applicable",
            ),
            (
                "RFC 7672 §2.2.1: unknown MX status",
                Some(Indeterminate),
                Secure,
                None,
                "not-applicable",
            ),
            (
                "RFC 7672 §2.2.2: insecure address records",
                Some(Secure),
                Insecure,
                None,
                "not-applicable",
            ),
            (
                "RFC 7672 §2.2.2: an insecure CNAME to insecure address records",
                Some(Secure),
                Insecure,
                Some(Insecure),
                "not-applicable",
            ),
            (
                "RFC 7672 §2.2.2: a secure CNAME into an insecure zone",
                Some(Secure),
                Insecure,
                Some(Secure),
                "lookup",
            ),
            (
                "RFC 7672 §2.1.1: a bogus CNAME at the host name",
                Some(Secure),
                Insecure,
                Some(Bogus),
                "failed",
            ),
            (
                "RFC 7672 §2.1.1: the CNAME at the host name could not be looked up",
                Some(Secure),
                Insecure,
                Some(Indeterminate),
                "failed",
            ),
            (
                "RFC 7672 §2.1.1: bogus address records",
                Some(Secure),
                Bogus,
                None,
                "failed",
            ),
            (
                "RFC 7672 §2.1.1: unknown address status",
                Some(Secure),
                Indeterminate,
                None,
                "failed",
            ),
            (
                "RFC 7672 §2.2.1: implicit MX, secure address",
                None,
                Secure,
                None,
                "lookup",
            ),
            (
                "RFC 7672 §2.2.2: implicit MX, insecure address",
                None,
                Insecure,
                None,
                "not-applicable",
            ),
        ];
        for (rule, mx, addresses, alias, expected) in rows {
            assert_eq!(
                kind(gate(mx, addresses, alias, &working())),
                expected,
                "{rule}"
            );
        }
    }

    #[test]
    fn a_broken_dnssec_setup_fails_tlsa_instead_of_skipping_it() {
        let broken = DnssecHealth::Broken {
            mode: "validate".into(),
            reason: "root DNSKEY bogus".into(),
        };
        for mx in [Some(Dnssec::Insecure), Some(Dnssec::Secure), None] {
            assert!(matches!(
                gate(mx, Dnssec::Secure, None, &broken),
                Err(TlsaFacts::Failed {
                    dnssec: Dnssec::Indeterminate,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_secure_cname_target_is_tried_before_the_original_name() {
        let rows: [(&str, Option<&str>, Dnssec, &[&str]); 4] = [
            (
                "RFC 7672 §2.2.2: a secure chain: the expanded name, then the original",
                Some("real.example"),
                Dnssec::Secure,
                &["real.example", "mx.example"],
            ),
            (
                "RFC 7672 §2.2.2: a chain that is not secure as a whole: the original name",
                Some("real.example"),
                Dnssec::Insecure,
                &["mx.example"],
            ),
            ("no alias", None, Dnssec::Secure, &["mx.example"]),
            (
                "an alias of itself",
                Some("mx.example"),
                Dnssec::Secure,
                &["mx.example"],
            ),
        ];
        for (rule, canonical, chain, expected) in rows {
            assert_eq!(
                base_domains("mx.example", canonical, chain),
                expected,
                "{rule}"
            );
        }
    }

    #[test]
    fn each_tlsa_answer_means_what_rfc_7672_says() {
        let record = TlsaRecord {
            usage: 3,
            selector: 1,
            matching_type: 1,
            data: vec![0; 32],
        };
        let owner = "_25._tcp.mx.example";
        let some = || vec![record.clone()];
        assert!(matches!(
            meaning("mx.example", owner, some(), Dnssec::Secure),
            Some(TlsaFacts::Records { .. })
        ));
        assert!(matches!(
            meaning("mx.example", owner, some(), Dnssec::Bogus),
            Some(TlsaFacts::Failed {
                dnssec: Dnssec::Bogus,
                ..
            })
        ));
        assert!(matches!(
            meaning("mx.example", owner, Vec::new(), Dnssec::Indeterminate),
            Some(TlsaFacts::Failed { .. })
        ));
        assert_eq!(meaning("mx.example", owner, some(), Dnssec::Insecure), None);
        assert_eq!(
            meaning("mx.example", owner, Vec::new(), Dnssec::Secure),
            None
        );
    }
}
