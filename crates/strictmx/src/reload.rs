//! Reloading the configuration of a running server (SIGHUP, `strictmx reload`): re-read and
//! validate the file, then swap the policy (rules, default, `TLS-Required: No` permission) into
//! the transport, and the users (with the users file's contents), the server certificate and
//! key and the DKIM keys (each key file read again) into the listeners, and the webhooks into
//! their senders and the spool, without touching the queue.
//!
//! Any other changed section is named so the operator knows a restart is needed. A file that
//! fails validation changes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use strictmx_config::{Config, ConfigErrors};
use strictmx_policy::DefaultRequirement;
use strictmx_policy::rules::{Rule, RuleMode};
use tracing::{error, info, warn};

use strictmx_inbound::InboundHandle;

use strictmx_delivery::transport::Transport;
use strictmx_resolve::FactGatherer;

use crate::webhook::Webhooks;

/// The transport as the server runs it: one gatherer shared by delivery, `explain` and the
/// MTA-STS refresher.
pub type ServerTransport = Transport<Arc<FactGatherer>>;

/// The running configuration and the transport whose policy it feeds.
#[derive(Debug)]
pub struct Live {
    path: Option<PathBuf>,
    current: Mutex<Config>,
    transport: Arc<ServerTransport>,
    inbound: Option<InboundHandle>,
    webhooks: Option<Arc<Webhooks>>,
    /// Told the hash of the rules after each reload, to compare with the other nodes'.
    cluster: Option<strictmx_cluster::Cluster>,
    http_api: Option<strictmx_http_api::HttpApiHandle>,
    drain: Option<crate::drain::DrainHandle>,
}

/// What a successful reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// Policy changes now in force, one line each.
    pub changed: Vec<String>,
    /// Sections that differ from the running configuration but need a restart.
    pub restart_needed: Vec<String>,
    /// The new file's warnings (an `insecure_relax` rule, ...).
    pub warnings: Vec<String>,
}

impl Live {
    pub fn new(config: Config, transport: Arc<ServerTransport>) -> Live {
        Live {
            path: config.source.clone(),
            current: Mutex::new(config),
            transport,
            inbound: None,
            webhooks: None,
            cluster: None,
            http_api: None,
            drain: None,
        }
    }

    /// Lets `strictmx drain` start draining this server.
    pub fn with_drain(self, drain: crate::drain::DrainHandle) -> Live {
        Live {
            drain: Some(drain),
            ..self
        }
    }

    /// `strictmx drain [--to HOST:PORT]`: starts draining (see `drain`).
    pub fn drain(&self, to: Option<String>) -> anyhow::Result<serde_json::Value> {
        match &self.drain {
            Some(drain) => Ok(drain.start(to)),
            None => anyhow::bail!("this server cannot be drained"),
        }
    }

    /// Publishes the rules' hash to the cluster after each reload.
    pub fn with_cluster(self, cluster: Option<strictmx_cluster::Cluster>) -> Live {
        Live { cluster, ..self }
    }

    /// The cluster database, when the node is part of one.
    pub fn cluster(&self) -> Option<&strictmx_cluster::Cluster> {
        self.cluster.as_ref()
    }

    /// Lets reloads replace the webhooks.
    pub fn with_webhooks(self, webhooks: Arc<Webhooks>) -> Live {
        Live {
            webhooks: Some(webhooks),
            ..self
        }
    }

    /// Lets reloads replace the listeners' users and certificate.
    pub fn with_inbound(self, inbound: InboundHandle) -> Live {
        Live {
            inbound: Some(inbound),
            ..self
        }
    }

    /// Lets reloads replace the HTTP API's tokens.
    pub fn with_http_api(self, http_api: Option<strictmx_http_api::HttpApiHandle>) -> Live {
        Live { http_api, ..self }
    }

    pub fn transport(&self) -> &Arc<ServerTransport> {
        &self.transport
    }

