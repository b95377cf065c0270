//! The keys the file may contain, and every key it has that no table knows, with a suggestion.
//!
//! The key names come from the `Raw*` structs themselves (serde hands each struct's field list to
//! the deserializer, which `fields_of` catches), so they cannot drift from what serde accepts;
//! only which key holds which table is written down here. Reading the values is `read.rs`'s job.

use std::cell::Cell;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeOwned, Visitor};
use toml::de::{DeTable, DeValue};

use crate::raw::*;

/// One table of the file: the keys it takes and which of them hold tables of their own.
#[derive(Debug)]
pub(crate) struct Table {
    pub fields: &'static [&'static str],
    pub children: Vec<(&'static str, Child)>,
}

/// How a key holds its table: `[name]` once, or `[[name]]` any number of times.
#[derive(Debug)]
pub(crate) enum Child {
    One(Table),
    Many(Table),
}

impl Table {
    fn leaf(fields: &'static [&'static str]) -> Table {
        Table {
            fields,
            children: Vec::new(),
        }
    }

    pub fn child(&self, key: &str) -> Option<&Child> {
        self.children
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, child)| child)
    }
}

/// The whole file's shape, from `RawConfig` down.
pub(crate) fn schema() -> Table {
    use Child::{Many, One};
    let leaf = |fields| One(Table::leaf(fields));
    Table {
        fields: fields_of::<RawConfig>(),
        children: vec![
            ("server", leaf(fields_of::<RawServer>())),
            ("log", leaf(fields_of::<RawLog>())),
            ("metrics", leaf(fields_of::<RawMetrics>())),
            ("control", leaf(fields_of::<RawControl>())),
            ("spool", leaf(fields_of::<RawSpool>())),
            ("listener", Many(Table::leaf(fields_of::<RawListener>()))),
            ("tls", leaf(fields_of::<RawTls>())),
            ("relay", leaf(fields_of::<RawRelay>())),
            (
                "auth",
                One(Table {
                    fields: fields_of::<RawAuth>(),
                    children: vec![("user", Many(Table::leaf(fields_of::<RawUser>())))],
                }),
            ),
            ("limits", leaf(fields_of::<RawLimits>())),
            ("dns", leaf(fields_of::<RawDns>())),
            ("delivery", leaf(fields_of::<RawDelivery>())),
            ("retry", leaf(fields_of::<RawRetry>())),
            ("watch", leaf(fields_of::<RawWatch>())),
            ("route", Many(Table::leaf(fields_of::<RawRoute>()))),
            ("mta_sts", leaf(fields_of::<RawMtaSts>())),
            ("policy", leaf(fields_of::<RawPolicy>())),
            ("rule", Many(Table::leaf(fields_of::<RawRule>()))),
            ("tlsrpt", leaf(fields_of::<RawTlsrpt>())),
            ("audit", leaf(fields_of::<RawAudit>())),
            ("dkim", Many(Table::leaf(fields_of::<RawDkim>()))),
            ("webhook", Many(Table::leaf(fields_of::<RawWebhook>()))),
            ("cluster", leaf(fields_of::<RawCluster>())),
            (
                "http_api",
                One(Table {
                    fields: fields_of::<RawHttpApi>(),
                    children: vec![("token", Many(Table::leaf(fields_of::<RawToken>())))],
                }),
            ),
        ],
    }
}

/// Every table of the schema with its dotted name (`""` for the top level, `auth.user`) and
/// whether it is written `[[...]]`.
pub(crate) fn tables(schema: &Table) -> Vec<(String, bool, &Table)> {
    fn collect<'a>(
        table: &'a Table,
        path: &str,
        many: bool,
        out: &mut Vec<(String, bool, &'a Table)>,
    ) {
        out.push((path.to_string(), many, table));
        for (name, child) in &table.children {
            let below = if path.is_empty() {
                (*name).to_string()
            } else {
                format!("{path}.{name}")
            };
            match child {
                Child::One(t) => collect(t, &below, false, out),
                Child::Many(t) => collect(t, &below, true, out),
            }
        }
    }
    let mut out = Vec::new();
    collect(schema, "", false, &mut out);
    out
}

