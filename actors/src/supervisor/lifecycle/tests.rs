//! The lifecycle driven directly: a list of inputs at an instant, and the
//! actions that came out, shown as short strings.

use std::time::Duration;

use actix_rt::time::Instant;
use proptest::prelude::*;

use super::{Action, Input, Lifecycle, Stage, Toward};
use crate::budget::ReconnectBudget;
use crate::error::{ConnectError, ConnectErrorKind, DisconnectReason};
use crate::events::{Event, RotateReason, State};
use crate::policy::Endpoints;
use crate::supervisor::switch::Happened;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The policy's test policy (backoff 100 ms doubling to 1 s, no jitter,
/// a minimum uptime of 5 s); two endpoints, failing over after one failure.
fn life(max_retries: Option<u32>, budget: Option<ReconnectBudget>, gated: bool) -> Lifecycle {
    let policy = crate::policy::tests::policy(max_retries);
    Lifecycle::new(policy, Endpoints::new(2, 1), budget, ms(5000), gated)
}

/// A close that has nothing to wait for.
const CLOSED_AT_ONCE: [&str; 5] = [
    "Seal",
    "state Closing",
    "state Closed",
    "CancelAttempt",
    "Finish",
];

fn show(action: &Action) -> String {
    match action {
        Action::State { state, new_link } => {
            format!("state {state:?}{}", if *new_link { " +link" } else { "" })
        }
        Action::Publish(Event::Disconnected { reason, will_retry }) => {
            format!("disconnected {reason:?} retry={will_retry}")
        }
        Action::Publish(Event::Reconnecting { attempt, delay }) => {
            format!("reconnecting #{attempt} in {}ms", delay.as_millis())
        }
        Action::Publish(Event::Connecting { attempt }) => format!("connecting #{attempt}"),
        Action::Publish(e) => e.name().to_string(),
        Action::Connect { number, endpoint } => format!("connect #{number} @{endpoint}"),
        Action::ConnectAfter(wait) => format!("wait {}ms", wait.as_millis()),
        Action::Serve { attempt, closing } => {
            format!("serve #{attempt}{}", if *closing { " closing" } else { "" })
        }
        Action::Rotation(decision, _) => format!("rotation {decision:?}"),
        Action::CloseLink(reason) => format!("close link {reason:?}"),
        Action::CloseDeadline(t) => format!("deadline {}ms", t.as_millis()),
        other => format!("{other:?}"),
    }
}

/// Feeds `inputs` at `now`; what came out, shown.
fn run(life: &mut Lifecycle, now: Instant, inputs: Vec<Input>) -> Vec<String> {
    let mut out = Vec::new();
    for input in inputs {
        life.handle(now, input);
        while let Some(a) = life.poll_action() {
            out.push(show(&a));
        }
    }
    out
}

fn dropped(uptime: Option<Duration>, backlog: bool) -> Input {
    Input::Down {
        reason: DisconnectReason::Dropped,
        uptime,
        backlog,
    }
}

fn refused(backlog: bool) -> Input {
    Input::Down {
        reason: DisconnectReason::ConnectFailed(ConnectError::new(ConnectErrorKind::Refused)),
        uptime: None,
        backlog,
    }
}

fn close(timeout: u64, backlog: bool) -> Input {
    Input::Close {
        timeout: ms(timeout),
        backlog,
    }
}

/// A client whose first link is up.
fn up(now: Instant) -> Lifecycle {
    let mut l = life(None, None, false);
    run(&mut l, now, vec![Input::Start, Input::Opened]);
    l
}

#[test]
fn a_client_starts_with_an_attempt_and_serves_the_link_it_opens() {
    let now = Instant::now();
    let mut l = life(None, None, false);
    assert_eq!(l.state(), State::Connecting);
    assert_eq!(
        run(&mut l, now, vec![Input::Start, Input::Opened]),
        [
            "connecting #1",
            "connect #1 @0",
            "state Connected +link",
            "serve #1",
            "ArmRotationTimer"
        ]
    );
    assert_eq!(l.stage(), Stage::Up { rotation: None });
}

#[test]
fn a_budget_without_a_token_delays_the_first_attempt() {
    let now = Instant::now();
    let budget = ReconnectBudget::new(10.0, 1).unwrap_or_else(|e| panic!("{e}"));
    let _first = budget.reserve(now);
    let mut l = life(None, Some(budget), false);
    assert_eq!(
        run(&mut l, now, vec![Input::Start]),
        ["state Waiting", "wait 100ms"]
    );
    assert_eq!(
        run(&mut l, now, vec![Input::AttemptDue]),
        ["state Connecting", "connecting #1", "connect #1 @0"]
    );
}

