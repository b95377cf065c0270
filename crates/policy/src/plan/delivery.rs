//! The whole precedence for one destination and message (DESIGN.md, strongest first):
//! REQUIRETLS, DANE, MTA-STS, administrator rules, the global default, `TLS-Required: No`.
//!
//! Facts come in as [`DomainFacts`]; nothing is looked up here. Each host is planned on its
//! own ([`plan_host`]), then the plan as a whole gets its label and outcome.

use strictmx_protocol::status;

use crate::facts::{
    DnssecHealth, DomainFacts, HostFacts, MessageFacts, MxHost, StsPolicyFacts, StsRecordFacts,
    TlsaFacts,
};
use crate::report::{PolicyType, ReportPolicy, ResultType};
use crate::rules::{MinRequirement, RuleDemand};
use crate::sts::{self, StsMode};

use super::{
    DeliveryPlan, HostPolicyFailure, PlanOutcome, PlannedHost, PolicyLabel, PolicySettings,
    TlsRequirement, default_requirement, mx_candidates, no_policy_found, normalise,
};

/// Plans delivery of one message to `facts.domain` from everything known about it.
pub fn plan_delivery(
    facts: &DomainFacts,
    message: &MessageFacts,
    settings: &PolicySettings,
) -> PlanOutcome {
    let domain = normalise(&facts.domain);
    let mut why = Vec::new();
    let mx_hosts = match mx_candidates(&domain, &facts.mx, &mut why) {
        Ok(hosts) => hosts,
        Err(outcome) => {
            // No host to plan for, but the trail still says what else applies to this mail.
            note_dnssec_health(facts, &mut why);
            note_rules(
                &RuleDemand::collect(&settings.rules, &domain, &message.sender),
                &mut why,
            );
            return (*outcome).with_trail(why);
        }
    };
    note_dnssec_health(facts, &mut why);
    let mx_secure = facts.mx_dnssec == crate::facts::Dnssec::Secure;
    let ctx = Context::new(
        &domain,
        &facts.hosts,
        mx_secure,
        facts,
        message,
        settings,
        &mut why,
    );
    if ctx.demand.fail_closed
        && let Some(problem) = undetermined(facts)
    {
        return PlanOutcome::Defer {
            reason: format!(
                "rule(s) {} fail closed: {problem}",
                ctx.demand.rules.join(", ")
            ),
            policy_failures: Vec::new(),
            why,
        };
    }
    plan_hosts(&ctx, &mx_hosts, why, facts)
}

fn note_dnssec_health(facts: &DomainFacts, why: &mut Vec<String>) {
    if let DnssecHealth::Broken { mode, reason } = &facts.dnssec_health {
        why.push(format!(
            "DNSSEC self-test ({mode}) failed: {reason}; DANE cannot be established, so hosts \
             with TLSA records defer instead of losing DANE"
        ));
    }
}

fn note_rules(demand: &RuleDemand, why: &mut Vec<String>) {
    if !demand.rules.is_empty() {
        why.push(format!("matching rule(s): {}", demand.rules.join(", ")));
    }
    for (rule, pinned) in &demand.pinned {
        why.push(format!(
            "rule {rule} pins the last good policy: {} is required ({})",
            pinned.require.as_str(),
            pinned.because,
        ));
    }
}

