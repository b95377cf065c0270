//! Durations in text for operators (error messages, `explain`, `queue`): `10s`, `250ms`,
//! `1day`, through humantime, never Rust's Debug form (`10.00209695s`). JSON output keeps
//! numbers and is not formatted here.

use std::fmt;
use std::time::Duration;

/// Shows a duration rounded for people: to the millisecond below 10 s, to the second from
/// 10 s up (a lookup that gave up after `10.002s` took "10s").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let rounded = if millis < 10_000 {
            u64::try_from(millis).map_or(Duration::MAX, Duration::from_millis)
        } else {
            Duration::from_secs(self.0.as_secs() + u64::from(self.0.subsec_millis() >= 500))
        };
        if rounded.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(rounded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_configuration_with_at_most_millisecond_precision() {
        for (duration, shown) in [
            (Duration::from_nanos(10_002_096_950), "10s"),
            (Duration::from_millis(10_600), "11s"),
            (Duration::from_nanos(1_500_400_000), "1s 500ms"),
            (Duration::from_micros(250_900), "250ms"),
            (Duration::from_micros(300), "0s"),
            (Duration::from_secs(86_400), "1day"),
            (Duration::from_secs(3_600 + 120), "1h 2m"),
        ] {
            assert_eq!(HumanDuration(duration).to_string(), shown, "{duration:?}");
        }
    }
}