    /// Re-reads the file; on success swaps the policy and logs what changed; on failure logs
    /// the errors and keeps everything as it was.
    pub fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        let result = self.try_reload();
        match &result {
            Ok(done) => log_reloaded(done),
            Err(errors) => error!(
                errors = %errors,
                "configuration reload refused; the running configuration stays"
            ),
        }
        result
    }

    fn try_reload(&self) -> Result<Reloaded, ConfigErrors> {
        let Some(path) = &self.path else {
            return Err(ConfigErrors(vec![strictmx_config::ConfigError {
                file: PathBuf::from("<embedded defaults>"),
                line: 0,
                column: 0,
                key: String::new(),
                message: "the server runs on the embedded defaults: there is no file to reload (start it with --config)".into(),
            }]));
        };
        let next = Config::load(path)?;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        // The listeners first: a failure there leaves everything as it was.
        let (listener_changes, tls_reloaded) = self.reload_listeners(path, &current, &next)?;
        let mut changed = listener_changes;
        let tokens_reloaded = self.reload_tokens(path, &current, &next)?;
        changed.extend(tokens_reloaded.clone());
        changed.extend(policy_changes(&current, &next));
        if let Some(webhooks) = &self.webhooks {
            changed.extend(webhooks.apply(&next.webhooks));
        }
        let done = Reloaded {
            changed,
            restart_needed: restart_needed(&current, &next, tls_reloaded),
            warnings: next.warnings.iter().map(ToString::to_string).collect(),
        };
        self.transport.replace_policy(next.transport.policy.clone());
        self.transport
            .replace_tls_required_no(next.transport.tls_required_no.clone());
        self.transport.replace_routes(next.transport.routes.clone());
        // What is kept is what runs: the new policy, and the old values of everything that
        // needs a restart, so a later reload still reports them.
        let mut kept = current.clone();
        kept.transport.policy = next.transport.policy;
        kept.transport.tls_required_no = next.transport.tls_required_no;
        kept.inbound.users = next.inbound.users;
        kept.inbound.dkim = next.inbound.dkim;
        if tls_reloaded {
            kept.inbound.tls = next.inbound.tls;
        }
        kept.transport.routes = next.transport.routes;
        if self.webhooks.is_some() {
            kept.webhooks = next.webhooks;
            kept.spool.webhooks = next.spool.webhooks;
        }
        if let (Some(kept), Some(next), Some(_)) =
            (&mut kept.http_api, &next.http_api, &self.http_api)
        {
            kept.tokens = next.tokens.clone();
        }
        kept.warnings = next.warnings;
        if let Some(cluster) = &self.cluster {
            cluster.set_rules_hash(strictmx_cluster::rules_hash(&kept.effective_rules()));
        }
        *current = kept;
        Ok(done)
    }

    /// Puts new HTTP API tokens in force when they differ and the API runs before and after.
    fn reload_tokens(
        &self,
        path: &std::path::Path,
        current: &Config,
        next: &Config,
    ) -> Result<Vec<String>, ConfigErrors> {
        let (Some(handle), Some(old), Some(new)) =
            (&self.http_api, &current.http_api, &next.http_api)
        else {
            return Ok(Vec::new());
        };
        if old.tokens == new.tokens {
            return Ok(Vec::new());
        }
        handle.replace_tokens(&new.tokens).map_err(|error| {
            ConfigErrors(vec![strictmx_config::ConfigError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                key: "http_api.token".to_owned(),
                message: strictmx_protocol::ErrorChain(&error).to_string(),
            }])
        })?;
        Ok(vec![format!(
            "http_api: {} token(s) now in force",
            new.tokens.len()
        )])
    }

    /// Puts the new users in force when they differ, and re-reads the certificate and key
    /// (a renewal changes the files, not the configuration) when the server runs with TLS.
    /// Returns the change lines and whether the certificate was reloaded.
    fn reload_listeners(
        &self,
        path: &std::path::Path,
        current: &Config,
        next: &Config,
    ) -> Result<(Vec<String>, bool), ConfigErrors> {
        let Some(inbound) = &self.inbound else {
            return Ok((Vec::new(), false));
        };
        let refused = |key: &str, error: strictmx_inbound::InboundError| {
            ConfigErrors(vec![strictmx_config::ConfigError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                key: key.to_owned(),
                message: strictmx_protocol::ErrorChain(&error).to_string(),
            }])
        };
        let mut changes = Vec::new();
        if current.inbound.users != next.inbound.users {
            inbound
                .replace_users(&next.inbound.users)
                .map_err(|e| refused("auth", e))?;
            changes.push(format!(
                "auth: {} user(s) now in force",
                next.inbound.users.len()
            ));
        }
        let tls_reloaded = match (&current.inbound.tls, &next.inbound.tls) {
            (Some(_), Some(tls)) => inbound.replace_tls(tls).map_err(|e| refused("tls", e))?,
            _ => false,
        };
        if tls_reloaded {
            changes.push("tls: certificate and key re-read".to_owned());
        }
        // Keys compare by their public half, so a new key in the same file is a change too.
        if current.inbound.dkim != next.inbound.dkim {
            inbound.replace_dkim(&next.inbound.dkim);
            changes.push(format!(
                "dkim: {} key(s) now in force",
                next.inbound.dkim.len()
            ));
        }
        Ok((changes, tls_reloaded))
    }
}