/// Plans delivery of one message for `domain` to a configured next hop, whose facts the resolver
/// gathered like an MX host's. The route itself is configuration, so its choice counts as
/// authenticated (REQUIRETLS); MTA-STS does not apply, since no MX is chosen.
///
/// A route that `sends_credentials` (AUTH at a smarthost) needs at least `Verified` for the
/// next hop's name, whatever the rules, the default or `TLS-Required: No` say: the password is
/// ours, and it may go only to a peer whose certificate proves it is that host.
pub fn plan_route_delivery(
    domain: &str,
    next_hop: &HostFacts,
    sends_credentials: bool,
    message: &MessageFacts,
    settings: &PolicySettings,
) -> PlanOutcome {
    let domain = normalise(domain);
    let host = normalise(&next_hop.name);
    let mut why = vec![format!("configured route sends {domain} to {host}")];
    let hosts = std::slice::from_ref(next_hop);
    let facts = route_facts(&domain);
    let ctx = Context::new(&domain, hosts, true, &facts, message, settings, &mut why);
    if ctx.demand.fail_closed
        && let TlsaFacts::Failed { reason, .. } = &next_hop.tlsa
    {
        return PlanOutcome::Defer {
            reason: format!(
                "rule(s) {} fail closed: TLSA lookup for {host} failed: {reason}",
                ctx.demand.rules.join(", ")
            ),
            policy_failures: Vec::new(),
            why,
        };
    }
    let next = [MxHost {
        name: host,
        preference: 0,
    }];
    let mut outcome = plan_hosts(&ctx, &next, why, &facts);
    if let PlanOutcome::Deliver(plan) = &mut outcome
        && matches!(
            plan.policy,
            PolicyLabel::DefaultOpportunistic
                | PolicyLabel::DefaultEncrypted
                | PolicyLabel::DefaultVerified
        )
    {
        plan.policy = PolicyLabel::Route;
    }
    if sends_credentials && let PlanOutcome::Deliver(plan) = &mut outcome {
        demand_authenticated_peer(plan);
    }
    outcome
}

/// Raises every candidate of a route with credentials to `Verified` for its own name unless it
/// already demands an authenticated peer (`Verified` or `Dane`); plaintext fallback is off.
fn demand_authenticated_peer(plan: &mut DeliveryPlan) {
    for host in &mut plan.candidates {
        if !host.requirement.requires_authentication() {
            host.requirement = TlsRequirement::Verified {
                names: vec![host.host.clone()],
            };
        }
    }
    plan.insecure_plaintext_fallback = false;
    let last = plan.why.pop();
    plan.why.push(
        "the route logs in with AUTH: credentials go only over TLS whose certificate verified \
         for the next hop (Verified at least)"
            .to_owned(),
    );
    plan.why.extend(last);
}

/// Stand-in domain facts for a route: no MTA-STS, DNSSEC assumed working.
fn route_facts(domain: &str) -> DomainFacts {
    DomainFacts {
        domain: domain.to_owned(),
        mx: crate::facts::MxFacts::Hosts(Vec::new()),
        mx_dnssec: crate::facts::Dnssec::Secure,
        hosts: Vec::new(),
        sts: crate::facts::StsFacts {
            record: StsRecordFacts::Absent,
            policy: None,
            fetch_failure: None,
        },
        dnssec_health: DnssecHealth::Working {
            mode: "route".to_owned(),
        },
    }
}

/// What every host of one plan is decided against.
struct Context<'a> {
    domain: &'a str,
    hosts: &'a [HostFacts],
    /// The MX choice is DNSSEC-authenticated (RFC 8689 §4.2.1, RFC 7672 §2.2.1).
    mx_secure: bool,
    /// The MTA-STS policy in force, when its mode is not `none`.
    sts: Option<&'a StsPolicyFacts>,
    demand: RuleDemand,
    settings: &'a PolicySettings,
    requiretls: bool,
    /// RFC 8689 §4.2.1: the next hop must also advertise REQUIRETLS (see
    /// [`DeliveryPlan::requiretls`]).
    next_hop_requiretls: bool,
    /// RFC 8689 §5: `TLS-Required: No` is honoured for this message.
    header_relaxes: bool,
    /// The message's own floor demands more than the rules.
    floor_raises: bool,
}

