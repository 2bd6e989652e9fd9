//! The client's lifecycle as a pure state machine: what happened in, with
//! the current instant, and what the supervisor does next out. No actix, no
//! clock, no I/O (in the manner of quinn-proto's `Connection`): the
//! supervisor feeds [`Input`]s to [`Lifecycle::handle`], then drains
//! [`Lifecycle::poll_action`] and carries each [`Action`] out, in order.
//!
//! It owns every decision that coordinates the actors: when to attempt and
//! on which endpoint (with the retry policy, the endpoints' failover and the
//! reconnect budget), what a lost link leads to, pausing and resuming,
//! closing, giving up, and when a rotation may begin; a rotation's own
//! phases (`switch.rs`) are nested in the `Up` stage. Which link a report
//! is about (the current one, a rotation's new one, one already replaced)
//! stays with the supervisor, which holds the links.
//!
//! The stages progress one way towards `Closed`: once closing, a client
//! never pauses or rotates again; once given up, it only closes.
//!
//! | stage                 | state handles read | what is under way |
//! |-----------------------|--------------------|-------------------|
//! | `New`                 | Connecting | nothing yet |
//! | `Connecting`          | Connecting | an attempt |
//! | `Waiting`             | Waiting    | a delay before the next attempt |
//! | `Up { rotation }`     | Connected  | a link (and perhaps a rotation's second one) |
//! | `Pausing { resume }`  | Connected  | a pause closing the link (`resume` if asked meanwhile) |
//! | `Paused`              | Paused     | nothing, until resumed |
//! | `Closing(toward)`     | Closing    | an attempt, a delay, or a link draining |
//! | `GaveUp`              | GaveUp     | nothing, until closed |
//! | `Closed`              | Closed     | the queue's shutdown |
//!
//! What each input does (every pair is spelled out in [`Lifecycle::handle`];
//! a dash means the input is ignored in that stage):
//!
//! | input        | New | Connecting | Waiting | Up | Pausing | Paused | Closing | GaveUp | Closed |
//! |--------------|-----|------------|---------|----|---------|--------|---------|--------|--------|
//! | Start        | attempt now, or wait for the budget | - | - | - | - | - | - | - | - |
//! | AttemptDue   | - | - | attempt | - | - | - | attempt, if waiting | - | - |
//! | Opened       | refuse | serve: Up | refuse | refuse | refuse | refuse | serve and drain, if connecting | refuse | refuse |
//! | Down         | - | retry or give up | - | retry or give up | Paused (or retry if resumed) | - | finish when nothing is left to write, else retry or give up and finish | - | - |
//! | Pause        | - | cancel: Paused | cancel: Paused | close the link: Pausing | stay paused | - | - | - | - |
//! | Resume       | - | - | - | - | resume once down | attempt: Waiting | - | - | - |
//! | ReconnectNow | - | - | attempt now | - | - | - | attempt now, if waiting | - | - |
//! | Close        | - | Closing, or finish | Closing, or finish | drain: Closing | drain: Closing | reconnect to drain, or finish | - | finish | - |
//! | Deadline     | - | - | - | - | - | - | finish | - | - |
//! | Drained      | - | - | - | - | - | - | close the link, if up | - | - |
//! | Rotate       | - | - | - | begin, unless rotating | - | - | - | - | - |
//! | Rotation     | - | - | - | the phase decides | - | - | - | - | - |
//! | Crashed      | stop | stop | stop | stop | stop | stop | stop | stop | stop |
//!
//! "Retry or give up" is the policy's call (`policy.rs`); a link up less
//! than the minimum uptime, or an attempt that failed, counts against its
//! endpoint unless the application took it down (a pause, a close).

use std::collections::VecDeque;
use std::time::Duration;

use actix_rt::time::Instant;

use super::switch::{self, Happened, Phase};
use crate::budget::ReconnectBudget;
use crate::error::DisconnectReason;
use crate::events::{Event, RotateReason, State};
use crate::policy::{close_plan, ClosePlan, Decision, Endpoints, ReconnectPolicy};

/// Where the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Created, not started.
    New,
    /// An attempt is under way.
    Connecting,
    /// Waiting until `at` for the next attempt.
    Waiting { at: Instant },
    /// A link is up; a rotation's phase while one is under way.
    Up { rotation: Option<Phase> },
    /// A pause is closing the link; `resume` if resumed meanwhile.
    Pausing { resume: bool },
    /// Kept down until resumed.
    Paused,
    /// Closing: delivering what is queued before the deadline.
    Closing(Toward),
    /// Retries stopped; only closing is left.
    GaveUp,
    /// Finished: the queue is shutting down, the actors stop.
    Closed,
}