fn log_reloaded(done: &Reloaded) {
    for warning in &done.warnings {
        warn!(warning = %warning, "configuration warning");
    }
    if done.changed.is_empty() {
        info!("configuration reloaded: nothing changed");
    }
    for change in &done.changed {
        info!(change = %change, "configuration reloaded: policy changed");
    }
    if !done.restart_needed.is_empty() {
        warn!(
            sections = %done.restart_needed.join(", "),
            "configuration reloaded, but these changed sections take effect only after a restart"
        );
    }
}

fn default_text(d: DefaultRequirement) -> &'static str {
    match d {
        DefaultRequirement::Opportunistic => "opportunistic",
        DefaultRequirement::Encrypted => "encrypted",
        DefaultRequirement::Verified => "verified",
    }
}

/// One line per policy difference: the default, the fallback, each rule, the permission.
pub fn policy_changes(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.transport, &new.transport);
    let mut changes = Vec::new();
    if o.policy.default_requirement != n.policy.default_requirement {
        changes.push(format!(
            "delivery.default_tls: {} -> {}",
            default_text(o.policy.default_requirement),
            default_text(n.policy.default_requirement)
        ));
    }
    if o.policy.insecure_plaintext_fallback != n.policy.insecure_plaintext_fallback {
        changes.push(format!(
            "delivery.insecure_plaintext_fallback: {} -> {}",
            o.policy.insecure_plaintext_fallback, n.policy.insecure_plaintext_fallback
        ));
    }
    changes.extend(rule_changes(&o.policy.rules, &n.policy.rules));
    if o.tls_required_no != n.tls_required_no {
        changes.push(format!(
            "policy: TLS-Required: No now allowed for users {:?} and networks {:?}",
            n.tls_required_no.users,
            n.tls_required_no
                .networks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ));
    }
    if o.routes != n.routes {
        // Compared with their logins: a new password in auth_password_file counts too.
        changes.push(format!("route: {} route(s) now", n.routes.len()));
    }
    changes
}

fn rule_changes(old: &[Rule], new: &[Rule]) -> Vec<String> {
    let find = |rules: &[Rule], name: &str| rules.iter().position(|r| r.name == name);
    let mut changes = Vec::new();
    for (i, r) in new.iter().enumerate() {
        match find(old, &r.name) {
            None => changes.push(format!("rule `{}` added", r.name)),
            Some(j) if old[j] != *r => changes.push(rule_change(&old[j], r)),
            Some(j) if j != i => changes.push(format!("rule `{}` moved", r.name)),
            Some(_) => {}
        }
    }
    for r in old {
        if find(new, &r.name).is_none() {
            changes.push(format!("rule `{}` removed", r.name));
        }
    }
    changes
}

/// One line for a rule that differs; a change of mode alone is a promotion (shadow to enforce)
/// or a demotion, said as such.
fn rule_change(old: &Rule, new: &Rule) -> String {
    let mode = |rule: &Rule| rule.mode.as_str();
    if old.mode == new.mode {
        return format!("rule `{}` changed", new.name);
    }
    let only_mode = Rule {
        mode: new.mode,
        ..old.clone()
    } == *new;
    match (only_mode, new.mode) {
        (true, RuleMode::Enforce) => format!("rule `{}` promoted: shadow -> enforce", new.name),
        (true, RuleMode::Shadow) => format!("rule `{}` demoted: enforce -> shadow", new.name),
        (false, _) => format!(
            "rule `{}` changed, mode {} -> {}",
            new.name,
            mode(old),
            mode(new)
        ),
    }
}

