//! The check every report passes before it leaves (RFC 8460 §4.4): the checked-in JSON Schema
//! `schema/tlsrpt-report.schema.json`, evaluated by a small validator for the keywords that file
//! uses (`type`, `required`, `properties`, `items`, `enum`, `minimum`, `minLength`, `minItems`,
//! `format: date-time`). The `jsonschema` crate was weighed and left out: even without default
//! features it brings regex engines and a reference resolver for a fixed, small schema. A keyword
//! this validator does not know fails the check, so the schema cannot silently outgrow it.

use serde_json::Value;

/// The schema, as checked in.
pub const SCHEMA: &str = include_str!("../schema/tlsrpt-report.schema.json");

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 4] = ["$schema", "$id", "title", "description"];

/// Checks `report` against [`SCHEMA`]; the error lists every violation with its JSON path.
pub fn validate(report: &Value) -> Result<(), Vec<String>> {
    let schema: Value = match serde_json::from_str(SCHEMA) {
        Ok(schema) => schema,
        Err(e) => return Err(vec![format!("the checked-in schema does not parse: {e}")]),
    };
    let mut errors = Vec::new();
    check(&schema, report, "$", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(rules) = schema.as_object() else {
        errors.push(format!("{path}: schema is not an object"));
        return;
    };
    for (keyword, rule) in rules {
        match keyword.as_str() {
            "type" => check_type(rule, value, path, errors),
            "required" => check_required(rule, value, path, errors),
            "properties" => check_properties(rule, value, path, errors),
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    check(rule, item, &format!("{path}[{i}]"), errors);
                }
            }
            "enum" => {
                if !rule
                    .as_array()
                    .is_some_and(|allowed| allowed.contains(value))
                {
                    errors.push(format!("{path}: {value} is not one of {rule}"));
                }
            }
            "minimum" => {
                if let (Some(v), Some(min)) = (value.as_f64(), rule.as_f64())
                    && v < min
                {
                    errors.push(format!("{path}: {v} is below {min}"));
                }
            }
            "minLength" => {
                if let (Some(s), Some(min)) = (value.as_str(), rule.as_u64())
                    && (s.chars().count() as u64) < min
                {
                    errors.push(format!("{path}: shorter than {min}"));
                }
            }
            "minItems" => {
                if let (Some(a), Some(min)) = (value.as_array(), rule.as_u64())
                    && (a.len() as u64) < min
                {
                    errors.push(format!("{path}: fewer than {min} items"));
                }
            }
            "format" => check_format(rule, value, path, errors),
            k if ANNOTATIONS.contains(&k) => {}
            other => errors.push(format!("{path}: schema keyword {other} is not supported")),
        }
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn check_type(rule: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let ok = match rule {
        Value::String(name) => type_matches(name, value),
        Value::Array(names) => names
            .iter()
            .any(|n| n.as_str().is_some_and(|n| type_matches(n, value))),
        _ => false,
    };
    if !ok {
        errors.push(format!("{path}: expected type {rule}, found {value}"));
    }
}

fn check_required(rule: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        return;
    };
    for name in rule
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !object.contains_key(name) {
            errors.push(format!("{path}: required field {name} is missing"));
        }
    }
}

fn check_properties(rule: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let (Some(object), Some(properties)) = (value.as_object(), rule.as_object()) else {
        return;
    };
    for (name, schema) in properties {
        if let Some(field) = object.get(name) {
            check(schema, field, &format!("{path}.{name}"), errors);
        }
    }
}

/// `date-time` per RFC 3339 §5.6, the format RFC 8460 §4.4 asks for.
fn check_format(rule: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(text) = value.as_str() else { return };
    if rule.as_str() == Some("date-time") && !is_rfc3339(text) {
        errors.push(format!("{path}: {text:?} is not an RFC 3339 date-time"));
    }
}

fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        "Z" | "z" => true,
        offset => {
            let o = offset.as_bytes();
            o.len() == 6
                && matches!(o[0], b'+' | b'-')
                && o[1..3].iter().all(u8::is_ascii_digit)
                && o[3] == b':'
                && o[4..6].iter().all(u8::is_ascii_digit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3339_date_times_are_recognised() {
        for ok in ["2016-04-01T00:00:00Z", "2016-04-01T23:59:59.5+02:00"] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2016-04-01",
            "2016-04-01 00:00:00Z",
            "2016-04-01T00:00:00",
            "2016-04-01T00:00:00.Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn an_unknown_schema_keyword_fails_the_check() {
        let mut errors = Vec::new();
        check(
            &serde_json::json!({"pattern": "x"}),
            &serde_json::json!("x"),
            "$",
            &mut errors,
        );
        assert_eq!(errors, ["$: schema keyword pattern is not supported"]);
    }
}
