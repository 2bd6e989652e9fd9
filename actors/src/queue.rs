//! The queue actor: moves accepted messages from the shared buffer to the
//! connection, one batch at a time, setup lane first.
//!
//! Lifecycle: started once per client, stopped by the supervisor when the
//! client closes. While no link is attached it only publishes drops. When a
//! link is attached (`Attach`), the messages the on-connect hook produced for
//! that link go out first, then the backlog, in order. Exactly one batch is in
//! flight at a time, moved (not copied) to the connection; when the connection
//! flushes it, its room in the buffer is released, and when it does not (the
//! link died) the batch's backlog part returns to the head of the buffer (see
//! `batch.rs`), less what a Pong confirmed. Setup messages of a dead link are
//! not requeued: the next connect produces fresh ones.
//!
//! With replay, writing also stops while the unconfirmed window is full,
//! until a Pong confirms part of it; when a link ends, once its last batch
//! has settled, the window's tail goes back to the head of the buffer, ahead
//! of that batch's remainder. "Drained" means written and confirmed.

use std::collections::VecDeque;
use std::rc::Rc;

use actix::prelude::*;
use futures::channel::oneshot;

use crate::batch::Batch;
use crate::buffer::{lock, SharedBuffer, Taken, BATCH_BYTES};
use crate::events::Event;
use crate::frame::Message;
use crate::hub::Hub;
use crate::messages::{
    Attach, Detach, Handover, Open, Shutdown, Standby, WaitConfirmed, Wake, WhenDrained,
};
use crate::writer::{Handoff, Writer};

pub(crate) struct Queue {
    buffer: SharedBuffer,
    hub: Rc<Hub>,
    /// Where the supervisor leaves new links' writers.
    handoff: Rc<Handoff>,
    batch_max: usize,
    writer: Option<(u64, Writer)>,
    setup: VecDeque<Message>,
    /// The ready gate of the attached link is closed: setup lane only.
    gated: bool,
    /// A rotation's new link, its setup lane written or on its way.
    standby: Option<(u64, Writer)>,
    /// Outbound traffic moves to this link once the current one settles.
    handover: Option<(u64, Writer, oneshot::Sender<()>)>,
    /// The attached link has not taken a batch yet.
    fresh: bool,
    /// A batch is on its way to the socket of this link.
    in_flight: Option<u64>,
    /// This link ended while its batch was in flight: its tail is settled
    /// once the batch is.
    ending: Option<u64>,
    drained: Vec<oneshot::Sender<()>>,
    /// Set by `Shutdown` while a batch is in flight: answered once it settles.
    shutdown: Option<oneshot::Sender<()>>,
}

impl Queue {
    pub(crate) fn new(
        buffer: SharedBuffer,
        hub: Rc<Hub>,
        handoff: Rc<Handoff>,
        batch_max: usize,
    ) -> Self {
        Self {
            buffer,
            hub,
            handoff,
            batch_max,
            writer: None,
            setup: VecDeque::new(),
            gated: false,
            standby: None,
            handover: None,
            fresh: false,
            in_flight: None,
            ending: None,
            drained: Vec::new(),
            shutdown: None,
        }
    }

    /// Moves to the handover link once the current one has settled;
    /// returns whether the handover still waits (nothing is written then).
    fn advance_handover(&mut self) -> bool {
        if self.handover.is_none() {
            return false;
        }
        if self.in_flight.is_some() {
            return true;
        }
        if self.writer.is_some() {
            let mut delivery = self.hub.delivery.borrow_mut();
            if delivery.unconfirmed().0 > 0 {
                delivery.request_barrier();
                delivery.wake_queue_on_confirm();
                return true;
            }
        }
        let Some((link, writer, done)) = self.handover.take() else {
            return false;
        };
        if let Some((old, _)) = self.writer.take() {
            self.end_link(old);
        }
        self.hub
            .delivery
            .borrow_mut()
            .attach(link, writer.control());
        self.writer = Some((link, writer));
        self.setup.clear();
        self.gated = false;
        self.fresh = true;
        let _ = done.send(());
        false
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        let holding = self.advance_handover();
        let (dropped, messages, setup, taken, replaying, all_written) = {
            let mut buf = lock(&self.buffer);
            let dropped = buf.begin_pump();
            let mut messages = Vec::new();
            let mut setup = 0;
            let mut taken = Taken::default();
            let mut replaying = 0;
            if !holding && self.in_flight.is_none() && self.writer.is_some() {
                if std::mem::take(&mut self.fresh) {
                    replaying = buf.resent();
                }
                let n = self.setup.len().min(self.batch_max);
                messages.extend(self.setup.drain(..n));
                setup = messages.len();
                let mut delivery = self.hub.delivery.borrow_mut();
                let (room, room_bytes, empty) = delivery.room();
                let max = (self.batch_max - setup).min(room);
                if max > 0 && !self.gated {
                    let max_bytes = room_bytes.min(BATCH_BYTES);
                    taken = buf.take_batch(max, max_bytes, empty, &mut messages);
                }
                if messages.len() == setup && buf.depth() > 0 && !self.gated {
                    // The window is full: a Pong makes room.
                    delivery.wake_queue_on_confirm();
                }
            }
            let all_written = messages.is_empty() && self.in_flight.is_none() && buf.is_empty();
            (dropped, messages, setup, taken, replaying, all_written)
        };
        if all_written {
            self.answer_drained();
        }
        for message in dropped {
            self.hub.publish(Event::Dropped { message });
        }
        if replaying > 0 {
            self.hub.publish(Event::Replaying {
                messages: replaying,
            });
        }
        let Some((link, writer)) = &self.writer else {
            return;
        };
        if messages.is_empty() {
            return;
        }
        let link = *link;
        // From here the batch looks after itself: if it is dropped anywhere
        // on the way, its backlog part goes back to the head of the buffer.
        let batch = Batch::new(
            messages,
            setup,
            taken,
            link,
            self.buffer.clone(),
            self.hub.clone(),
        );
        let written = writer.write(batch);
        self.in_flight = Some(link);
        ctx.spawn(written.into_actor(self).map(move |res, act, ctx| {
            act.in_flight = None;
            if let Ok(f) = res {
                act.hub.counters.wrote(f);
            } else if act.writer.as_ref().is_some_and(|(id, _)| *id == link) {
                // That link is broken or closing; the supervisor attaches
                // the next one (which may already be here: leave it be).
                act.writer = None;
            }
            if act.ending == Some(link) {
                act.ending = None;
                act.end_link(link);
            }
            if let Some(tx) = act.shutdown.take() {
                let _ = tx.send(());
                ctx.stop();
                return;
            }
            act.pump(ctx);
        }));
    }

