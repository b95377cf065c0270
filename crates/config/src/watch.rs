//! `[watch]` → `strictmx_delivery::watch::WatchSettings`: when many destinations dropping
//! STARTTLS at once raise the site-wide downgrade alarm, and how long destination policy
//! changes are kept. Noticing the changes is `strictmx-delivery`'s.

use std::fmt::Write;

use strictmx_delivery::watch::WatchSettings;

use crate::error::Source;
use crate::raw::RawWatch;
use crate::validate::{dur, opt, quote_duration};

pub(crate) fn build(raw: Option<&RawWatch>, src: &mut Source<'_>) -> WatchSettings {
    let d = WatchSettings::default();
    let Some(w) = raw else {
        return d;
    };
    WatchSettings {
        alarm_destinations: opt(
            src,
            "watch.alarm_destinations",
            &w.alarm_destinations,
            d.alarm_destinations,
            |n| match usize::try_from(*n) {
                Ok(n) if n >= 2 => Ok(n),
                _ => Err(format!("{n} is not a count of at least 2 destinations")),
            },
        ),
        alarm_window: opt(
            src,
            "watch.alarm_window",
            &w.alarm_window,
            d.alarm_window,
            dur,
        ),
        keep: opt(src, "watch.keep", &w.keep, d.keep, dur),
    }
}

pub(crate) fn render(w: &WatchSettings, o: &mut String) {
    let _ = writeln!(
        o,
        "[watch]\nalarm_destinations = {}\nalarm_window = {}\nkeep = {}\n",
        w.alarm_destinations,
        quote_duration(w.alarm_window),
        quote_duration(w.keep)
    );
}
