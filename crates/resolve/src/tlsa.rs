//! TLSA lookups for one host (RFC 7672 §2.2): `_<port>._tcp.<base>` for each base domain in
//! turn. Whether to look at all, which base domains and what an answer means are the policy's
//! (`strictmx_policy::tlsa::lookup`); this only asks DNS.

use strictmx_policy::TlsaFacts;
use strictmx_policy::tlsa::lookup;

use crate::resolver::DnsResolver;

/// Looks up `_<port>._tcp.<base>` for each base domain in turn.
pub(crate) async fn lookup(resolver: &DnsResolver, bases: &[String], port: u16) -> TlsaFacts {
    let mut notes = Vec::new();
    for base in bases {
        let owner = format!("_{port}._tcp.{base}");
        match resolver.tlsa(&owner).await {
            Ok(answer) => {
                let found = !answer.value.is_empty();
                if let Some(facts) = lookup::meaning(base, &owner, answer.value, answer.dnssec) {
                    return facts;
                }
                notes.push(if found {
                    format!("TLSA at {owner} is in an insecure zone")
                } else {
                    format!("no TLSA at {owner} ({})", answer.dnssec.as_str())
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
