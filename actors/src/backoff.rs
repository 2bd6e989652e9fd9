//! Exponential backoff with jitter.
//!
//! The delay before retry `n` (1-based) grows as `initial × factorⁿ⁻¹`, capped
//! at `max`, and is then spread by the [`Jitter`] mode so that many clients
//! dropped at once do not come back at once. The random source is injectable
//! ([`RandomSource`]) so that tests see exact delays.
//!
//! ```
//! use std::time::Duration;
//! use actix_tether_actors::{Backoff, BackoffPolicy, Jitter};
//!
//! let policy = BackoffPolicy::new(
//!     Duration::from_millis(100),
//!     Duration::from_secs(1),
//!     2.0,
//!     Jitter::None,
//! )?;
//! let mut backoff = Backoff::new(policy);
//! let delays: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1000].map(Duration::from_millis));
//! # Ok::<(), actix_tether_actors::ConfigError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::RngExt;

use crate::error::ConfigError;

/// How a backoff delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The exact exponential delay.
    None,
    /// Uniform in `[0, delay]`: spreads clients the most. The default: in a
    /// reconnect storm of 1,000 clients (`examples/bench`) the busiest 100 ms
    /// saw 14% of them come back, against 22% with [`Jitter::Equal`].
    #[default]
    Full,
    /// Uniform in `[delay/2, delay]`: never shorter than half the delay.
    Equal,
    /// Uniform in `[initial, previous × factor]`, capped at `max`
    /// ("decorrelated jitter"): each delay depends on the last one.
    Decorrelated,
}

impl FromStr for Jitter {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Jitter::None),
            "full" => Ok(Jitter::Full),
            "equal" => Ok(Jitter::Equal),
            "decorrelated" => Ok(Jitter::Decorrelated),
            _ => Err(ConfigError::invalid(
                "jitter",
                "one of none, full, equal, decorrelated",
            )),
        }
    }
}

/// A validated backoff policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: Jitter,
}

impl Default for BackoffPolicy {
    /// 500 ms initial, 30 s maximum, factor 2, full jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl BackoffPolicy {
    /// A policy, checked: `initial` must be above zero, `max` at least
    /// `initial`, and `factor` a finite number of at least 1.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the first value that breaks them.
    pub fn new(
        initial: Duration,
        max: Duration,
        factor: f64,
        jitter: Jitter,
    ) -> Result<Self, ConfigError> {
        if initial.is_zero() {
            return Err(ConfigError::invalid(
                "backoff_initial",
                "must be above zero",
            ));
        }
        if max < initial {
            return Err(ConfigError::invalid(
                "backoff_max",
                "must be at least the initial delay",
            ));
        }
        if !factor.is_finite() || factor < 1.0 {
            return Err(ConfigError::invalid(
                "backoff_factor",
                "must be a finite number of at least 1",
            ));
        }
        Ok(Self {
            initial,
            max,
            factor,
            jitter,
        })
    }

    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The growth factor.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The jitter mode.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The delay before retry `retry` (1-based) without jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.powi(exp);
        self.cap(secs)
    }

    fn cap(&self, secs: f64) -> Duration {
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(self.max)
        } else {
            self.max
        }
    }
}

/// A source of uniform random numbers in `[0, 1)`.
///
/// The default is a small fast generator seeded from the operating system;
/// tests inject a fixed sequence.
pub trait RandomSource: 'static {
    /// The next number in `[0, 1)`.
    fn next_unit(&mut self) -> f64;
}

impl fmt::Debug for dyn RandomSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RandomSource")
    }
}

impl<F: FnMut() -> f64 + 'static> RandomSource for F {
    fn next_unit(&mut self) -> f64 {
        self()
    }
}

struct OsSeeded(SmallRng);

impl RandomSource for OsSeeded {
    fn next_unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }
}

/// The running state of a backoff: which retry comes next and the previous
/// delay (for decorrelated jitter).
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    random: Box<dyn RandomSource>,
    retry: u32,
    previous: Duration,
}

