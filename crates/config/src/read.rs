//! From text to `RawConfig`, collecting every problem the TOML reader can find, not only the
//! first: syntax errors, unknown keys (all of them, with a suggestion), values of the wrong type
//! and missing keys, each named by its path in the parsed tree (`rule[1].require`).
//!
//! serde stops at the first error, so the file is parsed once into a spanned tree; unknown keys
//! are found by walking it (`keys`), and a key serde refuses is taken out of the tree and the
//! rest read again. What the values mean is `validate.rs`'s job.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Source, line_column};
use crate::keys::{self, KeyPath, Segment};
use crate::raw::RawConfig;

/// What reading produced: the raw configuration when one could be built, and the keys taken
/// out of the file because they were wrong (validation problems under them are consequences).
pub(crate) struct Read {
    pub raw: Option<RawConfig>,
    pub dropped: Vec<String>,
}

/// Reads `src.text`, recording each problem in `src`.
pub(crate) fn read(src: &mut Source<'_>) -> Read {
    let (mut tree, syntax) = DeTable::parse_recoverable(src.text);
    if !syntax.is_empty() {
        report_syntax(src, tree.get_ref(), &syntax);
        return Read {
            raw: None,
            dropped: Vec::new(),
        };
    }
    let mut found: Vec<(Range<usize>, String, String)> = Vec::new();
    let mut dropped = Vec::new();
    for unknown in keys::remove_unknown(tree.get_mut(), &keys::schema()) {
        let path = unknown.path.to_string();
        dropped.push(path.clone());
        found.push((unknown.span, path, unknown.message));
    }
    let raw = deserialize_the_rest(tree.get_mut(), &mut dropped, &mut found);
    found.sort_by_key(|(span, _, _)| span.start);
    for (span, key, message) in found {
        src.error(span, key, message);
    }
    Read { raw, dropped }
}

/// The tree recovered around a syntax error is a guess, so only the syntax is reported: the
/// first error of each line (the rest of a line follows from it), with the key written there.
fn report_syntax(src: &mut Source<'_>, tree: &DeTable<'_>, syntax: &[toml::de::Error]) {
    let mut lines = Vec::new();
    for e in syntax {
        let start = e.span().map_or(0, |s| s.start);
        let line = line_column(src.text, start).0;
        if lines.contains(&line) {
            continue;
        }
        lines.push(line);
        let key = locate_with_span(tree, start)
            .filter(|(_, at)| line_column(src.text, at.start).0 == line)
            .map(|(path, _)| path.to_string())
            .unwrap_or_default();
        src.toml_error(e, key);
    }
}

/// Deserializes `tree`; each key serde refuses is recorded in `found`, taken out of the tree
/// (with `dropped` noting it) and the rest read again, until it reads or nothing can be taken.
fn deserialize_the_rest(
    tree: &mut DeTable<'_>,
    dropped: &mut Vec<String>,
    found: &mut Vec<(Range<usize>, String, String)>,
) -> Option<RawConfig> {
    // Each round takes one key out of the tree, so this ends; the bound is for safety only.
    for _ in 0..1000 {
        let whole = Spanned::new(0..0, tree.clone());
        let e = match RawConfig::deserialize(toml::de::Deserializer::from(whole)) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let span = e.span().unwrap_or(0..0);
        let path = locate(tree, span.start).unwrap_or_default();
        let message = e.message().trim_end();
        let missing = missing_field(message);
        if missing.is_none_or(|field| !dropped.contains(&path.key(field).to_string())) {
            let message = match missing {
                Some(field) => format!(
                    "missing key `{field}`, which every {} needs",
                    keys::header_of(&path)
                ),
                None => message.to_string(),
            };
            found.push((span, path.to_string(), message));
        }
        let target = path.up_to_last_key();
        if !remove(tree, &target) {
            return None;
        }
        dropped.push(target.to_string());
    }
    None
}

