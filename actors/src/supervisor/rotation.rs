//! Rotation, make before break: the second link from its attempt to the
//! switch (the lifecycle is on [`Supervisor`]). What a rotation does next is
//! decided by its phase (`switch.rs`); here the decisions are carried out.

use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use futures::channel::oneshot;

use super::switch::{Decision, Happened};
use super::{Current, Input, Supervisor};
use crate::connection::Role;
use crate::error::DisconnectReason;
use crate::events::{Event, RotateReason};
use crate::messages::{Abort, Arm, CloseLink, ConnectInfo, Handover, Rotate, Standby, TakeOver};
use crate::transport::{ConnectRequest, Link};

/// A rotation under way: the second link, from its attempt to the switch.
pub(super) struct Rotation {
    pub(super) reason: RotateReason,
    pub(super) endpoint: usize,
    /// The attempt (or the budget's wait before it), until the link is up.
    pub(super) attempt: Option<SpawnHandle>,
    /// The new link, once it is up.
    pub(super) link: Option<Current>,
}

impl Rotation {
    /// The new link's number, once it is up.
    pub(super) fn link_id(&self) -> Option<u64> {
        self.link.as_ref().map(|l| l.id)
    }
}

impl Supervisor {
    /// Arms the current link's age timer, or, on a fallback endpoint, its
    /// return-to-primary timer (whichever comes first).
    pub(super) fn arm_rotation_timer(&mut self, ctx: &mut Context<Self>) {
        self.cancel_rotation_timer(ctx);
        let Some(cur) = &self.current else {
            return;
        };
        let feed = self.config.feed;
        // Both count from when the link opened (a rotation's new link
        // opened before the switch).
        let up = cur.since.elapsed();
        let age = feed.max_connection_age.map(|age| {
            let early = feed.age_jitter * self.life.random_unit();
            (
                crate::time::scale(age, 1.0 - early).saturating_sub(up),
                RotateReason::Age,
            )
        });
        let primary = feed
            .return_to_primary
            .filter(|_| cur.endpoint != 0)
            .map(|d| (d.saturating_sub(up), RotateReason::ReturnToPrimary));
        let next = match (age, primary) {
            (Some(a), Some(p)) => Some(if p.0 < a.0 { p } else { a }),
            (a, p) => a.or(p),
        };
        let Some((after, reason)) = next else {
            return;
        };
        let link = cur.id;
        self.rotation_timer = Some(ctx.run_later(after, move |act, ctx| {
            act.rotation_timer = None;
            if act.current.as_ref().is_some_and(|c| c.id == link) {
                act.feed(Input::Rotate(reason), ctx);
            }
        }));
    }

    /// Opens a second link (make before break): the lifecycle has begun a
    /// rotation (only while a link is up and no other rotation, pause or
    /// close is under way).
    pub(super) fn begin_rotation(&mut self, reason: RotateReason, ctx: &mut Context<Self>) {
        let Some(cur) = &self.current else {
            return;
        };
        self.hub.publish(Event::Rotating {
            reason,
            age: cur.since.elapsed(),
        });
        let endpoint = match reason {
            RotateReason::ReturnToPrimary => 0,
            _ => cur.endpoint,
        };
        let wait = self.life.budget_wait(Instant::now());
        let handle = ctx.run_later(wait, move |act, ctx| act.rotation_attempt(ctx));
        self.rotation = Some(Rotation {
            reason,
            endpoint,
            attempt: Some(handle),
            link: None,
        });
    }

    /// Tells the lifecycle what happened to the rotation (to its link
    /// `link`, or, for `None`, to its attempt or to the old link); `reason`
    /// is why the new link ended, for `NewLinkDown`.
    pub(super) fn rotation_step(
        &mut self,
        link: Option<u64>,
        event: Happened,
        reason: Option<DisconnectReason>,
        ctx: &mut Context<Self>,
    ) {
        let Some(r) = self.rotation.as_ref() else {
            return;
        };
        if link.is_some() && r.link_id() != link {
            return;
        }
        let reason = reason.unwrap_or(DisconnectReason::Dropped);
        self.feed(Input::Rotation(event, reason), ctx);
    }

