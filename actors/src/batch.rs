//! A batch of messages on its way to the socket.
//!
//! The queue actor takes a batch out of the shared buffer and hands it, by
//! value, through the connection's mailbox to its writer task, which encodes
//! the messages from a borrow and flushes. Whoever holds the batch last either
//! reports it flushed ([`Batch::flushed`], which frees its room in the buffer)
//! or drops it; dropping puts its backlog part back at the head of the buffer.
//! So a batch dropped anywhere on the way (a full or closed mailbox, a link
//! that dies before or during the write, a connection actor that stops) is
//! never lost, and the happy path costs no copy and no reference-count
//! traffic per message.

use std::rc::Rc;

use crate::buffer::{lock, SharedBuffer, Taken};
use crate::frame::Message;
use crate::hub::{Flushed, Hub};

/// Messages taken for one write on link `link`: the first `setup` come from
/// the setup lane (not counted in the buffer, not requeued: the next link
/// makes fresh ones), the rest from the backlog.
///
/// The writer reports what it wrote ([`Batch::wrote`]) so that the delivery
/// books know where each Ping stands. Dropped unflushed, the batch gives back
/// to the buffer only what no Pong confirmed, its messages written on this
/// link marked as written before.
#[derive(Debug)]
pub(crate) struct Batch {
    messages: Vec<Message>,
    setup: usize,
    taken: Taken,
    link: u64,
    /// The link position of the first backlog message, once written.
    start: Option<u64>,
    /// Backlog messages written so far.
    written: usize,
    buffer: SharedBuffer,
    hub: Rc<Hub>,
    settled: bool,
}

impl Batch {
    /// The caller must not hold the buffer's lock when the batch may drop.
    pub(crate) fn new(
        messages: Vec<Message>,
        setup: usize,
        taken: Taken,
        link: u64,
        buffer: SharedBuffer,
        hub: Rc<Hub>,
    ) -> Self {
        Self {
            setup: setup.min(messages.len()),
            messages,
            taken,
            link,
            start: None,
            written: 0,
            buffer,
            hub,
            settled: false,
        }
    }

    pub(crate) fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The writer took `messages()[from..from + n]`.
    pub(crate) fn wrote(&mut self, from: usize, n: usize) {
        let lo = from.max(self.setup);
        let hi = (from + n).min(self.messages.len());
        if hi <= lo {
            return;
        }
        let mut delivery = self.hub.delivery.borrow_mut();
        if self.start.is_none() {
            self.start = delivery.written(self.link).map(|m| m.count);
        }
        let bytes: usize = self.messages[lo..hi].iter().map(Message::len).sum();
        let seq_after = self.taken.first_seq + (hi - self.setup) as u64;
        delivery.wrote(self.link, (hi - lo) as u64, bytes as u64, seq_after);
        self.written += hi - lo;
    }

    /// The whole batch reached the socket: release its room in the buffer
    /// (with replay, its messages wait in the window for a Pong).
    pub(crate) fn flushed(mut self) -> Flushed {
        self.settled = true;
        let mut messages = std::mem::take(&mut self.messages);
        let (setup, backlog) = messages.split_at(self.setup);
        let setup_bytes: usize = setup.iter().map(Message::len).sum();
        let backlog_bytes = lock(&self.buffer).written(backlog);
        let total = messages.len();
        if let Some(start) = self.start {
            messages.drain(..self.setup);
            self.hub.delivery.borrow_mut().flushed(
                self.link,
                start,
                self.taken.first_seq,
                messages,
                backlog_bytes,
            );
        }
        Flushed {
            messages: total,
            bytes: setup_bytes + backlog_bytes,
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut backlog = self.messages.split_off(self.setup);
        let in_flight = backlog.len();
        let confirmed = self.start.map_or(0, |start| {
            self.hub
                .delivery
                .borrow()
                .confirmed_prefix(self.link, start, self.written)
        });
        let rest = backlog.split_off(confirmed.min(in_flight));
        // What this link wrote is written before now, as is what earlier
        // links wrote (both are prefixes of the batch).
        let resent = self.taken.resent.max(self.written) - confirmed;
        lock(&self.buffer).requeue(
            in_flight,
            &backlog,
            rest,
            self.taken.first_seq + confirmed as u64,
            resent,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::buffer::{Buffer, OverflowPolicy, QueueLimits};

    fn shared() -> SharedBuffer {
        let limits = QueueLimits::new(8, 1024, OverflowPolicy::Reject).unwrap();
        Arc::new(Mutex::new(Buffer::new(limits)))
    }

    fn take(buffer: &SharedBuffer, setup: &[&str]) -> Batch {
        take_on(buffer, setup, Rc::default())
    }

    fn take_on(buffer: &SharedBuffer, setup: &[&str], hub: Rc<Hub>) -> Batch {
        let mut messages: Vec<Message> = setup.iter().map(|s| Message::from(*s)).collect();
        let taken = lock(buffer).take_batch(8, 1 << 20, true, &mut messages);
        Batch::new(messages, setup.len(), taken, 1, buffer.clone(), hub)
    }

    #[test]
    fn a_dropped_batch_returns_its_backlog_to_the_head_in_order() {
        let buffer = shared();
        for s in ["a", "b", "c"] {
            lock(&buffer).push(Message::from(s)).unwrap();
        }
        let batch = take(&buffer, &["auth"]);
        assert_eq!(batch.messages().len(), 4);
        lock(&buffer).push(Message::from("d")).unwrap();
        drop(batch);
        let left: Vec<Message> = lock(&buffer).take_all().into_messages();
        let texts: Vec<&str> = left.iter().filter_map(Message::as_text).collect();
        // The setup message is not requeued; the backlog goes back ahead of
        // what arrived meanwhile.
        assert_eq!(texts, ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_flushed_batch_frees_its_room_and_counts_setup_too() {
        let buffer = shared();
        for s in ["ab", "cde"] {
            lock(&buffer).push(Message::from(s)).unwrap();
        }
        let batch = take(&buffer, &["auth"]);
        assert_eq!(lock(&buffer).depth(), 2, "in flight still counts");
        let f = batch.flushed();
        assert_eq!(
            f,
            Flushed {
                messages: 3,
                bytes: 9
            }
        );
        let buf = lock(&buffer);
        assert_eq!((buf.depth(), buf.bytes()), (0, 0));
    }

    #[test]
    fn a_dropped_batch_keeps_back_what_a_pong_confirmed_and_marks_what_was_written() {
        let buffer = shared();
        for s in ["a", "b", "c", "d"] {
            lock(&buffer).push(Message::from(s)).unwrap();
        }
        let hub: Rc<Hub> = Rc::default();
        hub.delivery.borrow_mut().attach(1, std::rc::Weak::new());
        let mut batch = take_on(&buffer, &["auth"], hub.clone());
        // The writer took auth, a, b, then a Ping, then c; the Pong came
        // before the link died.
        batch.wrote(0, 3);
        let ping = hub.delivery.borrow_mut().ping_payload(1);
        batch.wrote(3, 1);
        assert_eq!(hub.delivery.borrow_mut().on_pong(1, &ping), Some(1));
        drop(batch);
        let mut buf = lock(&buffer);
        assert_eq!(buf.depth(), 2);
        assert_eq!(buf.bytes(), 2, "the room of a and b is free");
        let left = buf.take_all();
        assert_eq!(left.possibly_delivered, [Message::from("c")]);
        assert_eq!(left.unsent, [Message::from("d")]);
    }
}
