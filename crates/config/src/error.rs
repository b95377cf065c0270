//! Configuration errors: every one names the file, the line and column, and the key.
//!
//! Parsing problems come from the TOML reader with a byte span (`read` names their key from the
//! parsed tree); validation problems carry the span of the offending value (`toml::Spanned`).
//! Both are turned into the same located error here.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem in a configuration file, located precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the problem is not tied to a place (file unreadable).
    pub line: usize,
    pub column: usize,
    /// Dotted key path, such as `listener[1].address`; empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one file; validation reports every problem, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Maps byte offsets of one source text to lines and columns, and collects errors against it.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub file: PathBuf,
    pub text: &'a str,
    pub errors: Vec<ConfigError>,
    /// Valid but dangerous or pointless settings; reported in the same located form.
    pub warnings: Vec<ConfigError>,
}

impl<'a> Source<'a> {
    pub fn new(file: PathBuf, text: &'a str) -> Self {
        Source {
            file,
            text,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records a problem with the value at `span`, found under `key`.
    pub fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_column(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records a setting that is valid but that an operator must know about (`check-config` and
    /// `serve` print it).
    pub fn warn(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_column(self.text, span.start);
        self.warnings.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records an error of the TOML reader (syntax, wrong type, missing key) under `key`, the
    /// path `read` located from the error's span.
    pub fn toml_error(&mut self, err: &toml::de::Error, key: String) {
        let (line, column) = match err.span() {
            Some(span) => line_column(self.text, span.start),
            None => (0, 0),
        };
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key,
            message: err.message().trim_end().to_string(),
        });
    }
}

/// 1-based line and column of a byte offset (columns count characters, not bytes).
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before
        .get(line_start..)
        .map_or(1, |s| s.chars().count() + 1);
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 11), (2, 6));
    }
}