#[test]
fn a_lost_link_retries_after_the_backoff_and_a_failed_attempt_fails_over() {
    let now = Instant::now();
    let mut l = up(now);
    assert_eq!(
        run(&mut l, now, vec![dropped(Some(ms(10)), false)]),
        [
            "StopRotationTimer",
            "disconnected Dropped retry=true",
            "state Waiting",
            "wait 100ms",
            "reconnecting #2 in 100ms"
        ]
    );
    // The link was up less than the minimum uptime: a failure of
    // endpoint 0, so the next attempt goes to the fallback.
    assert_eq!(
        run(&mut l, now, vec![Input::AttemptDue]),
        ["state Connecting", "connecting #2", "connect #2 @1"]
    );
    assert_eq!(
        run(&mut l, now, vec![refused(false)])[..2],
        [
            "disconnected ConnectFailed(ConnectError { kind: Refused }) retry=true",
            "state Waiting"
        ]
    );
}

#[test]
fn a_link_that_stayed_up_starts_the_streak_over_on_its_endpoint() {
    let now = Instant::now();
    let mut l = up(now);
    run(&mut l, now, vec![dropped(Some(ms(6000)), false)]);
    assert_eq!(
        run(&mut l, now, vec![Input::AttemptDue]),
        ["state Connecting", "connecting #1", "connect #1 @0"]
    );
}

