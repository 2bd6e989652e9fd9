//! The supervisor's decisions as plain values: whether to retry, how long to
//! wait, and how to close. No actor, no clock, no runtime: the supervisor
//! feeds in what happened and acts on the answer, and the tests below
//! check every rule directly (as tower's retry `Policy` is testable apart
//! from any service).

use std::time::Duration;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::{ConnectError, DisconnectReason};

/// What follows a failed attempt or a lost link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Attempt `attempt` after `delay`.
    Retry { attempt: u32, delay: Duration },
    /// Stop retrying: the failure is fatal or the retries are used up.
    GiveUp,
}

/// How `close` proceeds, given where the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClosePlan {
    /// A link is up: write the backlog, then Close 1000, within the timeout.
    DrainThenClose,
    /// Down, with a backlog, and the next attempt comes before the
    /// deadline: keep reconnecting until the backlog is written or the
    /// deadline passes.
    ReconnectUntilDeadline,
    /// Nothing to deliver, or no attempt can come before the deadline:
    /// close now and hand the backlog back.
    CloseNow,
}

/// Retry rules and the state they keep (the attempt streak and the
/// backoff).
#[derive(Debug)]
pub(crate) struct ReconnectPolicy {
    backoff: Backoff,
    attempt: u32,
    max_retries: Option<u32>,
    min_uptime: Duration,
    retry_client_errors: bool,
    max_retry_after: Duration,
    fatal_close_codes: Vec<u16>,
}

impl ReconnectPolicy {
    pub(crate) fn new(config: &Config, backoff: Backoff) -> Self {
        Self {
            backoff,
            attempt: 0,
            max_retries: config.max_retries,
            min_uptime: config.min_uptime,
            retry_client_errors: config.retry_client_errors,
            max_retry_after: config.max_retry_after,
            fatal_close_codes: config.fatal_close_codes.clone(),
        }
    }

    /// An attempt starts; returns its number in the current streak
    /// (saturating: a client retrying forever never overflows).
    pub(crate) fn begin_attempt(&mut self) -> u32 {
        self.attempt = self.attempt.saturating_add(1);
        self.attempt
    }

    /// Starts the streak and the backoff over (after `resume`).
    pub(crate) fn reset(&mut self) {
        self.backoff.reset();
        self.attempt = 0;
    }

    /// A delay for retrying a failed rotation: the backoff's curve for its
    /// `failures`-th consecutive failure, without touching the streak of
    /// the link that stays up.
    pub(crate) fn rotation_delay(&self, failures: u32) -> Duration {
        self.backoff.policy().base_delay(failures.max(1))
    }

    /// A number in `[0, 1)` from the backoff's random source (for the
    /// rotation's age jitter).
    pub(crate) fn random_unit(&mut self) -> f64 {
        self.backoff.random_unit()
    }

    /// The attempt number of the current streak.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A link ended after `uptime`, or an attempt failed (`uptime` is
    /// `None`): retry, and when, or give up.
    ///
    /// A link that stayed up for the minimum uptime starts the streak and
    /// the backoff over. Fatal failures (a 4xx refusal other than 408 and
    /// 429 unless client errors are retried, a TLS or handshake failure,
    /// the application's own close, a server close code named fatal) give
    /// up at once; so does a streak that used up `max_retries`. A link the
    /// application paused and resumed before it went down is retried at
    /// once, with a fresh streak. Otherwise the delay is the backoff's, at
    /// least the server's `Retry-After` up to its cap.
    pub(crate) fn after_down(
        &mut self,
        reason: &DisconnectReason,
        uptime: Option<Duration>,
    ) -> Decision {
        if uptime.is_some_and(|u| u >= self.min_uptime) {
            self.reset();
        }
        if matches!(reason, DisconnectReason::Paused) {
            self.reset();
            return Decision::Retry {
                attempt: 1,
                delay: Duration::ZERO,
            };
        }
        let retryable = match reason {
            DisconnectReason::ConnectFailed(e) => e.is_retryable_with(self.retry_client_errors),
            DisconnectReason::ClientClosed => false,
            DisconnectReason::ServerClosed { code, .. } => !self.fatal_close_codes.contains(code),
            _ => true,
        };
        let exhausted = self
            .max_retries
            .is_some_and(|max| self.backoff.retries() >= max);
        if !retryable || exhausted {
            return Decision::GiveUp;
        }
        let mut delay = self.backoff.next_delay();
        if let Some(ra) = reason.connect_error().and_then(ConnectError::retry_after) {
            delay = delay.max(ra.min(self.max_retry_after));
        }
        Decision::Retry {
            attempt: self.attempt.saturating_add(1),
            delay,
        }
    }
}