/// What a closing client is doing to deliver its backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Toward {
    /// An attempt is under way.
    Connecting,
    /// Waiting until `at` for the next attempt.
    Waiting { at: Instant },
    /// A link is up: the queue drains into it, then it closes.
    Up,
}

/// What happened, or what the application asked for.
#[derive(Debug, Clone)]
pub(super) enum Input {
    /// The supervisor started.
    Start,
    /// The wait for the next attempt is over.
    AttemptDue,
    /// The attempt opened a link.
    Opened,
    /// The attempt failed (`uptime` is `None`) or the current link ended
    /// after `uptime`; `backlog` if anything waits to be written (queued,
    /// or a tail coming back for replay).
    Down {
        reason: DisconnectReason,
        uptime: Option<Duration>,
        backlog: bool,
    },
    /// `Client::pause`.
    Pause,
    /// `Client::resume`.
    Resume,
    /// `Client::reconnect_now`.
    ReconnectNow,
    /// `close` (or the last handle dropped), bounded by `timeout`;
    /// `backlog` if anything is queued.
    Close { timeout: Duration, backlog: bool },
    /// The close's deadline passed.
    Deadline,
    /// The queue is drained (asked for by [`Action::DrainThenClose`]).
    Drained,
    /// A rotation is due or asked for.
    Rotate(RotateReason),
    /// Something happened to a rotation under way; `reason` is why its new
    /// link ended, for [`Happened::NewLinkDown`].
    Rotation(Happened, DisconnectReason),
    /// A connection actor panicked.
    Crashed,
}

/// What the supervisor does next.
#[derive(Debug, Clone)]
pub(super) enum Action {
    /// Handles read `state` now (`new_link`: a link just came up).
    State { state: State, new_link: bool },
    /// Tell subscribers.
    Publish(Event),
    /// Start attempt `number` (in the current streak) on `endpoint` now.
    Connect { number: u32, endpoint: usize },
    /// After `wait`, feed [`Input::AttemptDue`].
    ConnectAfter(Duration),
    /// Cancel the attempt under way or the wait for it.
    CancelAttempt,
    /// The link just opened becomes the current one: announce it
    /// (`attempt` of the streak) and write its setup lane, then the backlog;
    /// `closing` tells the on-connect hook.
    Serve { attempt: u32, closing: bool },
    /// Drop the link just opened: nobody wants it.
    Refuse,
    /// Time the current link's next rotation (its age, or its return to
    /// the primary).
    ArmRotationTimer,
    /// No rotation is timed any more.
    StopRotationTimer,
    /// Open a rotation's second link.
    BeginRotation(RotateReason),
    /// Carry out a rotation's decision; `reason` is why its new link ended.
    Rotation(switch::Decision, DisconnectReason),
    /// Close the current link with 1000.
    CloseLink(DisconnectReason),
    /// Once the queue is drained, feed [`Input::Drained`].
    DrainThenClose,
    /// After this long, feed [`Input::Deadline`].
    CloseDeadline(Duration),
    /// Refuse further sends.
    Seal,
    /// Settle the delivery books for good: waiters learn `Closed`.
    CloseBooks,
    /// End every link, shut the queue down, hand back what is left,
    /// publish `Closed` and stop.
    Finish,
    /// Stop the supervisor now (its handles learn it ended).
    Stop,
}

/// The lifecycle of one client.
#[derive(Debug)]
pub(super) struct Lifecycle {
    stage: Stage,
    policy: ReconnectPolicy,
    endpoints: Endpoints,
    budget: Option<ReconnectBudget>,
    min_uptime: Duration,
    /// Links have a ready gate (a rotation waits for it too).
    gated: bool,
    actions: VecDeque<Action>,
}

impl Lifecycle {
    pub(super) fn new(
        policy: ReconnectPolicy,
        endpoints: Endpoints,
        budget: Option<ReconnectBudget>,
        min_uptime: Duration,
        gated: bool,
    ) -> Self {
        Self {
            stage: Stage::New,
            policy,
            endpoints,
            budget,
            min_uptime,
            gated,
            actions: VecDeque::new(),
        }
    }

    /// The stage.
    pub(super) fn stage(&self) -> Stage {
        self.stage
    }

    /// The state handles read.
    pub(super) fn state(&self) -> State {
        public(self.stage)
    }

    /// Whether the client is closing (a link opened now is told so).
    pub(super) fn closing(&self) -> bool {
        matches!(self.stage, Stage::Closing(_))
    }

