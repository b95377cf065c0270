//! `[cluster]` → `strictmx_cluster::ClusterSettings`: the PostgreSQL database several nodes
//! share (off when `database` is absent), where its password comes from, the pool and the
//! timing of heartbeats, counter syncs and leases.
//!
//! The password never sits in the file: `database` refuses a URL that holds one, and it is
//! read from `password_file` or the variable `password_env` names. What is shared and how is
//! `strictmx-cluster`'s.

use std::fmt::Write;
use std::path::Path;

use strictmx_cluster::{ClusterSettings, DatabaseSettings, Secret, check_database_url};

use crate::error::Source;
use crate::files::warn_if_world_readable;
use crate::raw::RawCluster;
use crate::validate::{dur, opt, path_in, quote, quote_duration};
use crate::values;

pub(crate) fn build(
    raw: Option<&RawCluster>,
    src: &mut Source<'_>,
    base: Option<&Path>,
) -> ClusterSettings {
    let mut s = ClusterSettings::default();
    let Some(raw) = raw else { return s };
    s.pool_size = opt(src, "cluster.pool_size", &raw.pool_size, s.pool_size, |n| {
        values::count(*n, 1).and_then(|n| match n > 64 {
            true => Err(
                "at most 64: each node's connections count against the server's max_connections"
                    .into(),
            ),
            false => Ok(n),
        })
    });
    let positive = |t: &String| {
        dur(t).and_then(|d| match d.is_zero() {
            true => Err("must be more than zero".to_string()),
            false => Ok(d),
        })
    };
    s.connect_timeout = opt(
        src,
        "cluster.connect_timeout",
        &raw.connect_timeout,
        s.connect_timeout,
        positive,
    );
    s.query_timeout = opt(
        src,
        "cluster.query_timeout",
        &raw.query_timeout,
        s.query_timeout,
        positive,
    );
    s.sync_interval = opt(
        src,
        "cluster.sync_interval",
        &raw.sync_interval,
        s.sync_interval,
        positive,
    );
    s.report_delay = opt(
        src,
        "cluster.report_delay",
        &raw.report_delay,
        s.report_delay,
        dur,
    );
    let sync = s.sync_interval;
    s.lease_ttl = opt(src, "cluster.lease_ttl", &raw.lease_ttl, s.lease_ttl, |t| {
        dur(t).and_then(|d| match d < sync * 2 {
            true => Err(format!(
                "must be at least twice cluster.sync_interval ({}), or the holder loses its lease between renewals",
                humantime::format_duration(sync * 2)
            )),
            false => Ok(d),
        })
    });
    s.database = database(raw, src, base);
    s
}

