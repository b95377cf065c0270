//! One message's rules at one moment: the plan enforced, and the plans that say what single
//! rules change. Then, for one delivery attempt, the verdict of each such plan.
//!
//! [`evaluate`] plans under the enforced rules that have not expired at `now` (a rule stops
//! applying at its `expires` second, without a reload). For each matching shadow rule it plans
//! once more with that rule enforced too; for each matching exception (`insecure_relax`), once
//! more without it. Only rules that match cost a plan. The planner itself is passed in, so MX
//! destinations and routes are evaluated alike. Judging the sessions is left to
//! [`crate::judge_peer`] and [`crate::judge_without_tls`], which the verdicts reuse; running
//! sessions is the delivery transport's.

use serde::Serialize;

use crate::peer::{NoTls, PeerFacts, judge_peer, judge_without_tls};
use crate::plan::{PlanOutcome, PlannedHost, PolicySettings};
use crate::posture::{History, pinned};
use crate::rules::{Rule, RuleMode};

/// Everything one message's rules decide at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// The plan enforced: enforce-mode rules not expired at the evaluation's `now`.
    pub outcome: PlanOutcome,
    pub alternatives: Alternatives,
    /// Rules that match this message but expired, and so no longer apply.
    pub expired: Vec<RuleTerm>,
}

/// The plans that tell what single rules change, for one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Alternatives {
    /// One per matching shadow rule, in file order: the plan had the rule been enforced.
    pub shadows: Vec<Alternative>,
    /// One per matching exception in force, in file order: the plan without it.
    pub exceptions: Vec<Alternative>,
}

impl Alternatives {
    pub fn is_empty(&self) -> bool {
        self.shadows.is_empty() && self.exceptions.is_empty()
    }
}

/// A rule's name with its expiry and reason, as records and `explain` name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTerm {
    pub rule: String,
    /// Unix seconds.
    pub expires: Option<u64>,
    pub reason: Option<String>,
}

impl RuleTerm {
    fn of(rule: &Rule) -> RuleTerm {
        RuleTerm {
            rule: rule.name.clone(),
            expires: rule.expires,
            reason: rule.reason.clone(),
        }
    }
}

/// The plan one rule makes the difference to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alternative {
    pub term: RuleTerm,
    /// With the shadow rule enforced, or without the exception.
    pub outcome: PlanOutcome,
}

/// Plans a message from `sender` to `domain` under `settings` at `now` (unix seconds), with
/// `plan` (`plan_delivery` or `plan_route_delivery` over the destination's facts). `history`
/// is what the destination offered before, for rules with `pin_last_good`.
pub fn evaluate(
    settings: &PolicySettings,
    domain: &str,
    sender: &str,
    now: u64,
    history: &History,
    plan: impl Fn(&PolicySettings) -> PlanOutcome,
) -> Evaluation {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let matches = |rule: &Rule| rule.applies(&domain, sender);
    let in_force = |rule: &Rule| rule.mode == RuleMode::Enforce && !rule.expired(now);
    let settings = &with_rules(settings, |rule| {
        let mut rule = rule.clone();
        rule.pinned = rule
            .pin_last_good
            .and_then(|window| pinned(history, window, now));
        Some(rule)
    });
    let enforced = with_rules(settings, |rule| in_force(rule).then(|| rule.clone()));
    let shadows = settings
        .rules
        .iter()
        .filter(|rule| rule.mode == RuleMode::Shadow && !rule.expired(now) && matches(rule))
        .map(|shadow| Alternative {
            term: RuleTerm::of(shadow),
            // At its place in the file: the first rule with pins, or relaxing, counts.
            outcome: plan(&with_rules(settings, |rule| {
                if rule.name == shadow.name {
                    Some(Rule {
                        mode: RuleMode::Enforce,
                        ..rule.clone()
                    })
                } else {
                    in_force(rule).then(|| rule.clone())
                }
            })),
        })
        .collect();
    let exceptions = enforced
        .rules
        .iter()
        .filter(|rule| rule.is_exception() && matches(rule))
        .map(|exception| Alternative {
            term: RuleTerm::of(exception),
            outcome: plan(&with_rules(&enforced, |rule| {
                (rule.name != exception.name).then(|| rule.clone())
            })),
        })
        .collect();
    let expired = settings
        .rules
        .iter()
        .filter(|rule| rule.expired(now) && matches(rule))
        .map(RuleTerm::of)
        .collect();
    Evaluation {
        outcome: plan(&enforced),
        alternatives: Alternatives {
            shadows,
            exceptions,
        },
        expired,
    }
}