    /// The rotation's phase, while one is under way.
    pub(super) fn rotation(&self) -> Option<Phase> {
        match self.stage {
            Stage::Up { rotation } => rotation,
            _ => None,
        }
    }

    /// The attempt number of the current streak.
    pub(super) fn attempt(&self) -> u32 {
        self.policy.attempt()
    }

    /// A number in `[0, 1)` from the backoff's random source (for a
    /// rotation's age jitter).
    pub(super) fn random_unit(&mut self) -> f64 {
        self.policy.random_unit()
    }

    /// How long to wait before retrying after `failures` failed rotations
    /// in a row.
    pub(super) fn rotation_delay(&self, failures: u32) -> Duration {
        self.policy.rotation_delay(failures)
    }

    /// A link on `endpoint` came up to stay (a rotation's new link).
    pub(super) fn settled_on(&mut self, endpoint: usize) {
        self.endpoints.settled_on(endpoint);
    }

    /// What the reconnect budget adds to an attempt that would start at
    /// `at` (taking its token).
    pub(super) fn budget_wait(&self, at: Instant) -> Duration {
        self.budget
            .as_ref()
            .map_or(Duration::ZERO, |b| b.reserve(at))
    }

    /// The next thing to do.
    pub(super) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Takes `input` at `now`, moves to the next stage, and queues what to
    /// do.
    pub(super) fn handle(&mut self, now: Instant, input: Input) {
        use Input as I;
        use Stage as S;
        match (self.stage, input) {
            (S::New, I::Start) => {
                let wait = self.budget_wait(now);
                if wait.is_zero() {
                    self.start_attempt();
                } else {
                    self.wait_for_token(now, wait);
                }
            }
            (
                S::Connecting
                | S::Waiting { .. }
                | S::Up { .. }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(_)
                | S::GaveUp
                | S::Closed,
                I::Start,
            ) => {}

            (S::Waiting { .. } | S::Closing(Toward::Waiting { .. }), I::AttemptDue) => {
                self.start_attempt();
            }
            (
                S::New
                | S::Connecting
                | S::Up { .. }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(Toward::Connecting | Toward::Up)
                | S::GaveUp
                | S::Closed,
                I::AttemptDue,
            ) => {}

            (S::Connecting, I::Opened) => {
                self.stage = S::Up { rotation: None };
                self.serve(false);
                self.push(Action::ArmRotationTimer);
            }
            (S::Closing(Toward::Connecting), I::Opened) => {
                self.stage = S::Closing(Toward::Up);
                self.serve(true);
                self.push(Action::DrainThenClose);
            }
            (
                S::New
                | S::Waiting { .. }
                | S::Up { .. }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(Toward::Waiting { .. } | Toward::Up)
                | S::GaveUp
                | S::Closed,
                I::Opened,
            ) => self.push(Action::Refuse),

            (
                S::Connecting | S::Up { .. } | S::Pausing { resume: true },
                I::Down {
                    reason,
                    uptime,
                    backlog: _,
                },
            ) => {
                self.leave_up();
                self.count_endpoint(&reason, uptime);
                self.retry_or_give_up(now, reason, uptime);
            }
            (S::Pausing { resume: false }, I::Down { reason, uptime, .. }) => {
                self.count_endpoint(&reason, uptime);
                self.enter(S::Paused);
                self.publish(Event::Disconnected {
                    reason: DisconnectReason::Paused,
                    will_retry: false,
                });
            }
            (
                S::Closing(Toward::Connecting | Toward::Up),
                I::Down {
                    reason,
                    uptime,
                    backlog,
                },
            ) => {
                self.count_endpoint(&reason, uptime);
                if backlog {
                    self.retry_or_give_up(now, reason, uptime);
                } else {
                    self.publish(Event::Disconnected {
                        reason,
                        will_retry: false,
                    });
                    self.finish();
                }
            }
            (
                S::New
                | S::Waiting { .. }
                | S::Paused
                | S::Closing(Toward::Waiting { .. })
                | S::GaveUp
                | S::Closed,
                I::Down { .. },
            ) => {}

            (S::Connecting | S::Waiting { .. }, I::Pause) => {
                self.push(Action::CancelAttempt);
                self.enter(S::Paused);
            }
            (S::Up { .. }, I::Pause) => {
                self.leave_up();
                self.stage = S::Pausing { resume: false };
                self.push(Action::CloseLink(DisconnectReason::Paused));
            }
            (S::Pausing { .. }, I::Pause) => self.stage = S::Pausing { resume: false },
            (S::New | S::Paused | S::Closing(_) | S::GaveUp | S::Closed, I::Pause) => {}

            (S::Paused, I::Resume) => {
                self.policy.reset();
                self.wait(now, Duration::ZERO);
            }
            (S::Pausing { .. }, I::Resume) => self.stage = S::Pausing { resume: true },
            (
                S::New
                | S::Connecting
                | S::Waiting { .. }
                | S::Up { .. }
                | S::Closing(_)
                | S::GaveUp
                | S::Closed,
                I::Resume,
            ) => {}

            (S::Waiting { .. } | S::Closing(Toward::Waiting { .. }), I::ReconnectNow) => {
                self.push(Action::CancelAttempt);
                self.start_attempt();
            }
            (
                S::New
                | S::Connecting
                | S::Up { .. }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(Toward::Connecting | Toward::Up)
                | S::GaveUp
                | S::Closed,
                I::ReconnectNow,
            ) => {}

            (S::Up { .. } | S::Pausing { .. }, I::Close { timeout, .. }) => {
                self.push(Action::Seal);
                self.leave_up();
                self.enter(S::Closing(Toward::Up));
                self.push(Action::CloseDeadline(timeout));
                self.push(Action::DrainThenClose);
            }
            (S::Connecting, I::Close { timeout, backlog }) => {
                self.push(Action::Seal);
                self.enter(S::Closing(Toward::Connecting));
                self.plan_close(false, backlog, None, timeout);
            }
            (S::Waiting { at }, I::Close { timeout, backlog }) => {
                self.push(Action::Seal);
                self.enter(S::Closing(Toward::Waiting { at }));
                let next = at.saturating_duration_since(now);
                self.plan_close(false, backlog, Some(next), timeout);
            }
            (S::Paused, I::Close { timeout, backlog }) => {
                // Closing delivers what is queued: a paused client connects
                // again to write it.
                self.push(Action::Seal);
                self.enter(S::Closing(Toward::Connecting));
                let next = backlog.then(|| self.wait(now, Duration::ZERO));
                self.plan_close(false, backlog, next, timeout);
            }
            (S::GaveUp, I::Close { .. }) => {
                self.push(Action::Seal);
                self.finish();
            }
            (S::New | S::Closing(_) | S::Closed, I::Close { .. }) => {}

            (S::Closing(_), I::Deadline) => self.finish(),
            (
                S::New
                | S::Connecting
                | S::Waiting { .. }
                | S::Up { .. }
                | S::Pausing { .. }
                | S::Paused
                | S::GaveUp
                | S::Closed,
                I::Deadline,
            ) => {}

            (S::Closing(Toward::Up), I::Drained) => {
                self.push(Action::CloseLink(DisconnectReason::ClientClosed));
            }
            (
                S::New
                | S::Connecting
                | S::Waiting { .. }
                | S::Up { .. }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(Toward::Connecting | Toward::Waiting { .. })
                | S::GaveUp
                | S::Closed,
                I::Drained,
            ) => {}

            (S::Up { rotation: None }, I::Rotate(reason)) => {
                self.stage = S::Up {
                    rotation: Some(Phase::new(self.gated)),
                };
                self.push(Action::BeginRotation(reason));
            }
            (
                S::New
                | S::Connecting
                | S::Waiting { .. }
                | S::Up { rotation: Some(_) }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(_)
                | S::GaveUp
                | S::Closed,
                I::Rotate(_),
            ) => {}

            (
                S::Up {
                    rotation: Some(mut phase),
                },
                I::Rotation(event, reason),
            ) => {
                let decision = phase.on(event);
                self.stage = S::Up {
                    rotation: (!decision.ends()).then_some(phase),
                };
                if !matches!(decision, switch::Decision::Wait | switch::Decision::Ignore) {
                    self.push(Action::Rotation(decision, reason));
                }
            }
            (
                S::New
                | S::Connecting
                | S::Waiting { .. }
                | S::Up { rotation: None }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(_)
                | S::GaveUp
                | S::Closed,
                I::Rotation(..),
            ) => {}

            (
                S::New
                | S::Connecting
                | S::Waiting { .. }
                | S::Up { .. }
                | S::Pausing { .. }
                | S::Paused
                | S::Closing(_)
                | S::GaveUp
                | S::Closed,
                I::Crashed,
            ) => self.push(Action::Stop),
        }
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn publish(&mut self, event: Event) {
        self.push(Action::Publish(event));
    }

    /// Moves to `stage`, telling handles if the state they read changes.
    fn enter(&mut self, stage: Stage) {
        let before = public(self.stage);
        self.stage = stage;
        let state = public(stage);
        if state != before {
            self.push(Action::State {
                state,
                new_link: false,
            });
        }
    }

    /// Starts an attempt now.
    fn start_attempt(&mut self) {
        let toward = match self.stage {
            Stage::Closing(_) => Stage::Closing(Toward::Connecting),
            _ => Stage::Connecting,
        };
        self.enter(toward);
        let number = self.policy.begin_attempt();
        self.publish(Event::Connecting { attempt: number });
        self.push(Action::Connect {
            number,
            endpoint: self.endpoints.current(),
        });
    }

    /// Waits `delay`, and what the budget adds, before the next attempt;
    /// returns the whole wait.
    fn wait(&mut self, now: Instant, delay: Duration) -> Duration {
        let wait = delay.saturating_add(self.budget_wait(crate::time::saturating_add(now, delay)));
        self.wait_for_token(now, wait);
        wait
    }

    /// Waits `wait` (the budget's token taken already) before the next
    /// attempt.
    fn wait_for_token(&mut self, now: Instant, wait: Duration) {
        let at = crate::time::saturating_add(now, wait);
        let toward = match self.stage {
            Stage::Closing(_) => Stage::Closing(Toward::Waiting { at }),
            _ => Stage::Waiting { at },
        };
        self.enter(toward);
        self.push(Action::ConnectAfter(wait));
    }

    /// The link just opened becomes current.
    fn serve(&mut self, closing: bool) {
        self.push(Action::State {
            state: public(self.stage),
            new_link: true,
        });
        self.push(Action::Serve {
            attempt: self.policy.attempt(),
            closing,
        });
    }

    /// Leaving `Up`: no rotation is timed, and one under way ends.
    fn leave_up(&mut self) {
        if let Stage::Up { rotation } = self.stage {
            self.push(Action::StopRotationTimer);
            if let Some(mut phase) = rotation {
                let decision = phase.on(Happened::Abandon);
                self.stage = Stage::Up { rotation: None };
                self.push(Action::Rotation(decision, DisconnectReason::ClientClosed));
            }
        }
    }

    /// Only failures move the client to a fallback: a link the
    /// application took down (a pause, a close) says nothing about its
    /// endpoint.
    fn count_endpoint(&mut self, reason: &DisconnectReason, uptime: Option<Duration>) {
        let deliberate = matches!(
            reason,
            DisconnectReason::Paused | DisconnectReason::ClientClosed
        );
        if uptime.is_some_and(|u| u >= self.min_uptime) {
            let at = self.endpoints.current();
            self.endpoints.settled_on(at);
        } else if !deliberate {
            self.endpoints.failed();
        }
    }

    /// After a lost link or a failed attempt: the policy decides.
    fn retry_or_give_up(
        &mut self,
        now: Instant,
        reason: DisconnectReason,
        uptime: Option<Duration>,
    ) {
        match self.policy.after_down(&reason, uptime) {
            Decision::Retry { attempt, delay } => {
                self.publish(Event::Disconnected {
                    reason,
                    will_retry: true,
                });
                let delay = self.wait(now, delay);
                self.publish(Event::Reconnecting { attempt, delay });
            }
            Decision::GiveUp => {
                self.publish(Event::Disconnected {
                    reason: reason.clone(),
                    will_retry: false,
                });
                let closing = self.closing();
                self.push(Action::Seal);
                self.push(Action::CloseBooks);
                self.enter(Stage::GaveUp);
                let attempts = self.policy.attempt();
                self.publish(Event::GaveUp { reason, attempts });
                if closing {
                    self.finish();
                }
            }
        }
    }

    /// How a close goes on from a stage without a link.
    fn plan_close(
        &mut self,
        link_up: bool,
        backlog: bool,
        next_attempt_in: Option<Duration>,
        timeout: Duration,
    ) {
        match close_plan(link_up, backlog, next_attempt_in, timeout) {
            ClosePlan::CloseNow => self.finish(),
            ClosePlan::ReconnectUntilDeadline | ClosePlan::DrainThenClose => {
                self.push(Action::CloseDeadline(timeout));
            }
        }
    }

    fn finish(&mut self) {
        self.enter(Stage::Closed);
        self.push(Action::CancelAttempt);
        self.push(Action::Finish);
    }
}

/// The state handles read in `stage`.
fn public(stage: Stage) -> State {
    match stage {
        Stage::New | Stage::Connecting => State::Connecting,
        Stage::Waiting { .. } => State::Waiting,
        // The link is still up while a pause closes it.
        Stage::Up { .. } | Stage::Pausing { .. } => State::Connected,
        Stage::Paused => State::Paused,
        Stage::Closing(_) => State::Closing,
        Stage::GaveUp => State::GaveUp,
        Stage::Closed => State::Closed,
    }
}

#[cfg(test)]
mod tests;