impl<'a> Context<'a> {
    fn new(
        domain: &'a str,
        hosts: &'a [HostFacts],
        mx_secure: bool,
        facts: &'a DomainFacts,
        message: &MessageFacts,
        settings: &'a PolicySettings,
        why: &mut Vec<String>,
    ) -> Context<'a> {
        let mut demand = RuleDemand::collect(&settings.rules, domain, &message.sender);
        note_rules(&demand, why);
        let rules_require = demand.require;
        if let Some(floor) = message.floor {
            why.push(format!(
                "the submitter's TLS floor for this message: {} (a floor, never a relaxation)",
                floor.as_str()
            ));
            demand.require = demand.require.max(Some(floor));
        }
        let floor_raises = demand.require > rules_require;
        let header_relaxes = header_relaxes(message, why);
        let next_hop_requiretls = message.requiretls && !message.sender.is_empty();
        if message.requiretls && !next_hop_requiretls {
            // RFC 8689 §5: a non-delivery report about a REQUIRETLS message is protected like
            // the message itself, but "the REQUIRETLS parameter SHOULD NOT cause a bounce
            // message to be discarded even if the next-hop relay does not advertise REQUIRETLS".
            why.push(
                "null-sender report about a REQUIRETLS message: REQUIRETLS conditions apply, \
                 except that the next hop need not advertise REQUIRETLS (RFC 8689 §5)"
                    .to_owned(),
            );
        }
        Context {
            domain,
            hosts,
            mx_secure,
            sts: sts_in_force(facts, why),
            demand,
            settings,
            requiretls: message.requiretls,
            next_hop_requiretls,
            header_relaxes,
            floor_raises,
        }
    }
}

/// RFC 8689 §5: `TLS-Required: No` asks to ignore recipient-side TLS policy; honoured only for
/// submitters configuration allows, and never together with REQUIRETLS (RFC 8689 §4.1).
fn header_relaxes(message: &MessageFacts, why: &mut Vec<String>) -> bool {
    if message.requiretls {
        why.push(
            "REQUIRETLS: TLS mandatory, MX choice and peer authenticated (RFC 8689 §4.2.1)"
                .to_owned(),
        );
        if message.tls_required_no {
            why.push("TLS-Required: No ignored: REQUIRETLS wins (RFC 8689 §5)".to_owned());
        }
        return false;
    }
    if !message.tls_required_no {
        return false;
    }
    if message.floor.is_some() {
        why.push("TLS-Required: No ignored: the message's own TLS floor wins".to_owned());
        return false;
    }
    if !message.submitter_may_relax {
        why.push("TLS-Required: No ignored: this submitter may not relax policy".to_owned());
        return false;
    }
    why.push(
        "TLS-Required: No honoured: MTA-STS, DANE and rule TLS demands ignored (RFC 8689 §5)"
            .to_owned(),
    );
    true
}

/// The MTA-STS policy in force (RFC 8461 §5.1: fresh, or cached and unexpired, even when the
/// TXT record is gone or a refresh failed); `None` for no policy or mode `none`.
fn sts_in_force<'a>(facts: &'a DomainFacts, why: &mut Vec<String>) -> Option<&'a StsPolicyFacts> {
    match &facts.sts.record {
        StsRecordFacts::Invalid { reason } => {
            why.push(format!("_mta-sts record unusable: {reason}"))
        }
        StsRecordFacts::LookupFailed { reason } => {
            why.push(format!("_mta-sts lookup failed: {reason}"));
        }
        StsRecordFacts::Absent | StsRecordFacts::Present { .. } => {}
    }
    if let Some(failure) = &facts.sts.fetch_failure {
        why.push(format!(
            "MTA-STS policy fetch failed ({}): {}",
            failure.result_type.as_str(),
            failure.reason
        ));
    }
    let policy = facts.sts.policy.as_ref()?;
    let source = if policy.from_cache {
        "cached"
    } else {
        "fetched"
    };
    why.push(format!(
        "MTA-STS policy id {} ({source}) mode {}",
        policy.id,
        policy.policy.mode.as_str()
    ));
    // RFC 8461 §5: mode "none" means no policy.
    (policy.policy.mode != StsMode::None).then_some(policy)
}

