//! What one DNS question got back, with its DNSSEC status, and the pure helpers that read it:
//! combining statuses, following a CNAME chain, mapping hickory's proofs.
//!
//! Asking the question is left to the backends (`validating`, `ad_client`).

use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use strictmx_policy::Dnssec;

/// The records of one answer (CNAMEs included) and how far they can be trusted. An empty
/// `records` is NODATA, or NXDOMAIN when `nxdomain` is set; the status then covers the denial.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) records: Vec<Record>,
    pub(crate) dnssec: Dnssec,
    pub(crate) nxdomain: bool,
}

impl Answer {
    /// The records of `record_type` in the answer, CNAMEs and signatures left out.
    pub(crate) fn data_of(&self, record_type: RecordType) -> impl Iterator<Item = &RData> {
        self.records
            .iter()
            .filter(move |record| record.record_type() == record_type)
            .map(|record| &record.data)
    }

    /// The name the CNAME chain starting at `qname` ends at, when it is not `qname` itself.
    /// Names are compared lowercase without the final dot.
    pub(crate) fn canonical_name(&self, qname: &str) -> Option<String> {
        let mut current = normalise(qname);
        // A chain can be no longer than the records it is made of; that bound also stops a loop.
        for _ in 0..self.records.len() {
            let next = self.records.iter().find_map(|record| match &record.data {
                RData::CNAME(target) if normalise(&record.name.to_ascii()) == current => {
                    Some(normalise(&target.0.to_ascii()))
                }
                _ => None,
            });
            match next {
                Some(target) => current = target,
                None => break,
            }
        }
        (current != normalise(qname)).then_some(current)
    }
}

/// A name lowercase, without the trailing dot.
pub(crate) fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// How much a status is worth, weakest first: a bogus answer taints everything it is combined
/// with, an unknown one is worse than a provably unsigned one.
fn strength(status: Dnssec) -> u8 {
    match status {
        Dnssec::Bogus => 0,
        Dnssec::Indeterminate => 1,
        Dnssec::Insecure => 2,
        Dnssec::Secure => 3,
    }
}

/// The weaker of two statuses (RFC 4035 §4.3: a set of answers is only as secure as its least
/// secure member).
pub(crate) fn weakest(a: Dnssec, b: Dnssec) -> Dnssec {
    if strength(a) <= strength(b) { a } else { b }
}

/// The weakest status among `statuses`, or `empty` when there are none.
pub(crate) fn weakest_of(statuses: impl IntoIterator<Item = Dnssec>, empty: Dnssec) -> Dnssec {
    statuses.into_iter().reduce(weakest).unwrap_or(empty)
}

pub(crate) fn from_proof(proof: Proof) -> Dnssec {
    match proof {
        Proof::Secure => Dnssec::Secure,
        Proof::Insecure => Dnssec::Insecure,
        Proof::Bogus => Dnssec::Bogus,
        Proof::Indeterminate => Dnssec::Indeterminate,
    }
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::rr::rdata::{A, CNAME};

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("test name")
    }

    fn answer(records: Vec<Record>) -> Answer {
        Answer {
            records,
            dnssec: Dnssec::Secure,
            nxdomain: false,
        }
    }

    #[test]
    fn the_weakest_status_wins_and_bogus_taints_everything() {
        let rows = [
            (Dnssec::Secure, Dnssec::Secure, Dnssec::Secure),
            (Dnssec::Secure, Dnssec::Insecure, Dnssec::Insecure),
            (
                Dnssec::Insecure,
                Dnssec::Indeterminate,
                Dnssec::Indeterminate,
            ),
            (Dnssec::Indeterminate, Dnssec::Bogus, Dnssec::Bogus),
            (Dnssec::Bogus, Dnssec::Secure, Dnssec::Bogus),
        ];
        for (a, b, expected) in rows {
            assert_eq!(weakest(a, b), expected, "{a:?} with {b:?}");
            assert_eq!(weakest(b, a), expected, "{b:?} with {a:?}");
        }
        assert_eq!(weakest_of([], Dnssec::Indeterminate), Dnssec::Indeterminate);
    }

    #[test]
    fn a_cname_chain_is_followed_to_its_end() {
        let records = vec![
            Record::from_rdata(
                name("mx.example."),
                300,
                RData::CNAME(CNAME(name("Hop.Example."))),
            ),
            Record::from_rdata(
                name("hop.example."),
                300,
                RData::CNAME(CNAME(name("real.example."))),
            ),
            Record::from_rdata(name("real.example."), 300, RData::A(A::new(192, 0, 2, 1))),
        ];
        let found = answer(records);
        assert_eq!(
            found.canonical_name("MX.example"),
            Some("real.example".to_owned())
        );
        assert_eq!(found.data_of(RecordType::A).count(), 1);
        assert_eq!(found.canonical_name("other.example"), None);
    }

    #[test]
    fn a_cname_loop_ends_instead_of_spinning() {
        let records = vec![
            Record::from_rdata(
                name("a.example."),
                300,
                RData::CNAME(CNAME(name("b.example."))),
            ),
            Record::from_rdata(
                name("b.example."),
                300,
                RData::CNAME(CNAME(name("a.example."))),
            ),
        ];
        // Two hops lead back to the start: no alias, and above all no endless loop.
        assert_eq!(answer(records).canonical_name("a.example"), None);
    }
}