/// The sections of the effective configuration that differ and that a reload does not put in
/// force: everything but the policy, the users, the DKIM keys, and (when `tls_reloaded`) the
/// certificate.
pub fn restart_needed(old: &Config, new: &Config, tls_reloaded: bool) -> Vec<String> {
    let mut comparable = new.clone();
    comparable.transport.policy = old.transport.policy.clone();
    comparable.transport.tls_required_no = old.transport.tls_required_no.clone();
    comparable.inbound.users = old.inbound.users.clone();
    comparable.inbound.dkim = old.inbound.dkim.clone();
    if tls_reloaded {
        comparable.inbound.tls = old.inbound.tls.clone();
    }
    comparable.transport.routes = old.transport.routes.clone();
    comparable.webhooks = old.webhooks.clone();
    comparable.spool.webhooks = old.spool.webhooks.clone();
    comparable.source = old.source.clone();
    // Tokens are re-read; where the API listens and its bounds need a restart.
    if let (Some(comparable), Some(old)) = (&mut comparable.http_api, &old.http_api) {
        comparable.tokens = old.tokens.clone();
    }
    let (a, b) = (sections(&old.render()), sections(&comparable.render()));
    let mut names: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|name| a.get(*name) != b.get(*name))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The rendered configuration by table header, comments left out (repeated tables such as
/// `[[listener]]` are gathered under one name).
fn sections(rendered: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            current = line.to_string();
        }
        out.entry(current.clone())
            .or_default()
            .push(line.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/strictmx/strictmx.toml")).unwrap()
    }

    #[test]
    fn rule_and_default_changes_are_listed_one_by_one() {
        let old = parse(
            "[delivery]\ndefault_tls = \"opportunistic\"\n[[rule]]\nname = \"a\"\nrequire = \"encrypted\"\n[[rule]]\nname = \"b\"\nfail_closed = true\n",
        );
        let new = parse(
            "[delivery]\ndefault_tls = \"encrypted\"\n[[rule]]\nname = \"a\"\nrequire = \"verified\"\n[[rule]]\nname = \"c\"\nfail_closed = true\n",
        );
        assert_eq!(
            policy_changes(&old, &new),
            vec![
                "delivery.default_tls: opportunistic -> encrypted",
                "rule `a` changed",
                "rule `c` added",
                "rule `b` removed",
            ]
        );
        assert!(restart_needed(&old, &new, false).is_empty());
    }

    // Issue 11: `reload` promotes a shadow rule by changing its mode, and says so.
    #[test]
    fn changing_only_a_rules_mode_is_reported_as_its_promotion_or_demotion() {
        let rule = |name: &str, mode: &str, require: &str| {
            format!("[[rule]]\nname = \"{name}\"\nrequire = \"{require}\"\nmode = \"{mode}\"\n")
        };
        let old = parse(&format!(
            "{}{}{}",
            rule("a", "shadow", "dane-only"),
            rule("b", "enforce", "verified"),
            rule("c", "shadow", "verified")
        ));
        let new = parse(&format!(
            "{}{}{}",
            rule("a", "enforce", "dane-only"),
            rule("b", "shadow", "verified"),
            rule("c", "enforce", "dane-only")
        ));
        assert_eq!(
            policy_changes(&old, &new),
            vec![
                "rule `a` promoted: shadow -> enforce",
                "rule `b` demoted: enforce -> shadow",
                "rule `c` changed, mode shadow -> enforce",
            ]
        );
        assert!(restart_needed(&old, &new, false).is_empty());
    }

    #[test]
    fn changed_routes_are_a_policy_change_not_a_restart() {
        let old = parse("[[route]]\ndomain = \"a.test\"\nnext_hop = \"b.test\"\n");
        let new = parse("[[route]]\ndomain = \"*\"\nnext_hop = \"[relay.test]:587\"\n");
        assert_eq!(policy_changes(&old, &new), vec!["route: 1 route(s) now"]);
        assert!(restart_needed(&old, &new, false).is_empty());
    }

    #[test]
    fn sections_outside_the_policy_are_named_as_needing_a_restart() {
        let old = parse("[dns]\ntimeout = \"5s\"\n[[rule]]\nname = \"a\"\nfail_closed = true\n");
        let new = parse("[dns]\ntimeout = \"9s\"\n[limits]\nmax_recipients = 5\n");
        assert_eq!(restart_needed(&old, &new, false), vec!["[dns]", "[limits]"]);
        assert_eq!(policy_changes(&old, &new), vec!["rule `a` removed"]);
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        // The example names TLS files under /etc/strictmx/tls; make real ones for the check.
        let dir = tempfile::tempdir().unwrap();
        let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, tls.cert.pem()).unwrap();
        std::fs::write(&key, tls.signing_key.serialize_pem()).unwrap();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/strictmx.toml"),
        )
        .unwrap()
        .replace(
            "/etc/strictmx/tls/fullchain.pem",
            &cert.display().to_string(),
        )
        .replace("/etc/strictmx/tls/privkey.pem", &key.display().to_string());
        let (a, b) = (parse(&text), parse(&text));
        assert!(policy_changes(&a, &b).is_empty());
        assert!(restart_needed(&a, &b, false).is_empty());
    }
}
