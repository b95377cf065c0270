//! What the rules tried on the side say: the exceptions and shadow verdicts of an attempt, as
//! `queue show` prints them.
//!
//! Evaluating the rules is `strictmx-policy`'s and recording the verdicts the delivery
//! transport's; this module only prints what the spool kept.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::terminal::text;

/// ` exceptions=a(until T, spared: why) shadow=b:would-defer(why)` for an attempt record; empty
/// when it has neither (and for records written before they existed).
pub fn attempt_notes(attempt: &Value) -> String {
    let mut out = String::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let exceptions: Vec<String> = list(&attempt["exceptions"])
        .iter()
        .map(|x| {
            let mut parts = Vec::new();
            if let Some(secs) = x["expires"].as_u64() {
                let at = UNIX_EPOCH + Duration::from_secs(secs);
                parts.push(format!("until {}", humantime::format_rfc3339_seconds(at)));
            }
            if let Some(spared) = x["spared"].as_str() {
                parts.push(format!("spared: {}", text(&Value::from(spared))));
            }
            format!("{}({})", text(&x["rule"]), parts.join(", "))
        })
        .collect();
    if !exceptions.is_empty() {
        out.push_str(&format!(" exceptions={}", exceptions.join(",")));
    }
    let shadow: Vec<String> = list(&attempt["shadow"])
        .iter()
        .map(|v| match text(&v["reason"]) {
            reason if reason.is_empty() => format!("{}:{}", text(&v["rule"]), text(&v["outcome"])),
            reason => format!("{}:{}({reason})", text(&v["rule"]), text(&v["outcome"])),
        })
        .collect();
    if !shadow.is_empty() {
        out.push_str(&format!(" shadow={}", shadow.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_attempt_names_its_exceptions_and_shadow_verdicts_escaped() {
        let attempt = json!({
            "exceptions": [{"rule": "partner-relax", "expires": 1801353600, "reason": "t",
                "spared": "mx: certificate-host-mismatch: bad\u{1b}[2J"}],
            "shadow": [{"rule": "dane-trial", "outcome": "would-defer", "reason": "no DANE"},
                {"rule": "verified-trial", "outcome": "pass", "reason": ""}],
        });
        assert_eq!(
            attempt_notes(&attempt),
            " exceptions=partner-relax(until 2027-01-31T00:00:00Z, spared: mx: certificate-host-mismatch: bad\\u{1b}[2J) shadow=dane-trial:would-defer(no DANE),verified-trial:pass"
        );
        assert_eq!(attempt_notes(&json!({"rules": []})), "");
    }
}