impl Backoff {
    /// A backoff with an OS-seeded random source.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self::with_random(policy, Box::new(OsSeeded(rand::make_rng())))
    }

    /// A backoff drawing its jitter from `random`.
    pub fn with_random(policy: BackoffPolicy, random: Box<dyn RandomSource>) -> Self {
        Self {
            policy,
            random,
            retry: 0,
            previous: policy.initial,
        }
    }

    /// The delay before the next retry, advancing the state.
    pub fn next_delay(&mut self) -> Duration {
        self.retry = self.retry.saturating_add(1);
        let base = self.policy.base_delay(self.retry);
        let unit = self.random_unit();
        let delay = match self.policy.jitter {
            Jitter::None => base,
            Jitter::Full => crate::time::scale(base, unit),
            Jitter::Equal => (base / 2).saturating_add(crate::time::scale(base / 2, unit)),
            Jitter::Decorrelated => {
                let low = self.policy.initial.as_secs_f64();
                let high = (self.previous.as_secs_f64() * self.policy.factor).max(low);
                self.policy.cap(low + (high - low) * unit)
            }
        };
        self.previous = delay;
        delay
    }

    /// The next number of the random source in `[0, 1]`. A random source
    /// may return anything: NaN and infinities count as the top of the
    /// range (the longest delay, never a hammering zero).
    pub(crate) fn random_unit(&mut self) -> f64 {
        match self.random.next_unit() {
            u if u.is_nan() => 1.0,
            u => u.clamp(0.0, 1.0),
        }
    }

    /// The delays' policy.
    pub(crate) fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// How many delays were handed out since the last reset.
    pub fn retries(&self) -> u32 {
        self.retry
    }

    /// Starts over from the initial delay (after a connection stayed up long
    /// enough).
    pub fn reset(&mut self) {
        self.retry = 0;
        self.previous = self.policy.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(jitter: Jitter) -> BackoffPolicy {
        match BackoffPolicy::new(ms(100), ms(1000), 2.0, jitter) {
            Ok(p) => p,
            Err(e) => panic!("valid policy rejected: {e}"),
        }
    }

    fn fixed(unit: f64) -> Box<dyn RandomSource> {
        Box::new(move || unit)
    }

    #[test]
    fn rejects_invalid_settings() {
        assert!(BackoffPolicy::new(ms(0), ms(10), 2.0, Jitter::None).is_err());
        assert!(BackoffPolicy::new(ms(10), ms(5), 2.0, Jitter::None).is_err());
        assert!(BackoffPolicy::new(ms(10), ms(50), 0.5, Jitter::None).is_err());
        assert!(BackoffPolicy::new(ms(10), ms(50), f64::NAN, Jitter::None).is_err());
        assert!(BackoffPolicy::new(ms(10), ms(50), f64::INFINITY, Jitter::None).is_err());
    }

    #[test]
    fn exponential_growth_caps_at_max() {
        let mut b = Backoff::with_random(policy(Jitter::None), fixed(0.5));
        let d: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(d, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(100));
    }

    #[test]
    fn any_random_value_gives_a_delay_within_the_policy() {
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            for unit in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -3.0, 7.0] {
                let mut b = Backoff::with_random(policy(jitter), fixed(unit));
                for _ in 0..5 {
                    assert!(b.next_delay() <= ms(1000), "{jitter:?} {unit}");
                }
            }
            let mut nan = Backoff::with_random(policy(jitter), fixed(f64::NAN));
            let mut top = Backoff::with_random(policy(jitter), fixed(1.0));
            assert_eq!(nan.next_delay(), top.next_delay(), "NaN counts as the top");
        }
    }

    #[test]
    fn huge_retry_counts_stay_at_max() {
        let p = policy(Jitter::None);
        assert_eq!(p.base_delay(u32::MAX), ms(1000));
    }

    #[test]
    fn full_jitter_spans_zero_to_base() {
        let mut low = Backoff::with_random(policy(Jitter::Full), fixed(0.0));
        let mut high = Backoff::with_random(policy(Jitter::Full), fixed(1.0));
        assert_eq!(low.next_delay(), ms(0));
        assert_eq!(high.next_delay(), ms(100));
        let mut mid = Backoff::with_random(policy(Jitter::Full), fixed(0.25));
        mid.next_delay();
        assert_eq!(mid.next_delay(), ms(50));
    }

    #[test]
    fn equal_jitter_keeps_half() {
        let mut low = Backoff::with_random(policy(Jitter::Equal), fixed(0.0));
        assert_eq!(low.next_delay(), ms(50));
        assert_eq!(low.next_delay(), ms(100));
        let mut high = Backoff::with_random(policy(Jitter::Equal), fixed(1.0));
        assert_eq!(high.next_delay(), ms(100));
        assert_eq!(high.next_delay(), ms(200));
    }

    #[test]
    fn decorrelated_jitter_follows_previous_delay() {
        let mut b = Backoff::with_random(policy(Jitter::Decorrelated), fixed(1.0));
        assert_eq!(b.next_delay(), ms(200));
        assert_eq!(b.next_delay(), ms(400));
        assert_eq!(b.next_delay(), ms(800));
        assert_eq!(b.next_delay(), ms(1000));
        let mut low = Backoff::with_random(policy(Jitter::Decorrelated), fixed(0.0));
        assert_eq!(low.next_delay(), ms(100));
        assert_eq!(low.next_delay(), ms(100));
    }

    #[test]
    fn parses_jitter_names() {
        assert_eq!("FULL".parse::<Jitter>(), Ok(Jitter::Full));
        assert!("sometimes".parse::<Jitter>().is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ]
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds_and_grow(
            initial_ms in 1u64..5_000,
            extra_ms in 0u64..60_000,
            factor in 1.0f64..8.0,
            jitter in jitter(),
            units in proptest::collection::vec(0.0f64..1.0, 1..40),
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra_ms);
            let policy = BackoffPolicy::new(initial, max, factor, jitter).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut seq = units.clone().into_iter().cycle();
            let mut b = Backoff::with_random(policy, Box::new(move || seq.next().unwrap_or(0.5)));
            let mut last_base = Duration::ZERO;
            for retry in 1..=units.len() as u32 {
                let base = policy.base_delay(retry);
                prop_assert!(base >= last_base, "base delays never shrink");
                prop_assert!(base <= max);
                last_base = base;
                let d = b.next_delay();
                prop_assert!(d <= max, "{:?} above max {:?}", d, max);
                match jitter {
                    Jitter::None => prop_assert_eq!(d, base),
                    Jitter::Full => prop_assert!(d <= base),
                    Jitter::Equal => prop_assert!(d >= base / 2 && d <= base),
                    Jitter::Decorrelated => prop_assert!(d >= initial.min(max)),
                }
            }
        }
    }
}
