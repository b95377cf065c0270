//! UTC days as RFC 8460 §4.1 reports them: a day number (days since 1970-01-01), its civil date
//! and the RFC 3339 timestamps of its first and last second. Clocks and time zones are left to
//! the caller; everything here is arithmetic.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: u64 = 86_400;

/// One UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Day(pub u32);

impl Day {
    /// The UTC day `at` falls in; times before 1970 count as day 0.
    pub fn of(at: SystemTime) -> Day {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Day(u32::try_from(secs / SECS_PER_DAY).unwrap_or(u32::MAX))
    }

    /// The day before this one (day 0 stays day 0).
    pub fn previous(self) -> Day {
        Day(self.0.saturating_sub(1))
    }

    /// Unix seconds of 00:00:00.
    pub fn start_secs(self) -> u64 {
        u64::from(self.0) * SECS_PER_DAY
    }

    /// Unix seconds of 23:59:59, the last second the report covers.
    pub fn end_secs(self) -> u64 {
        self.start_secs() + SECS_PER_DAY - 1
    }

    /// The instant the day is over (the next midnight).
    pub fn closes_at(self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(self.start_secs() + SECS_PER_DAY)
    }

    /// `YYYY-MM-DDT00:00:00Z`.
    pub fn start_datetime(self) -> String {
        format!("{self}T00:00:00Z")
    }

    /// `YYYY-MM-DDT23:59:59Z`.
    pub fn end_datetime(self) -> String {
        format!("{self}T23:59:59Z")
    }

    /// Parses `YYYY-MM-DD` (a real calendar date from 1970 on).
    pub fn parse(text: &str) -> Option<Day> {
        let mut fields = text.split('-');
        let (y, m, d) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        let days = days_from_civil(y, m, d);
        u32::try_from(days).ok().map(Day)
    }

    fn civil(self) -> (i64, u32, u32) {
        civil_from_days(i64::from(self.0))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_day_numbers_convert_both_ways() {
        let cases = [
            ("1970-01-01", 0),
            ("2000-02-29", 11_016),
            ("2016-04-01", 16_892),
            ("2024-12-31", 20_088),
        ];
        for (text, number) in cases {
            assert_eq!(Day::parse(text), Some(Day(number)), "{text}");
            assert_eq!(Day(number).to_string(), text);
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        for text in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024-1-01",
            "x",
            "1969-12-31",
        ] {
            assert_eq!(Day::parse(text), None, "{text}");
        }
    }

    #[test]
    fn rfc_8460_4_1_a_report_covers_the_whole_utc_day() {
        let day = Day::parse("2016-04-01").unwrap();
        assert_eq!(day.start_datetime(), "2016-04-01T00:00:00Z");
        assert_eq!(day.end_datetime(), "2016-04-01T23:59:59Z");
        assert_eq!(day.end_secs() - day.start_secs(), 86_399);
        assert_eq!(Day::of(day.closes_at()), Day(day.0 + 1));
    }
}
