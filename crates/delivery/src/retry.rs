//! The retry schedule: exponential backoff with jitter and a cap, and the queue lifetime.
//!
//! Pure arithmetic on `SystemTime`; the runner decides when to ask and what to do with the answer,
//! and `strictmx-config` builds and validates the settings.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// How often and for how long a deferred recipient is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Wait after the first failed attempt.
    pub initial: Duration,
    /// Each further failure multiplies the wait by this factor (values below 1 count as 1).
    pub factor: f64,
    /// The wait never grows beyond this (before jitter).
    pub max_interval: Duration,
    /// Relative jitter: 0.2 spreads each wait uniformly over ±20 %. Clamped to `0.0..=0.9`.
    pub jitter: f64,
    /// A message still undelivered this long after it arrived bounces with 5.4.7.
    pub max_lifetime: Duration,
    /// After this long undelivered, the sender gets one delay DSN; `None` never sends one.
    pub delay_dsn_after: Option<Duration>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            initial: Duration::from_secs(5 * 60),
            factor: 2.0,
            max_interval: Duration::from_secs(4 * 3600),
            jitter: 0.2,
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
            delay_dsn_after: Some(Duration::from_secs(4 * 3600)),
        }
    }
}

/// The largest jitter honoured: beyond it a retry could land almost immediately.
const MAX_JITTER: f64 = 0.9;

