//! Per-domain rules written by administrators: what they match and what they demand.
//!
//! `strictmx-config` builds these from `[[rule]]` tables; the planner applies them on top of
//! what the destination publishes. A rule can only tighten, except through the explicitly named
//! `insecure_relax` override, which the planner logs in the plan's `why`. Such an exception
//! carries a reason and an expiry; a rule in shadow mode is evaluated but never enforced. Which
//! rules are in force at a given moment is [`crate::evaluate`]'s decision.

use serde::Serialize;

/// Matches a recipient domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "domain", rename_all = "kebab-case")]
pub enum DomainPattern {
    /// This domain only, lowercase, no trailing dot.
    Exact(String),
    /// `*.example.com`: any name below `example.com` (at any depth), not `example.com` itself.
    /// Holds `example.com`.
    Below(String),
}

/// Matches the envelope sender (shared with the inbound sender login maps).
pub use strictmx_protocol::SenderPattern;

/// The least a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MinRequirement {
    Opportunistic,
    Encrypted,
    /// A web PKI certificate for the MX host name, or DANE.
    Verified,
    /// Only hosts with usable DANE TLSA records; anything else defers.
    DaneOnly,
}

impl MinRequirement {
    /// The name used in config and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            MinRequirement::Opportunistic => "opportunistic",
            MinRequirement::Encrypted => "encrypted",
            MinRequirement::Verified => "verified",
            MinRequirement::DaneOnly => "dane-only",
        }
    }
}

/// A TLS protocol version floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsVersion {
    /// The name used in config, logs and reasons (`TLSv1.2`).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

/// A pinned certificate or key. A pin is met by the end-entity certificate (the one whose key
/// signed the handshake), or by an issuing certificate the server presents when the end-entity
/// certificate validates to it as the only trust anchor (`peer::judge_peer` decides; the
/// transport computes the validation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Pin {
    /// SHA-256 of a certificate's SubjectPublicKeyInfo (DER).
    Spki { sha256: [u8; 32] },
    /// SHA-256 of a whole certificate (DER).
    Certificate { sha256: [u8; 32] },
}

impl Pin {
    /// Whether the certificate `cert_der` carries this pin's digest.
    pub fn matches(&self, cert_der: &[u8]) -> bool {
        match self {
            Pin::Certificate { sha256 } => crate::tlsa::certificate_sha256(cert_der) == *sha256,
            Pin::Spki { sha256 } => crate::tlsa::spki_sha256(cert_der) == Some(*sha256),
        }
    }
}

/// How far a rule may relax a published policy (MTA-STS or DANE) for a broken receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relax {
    /// TLS stays mandatory; the certificate is not checked.
    Encrypted,
}

/// Whether a rule is applied or only tried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleMode {
    #[default]
    Enforce,
    /// Evaluated for every message as if enforced, recorded, never applied.
    Shadow,
}

impl RuleMode {
    /// The name used in config, logs and reports (`enforce`, `shadow`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Enforce => "enforce",
            RuleMode::Shadow => "shadow",
        }
    }
}

/// One administrator rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// For `why` trails and `explain`: the rule's `name`, or its position in the file.
    pub name: String,
    /// Empty: every recipient domain.
    pub domains: Vec<DomainPattern>,
    /// Empty: every sender.
    pub senders: Vec<SenderPattern>,
    pub require: Option<MinRequirement>,
    pub pins: Vec<Pin>,
    pub min_tls_version: Option<TlsVersion>,
    /// Defer instead of delivering when policy cannot be determined (DNS failure, an MTA-STS
    /// policy that cannot be fetched with nothing cached, broken DNSSEC).
    pub fail_closed: bool,
    pub insecure_relax: Option<Relax>,
    pub mode: RuleMode,
    /// Unix seconds: from this moment on the rule no longer applies.
    pub expires: Option<u64>,
    /// Why the rule exists; every exception must say.
    pub reason: Option<String>,
    /// For this many seconds after a matching destination weakened, keep demanding what it
    /// offered before (`pin_last_good`).
    pub pin_last_good: Option<u64>,
    /// What the pin demands now; set by [`crate::evaluate`] from the destination's history,
    /// never by configuration.
    pub pinned: Option<Pinned>,
}

