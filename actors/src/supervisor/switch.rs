//! Where a rotation stands, as a pure state machine: what happened to its
//! two links in, what the supervisor does next out. No actix, no clock, no
//! I/O: the supervisor carries out the decision and reports what came of it.
//!
//! The phases progress one way: `Opening` (the new link's attempt), then
//! `Preparing` (its setup lane written and its ready gate opening, while
//! the old link carries both directions), then `Switching` (outbound moves
//! once the old link's writes are confirmed, inbound at the new link's first
//! message or the overlap). A rotation ends in one of these decisions:
//!
//! | phase      | event          | decision                                   |
//! |------------|----------------|--------------------------------------------|
//! | Opening    | NewLinkUp      | Wait (now Preparing)                       |
//! | Opening    | NewLinkDown    | Fail: the old link stays                   |
//! | Opening    | Abandon        | Drop: cancel the attempt                   |
//! | Preparing  | SetupWritten   | Switch once the gate is open too, or Wait  |
//! | Preparing  | GateOpened     | Switch once the setup is written too, or Wait |
//! | Preparing  | NewLinkDown    | Fail: the old link stays                   |
//! | Preparing  | Abandon        | Drop: abort the new link                   |
//! | Switching  | OutboundMoved  | Finish once inbound moved too, or Wait     |
//! | Switching  | InboundMoved   | Finish once outbound moved too, or Wait    |
//! | Switching  | OldLinkDown    | TakeOver: the new link takes inbound now   |
//! | Switching  | NewLinkDown    | Reconnect if the old link is gone too; EndOld if outbound moved (the old link no longer writes); else Fail (the old link still carries both) |
//! | Switching  | Abandon        | Complete if outbound moved, else Drop      |
//!
//! Every other pair cannot happen (an event of a later phase, or one the
//! supervisor handles outside the rotation, such as the old link ending
//! before the switch, which is a lost link like any other): it is ignored,
//! and each such pair is spelled out below rather than hidden in a catch-all.

/// The phase of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The new link's attempt (or the budget's wait before it).
    Opening { gated: bool },
    /// The new link is up: its setup lane is being written and its ready
    /// gate waited for; the old link carries both directions.
    Preparing {
        setup_written: bool,
        gate_open: bool,
    },
    /// Both directions are moving to the new link.
    Switching {
        outbound: bool,
        inbound: bool,
        old_gone: bool,
    },
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Happened {
    NewLinkUp,
    SetupWritten,
    GateOpened,
    OutboundMoved,
    InboundMoved,
    /// The new link ended.
    NewLinkDown,
    /// The old (current) link ended.
    OldLinkDown,
    /// The client pauses or closes, or the old link died before the
    /// switch: the rotation ends now.
    Abandon,
}

/// What the supervisor does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing yet.
    Wait,
    /// Nothing: the event does not concern this phase.
    Ignore,
    /// Start moving both directions (arm the new link's takeover, hand the
    /// queue over).
    Switch,
    /// Both directions moved: report `Rotated`, close the old link.
    Finish,
    /// The new link failed while the old one still carries both
    /// directions: keep it, report `RotationFailed`, retry later.
    Fail,
    /// Outbound moved to the new link, which failed: end the old link too
    /// (with the new link's reason), and reconnect as after any lost link.
    EndOld,
    /// Both links are gone: reconnect as after any lost link.
    Reconnect,
    /// The old link ended mid-switch: the new link takes inbound now.
    TakeOver,
    /// Abandoned before outbound moved: abort the new link.
    Drop,
    /// Abandoned after outbound moved: the new link takes over inbound at
    /// once and becomes the current link.
    Complete,
}

impl Decision {
    /// Whether the rotation is over once this decision is carried out.
    pub(super) fn ends(self) -> bool {
        match self {
            Decision::Wait | Decision::Ignore | Decision::Switch | Decision::TakeOver => false,
            Decision::Finish
            | Decision::Fail
            | Decision::EndOld
            | Decision::Reconnect
            | Decision::Drop
            | Decision::Complete => true,
        }
    }
}

impl Phase {
    /// A rotation's first phase; `gated` if links have a ready gate.
    pub(super) fn new(gated: bool) -> Self {
        Phase::Opening { gated }
    }

