//! The outbound buffer shared by the client handles and the queue actor.
//!
//! Handles push into it directly (under a short lock) so that `try_send` is
//! synchronous and a send costs no actor round trip; the queue actor takes
//! batches out of it for the connection. Messages taken for a write stay
//! counted ("in flight") until the connection confirms the flush, and go back
//! to the head of the buffer if it does not, so order is never broken.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::channel::oneshot;

use crate::error::{ConfigError, SendError};
use crate::frame::Message;

/// What happens when a message arrives at a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Refuse the new message; the sender gets it back in [`SendError::Full`].
    #[default]
    Reject,
    /// Drop the oldest queued message to make room; subscribers receive an
    /// [`Event::Dropped`](crate::Event::Dropped) carrying it.
    DropOldest,
    /// `send` waits for room (in arrival order); `try_send` reports
    /// [`SendError::Full`].
    Wait,
}

impl FromStr for OverflowPolicy {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(OverflowPolicy::Reject),
            "drop-oldest" => Ok(OverflowPolicy::DropOldest),
            "wait" => Ok(OverflowPolicy::Wait),
            _ => Err(ConfigError::invalid(
                "overflow",
                "one of reject, drop-oldest, wait",
            )),
        }
    }
}

/// Bounds of the outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    max_messages: usize,
    max_bytes: usize,
    policy: OverflowPolicy,
}

impl Default for QueueLimits {
    /// 1024 messages, 8 MiB, [`OverflowPolicy::Reject`].
    fn default() -> Self {
        Self {
            max_messages: 1024,
            max_bytes: 8 << 20,
            policy: OverflowPolicy::Reject,
        }
    }
}

impl QueueLimits {
    /// Limits, checked: both bounds must be above zero.
    pub fn new(
        max_messages: usize,
        max_bytes: usize,
        policy: OverflowPolicy,
    ) -> Result<Self, ConfigError> {
        if max_messages == 0 {
            return Err(ConfigError::invalid("queue_size", "must be above zero"));
        }
        if max_bytes == 0 {
            return Err(ConfigError::invalid("queue_bytes", "must be above zero"));
        }
        Ok(Self {
            max_messages,
            max_bytes,
            policy,
        })
    }

    /// The most messages the queue holds.
    pub fn max_messages(&self) -> usize {
        self.max_messages
    }

    /// The most payload bytes the queue holds.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The overflow policy.
    pub fn policy(&self) -> OverflowPolicy {
        self.policy
    }
}

/// Payload bytes after which a write batch ends, so that a batch of large
/// messages does not hold up control frames (a Pong) for long.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

pub(crate) type Waiter = (Message, oneshot::Sender<Result<(), SendError>>);

/// The result of a push that was accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The queue actor must be woken to pump (no wake-up is pending yet).
    pub(crate) wake: bool,
}

#[derive(Debug)]
pub(crate) struct Buffer {
    limits: QueueLimits,
    backlog: VecDeque<Message>,
    /// Payload bytes of the backlog and of the messages in flight.
    bytes: usize,
    in_flight: usize,
    sealed: bool,
    waiters: VecDeque<Waiter>,
    dropped: Vec<Message>,
    dropped_total: u64,
    wake_pending: bool,
}

/// A buffer shared between handles (any thread) and the queue actor.
pub(crate) type SharedBuffer = Arc<Mutex<Buffer>>;

