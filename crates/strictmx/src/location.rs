//! Which configuration a command runs on: `--config FILE`, else the file named by the
//! `STRICTMX_CONFIG` environment variable, else `/etc/strictmx/strictmx.toml` when it exists,
//! else the embedded defaults, which every command then says loudly.
//!
//! Choosing is a function of the flag, the environment value and the default path, so tests
//! give their own and never look at /etc. Reading and validating is `strictmx-config`'s job.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use strictmx_config::{Config, ConfigErrors};

/// The file every command reads when neither `--config` nor `STRICTMX_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/strictmx/strictmx.toml";
/// The environment variable naming the configuration file.
pub const ENV_VAR: &str = "STRICTMX_CONFIG";

/// Where the configuration comes from, and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `--config FILE` (or `check-config FILE`).
    Flag(PathBuf),
    /// `STRICTMX_CONFIG`.
    Environment(PathBuf),
    /// The default path, which exists.
    DefaultPath(PathBuf),
    /// No file: the embedded defaults; `default_path` is where a file was looked for.
    Embedded { default_path: PathBuf },
}

impl Location {
    /// The flag wins, then a non-empty environment value, then `default_path` if it is a file.
    /// A named file that does not exist is not skipped: loading it reports the error.
    pub fn choose(flag: Option<&Path>, env: Option<&OsStr>, default_path: &Path) -> Location {
        if let Some(path) = flag {
            return Location::Flag(path.to_path_buf());
        }
        if let Some(value) = env.filter(|v| !v.is_empty()) {
            return Location::Environment(PathBuf::from(value));
        }
        if default_path.is_file() {
            return Location::DefaultPath(default_path.to_path_buf());
        }
        Location::Embedded {
            default_path: default_path.to_path_buf(),
        }
    }

    /// [`Location::choose`] with this process's environment and [`DEFAULT_PATH`].
    pub fn of_process(flag: Option<&Path>) -> Location {
        Location::choose(
            flag,
            std::env::var_os(ENV_VAR).as_deref(),
            Path::new(DEFAULT_PATH),
        )
    }

    /// The file, unless the embedded defaults are in use.
    pub fn path(&self) -> Option<&Path> {
        self.file().map(|(path, _)| path)
    }

    /// The file and how it was found (`--config`, `STRICTMX_CONFIG`, `default path`).
    pub fn file(&self) -> Option<(&Path, &'static str)> {
        match self {
            Location::Flag(p) => Some((p, "--config")),
            Location::Environment(p) => Some((p, ENV_VAR)),
            Location::DefaultPath(p) => Some((p, "default path")),
            Location::Embedded { .. } => None,
        }
    }

    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match self.path() {
            Some(path) => Config::load(path),
            None => Ok(Config::embedded_default()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Embedded { default_path } => write!(
                f,
                "no configuration file (no --config, no {ENV_VAR}, no {}): the embedded defaults are in use, a relay on 127.0.0.1:2525 for 127.0.0.0/8 with the spool in ./data",
                default_path.display()
            ),
            Location::Flag(path) | Location::Environment(path) | Location::DefaultPath(path) => {
                let found_by = self.file().map_or("", |(_, by)| by);
                write!(f, "configuration file {} (from {found_by})", path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_environment_and_the_default_path() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let default = dir.path().join("strictmx.toml");
        std::fs::write(&default, "").expect("write");
        let chosen = Location::choose(
            Some(Path::new("flag.toml")),
            Some(OsStr::new("env.toml")),
            &default,
        );
        assert_eq!(chosen, Location::Flag("flag.toml".into()));
        let chosen = Location::choose(None, Some(OsStr::new("env.toml")), &default);
        assert_eq!(chosen, Location::Environment("env.toml".into()));
    }

    #[test]
    fn the_default_path_is_used_only_when_it_is_a_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let default = dir.path().join("strictmx.toml");
        assert_eq!(
            Location::choose(None, None, &default),
            Location::Embedded {
                default_path: default.clone()
            }
        );
        std::fs::write(&default, "").expect("write");
        assert_eq!(
            Location::choose(None, None, &default),
            Location::DefaultPath(default.clone())
        );
        // An empty variable is unset, not a file named "".
        assert_eq!(
            Location::choose(None, Some(OsStr::new("")), &default),
            Location::DefaultPath(default)
        );
    }

    #[test]
    fn the_embedded_defaults_are_announced_with_where_a_file_was_looked_for() {
        let chosen = Location::choose(None, None, Path::new("/nonexistent/strictmx.toml"));
        let said = chosen.to_string();
        assert!(said.contains("embedded defaults are in use"), "{said}");
        assert!(said.contains("/nonexistent/strictmx.toml"), "{said}");
        assert!(said.contains(ENV_VAR), "{said}");
        assert!(chosen.load().is_ok());
        let chosen = Location::choose(None, Some(OsStr::new("/x.toml")), Path::new("/none"));
        assert_eq!(
            chosen.to_string(),
            "configuration file /x.toml (from STRICTMX_CONFIG)"
        );
    }
}