/// Why policy cannot be determined, for fail-closed rules; `None` when it can.
fn undetermined(facts: &DomainFacts) -> Option<String> {
    match &facts.sts.record {
        StsRecordFacts::LookupFailed { reason } => {
            return Some(format!("the _mta-sts TXT lookup failed: {reason}"));
        }
        StsRecordFacts::Present { id } if facts.sts.policy.is_none() => {
            let detail = facts
                .sts
                .fetch_failure
                .as_ref()
                .map_or_else(|| "not fetched".to_owned(), |f| f.reason.clone());
            return Some(format!(
                "MTA-STS policy {id} unavailable and nothing cached: {detail}"
            ));
        }
        _ => {}
    }
    if let DnssecHealth::Broken { reason, .. } = &facts.dnssec_health {
        return Some(format!("DNSSEC is broken: {reason}"));
    }
    facts
        .hosts
        .iter()
        .find_map(|host| match (&host.tlsa, &host.addresses) {
            (TlsaFacts::Failed { reason, .. }, _) => {
                Some(format!("TLSA lookup for {} failed: {reason}", host.name))
            }
            (_, Err(failure)) if failure.transient => Some(format!(
                "address lookup for {} failed: {}",
                host.name, failure.reason
            )),
            _ => None,
        })
}

/// A host planned for use, with what the plan's label needs to know about it.
struct HostOutcome {
    host: PlannedHost,
    relaxed: bool,
    raised: bool,
    /// MTA-STS testing: the host is used, but enforce mode would have refused it.
    testing_failure: Option<HostPolicyFailure>,
}

/// A host kept out of the plan.
struct Refusal {
    failure: HostPolicyFailure,
    /// The refusal may go away by itself (DNS failure, policy change): defer, not bounce.
    transient: bool,
    /// REQUIRETLS refused the host because its choice is not authenticated.
    unauthenticated: bool,
}

fn plan_hosts(
    ctx: &Context<'_>,
    mx_hosts: &[MxHost],
    mut why: Vec<String>,
    facts: &DomainFacts,
) -> PlanOutcome {
    let mut outcomes = Vec::new();
    let mut refusals = Vec::new();
    for mx in mx_hosts {
        match plan_host(ctx, mx, &mut why) {
            Ok(outcome) => outcomes.push(outcome),
            Err(refusal) => {
                why.push(format!("{} not used: {}", mx.name, refusal.failure.reason));
                refusals.push(refusal);
            }
        }
    }
    if outcomes.is_empty() {
        return no_candidates(ctx, &refusals, facts).with_trail(why);
    }
    let policy = label(ctx, &outcomes);
    let mut policy_failures: Vec<HostPolicyFailure> = refusals
        .into_iter()
        .map(|refusal| refusal.failure)
        .collect();
    policy_failures.extend(outcomes.iter().filter_map(|o| o.testing_failure.clone()));
    let candidates: Vec<PlannedHost> = outcomes.into_iter().map(|o| o.host).collect();
    let fallback = ctx.settings.insecure_plaintext_fallback
        && !ctx.requiretls
        && candidates.iter().any(|c| c.requirement.allows_plaintext());
    if fallback {
        why.push("insecure plaintext fallback after a failed handshake is enabled".to_owned());
    }
    why.push(format!("plan: {policy}"));
    PlanOutcome::Deliver(DeliveryPlan {
        domain: ctx.domain.to_owned(),
        candidates,
        policy,
        rules: ctx.demand.rules.clone(),
        insecure_plaintext_fallback: fallback,
        requiretls: ctx.next_hop_requiretls,
        policy_failures,
        why,
    })
}