#[inline]
pub(crate) fn lock(buffer: &SharedBuffer) -> MutexGuard<'_, Buffer> {
    // A panic while holding this lock cannot leave the buffer half-updated in
    // a way that matters more than losing the whole client, so keep going.
    buffer.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Buffer {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Self {
            limits,
            backlog: VecDeque::new(),
            bytes: 0,
            in_flight: 0,
            sealed: false,
            waiters: VecDeque::new(),
            dropped: Vec::new(),
            dropped_total: 0,
            wake_pending: false,
        }
    }

    pub(crate) fn policy(&self) -> OverflowPolicy {
        self.limits.policy
    }

    fn fits(&self, len: usize) -> bool {
        self.backlog.len() + self.in_flight < self.limits.max_messages
            && self.bytes + len <= self.limits.max_bytes
    }

    /// Accepts `msg` or hands it back, applying the overflow policy.
    pub(crate) fn push(&mut self, msg: Message) -> Result<Accepted, SendError> {
        if self.sealed {
            return Err(SendError::Closed(msg));
        }
        if msg.len() > self.limits.max_bytes {
            return Err(SendError::TooLarge(msg));
        }
        if !self.waiters.is_empty() {
            return Err(SendError::Full(msg));
        }
        while !self.fits(msg.len()) {
            if self.limits.policy != OverflowPolicy::DropOldest {
                return Err(SendError::Full(msg));
            }
            match self.backlog.pop_front() {
                Some(old) => {
                    self.bytes -= old.len();
                    self.dropped_total += 1;
                    self.dropped.push(old);
                }
                None => return Err(SendError::Full(msg)),
            }
        }
        self.bytes += msg.len();
        self.backlog.push_back(msg);
        Ok(Accepted {
            wake: !std::mem::replace(&mut self.wake_pending, true),
        })
    }

    /// Parks a sender until there is room (policy [`OverflowPolicy::Wait`]).
    pub(crate) fn park(&mut self, waiter: Waiter) -> Result<(), SendError> {
        if self.sealed {
            return Err(SendError::Closed(waiter.0));
        }
        self.waiters.push_back(waiter);
        Ok(())
    }

    /// Moves parked senders into the backlog while there is room, in order.
    fn admit_waiters(&mut self) {
        while let Some((msg, _)) = self.waiters.front() {
            if !self.fits(msg.len()) {
                return;
            }
            if let Some((msg, tx)) = self.waiters.pop_front() {
                self.bytes += msg.len();
                self.backlog.push_back(msg);
                // The sender may have given up waiting; the message is
                // accepted either way and will be written.
                let _ = tx.send(Ok(()));
            }
        }
    }

    /// Called by the queue actor before it pumps: clears the wake-up flag and
    /// takes the messages dropped since the last call.
    pub(crate) fn begin_pump(&mut self) -> Vec<Message> {
        self.wake_pending = false;
        std::mem::take(&mut self.dropped)
    }

    /// Moves up to `max` messages, and at most [`BATCH_BYTES`] of payload
    /// (but at least one message), into `batch` for one write, keeping them
    /// counted.
    pub(crate) fn take_batch(&mut self, max: usize, batch: &mut Vec<Message>) {
        let mut n = 0;
        let mut bytes = 0;
        for m in self.backlog.iter().take(max) {
            bytes += m.len();
            if n > 0 && bytes > BATCH_BYTES {
                break;
            }
            n += 1;
        }
        self.in_flight += n;
        batch.extend(self.backlog.drain(..n));
    }

    /// The write of `batch` was flushed: release its space. Returns its
    /// payload bytes.
    pub(crate) fn written(&mut self, batch: &[Message]) -> usize {
        self.in_flight = self.in_flight.saturating_sub(batch.len());
        let bytes: usize = batch.iter().map(Message::len).sum();
        self.bytes = self.bytes.saturating_sub(bytes);
        self.admit_waiters();
        bytes
    }

    /// The write of `batch` failed: put it back at the head, in order.
    pub(crate) fn requeue(&mut self, batch: Vec<Message>) {
        self.in_flight = self.in_flight.saturating_sub(batch.len());
        for msg in batch.into_iter().rev() {
            self.backlog.push_front(msg);
        }
    }

    /// Stops accepting messages; parked senders get theirs back.
    pub(crate) fn seal(&mut self) {
        self.sealed = true;
        for (msg, tx) in self.waiters.drain(..) {
            let _ = tx.send(Err(SendError::Closed(msg)));
        }
    }

    /// Takes everything not yet written, in order.
    pub(crate) fn take_all(&mut self) -> Vec<Message> {
        self.bytes = 0;
        self.backlog.drain(..).collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.backlog.is_empty() && self.in_flight == 0
    }

    pub(crate) fn depth(&self) -> usize {
        self.backlog.len() + self.in_flight
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

impl fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverflowPolicy::Reject => "reject",
            OverflowPolicy::DropOldest => "drop-oldest",
            OverflowPolicy::Wait => "wait",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(n: usize, bytes: usize, policy: OverflowPolicy) -> Buffer {
        match QueueLimits::new(n, bytes, policy) {
            Ok(l) => Buffer::new(l),
            Err(e) => panic!("valid limits rejected: {e}"),
        }
    }

    fn m(s: &str) -> Message {
        Message::from(s)
    }

    fn take(b: &mut Buffer, max: usize) -> Vec<Message> {
        let mut batch = Vec::new();
        b.take_batch(max, &mut batch);
        batch
    }

    #[test]
    fn a_batch_stops_at_its_byte_cap_but_holds_at_least_one() {
        let mut b = buffer(8, 4 * BATCH_BYTES, OverflowPolicy::Reject);
        let half = "h".repeat(BATCH_BYTES / 2);
        let big = "b".repeat(BATCH_BYTES + 1);
        for s in [&big, &half, &half, &half] {
            assert!(b.push(m(s)).is_ok());
        }
        assert_eq!(take(&mut b, 8).len(), 1, "an oversized message goes alone");
        assert_eq!(take(&mut b, 8).len(), 2, "two halves fill the cap");
        assert_eq!(take(&mut b, 8).len(), 1);
        assert_eq!(b.depth(), 4, "all still in flight");
    }

    #[test]
    fn rejects_newest_when_full_by_count() {
        let mut b = buffer(2, 100, OverflowPolicy::Reject);
        assert!(b.push(m("a")).is_ok());
        assert!(b.push(m("b")).is_ok());
        assert_eq!(b.push(m("c")), Err(SendError::Full(m("c"))));
        assert_eq!(b.take_all(), vec![m("a"), m("b")]);
    }

    #[test]
    fn rejects_by_bytes_and_refuses_oversized() {
        let mut b = buffer(10, 4, OverflowPolicy::Reject);
        assert!(b.push(m("abc")).is_ok());
        assert_eq!(b.push(m("de")), Err(SendError::Full(m("de"))));
        assert_eq!(b.push(m("abcde")), Err(SendError::TooLarge(m("abcde"))));
        assert_eq!(b.bytes(), 3);
    }

    #[test]
    fn drop_oldest_reports_what_it_dropped() {
        let mut b = buffer(2, 100, OverflowPolicy::DropOldest);
        for s in ["a", "b", "c"] {
            assert!(b.push(m(s)).is_ok());
        }
        assert_eq!(b.begin_pump(), vec![m("a")]);
        assert_eq!(b.dropped_total(), 1);
        assert_eq!(b.take_all(), vec![m("b"), m("c")]);
    }

    #[test]
    fn in_flight_counts_and_requeues_at_head() {
        let mut b = buffer(3, 100, OverflowPolicy::Reject);
        for s in ["a", "b", "c"] {
            assert!(b.push(m(s)).is_ok());
        }
        let batch = take(&mut b, 2);
        assert_eq!(batch, vec![m("a"), m("b")]);
        assert_eq!(b.depth(), 3);
        assert!(b.push(m("d")).is_err());
        b.requeue(batch);
        assert_eq!(b.take_all(), vec![m("a"), m("b"), m("c")]);
    }

    #[test]
    fn written_frees_room_and_admits_waiters_in_order() {
        let mut b = buffer(1, 100, OverflowPolicy::Wait);
        assert!(b.push(m("a")).is_ok());
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        assert!(b.park((m("b"), tx1)).is_ok());
        assert!(b.park((m("c"), tx2)).is_ok());
        // A newcomer may not overtake parked senders.
        assert_eq!(b.push(m("z")), Err(SendError::Full(m("z"))));
        let batch = take(&mut b, 10);
        b.written(&batch);
        assert_eq!(rx1.try_recv(), Ok(Some(Ok(()))));
        assert_eq!(rx2.try_recv(), Ok(None));
        b.seal();
        assert_eq!(rx2.try_recv(), Ok(Some(Err(SendError::Closed(m("c"))))));
        assert_eq!(b.take_all(), vec![m("b")]);
    }

    #[test]
    fn wake_is_requested_once_per_pump() {
        let mut b = buffer(10, 100, OverflowPolicy::Reject);
        assert_eq!(b.push(m("a")), Ok(Accepted { wake: true }));
        assert_eq!(b.push(m("b")), Ok(Accepted { wake: false }));
        b.begin_pump();
        assert_eq!(b.push(m("c")), Ok(Accepted { wake: true }));
    }

    #[test]
    fn sealed_buffer_hands_messages_back() {
        let mut b = buffer(10, 100, OverflowPolicy::Reject);
        b.seal();
        assert_eq!(b.push(m("a")), Err(SendError::Closed(m("a"))));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Take(usize),
        Written,
        Failed,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            4 => (0usize..12).prop_map(Op::Push),
            2 => (1usize..5).prop_map(Op::Take),
            2 => Just(Op::Written),
            1 => Just(Op::Failed),
        ];
        proptest::collection::vec(op, 0..200)
    }

    fn policy() -> impl Strategy<Value = OverflowPolicy> {
        prop_oneof![
            Just(OverflowPolicy::Reject),
            Just(OverflowPolicy::DropOldest)
        ]
    }

    proptest! {
        /// Under any interleaving of sends, writes and failed writes (a
        /// reconnect), nothing is reordered and everything accepted is
        /// written, dropped (and reported) or still held.
        #[test]
        fn order_and_accounting_hold(ops in ops(), max in 1usize..8, max_bytes in 12usize..40, policy in policy()) {
            let limits = QueueLimits::new(max, max_bytes, policy).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut b = Buffer::new(limits);
            let mut next_id = 0u32;
            let mut accepted = Vec::new();
            let mut written = Vec::new();
            let mut dropped = Vec::new();
            let mut in_flight: Option<Vec<Message>> = None;
            for op in ops {
                match op {
                    Op::Push(len) => {
                        // Payload: the id, padded to `len` bytes.
                        let mut text = next_id.to_string();
                        while text.len() < len { text.push('.'); }
                        next_id += 1;
                        let m = Message::from(text);
                        if b.push(m.clone()).is_ok() { accepted.push(m); }
                    }
                    Op::Take(n) if in_flight.is_none() => {
                        let mut batch = Vec::new();
                        b.take_batch(n, &mut batch);
                        if !batch.is_empty() { in_flight = Some(batch); }
                    }
                    Op::Written => if let Some(batch) = in_flight.take() {
                        b.written(&batch);
                        written.extend(batch);
                    },
                    Op::Failed => if let Some(batch) = in_flight.take() {
                        b.requeue(batch);
                    },
                    Op::Take(_) => {}
                }
                dropped.extend(b.begin_pump());
                prop_assert!(b.depth() <= max);
                prop_assert!(b.bytes() <= max_bytes);
            }
            if let Some(batch) = in_flight.take() { b.requeue(batch); }
            let held = b.take_all();
            prop_assert_eq!(written.len() + dropped.len() + held.len(), accepted.len());
            prop_assert_eq!(b.dropped_total() as usize, dropped.len());
            // Written then held is a subsequence of accepted: never reordered.
            let id = |m: &Message| m.as_text().and_then(|t| t.trim_end_matches('.').parse::<u32>().ok());
            let delivered: Vec<_> = written.iter().chain(&held).map(id).collect();
            let mut sorted = delivered.clone();
            sorted.sort();
            prop_assert_eq!(delivered, sorted);
        }
    }
}
