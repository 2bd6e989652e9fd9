//! Giving up and closing (the lifecycle is on [`Supervisor`]).

use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use futures::channel::oneshot;

use super::Supervisor;
use crate::buffer::lock;
use crate::error::{CloseError, DisconnectReason, ErrorChain};
use crate::events::{Event, State};
use crate::messages::{Abort, Close, CloseLink, Orphaned, Shutdown, WhenDrained};
use crate::policy::{close_plan, ClosePlan};

impl Supervisor {
    pub(super) fn give_up(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        let attempts = self.policy.attempt();
        tracing::warn!(reason = %ErrorChain(&reason), attempts, "giving up");
        lock(&self.buffer).seal();
        self.hub.delivery.borrow_mut().close();
        self.set_state(State::GaveUp);
        self.hub.publish(Event::GaveUp { reason, attempts });
        if !self.close_replies.is_empty() {
            self.finish_close(ctx);
        }
    }

    /// Starts closing (once): seals the queue, drains it until `timeout`
    /// (reconnecting if needed), then closes and stops.
    pub(super) fn begin_close(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        if self.closing() || self.state == State::Closed {
            return;
        }
        lock(&self.buffer).seal();
        if self.state == State::GaveUp {
            self.finish_close(ctx);
            return;
        }
        self.abandon_rotation(ctx);
        // Closing delivers what is queued: a paused client connects again.
        if std::mem::take(&mut self.paused) && self.current.is_none() && self.pending.is_none() {
            self.set_state(State::Closing);
            if !lock(&self.buffer).is_empty() {
                self.schedule_attempt(Duration::ZERO, ctx);
            }
        }
        let backlog = !lock(&self.buffer).is_empty();
        let now = Instant::now();
        let next_attempt_in = self
            .next_attempt_at
            .map(|at| at.saturating_duration_since(now));
        self.set_state(State::Closing);
        let plan = close_plan(self.current.is_some(), backlog, next_attempt_in, timeout);
        if plan == ClosePlan::CloseNow {
            self.finish_close(ctx);
            return;
        }
        ctx.run_later(timeout, |act, ctx| act.finish_close(ctx));
        if plan == ClosePlan::DrainThenClose {
            self.drain_then_close(ctx);
        }
    }

    pub(super) fn drain_then_close(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = oneshot::channel();
        self.queue.do_send(WhenDrained(tx));
        ctx.spawn(rx.into_actor(self).map(|res, act, _| {
            if res.is_ok() {
                if let Some(cur) = &act.current {
                    cur.addr.do_send(CloseLink {
                        code: 1000,
                        reason: DisconnectReason::ClientClosed,
                    });
                }
            }
        }));
    }

    /// Stops everything and hands back what was not written.
    pub(super) fn finish_close(&mut self, ctx: &mut Context<Self>) {
        if self.state == State::Closed {
            return;
        }
        self.set_state(State::Closed);
        if let Some(h) = self.pending.take() {
            ctx.cancel_future(h);
        }
        self.abandon_rotation(ctx);
        if let Some(cur) = self.current.take() {
            cur.addr.do_send(Abort(DisconnectReason::ClientClosed));
        }
        let queue = self.queue.send(Shutdown);
        ctx.wait(queue.into_actor(self).map(|_, act, ctx| {
            // The queue has put the last link's unconfirmed tail (with
            // replay) back at the head: it comes first, possibly delivered.
            let left = lock(&act.buffer).take_all();
            act.hub.delivery.borrow_mut().close();
            act.hub.publish(Event::Closed {
                unsent: left.unsent.len(),
                possibly_delivered: left.possibly_delivered.len(),
            });
            act.hub.finish();
            for reply in act.close_replies.drain(..) {
                let _ = reply.send(Ok(left.clone()));
            }
            ctx.stop();
        }));
    }
}

impl Handler<Close> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        if self.state == State::Closed {
            let _ = msg.reply.send(Err(CloseError::AlreadyClosed));
            return;
        }
        self.close_replies.push(msg.reply);
        self.begin_close(msg.timeout, ctx);
    }
}

impl Handler<Orphaned> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Orphaned, ctx: &mut Context<Self>) {
        tracing::debug!("last client handle dropped: closing");
        self.begin_close(self.config.close_handshake_timeout, ctx);
    }
}
