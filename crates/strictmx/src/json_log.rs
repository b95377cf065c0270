//! JSON lines for the logs, written straight into the line buffer: one object per record with
//! `timestamp` (RFC 3339, microseconds, UTC), `level`, `node` (this node's id, when known),
//! `message` and the record's fields at the top level, `target`, and the innermost span's fields under `span` (with its `name`).
//! Strings are escaped per RFC 8259 §7; numbers and booleans stay JSON numbers and booleans.
//! The generic JSON formatter serialised every field through serde and parsed each span's
//! fields back on every record; logging was the largest single cost per message
//! (docs/benchmarks.md).

use std::fmt::{self, Write};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format; `node` is this node's id, put in every record.
#[derive(Debug, Clone, Default)]
pub struct JsonLines {
    pub node: Option<String>,
}

/// The span field format: `"key":value` pairs separated by commas, no braces, so that the
/// event format can put them under `span` as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(1024);
        line.push_str("{\"timestamp\":\"");
        write!(
            line,
            "{}",
            humantime::format_rfc3339_micros(SystemTime::now())
        )?;
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push('"');
        if let Some(node) = &self.node {
            line.push_str(",\"node\":");
            push_string(&mut line, node);
        }
        let mut fields = JsonVisitor {
            out: &mut line,
            first: false,
        };
        event.record(&mut fields);
        line.push_str(",\"target\":");
        push_string(&mut line, event.metadata().target());
        if let Some(span) = ctx.lookup_current() {
            line.push_str(",\"span\":{");
            if let Some(fields) = span.extensions().get::<FormattedFields<JsonFields>>()
                && !fields.is_empty()
            {
                line.push_str(fields);
                line.push(',');
            }
            line.push_str("\"name\":");
            push_string(&mut line, span.name());
            line.push('}');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut out = String::new();
        fields.record(&mut JsonVisitor {
            out: &mut out,
            first: true,
        });
        writer.write_str(&out)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        fields.record(&mut JsonVisitor {
            out: &mut current.fields,
            first,
        });
        Ok(())
    }
}

/// Appends `"name":value` for each field, with a comma before all but a first one.
struct JsonVisitor<'a> {
    out: &'a mut String,
    first: bool,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        // Field names are nearly always identifiers, which need no escaping: a record has
        // some twenty of them.
        let name = field.name();
        if name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            self.out.push('"');
            self.out.push_str(name);
            self.out.push_str("\":");
        } else {
            push_string(self.out, name);
            self.out.push(':');
        }
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_string(self.out, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            // JSON has no NaN or infinity (RFC 8259 §6).
            push_string(self.out, &value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.out.push('"');
        let _ = write!(Escaped(self.out), "{value:?}");
        self.out.push('"');
    }
}

/// A JSON string literal for `text`.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    let _ = Escaped(out).write_str(text);
    out.push('"');
}

/// Escapes what it is given for the inside of a JSON string (RFC 8259 §7).
struct Escaped<'a>(&'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Everything that needs escaping is ASCII, and no byte of a multi-byte UTF-8 sequence
        // is below 0x80, so the text is scanned as bytes and every cut falls on a char boundary.
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                byte if byte < 0x20 => "",
                _ => continue,
            };
            self.0.push_str(&text[plain..at]);
            if escape.is_empty() {
                write!(self.0, "\\u{:04x}", byte)?;
            } else {
                self.0.push_str(escape);
            }
            plain = at + 1;
        }
        self.0.push_str(&text[plain..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    fn logged(record: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonLines {
                node: Some("0123456789abcdef".into()),
            })
            .finish();
        tracing::subscriber::with_default(subscriber, record);
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn a_record_is_one_json_object_with_typed_fields_and_its_span() {
        let records = logged(|| {
            let span = tracing::info_span!("session", ip = "192.0.2.1", port = 2525u64);
            let _entered = span.enter();
            tracing::info!(msg_id = %"01a2345231450006", rcpt_count = 3u64, verified = true, delta = -2i64, "message accepted");
        });
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["node"], "0123456789abcdef");
        assert_eq!(record["message"], "message accepted");
        assert_eq!(record["msg_id"], "01a2345231450006");
        assert_eq!(record["rcpt_count"], 3);
        assert_eq!(record["verified"], true);
        assert_eq!(record["delta"], -2);
        assert_eq!(record["target"], module_path!());
        assert_eq!(record["span"]["name"], "session");
        assert_eq!(record["span"]["ip"], "192.0.2.1");
        assert_eq!(record["span"]["port"], 2525);
        let stamp = record["timestamp"].as_str().expect("a string");
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
    }

    #[test]
    fn dotted_and_quoted_field_names_are_keys_as_written() {
        let records = logged(|| {
            tracing::info!(tls.version = "TLSv1.3", "we\"ird" = 1u64, "named");
        });
        assert_eq!(records[0]["tls.version"], "TLSv1.3");
        assert_eq!(records[0]["we\"ird"], 1);
    }

    // RFC 8259 §7: quotation mark, reverse solidus and the control characters are escaped.
    #[test]
    fn what_peers_wrote_is_escaped_and_reads_back_unchanged() {
        let hostile = "evil\"\\\r\n\t\u{1b}[2J\u{0} ok ünïcode";
        let records = logged(|| {
            tracing::warn!(reply = hostile, debug = ?hostile, "peer said {}", hostile);
        });
        let record = &records[0];
        assert_eq!(record["reply"], hostile);
        assert_eq!(record["debug"], format!("{hostile:?}"));
        assert_eq!(record["message"], format!("peer said {hostile}"));
    }

    #[test]
    fn a_record_outside_any_span_has_no_span_key() {
        let records = logged(|| tracing::info!("strictmx is serving"));
        assert!(records[0].get("span").is_none());
    }
}
