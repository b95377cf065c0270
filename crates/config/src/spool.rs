//! `[spool]` → `strictmx_spool::SpoolSettings`: how many commits are grouped and how much the
//! store may cache. Its directory is `server.data_dir`.
//!
//! How the queue is stored is `strictmx-spool`'s; this checks the values.

use std::fmt::Write;
use std::path::Path;

use strictmx_spool::SpoolSettings;

use crate::error::Source;
use crate::raw::RawSpool;
use std::time::Duration;

use crate::validate::{dur, opt, quote_duration};
use crate::values;

pub(crate) fn build(
    raw: Option<&RawSpool>,
    data_dir: &Path,
    src: &mut Source<'_>,
) -> SpoolSettings {
    let mut spool = SpoolSettings {
        data_dir: data_dir.to_path_buf(),
        ..SpoolSettings::default()
    };
    let Some(s) = raw else { return spool };
    spool.commit_batch_max = opt(
        src,
        "spool.commit_batch_max",
        &s.commit_batch_max,
        spool.commit_batch_max,
        |n| values::count(*n, 1),
    );
    spool.cache_size = opt(
        src,
        "spool.cache_size",
        &s.cache_size,
        spool.cache_size,
        |v| {
            values::size(v)
                .and_then(|n| usize::try_from(n).map_err(|_| format!("{n} is out of range")))
        },
    );
    // A repeat comes within minutes of the crash it follows; a day at least leaves room for a
    // node that was down overnight.
    spool.transfer_memory = opt(
        src,
        "spool.transfer_memory",
        &s.transfer_memory,
        spool.transfer_memory,
        |t| match dur(t)? {
            d if d < Duration::from_secs(86_400) => Err("must be at least 1d".to_owned()),
            d => Ok(d),
        },
    );
    spool
}

pub(crate) fn render(spool: &SpoolSettings, o: &mut String) {
    let _ = writeln!(
        o,
        "[spool]\ncommit_batch_max = {}\ncache_size = {}\ntransfer_memory = {}\n",
        spool.commit_batch_max,
        spool.cache_size,
        quote_duration(spool.transfer_memory)
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::Config;

    fn parse(text: &str) -> Result<Config, crate::ConfigErrors> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn transfer_ids_are_remembered_a_week_unless_set_and_never_less_than_a_day() {
        let spool = parse("").expect("valid").spool;
        assert_eq!(spool.transfer_memory, Duration::from_secs(7 * 86_400));
        let spool = parse("[spool]\ntransfer_memory = \"30d\"\n")
            .expect("valid")
            .spool;
        assert_eq!(spool.transfer_memory, Duration::from_secs(30 * 86_400));
        let errors = parse("[spool]\n\ntransfer_memory = \"2h\"\n")
            .expect_err("too short")
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_str()),
            (3, "spool.transfer_memory")
        );
        assert!(errors[0].message.contains("at least 1d"), "{errors:?}");
        let shown = parse("[spool]\ntransfer_memory = \"2d\"\n")
            .expect("valid")
            .render();
        assert!(shown.contains("transfer_memory = \"2days\""), "{shown}");
    }
}