/// A key's place in the file: `rule[1].require`, `auth.user[0].senders[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn key(&self, name: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(name.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    /// The path up to and including its last key: what to remove from the tree so that an
    /// element of a list, or a table of an array, takes its whole key with it.
    pub fn up_to_last_key(&self) -> KeyPath {
        let end = self
            .0
            .iter()
            .rposition(|s| matches!(s, Segment::Key(_)))
            .map_or(0, |i| i + 1);
        KeyPath(self.0[..end].to_vec())
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{}", toml::Value::String(k.clone()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A key no table knows: where it is, its path, and what to say about it.
#[derive(Debug)]
pub(crate) struct Unknown {
    pub span: Range<usize>,
    pub path: KeyPath,
    pub message: String,
}

/// Finds every unknown key in `tree` and removes it, so the rest can still be read.
pub(crate) fn remove_unknown(tree: &mut DeTable<'_>, schema: &Table) -> Vec<Unknown> {
    let mut found = Vec::new();
    walk(tree, schema, &KeyPath::default(), schema, &mut found);
    found.sort_by_key(|u| u.span.start);
    found
}

fn walk(
    table: &mut DeTable<'_>,
    shape: &Table,
    at: &KeyPath,
    schema: &Table,
    found: &mut Vec<Unknown>,
) {
    let mut remove = Vec::new();
    for (key, value) in table.iter_mut() {
        let name = key.get_ref().as_ref();
        let path = at.key(name);
        if !shape.fields.contains(&name) {
            let message = unknown_key_message(name, shape, at, schema);
            found.push(Unknown {
                span: key.span(),
                path,
                message,
            });
            remove.push(key.clone());
            continue;
        }
        match (shape.child(name), value.get_mut()) {
            (Some(Child::One(inner)), DeValue::Table(t)) => walk(t, inner, &path, schema, found),
            (Some(Child::Many(inner)), DeValue::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let DeValue::Table(t) = item.get_mut() {
                        walk(t, inner, &path.index(i), schema, found);
                    }
                }
            }
            (Some(Child::Many(_)), DeValue::Table(_)) => {
                found.push(Unknown {
                    span: key.span(),
                    message: format!("there can be several: write the table as [[{path}]]"),
                    path,
                });
                remove.push(key.clone());
            }
            // A value of the wrong type is left for serde, which says what it expected.
            _ => {}
        }
    }
    for key in remove {
        table.remove(&key);
    }
}

/// "did you mean `require`?" for a near miss in the same table; where the key belongs when
/// another table has it; otherwise the keys this table takes.
fn unknown_key_message(name: &str, shape: &Table, at: &KeyPath, schema: &Table) -> String {
    if let Some(near) = nearest(name, shape.fields) {
        return format!("unknown key: did you mean `{near}`?");
    }
    let wanted = normalise(name);
    let elsewhere: Vec<String> = tables(schema)
        .into_iter()
        .filter(|(_, _, t)| t.fields.iter().any(|f| normalise(f) == wanted))
        .map(|(path, many, _)| header(&path, many))
        .collect();
    if !elsewhere.is_empty() {
        return format!("unknown key here: it belongs in {}", elsewhere.join(" or "));
    }
    let known: Vec<String> = shape.fields.iter().map(|f| format!("`{f}`")).collect();
    format!("unknown key: {} takes {}", header_of(at), known.join(", "))
}

/// How the table at `path` is written: `[[route]]` for `route[0]`, `[tls]` for `tls`.
pub(crate) fn header_of(path: &KeyPath) -> String {
    let names: Vec<&str> = path
        .0
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    header(
        &names.join("."),
        matches!(path.0.last(), Some(Segment::Index(_))),
    )
}

fn header(path: &str, many: bool) -> String {
    match (path.is_empty(), many) {
        (true, _) => "the top level".to_string(),
        (false, true) => format!("[[{path}]]"),
        (false, false) => format!("[{path}]"),
    }
}

/// Case and `-` versus `_` are the commonest slips; they never count as a difference.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// The known key closest to `name` by edit distance, when it is close enough to be a typo:
/// at most one edit in three characters, and at least one allowed.
pub(crate) fn nearest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let wanted = normalise(name);
    known
        .iter()
        .map(|k| (edit_distance(&wanted, &normalise(k)), *k))
        .filter(|(d, k)| *d <= (wanted.chars().count().max(k.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The field names serde's derive passes to `deserialize_struct` for `T`.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let fields = Cell::new(&[][..]);
    // The probe always fails once it has the names; the error carries nothing of interest.
    let _ = T::deserialize(FieldProbe(&fields));
    fields.get()
}

struct FieldProbe<'a>(&'a Cell<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom(
            "the probe only reads struct field names",
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.set(fields);
        Err(serde::de::Error::custom("field names read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_names_come_from_the_raw_structs() {
        assert_eq!(
            fields_of::<RawServer>(),
            ["hostname", "data_dir", "shutdown_grace"]
        );
        assert!(fields_of::<RawConfig>().contains(&"listener"));
        assert!(fields_of::<RawAuth>().contains(&"user"));
    }

    #[test]
    fn every_table_key_of_the_raw_structs_has_its_shape() {
        // A table key left out of `schema` would have its own keys go unchecked here.
        let schema = schema();
        let top: Vec<&str> = schema.children.iter().map(|(name, _)| *name).collect();
        assert_eq!(top, fields_of::<RawConfig>());
    }

    #[test]
    fn near_misses_are_suggested_and_strangers_are_not() {
        let rule = fields_of::<RawRule>();
        let table: &[(&str, Option<&str>)] = &[
            ("requires", Some("require")),
            ("Require", Some("require")),
            ("fail-closed", Some("fail_closed")),
            ("min_tls", None),
            ("pin", Some("pins")),
            ("colour", None),
        ];
        for (typo, want) in table {
            assert_eq!(nearest(typo, rule), *want, "{typo}");
        }
    }

    #[test]
    fn paths_name_array_elements_and_quote_odd_keys() {
        let p = KeyPath::default().key("rule").index(1).key("requires");
        assert_eq!(p.to_string(), "rule[1].requires");
        assert_eq!(
            KeyPath::default().key("a.b").key("c").to_string(),
            "\"a.b\".c"
        );
        let p = KeyPath::default()
            .key("rule")
            .index(0)
            .key("domains")
            .index(2);
        assert_eq!(p.up_to_last_key().to_string(), "rule[0].domains");
    }
}