    /// Carries out a rotation's decision (`switch.rs`).
    pub(super) fn rotation_decided(
        &mut self,
        decision: Decision,
        reason: DisconnectReason,
        ctx: &mut Context<Self>,
    ) {
        match decision {
            Decision::Wait | Decision::Ignore => {}
            Decision::Switch => self.start_switch(ctx),
            Decision::Finish => self.finish_rotation(ctx),
            Decision::Fail => self.rotation_failed(reason, ctx),
            Decision::EndOld => {
                // The old link no longer writes: it goes too, and its end
                // reconnects the client as after any lost link, with the
                // new link's reason (which the policy judges: never a
                // give-up nobody asked for).
                self.rotation = None;
                if let Some(cur) = &self.current {
                    cur.addr.do_send(Abort(reason));
                }
            }
            Decision::Reconnect => {
                self.rotation = None;
                let uptime = self.current.take().map(|c| c.since.elapsed());
                let backlog = self.backlog();
                self.feed(
                    Input::Down {
                        reason,
                        uptime,
                        backlog,
                    },
                    ctx,
                );
            }
            Decision::TakeOver => {
                // Past the point of no return: the new link takes inbound
                // at once (the queue hands outbound over now that the old
                // link is gone).
                if let Some(new) = self.rotation.as_ref().and_then(|r| r.link.as_ref()) {
                    new.addr.do_send(TakeOver);
                }
            }
            Decision::Drop => {
                if let Some(r) = self.rotation.take() {
                    if let Some(h) = r.attempt {
                        ctx.cancel_future(h);
                    }
                    if let Some(new) = r.link {
                        new.addr.do_send(Abort(DisconnectReason::ClientClosed));
                    }
                }
            }
            Decision::Complete => {
                // The link the queue writes to becomes the current one.
                if let Some(new) = self.rotation.take().and_then(|r| r.link) {
                    new.addr.do_send(TakeOver);
                    self.switch_to(new);
                }
            }
        }
    }

    fn rotation_attempt(&mut self, ctx: &mut Context<Self>) {
        let Some(endpoint) = self.rotation.as_ref().map(|r| r.endpoint) else {
            return;
        };
        self.attempts_total = self.attempts_total.saturating_add(1);
        let attempt = self.attempt_info(self.rotation_failures + 1, endpoint, true);
        let handle = ctx.spawn(self.open(&attempt).map(move |res, act, ctx| {
            if let Some(r) = &mut act.rotation {
                r.attempt = None;
            }
            match res {
                Ok((link, request, span)) => act.on_rotation_link(link, &request, span, ctx),
                Err(e) => act.rotation_step(
                    None,
                    Happened::NewLinkDown,
                    Some(DisconnectReason::ConnectFailed(e)),
                    ctx,
                ),
            }
        }));
        if let Some(r) = &mut self.rotation {
            r.attempt = Some(handle);
        }
    }

    fn on_rotation_link(
        &mut self,
        link: Link,
        request: &ConnectRequest,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        let Some(endpoint) = self.rotation.as_ref().map(|r| r.endpoint) else {
            return;
        };
        let (new, protocol, _) = self.start_link(link, request, endpoint, Role::Standby, span, ctx);
        let info = ConnectInfo {
            attempt: self.life.attempt(),
            link: new.id,
            protocol,
            closing: false,
            rotation: true,
        };
        let setup = self.setup_lane(&info);
        let (tx, rx) = oneshot::channel();
        self.queue.do_send(Standby {
            link: new.id,
            setup,
            flushed: tx,
        });
        let id = new.id;
        ctx.spawn(rx.into_actor(self).map(move |res, act, ctx| {
            if res.is_ok() {
                act.rotation_step(Some(id), Happened::SetupWritten, None, ctx);
            }
        }));
        if let Some(r) = &mut self.rotation {
            r.link = Some(new);
        }
        self.rotation_step(Some(id), Happened::NewLinkUp, None, ctx);
    }

