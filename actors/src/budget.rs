//! A reconnect budget shared by many clients: a token bucket that paces
//! their attempts, so that a fleet whose server comes back does not all
//! connect at once.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_rt::time::Instant;

use crate::error::ConfigError;

/// A token bucket that any number of clients consult before each attempt
/// (`ClientBuilder::reconnect_budget`, [`Engine::reconnect_budget`](crate::Engine::reconnect_budget)).
///
/// It holds up to `burst` tokens and gains `rate` per second. An attempt
/// takes one: at once while tokens are left, otherwise the attempt waits
/// for the token it reserved, so attempts beyond the burst go out evenly at
/// `rate` per second, in the order they asked. A reservation is never
/// refused and never waits longer than its place in line: with `n` clients
/// asking at once, the last waits `(n - burst) / rate` seconds.
///
/// Clones share one bucket; it is `Send + Sync`, so clients on several
/// arbiters (a [`Pool`](https://docs.rs/actix-tether)) can share it. The
/// wait counts on the runtime's clock of the client that asks.
#[derive(Clone)]
pub struct ReconnectBudget {
    inner: Arc<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Time between two tokens.
    interval: Duration,
    /// How far ahead of now the bucket may be drawn: `burst - 1` intervals.
    tolerance: Duration,
    /// When the next token is due (the "theoretical arrival time" of GCRA);
    /// `None` before the first reservation.
    due: Option<Instant>,
    rate: f64,
    burst: u32,
}

impl fmt::Debug for ReconnectBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ReconnectBudget")
            .field("rate", &b.rate)
            .field("burst", &b.burst)
            .finish()
    }
}

impl ReconnectBudget {
    /// A bucket of `burst` tokens (at least one) refilled at `rate` tokens
    /// per second (above zero and finite, at most one per microsecond).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `rate` or `burst`.
    pub fn new(rate: f64, burst: u32) -> Result<Self, ConfigError> {
        if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
            return Err(ConfigError::invalid(
                "reconnect_budget rate",
                "must be above zero and at most 1000000 per second",
            ));
        }
        if burst == 0 {
            return Err(ConfigError::invalid(
                "reconnect_budget burst",
                "must be at least 1",
            ));
        }
        // A rate so low that its interval does not fit a Duration means one
        // token per burst, ever.
        let interval = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX);
        let bucket = Bucket {
            interval,
            tolerance: interval.saturating_mul(burst - 1),
            due: None,
            rate,
            burst,
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(bucket)),
        })
    }

    /// Takes a token for an attempt that would start at `at`: returns how
    /// long after `at` it may start (zero while the bucket has tokens).
    pub fn reserve(&self, at: Instant) -> Duration {
        let mut b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let due = b.due.map_or(at, |d| d.max(at));
        // Tokens saved up: the attempt may go up to `tolerance` ahead of
        // the due time, never before `at`.
        let allowed = due.checked_sub(b.tolerance).unwrap_or(at).max(at);
        b.due = Some(crate::time::saturating_add(due, b.interval));
        allowed.saturating_duration_since(at)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[actix_rt::test]
    async fn a_burst_goes_at_once_and_the_rest_at_the_rate() {
        let budget = ReconnectBudget::new(10.0, 3).unwrap();
        let now = Instant::now();
        let waits: Vec<u64> = (0..6)
            .map(|_| budget.reserve(now).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 0, 0, 100, 200, 300]);
        // Idle for a second: the bucket is full again, not fuller.
        let later = now + Duration::from_secs(2);
        let waits: Vec<u64> = (0..4)
            .map(|_| budget.reserve(later).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 0, 0, 100]);
    }

    #[actix_rt::test]
    async fn clones_share_one_bucket_across_threads() {
        let budget = ReconnectBudget::new(100.0, 1).unwrap();
        let now = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = budget.clone();
                std::thread::spawn(move || (0..25).map(|_| b.reserve(now)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        let want: Vec<Duration> = (0..100).map(|i| Duration::from_millis(10 * i)).collect();
        assert_eq!(all, want, "every slot taken once");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(ReconnectBudget::new(0.0, 1).is_err());
        assert!(ReconnectBudget::new(f64::NAN, 1).is_err());
        assert!(ReconnectBudget::new(1.0, 0).is_err());
    }
}
