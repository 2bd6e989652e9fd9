//! Delivery barriers: what the peer's Pongs confirm, and the tail they have
//! not confirmed yet.
//!
//! A server answers a Ping only after it has read every frame written before
//! it, so the Pong to a Ping confirms every message the client wrote before
//! that Ping. Each Ping the writer task writes (heartbeat or barrier) is
//! recorded here with the position of the link's writes at that moment, and
//! carries a payload only this link can produce: a tag drawn from a per-client
//! random key and the link, then the Ping's number. A Pong whose payload is not
//! one of this link's Pings confirms nothing (a peer's unsolicited Pong, a
//! proxy's invention); a Pong for a Ping confirms that Ping and every earlier
//! one (a peer may answer only the latest, RFC 6455 §5.5.3), never more.
//!
//! Positions count the messages of the backlog (what `send` accepted): the
//! setup lane is made afresh for every link and not tracked. With replay on,
//! flushed messages stay here, in the window, until confirmed; when a link
//! ends, the queue puts what is left back at the head of the buffer.
//!
//! Everything here runs on the client's arbiter.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Weak;
use std::time::Duration;

use actix::Recipient;
use actix_rt::time::Instant;
use bytes::{BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use rand::rngs::SmallRng;
use rand::RngExt;

use crate::buffer::{lock, SharedBuffer};
use crate::config::{Config, DeliveryConfig};
use crate::control::Control;
use crate::error::Unconfirmed;
use crate::frame::Message;
use crate::messages::Wake;
use crate::metrics::Metrics;

/// Bytes of a barrier Ping's payload: an 8-byte link tag, an 8-byte number.
pub(crate) const PAYLOAD_LEN: usize = 16;

/// Pings remembered while unanswered; when more are written, the oldest is
/// forgotten (a later Pong still confirms everything before its own Ping).
const MAX_BARRIERS: usize = 64;

/// A position in one link's writes: backlog messages and their payload bytes
/// written so far on the link, and the accept sequence after the last one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    pub(crate) seq: u64,
}

#[derive(Debug)]
struct Barrier {
    number: u64,
    at: Mark,
}

/// Whether the writer should send a barrier Ping.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Now,
    At(Instant),
    No,
}

/// The books of the link being written.
#[derive(Debug)]
struct LinkBooks {
    id: u64,
    tag: u64,
    /// Pings written on this link; they are numbered from 1.
    pings: u64,
    last_ping_at: Option<Instant>,
    barriers: VecDeque<Barrier>,
    written: Mark,
    flushed: Mark,
    confirmed: Mark,
    control: Weak<RefCell<Control>>,
    /// Its connection has stopped: what it confirmed is final.
    stopped: bool,
}

impl LinkBooks {
    /// Whether the last Ping is unanswered and younger than the pong
    /// timeout.
    fn on_its_way(&self, now: Instant, pong_timeout: Duration) -> bool {
        !self.barriers.is_empty()
            && self
                .last_ping_at
                .is_some_and(|at| now.saturating_duration_since(at) < pong_timeout)
    }
}

/// With replay: the flushed messages of the current link that no Pong has
/// confirmed yet, in the batches they were flushed in (a batch moves in and
/// out whole, without a step per message).
#[derive(Debug, Default)]
struct Window {
    /// Link position of the first message, its accept sequence number (a
    /// chunk's are consecutive), the messages and their payload bytes.
    chunks: VecDeque<(u64, u64, Vec<Message>, usize)>,
    len: usize,
    bytes: usize,
}

impl Window {
    fn push(&mut self, pos: u64, seq: u64, messages: Vec<Message>, bytes: usize) {
        self.len += messages.len();
        self.bytes += bytes;
        self.chunks.push_back((pos, seq, messages, bytes));
    }

    /// Drops every message before link position `count`.
    fn confirm(&mut self, count: u64) {
        while let Some((pos, seq, messages, bytes)) = self.chunks.front_mut() {
            let end = *pos + messages.len() as u64;
            if end <= count {
                self.len -= messages.len();
                self.bytes -= *bytes;
                self.chunks.pop_front();
                continue;
            }
            if *pos < count {
                let k = (count - *pos) as usize;
                let gone: usize = messages.drain(..k).map(|m| m.len()).sum();
                *pos += k as u64;
                *seq += k as u64;
                *bytes -= gone;
                self.len -= k;
                self.bytes -= gone;
            }
            return;
        }
    }