/// The outcome when every host was refused.
fn no_candidates(ctx: &Context<'_>, refusals: &[Box<Refusal>], facts: &DomainFacts) -> PlanOutcome {
    let reasons: Vec<String> = refusals
        .iter()
        .map(|r| format!("{}: {}", r.failure.host, r.failure.reason))
        .collect();
    let reasons = reasons.join("; ");
    let sts_unknown = matches!(facts.sts.record, StsRecordFacts::LookupFailed { .. })
        || (matches!(facts.sts.record, StsRecordFacts::Present { .. })
            && facts.sts.policy.is_none());
    if ctx.requiretls && refusals.iter().any(|r| r.unauthenticated) && !sts_unknown {
        // RFC 8689 §4.2.1, §5: no authenticated MX: the message is returned with 5.7.30.
        return super::bounce(
            &status::REQUIRETLS_NEEDED.permanent().to_string(),
            format!("REQUIRETLS cannot be met for {}: {reasons}", ctx.domain),
        );
    }
    if refusals.iter().all(|r| !r.transient && !r.unauthenticated) {
        // RFC 5321 §5.1: MX records exist but none is usable.
        return super::bounce(
            &status::UNABLE_TO_ROUTE.to_string(),
            format!("no usable host for {}: {reasons}", ctx.domain),
        );
    }
    PlanOutcome::Defer {
        reason: format!("no host of {} may be used now: {reasons}", ctx.domain),
        policy_failures: refusals.iter().map(|r| r.failure.clone()).collect(),
        why: Vec::new(),
    }
}

fn label(ctx: &Context<'_>, outcomes: &[HostOutcome]) -> PolicyLabel {
    if ctx.requiretls {
        return PolicyLabel::Requiretls;
    }
    if ctx.header_relaxes {
        return PolicyLabel::TlsRequiredNo;
    }
    if outcomes.iter().any(|o| o.relaxed) {
        return PolicyLabel::RuleRelaxed;
    }
    if outcomes
        .iter()
        .any(|o| matches!(o.host.requirement, TlsRequirement::Dane { .. }))
    {
        return PolicyLabel::Dane;
    }
    match ctx.sts.map(|s| s.policy.mode) {
        Some(StsMode::Enforce) => return PolicyLabel::StsEnforce,
        Some(StsMode::Testing) => return PolicyLabel::StsTesting,
        Some(StsMode::None) | None => {}
    }
    if outcomes.iter().any(|o| o.raised) {
        return if ctx.floor_raises {
            PolicyLabel::MessageFloor
        } else {
            PolicyLabel::Rule
        };
    }
    match ctx.settings.default_requirement {
        super::DefaultRequirement::Opportunistic => PolicyLabel::DefaultOpportunistic,
        super::DefaultRequirement::Encrypted => PolicyLabel::DefaultEncrypted,
        super::DefaultRequirement::Verified => PolicyLabel::DefaultVerified,
    }
}

/// Plans one host: usable at all, what the destination publishes, what rules and the message
/// make of it.
fn plan_host(
    ctx: &Context<'_>,
    mx: &MxHost,
    why: &mut Vec<String>,
) -> Result<HostOutcome, Box<Refusal>> {
    let facts = host_facts(ctx, mx)?;
    if ctx.header_relaxes {
        return Ok(HostOutcome {
            host: planned(
                mx,
                TlsRequirement::Opportunistic,
                no_policy_found(ctx.domain),
            ),
            relaxed: false,
            raised: false,
            testing_failure: None,
        });
    }
    let published = published(ctx, mx, facts, why)?;
    let original = published.requirement.clone();
    let (requirement, relaxed) = relax(ctx, mx, published.requirement, why);
    let floored = floor(ctx, mx, &original, requirement.clone(), &published.report)?;
    let raised = floored != requirement
        || !ctx.demand.pins.is_empty()
        || ctx.demand.min_tls_version.is_some();
    let final_requirement = if ctx.requiretls {
        requiretls(ctx, mx, &original, floored, &published.report)?
    } else {
        floored
    };
    let mut host = planned(mx, final_requirement, published.report);
    host.testing = published.testing;
    host.pins.clone_from(&ctx.demand.pins);
    host.min_tls_version = ctx.demand.min_tls_version;
    Ok(HostOutcome {
        host,
        relaxed: relaxed && !ctx.requiretls,
        raised,
        testing_failure: published.testing_failure,
    })
}

