//! What a destination publishes about its transport security, as seen at one delivery (its
//! *posture*), and which changes between two postures weaken it: MTA-STS enforce to testing or
//! none, the MTA-STS record gone, TLSA records gone or unusable, DNSSEC lost, STARTTLS no longer
//! offered by an MX host that offered it. Pure; the delivery run observes, the watch keeps the
//! history and raises the warnings.
//!
//! A fact that could not be determined this time (a lookup that failed, a host not connected
//! to) is "unknown" and never counts as a weakening: a DNS outage is not a policy change.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strictmx_protocol::HumanDuration;

use crate::facts::{Dnssec, DomainFacts, HostFacts, StsRecordFacts, TlsaFacts};
use crate::rules::{MinRequirement, Pinned};

/// One destination's published security at one delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posture {
    pub sts: StsPosture,
    /// The most a candidate's TLSA records offered.
    pub tlsa: TlsaPosture,
    /// Whether the MX RRset validated; `None` when its status could not be determined.
    pub mx_secure: Option<bool>,
    /// Per MX host connected to this time: whether it offered STARTTLS.
    #[serde(default)]
    pub starttls: BTreeMap<String, bool>,
    /// Per MX host that completed STARTTLS: whether it advertised REQUIRETLS afterwards.
    #[serde(default)]
    pub requiretls: BTreeMap<String, bool>,
}

/// The MTA-STS state (RFC 8461 §3, §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StsPosture {
    /// The TXT lookup failed or the policy could not be fetched: nothing to compare.
    #[default]
    Unknown,
    /// No `_mta-sts` record (or one that does not parse: no policy, RFC 8461 §3.1).
    NoRecord,
    /// A policy in force.
    Policy {
        mode: String,
        id: String,
        mx: Vec<String>,
    },
}

/// The TLSA state of a destination's MX hosts (RFC 7672 §2.2), the best host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsaPosture {
    /// A TLSA lookup failed (bogus, SERVFAIL): nothing to compare.
    #[default]
    Unknown,
    /// No host has TLSA records (or DANE cannot apply).
    None,
    /// Records exist, none of them usable: TLS mandatory, not authenticated.
    Unusable,
    /// A host has usable records.
    Usable,
}

/// One way a destination weakened between two postures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Weakening {
    /// RFC 8461 §5: enforce became testing or none.
    StsMode { from: String, to: String },
    /// The `_mta-sts` record disappeared.
    StsRecordGone { mode: String },
    /// Usable TLSA records disappeared or became unusable.
    Tlsa { from: TlsaPosture, to: TlsaPosture },
    /// The MX RRset no longer validates.
    DnssecLost,
    /// An MX host that offered STARTTLS no longer does.
    StarttlsDropped { host: String },
}

impl Weakening {
    /// A short label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Weakening::StsMode { .. } => "sts-mode",
            Weakening::StsRecordGone { .. } => "sts-record-gone",
            Weakening::Tlsa { .. } => "tlsa",
            Weakening::DnssecLost => "dnssec-lost",
            Weakening::StarttlsDropped { .. } => "starttls-dropped",
        }
    }

    /// What changed, in words.
    pub fn describe(&self) -> String {
        match self {
            Weakening::StsMode { from, to } => format!("MTA-STS mode went from {from} to {to}"),
            Weakening::StsRecordGone { mode } => {
                format!("the MTA-STS record is gone (the policy was {mode})")
            }
            Weakening::Tlsa { from, to } => {
                format!("TLSA went from {} to {}", from.as_str(), to.as_str())
            }
            Weakening::DnssecLost => "the MX RRset no longer validates (DNSSEC lost)".to_owned(),
            Weakening::StarttlsDropped { host } => {
                format!("{host} no longer offers STARTTLS")
            }
        }
    }
}

impl TlsaPosture {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsaPosture::Unknown => "unknown",
            TlsaPosture::None => "none",
            TlsaPosture::Unusable => "unusable records",
            TlsaPosture::Usable => "usable records",
        }
    }
}

/// The posture the gathered facts show, before any connection (STARTTLS and REQUIRETLS are
/// added by the delivery run as it connects).
pub fn posture_of(facts: &DomainFacts) -> Posture {
    let sts = match (&facts.sts.record, &facts.sts.policy) {
        (StsRecordFacts::Absent | StsRecordFacts::Invalid { .. }, _) => StsPosture::NoRecord,
        (StsRecordFacts::Present { .. }, Some(policy)) => StsPosture::Policy {
            mode: policy.policy.mode.as_str().to_owned(),
            id: policy.id.clone(),
            mx: policy.policy.mx.clone(),
        },
        (StsRecordFacts::Present { .. } | StsRecordFacts::LookupFailed { .. }, _) => {
            StsPosture::Unknown
        }
    };
    let mx_secure = match facts.mx_dnssec {
        Dnssec::Secure => Some(true),
        Dnssec::Insecure => Some(false),
        Dnssec::Bogus | Dnssec::Indeterminate => None,
    };
    Posture {
        sts,
        tlsa: tlsa_posture(&facts.hosts),
        mx_secure,
        starttls: BTreeMap::new(),
        requiretls: BTreeMap::new(),
    }
}

/// The posture of a configured route's next hop: its TLSA records (no MTA-STS, no MX RRset).
pub fn posture_of_route(host: &HostFacts) -> Posture {
    Posture {
        tlsa: tlsa_posture(std::slice::from_ref(host)),
        ..Posture::default()
    }
}

