//! Fan-out to subscribers, and the counters every actor updates.
//!
//! All actors of one client run on the same arbiter, so they share the hub
//! through an `Rc` instead of paying a message per counter update.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use actix::prelude::SendError as MailboxSendError;
use actix::Recipient;

use crate::events::{Event, Inbound, InboundBatch};
use crate::frame::Message;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_in: Cell<u64>,
    pub(crate) bytes_in: Cell<u64>,
    pub(crate) messages_out: Cell<u64>,
    pub(crate) bytes_out: Cell<u64>,
    /// Every inbound frame, control frames included: proof of life.
    pub(crate) frames_in: Cell<u64>,
    pub(crate) last_rtt: Cell<Option<Duration>>,
}

impl Counters {
    pub(crate) fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }
}

#[derive(Debug, Default)]
pub(crate) struct Hub {
    inbound: RefCell<Vec<Recipient<Inbound>>>,
    batches: RefCell<Vec<Recipient<InboundBatch>>>,
    events: RefCell<Vec<Recipient<Event>>>,
    pub(crate) counters: Counters,
}

impl Hub {
    pub(crate) fn subscribe_inbound(&self, r: Recipient<Inbound>) {
        self.inbound.borrow_mut().push(r);
    }

    pub(crate) fn subscribe_batches(&self, r: Recipient<InboundBatch>) {
        self.batches.borrow_mut().push(r);
    }

    pub(crate) fn subscribe_events(&self, r: Recipient<Event>) {
        self.events.borrow_mut().push(r);
    }

    /// Publishes the messages of one read: one actor message per message to
    /// inbound subscribers, one per read to batch subscribers.
    pub(crate) fn publish_inbound(&self, messages: Vec<Message>) {
        Counters::add(&self.counters.messages_in, messages.len() as u64);
        let bytes: usize = messages.iter().map(Message::len).sum();
        Counters::add(&self.counters.bytes_in, bytes as u64);
        if self.batches.borrow().is_empty() {
            // The common case: hand each message over without a copy.
            for message in messages {
                fan_out(&self.inbound, Inbound(message));
            }
            return;
        }
        if !self.inbound.borrow().is_empty() {
            for message in &messages {
                fan_out(&self.inbound, Inbound(message.clone()));
            }
        }
        fan_out(&self.batches, InboundBatch(messages));
    }

    pub(crate) fn publish(&self, event: Event) {
        tracing::debug!(?event, "event");
        fan_out(&self.events, event);
    }
}

fn fan_out<M>(list: &RefCell<Vec<Recipient<M>>>, msg: M)
where
    M: actix::Message + Send + Clone + 'static,
    M::Result: Send,
{
    deliver(&mut list.borrow_mut(), msg);
}

/// Delivers `msg` to every recipient, cloning it for all but the last, and
/// forgets recipients whose actor has stopped.
///
/// `try_send` tells a stopped actor from a full mailbox; a full mailbox still
/// gets the message (`do_send` ignores capacity), so a slow subscriber delays
/// nobody and loses nothing.
pub fn deliver<M>(list: &mut Vec<Recipient<M>>, msg: M)
where
    M: actix::Message + Send + Clone + 'static,
    M::Result: Send,
{
    let mut msg = Some(msg);
    let last = list.len().saturating_sub(1);
    let mut i = 0;
    list.retain(|r| {
        let m = if i == last { msg.take() } else { msg.clone() };
        i += 1;
        match m.map(|m| r.try_send(m)) {
            Some(Err(MailboxSendError::Full(m))) => {
                r.do_send(m);
                true
            }
            Some(Err(MailboxSendError::Closed(_))) => false,
            Some(Ok(())) | None => true,
        }
    });
}
