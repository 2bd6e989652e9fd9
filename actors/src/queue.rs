//! The queue actor: moves accepted messages from the shared buffer to the
//! connection, one batch at a time, setup lane first.
//!
//! Lifecycle: started once per client, stopped by the supervisor when the
//! client closes. While no link is attached it only publishes drops. When a
//! link is attached (`Attach`), the messages the on-connect hook produced for
//! that link go out first, then the backlog, in order. Exactly one batch is in
//! flight at a time; when the connection confirms the flush the batch is
//! released, and when it does not (the link died) the batch's backlog part
//! returns to the head of the buffer. Setup messages of a dead link are not
//! requeued: the next connect produces fresh ones.

use std::collections::VecDeque;
use std::rc::Rc;

use actix::prelude::*;
use futures::channel::oneshot;

use crate::buffer::{lock, SharedBuffer};
use crate::connection::Write;
use crate::events::Event;
use crate::frame::Message;
use crate::hub::{Counters, Hub};

/// A new link is up: write `setup` first, then the backlog, to `writer`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Attach {
    pub(crate) link: u64,
    pub(crate) writer: Recipient<Write>,
    pub(crate) setup: Vec<Message>,
}

/// The link `link` is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detach {
    pub(crate) link: u64,
}

/// Something was pushed into the buffer.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// Resolves when the buffer and the in-flight batch are empty.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WhenDrained(pub(crate) oneshot::Sender<()>);

/// Puts any in-flight batch back into the buffer and stops.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

struct InFlight {
    setup: usize,
    batch: Vec<Message>,
}

pub(crate) struct Queue {
    buffer: SharedBuffer,
    hub: Rc<Hub>,
    batch_max: usize,
    writer: Option<(u64, Recipient<Write>)>,
    setup: VecDeque<Message>,
    in_flight: Option<InFlight>,
    drained: Vec<oneshot::Sender<()>>,
}

impl Queue {
    pub(crate) fn new(buffer: SharedBuffer, hub: Rc<Hub>, batch_max: usize) -> Self {
        Self {
            buffer,
            hub,
            batch_max,
            writer: None,
            setup: VecDeque::new(),
            in_flight: None,
            drained: Vec::new(),
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        let (dropped, batch, setup) = {
            let mut buf = lock(&self.buffer);
            let dropped = buf.begin_pump();
            let mut batch = Vec::new();
            let mut setup = 0;
            if self.in_flight.is_none() && self.writer.is_some() {
                let n = self.setup.len().min(self.batch_max);
                batch.extend(self.setup.drain(..n));
                setup = batch.len();
                batch.extend(buf.take_batch(self.batch_max - setup));
            }
            if batch.is_empty() && self.in_flight.is_none() && buf.is_empty() {
                for tx in self.drained.drain(..) {
                    let _ = tx.send(());
                }
            }
            (dropped, batch, setup)
        };
        for message in dropped {
            self.hub.publish(Event::Dropped { message });
        }
        let Some((link, writer)) = &self.writer else {
            return;
        };
        if batch.is_empty() {
            return;
        }
        let link = *link;
        let send = writer.send(Write(batch.clone()));
        self.in_flight = Some(InFlight { setup, batch });
        ctx.spawn(send.into_actor(self).map(move |res, act, ctx| {
            let flushed = matches!(res, Ok(Ok(())));
            act.finish_write(flushed);
            if !flushed && act.writer.as_ref().is_some_and(|(id, _)| *id == link) {
                // That link is broken or closing; the supervisor attaches
                // the next one (which may already be here: leave it be).
                act.writer = None;
            }
            act.pump(ctx);
        }));
    }

    fn finish_write(&mut self, flushed: bool) {
        let Some(InFlight { setup, mut batch }) = self.in_flight.take() else {
            return;
        };
        let backlog = batch.split_off(setup);
        let mut buf = lock(&self.buffer);
        if flushed {
            let counters = &self.hub.counters;
            Counters::add(&counters.messages_out, (setup + backlog.len()) as u64);
            let bytes: usize = batch.iter().chain(&backlog).map(Message::len).sum();
            Counters::add(&counters.bytes_out, bytes as u64);
            buf.written(&backlog);
        } else {
            buf.requeue(backlog);
        }
    }
}

impl Actor for Queue {
    type Context = Context<Self>;
}

impl Handler<Attach> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        self.writer = Some((msg.link, msg.writer));
        self.setup = msg.setup.into();
        self.pump(ctx);
    }
}

impl Handler<Detach> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Detach, _: &mut Context<Self>) {
        if self.writer.as_ref().is_some_and(|(id, _)| *id == msg.link) {
            self.writer = None;
            self.setup.clear();
        }
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
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        // Whether an in-flight batch was flushed is unknown: hand it back
        // rather than risk reporting a message as written that was not.
        self.finish_write(false);
        self.writer = None;
        ctx.stop();
    }
}