/// The field of serde's "missing field `next_hop`" (toml's error has no kind to ask instead).
/// After we took out a wrong `next_hop` it says nothing new, and it is not reported.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// The path of the deepest key whose name or value covers `offset`.
pub(crate) fn locate(table: &DeTable<'_>, offset: usize) -> Option<KeyPath> {
    locate_with_span(table, offset).map(|(path, _)| path)
}

/// [`locate`], with the span of the name or value that covers `offset`.
fn locate_with_span(table: &DeTable<'_>, offset: usize) -> Option<(KeyPath, Range<usize>)> {
    locate_in(table, offset, &KeyPath::default())
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn locate_in(table: &DeTable<'_>, offset: usize, at: &KeyPath) -> Option<(KeyPath, Range<usize>)> {
    for (key, value) in table.iter() {
        let path = at.key(key.get_ref());
        if covers(&key.span(), offset) {
            return Some((path, key.span()));
        }
        if let Some(found) = locate_value(value, offset, &path) {
            return Some(found);
        }
    }
    None
}

fn locate_value(
    value: &Spanned<DeValue<'_>>,
    offset: usize,
    at: &KeyPath,
) -> Option<(KeyPath, Range<usize>)> {
    let deeper = match value.get_ref() {
        DeValue::Table(t) => locate_in(t, offset, at),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| locate_value(item, offset, &at.index(i))),
        _ => None,
    };
    deeper.or_else(|| covers(&value.span(), offset).then(|| (at.clone(), value.span())))
}

/// Takes the key at `path` (which ends in a key) out of the tree; false when there is none.
fn remove(root: &mut DeTable<'_>, path: &KeyPath) -> bool {
    let Some((Segment::Key(last), parents)) = path.0.split_last() else {
        return false;
    };
    let mut table = root;
    let mut segments = parents.iter().peekable();
    while let Some(segment) = segments.next() {
        let Segment::Key(name) = segment else {
            return false;
        };
        let Some(value) = table.get_mut(name.as_str()) else {
            return false;
        };
        let mut value = value.get_mut();
        if let Some(Segment::Index(i)) = segments.peek() {
            let DeValue::Array(items) = value else {
                return false;
            };
            let Some(item) = items.get_mut(*i) else {
                return false;
            };
            value = item.get_mut();
            segments.next();
        }
        let DeValue::Table(inner) = value else {
            return false;
        };
        table = inner;
    }
    table.remove(last.as_str()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_located_through_headers_with_trailing_comments() {
        let text = "[[rule]]    # the first\nname = \"a\"\n\n[[rule]] # password resets only to a verified receiver\nrequires = \"x\"\n";
        let tree = DeTable::parse(text).unwrap();
        let at = text.find("requires").unwrap();
        assert_eq!(
            locate(tree.get_ref(), at).unwrap().to_string(),
            "rule[1].requires"
        );
        let at = text.find("\"x\"").unwrap();
        assert_eq!(
            locate(tree.get_ref(), at).unwrap().to_string(),
            "rule[1].requires"
        );
    }

    #[test]
    fn a_list_element_is_located_by_its_index() {
        let text = "[dns]\nnameservers = [\"a\",\n  \"b\"]\n";
        let tree = DeTable::parse(text).unwrap();
        let at = text.find("\"b\"").unwrap();
        assert_eq!(
            locate(tree.get_ref(), at).unwrap().to_string(),
            "dns.nameservers[1]"
        );
    }

    #[test]
    fn a_key_inside_an_array_of_tables_can_be_removed() {
        let text = "[auth]\n[[auth.user]]\nname = \"a\"\n[[auth.user]]\nname = 5\n";
        let mut tree = DeTable::parse(text).unwrap();
        let path = KeyPath::default()
            .key("auth")
            .key("user")
            .index(1)
            .key("name");
        assert!(remove(tree.get_mut(), &path));
        assert!(!remove(tree.get_mut(), &path));
        let users = tree.get_ref().get("auth").unwrap().get_ref().get("user");
        assert!(
            users
                .unwrap()
                .get_ref()
                .get(0)
                .unwrap()
                .get_ref()
                .get("name")
                .is_some()
        );
    }
}
