//! `[audit]` → `strictmx_spool::AuditSettings`: whether each recipient's final outcome and
//! security receipt is kept after its message left the queue, and for how long.
//!
//! Writing, pruning and searching the trail is `strictmx-spool`'s; this checks the values.

use std::fmt::Write;
use std::time::Duration;

use strictmx_spool::AuditSettings;

use crate::error::Source;
use crate::raw::RawAudit;
use crate::validate::{dur, opt, quote_duration};

/// The shortest retention accepted: records pruned within minutes would answer nothing.
const MIN_KEEP: Duration = Duration::from_secs(3600);

pub(crate) fn build(raw: Option<&RawAudit>, src: &mut Source<'_>) -> AuditSettings {
    let mut audit = AuditSettings::default();
    let Some(raw) = raw else { return audit };
    audit.enabled = raw.enabled.as_ref().is_none_or(|e| *e.get_ref());
    audit.keep = opt(src, "audit.keep", &raw.keep, audit.keep, |t| {
        dur(t).and_then(|d| match d < MIN_KEEP {
            true => Err(
                "must be at least 1h: records must outlive the queue commands that look for them"
                    .into(),
            ),
            false => Ok(d),
        })
    });
    audit
}

pub(crate) fn render(audit: &AuditSettings, o: &mut String) {
    let _ = writeln!(
        o,
        "[audit]\nenabled = {}\nkeep = {}\n",
        audit.enabled,
        quote_duration(audit.keep)
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Config;

    use super::*;

    fn parse(text: &str) -> Result<Config, crate::ConfigErrors> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_trail_is_on_for_30_days_unless_the_audit_table_says_otherwise() {
        for text in ["", "[audit]\n"] {
            let audit = parse(text).expect("valid").spool.audit;
            assert_eq!(audit, AuditSettings::default(), "{text:?}");
            assert!(audit.enabled);
            assert_eq!(audit.keep, Duration::from_secs(30 * 86_400));
        }
        let audit = parse("[audit]\nenabled = false\nkeep = \"90d\"\n")
            .expect("valid")
            .spool
            .audit;
        assert!(!audit.enabled);
        assert_eq!(audit.keep, Duration::from_secs(90 * 86_400));
    }

    #[test]
    fn bad_audit_values_and_unknown_keys_are_errors_at_their_lines() {
        let errors = parse("[audit]\nkeep = \"soon\"\n\n").expect_err("bad").0;
        assert_eq!((errors[0].line, errors[0].key.as_str()), (2, "audit.keep"));
        let errors = parse("[audit]\nkeep = \"10m\"\n").expect_err("too short").0;
        assert!(errors[0].message.contains("at least 1h"), "{errors:?}");
        let errors = parse("[audit]\nretention = \"1d\"\n")
            .expect_err("unknown")
            .0;
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("unknown key"), "{errors:?}");
    }

    #[test]
    fn the_effective_configuration_shows_the_audit_table_and_reads_back() {
        let shown = parse("[audit]\nkeep = \"7d\"\n").expect("valid").render();
        assert!(
            shown.contains("[audit]\nenabled = true\nkeep = \"7days\"\n"),
            "{shown}"
        );
        let again = parse(&shown).expect("the rendered configuration parses");
        assert_eq!(again.spool.audit.keep, Duration::from_secs(7 * 86_400));
    }
}