    /// The new link's setup lane is written and its gate open: hand both
    /// directions over.
    fn start_switch(&mut self, ctx: &mut Context<Self>) {
        let Some(new) = self.rotation.as_ref().and_then(|r| r.link.as_ref()) else {
            return;
        };
        let id = new.id;
        let feed = self.config.feed;
        // A short maximum age shortens the overlap too, so that a quiet
        // link's rotation ends well before the next one is due.
        let overlap = feed
            .max_connection_age
            .map_or(feed.rotation_overlap, |age| {
                feed.rotation_overlap.min(age / 4)
            });
        new.addr.do_send(Arm { overlap });
        let (tx, rx) = oneshot::channel();
        self.queue.do_send(Handover { link: id, done: tx });
        ctx.spawn(rx.into_actor(self).map(move |res, act, ctx| {
            if res.is_ok() {
                act.rotation_step(Some(id), Happened::OutboundMoved, None, ctx);
            }
        }));
        let accepted = self.hub.counters.bytes_accepted.get();
        self.watch_handover(id, accepted, ctx);
    }

    /// The old link's last messages must be confirmed before the new link
    /// writes. As the heartbeat judges a busy link, a handover waits while
    /// the old link keeps moving bytes (more per pong timeout than may sit
    /// unsent in the kernel: the peer's TCP took some); one whose old link
    /// moved nothing for a pong timeout ends that link (its tail is written
    /// first on the new one, with replay).
    fn watch_handover(&mut self, id: u64, accepted_at: u64, ctx: &mut Context<Self>) {
        let timeout = self.config.heartbeat.pong_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            let waiting = act
                .rotation
                .as_ref()
                .is_some_and(|r| r.link_id() == Some(id))
                && act.life.rotation().is_some_and(|p| !p.outbound_moved());
            if !waiting {
                return;
            }
            let counters = &act.hub.counters;
            let accepted = counters.bytes_accepted.get();
            if accepted.saturating_sub(accepted_at) > counters.unsent_bound.get() {
                act.watch_handover(id, accepted, ctx);
            } else if let Some(cur) = &act.current {
                cur.addr
                    .do_send(Abort(DisconnectReason::PongTimeout(timeout)));
            }
        });
    }

    /// Both directions moved: `Rotated`, and the old link closes.
    fn finish_rotation(&mut self, ctx: &mut Context<Self>) {
        let Some(new) = self.rotation.take().and_then(|r| r.link) else {
            return;
        };
        self.rotation_failures = 0;
        self.rotations += 1;
        self.life.settled_on(new.endpoint);
        let age = self
            .current
            .as_ref()
            .map_or(Duration::ZERO, |c| c.since.elapsed());
        self.hub.publish(Event::Rotated {
            age,
            url: new.url.clone(),
            endpoint: new.endpoint,
        });
        self.switch_to(new);
        self.arm_rotation_timer(ctx);
    }

    /// The rotation's new link failed: the current one stays, and the
    /// rotation is tried again later.
    fn rotation_failed(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        let Some(r) = self.rotation.take() else {
            return;
        };
        if let Some(link) = r.link {
            link.addr.do_send(Abort(DisconnectReason::ClientClosed));
        }
        self.rotation_failures = self.rotation_failures.saturating_add(1);
        let retry_in = match (r.reason, self.config.feed.return_to_primary) {
            (RotateReason::ReturnToPrimary, Some(d)) => d,
            _ => self.life.rotation_delay(self.rotation_failures),
        };
        self.hub.publish(Event::RotationFailed { reason, retry_in });
        let link = self.current.as_ref().map(|c| c.id);
        self.cancel_rotation_timer(ctx);
        self.rotation_timer = Some(ctx.run_later(retry_in, move |act, ctx| {
            act.rotation_timer = None;
            if act.current.as_ref().map(|c| c.id) == link {
                act.feed(Input::Rotate(r.reason), ctx);
            }
        }));
    }

    pub(super) fn cancel_rotation_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.rotation_timer.take() {
            ctx.cancel_future(h);
        }
    }

    /// The new link replaces the current one, which closes with 1000.
    fn switch_to(&mut self, new: Current) {
        if let Some(old) = self.current.replace(new) {
            old.addr.do_send(CloseLink {
                code: 1000,
                reason: DisconnectReason::ClientClosed,
            });
        }
    }
}

impl Handler<Rotate> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Rotate, ctx: &mut Context<Self>) {
        self.feed(Input::Rotate(RotateReason::Requested), ctx);
    }
}
