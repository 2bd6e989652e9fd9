//! The outbound buffer shared by the client handles and the queue actor.
//!
//! Handles push into it directly (under a short lock) so that `try_send` is
//! synchronous and a send costs no actor round trip; the queue actor takes
//! batches out of it for the connection. Messages taken for a write stay
//! counted ("in flight") until the connection confirms the flush, and go back
//! to the head of the buffer if it does not, so order is never broken.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::task::{Context, Poll, Waker};

use futures::channel::oneshot;

use crate::error::{ConfigError, SendError, Unconfirmed};
use crate::frame::Message;
use crate::metrics::Metrics;

/// What [`Client::try_send`](crate::Client::try_send) does with a message
/// that arrives at a full queue.
///
/// [`Client::send`](crate::Client::send) never applies the policy: it waits
/// for room whatever the policy is, as a bounded channel's `send` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Refuse the new message; the sender gets it back in [`SendError::Full`].
    #[default]
    Reject,
    /// Drop the oldest queued messages when that makes room for the new one;
    /// each dropped message reaches subscribers as an
    /// [`Event::Dropped`](crate::Event::Dropped). When dropping cannot make
    /// room (the room is held by a batch in flight, or the new message is
    /// larger than everything that could be dropped), nothing is dropped and
    /// the new message is refused with [`SendError::Full`].
    DropOldest,
    /// The same as [`OverflowPolicy::Reject`] for `try_send` (kept for
    /// configurations that name it; `send` waits under every policy).
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
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the bound that is zero.
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

/// Receipts held before the first sweep of dropped ones.
const MIN_SWEEP: usize = 1024;

/// Payload bytes after which a write batch ends, so that a batch of large
/// messages does not hold up control frames (a Pong) for long.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

/// The result of a push that was accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The queue actor must be woken to pump (no wake-up is pending yet).
    pub(crate) wake: bool,
}

/// What [`Buffer::take_batch`] took: the accept sequence number of the first
/// message (a batch's messages have consecutive numbers) and how many of the
/// first were written before on a link that ended unconfirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Taken {
    pub(crate) first_seq: u64,
    pub(crate) resent: usize,
}

/// The messages the client could not deliver, handed back by
/// [`Client::close`](crate::Client::close), in the order they were accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undelivered {
    /// Written on a link that ended, or was closed, before a Pong confirmed
    /// them: the server may have them. They come first.
    pub possibly_delivered: Vec<Message>,
    /// Never written.
    pub unsent: Vec<Message>,
}

impl Undelivered {
    /// How many messages, both kinds.
    pub fn len(&self) -> usize {
        self.possibly_delivered.len() + self.unsent.len()
    }

    /// Whether every message was delivered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All of them, in order: the possibly delivered, then the unsent.
    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.possibly_delivered.iter().chain(&self.unsent)
    }

    /// All of them, in order: the possibly delivered, then the unsent.
    pub fn into_messages(self) -> Vec<Message> {
        let mut all = self.possibly_delivered;
        all.extend(self.unsent);
        all
    }
}