    /// Everything is written: answer the drain waiters once a Pong has
    /// confirmed it too, asking for one if need be.
    fn answer_drained(&mut self) {
        if self.drained.is_empty() {
            return;
        }
        let mut delivery = self.hub.delivery.borrow_mut();
        if delivery.unconfirmed().0 > 0 {
            delivery.request_barrier();
            delivery.wake_queue_on_confirm();
            return;
        }
        for tx in self.drained.drain(..) {
            let _ = tx.send(());
        }
    }

    /// Link `link` has ended and its last batch has settled: with replay,
    /// what it did not get confirmed goes back to the head of the buffer.
    fn end_link(&mut self, link: u64) {
        self.hub.delivery.borrow_mut().finish_link(link);
    }

    /// The link is gone: settle it now, or once its batch settles.
    fn link_gone(&mut self, link: u64) {
        if self.in_flight == Some(link) {
            self.ending = Some(link);
        } else {
            self.end_link(link);
        }
    }
}

impl Actor for Queue {
    type Context = Context<Self>;
}

impl Handler<Attach> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        let Some(writer) = self.handoff.take(msg.link) else {
            return;
        };
        self.hub
            .delivery
            .borrow_mut()
            .attach(msg.link, writer.control());
        self.writer = Some((msg.link, writer));
        self.setup = msg.setup.into();
        self.gated = msg.gated;
        self.fresh = true;
        self.pump(ctx);
    }
}

impl Handler<Open> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Open, ctx: &mut Context<Self>) {
        if self.writer.as_ref().is_some_and(|(id, _)| *id == msg.link) {
            self.gated = false;
            self.pump(ctx);
        }
    }
}

impl Handler<Standby> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Standby, ctx: &mut Context<Self>) {
        let Some(writer) = self.handoff.take(msg.link) else {
            return;
        };
        let setup = msg.setup.len();
        let batch = Batch::new(
            msg.setup,
            setup,
            Taken::default(),
            msg.link,
            self.buffer.clone(),
            self.hub.clone(),
        );
        let written = writer.write(batch);
        self.standby = Some((msg.link, writer));
        let flushed = msg.flushed;
        ctx.spawn(written.into_actor(self).map(move |res, act, _| {
            if let Ok(f) = res {
                act.hub.counters.wrote(f);
                let _ = flushed.send(());
            }
        }));
    }
}

impl Handler<Handover> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Handover, ctx: &mut Context<Self>) {
        let Some((_, writer)) = self.standby.take_if(|(id, _)| *id == msg.link) else {
            return;
        };
        self.handover = Some((msg.link, writer, msg.done));
        self.pump(ctx);
    }
}

impl Handler<Detach> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if self.writer.as_ref().is_some_and(|(id, _)| *id == msg.link) {
            self.writer = None;
            self.setup.clear();
        }
        self.standby.take_if(|(id, _)| *id == msg.link);
        self.handover.take_if(|(id, _, _)| *id == msg.link);
        self.link_gone(msg.link);
        self.pump(ctx);
    }
}

impl Handler<Wake> for Queue {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}

impl Handler<WhenDrained> for Queue {
    type Result = ();

    fn handle(&mut self, msg: WhenDrained, ctx: &mut Context<Self>) {
        self.drained.push(msg.0);
        self.pump(ctx);
    }
}

impl Handler<Shutdown> for Queue {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.standby = None;
        self.handover = None;
        if let Some((link, _)) = self.writer.take() {
            self.link_gone(link);
        }
        // A link whose writer broke while it was closing still has books:
        // settle them too, so that its unconfirmed tail is handed back.
        let booked = self.hub.delivery.borrow().link_id();
        if let Some(link) = booked.filter(|&l| self.in_flight != Some(l)) {
            self.end_link(link);
        }
        if self.in_flight.is_none() {
            ctx.stop();
            return Box::pin(async {});
        }
        // The supervisor has aborted the link, so the in-flight batch
        // settles soon: flushed, or dropped and back in the buffer, where
        // the supervisor collects what was not confirmed.
        let (tx, rx) = oneshot::channel();
        self.shutdown = Some(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<WaitConfirmed> for Queue {
    type Result = MessageResult<WaitConfirmed>;

    fn handle(&mut self, msg: WaitConfirmed, _: &mut Context<Self>) -> Self::Result {
        let mut delivery = self.hub.delivery.borrow_mut();
        let rx = delivery.wait_confirmed(msg.0);
        if delivery.unconfirmed().0 > 0 {
            delivery.request_barrier();
        }
        MessageResult(rx)
    }
}