/// `settings` with the rules `keep` gives back (in file order).
fn with_rules(settings: &PolicySettings, keep: impl Fn(&Rule) -> Option<Rule>) -> PolicySettings {
    PolicySettings {
        rules: settings.rules.iter().filter_map(keep).collect(),
        ..settings.clone()
    }
}

/// Whether an alternative plan would have stopped what an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictOutcome {
    /// It would have let the attempt go on as well.
    Pass,
    /// It would have kept the mail back for now (no usable host, or this peer refused).
    WouldDefer,
    /// It would have returned the mail.
    WouldBounce,
}

impl VerdictOutcome {
    /// The label in metrics, records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictOutcome::Pass => "pass",
            VerdictOutcome::WouldDefer => "would-defer",
            VerdictOutcome::WouldBounce => "would-bounce",
        }
    }
}

/// What one rule's alternative plan says about one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub rule: String,
    pub outcome: VerdictOutcome,
    /// Why it would have stopped the attempt, or a note on a pass; empty for a plain pass.
    pub reason: String,
}

/// Where an attempt at one host of the enforced plan stands under an alternative plan, before
/// any session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Known without a session: the alternative plan delivers nowhere, or not through this
    /// host.
    Decided(Verdict),
    /// The session decides: judge it against the alternative plan's entry for the host.
    Judge { rule: String, host: PlannedHost },
}

/// What an attempt's session showed, to judge it against an alternative's host.
#[derive(Debug, Clone, Copy)]
pub enum SessionSeen<'a> {
    Tls(&'a PeerFacts),
    WithoutTls(&'a NoTls),
}

impl Alternative {
    /// Where an attempt at `host` (a candidate of the enforced plan) stands under this plan.
    pub fn standing(&self, host: &str) -> Standing {
        let rule = self.term.rule.clone();
        let decided = |outcome, reason: String| {
            Standing::Decided(Verdict {
                rule: rule.clone(),
                outcome,
                reason,
            })
        };
        let plan = match &self.outcome {
            PlanOutcome::Deliver(plan) => plan,
            PlanOutcome::Defer { reason, .. } => {
                return decided(VerdictOutcome::WouldDefer, reason.clone());
            }
            PlanOutcome::Bounce { status, reason, .. } => {
                return decided(VerdictOutcome::WouldBounce, format!("{status} {reason}"));
            }
        };
        if let Some(candidate) = plan.candidates.iter().find(|c| c.host == host) {
            return Standing::Judge {
                rule,
                host: candidate.clone(),
            };
        }
        // The plan still delivers through other hosts: the mail would not have been stopped.
        let why = plan
            .policy_failures
            .iter()
            .find(|failure| failure.host == host && failure.enforced)
            .map_or("not a candidate", |failure| failure.reason.as_str());
        decided(
            VerdictOutcome::Pass,
            format!("{host} would not have been used ({why}); other hosts remain"),
        )
    }
}

impl Standing {
    /// The verdict once the session with the host showed `seen`.
    pub fn judge(&self, seen: SessionSeen<'_>) -> Verdict {
        let (rule, host) = match self {
            Standing::Decided(verdict) => return verdict.clone(),
            Standing::Judge { rule, host } => (rule, host),
        };
        let judged = match seen {
            SessionSeen::Tls(peer) => judge_peer(host, peer).map(drop),
            SessionSeen::WithoutTls(what) => judge_without_tls(host, what),
        };
        match judged {
            Ok(()) => Verdict {
                rule: rule.clone(),
                outcome: VerdictOutcome::Pass,
                reason: String::new(),
            },
            Err(failure) => Verdict {
                rule: rule.clone(),
                outcome: VerdictOutcome::WouldDefer,
                reason: format!(
                    "{}: {}: {}",
                    host.host,
                    failure.result_type.as_str(),
                    failure.reason
                ),
            },
        }
    }

    /// The alternative's entry for the host, when the session decides.
    pub fn host(&self) -> Option<&PlannedHost> {
        match self {
            Standing::Decided(_) => None,
            Standing::Judge { host, .. } => Some(host),
        }
    }
}

#[cfg(test)]
mod tests;