/// Which endpoint the next attempt goes to.
///
/// Attempts stay on one endpoint until `failover_after` of them fail in a
/// row (a link that stays up less than the minimum uptime counts as a
/// failure too); then they move to the next, wrapping from the last
/// fallback back to the primary. A link that stays up clears the count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoints {
    count: usize,
    current: usize,
    failures: u32,
    failover_after: u32,
}

impl Endpoints {
    pub(crate) fn new(count: usize, failover_after: u32) -> Self {
        Self {
            count: count.max(1),
            current: 0,
            failures: 0,
            failover_after: failover_after.max(1),
        }
    }

    /// The endpoint attempts go to now.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// An attempt on the current endpoint failed, or its link did not stay
    /// up.
    pub(crate) fn failed(&mut self) {
        self.failures += 1;
        if self.failures >= self.failover_after {
            self.failures = 0;
            self.current = (self.current + 1) % self.count;
        }
    }

    /// A link on `endpoint` stayed up (or came up, for a rotation's new
    /// link): attempts stay there.
    pub(crate) fn settled_on(&mut self, endpoint: usize) {
        self.current = endpoint % self.count;
        self.failures = 0;
    }
}

/// How to close: `link_up` whether a link is up, `backlog` whether
/// anything waits to be written, `next_attempt_in` how long until the next
/// attempt when waiting out a delay, `timeout` the close's bound.
pub(crate) fn close_plan(
    link_up: bool,
    backlog: bool,
    next_attempt_in: Option<Duration>,
    timeout: Duration,
) -> ClosePlan {
    if link_up {
        ClosePlan::DrainThenClose
    } else if !backlog || next_attempt_in.is_some_and(|d| d > timeout) {
        ClosePlan::CloseNow
    } else {
        ClosePlan::ReconnectUntilDeadline
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backoff::{BackoffPolicy, Jitter};
    use crate::error::ConnectErrorKind;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Backoff 100 ms doubling to 1 s without jitter, a minimum uptime of
    /// 5 s (the lifecycle's tests use it too).
    pub(crate) fn policy(max_retries: Option<u32>) -> ReconnectPolicy {
        let backoff = match BackoffPolicy::new(ms(100), ms(1000), 2.0, Jitter::None) {
            Ok(p) => Backoff::new(p),
            Err(e) => panic!("valid policy rejected: {e}"),
        };
        let config = Config {
            max_retries,
            min_uptime: ms(5000),
            ..Config::default()
        };
        ReconnectPolicy::new(&config, backoff)
    }

    fn refused() -> DisconnectReason {
        DisconnectReason::ConnectFailed(ConnectError::new(ConnectErrorKind::Refused))
    }

    fn retry(attempt: u32, delay: u64) -> Decision {
        Decision::Retry {
            attempt,
            delay: ms(delay),
        }
    }

    #[test]
    fn retries_with_growing_delays_until_max_retries() {
        let mut p = policy(Some(2));
        assert_eq!(p.begin_attempt(), 1);
        assert_eq!(p.after_down(&refused(), None), retry(2, 100));
        assert_eq!(p.begin_attempt(), 2);
        assert_eq!(p.after_down(&refused(), None), retry(3, 200));
        assert_eq!(p.begin_attempt(), 3);
        assert_eq!(p.after_down(&refused(), None), Decision::GiveUp);
    }

    #[test]
    fn a_stable_link_starts_over_and_a_short_one_does_not() {
        let mut p = policy(None);
        p.begin_attempt();
        assert_eq!(p.after_down(&refused(), None), retry(2, 100));
        p.begin_attempt();
        // Up for less than the minimum uptime: the streak goes on.
        assert_eq!(
            p.after_down(&DisconnectReason::Dropped, Some(ms(10))),
            retry(3, 200)
        );
        p.begin_attempt();
        assert_eq!(
            p.after_down(&DisconnectReason::Dropped, Some(ms(5000))),
            retry(1, 100)
        );
    }

    #[test]
    fn fatal_failures_give_up_at_once() {
        let mut p = policy(None);
        p.begin_attempt();
        let unauthorized = DisconnectReason::ConnectFailed(ConnectError::http(401, None));
        assert_eq!(p.after_down(&unauthorized, None), Decision::GiveUp);
        assert_eq!(
            p.after_down(&DisconnectReason::ClientClosed, Some(ms(1))),
            Decision::GiveUp
        );
        let tls = DisconnectReason::ConnectFailed(ConnectError::new(ConnectErrorKind::Tls));
        assert_eq!(p.after_down(&tls, None), Decision::GiveUp);
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let mut p = policy(None);
        p.begin_attempt();
        let busy = |secs| {
            DisconnectReason::ConnectFailed(ConnectError::http(
                503,
                Some(Duration::from_secs(secs)),
            ))
        };
        assert_eq!(p.after_down(&busy(2), None), retry(2, 2000));
        assert_eq!(
            p.after_down(&busy(86_400), None),
            Decision::Retry {
                attempt: 2,
                delay: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn attempt_numbers_saturate() {
        let mut p = policy(None);
        p.attempt = u32::MAX - 1;
        assert_eq!(p.begin_attempt(), u32::MAX);
        assert_eq!(p.begin_attempt(), u32::MAX);
        assert!(matches!(
            p.after_down(&refused(), None),
            Decision::Retry {
                attempt: u32::MAX,
                ..
            }
        ));
    }

    #[test]
    fn fatal_close_codes_give_up_and_others_retry() {
        let backoff = Backoff::new(BackoffPolicy::default());
        let config = Config {
            fatal_close_codes: vec![4001],
            ..Config::default()
        };
        let mut p = ReconnectPolicy::new(&config, backoff);
        let closed = |code| DisconnectReason::ServerClosed {
            code,
            reason: String::new(),
        };
        p.begin_attempt();
        assert!(matches!(
            p.after_down(&closed(4000), Some(ms(1))),
            Decision::Retry { .. }
        ));
        assert_eq!(p.after_down(&closed(4001), Some(ms(1))), Decision::GiveUp);
    }

    #[test]
    fn a_resumed_pause_retries_at_once_with_a_fresh_streak() {
        let mut p = policy(Some(1));
        p.begin_attempt();
        assert_eq!(p.after_down(&refused(), None), retry(2, 100));
        p.begin_attempt();
        assert_eq!(
            p.after_down(&DisconnectReason::Paused, Some(ms(1))),
            retry(1, 0)
        );
    }

    #[test]
    fn endpoints_fail_over_in_order_and_wrap_to_the_primary() {
        let mut e = Endpoints::new(3, 2);
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(e.current());
            e.failed();
        }
        assert_eq!(seen, [0, 0, 1, 1, 2, 2, 0]);
        e.failed();
        e.settled_on(1);
        e.failed();
        assert_eq!(e.current(), 1, "a success clears the count");
        e.failed();
        assert_eq!(e.current(), 2);
    }

    #[test]
    fn close_plans() {
        let t = Duration::from_secs(10);
        assert_eq!(close_plan(true, true, None, t), ClosePlan::DrainThenClose);
        assert_eq!(close_plan(false, false, None, t), ClosePlan::CloseNow);
        assert_eq!(
            close_plan(false, true, Some(ms(200)), t),
            ClosePlan::ReconnectUntilDeadline
        );
        assert_eq!(
            close_plan(false, true, None, t),
            ClosePlan::ReconnectUntilDeadline,
            "an attempt under way"
        );
        assert_eq!(
            close_plan(false, true, Some(Duration::from_secs(86_400)), t),
            ClosePlan::CloseNow,
            "the next attempt comes after the deadline"
        );
    }
}
