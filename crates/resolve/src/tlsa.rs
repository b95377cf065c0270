//! TLSA facts for one host (RFC 7672 §2.2): whether DANE can apply at all (the gate), which
//! TLSA base domains to try (CNAME rule of §2.2.2), and what the answers mean.
//!
//! The gate and the meaning of an answer are pure; judging the records against a certificate
//! is `strictmx-policy`'s job.

use strictmx_policy::{Dnssec, DnssecHealth, TlsaFacts};

use crate::resolver::DnsResolver;

/// Whether TLSA records may be looked up for a host.
///
/// `mx` is the status of the MX RRset the host came from, `None` for an implicit MX or a
/// configured route (where the address answer alone decides).
pub(crate) fn gate(
    mx: Option<Dnssec>,
    addresses: Dnssec,
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
            reason: format!("RFC 7672 §2.2.1: the MX RRset is {}", label(status)),
        });
    }
    match addresses {
        Dnssec::Secure => Ok(()),
        // RFC 7672 §2.1.1: a bogus answer is a failure, not an absence.
        Dnssec::Bogus | Dnssec::Indeterminate => Err(TlsaFacts::Failed {
            dnssec: addresses,
            reason: format!(
                "RFC 7672 §2.1.1: the host's address records are {}",
                label(addresses)
            ),
        }),
        // RFC 7672 §2.2.2: TLSA records are looked up only when the address records (and any
        // CNAME leading to them) are secure.
        Dnssec::Insecure => Err(TlsaFacts::NotApplicable {
            reason: "RFC 7672 §2.2.2: the host's address records are insecure".into(),
        }),
    }
}

/// The TLSA base domains to try, in order (RFC 7672 §2.2.2): with a secure CNAME chain, the
/// fully expanded name first, then the original name. The gate has already made sure that
/// the whole chain is secure (an insecure CNAME makes the address answer insecure).
pub(crate) fn base_domains(host: &str, canonical: Option<&str>) -> Vec<String> {
    match canonical {
        Some(target) if target != host => vec![target.to_owned(), host.to_owned()],
        _ => vec![host.to_owned()],
    }
}

/// What one TLSA answer means, or `None` to go on with the next base domain.
fn meaning(
    base: &str,
    owner: &str,
    records: Vec<strictmx_policy::TlsaRecord>,
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
            reason: format!("the TLSA answer at {owner} is {}", label(dnssec)),
        }),
        // RFC 7672 §2.2: records from an unsigned zone, and secure or insecure denials, leave
        // nothing to use here.
        (_, Dnssec::Secure | Dnssec::Insecure) => None,
    }
}

/// Looks up `_<port>._tcp.<base>` for each base domain in turn.
pub(crate) async fn lookup(resolver: &DnsResolver, bases: &[String], port: u16) -> TlsaFacts {
    let mut notes = Vec::new();
    for base in bases {
        let owner = format!("_{port}._tcp.{base}");
        match resolver.tlsa(&owner).await {
            Ok(answer) => {
                let found = !answer.value.is_empty();
                if let Some(facts) = meaning(base, &owner, answer.value, answer.dnssec) {
                    return facts;
                }
                notes.push(if found {
                    format!("TLSA at {owner} is in an insecure zone")
                } else {
                    format!("no TLSA at {owner} ({})", label(answer.dnssec))
                });
            }
            Err(error) => {
                return TlsaFacts::Failed {
                    dnssec: error.dnssec(),
                    reason: error.to_string(),
                };
            }
        }
    }
    TlsaFacts::Absent {
        reason: notes.join("; "),
    }
}

pub(crate) fn label(status: Dnssec) -> &'static str {
    match status {
        Dnssec::Secure => "secure",
        Dnssec::Insecure => "insecure",
        Dnssec::Bogus => "bogus",
        Dnssec::Indeterminate => "indeterminate",
    }
}

#[cfg(test)]
mod tests {
    use strictmx_policy::TlsaRecord;

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
        let rows = [
            (
                "RFC 7672 §2.2.1: secure MX and addresses",
                Some(Secure),
                Secure,
                "lookup",
            ),
            (
                "RFC 7672 §2.2.1: insecure MX RRset",
                Some(Insecure),
                Secure,
                "not-applicable",
            ),
            (
                "RFC 7672 §2.2.1: unknown MX status",
                Some(Indeterminate),
                Secure,
                "not-applicable",
            ),
            (
                "RFC 7672 §2.2.2: insecure address records",
                Some(Secure),
                Insecure,
                "not-applicable",
            ),
            (
                "RFC 7672 §2.1.1: bogus address records",
                Some(Secure),
                Bogus,
                "failed",
            ),
            (
                "RFC 7672 §2.1.1: unknown address status",
                Some(Secure),
                Indeterminate,
                "failed",
            ),
            (
                "RFC 7672 §2.2.1: implicit MX, secure address",
                None,
                Secure,
                "lookup",
            ),
            (
                "RFC 7672 §2.2.2: implicit MX, insecure address",
                None,
                Insecure,
                "not-applicable",
            ),
        ];
        for (rule, mx, addresses, expected) in rows {
            assert_eq!(kind(gate(mx, addresses, &working())), expected, "{rule}");
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
                gate(mx, Dnssec::Secure, &broken),
                Err(TlsaFacts::Failed {
                    dnssec: Dnssec::Indeterminate,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_secure_cname_target_is_tried_before_the_original_name() {
        assert_eq!(
            base_domains("mx.example", Some("real.example")),
            vec!["real.example".to_owned(), "mx.example".to_owned()],
            "RFC 7672 §2.2.2"
        );
        assert_eq!(
            base_domains("mx.example", None),
            vec!["mx.example".to_owned()]
        );
        assert_eq!(
            base_domains("mx.example", Some("mx.example")),
            vec!["mx.example".to_owned()]
        );
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
