//! Sender patterns: an address or a whole domain, as `[[rule]] senders` and the senders an
//! authenticated user may use are written. Parsing them from configuration is `config`'s.

use serde::Serialize;

/// Matches an envelope sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum SenderPattern {
    /// `reset@app.example`: this address (local part compared exactly, domain case-insensitively).
    Address(String),
    /// `@app.example`: any sender in this domain. Holds `app.example`.
    Domain(String),
}

impl SenderPattern {
    /// Whether the envelope `sender` matches; the null sender matches no pattern.
    pub fn matches(&self, sender: &str) -> bool {
        let Some((local, domain)) = sender.rsplit_once('@') else {
            return false;
        };
        match self {
            SenderPattern::Address(address) => address
                .rsplit_once('@')
                .is_some_and(|(l, d)| l == local && d.eq_ignore_ascii_case(domain)),
            SenderPattern::Domain(pattern) => pattern.eq_ignore_ascii_case(domain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_matches_itself_with_any_domain_case_and_a_domain_matches_its_senders() {
        let address = SenderPattern::Address("reset@app.example".into());
        let domain = SenderPattern::Domain("app.example".into());
        let cases = [
            (&address, "reset@APP.example", true),
            (&address, "Reset@app.example", false),
            (&address, "other@app.example", false),
            (&domain, "anyone@App.Example", true),
            (&domain, "anyone@sub.app.example", false),
            (&domain, "", false),
            (&address, "", false),
        ];
        for (pattern, sender, expected) in cases {
            assert_eq!(pattern.matches(sender), expected, "{pattern:?} {sender}");
        }
    }
}