#[test]
fn used_up_retries_give_up_seal_the_queue_and_close_the_books() {
    let now = Instant::now();
    let mut l = life(Some(0), None, false);
    run(&mut l, now, vec![Input::Start]);
    assert_eq!(
        run(&mut l, now, vec![refused(false)]),
        [
            "disconnected ConnectFailed(ConnectError { kind: Refused }) retry=false",
            "Seal",
            "CloseBooks",
            "state GaveUp",
            "gave_up"
        ]
    );
    // Only closing is left: it finishes at once.
    assert_eq!(
        run(
            &mut l,
            now,
            vec![
                Input::Pause,
                Input::Resume,
                Input::ReconnectNow,
                dropped(None, true)
            ]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        run(&mut l, now, vec![close(1000, true)]),
        ["Seal", "state Closed", "CancelAttempt", "Finish"]
    );
}

#[test]
fn a_pause_closes_the_link_and_the_client_stays_down_until_resumed() {
    let now = Instant::now();
    let mut l = up(now);
    assert_eq!(
        run(&mut l, now, vec![Input::Pause]),
        ["StopRotationTimer", "close link Paused"]
    );
    // The link is still up while its close completes: no rotation now.
    assert_eq!(l.stage(), Stage::Pausing { resume: false });
    assert_eq!(l.state(), State::Connected);
    assert!(run(&mut l, now, vec![Input::Rotate(RotateReason::Requested)]).is_empty());
    let down = Input::Down {
        reason: DisconnectReason::Paused,
        uptime: Some(ms(10)),
        backlog: true,
    };
    assert_eq!(
        run(&mut l, now, vec![down]),
        ["state Paused", "disconnected Paused retry=false"]
    );
    assert!(run(&mut l, now, vec![Input::AttemptDue, Input::ReconnectNow]).is_empty());
    assert_eq!(
        run(&mut l, now, vec![Input::Resume]),
        ["state Waiting", "wait 0ms"]
    );
    // A pause is not an endpoint failure: the attempt stays on 0.
    assert_eq!(
        run(&mut l, now, vec![Input::AttemptDue])[2],
        "connect #1 @0"
    );
}

#[test]
fn a_resume_while_the_pause_closes_the_link_reconnects_at_once() {
    let now = Instant::now();
    let mut l = up(now);
    run(&mut l, now, vec![Input::Pause, Input::Resume]);
    assert_eq!(l.stage(), Stage::Pausing { resume: true });
    let down = Input::Down {
        reason: DisconnectReason::Paused,
        uptime: Some(ms(10)),
        backlog: false,
    };
    assert_eq!(
        run(&mut l, now, vec![down]),
        [
            "disconnected Paused retry=true",
            "state Waiting",
            "wait 0ms",
            "reconnecting #1 in 0ms"
        ]
    );
    // Paused again before the link was down: it stays paused.
    let mut l = up(now);
    run(&mut l, now, vec![Input::Pause, Input::Resume, Input::Pause]);
    assert_eq!(l.stage(), Stage::Pausing { resume: false });
}

#[test]
fn a_pause_cancels_an_attempt_or_a_wait() {
    let now = Instant::now();
    let mut l = life(None, None, false);
    run(&mut l, now, vec![Input::Start]);
    assert_eq!(
        run(&mut l, now, vec![Input::Pause]),
        ["CancelAttempt", "state Paused"]
    );
    // The attempt's link, if it opened anyway, is not wanted.
    assert_eq!(run(&mut l, now, vec![Input::Opened]), ["Refuse"]);
    let mut l = up(now);
    run(&mut l, now, vec![dropped(None, false)]);
    assert_eq!(
        run(&mut l, now, vec![Input::Pause]),
        ["CancelAttempt", "state Paused"]
    );
}

#[test]
fn reconnect_now_skips_a_wait_and_nothing_else() {
    let now = Instant::now();
    let mut l = up(now);
    assert!(run(&mut l, now, vec![Input::ReconnectNow]).is_empty());
    run(&mut l, now, vec![dropped(None, false)]);
    assert_eq!(
        run(&mut l, now, vec![Input::ReconnectNow]),
        [
            "CancelAttempt",
            "state Connecting",
            "connecting #2",
            "connect #2 @1"
        ]
    );
    assert!(run(&mut l, now, vec![Input::ReconnectNow]).is_empty());
}

#[test]
fn closing_an_up_client_drains_then_closes_the_link_and_finishes_when_it_is_down() {
    let now = Instant::now();
    let mut l = up(now);
    assert_eq!(
        run(&mut l, now, vec![close(3000, true)]),
        [
            "Seal",
            "StopRotationTimer",
            "state Closing",
            "deadline 3000ms",
            "DrainThenClose"
        ]
    );
    assert!(run(
        &mut l,
        now,
        vec![Input::Pause, Input::Rotate(RotateReason::Age)]
    )
    .is_empty());
    assert_eq!(
        run(&mut l, now, vec![Input::Drained]),
        ["close link ClientClosed"]
    );
    let down = Input::Down {
        reason: DisconnectReason::ClientClosed,
        uptime: Some(ms(10)),
        backlog: false,
    };
    assert_eq!(
        run(&mut l, now, vec![down]),
        [
            "disconnected ClientClosed retry=false",
            "state Closed",
            "CancelAttempt",
            "Finish"
        ]
    );
    // Nothing finishes twice.
    assert!(run(&mut l, now, vec![Input::Deadline, close(10, true)]).is_empty());
}

#[test]
fn a_closing_client_whose_link_dies_with_a_backlog_reconnects_to_deliver_it() {
    let now = Instant::now();
    let mut l = up(now);
    run(&mut l, now, vec![close(3000, true)]);
    assert_eq!(
        run(&mut l, now, vec![dropped(Some(ms(10)), true)]),
        [
            "disconnected Dropped retry=true",
            "wait 100ms",
            "reconnecting #2 in 100ms"
        ]
    );
    assert_eq!(l.state(), State::Closing);
    assert_eq!(
        run(&mut l, now, vec![Input::AttemptDue, Input::Opened]),
        [
            "connecting #2",
            "connect #2 @1",
            "state Closing +link",
            "serve #2 closing",
            "DrainThenClose"
        ]
    );
    assert_eq!(
        run(&mut l, now, vec![Input::Deadline]),
        ["state Closed", "CancelAttempt", "Finish"]
    );
}

#[test]
fn closing_while_down_reconnects_only_if_an_attempt_comes_before_the_deadline() {
    let now = Instant::now();
    // Waiting 100 ms, deadline 1 s, a backlog: keep going.
    let mut l = up(now);
    run(&mut l, now, vec![dropped(None, true)]);
    assert_eq!(
        run(&mut l, now, vec![close(1000, true)]),
        ["Seal", "state Closing", "deadline 1000ms"]
    );
    assert_eq!(
        l.stage(),
        Stage::Closing(Toward::Waiting { at: now + ms(100) })
    );
    // Deadline 50 ms: no attempt can come first.
    let mut l = up(now);
    run(&mut l, now, vec![dropped(None, true)]);
    assert_eq!(run(&mut l, now, vec![close(50, true)]), CLOSED_AT_ONCE);
    // Nothing queued: nothing to wait for.
    let mut l = life(None, None, false);
    run(&mut l, now, vec![Input::Start]);
    assert_eq!(run(&mut l, now, vec![close(1000, false)]), CLOSED_AT_ONCE);
}

#[test]
fn closing_a_paused_client_connects_again_to_deliver_its_backlog() {
    let now = Instant::now();
    let mut l = life(None, None, false);
    run(&mut l, now, vec![Input::Start, Input::Pause]);
    assert_eq!(
        run(&mut l, now, vec![close(1000, true)]),
        ["Seal", "state Closing", "wait 0ms", "deadline 1000ms"]
    );
    assert_eq!(
        run(&mut l, now, vec![Input::AttemptDue])[1],
        "connect #2 @0"
    );
    let mut l = life(None, None, false);
    run(&mut l, now, vec![Input::Start, Input::Pause]);
    assert_eq!(run(&mut l, now, vec![close(1000, false)]), CLOSED_AT_ONCE);
}

#[test]
fn giving_up_while_closing_finishes() {
    let now = Instant::now();
    let mut l = life(Some(0), None, false);
    run(&mut l, now, vec![Input::Start, close(1000, true)]);
    assert_eq!(
        run(&mut l, now, vec![refused(true)])[..],
        [
            "disconnected ConnectFailed(ConnectError { kind: Refused }) retry=false",
            "Seal",
            "CloseBooks",
            "state GaveUp",
            "gave_up",
            "state Closed",
            "CancelAttempt",
            "Finish"
        ]
    );
}

#[test]
fn a_rotation_begins_only_on_a_plain_up_link_and_its_phase_decides() {
    let now = Instant::now();
    let mut l = up(now);
    assert_eq!(
        run(
            &mut l,
            now,
            vec![
                Input::Rotate(RotateReason::Age),
                Input::Rotate(RotateReason::Requested)
            ]
        ),
        ["BeginRotation(Age)"]
    );
    let step = |h| Input::Rotation(h, DisconnectReason::Dropped);
    assert_eq!(
        run(
            &mut l,
            now,
            vec![
                step(Happened::NewLinkUp),
                step(Happened::SetupWritten),
                step(Happened::OutboundMoved),
                step(Happened::InboundMoved)
            ]
        ),
        ["rotation Switch", "rotation Finish"]
    );
    assert_eq!(l.rotation(), None);
    // A failed one ends too: the next may begin.
    run(&mut l, now, vec![Input::Rotate(RotateReason::Age)]);
    assert_eq!(
        run(&mut l, now, vec![step(Happened::NewLinkDown)]),
        ["rotation Fail"]
    );
    assert_eq!(
        run(&mut l, now, vec![Input::Rotate(RotateReason::Age)]),
        ["BeginRotation(Age)"]
    );
}

#[test]
fn pausing_or_closing_or_losing_the_link_abandons_a_rotation() {
    let now = Instant::now();
    let step = |h| Input::Rotation(h, DisconnectReason::Dropped);
    let mut l = up(now);
    run(&mut l, now, vec![Input::Rotate(RotateReason::Age)]);
    assert_eq!(
        run(&mut l, now, vec![Input::Pause])[..2],
        ["StopRotationTimer", "rotation Drop"]
    );
    // After outbound moved, closing completes the rotation instead.
    let mut l = up(now);
    run(
        &mut l,
        now,
        vec![
            Input::Rotate(RotateReason::Age),
            step(Happened::NewLinkUp),
            step(Happened::SetupWritten),
            step(Happened::OutboundMoved),
        ],
    );
    assert_eq!(
        run(&mut l, now, vec![close(1000, false)])[..3],
        ["Seal", "StopRotationTimer", "rotation Complete"]
    );
    let mut l = up(now);
    run(&mut l, now, vec![Input::Rotate(RotateReason::Age)]);
    assert_eq!(
        run(&mut l, now, vec![dropped(Some(ms(10)), false)])[..2],
        ["StopRotationTimer", "rotation Drop"]
    );
    // Reports of a rotation that ended change nothing.
    assert!(run(&mut l, now, vec![step(Happened::SetupWritten)]).is_empty());
}

#[test]
fn a_gated_rotation_waits_for_its_gate() {
    let now = Instant::now();
    let mut l = life(None, None, true);
    run(
        &mut l,
        now,
        vec![
            Input::Start,
            Input::Opened,
            Input::Rotate(RotateReason::Age),
        ],
    );
    let step = |h| Input::Rotation(h, DisconnectReason::Dropped);
    assert!(run(
        &mut l,
        now,
        vec![step(Happened::NewLinkUp), step(Happened::SetupWritten)]
    )
    .is_empty());
    assert_eq!(
        run(&mut l, now, vec![step(Happened::GateOpened)]),
        ["rotation Switch"]
    );
}

#[test]
fn a_crashed_connection_stops_the_client_from_any_stage() {
    let now = Instant::now();
    let mut l = life(None, None, false);
    assert_eq!(run(&mut l, now, vec![Input::Crashed]), ["Stop"]);
    let mut l = up(now);
    run(&mut l, now, vec![close(10, true)]);
    assert_eq!(run(&mut l, now, vec![Input::Crashed]), ["Stop"]);
}

fn input() -> impl Strategy<Value = Input> {
    let reason = prop_oneof![
        Just(DisconnectReason::Dropped),
        Just(DisconnectReason::Paused),
        Just(DisconnectReason::ClientClosed),
        Just(DisconnectReason::ConnectFailed(ConnectError::new(
            ConnectErrorKind::Refused
        ))),
        Just(DisconnectReason::ConnectFailed(ConnectError::new(
            ConnectErrorKind::Tls
        ))),
    ];
    let happened = prop_oneof![
        Just(Happened::NewLinkUp),
        Just(Happened::SetupWritten),
        Just(Happened::GateOpened),
        Just(Happened::OutboundMoved),
        Just(Happened::InboundMoved),
        Just(Happened::NewLinkDown),
        Just(Happened::OldLinkDown),
        Just(Happened::Abandon),
    ];
    prop_oneof![
        Just(Input::AttemptDue),
        Just(Input::Opened),
        (
            reason.clone(),
            proptest::option::of(0u64..10_000),
            any::<bool>()
        )
            .prop_map(|(reason, up, backlog)| Input::Down {
                reason,
                uptime: up.map(ms),
                backlog
            }),
        Just(Input::Pause),
        Just(Input::Resume),
        Just(Input::ReconnectNow),
        (0u64..2000, any::<bool>()).prop_map(|(t, backlog)| close(t, backlog)),
        Just(Input::Deadline),
        Just(Input::Drained),
        Just(Input::Rotate(RotateReason::Requested)),
        (happened, reason).prop_map(|(h, r)| Input::Rotation(h, r)),
    ]
}

proptest! {
    /// Whatever happens, in any order: the stages progress one way
    /// (closing never pauses, rotates or stops closing; a client that
    /// gave up only closes; closed is final), the state handles read
    /// is announced whenever it changes, a link is served only from an
    /// attempt, only a lost link or a failed attempt gives up, and the
    /// client finishes once, when it is closed.
    #[test]
    fn any_sequence_of_inputs_keeps_the_lifecycle_consistent(
        inputs in proptest::collection::vec(input(), 0..60),
        retries in proptest::option::of(0u32..4),
    ) {
        let now = Instant::now();
        let mut l = life(retries, None, false);
        l.handle(now, Input::Start);
        let mut announced = State::Connecting;
        let mut finished = 0;
        for a in std::iter::from_fn(|| l.poll_action()) {
            if let Action::State { state, .. } = a {
                announced = state;
            }
        }
        for input in inputs {
            let before = l.stage();
            let opened = matches!(input, Input::Opened);
            let down = matches!(input, Input::Down { .. });
            l.handle(now, input);
            let after = l.stage();
            while let Some(a) = l.poll_action() {
                match a {
                    Action::State { state, .. } => announced = state,
                    Action::Finish => finished += 1,
                    Action::Serve { .. } => {
                        prop_assert!(opened);
                        prop_assert!(matches!(
                            before,
                            Stage::Connecting | Stage::Closing(Toward::Connecting)
                        ));
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(announced, l.state(), "{:?} -> {:?}", before, after);
            match before {
                Stage::Closing(_) => prop_assert!(
                    matches!(after, Stage::Closing(_) | Stage::GaveUp | Stage::Closed),
                    "{:?} -> {:?}", before, after
                ),
                Stage::GaveUp => prop_assert!(
                    matches!(after, Stage::GaveUp | Stage::Closed),
                    "{:?} -> {:?}", before, after
                ),
                Stage::Closed => prop_assert_eq!(after, Stage::Closed),
                _ => {}
            }
            // Only a lost link or a failed attempt gives up.
            if after == Stage::GaveUp && before != Stage::GaveUp {
                prop_assert!(down, "{:?} gave up", before);
            }
        }
        prop_assert!(finished <= 1);
        prop_assert_eq!(finished == 1, l.stage() == Stage::Closed);
    }
}