    /// Empties the window: its messages, oldest first, with their numbers.
    fn take(&mut self) -> Vec<(u64, Message)> {
        let mut tail = Vec::with_capacity(self.len);
        for (_, seq, messages, _) in self.chunks.drain(..) {
            tail.extend((seq..).zip(messages));
        }
        self.len = 0;
        self.bytes = 0;
        tail
    }
}

/// Cumulative figures, reported in `Stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) confirmed: u64,
    pub(crate) confirmed_bytes: u64,
    pub(crate) replayed: u64,
    pub(crate) possibly_lost: u64,
    pub(crate) possibly_lost_bytes: u64,
    pub(crate) barrier_pings: u64,
}

type Waiter = (u64, oneshot::Sender<Result<(), Unconfirmed>>);

#[derive(Debug)]
pub(crate) struct Delivery {
    config: DeliveryConfig,
    pong_timeout: Duration,
    key: u64,
    link: Option<LinkBooks>,
    /// With replay: flushed messages of the current link not confirmed yet.
    window: Window,
    totals: Totals,
    /// Every message accepted before this sequence number is confirmed,
    /// dropped by the overflow policy, or was reported possibly lost.
    confirmed_seq: u64,
    /// Every message accepted before this sequence number is confirmed,
    /// dropped, or reported possibly lost (at or above `confirmed_seq`).
    settled_seq: u64,
    /// `close` ran: waits from now on fail at once.
    closed: bool,
    /// `Client::confirmed` calls and the sequence each waits for.
    waiters: VecDeque<Waiter>,
    /// The queue waits for a confirmation (a full window, or a drain).
    queue_waits: bool,
    queue: Option<Recipient<Wake>>,
    /// Where the receipts of tracked messages wait.
    buffer: Option<SharedBuffer>,
    /// `tether_unconfirmed_messages`.
    metrics: Metrics,
}

impl Default for Delivery {
    fn default() -> Self {
        Self::new(&Config::default())
    }
}

impl Delivery {
    pub(crate) fn new(config: &Config) -> Self {
        let mut rng: SmallRng = rand::make_rng();
        Self {
            config: config.delivery,
            pong_timeout: config.heartbeat.pong_timeout,
            key: rng.random(),
            link: None,
            window: Window::default(),
            totals: Totals::default(),
            confirmed_seq: 0,
            settled_seq: 0,
            closed: false,
            waiters: VecDeque::new(),
            queue_waits: false,
            queue: None,
            buffer: None,
            metrics: Metrics::default(),
        }
    }