#[derive(Debug)]
pub(crate) struct Buffer {
    limits: QueueLimits,
    backlog: VecDeque<Message>,
    /// Accept sequence numbers of the backlog, as runs of consecutive
    /// numbers `(first, len)`: a run breaks only where messages were
    /// evicted while a batch was in flight and the batch came back.
    runs: VecDeque<(u64, usize)>,
    /// The number the next accepted message gets.
    next_seq: u64,
    /// How many messages at the head of the backlog were written before,
    /// on a link that ended before a Pong confirmed them.
    resent: usize,
    /// Receipts of tracked messages whose fate is not known yet, by accept
    /// sequence number. Those whose `Receipt` was dropped are swept out
    /// once the map doubles, so it holds about as many as the application
    /// keeps (plus what was accepted since the last sweep).
    receipts: BTreeMap<u64, oneshot::Sender<Result<(), Unconfirmed>>>,
    /// The size at which the next sweep runs.
    next_sweep: usize,
    /// Payload bytes of the backlog and of the messages in flight.
    bytes: usize,
    in_flight: usize,
    sealed: bool,
    /// `send` calls waiting for room, in arrival order: a ticket and the
    /// waker of the task that holds the message. The messages themselves
    /// stay in the callers' futures, so waiting senders hold no room here
    /// and a cancelled `send` leaves nothing behind.
    waiters: VecDeque<(u64, Option<Waker>)>,
    next_ticket: u64,
    dropped: Vec<Message>,
    dropped_total: u64,
    wake_pending: bool,
    /// `tether_queue_*` and `tether_messages_dropped_total{reason="refused"}`.
    metrics: Metrics,
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
            runs: VecDeque::new(),
            next_seq: 0,
            resent: 0,
            receipts: BTreeMap::new(),
            next_sweep: MIN_SWEEP,
            bytes: 0,
            in_flight: 0,
            sealed: false,
            waiters: VecDeque::new(),
            next_ticket: 0,
            dropped: Vec::new(),
            dropped_total: 0,
            wake_pending: false,
            metrics: Metrics::default(),
        }
    }

    /// The same buffer, reporting to `metrics`.
    pub(crate) fn observed(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Reports the depth to the metrics: at each pump (so after every
    /// burst of sends) and whenever room is freed or given back.
    fn gauge(&self) {
        self.metrics.queue(self.depth(), self.bytes);
    }

    fn fits(&self, len: usize) -> bool {
        self.backlog.len() + self.in_flight < self.limits.max_messages
            && self.bytes + len <= self.limits.max_bytes
    }

    /// How many of the oldest queued messages must go to make room for a
    /// message of `len` bytes, if dropping them can make room at all.
    fn evictions_for(&self, len: usize) -> Option<usize> {
        let mut count = self.backlog.len() + self.in_flight;
        let mut bytes = self.bytes;
        let mut n = 0;
        let mut oldest = self.backlog.iter();
        while count >= self.limits.max_messages || bytes + len > self.limits.max_bytes {
            let old = oldest.next()?;
            count -= 1;
            bytes -= old.len();
            n += 1;
        }
        Some(n)
    }

    #[inline]
    fn accept(&mut self, msg: Message) -> Accepted {
        self.bytes += msg.len();
        self.backlog.push_back(msg);
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.runs.back_mut() {
            Some((first, len)) if *first + *len as u64 == seq => *len += 1,
            _ => self.runs.push_back((seq, 1)),
        }
        Accepted {
            wake: !std::mem::replace(&mut self.wake_pending, true),
        }
    }

    /// Hands back a message the queue can never take: it is sealed, or the
    /// message alone is over the byte bound.
    #[inline]
    fn admissible(&self, msg: Message) -> Result<Message, SendError> {
        if self.sealed {
            Err(SendError::Closed(msg))
        } else if msg.len() > self.limits.max_bytes {
            self.metrics.refused();
            Err(SendError::TooLarge(msg))
        } else {
            Ok(msg)
        }
    }

    /// Accepts `msg` or hands it back, applying the overflow policy
    /// (`try_send`).
    pub(crate) fn push(&mut self, msg: Message) -> Result<Accepted, SendError> {
        // A newcomer does not overtake waiting senders, unless the policy
        // says the newest message wins.
        let msg = match self.push_or_wait(msg)? {
            Ok(accepted) => return Ok(accepted),
            Err(msg) => msg,
        };
        let evictions = match self.limits.policy {
            OverflowPolicy::DropOldest => self.evictions_for(msg.len()),
            _ => None,
        };
        let Some(n) = evictions else {
            self.metrics.refused();
            return Err(SendError::Full(msg));
        };
        let mut evicted = Vec::new();
        self.consume_runs(n, |range| evicted.push(range));
        for range in evicted {
            self.settle_receipts(range, Err(Unconfirmed::Dropped));
        }
        self.resent = self.resent.saturating_sub(n);
        for old in self.backlog.drain(..n) {
            self.bytes -= old.len();
            self.dropped_total = self.dropped_total.saturating_add(1);
            self.dropped.push(old);
        }
        Ok(self.accept(msg))
    }

    /// `send`'s fast path: accepts `msg` if there is room and nobody waits;
    /// `Ok(Err(msg))` hands it back to wait in line.
    #[inline]
    pub(crate) fn push_or_wait(
        &mut self,
        msg: Message,
    ) -> Result<Result<Accepted, Message>, SendError> {
        let msg = self.admissible(msg)?;
        if self.waiters.is_empty() && self.fits(msg.len()) {
            return Ok(Ok(self.accept(msg)));
        }
        Ok(Err(msg))
    }

    /// Accepts the message in `msg` once there is room, in the order the
    /// callers first asked (`send`). While it waits, the caller keeps the
    /// message and `ticket` holds its place in line; a caller that stops
    /// waiting must call [`Buffer::cancel`] with its ticket.
    pub(crate) fn poll_push(
        &mut self,
        msg: &mut Option<Message>,
        ticket: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Accepted, SendError>> {
        let Some(m) = msg.take() else {
            // Polled again after it completed: nothing left to send.
            return Poll::Ready(Err(SendError::Closed(Message::Binary(Default::default()))));
        };
        let m = match self.admissible(m) {
            Ok(m) => m,
            Err(refused) => {
                if let Some(t) = ticket.take() {
                    self.cancel(t);
                }
                return Poll::Ready(Err(refused));
            }
        };
        let first_in_line = match *ticket {
            Some(t) => self.waiters.front().is_some_and(|(id, _)| *id == t),
            None => self.waiters.is_empty(),
        };
        if first_in_line && self.fits(m.len()) {
            if ticket.take().is_some() {
                self.waiters.pop_front();
            }
            let accepted = self.accept(m);
            // The next in line may fit too.
            self.wake_first();
            return Poll::Ready(Ok(accepted));
        }
        *msg = Some(m);
        let waker = Some(cx.waker().clone());
        match *ticket {
            Some(t) => {
                if let Some(entry) = self.waiters.iter_mut().find(|(id, _)| *id == t) {
                    entry.1 = waker;
                }
            }
            None => {
                let t = self.next_ticket;
                self.next_ticket = self.next_ticket.wrapping_add(1);
                self.waiters.push_back((t, waker));
                *ticket = Some(t);
            }
        }
        Poll::Pending
    }

    /// A waiting sender gave up (its future was dropped): it leaves the line,
    /// and if it was first, the next one gets its chance.
    pub(crate) fn cancel(&mut self, ticket: u64) {
        let was_first = self.waiters.front().is_some_and(|(id, _)| *id == ticket);
        self.waiters.retain(|(id, _)| *id != ticket);
        if was_first {
            self.wake_first();
        }
    }

    fn wake_first(&mut self) {
        if let Some(w) = self.waiters.front_mut().and_then(|(_, w)| w.take()) {
            w.wake();
        }
    }

    /// How many `send` calls wait for room.
    pub(crate) fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Called by the queue actor before it pumps: clears the wake-up flag and
    /// takes the messages dropped since the last call.
    pub(crate) fn begin_pump(&mut self) -> Vec<Message> {
        self.wake_pending = false;
        self.gauge();
        std::mem::take(&mut self.dropped)
    }

    /// Moves up to `max` messages, and at most `max_bytes` of payload, into
    /// `batch` for one write, keeping them counted. With `at_least_one`, the
    /// first message goes even when it is larger than `max_bytes`. A batch
    /// holds consecutive accept sequence numbers only.
    pub(crate) fn take_batch(
        &mut self,
        max: usize,
        max_bytes: usize,
        at_least_one: bool,
        batch: &mut Vec<Message>,
    ) -> Taken {
        let run = self.runs.front().map_or(0, |(_, len)| *len);
        let mut n = 0;
        let mut bytes = 0;
        for m in self.backlog.iter().take(max.min(run)) {
            bytes += m.len();
            if bytes > max_bytes && !(n == 0 && at_least_one) {
                break;
            }
            n += 1;
        }
        let taken = Taken {
            first_seq: self.runs.front().map_or(self.next_seq, |(first, _)| *first),
            resent: self.resent.min(n),
        };
        self.consume_runs(n, |_| {});
        self.resent -= taken.resent;
        self.in_flight += n;
        batch.extend(self.backlog.drain(..n));
        taken
    }

    /// The first `n` messages leave the backlog: their numbers go too,
    /// each run of them reported to `gone`.
    fn consume_runs(&mut self, mut n: usize, mut gone: impl FnMut(Range<u64>)) {
        while n > 0 {
            let Some((first, len)) = self.runs.front_mut() else {
                break;
            };
            let k = n.min(*len);
            gone(*first..*first + k as u64);
            *first += k as u64;
            *len -= k;
            n -= k;
            if *len == 0 {
                self.runs.pop_front();
            }
        }
    }

    /// Accepts `msg` as [`Buffer::push`] does and returns a receipt that
    /// learns its fate.
    pub(crate) fn push_tracked(
        &mut self,
        msg: Message,
    ) -> Result<(Accepted, oneshot::Receiver<Result<(), Unconfirmed>>), SendError> {
        let accepted = self.push(msg)?;
        let (tx, rx) = oneshot::channel();
        self.receipts.insert(self.next_seq - 1, tx);
        if self.receipts.len() >= self.next_sweep {
            self.receipts.retain(|_, tx| !tx.is_canceled());
            self.next_sweep = (self.receipts.len() * 2).max(MIN_SWEEP);
        }
        Ok((accepted, rx))
    }

    /// Tells the receipts of the messages numbered in `range` their fate.
    pub(crate) fn settle_receipts(&mut self, range: Range<u64>, outcome: Result<(), Unconfirmed>) {
        if self.receipts.is_empty() || range.is_empty() {
            return;
        }
        let mut settled = self.receipts.split_off(&range.start);
        let mut rest = settled.split_off(&range.end);
        self.receipts.append(&mut rest);
        for (_, tx) in settled {
            let _ = tx.send(outcome);
        }
    }

    /// The client closed or gave up: no receipt will learn more.
    pub(crate) fn close_receipts(&mut self) {
        for (_, tx) in std::mem::take(&mut self.receipts) {
            let _ = tx.send(Err(Unconfirmed::Closed));
        }
    }

    /// Puts messages numbered from `first_seq` on back at the head.
    fn push_front_run(&mut self, first_seq: u64, len: usize) {
        if len == 0 {
            return;
        }
        match self.runs.front_mut() {
            Some((first, l)) if first_seq + len as u64 == *first => {
                *first = first_seq;
                *l += len;
            }
            _ => self.runs.push_front((first_seq, len)),
        }
    }

    /// The accept sequence number the next message gets: every message
    /// accepted so far has a smaller one.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The write of `batch` was flushed: release its space. Returns its
    /// payload bytes.
    pub(crate) fn written(&mut self, batch: &[Message]) -> usize {
        self.in_flight = self.in_flight.saturating_sub(batch.len());
        let bytes: usize = batch.iter().map(Message::len).sum();
        self.bytes = self.bytes.saturating_sub(bytes);
        self.wake_first();
        self.gauge();
        bytes
    }

    /// The write of a batch of `in_flight` backlog messages failed: its
    /// first `confirmed` were confirmed by a Pong (they leave, their room is
    /// freed), and `rest`, numbered from `first_seq`, goes back to the head
    /// in order, its first `resent` marked as written before.
    pub(crate) fn requeue(
        &mut self,
        in_flight: usize,
        confirmed: &[Message],
        rest: Vec<Message>,
        first_seq: u64,
        resent: usize,
    ) {
        self.in_flight = self.in_flight.saturating_sub(in_flight);
        let freed: usize = confirmed.iter().map(Message::len).sum();
        self.bytes = self.bytes.saturating_sub(freed);
        if !confirmed.is_empty() {
            self.wake_first();
        }
        self.push_front_run(first_seq, rest.len());
        self.resent += resent.min(rest.len());
        for msg in rest.into_iter().rev() {
            self.backlog.push_front(msg);
        }
        self.gauge();
    }

    /// A link ended with `tail` written and not confirmed (replay): it goes
    /// back to the head, ahead of everything, to be written again. The
    /// queue may then hold more than its bounds until it is written; sends
    /// wait meanwhile.
    pub(crate) fn replay(&mut self, tail: Vec<(u64, Message)>) {
        self.resent += tail.len();
        for (seq, msg) in tail.into_iter().rev() {
            self.bytes += msg.len();
            self.push_front_run(seq, 1);
            self.backlog.push_front(msg);
        }
        self.gauge();
    }

    /// Stops accepting messages; waiting senders get theirs back.
    pub(crate) fn seal(&mut self) {
        self.sealed = true;
        for (_, w) in self.waiters.drain(..) {
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    /// Takes everything not confirmed, in order: first what was written
    /// before without confirmation, then what was never written.
    pub(crate) fn take_all(&mut self) -> Undelivered {
        self.bytes = 0;
        self.runs.clear();
        let resent = std::mem::take(&mut self.resent).min(self.backlog.len());
        let mut unsent: Vec<Message> = self.backlog.drain(..).collect();
        let rest = unsent.split_off(resent);
        self.gauge();
        Undelivered {
            possibly_delivered: unsent,
            unsent: rest,
        }
    }

    /// Messages at the head that a link wrote and no Pong confirmed.
    pub(crate) fn resent(&self) -> usize {
        self.resent
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
        take_seq(b, max).0
    }

    fn take_seq(b: &mut Buffer, max: usize) -> (Vec<Message>, u64) {
        let mut batch = Vec::new();
        let taken = b.take_batch(max, BATCH_BYTES, true, &mut batch);
        (batch, taken.first_seq)
    }

    /// A failed write of a whole batch, nothing confirmed.
    fn requeue(b: &mut Buffer, batch: Vec<Message>, first_seq: u64) {
        b.requeue(batch.len(), &[], batch, first_seq, 0);
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
        assert_eq!(b.take_all().unsent, vec![m("a"), m("b")]);
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
        assert_eq!(b.take_all().unsent, vec![m("b"), m("c")]);
    }

    #[test]
    fn in_flight_counts_and_requeues_at_head() {
        let mut b = buffer(3, 100, OverflowPolicy::Reject);
        for s in ["a", "b", "c"] {
            assert!(b.push(m(s)).is_ok());
        }
        let (batch, first) = take_seq(&mut b, 2);
        assert_eq!(batch, vec![m("a"), m("b")]);
        assert_eq!(b.depth(), 3);
        assert!(b.push(m("d")).is_err());
        requeue(&mut b, batch, first);
        assert_eq!(b.take_all().unsent, vec![m("a"), m("b"), m("c")]);
    }

    #[test]
    fn drop_oldest_drops_nothing_when_dropping_cannot_make_room() {
        let mut b = buffer(4, 64, OverflowPolicy::DropOldest);
        assert!(b.push(m(&"a".repeat(30))).is_ok());
        let (stuck, first) = take_seq(&mut b, 1);
        assert!(b.push(m(&"b".repeat(10))).is_ok());
        assert!(b.push(m(&"c".repeat(10))).is_ok());
        // 30 bytes are in flight: even with b and c gone, 40 more do not fit.
        let big = m(&"d".repeat(40));
        assert_eq!(b.push(big.clone()), Err(SendError::Full(big)));
        assert_eq!(b.begin_pump(), Vec::<Message>::new(), "nothing dropped");
        assert_eq!(b.dropped_total(), 0);
        // 30 bytes do fit once b and c are gone: both go, and are reported.
        assert!(b.push(m(&"e".repeat(30))).is_ok());
        assert_eq!(b.begin_pump().len(), 2);
        assert_eq!(b.dropped_total(), 2);
        requeue(&mut b, stuck, first);
        assert_eq!(b.take_all().len(), 2);
    }

    #[test]
    fn drop_oldest_drops_only_as_many_as_needed() {
        let mut b = buffer(3, 100, OverflowPolicy::DropOldest);
        for s in ["a", "b", "c"] {
            assert!(b.push(m(s)).is_ok());
        }
        assert!(b.push(m("d")).is_ok());
        assert_eq!(b.begin_pump(), vec![m("a")]);
        assert_eq!(b.take_all().unsent, vec![m("b"), m("c"), m("d")]);
    }

    fn poll(
        b: &mut Buffer,
        msg: &mut Option<Message>,
        ticket: &mut Option<u64>,
    ) -> Poll<Result<Accepted, SendError>> {
        let waker = futures::task::noop_waker();
        b.poll_push(msg, ticket, &mut Context::from_waker(&waker))
    }

    #[test]
    fn waiting_senders_get_room_in_arrival_order_and_can_leave_the_line() {
        let mut b = buffer(1, 100, OverflowPolicy::DropOldest);
        assert!(b.push(m("a")).is_ok());
        let (mut first, mut t1) = (Some(m("b")), None);
        let (mut second, mut t2) = (Some(m("c")), None);
        let (mut third, mut t3) = (Some(m("d")), None);
        assert!(poll(&mut b, &mut first, &mut t1).is_pending());
        assert!(poll(&mut b, &mut second, &mut t2).is_pending());
        assert!(poll(&mut b, &mut third, &mut t3).is_pending());
        assert_eq!(b.waiting(), 3);
        assert_eq!(first, Some(m("b")), "a waiting sender keeps its message");
        // Waiting is not the overflow policy: nothing was dropped.
        assert_eq!(b.begin_pump(), Vec::<Message>::new());
        let batch = take(&mut b, 10);
        b.written(&batch);
        // The second in line cannot overtake the first.
        assert!(poll(&mut b, &mut second, &mut t2).is_pending());
        assert!(matches!(
            poll(&mut b, &mut first, &mut t1),
            Poll::Ready(Ok(_))
        ));
        // The second gives up (its future was dropped): it never gets in.
        if let Some(t) = t2.take() {
            b.cancel(t);
        }
        let batch = take(&mut b, 10);
        b.written(&batch);
        assert!(matches!(
            poll(&mut b, &mut third, &mut t3),
            Poll::Ready(Ok(_))
        ));
        assert_eq!(b.waiting(), 0);
        assert_eq!(b.take_all().unsent, vec![m("d")]);
    }

    #[test]
    fn sealing_answers_waiting_senders_with_their_message() {
        let mut b = buffer(1, 100, OverflowPolicy::Reject);
        assert!(b.push(m("a")).is_ok());
        let (mut msg, mut ticket) = (Some(m("b")), None);
        assert!(poll(&mut b, &mut msg, &mut ticket).is_pending());
        b.seal();
        assert_eq!(
            poll(&mut b, &mut msg, &mut ticket),
            Poll::Ready(Err(SendError::Closed(m("b"))))
        );
        assert_eq!(b.waiting(), 0);
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
    fn receipts_nobody_holds_are_swept_and_held_ones_settle() {
        let mut b = buffer(1 << 16, 1 << 24, OverflowPolicy::Reject);
        let mut kept = Vec::new();
        for i in 0..10_000 {
            let Ok((_, rx)) = b.push_tracked(m("x")) else {
                panic!("refused");
            };
            if i % 100 == 0 {
                kept.push(rx);
            }
        }
        assert!(
            b.receipts.len() < 2 * MIN_SWEEP,
            "{} held",
            b.receipts.len()
        );
        b.settle_receipts(0..10_000, Ok(()));
        assert!(b.receipts.is_empty());
        for mut rx in kept {
            assert_eq!(rx.try_recv(), Ok(Some(Ok(()))));
        }
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
            Just(OverflowPolicy::DropOldest),
            Just(OverflowPolicy::Wait),
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
            let mut in_flight: Option<(Vec<Message>, u64)> = None;
            for op in ops {
                match op {
                    Op::Push(len) => {
                        // Payload: the id, padded to `len` bytes.
                        let mut text = next_id.to_string();
                        while text.len() < len { text.push('.'); }
                        next_id += 1;
                        let m = Message::from(text);
                        let before = b.dropped_total();
                        if b.push(m.clone()).is_ok() {
                            accepted.push(m);
                        } else {
                            // A refused message drops nothing.
                            prop_assert_eq!(b.dropped_total(), before);
                        }
                    }
                    Op::Take(n) if in_flight.is_none() => {
                        let mut batch = Vec::new();
                        let taken = b.take_batch(n, BATCH_BYTES, true, &mut batch);
                        // A batch's sequence numbers are its messages' places
                        // in the accept order, consecutive.
                        for (i, msg) in batch.iter().enumerate() {
                            prop_assert_eq!(accepted.get(taken.first_seq as usize + i), Some(msg));
                        }
                        if !batch.is_empty() { in_flight = Some((batch, taken.first_seq)); }
                    }
                    Op::Written => if let Some((batch, _)) = in_flight.take() {
                        b.written(&batch);
                        written.extend(batch);
                    },
                    Op::Failed => if let Some((batch, first)) = in_flight.take() {
                        b.requeue(batch.len(), &[], batch, first, 0);
                    },
                    Op::Take(_) => {}
                }
                dropped.extend(b.begin_pump());
                prop_assert!(b.depth() <= max);
                prop_assert!(b.bytes() <= max_bytes);
            }
            if let Some((batch, first)) = in_flight.take() { b.requeue(batch.len(), &[], batch, first, 0); }
            let held = b.take_all().into_messages();
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
