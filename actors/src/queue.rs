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
//! `batch.rs`). Setup messages of a dead link are not requeued: the next
//! connect produces fresh ones.

use std::collections::VecDeque;
use std::rc::Rc;

use actix::prelude::*;
use futures::channel::oneshot;

use crate::batch::Batch;
use crate::buffer::{lock, SharedBuffer};
use crate::connection::Writer;
use crate::events::Event;
use crate::frame::Message;
use crate::hub::{Counters, Hub};

/// A new link is up: write `setup` first, then the backlog, to `writer`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Attach {
    pub(crate) link: u64,
    pub(crate) writer: Writer,
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

/// Stops once no batch is in flight (a batch that was not flushed is back in
/// the buffer by then).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

pub(crate) struct Queue {
    buffer: SharedBuffer,
    hub: Rc<Hub>,
    batch_max: usize,
    writer: Option<(u64, Writer)>,
    setup: VecDeque<Message>,
    /// A batch is on its way to the socket.
    in_flight: bool,
    drained: Vec<oneshot::Sender<()>>,
    /// Set by `Shutdown` while a batch is in flight: answered once it settles.
    shutdown: Option<oneshot::Sender<()>>,
}

impl Queue {
    pub(crate) fn new(buffer: SharedBuffer, hub: Rc<Hub>, batch_max: usize) -> Self {
        Self {
            buffer,
            hub,
            batch_max,
            writer: None,
            setup: VecDeque::new(),
            in_flight: false,
            drained: Vec::new(),
            shutdown: None,
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        let (dropped, messages, setup) = {
            let mut buf = lock(&self.buffer);
            let dropped = buf.begin_pump();
            let mut messages = Vec::new();
            let mut setup = 0;
            if !self.in_flight && self.writer.is_some() {
                let n = self.setup.len().min(self.batch_max);
                messages.extend(self.setup.drain(..n));
                setup = messages.len();
                buf.take_batch(self.batch_max - setup, &mut messages);
            }
            if messages.is_empty() && !self.in_flight && buf.is_empty() {
                for tx in self.drained.drain(..) {
                    let _ = tx.send(());
                }
            }
            (dropped, messages, setup)
        };
        for message in dropped {
            self.hub.publish(Event::Dropped { message });
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
        let batch = Batch::new(messages, setup, self.buffer.clone());
        let written = writer.write(batch);
        self.in_flight = true;
        ctx.spawn(written.into_actor(self).map(move |res, act, ctx| {
            act.in_flight = false;
            if let Ok(f) = res {
                let counters = &act.hub.counters;
                Counters::add(&counters.messages_out, f.messages as u64);
                Counters::add(&counters.bytes_out, f.bytes as u64);
            } else if act.writer.as_ref().is_some_and(|(id, _)| *id == link) {
                // That link is broken or closing; the supervisor attaches
                // the next one (which may already be here: leave it be).
                act.writer = None;
            }
            if let Some(tx) = act.shutdown.take() {
                let _ = tx.send(());
                ctx.stop();
                return;
            }
            act.pump(ctx);
        }));
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
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.writer = None;
        if !self.in_flight {
            ctx.stop();
            return Box::pin(async {});
        }
        // The supervisor has aborted the link, so the in-flight batch
        // settles soon: flushed, or dropped and back in the buffer, where
        // the supervisor collects what was not written.
        let (tx, rx) = oneshot::channel();
        self.shutdown = Some(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