impl RetrySettings {
    /// The wait after `attempts` failed attempts, before jitter: `initial * factor^(attempts-1)`,
    /// capped at `max_interval` (and never below `initial`, should the cap be set lower).
    pub fn interval(&self, attempts: u32) -> Duration {
        let factor = if self.factor.is_finite() && self.factor > 1.0 {
            self.factor
        } else {
            1.0
        };
        let exponent = i32::try_from(attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let cap = self.max_interval.max(self.initial).as_secs_f64();
        let raw = self.initial.as_secs_f64() * factor.powi(exponent);
        // `raw` may be infinite for large exponents; `min` keeps it at the cap.
        Duration::from_secs_f64(raw.min(cap))
    }

    /// When to try again after `attempts` failed attempts, `now` being the time of the last one.
    ///
    /// The result lies within `now + interval * (1 ± jitter)`, so it is never earlier than
    /// `now + initial * (1 - jitter)` nor later than `now + max_interval * (1 + jitter)`.
    pub fn next_attempt(&self, attempts: u32, now: SystemTime, rng: &mut impl Rng) -> SystemTime {
        let jitter = self.effective_jitter();
        let base = self.interval(attempts).as_secs_f64();
        let spread = if jitter > 0.0 {
            rng.random_range((1.0 - jitter)..=(1.0 + jitter))
        } else {
            1.0
        };
        now + Duration::from_secs_f64(base * spread)
    }

    /// Whether a message that arrived at `first_seen` has outlived `max_lifetime` at `now`.
    pub fn expired(&self, first_seen: SystemTime, now: SystemTime) -> bool {
        age(first_seen, now) >= self.max_lifetime
    }

    /// Whether a message that arrived at `first_seen` is old enough for a delay DSN at `now`.
    pub fn delay_dsn_due(&self, first_seen: SystemTime, now: SystemTime) -> bool {
        self.delay_dsn_after
            .is_some_and(|after| age(first_seen, now) >= after)
    }

    /// The last moment a message that arrived at `first_seen` will be retried (for
    /// `Will-Retry-Until`, RFC 3464 §2.3.9).
    pub fn retry_until(&self, first_seen: SystemTime) -> SystemTime {
        first_seen + self.max_lifetime
    }

    fn effective_jitter(&self) -> f64 {
        if self.jitter.is_finite() {
            self.jitter.clamp(0.0, MAX_JITTER)
        } else {
            0.0
        }
    }
}

/// Time elapsed from `from` to `to`; zero when the clock went backwards.
fn age(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{SeedableRng, rngs::StdRng};

    fn epoch_plus(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_interval_doubles_from_five_minutes_up_to_four_hours() {
        let settings = RetrySettings::default();
        let table = [
            (0, 300),
            (1, 300),
            (2, 600),
            (3, 1200),
            (4, 2400),
            (5, 4800),
            (6, 9600),
            (7, 14400),
            (8, 14400),
            (u32::MAX, 14400),
        ];
        for (attempts, secs) in table {
            assert_eq!(
                settings.interval(attempts),
                Duration::from_secs(secs),
                "attempts {attempts}"
            );
        }
    }

    #[test]
    fn a_factor_below_one_or_not_a_number_never_shrinks_the_interval() {
        for factor in [0.5, 0.0, -3.0, f64::NAN, f64::INFINITY] {
            let settings = RetrySettings {
                factor,
                ..RetrySettings::default()
            };
            assert_eq!(settings.interval(5), settings.initial, "factor {factor}");
        }
    }

    #[test]
    fn zero_jitter_gives_the_exact_interval() {
        let settings = RetrySettings {
            jitter: 0.0,
            ..RetrySettings::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let now = epoch_plus(1_000_000);
        assert_eq!(
            settings.next_attempt(3, now, &mut rng),
            now + Duration::from_secs(1200)
        );
    }

    #[test]
    fn a_message_expires_exactly_at_its_lifetime() {
        let settings = RetrySettings::default();
        let arrived = epoch_plus(1_000_000);
        let lifetime = settings.max_lifetime;
        assert!(!settings.expired(arrived, arrived + lifetime - Duration::from_secs(1)));
        assert!(settings.expired(arrived, arrived + lifetime));
        // A clock that went backwards never expires anything.
        assert!(!settings.expired(arrived, epoch_plus(0)));
    }

    #[test]
    fn the_delay_dsn_is_due_after_its_threshold_and_never_when_disabled() {
        let settings = RetrySettings::default();
        let arrived = epoch_plus(1_000_000);
        assert!(!settings.delay_dsn_due(arrived, arrived + Duration::from_secs(3 * 3600)));
        assert!(settings.delay_dsn_due(arrived, arrived + Duration::from_secs(4 * 3600)));
        let never = RetrySettings {
            delay_dsn_after: None,
            ..settings
        };
        assert!(!never.delay_dsn_due(arrived, arrived + Duration::from_secs(100 * 3600)));
    }

    fn arbitrary_settings() -> impl Strategy<Value = RetrySettings> {
        (1u64..3600, 1.0f64..4.0, 1u64..86_400, 0.0f64..0.9).prop_map(
            |(initial, factor, max, jitter)| RetrySettings {
                initial: Duration::from_secs(initial),
                factor,
                max_interval: Duration::from_secs(max),
                jitter,
                ..RetrySettings::default()
            },
        )
    }

    proptest! {
        #[test]
        fn the_next_attempt_stays_within_the_jittered_bounds(
            settings in arbitrary_settings(),
            attempts in 0u32..200,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let now = epoch_plus(1_700_000_000);
            let next = settings.next_attempt(attempts, now, &mut rng);
            let cap = settings.max_interval.max(settings.initial).as_secs_f64();
            let earliest = settings.initial.as_secs_f64() * (1.0 - settings.jitter);
            let latest = cap * (1.0 + settings.jitter);
            let wait = next.duration_since(now).expect("next attempt lies after now").as_secs_f64();
            // One microsecond of slack for floating-point rounding in `from_secs_f64`.
            prop_assert!(wait >= earliest - 1e-6, "wait {wait} < earliest {earliest}");
            prop_assert!(wait <= latest + 1e-6, "wait {wait} > latest {latest}");
        }

        #[test]
        fn the_interval_never_decreases_with_more_attempts(
            settings in arbitrary_settings(),
            attempts in 0u32..200,
        ) {
            prop_assert!(settings.interval(attempts) <= settings.interval(attempts + 1));
        }

        #[test]
        fn the_mean_wait_never_decreases_with_more_attempts(
            settings in arbitrary_settings(),
            attempts in 0u32..40,
            seed in any::<u64>(),
        ) {
            // Jitter is symmetric, so the expected wait is the interval; check the sample means
            // of many draws stay ordered within the spread that jitter allows.
            let mut rng = StdRng::seed_from_u64(seed);
            let now = epoch_plus(1_700_000_000);
            let mean = |attempts: u32, rng: &mut StdRng| {
                let draws = 400;
                let total: f64 = (0..draws)
                    .map(|_| {
                        settings
                            .next_attempt(attempts, now, rng)
                            .duration_since(now)
                            .map_or(0.0, |wait| wait.as_secs_f64())
                    })
                    .sum();
                total / f64::from(draws)
            };
            let this = mean(attempts, &mut rng);
            let next = mean(attempts + 1, &mut rng);
            let interval = settings.interval(attempts).as_secs_f64();
            // The standard error of a mean of 400 uniform draws is below 3 % of the jitter
            // spread; allow 6 standard errors.
            let tolerance = interval * settings.jitter * 0.2;
            prop_assert!(next + tolerance >= this, "mean {next} after {this}");
        }
    }
}