    /// The same books, reporting to `metrics`.
    pub(crate) fn observed(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Reports the current link's unconfirmed count to the metrics.
    fn gauge(&self) {
        self.metrics.unconfirmed(self.unconfirmed().0);
    }

    /// Where to wake the queue and settle receipts.
    pub(crate) fn connect(&mut self, queue: Recipient<Wake>, buffer: SharedBuffer) {
        self.queue = Some(queue);
        self.buffer = Some(buffer);
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// Messages and payload bytes written on the current link and not
    /// confirmed yet.
    pub(crate) fn unconfirmed(&self) -> (u64, u64) {
        self.link.as_ref().map_or((0, 0), |l| {
            (
                l.written.count.saturating_sub(l.confirmed.count),
                l.written.bytes.saturating_sub(l.confirmed.bytes),
            )
        })
    }

    /// With replay, whether the current link wrote messages no Pong
    /// confirmed: when it ends, they go back to the queue.
    pub(crate) fn tail_to_replay(&self) -> bool {
        self.config.replay && self.unconfirmed().0 > 0
    }

    /// A new link starts writing; its Pings go through `control`.
    pub(crate) fn attach(&mut self, id: u64, control: Weak<RefCell<Control>>) {
        // The books hold one link. One still here (its writer broke while
        // it was closing, so the queue never ended it) is settled first:
        // its unconfirmed tail is possibly lost, or, with replay, goes back
        // to the head of the buffer; a later link's Pong never confirms it.
        if let Some(prev) = self.link.as_ref().map(|l| l.id).filter(|&p| p != id) {
            self.finish_link(prev);
        }
        let start = Mark {
            count: 0,
            bytes: 0,
            seq: self.confirmed_seq,
        };
        self.link = Some(LinkBooks {
            id,
            tag: self.key ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            pings: 0,
            last_ping_at: None,
            barriers: VecDeque::new(),
            written: start,
            flushed: start,
            confirmed: start,
            control,
            stopped: false,
        });
        self.gauge();
    }

    fn books(&mut self, id: u64) -> Option<&mut LinkBooks> {
        self.link.as_mut().filter(|l| l.id == id)
    }

    /// The link the books are kept for.
    pub(crate) fn link_id(&self) -> Option<u64> {
        self.link.as_ref().map(|l| l.id)
    }

    /// Where link `id`'s writes are now.
    pub(crate) fn written(&self, id: u64) -> Option<Mark> {
        self.link.as_ref().filter(|l| l.id == id).map(|l| l.written)
    }

    /// Link `id` wrote `count` more backlog messages of `bytes`, the last
    /// with accept sequence `seq_after - 1`.
    pub(crate) fn wrote(&mut self, id: u64, count: u64, bytes: u64, seq_after: u64) {
        if let Some(l) = self.books(id) {
            l.written.count += count;
            l.written.bytes += bytes;
            l.written.seq = l.written.seq.max(seq_after);
        }
        self.gauge();
    }

    /// The number the next Ping written on the current link will carry.
    pub(crate) fn next_ping(&self) -> u64 {
        self.link.as_ref().map_or(1, |l| l.pings + 1)
    }

    /// The writer of link `id` writes a Ping now: records it as a barrier
    /// and returns its payload.
    pub(crate) fn ping_payload(&mut self, id: u64) -> Bytes {
        let now = Instant::now();
        let Some(l) = self.books(id) else {
            return Bytes::new();
        };
        l.pings += 1;
        l.last_ping_at = Some(now);
        if l.barriers.len() >= MAX_BARRIERS {
            l.barriers.pop_front();
        }
        l.barriers.push_back(Barrier {
            number: l.pings,
            at: l.written,
        });
        let mut payload = BytesMut::with_capacity(PAYLOAD_LEN);
        payload.put_u64(l.tag);
        payload.put_u64(l.pings);
        payload.freeze()
    }

    /// Counts a barrier Ping the writer sent of its own accord.
    pub(crate) fn count_barrier_ping(&mut self) {
        self.totals.barrier_pings += 1;
    }

    /// A Pong arrived on link `id`. Returns the number of the Ping it
    /// answers, or `None` if its payload is not one of this link's Pings.
    pub(crate) fn on_pong(&mut self, id: u64, payload: &[u8]) -> Option<u64> {
        let l = self.books(id)?;
        let (tag, number) = payload.split_at_checked(8)?;
        let tag = u64::from_be_bytes(tag.try_into().ok()?);
        let number = u64::from_be_bytes(number.try_into().ok()?);
        if tag != l.tag || number == 0 || number > l.pings {
            return None;
        }
        let mut best = None;
        while l.barriers.front().is_some_and(|b| b.number <= number) {
            best = l.barriers.pop_front().map(|b| b.at);
        }
        if let Some(at) = best {
            self.confirm(at);
        }
        Some(number)
    }

    fn confirm(&mut self, at: Mark) {
        let Some(l) = self.link.as_mut() else {
            return;
        };
        if at.count <= l.confirmed.count {
            return;
        }
        self.totals.confirmed += at.count - l.confirmed.count;
        self.totals.confirmed_bytes += at.bytes.saturating_sub(l.confirmed.bytes);
        l.confirmed = at;
        self.gauge();
        self.confirmed_seq = self.confirmed_seq.max(at.seq);
        self.settled_seq = self.settled_seq.max(at.seq);
        self.window.confirm(at.count);
        // Waiters register through the queue's mailbox from any thread, so
        // their targets need not arrive in order: look at each.
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 > self.confirmed_seq {
                i += 1;
            } else if let Some((_, tx)) = self.waiters.swap_remove_back(i) {
                let _ = tx.send(Ok(()));
            }
        }
        // Every tracked message below is written on this link or settled
        // already (dropped, or lost on an earlier link).
        if let Some(buffer) = &self.buffer {
            lock(buffer).settle_receipts(0..at.seq, Ok(()));
        }
        if std::mem::take(&mut self.queue_waits) {
            if let Some(q) = &self.queue {
                q.do_send(Wake);
            }
        }
        if !self.waiters.is_empty() && self.unconfirmed().0 > 0 {
            self.request_barrier();
        }
    }

    /// A batch of link `id` was flushed: `messages` (of `bytes`) are its
    /// backlog part, the first written at link position `start`, numbered
    /// from `first_seq`. With replay, those not confirmed yet join the
    /// window, as one chunk.
    pub(crate) fn flushed(
        &mut self,
        id: u64,
        start: u64,
        first_seq: u64,
        messages: Vec<Message>,
        bytes: usize,
    ) {
        let replay = self.config.replay;
        let Some(l) = self.books(id) else {
            return;
        };
        // Flushed after the whole batch was written: the flushed mark is
        // the written one.
        let before = std::mem::replace(&mut l.flushed, l.written);
        if l.stopped && !replay {
            // The connection stopped before its writer learned of this
            // flush: what it adds is possibly lost, as the rest of the
            // link's unconfirmed tail was when it stopped (a later link's
            // Pong must not confirm it).
            let after = l.flushed;
            self.possibly_lost(before, after);
            return;
        }
        if !replay || messages.is_empty() {
            return;
        }
        let confirmed = l.confirmed.count;
        self.window.push(start, first_seq, messages, bytes);
        self.window.confirm(confirmed);
    }

    /// Whether what links wrote and no Pong confirmed is written again.
    pub(crate) fn replays(&self) -> bool {
        self.config.replay
    }

    /// `n` messages the socket took from a batch cut mid-write go back to
    /// the queue to be written again (with replay).
    pub(crate) fn count_replayed(&mut self, n: usize) {
        self.totals.replayed += n as u64;
    }

    /// A batch of link `id` was cut mid-write (without replay), its socket
    /// having taken the link's backlog whole up to `at`: that much counts
    /// as flushed (possibly lost once the link has stopped, unless a Pong
    /// confirmed it), and what the link wrote after it is void (it goes
    /// back to the queue, never having reached the peer whole).
    pub(crate) fn socket_took(&mut self, id: u64, at: Mark) {
        let Some(l) = self.books(id) else {
            return;
        };
        if l.written.count > at.count {
            l.written = at;
        }
        let before = l.flushed;
        if at.count <= before.count {
            return;
        }
        l.flushed = at;
        if l.stopped {
            // The link's stop counted what it had flushed then; the rest is
            // counted now.
            let from = if l.confirmed.count > before.count {
                l.confirmed
            } else {
                before
            };
            self.possibly_lost(from, at);
        }
    }

    /// How many of a dropped batch's backlog messages, written from link
    /// position `start` on (`written` of them), a Pong confirmed: they are
    /// not written again.
    pub(crate) fn confirmed_prefix(&self, id: u64, start: u64, written: usize) -> usize {
        self.link.as_ref().filter(|l| l.id == id).map_or(0, |l| {
            (l.confirmed.count.saturating_sub(start) as usize).min(written)
        })
    }

    /// Room left in the window, in messages and bytes, and whether it is
    /// empty (then one message goes out whatever its size). Without replay
    /// the window does not bound writing.
    pub(crate) fn room(&self) -> (usize, usize, bool) {
        if !self.config.replay {
            return (usize::MAX, usize::MAX, true);
        }
        (
            self.config.window_messages.saturating_sub(self.window.len),
            self.config.window_bytes.saturating_sub(self.window.bytes),
            self.window.len == 0,
        )
    }

    /// The queue waits for the next confirmation; wake it then.
    pub(crate) fn wake_queue_on_confirm(&mut self) {
        self.queue_waits = true;
    }

    /// Someone waits for a confirmation (a drain, `Client::confirmed`): a
    /// barrier Ping goes at once, unless one is on its way (its Pong comes
    /// back here, and the wait asks again if it did not confirm enough).
    pub(crate) fn request_barrier(&mut self) {
        let Some(l) = self.link.as_ref() else {
            return;
        };
        let on_its_way = l.on_its_way(Instant::now(), self.pong_timeout);
        let Some(control) = l.control.upgrade() else {
            return;
        };
        let mut c = control.borrow_mut();
        if c.gone || c.ping {
            return;
        }
        if on_its_way {
            // The writer looks again by the pong timeout.
            c.plan = true;
        } else {
            c.ping = true;
            self.totals.barrier_pings += 1;
        }
        c.wake();
    }

    /// Whether link `id`'s writer should send a barrier Ping now.
    pub(crate) fn barrier_due(&self, id: u64, now: Instant) -> Due {
        let wanted = self.config.sends_barriers() || self.queue_waits || !self.waiters.is_empty();
        if !wanted {
            return Due::No;
        }
        let Some(l) = self.link.as_ref().filter(|l| l.id == id) else {
            return Due::No;
        };
        let count = l.written.count - l.confirmed.count;
        if count == 0 {
            return Due::No;
        }
        let bytes = l.written.bytes - l.confirmed.bytes;
        // Half the window unconfirmed: a Ping at once, unless one is on its
        // way (its answer makes room). Otherwise one per interval.
        let half_full = count >= (self.config.window_messages as u64).div_ceil(2)
            || bytes >= (self.config.window_bytes as u64).div_ceil(2);
        let on_its_way = l.on_its_way(now, self.pong_timeout);
        match l.last_ping_at {
            None => Due::Now,
            _ if half_full && !on_its_way => Due::Now,
            Some(at) if now.saturating_duration_since(at) >= self.config.barrier_interval => {
                Due::Now
            }
            Some(at) => Due::At(crate::time::saturating_add(
                at,
                self.config.barrier_interval,
            )),
        }
    }

    /// Link `id`'s connection has stopped: what its Pongs confirmed is
    /// final. Without replay, what it flushed and no Pong confirmed is
    /// possibly lost: counted, and the receipts and `confirmed` calls that
    /// wait for it are told.
    pub(crate) fn link_stopped(&mut self, id: u64) {
        let replay = self.config.replay;
        let Some(l) = self.books(id) else {
            return;
        };
        if std::mem::replace(&mut l.stopped, true) || replay {
            return;
        }
        let (from, to) = (l.confirmed, l.flushed);
        self.possibly_lost(from, to);
    }

    /// What a stopped link flushed between `from` and `to` and no Pong
    /// confirmed is possibly lost: counted, and the receipts and
    /// `confirmed` calls that wait for it are told.
    fn possibly_lost(&mut self, from: Mark, to: Mark) {
        let lost = to.count.saturating_sub(from.count);
        if lost == 0 {
            return;
        }
        let lost_bytes = to.bytes.saturating_sub(from.bytes);
        let seqs = from.seq..to.seq;
        self.settled_seq = self.settled_seq.max(to.seq);
        self.totals.possibly_lost += lost;
        self.totals.possibly_lost_bytes += lost_bytes;
        for (_, tx) in self.waiters.drain(..) {
            let _ = tx.send(Err(Unconfirmed::PossiblyLost));
        }
        if let Some(buffer) = &self.buffer {
            lock(buffer).settle_receipts(seqs, Err(Unconfirmed::PossiblyLost));
        }
    }

    /// Link `id` has ended and its last batch has settled. With replay,
    /// returns what it wrote and no Pong confirmed (oldest first, with
    /// sequence numbers) to go back to the head of the queue.
    fn end_link(&mut self, id: u64) -> Vec<(u64, Message)> {
        self.link_stopped(id);
        if self.link.take_if(|l| l.id == id).is_none() {
            return Vec::new();
        }
        let tail = self.window.take();
        self.totals.replayed += tail.len() as u64;
        self.gauge();
        tail
    }

    /// Link `id` has ended and its last batch has settled: with replay, what
    /// it wrote and no Pong confirmed goes back to the head of the buffer,
    /// to be written first on the next link.
    pub(crate) fn finish_link(&mut self, id: u64) {
        let tail = self.end_link(id);
        if let (false, Some(buffer)) = (tail.is_empty(), &self.buffer) {
            lock(buffer).replay(tail);
        }
    }

    /// Waits until every message accepted before sequence `target` is
    /// confirmed (or dropped by the overflow policy); fails at once when
    /// all of them are settled and some were reported possibly lost.
    pub(crate) fn wait_confirmed(
        &mut self,
        target: u64,
    ) -> oneshot::Receiver<Result<(), Unconfirmed>> {
        let (tx, rx) = oneshot::channel();
        if target <= self.confirmed_seq {
            let _ = tx.send(Ok(()));
            return rx;
        }
        if self.closed {
            // Closed or gave up (or the client's actors ended): nothing
            // more will be confirmed.
            let _ = tx.send(Err(Unconfirmed::Closed));
            return rx;
        }
        if target <= self.settled_seq {
            // Nothing more will be confirmed below the target: a link that
            // ended took part of it (an idle client writes nothing that a
            // Pong could confirm).
            let _ = tx.send(Err(Unconfirmed::PossiblyLost));
            return rx;
        }
        self.waiters.push_back((target, tx));
        rx
    }

    /// The client closed or gave up: waiting `confirmed` calls and receipts
    /// learn that nothing more will be confirmed.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        for (_, tx) in self.waiters.drain(..) {
            let _ = tx.send(Err(Unconfirmed::Closed));
        }
        if let Some(buffer) = &self.buffer {
            lock(buffer).close_receipts();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn delivery(replay: bool) -> Delivery {
        let mut config = Config::default();
        config.delivery.replay = replay;
        let mut d = Delivery::new(&config);
        d.attach(1, Weak::new());
        d
    }

    #[test]
    fn a_pong_confirms_what_was_written_before_its_ping_and_no_more() {
        let mut d = delivery(false);
        d.wrote(1, 3, 30, 3);
        let first = d.ping_payload(1);
        d.wrote(1, 2, 20, 5);
        let second = d.ping_payload(1);
        d.wrote(1, 1, 10, 6);
        assert_eq!(d.on_pong(1, &first), Some(1));
        assert_eq!(d.unconfirmed(), (3, 30));
        // A repeated or older Pong confirms nothing more.
        assert_eq!(d.on_pong(1, &first), Some(1));
        assert_eq!(d.unconfirmed(), (3, 30));
        assert_eq!(d.on_pong(1, &second), Some(2));
        assert_eq!(d.unconfirmed(), (1, 10));
        assert_eq!(d.totals().confirmed, 5);
        assert_eq!(d.totals().confirmed_bytes, 50);
    }

    #[test]
    fn a_pong_for_the_latest_ping_confirms_the_earlier_ones_too() {
        let mut d = delivery(false);
        d.wrote(1, 1, 1, 1);
        let _skipped = d.ping_payload(1);
        d.wrote(1, 1, 1, 2);
        let latest = d.ping_payload(1);
        assert_eq!(d.on_pong(1, &latest), Some(2));
        assert_eq!(d.unconfirmed(), (0, 0));
    }

    #[test]
    fn foreign_payloads_confirm_nothing() {
        let mut d = delivery(false);
        d.wrote(1, 4, 4, 4);
        let real = d.ping_payload(1);
        let mut unsent_number = real.to_vec();
        unsent_number[15] = 2;
        let mut other_tag = real.to_vec();
        other_tag[0] ^= 1;
        for foreign in [
            &b""[..],
            &1u64.to_be_bytes(),
            &unsent_number,
            &other_tag,
            &real[..15],
            &[real.as_ref(), b"x"].concat(),
        ] {
            assert_eq!(d.on_pong(1, foreign), None, "{foreign:?}");
        }
        assert_eq!(d.unconfirmed(), (4, 4));
        // Another link's Pings are not this link's.
        let mut d2 = delivery(false);
        d2.attach(2, Weak::new());
        d2.wrote(2, 1, 1, 1);
        let _ = d2.ping_payload(2);
        assert_eq!(d2.on_pong(2, &real), None);
    }

    #[test]
    fn the_window_keeps_flushed_messages_until_confirmed_and_hands_back_the_tail() {
        let mut d = delivery(true);
        let msgs: Vec<Message> = ["a", "b", "c"].into_iter().map(Message::from).collect();
        d.wrote(1, 2, 2, 12);
        let ping = d.ping_payload(1);
        d.wrote(1, 1, 1, 13);
        d.flushed(1, 0, 10, msgs, 3);
        let (n, bytes) = (
            DeliveryConfig::default().window_messages,
            DeliveryConfig::default().window_bytes,
        );
        assert_eq!(d.room(), (n - 3, bytes - 3, false));
        d.on_pong(1, &ping);
        assert_eq!(d.room(), (n - 1, bytes - 1, false));
        let tail = d.end_link(1);
        assert_eq!(tail, [(12, Message::from("c"))]);
        assert_eq!(d.totals().replayed, 1);
        assert_eq!(d.room(), (n, bytes, true));
    }

    #[test]
    fn without_replay_the_unconfirmed_flushed_tail_is_counted_possibly_lost() {
        let mut d = delivery(false);
        let mut waiting = d.wait_confirmed(3);
        d.wrote(1, 3, 9, 3);
        d.flushed(1, 0, 0, vec![Message::from("abc"); 3], 9);
        assert!(d.end_link(1).is_empty());
        assert_eq!(d.totals().possibly_lost, 3);
        assert_eq!(d.totals().possibly_lost_bytes, 9);
        assert_eq!(waiting.try_recv(), Ok(Some(Err(Unconfirmed::PossiblyLost))));
    }

    #[test]
    fn a_waiter_resolves_when_its_target_is_confirmed_whatever_came_before_it() {
        let mut d = delivery(false);
        // Registered from two threads: the later target arrived first.
        let mut far = d.wait_confirmed(10);
        let mut near = d.wait_confirmed(2);
        d.wrote(1, 5, 5, 5);
        let ping = d.ping_payload(1);
        d.on_pong(1, &ping);
        assert_eq!(near.try_recv(), Ok(Some(Ok(()))));
        assert_eq!(far.try_recv(), Ok(None));
    }

    #[test]
    fn barrier_pings_are_rate_limited_unless_the_window_is_half_full() {
        let mut config = Config::default();
        config.delivery.barriers = true;
        config.delivery.window_messages = 10;
        let mut d = Delivery::new(&config);
        d.attach(1, Weak::new());
        let now = Instant::now();
        assert_eq!(d.barrier_due(1, now), Due::No, "nothing unconfirmed");
        d.wrote(1, 1, 1, 1);
        assert_eq!(d.barrier_due(1, now), Due::Now, "no Ping yet");
        let ping = d.ping_payload(1);
        d.wrote(1, 1, 1, 2);
        let later = Instant::now();
        assert!(
            matches!(d.barrier_due(1, later), Due::At(_)),
            "one on its way"
        );
        d.on_pong(1, &ping);
        assert!(
            matches!(d.barrier_due(1, later), Due::At(_)),
            "rate limited"
        );
        d.wrote(1, 4, 4, 6);
        assert_eq!(d.barrier_due(1, later), Due::Now, "half the window");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64),
        Ping,
        /// A Pong echoing one of the Pings written (by index).
        Pong(usize),
        /// A Pong with bytes from the network.
        Foreign(Vec<u8>),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            3 => (1u64..20).prop_map(Op::Write),
            2 => Just(Op::Ping),
            2 => any::<usize>().prop_map(Op::Pong),
            2 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Op::Foreign),
        ];
        proptest::collection::vec(op, 0..300)
    }

    proptest! {
        /// Whatever Pongs arrive, in whatever order: confirmation only
        /// grows, never passes the position of the latest Ping answered,
        /// and bytes that are not one of the link's Ping payloads change
        /// nothing.
        #[test]
        fn only_real_pongs_confirm_and_never_beyond_their_ping(ops in ops()) {
            let mut d = Delivery::default();
            d.attach(7, Weak::new());
            let mut written = 0u64;
            let mut pings: Vec<(Bytes, u64)> = Vec::new();
            let mut answered_bound = 0u64;
            let mut confirmed = 0u64;
            for op in ops {
                match op {
                    Op::Write(n) => {
                        written += n;
                        d.wrote(7, n, n, written);
                    }
                    Op::Ping => pings.push((d.ping_payload(7), written)),
                    Op::Pong(i) if !pings.is_empty() => {
                        let (payload, at) = &pings[i % pings.len()];
                        prop_assert!(d.on_pong(7, payload).is_some());
                        answered_bound = answered_bound.max(*at);
                    }
                    Op::Pong(_) => {}
                    Op::Foreign(bytes) => {
                        let real = pings.iter().any(|(p, _)| p.as_ref() == bytes.as_slice());
                        let before = d.unconfirmed();
                        let answer = d.on_pong(7, &bytes);
                        if !real {
                            prop_assert_eq!(answer, None);
                            prop_assert_eq!(d.unconfirmed(), before);
                        }
                    }
                }
                let now = written - d.unconfirmed().0;
                prop_assert!(now >= confirmed, "confirmation went back");
                prop_assert!(now <= answered_bound, "{now} confirmed, {answered_bound} answered");
                confirmed = now;
            }
        }
    }
}