fn database(
    raw: &RawCluster,
    src: &mut Source<'_>,
    base: Option<&Path>,
) -> Option<DatabaseSettings> {
    let url = raw.database.as_ref()?;
    if let Err(message) = check_database_url(url.get_ref()) {
        src.error(url.span(), "cluster.database", message);
        return None;
    }
    let mut db = DatabaseSettings {
        url: url.get_ref().clone(),
        password: None,
        password_source: None,
    };
    match (&raw.password_file, &raw.password_env) {
        (Some(file), Some(_)) => src.error(
            file.span(),
            "cluster.password_file",
            "set cluster.password_file or cluster.password_env, not both",
        ),
        (Some(file), None) => {
            let path = match path_in(base)(file.get_ref()) {
                Ok(path) => path,
                Err(message) => {
                    src.error(file.span(), "cluster.password_file", message);
                    return Some(db);
                }
            };
            warn_if_world_readable(src, file.span(), "cluster.password_file", &path);
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim_end_matches(['\r', '\n']).is_empty() => {
                    db.password = Some(Secret::new(text.trim_end_matches(['\r', '\n']).into()));
                    db.password_source = Some(format!("password_file = {}", quote(file.get_ref())));
                }
                Ok(_) => src.error(
                    file.span(),
                    "cluster.password_file",
                    format!("{} is empty", path.display()),
                ),
                Err(e) => src.error(
                    file.span(),
                    "cluster.password_file",
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        (None, Some(var)) => match std::env::var(var.get_ref()) {
            Ok(text) if !text.is_empty() => {
                db.password = Some(Secret::new(text));
                db.password_source = Some(format!("password_env = {}", quote(var.get_ref())));
            }
            _ => src.error(
                var.span(),
                "cluster.password_env",
                format!("the environment variable {} is not set", var.get_ref()),
            ),
        },
        (None, None) => {}
    }
    Some(db)
}

pub(crate) fn render(s: &ClusterSettings, o: &mut String) {
    let _ = writeln!(o, "[cluster]");
    match &s.database {
        Some(db) => {
            let _ = writeln!(o, "database = {}", quote(&db.url));
            if let Some(source) = &db.password_source {
                let _ = writeln!(o, "{source}");
            }
        }
        None => {
            let _ = writeln!(o, "# database: off (a single node)");
        }
    }
    let _ = writeln!(
        o,
        "pool_size = {}\nconnect_timeout = {}\nquery_timeout = {}\nsync_interval = {}\n\
         lease_ttl = {}\nreport_delay = {}\n",
        s.pool_size,
        quote_duration(s.connect_timeout),
        quote_duration(s.query_timeout),
        quote_duration(s.sync_interval),
        quote_duration(s.lease_ttl),
        quote_duration(s.report_delay),
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::Config;

    use super::*;

    fn parse(text: &str) -> Result<Config, crate::ConfigErrors> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_cluster_is_off_unless_a_database_is_named() {
        let cluster = parse("").expect("valid").cluster;
        assert_eq!(cluster, ClusterSettings::default());
        assert!(cluster.database.is_none());
        assert_eq!(cluster.lease_ttl, Duration::from_secs(60));
        let cluster = parse(
            "[cluster]\ndatabase = \"postgres://strictmx@127.0.0.1:5432/strictmx\"\n\
             pool_size = 2\nsync_interval = \"5s\"\nlease_ttl = \"10s\"\n",
        )
        .expect("valid")
        .cluster;
        let db = cluster.database.expect("on");
        assert_eq!(db.url, "postgres://strictmx@127.0.0.1:5432/strictmx");
        assert_eq!(db.password, None);
        assert_eq!(cluster.pool_size, 2);
        assert_eq!(cluster.lease_ttl, Duration::from_secs(10));
    }

    #[test]
    fn the_password_comes_from_a_file_and_is_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("db-password");
        std::fs::write(&file, "hunter2\n").expect("write");
        let text = format!(
            "[cluster]\ndatabase = \"postgres://strictmx@127.0.0.1/strictmx\"\npassword_file = \"{}\"\n",
            file.display()
        );
        let config = parse(&text).expect("valid");
        let db = config.cluster.database.as_ref().expect("on");
        assert_eq!(db.password.as_ref().map(Secret::expose), Some("hunter2"));
        let shown = config.render();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password_file = "), "{shown}");
        assert!(!format!("{config:?}").contains("hunter2"));
        let again = parse(&shown).expect("the rendered configuration parses");
        assert_eq!(again.cluster, config.cluster);
    }

    #[test]
    fn bad_cluster_values_are_errors_at_their_lines() {
        let rows = [
            (
                "[cluster]\n\ndatabase = \"postgres://u:secret@db/x\"\n",
                3,
                "cluster.database",
                "password_file",
            ),
            (
                "[cluster]\ndatabase = \"postgres://u@db/x\"\npassword_env = \"STRICTMX_TEST_NO_SUCH_VARIABLE\"\n",
                3,
                "cluster.password_env",
                "not set",
            ),
            (
                "[cluster]\nsync_interval = \"30s\"\nlease_ttl = \"40s\"\n",
                3,
                "cluster.lease_ttl",
                "twice",
            ),
            (
                "[cluster]\npool_size = 0\n",
                2,
                "cluster.pool_size",
                "too small",
            ),
            ("[cluster]\npool = 3\n", 2, "", "unknown key"),
        ];
        for (text, line, key, says) in rows {
            let errors = parse(text).expect_err(text).0;
            assert_eq!(errors[0].line, line, "{text}: {errors:?}");
            if !key.is_empty() {
                assert_eq!(errors[0].key, key, "{text}");
            }
            assert!(errors[0].message.contains(says), "{text}: {errors:?}");
        }
    }
}
