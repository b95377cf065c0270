//! Peer-supplied text made safe to print on a terminal: HELO names, addresses, SMTP replies,
//! DNS and TLS text reach `queue show`, `queue list`, `explain` and `tlsrpt` output, so control
//! characters in them are shown escaped instead of moving the cursor, recolouring the screen or
//! starting a fake line. What to print is left to the commands.

use std::fmt::Write;

use serde_json::Value;

/// `text` with every control character (C0, DEL, C1), line or paragraph separator and
/// bidirectional formatting character written as a Rust-style escape (`\n`, `\u{1b}`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c if c.is_control() || is_separator_or_bidi(c) => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as printable text: a string as itself, null as nothing, anything else in its
/// JSON form; escaped in every case.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

/// Characters that are not controls to Unicode but still rearrange or break what a terminal
/// shows: line and paragraph separators, and the bidirectional marks, embeddings, overrides
/// and isolates (Unicode UAX #9), which can make text read in another order than it is.
fn is_separator_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_in_peer_text_are_shown_escaped() {
        let rows = [
            ("plain text and ünïcode stay", "plain text and ünïcode stay"),
            ("250 ok\r\n250 fake line", "250 ok\\r\\n250 fake line"),
            (
                "\u{1b}[2J\u{1b}]0;title\u{7}",
                "\\u{1b}[2J\\u{1b}]0;title\\u{7}",
            ),
            ("tab\there", "tab\\there"),
            (
                "del\u{7f} and c1 csi\u{9b}31m",
                "del\\u{7f} and c1 csi\\u{9b}31m",
            ),
            ("abc\u{202e}txt.exe", "abc\\u{202e}txt.exe"),
            ("line\u{2028}separator", "line\\u{2028}separator"),
        ];
        for (raw, shown) in rows {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn json_values_are_escaped_in_every_form() {
        assert_eq!(text(&json!("helo\u{1b}[31m")), "helo\\u{1b}[31m");
        assert_eq!(text(&Value::Null), "");
        assert_eq!(text(&json!(25)), "25");
        // serde_json leaves DEL and C1 characters alone in its output; they are escaped here.
        assert_eq!(
            text(&json!({"reply": "x\u{9b}y"})),
            "{\"reply\":\"x\\u{9b}y\"}"
        );
    }
}
