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

use std::cell::Cell;
use std::rc::Rc;

use crate::buffer::{lock, SharedBuffer, Taken};
use crate::delivery::Mark;
use crate::frame::Message;
use crate::hub::{Flushed, Hub};

/// How many of the data messages handed to one link's writer (setup lane
/// included) its socket has taken whole, as last seen; `None` if the
/// transport cannot tell (`FrameWriter::messages_unaccepted`).
pub(crate) type SocketTook = Rc<Cell<Option<u64>>>;

/// Messages taken for one write on link `link`: the first `setup` come from
/// the setup lane (not counted in the buffer, not requeued: the next link
/// makes fresh ones), the rest from the backlog.
///
/// The writer reports what it wrote ([`Batch::wrote`]) so that the delivery
/// books know where each Ping stands. Dropped unflushed (its link died in
/// the middle of it), the batch settles what the socket took whole like a
/// flushed batch (without replay: possibly lost, never written again; with
/// replay: unconfirmed, written again on the next link), and gives back to
/// the head of the buffer what the socket never took whole and what, with
/// replay, no Pong confirmed; if the transport cannot tell what its socket
/// took, everything no Pong confirmed goes back, marked written before.
#[derive(Debug)]
pub(crate) struct Batch {
    messages: Vec<Message>,
    setup: usize,
    taken: Taken,
    link: u64,
    /// The link position of the first backlog message, once written.
    start: Option<Mark>,
    /// Backlog messages written so far.
    written: usize,
    /// Messages handed to the writer so far, setup lane included.
    handed: usize,
    /// The link's count of messages handed before this batch, and how
    /// many its socket took whole.
    socket: Option<(u64, SocketTook)>,
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
            handed: 0,
            socket: None,
            buffer,
            hub,
            settled: false,
        }
    }

    pub(crate) fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The writer of a link that had handed `before` messages to its
    /// socket starts on this batch; `took` follows what the socket takes.
    pub(crate) fn on_socket(&mut self, before: u64, took: SocketTook) {
        self.socket = Some((before, took));
    }

    /// The writer took `messages()[from..from + n]`.
    pub(crate) fn wrote(&mut self, from: usize, n: usize) {
        self.handed = self
            .handed
            .max(from.saturating_add(n))
            .min(self.messages.len());
        let lo = from.max(self.setup);
        let hi = (from + n).min(self.messages.len());
        if hi <= lo {
            return;
        }
        let mut delivery = self.hub.delivery.borrow_mut();
        if self.start.is_none() {
            self.start = delivery.written(self.link);
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
                start.count,
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

impl Batch {
    /// How many of this batch's messages (setup lane first) the socket
    /// took whole, if the transport says.
    fn taken_whole(&self) -> Option<usize> {
        let (before, took) = self.socket.as_ref()?;
        let took = took.get()?;
        Some((took.saturating_sub(*before) as usize).min(self.handed))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let whole = self.taken_whole();
        if let Some(n) = whole.filter(|&n| n > 0) {
            // Each time the socket takes a message counts, as for a flush.
            let bytes: usize = self.messages[..n].iter().map(Message::len).sum();
            self.hub.counters.wrote(Flushed { messages: n, bytes });
        }
        let mut backlog = self.messages.split_off(self.setup);
        let in_flight = backlog.len();
        let replay = self.hub.delivery.borrow().replays();
        let confirmed = self.start.map_or(0, |start| {
            self.hub
                .delivery
                .borrow()
                .confirmed_prefix(self.link, start.count, self.written)
        });
        // Backlog messages the socket took whole, when the transport says.
        let took = whole.map(|n| n.saturating_sub(self.setup).min(self.written));
        // What no Pong confirmed goes back, everything this link wrote
        // marked written before: all a transport that cannot say what its
        // socket took allows, and what replay writes again anyway.
        let mut stay = confirmed;
        let mut written_before = self.taken.resent.max(self.written);
        match (replay, took) {
            // Without replay, what the socket took is never written again:
            // like a flushed message, it is possibly lost unless a Pong
            // confirms it.
            (false, Some(took)) => {
                stay = confirmed.max(took);
                written_before = self.taken.resent;
                if let Some(start) = self.start {
                    let bytes: usize = backlog[..took].iter().map(Message::len).sum();
                    let at = Mark {
                        count: start.count + took as u64,
                        bytes: start.bytes + bytes as u64,
                        seq: self.taken.first_seq + took as u64,
                    };
                    self.hub.delivery.borrow_mut().socket_took(self.link, at);
                }
            }
            // With replay, what the socket took may reach the server twice:
            // it counts as replayed.
            (true, Some(took)) => {
                let again = took.saturating_sub(confirmed);
                self.hub.delivery.borrow_mut().count_replayed(again);
            }
            (_, None) => {}
        }
        let stay = stay.min(in_flight);
        let rest = backlog.split_off(stay);
        lock(&self.buffer).requeue(
            in_flight,
            &backlog,
            rest,
            self.taken.first_seq + stay as u64,
            written_before.saturating_sub(stay),
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
