//! Turns an MX RRset into an answer: host list in try order, null MX, or implicit MX.
//!
//! Pure: no I/O. Dropping unusable exchanges (IP literals, localhost) is the planner's call.

use rand::Rng;
use rand::seq::SliceRandom;
use strictmx_policy::{MxFacts, MxHost};

/// What the MX lookup for a domain said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Sorted by preference, random order among equal preferences.
    Hosts(Vec<MxHost>),
    /// RFC 7505: a single MX record with the root as exchange; the domain accepts no mail.
    Null,
    /// RFC 5321 §5.1: the domain exists but has no MX records; this host acts as MX 0.
    Implicit(String),
}

impl MxAnswer {
    /// Builds the answer from the MX records found (exchange names in any case, with or
    /// without the final dot; the root is `"."` or `""`).
    pub(crate) fn from_records(domain: &str, records: Vec<MxHost>, rng: &mut impl Rng) -> Self {
        let mut hosts: Vec<MxHost> = records
            .into_iter()
            .map(|record| MxHost {
                name: record.name.trim_end_matches('.').to_ascii_lowercase(),
                preference: record.preference,
            })
            .collect();
        if hosts.is_empty() {
            return MxAnswer::Implicit(domain.trim_end_matches('.').to_ascii_lowercase());
        }
        // RFC 7505 §3: the null MX is a single record whose exchange is the root. A root
        // exchange beside other records is not a null MX; the planner ignores that record.
        if let [only] = hosts.as_slice()
            && only.name.is_empty()
        {
            return MxAnswer::Null;
        }
        // RFC 5321 §5.1: equal preferences are tried in random order to spread the load.
        hosts.shuffle(rng);
        hosts.sort_by_key(|host| host.preference);
        MxAnswer::Hosts(hosts)
    }

    /// The plain facts the planner decides from.
    pub fn to_facts(&self) -> MxFacts {
        match self {
            MxAnswer::Hosts(hosts) => MxFacts::Hosts(hosts.clone()),
            MxAnswer::Null => MxFacts::Null,
            MxAnswer::Implicit(host) => MxFacts::Implicit { host: host.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn mx(name: &str, preference: u16) -> MxHost {
        MxHost {
            name: name.to_owned(),
            preference,
        }
    }

    #[test]
    fn records_are_classified_as_the_rfcs_say() {
        let mut rng = StdRng::seed_from_u64(7);
        let rows: Vec<(&str, Vec<MxHost>, MxAnswer)> = vec![
            (
                "RFC 7505 §3: a single root exchange is a null MX",
                vec![mx(".", 0)],
                MxAnswer::Null,
            ),
            (
                "RFC 7505 §3: the preference of a lone root exchange does not matter",
                vec![mx("", 10)],
                MxAnswer::Null,
            ),
            (
                "RFC 7505 §3: a root exchange beside others is not a null MX",
                vec![mx(".", 0), mx("mx.example.", 10)],
                MxAnswer::Hosts(vec![mx("", 0), mx("mx.example", 10)]),
            ),
            (
                "RFC 5321 §5.1: no MX records means an implicit MX at the domain",
                vec![],
                MxAnswer::Implicit("example.org".to_owned()),
            ),
            (
                "RFC 5321 §5.1: lowest preference first; names lowercased without final dot",
                vec![mx("B.example.", 20), mx("a.example.", 10)],
                MxAnswer::Hosts(vec![mx("a.example", 10), mx("b.example", 20)]),
            ),
        ];
        for (rule, records, expected) in rows {
            assert_eq!(
                MxAnswer::from_records("Example.org.", records, &mut rng),
                expected,
                "{rule}"
            );
        }
    }

    #[test]
    fn equal_preferences_come_out_in_every_order_but_never_before_a_lower_one() {
        let records = vec![
            mx("a.example", 10),
            mx("b.example", 10),
            mx("c.example", 10),
            mx("backup.example", 20),
            mx("primary.example", 5),
        ];
        let mut rng = StdRng::seed_from_u64(42);
        let mut first_of_equal = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let MxAnswer::Hosts(hosts) =
                MxAnswer::from_records("example.org", records.clone(), &mut rng)
            else {
                panic!("expected hosts");
            };
            assert_eq!(hosts[0].name, "primary.example");
            assert_eq!(hosts[4].name, "backup.example");
            assert!(hosts.windows(2).all(|w| w[0].preference <= w[1].preference));
            first_of_equal.insert(hosts[1].name.clone());
        }
        assert_eq!(first_of_equal.len(), 3, "shuffle within a preference");
    }
}