/// The host's facts, refusing hosts without addresses or with a failed TLSA lookup.
fn host_facts<'a>(ctx: &Context<'a>, mx: &MxHost) -> Result<&'a HostFacts, Box<Refusal>> {
    let Some(facts) = ctx.hosts.iter().find(|h| normalise(&h.name) == mx.name) else {
        return Err(refusal(
            ctx,
            mx,
            None,
            "no address facts gathered".to_owned(),
            true,
        ));
    };
    match &facts.addresses {
        Err(failure) => {
            let reason = format!("address lookup failed: {}", failure.reason);
            return Err(refusal(ctx, mx, None, reason, failure.transient));
        }
        Ok(addresses) if addresses.is_empty() => {
            return Err(refusal(ctx, mx, None, "no addresses".to_owned(), false));
        }
        Ok(_) => {}
    }
    // RFC 7672 §2.1.1, §2.2: a bogus or indeterminate TLSA answer makes the host unusable;
    // never a fallback to no DANE. RFC 8460 §4.3.2: reported as "dnssec-invalid".
    if let TlsaFacts::Failed { dnssec, reason } = &facts.tlsa {
        let mut failure = refusal(
            ctx,
            mx,
            Some(ResultType::DnssecInvalid),
            format!("TLSA lookup {dnssec:?}: {reason} (RFC 7672 §2.2: never fall back)"),
            true,
        );
        failure.failure.report = tlsa_report(mx, &mx.name, &[]);
        return Err(failure);
    }
    Ok(facts)
}

/// What the destination publishes for one host, before rules and the message.
struct Published {
    requirement: TlsRequirement,
    report: ReportPolicy,
    testing: Option<TlsRequirement>,
    testing_failure: Option<HostPolicyFailure>,
}

fn published(
    ctx: &Context<'_>,
    mx: &MxHost,
    facts: &HostFacts,
    why: &mut Vec<String>,
) -> Result<Published, Box<Refusal>> {
    if let TlsaFacts::Records {
        base_domain,
        records,
    } = &facts.tlsa
    {
        let usable: Vec<_> = records.iter().filter(|r| r.is_usable()).cloned().collect();
        if !usable.is_empty() {
            return Ok(dane(ctx, mx, base_domain, records, usable, why));
        }
    }
    let mut published = sts_or_default(ctx, mx, why)?;
    if let TlsaFacts::Records {
        base_domain,
        records,
    } = &facts.tlsa
    {
        // RFC 7672 §2.2: a secure TLSA RRset with no usable record still makes TLS mandatory,
        // without authentication.
        why.push(format!(
            "{}: TLSA records but none usable (RFC 7672 §2.2): TLS mandatory",
            mx.name
        ));
        if published.requirement.allows_plaintext() {
            published.requirement = TlsRequirement::Encrypted;
        }
        if published.report.policy_type == PolicyType::NoPolicyFound {
            published.report = tlsa_report(mx, base_domain, records);
        }
    }
    Ok(published)
}

/// RFC 7672 §3.1: usable TLSA records make TLS and a match mandatory; RFC 8461 §2: DANE, not
/// MTA-STS, applies to this host, and a failing DANE check is never rescued by MTA-STS.
fn dane(
    ctx: &Context<'_>,
    mx: &MxHost,
    base_domain: &str,
    records: &[crate::facts::TlsaRecord],
    usable: Vec<crate::facts::TlsaRecord>,
    why: &mut Vec<String>,
) -> Published {
    let base = normalise(base_domain);
    // RFC 7672 §3.2.2: the reference identifiers are the TLSA base domain and, when CNAME
    // expansion changed it, the original MX host name.
    let mut names = vec![base.clone()];
    if base != mx.name {
        names.push(mx.name.clone());
    }
    let mut note = format!(
        "{}: DANE with {} usable TLSA record(s) at _25._tcp.{base}",
        mx.name,
        usable.len()
    );
    if ctx.sts.is_some_and(|sts| !sts.policy.matches(&mx.name)) {
        note.push_str("; not in the MTA-STS mx list, DANE takes precedence (RFC 8461 §2)");
    }
    why.push(note);
    Published {
        requirement: TlsRequirement::Dane {
            records: usable,
            names,
        },
        report: tlsa_report(mx, &base, records),
        testing: None,
        testing_failure: None,
    }
}

