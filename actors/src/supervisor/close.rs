//! Closing: draining, then handing back what is left (the lifecycle is on
//! [`Supervisor`]).

use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;

use super::{Input, Stage, Supervisor};
use crate::buffer::lock;
use crate::error::{CloseError, DisconnectReason};
use crate::events::Event;
use crate::messages::{Abort, Close, Orphaned, Shutdown, WhenDrained};

impl Supervisor {
    /// Once the queue is drained, the lifecycle learns it (and closes the
    /// link with 1000).
    pub(super) fn drain_then_close(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = oneshot::channel();
        self.queue.do_send(WhenDrained(tx));
        ctx.spawn(rx.into_actor(self).map(|res, act, ctx| {
            if res.is_ok() {
                act.feed(Input::Drained, ctx);
            }
        }));
    }

    /// Stops everything and hands back what was not written (the
    /// lifecycle is `Closed` already, and no attempt is under way).
    pub(super) fn finish_close(&mut self, ctx: &mut Context<Self>) {
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

    fn close(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        let backlog = !lock(&self.buffer).is_empty();
        self.feed(Input::Close { timeout, backlog }, ctx);
    }
}

impl Handler<Close> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        if self.life.stage() == Stage::Closed {
            let _ = msg.reply.send(Err(CloseError::AlreadyClosed));
            return;
        }
        self.close_replies.push(msg.reply);
        self.close(msg.timeout, ctx);
    }
}

impl Handler<Orphaned> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Orphaned, ctx: &mut Context<Self>) {
        tracing::debug!("last client handle dropped: closing");
        self.close(self.config.close_handshake_timeout, ctx);
    }
}