/// What a rule's `pin_last_good` demands at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pinned {
    /// What the destination offered before it weakened, or when last seen.
    pub require: MinRequirement,
    /// Why, in words: the weakening and how long the pin still holds, or "as last seen".
    pub because: String,
}

impl DomainPattern {
    /// Whether the recipient `domain` (lowercase, no trailing dot) matches.
    pub fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Exact(exact) => domain.eq_ignore_ascii_case(exact),
            DomainPattern::Below(parent) => domain
                .to_ascii_lowercase()
                .strip_suffix(&parent.to_ascii_lowercase())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
        }
    }
}

impl Rule {
    /// Whether this rule applies to mail from `sender` to `domain`: every listed dimension must
    /// match, and an empty list matches everything.
    pub fn applies(&self, domain: &str, sender: &str) -> bool {
        (self.domains.is_empty() || self.domains.iter().any(|d| d.matches(domain)))
            && (self.senders.is_empty() || self.senders.iter().any(|s| s.matches(sender)))
    }

    /// An exception loosens what a destination publishes (`insecure_relax`): it must carry a
    /// reason and an expiry, and what it lets through is counted.
    pub fn is_exception(&self) -> bool {
        self.insecure_relax.is_some()
    }

    /// Whether the rule's expiry has come at `now` (unix seconds): it stops applying at the
    /// very second given.
    pub fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|expires| now >= expires)
    }
}

/// What all rules matching one message and domain demand together: the strictest of each.
///
/// `require` (raised by a pin that holds) and `min_tls_version` take the highest value, `fail_closed` holds if any rule sets
/// it; pins come from the first matching rule that lists any (a chain cannot be asked to match
/// two independent pin sets in a plan that carries one list); `insecure_relax` applies if any
/// matching rule sets it, and never lowers another rule's `require`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleDemand {
    /// The names of the matching rules, in file order.
    pub rules: Vec<String>,
    pub require: Option<MinRequirement>,
    pub pins: Vec<Pin>,
    pub min_tls_version: Option<TlsVersion>,
    pub fail_closed: bool,
    /// The relaxing rule's name and how far it relaxes.
    pub relax: Option<(String, Relax)>,
    /// The rules whose `pin_last_good` holds now, with what each demands.
    pub pinned: Vec<(String, Pinned)>,
}

impl RuleDemand {
    /// Combines every enforced rule in `rules` that applies to mail from `sender` to `domain`;
    /// shadow rules are never part of a demand. Expiry is not looked at here: the rules given
    /// are those in force ([`crate::evaluate`] leaves out the expired ones).
    pub fn collect(rules: &[Rule], domain: &str, sender: &str) -> RuleDemand {
        let mut demand = RuleDemand::default();
        let enforced = rules
            .iter()
            .filter(|rule| rule.mode == RuleMode::Enforce && rule.applies(domain, sender));
        for rule in enforced {
            demand.rules.push(rule.name.clone());
            demand.require = demand.require.max(rule.require);
            if let Some(pinned) = &rule.pinned {
                demand.require = demand.require.max(Some(pinned.require));
                demand.pinned.push((rule.name.clone(), pinned.clone()));
            }
            demand.min_tls_version = demand.min_tls_version.max(rule.min_tls_version);
            demand.fail_closed |= rule.fail_closed;
            if demand.pins.is_empty() {
                demand.pins.clone_from(&rule.pins);
            }
            if let (None, Some(relax)) = (&demand.relax, rule.insecure_relax) {
                demand.relax = Some((rule.name.clone(), relax));
            }
        }
        // A pin or a version floor is a demand on the TLS session, which a plaintext session
        // would never meet: either one makes TLS mandatory, so a STARTTLS stripper cannot get
        // the mail past it in plaintext.
        if !demand.pins.is_empty() || demand.min_tls_version.is_some() {
            demand.require = demand.require.max(Some(MinRequirement::Encrypted));
        }
        demand
    }
}