/// MTA-STS (RFC 8461 §4.1, §5) or, without a policy, the global default.
fn sts_or_default(
    ctx: &Context<'_>,
    mx: &MxHost,
    why: &mut Vec<String>,
) -> Result<Published, Box<Refusal>> {
    let default = default_requirement(ctx.settings.default_requirement, &mx.name);
    let Some(sts) = ctx.sts else {
        return Ok(Published {
            requirement: default,
            report: no_policy_found(ctx.domain),
            testing: None,
            testing_failure: None,
        });
    };
    let report = sts_report(ctx.domain, sts);
    let verified = TlsRequirement::Verified {
        names: vec![mx.name.clone()],
    };
    let matches = sts.policy.matches(&mx.name);
    match (sts.policy.mode, matches) {
        (StsMode::Enforce, true) => Ok(Published {
            requirement: verified,
            report,
            testing: None,
            testing_failure: None,
        }),
        // RFC 8461 §4.1, §5.1: under enforce, a host matching no mx pattern is not used.
        (StsMode::Enforce, false) => {
            let mut refused = refusal(
                ctx,
                mx,
                Some(ResultType::ValidationFailure),
                "matches no mx pattern of the MTA-STS policy (RFC 8461 §4.1)".to_owned(),
                true,
            );
            refused.failure.report = report;
            Err(refused)
        }
        // RFC 8461 §5: testing delivers as without a policy but reports what would fail.
        (_, true) => Ok(Published {
            requirement: default,
            report,
            testing: Some(verified),
            testing_failure: None,
        }),
        (_, false) => {
            why.push(format!(
                "{}: matches no mx pattern; MTA-STS testing only reports it",
                mx.name
            ));
            Ok(Published {
                requirement: default,
                report: report.clone(),
                testing: None,
                testing_failure: Some(HostPolicyFailure {
                    host: mx.name.clone(),
                    report,
                    result_type: Some(ResultType::ValidationFailure),
                    reason: "matches no mx pattern of the MTA-STS policy (testing)".to_owned(),
                    enforced: false,
                }),
            })
        }
    }
}

/// `insecure_relax`: caps the published (or default) requirement at `Encrypted`, loudly.
fn relax(
    ctx: &Context<'_>,
    mx: &MxHost,
    requirement: TlsRequirement,
    why: &mut Vec<String>,
) -> (TlsRequirement, bool) {
    let Some((rule, _)) = &ctx.demand.relax else {
        return (requirement, false);
    };
    if !requirement.requires_authentication() {
        return (requirement, false);
    }
    if ctx.requiretls {
        why.push(format!(
            "{}: rule {rule} would relax, but REQUIRETLS wins",
            mx.name
        ));
        return (requirement, false);
    }
    why.push(format!(
        "WARNING {}: rule {rule} relaxes {} to encrypted without certificate checks \
         (insecure_relax)",
        mx.name,
        requirement.as_str()
    ));
    (TlsRequirement::Encrypted, true)
}

