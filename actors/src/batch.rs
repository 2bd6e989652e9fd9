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

use crate::buffer::{lock, SharedBuffer};
use crate::frame::Message;

/// What one flushed batch wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

/// Messages taken for one write: the first `setup` come from the setup lane
/// (not counted in the buffer, not requeued: the next link makes fresh ones),
/// the rest from the backlog.
#[derive(Debug)]
pub(crate) struct Batch {
    messages: Vec<Message>,
    setup: usize,
    buffer: SharedBuffer,
    settled: bool,
}

impl Batch {
    /// The caller must not hold the buffer's lock when the batch may drop.
    pub(crate) fn new(messages: Vec<Message>, setup: usize, buffer: SharedBuffer) -> Self {
        Self {
            messages,
            setup,
            buffer,
            settled: false,
        }
    }

    pub(crate) fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The whole batch reached the socket: release its room in the buffer.
    pub(crate) fn flushed(mut self) -> Flushed {
        self.settled = true;
        let (setup, backlog) = self.messages.split_at(self.setup.min(self.messages.len()));
        let setup_bytes: usize = setup.iter().map(Message::len).sum();
        let backlog_bytes = lock(&self.buffer).written(backlog);
        Flushed {
            messages: self.messages.len(),
            bytes: setup_bytes + backlog_bytes,
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let backlog = self.messages.split_off(self.setup.min(self.messages.len()));
        lock(&self.buffer).requeue(backlog);
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
        let mut messages: Vec<Message> = setup.iter().map(|s| Message::from(*s)).collect();
        lock(buffer).take_batch(8, &mut messages);
        Batch::new(messages, setup.len(), buffer.clone())
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
        let left: Vec<Message> = lock(&buffer).take_all();
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
}
