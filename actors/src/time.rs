//! Time arithmetic that saturates: "no limit" settings (`Duration::MAX`)
//! mean no limit, never an overflow panic.

use std::time::Duration;

use actix_rt::time::Instant;

/// Far enough to never come, near enough to be representable (tokio's own
/// "far future" is about 30 years too).
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + d`, or a far-future instant when that does not fit.
pub(crate) fn saturating_add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// `d * factor`, saturating at `Duration::MAX` (and zero for a factor that
/// is not a positive number).
pub(crate) fn scale(d: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_to_the_far_future() {
        let now = Instant::now();
        assert_eq!(
            saturating_add(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(saturating_add(now, Duration::MAX) >= now + FAR);
    }

    #[test]
    fn scaling_saturates() {
        assert_eq!(scale(Duration::MAX, 1.0), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(10), 0.5), Duration::from_secs(5));
        assert_eq!(scale(Duration::from_secs(10), f64::NAN), Duration::ZERO);
    }
}