/// A rule's `require` raises the floor; DANE-only refuses hosts without usable DANE.
fn floor(
    ctx: &Context<'_>,
    mx: &MxHost,
    original: &TlsRequirement,
    current: TlsRequirement,
    report: &ReportPolicy,
) -> Result<TlsRequirement, Box<Refusal>> {
    let is_dane = matches!(original, TlsRequirement::Dane { .. });
    match ctx.demand.require {
        None | Some(MinRequirement::Opportunistic) => Ok(current),
        Some(MinRequirement::Encrypted) if current.allows_plaintext() => {
            Ok(TlsRequirement::Encrypted)
        }
        Some(MinRequirement::Encrypted) => Ok(current),
        Some(MinRequirement::Verified) if current.requires_authentication() => Ok(current),
        Some(MinRequirement::Verified) if is_dane => Ok(original.clone()),
        Some(MinRequirement::Verified) => Ok(TlsRequirement::Verified {
            names: vec![mx.name.clone()],
        }),
        Some(MinRequirement::DaneOnly) if is_dane => Ok(original.clone()),
        // RFC 8460 §4.3.2: "dane-required": DANE demanded but no usable TLSA records.
        Some(MinRequirement::DaneOnly) => {
            let mut refused = refusal(
                ctx,
                mx,
                Some(ResultType::DaneRequired),
                "a rule requires DANE but the host has no usable TLSA records".to_owned(),
                true,
            );
            refused.failure.report = report.clone();
            Err(refused)
        }
    }
}

/// RFC 8689 §4.2.1: only hosts whose choice is authenticated (DNSSEC-validated MX, or listed
/// by an MTA-STS policy), with TLS and a verified peer (DANE or web PKI for the host name).
fn requiretls(
    ctx: &Context<'_>,
    mx: &MxHost,
    original: &TlsRequirement,
    current: TlsRequirement,
    report: &ReportPolicy,
) -> Result<TlsRequirement, Box<Refusal>> {
    let listed = ctx.sts.is_some_and(|sts| sts.policy.matches(&mx.name));
    if !ctx.mx_secure && !listed {
        let mut refused = refusal(
            ctx,
            mx,
            None,
            "REQUIRETLS: MX choice neither DNSSEC-validated nor in an MTA-STS policy".to_owned(),
            false,
        );
        refused.unauthenticated = true;
        refused.failure.report = report.clone();
        return Err(refused);
    }
    Ok(match (original, current) {
        (TlsRequirement::Dane { .. }, _) => original.clone(),
        (_, verified @ TlsRequirement::Verified { .. }) => verified,
        _ => TlsRequirement::Verified {
            names: vec![mx.name.clone()],
        },
    })
}

fn planned(mx: &MxHost, requirement: TlsRequirement, report: ReportPolicy) -> PlannedHost {
    PlannedHost {
        host: mx.name.clone(),
        preference: mx.preference,
        requirement,
        pins: Vec::new(),
        min_tls_version: None,
        report,
        testing: None,
    }
}

fn refusal(
    ctx: &Context<'_>,
    mx: &MxHost,
    result_type: Option<ResultType>,
    reason: String,
    transient: bool,
) -> Box<Refusal> {
    Box::new(Refusal {
        failure: HostPolicyFailure {
            host: mx.name.clone(),
            report: no_policy_found(ctx.domain),
            result_type,
            reason,
            enforced: true,
        },
        transient,
        unauthenticated: false,
    })
}

/// RFC 8460 §4.4 for MTA-STS: the policy's lines and its mx patterns.
fn sts_report(domain: &str, sts: &StsPolicyFacts) -> ReportPolicy {
    ReportPolicy {
        policy_type: PolicyType::Sts,
        policy_string: sts::policy_lines(&sts.text),
        policy_domain: domain.to_owned(),
        mx_host: sts.policy.mx.clone(),
    }
}

/// RFC 8460 §4.4 for DANE: one presentation string per TLSA record, the TLSA base domain.
fn tlsa_report(
    mx: &MxHost,
    base_domain: &str,
    records: &[crate::facts::TlsaRecord],
) -> ReportPolicy {
    ReportPolicy {
        policy_type: PolicyType::Tlsa,
        policy_string: records.iter().map(|r| r.presentation()).collect(),
        policy_domain: normalise(base_domain),
        mx_host: vec![mx.name.clone()],
    }
}

#[cfg(test)]
pub(crate) mod tests;
