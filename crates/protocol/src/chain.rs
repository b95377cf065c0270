//! An error and every `source()` behind it, as one line for logs and reasons: "cannot record the
//! outcome of message X: spool commit failed: I/O error: no space left on device" instead of
//! only the first part. It lives in this crate because every crate that logs depends on it;
//! which errors to log, and where, is the callers' business.

use std::error::Error;
use std::fmt;

/// The deepest chain followed; a longer one (or a cycle) ends with "…".
const MAX_DEPTH: usize = 16;

/// Displays an error followed by each of its sources, joined with ": ". Use it wherever an
/// error is logged: `tracing::error!(error = %ErrorChain(&error), "...")`.
///
/// strictmx's own errors never repeat their source's message (STYLE.md); some foreign ones do
/// (redb's I/O errors, `io::Error` wrapping another error), so a source whose message is already
/// part of the previous one is not written again.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = self.0.to_string();
        f.write_str(&previous)?;
        let mut source = self.0.source();
        let mut depth = 0;
        while let Some(error) = source {
            depth += 1;
            if depth > MAX_DEPTH {
                return f.write_str(": …");
            }
            let message = error.to_string();
            if !message.is_empty() && !previous.contains(&message) {
                write!(f, ": {message}")?;
            }
            previous = message;
            source = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot record the outcome of message 00000000000000ab")]
        Record {
            #[source]
            source: Middle,
        },
    }

    #[derive(Debug, thiserror::Error)]
    enum Middle {
        #[error("spool commit of 3 operations failed")]
        Commit {
            #[source]
            source: std::io::Error,
        },
        /// Like redb's storage errors: the message repeats the source's.
        #[error("I/O error: {source}")]
        Repeating {
            #[source]
            source: std::io::Error,
        },
    }

    fn disk_full() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device")
    }

    #[test]
    fn every_source_is_shown_once_after_the_outer_message() {
        let error = Outer::Record {
            source: Middle::Commit {
                source: disk_full(),
            },
        };
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot record the outcome of message 00000000000000ab: spool commit of 3 operations failed: no space left on device"
        );
    }

    #[test]
    fn a_source_already_in_the_message_above_it_is_not_repeated() {
        let error = Outer::Record {
            source: Middle::Repeating {
                source: disk_full(),
            },
        };
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot record the outcome of message 00000000000000ab: I/O error: no space left on device"
        );
    }

    #[test]
    fn an_error_without_sources_is_its_own_message() {
        assert_eq!(
            ErrorChain(&disk_full()).to_string(),
            "no space left on device"
        );
    }
}