/// The best TLSA state among `hosts`; unknown when a lookup failed and no host is usable.
fn tlsa_posture(hosts: &[HostFacts]) -> TlsaPosture {
    let mut tlsa = TlsaPosture::None;
    let mut failed = false;
    for host in hosts {
        match &host.tlsa {
            TlsaFacts::Records { records, .. } => {
                let this = if records.iter().any(|r| r.is_usable()) {
                    TlsaPosture::Usable
                } else {
                    TlsaPosture::Unusable
                };
                tlsa = tlsa.max(this);
            }
            TlsaFacts::Failed { .. } => failed = true,
            TlsaFacts::NotApplicable { .. } | TlsaFacts::Absent { .. } => {}
        }
    }
    // A failed lookup hides what that host publishes: only a usable finding elsewhere stands.
    if failed && tlsa != TlsaPosture::Usable {
        TlsaPosture::Unknown
    } else {
        tlsa
    }
}

/// Folds `now` into the last known posture: what `now` could not determine (unknown facts,
/// hosts not connected to) keeps its earlier value, so that the next comparison is against
/// the last thing actually seen.
pub fn merged(before: &Posture, now: &Posture) -> Posture {
    let mut next = now.clone();
    if next.sts == StsPosture::Unknown {
        next.sts = before.sts.clone();
    }
    if next.tlsa == TlsaPosture::Unknown {
        next.tlsa = before.tlsa;
    }
    if next.mx_secure.is_none() {
        next.mx_secure = before.mx_secure;
    }
    for (host, offered) in &before.starttls {
        next.starttls.entry(host.clone()).or_insert(*offered);
    }
    for (host, offered) in &before.requiretls {
        next.requiretls.entry(host.clone()).or_insert(*offered);
    }
    next
}

/// The ways `after` is weaker than `before`. Unknown facts on either side compare as equal.
pub fn weakenings(before: &Posture, after: &Posture) -> Vec<Weakening> {
    let mut found = Vec::new();
    match (&before.sts, &after.sts) {
        (StsPosture::Policy { mode, .. }, StsPosture::NoRecord) => {
            found.push(Weakening::StsRecordGone { mode: mode.clone() });
        }
        (StsPosture::Policy { mode: from, .. }, StsPosture::Policy { mode: to, .. })
            if from == "enforce" && to != "enforce" =>
        {
            found.push(Weakening::StsMode {
                from: from.clone(),
                to: to.clone(),
            });
        }
        _ => {}
    }
    if before.tlsa == TlsaPosture::Usable
        && matches!(after.tlsa, TlsaPosture::None | TlsaPosture::Unusable)
    {
        found.push(Weakening::Tlsa {
            from: before.tlsa,
            to: after.tlsa,
        });
    }
    if before.mx_secure == Some(true) && after.mx_secure == Some(false) {
        found.push(Weakening::DnssecLost);
    }
    for (host, offered) in &after.starttls {
        if !offered && before.starttls.get(host) == Some(&true) {
            found.push(Weakening::StarttlsDropped { host: host.clone() });
        }
    }
    found
}

/// A weakening as a rule's `pin_last_good` remembers it: when it was seen, what the
/// destination offered just before, and what changed. Derived from the recorded changes, never
/// stored itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PastWeakening {
    /// Unix seconds.
    pub at: u64,
    /// What the posture before the weakening earned ([`earned`]).
    pub earned: Option<MinRequirement>,
    /// The weakenings, in words.
    pub what: String,
}

impl PastWeakening {
    /// The memory of one recorded change: `before` is the posture it weakened from.
    pub fn of(at: u64, before: &Posture, found: &[Weakening]) -> PastWeakening {
        PastWeakening {
            at,
            earned: earned(before),
            what: found
                .iter()
                .map(Weakening::describe)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// The strongest requirement a posture's published facts met, as a rule would say it:
/// usable TLSA records behind a DNSSEC-secure MX RRset (RFC 7672 §2.2) earn `dane-only`, an
/// MTA-STS policy in `enforce` mode (RFC 8461 §5) earns `verified`, STARTTLS offered by an MX
/// host earns `encrypted`; nothing else earns anything.
pub fn earned(posture: &Posture) -> Option<MinRequirement> {
    if posture.tlsa == TlsaPosture::Usable && posture.mx_secure != Some(false) {
        return Some(MinRequirement::DaneOnly);
    }
    if matches!(&posture.sts, StsPosture::Policy { mode, .. } if mode == "enforce") {
        return Some(MinRequirement::Verified);
    }
    posture
        .starttls
        .values()
        .any(|offered| *offered)
        .then_some(MinRequirement::Encrypted)
}

/// What a destination's history holds for pins: what it offered when last seen, and its
/// remembered weakenings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// [`earned`] by the last posture seen; a change is noticed only after the delivery that
    /// saw it, so until then this is what the destination last offered.
    pub last_seen: Option<MinRequirement>,
    /// Oldest first.
    pub weakenings: Vec<PastWeakening>,
}

/// What a pin of `window` seconds demands at `now` (unix seconds): the most that the
/// destination offered when last seen, or before a weakening seen within the window. On a tie
/// the latest weakening is named.
pub fn pinned(history: &History, window: u64, now: u64) -> Option<Pinned> {
    let weakened = history
        .weakenings
        .iter()
        .filter(|past| past.at <= now && now - past.at < window)
        .filter_map(|past| past.earned.map(|require| (require, past)))
        .max_by_key(|(require, past)| (*require, past.at));
    match (weakened, history.last_seen) {
        (Some((require, past)), last) if Some(require) >= last => Some(Pinned {
            require,
            because: format!(
                "{}, {} ago; the pin holds for {} more",
                past.what,
                HumanDuration(Duration::from_secs(now - past.at)),
                HumanDuration(Duration::from_secs(window - (now - past.at)))
            ),
        }),
        (_, Some(require)) => Some(Pinned {
            require,
            because: "what the destination offered when last seen".to_owned(),
        }),
        (_, None) => None,
    }
}

#[cfg(test)]
mod tests;