    /// Outbound traffic has moved to the new link.
    pub(super) fn outbound_moved(&self) -> bool {
        matches!(self, Phase::Switching { outbound: true, .. })
    }

    /// Whether the switch has begun.
    pub(super) fn switching(&self) -> bool {
        matches!(self, Phase::Switching { .. })
    }

    /// Takes `event`, moves to the next phase, and says what to do.
    pub(super) fn on(&mut self, event: Happened) -> Decision {
        use Decision as D;
        use Happened as H;
        match (*self, event) {
            (Phase::Opening { gated }, H::NewLinkUp) => {
                *self = Phase::Preparing {
                    setup_written: false,
                    gate_open: !gated,
                };
                D::Wait
            }
            (Phase::Opening { .. }, H::NewLinkDown) => D::Fail,
            (Phase::Opening { .. }, H::Abandon) => D::Drop,
            (
                Phase::Opening { .. },
                H::SetupWritten
                | H::GateOpened
                | H::OutboundMoved
                | H::InboundMoved
                | H::OldLinkDown,
            ) => D::Ignore,

            (Phase::Preparing { gate_open, .. }, H::SetupWritten) => self.prepared(true, gate_open),
            (Phase::Preparing { setup_written, .. }, H::GateOpened) => {
                self.prepared(setup_written, true)
            }
            (Phase::Preparing { .. }, H::NewLinkDown) => D::Fail,
            (Phase::Preparing { .. }, H::Abandon) => D::Drop,
            (
                Phase::Preparing { .. },
                H::NewLinkUp | H::OutboundMoved | H::InboundMoved | H::OldLinkDown,
            ) => D::Ignore,

            (
                Phase::Switching {
                    inbound, old_gone, ..
                },
                H::OutboundMoved,
            ) => self.moved(true, inbound, old_gone),
            (
                Phase::Switching {
                    outbound, old_gone, ..
                },
                H::InboundMoved,
            ) => self.moved(outbound, true, old_gone),
            (
                Phase::Switching {
                    outbound, inbound, ..
                },
                H::OldLinkDown,
            ) => {
                *self = Phase::Switching {
                    outbound,
                    inbound,
                    old_gone: true,
                };
                D::TakeOver
            }
            (Phase::Switching { old_gone: true, .. }, H::NewLinkDown) => D::Reconnect,
            (Phase::Switching { outbound: true, .. }, H::NewLinkDown) => D::EndOld,
            (Phase::Switching { .. }, H::NewLinkDown) => D::Fail,
            (Phase::Switching { outbound: true, .. }, H::Abandon) => D::Complete,
            (Phase::Switching { .. }, H::Abandon) => D::Drop,
            (Phase::Switching { .. }, H::NewLinkUp | H::SetupWritten | H::GateOpened) => D::Ignore,
        }
    }

    fn prepared(&mut self, setup_written: bool, gate_open: bool) -> Decision {
        if setup_written && gate_open {
            *self = Phase::Switching {
                outbound: false,
                inbound: false,
                old_gone: false,
            };
            Decision::Switch
        } else {
            *self = Phase::Preparing {
                setup_written,
                gate_open,
            };
            Decision::Wait
        }
    }

    fn moved(&mut self, outbound: bool, inbound: bool, old_gone: bool) -> Decision {
        *self = Phase::Switching {
            outbound,
            inbound,
            old_gone,
        };
        if outbound && inbound {
            Decision::Finish
        } else {
            Decision::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Decision as D, Happened as H, Phase};

    /// Runs `events` from a new rotation; the decisions, in order.
    fn run(gated: bool, events: &[H]) -> Vec<D> {
        let mut p = Phase::new(gated);
        events.iter().map(|&e| p.on(e)).collect()
    }

    const READY: [H; 2] = [H::NewLinkUp, H::SetupWritten];

    #[test]
    fn an_ungated_link_switches_once_its_setup_is_written() {
        assert_eq!(run(false, &READY), [D::Wait, D::Switch]);
    }

    #[test]
    fn a_gated_link_switches_once_setup_and_gate_are_both_done_in_either_order() {
        assert_eq!(run(true, &READY), [D::Wait, D::Wait]);
        assert_eq!(
            run(true, &[H::NewLinkUp, H::SetupWritten, H::GateOpened]),
            [D::Wait, D::Wait, D::Switch]
        );
        assert_eq!(
            run(true, &[H::NewLinkUp, H::GateOpened, H::SetupWritten]),
            [D::Wait, D::Wait, D::Switch]
        );
    }

    #[test]
    fn it_finishes_when_both_directions_moved_in_either_order() {
        let mut events = READY.to_vec();
        events.extend([H::OutboundMoved, H::InboundMoved]);
        assert_eq!(run(false, &events)[2..], [D::Wait, D::Finish]);
        let mut events = READY.to_vec();
        events.extend([H::InboundMoved, H::OutboundMoved]);
        assert_eq!(run(false, &events)[2..], [D::Wait, D::Finish]);
    }

    #[test]
    fn a_new_link_failing_before_outbound_moved_keeps_the_old_one() {
        assert_eq!(run(false, &[H::NewLinkDown]), [D::Fail]);
        assert_eq!(
            run(true, &[H::NewLinkUp, H::NewLinkDown]),
            [D::Wait, D::Fail]
        );
        let mut events = READY.to_vec();
        events.push(H::NewLinkDown);
        assert_eq!(run(false, &events)[2], D::Fail);
        // Inbound moved, outbound not: the old link still writes.
        let mut events = READY.to_vec();
        events.extend([H::InboundMoved, H::NewLinkDown]);
        assert_eq!(run(false, &events)[3], D::Fail);
    }

    #[test]
    fn a_new_link_failing_after_outbound_moved_ends_the_old_one_and_reconnects() {
        // Issue 21, item 1: this gave up for good.
        let mut events = READY.to_vec();
        events.extend([H::OutboundMoved, H::NewLinkDown]);
        assert_eq!(run(false, &events)[3], D::EndOld);
    }

    #[test]
    fn the_old_link_ending_mid_switch_hands_inbound_over_and_both_ending_reconnects() {
        let mut events = READY.to_vec();
        events.extend([H::OldLinkDown, H::OutboundMoved, H::InboundMoved]);
        assert_eq!(run(false, &events)[2..], [D::TakeOver, D::Wait, D::Finish]);
        let mut events = READY.to_vec();
        events.extend([H::OldLinkDown, H::NewLinkDown]);
        assert_eq!(run(false, &events)[2..], [D::TakeOver, D::Reconnect]);
    }

    #[test]
    fn abandoning_drops_the_new_link_unless_outbound_moved() {
        assert_eq!(run(false, &[H::Abandon]), [D::Drop]);
        assert_eq!(run(true, &[H::NewLinkUp, H::Abandon]), [D::Wait, D::Drop]);
        let mut events = READY.to_vec();
        events.push(H::Abandon);
        assert_eq!(run(false, &events)[2], D::Drop);
        let mut events = READY.to_vec();
        events.extend([H::OutboundMoved, H::Abandon]);
        assert_eq!(run(false, &events)[3], D::Complete);
    }

    #[test]
    fn events_of_other_phases_are_ignored_and_change_nothing() {
        let ignored_when_opening = [
            H::SetupWritten,
            H::GateOpened,
            H::OutboundMoved,
            H::InboundMoved,
            H::OldLinkDown,
        ];
        for e in ignored_when_opening {
            let mut p = Phase::new(false);
            assert_eq!(p.on(e), D::Ignore, "{e:?}");
            assert_eq!(p, Phase::new(false));
        }
        for e in [
            H::NewLinkUp,
            H::OutboundMoved,
            H::InboundMoved,
            H::OldLinkDown,
        ] {
            let mut p = Phase::new(true);
            p.on(H::NewLinkUp);
            let before = p;
            assert_eq!(p.on(e), D::Ignore, "{e:?}");
            assert_eq!(p, before);
        }
        for e in [H::NewLinkUp, H::SetupWritten, H::GateOpened] {
            let mut p = Phase::new(false);
            p.on(H::NewLinkUp);
            p.on(H::SetupWritten);
            let before = p;
            assert_eq!(p.on(e), D::Ignore, "{e:?}");
            assert_eq!(p, before);
        }
    }

    #[test]
    fn outbound_moved_and_switching_report_the_phase() {
        let mut p = Phase::new(false);
        assert!(!p.switching());
        p.on(H::NewLinkUp);
        p.on(H::SetupWritten);
        assert!(p.switching() && !p.outbound_moved());
        p.on(H::OutboundMoved);
        assert!(p.outbound_moved());
    }
}
