//! Fan-out to subscribers, and the counters every actor updates.
//!
//! All actors of one client run on the same arbiter, so they share the hub
//! through an `Rc` instead of paying a message per counter update.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::SendError as MailboxSendError;
use actix::Recipient;
use actix_rt::time::Instant;

use crate::config::Config;
use crate::delivery::Delivery;
use crate::error::{DisconnectReason, ErrorChain};
use crate::events::{Event, Inbound, InboundBatch};
use crate::frame::Message;
use crate::gate::Gate;
use crate::hooks::{DedupKey, ReadyPredicate};
use crate::metrics::Metrics;
use crate::stream::{CatchUp, EventSender, Joiner, MessageSender, Pushed, Shared, FANOUT_BACKLOG};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_in: Cell<u64>,
    pub(crate) bytes_in: Cell<u64>,
    pub(crate) messages_out: Cell<u64>,
    pub(crate) bytes_out: Cell<u64>,
    /// Every inbound frame, control frames included: proof of life.
    pub(crate) frames_in: Cell<u64>,
    /// Bytes accepted below the writers of all links (see
    /// `FrameWriter::bytes_accepted`): proof that a busy link moves data.
    pub(crate) bytes_accepted: Cell<u64>,
    /// Bytes read from the sockets of all links (payloads, for a transport
    /// that does not count them).
    pub(crate) wire_bytes_in: Cell<u64>,
    /// The current link's `FrameWriter::unsent_bound`.
    pub(crate) unsent_bound: Cell<u64>,
    pub(crate) last_rtt: Cell<Option<Duration>>,
    /// Messages a rotation's new link delivered twice, dropped by the
    /// dedup window.
    pub(crate) duplicates_dropped: Cell<u64>,
    /// The same figures for the application's metrics exporter.
    pub(crate) metrics: Metrics,
}

impl Counters {
    pub(crate) fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }

    /// A batch reached the socket.
    pub(crate) fn wrote(&self, f: Flushed) {
        Self::add(&self.messages_out, f.messages as u64);
        Self::add(&self.bytes_out, f.bytes as u64);
        self.metrics.sent(f.messages as u64, f.bytes as u64);
    }

    /// One read handed `messages` of `bytes` payload to subscribers.
    fn received(&self, messages: u64, bytes: u64) {
        Self::add(&self.messages_in, messages);
        Self::add(&self.bytes_in, bytes);
        self.metrics.received(messages, bytes);
    }

    /// `bytes` were read from a socket.
    pub(crate) fn wire_in(&self, bytes: u64) {
        Self::add(&self.wire_bytes_in, bytes);
        self.metrics.wire_in(bytes);
    }

    /// A socket accepted `bytes`.
    pub(crate) fn wire_out(&self, bytes: u64) {
        Self::add(&self.bytes_accepted, bytes);
        self.metrics.wire_out(bytes);
    }

    /// A Pong answered the heartbeat's Ping after `rtt`.
    pub(crate) fn rtt(&self, rtt: Duration) {
        self.last_rtt.set(Some(rtt));
        self.metrics.rtt(rtt);
    }
}

#[derive(Debug)]
pub(crate) struct Hub {
    inbound: RefCell<Vec<Recipient<Inbound>>>,
    batches: RefCell<Vec<Recipient<InboundBatch>>>,
    streams: RefCell<Vec<MessageSender>>,
    events: RefCell<Fanout<Event>>,
    event_streams: RefCell<Vec<EventSender>>,
    /// Events not queued for event streams too far behind.
    event_streams_dropped: Cell<u64>,
    /// Subscribers joining from other threads, and the state they read.
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Counters,
    /// Closed while the read-ahead is full: links do not read.
    pub(crate) reading: Gate,
    /// Reads waiting in the mailboxes of subscribers that are behind.
    pub(crate) behind: Behind,
    /// What Pongs confirmed of the messages written.
    pub(crate) delivery: RefCell<Delivery>,
    /// The ready gate's predicate, if the client has one.
    gate: RefCell<Option<Gatekeeper>>,
    dedup: RefCell<Option<Dedup>>,
    /// The client's `ws_client` span: the parent of its attempts' and
    /// links' spans and of the events' logs.
    pub(crate) span: tracing::Span,
}

/// The ready gate's predicate.
struct Gatekeeper(ReadyPredicate);

impl fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadyPredicate")
    }
}

/// Drops the messages a rotation's new link delivers that the old one
/// already did (and the other way round): the keys of the last `window`
/// messages delivered are kept (twice as many while both links deliver),
/// and every message is checked against them from a switch until `window`
/// messages after the old link ended.
pub(crate) struct Dedup {
    key: DedupKey,
    window: usize,
    recent: VecDeque<u64>,
    seen: HashSet<u64>,
    /// Messages still to check since the old link of the last switch ended.
    checking: usize,
    /// The old link of the last switch still delivers: every message is
    /// checked until it ends.
    overlapping: bool,
}

impl fmt::Debug for Dedup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("window", &self.window)
            .field("checking", &self.checking)
            .finish_non_exhaustive()
    }
}

impl Dedup {
    pub(crate) fn new(key: DedupKey, window: usize) -> Self {
        Self {
            key,
            window,
            recent: VecDeque::with_capacity(window.min(4096)),
            seen: HashSet::new(),
            checking: 0,
            overlapping: false,
        }
    }

    /// Whether `m` is a duplicate to drop; remembers its key otherwise.
    fn is_duplicate(&mut self, m: &Message) -> bool {
        let Some(key) = (self.key)(m) else {
            return false;
        };
        let checking = self.overlapping || self.checking > 0;
        if !self.overlapping {
            self.checking = self.checking.saturating_sub(1);
        }
        if checking && self.seen.contains(&key) {
            return true;
        }
        // While both links deliver, the window holds one window's worth of
        // keys per link, so that a link lagging the other by up to a window
        // is still checked.
        let capacity = if self.overlapping {
            self.window.saturating_mul(2)
        } else {
            self.window
        };
        while self.recent.len() >= capacity {
            if let Some(old) = self.recent.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.insert(key) {
            self.recent.push_back(key);
        }
        false
    }
}

#[cfg(test)]
impl Default for Hub {
    fn default() -> Self {
        Hub::new(&Config::default(), Shared::new(), Metrics::default())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // However the actors ended: handles joining later get ended streams.
        self.shared.end();
    }
}

/// What one inbound message counts against the read-ahead besides its
/// payload: about what an empty message costs while it waits (its envelope
/// in a mailbox, its entry in a queue), so that a flood of empty or tiny
/// messages is bounded as surely as a few large ones.
pub(crate) const MESSAGE_COST: usize = 128;

/// What `count` messages of `bytes` payload bytes in all count against the
/// read-ahead.
pub(crate) fn read_cost(bytes: usize, count: usize) -> usize {
    bytes.saturating_add(count.saturating_mul(MESSAGE_COST))
}

/// The read-ahead in use: reads delivered over a full subscriber's mailbox
/// capacity, not yet handled.
#[derive(Debug, Default)]
pub(crate) struct Behind {
    reads: RefCell<VecDeque<(u64, Instant, usize)>>,
    bytes: Cell<usize>,
    next: Cell<u64>,
}

impl Behind {
    /// A read of `bytes` waits from `since`; returns its number.
    pub(crate) fn push(&self, bytes: usize, since: Instant) -> u64 {
        let seq = self.next.get();
        self.next.set(seq.wrapping_add(1));
        self.reads.borrow_mut().push_back((seq, since, bytes));
        self.bytes.set(self.bytes.get().saturating_add(bytes));
        seq
    }

    /// Read `seq` has been handled by every subscriber it waited for.
    pub(crate) fn done(&self, seq: u64) {
        let mut reads = self.reads.borrow_mut();
        if let Some(i) = reads.iter().position(|(s, _, _)| *s == seq) {
            if let Some((_, _, bytes)) = reads.remove(i) {
                self.bytes.set(self.bytes.get().saturating_sub(bytes));
            }
        }
    }

    /// What the waiting reads count against the read-ahead (payload bytes
    /// and [`MESSAGE_COST`] per message).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// The oldest read still waiting, and since when.
    pub(crate) fn oldest(&self) -> Option<(u64, Instant)> {
        self.reads.borrow().front().map(|(s, at, _)| (*s, *at))
    }
}

impl Hub {
    pub(crate) fn new(config: &Config, shared: Arc<Shared>, metrics: Metrics) -> Self {
        Self {
            inbound: RefCell::default(),
            batches: RefCell::default(),
            streams: RefCell::default(),
            events: RefCell::default(),
            event_streams: RefCell::default(),
            event_streams_dropped: Cell::default(),
            shared,
            delivery: RefCell::new(Delivery::new(config).observed(metrics.clone())),
            counters: Counters {
                metrics,
                ..Counters::default()
            },
            reading: Gate::default(),
            behind: Behind::default(),
            gate: RefCell::default(),
            dedup: RefCell::default(),
            span: tracing::Span::none(),
        }
    }

    /// Under the client's span.
    pub(crate) fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// With a ready gate and a dedup key.
    pub(crate) fn with_feed(self, gate: Option<ReadyPredicate>, dedup: Option<Dedup>) -> Self {
        *self.gate.borrow_mut() = gate.map(Gatekeeper);
        *self.dedup.borrow_mut() = dedup;
        self
    }

    /// Whether links wait for a ready gate.
    pub(crate) fn gated(&self) -> bool {
        self.gate.borrow().is_some()
    }

    /// Whether `m` opens the ready gate.
    pub(crate) fn opens_gate(&self, m: &Message) -> bool {
        self.gate.borrow_mut().as_mut().is_some_and(|g| (g.0)(m))
    }

    /// A rotation switched links: the next messages are checked against
    /// the dedup window.
    pub(crate) fn start_dedup(&self) {
        if let Some(d) = self.dedup.borrow_mut().as_mut() {
            d.checking = d.window;
            d.overlapping = true;
        }
    }

    /// The old link of the last switch has ended: the next `window`
    /// messages are still checked (what it delivered last may come again
    /// from the new link), then checking stops.
    pub(crate) fn end_overlap(&self) {
        if let Some(d) = self.dedup.borrow_mut().as_mut().filter(|d| d.overlapping) {
            d.overlapping = false;
            d.checking = d.window;
        }
    }

    /// With a dedup key, whether one of `messages` was delivered already
    /// (a rotation's new link has caught up with the old one); without
    /// one, always.
    pub(crate) fn caught_up(&self, messages: &[Message]) -> bool {
        let mut slot = self.dedup.borrow_mut();
        let Some(d) = slot.as_mut() else {
            return true;
        };
        messages
            .iter()
            .any(|m| (d.key)(m).is_some_and(|k| d.seen.contains(&k)))
    }

    /// Drops duplicates from a read (with a dedup key).
    pub(crate) fn dedup(&self, messages: &mut Vec<Message>) {
        let mut slot = self.dedup.borrow_mut();
        let Some(d) = slot.as_mut() else {
            return;
        };
        let before = messages.len();
        messages.retain(|m| !d.is_duplicate(m));
        Counters::add(
            &self.counters.duplicates_dropped,
            (before - messages.len()) as u64,
        );
    }

    /// Adds the subscribers that joined from a handle since the last look:
    /// they receive everything published from now on.
    fn admit(&self) {
        for joiner in self.shared.take_joiners() {
            self.join(joiner);
        }
    }

    pub(crate) fn join(&self, joiner: Joiner) {
        match joiner {
            Joiner::Inbound(r) => self.inbound.borrow_mut().push(r),
            Joiner::Batches(r) => self.batches.borrow_mut().push(r),
            Joiner::Events(r) => self.events.borrow_mut().push(r),
            Joiner::Stream(s) => self.streams.borrow_mut().push(s),
            Joiner::EventStream(s) => self.event_streams.borrow_mut().push(s),
        }
    }

    /// The client has closed: streams end once they have yielded what they
    /// hold, and nobody joins any more.
    pub(crate) fn finish(&self) {
        self.shared.end();
        self.streams.borrow_mut().clear();
        self.event_streams.borrow_mut().clear();
    }

    /// Publishes the messages of one read: one actor message per message to
    /// inbound subscribers, one per read to batch subscribers.
    ///
    /// Returns the read's payload bytes and, for each subscriber whose
    /// mailbox filled up, a future that resolves once it has handled this
    /// read. The rest of the read still goes to it (over capacity, in order:
    /// nothing is lost); the connection counts the read against the
    /// read-ahead until then, and stops reading once the read-ahead is full,
    /// so a slow subscriber pushes back on the server through TCP instead of
    /// growing memory.
    pub(crate) fn publish_inbound(&self, messages: Vec<Message>) -> (usize, Vec<CatchUp>) {
        self.admit();
        let bytes: usize = messages.iter().map(Message::len).sum();
        self.counters.received(messages.len() as u64, bytes as u64);
        let cost = read_cost(bytes, messages.len());
        let mut waits = Vec::new();
        let has_inbound = !self.inbound.borrow().is_empty();
        let has_batches = !self.batches.borrow().is_empty();
        // The last kind of subscriber gets the messages themselves, the
        // others a copy of the read (the payloads are shared).
        let mut messages = Some(messages);
        let mut share = |more: bool| match more {
            true => messages.clone().unwrap_or_default(),
            false => messages.take().unwrap_or_default(),
        };
        if !self.streams.borrow().is_empty() {
            let read = share(has_inbound || has_batches);
            give_each(&mut self.streams.borrow_mut(), read, |s, m| {
                match s.push(m) {
                    Pushed::Queued | Pushed::Dropped => true,
                    Pushed::Behind(wait) => {
                        waits.push(wait);
                        true
                    }
                    Pushed::Gone => false,
                }
            });
        }
        if has_batches {
            let read = share(has_inbound);
            give_each(&mut self.batches.borrow_mut(), read, |r, m| {
                send_in_order(r, std::iter::once(InboundBatch(m)), &mut waits)
            });
        }
        if has_inbound {
            give_each(&mut self.inbound.borrow_mut(), share(false), |r, m| {
                send_in_order(r, m.into_iter().map(Inbound), &mut waits)
            });
        }
        (cost, waits)
    }

    pub(crate) fn publish(&self, event: Event) {
        log(&self.span, &event);
        self.counters.metrics.event(&event);
        self.admit();
        self.event_streams
            .borrow_mut()
            .retain(|s| match s.push(event.clone()) {
                Pushed::Dropped => {
                    Counters::add(&self.event_streams_dropped, 1);
                    true
                }
                Pushed::Gone => false,
                Pushed::Queued | Pushed::Behind(_) => true,
            });
        self.events.borrow_mut().deliver(event);
    }

    /// Events not delivered to subscribers and streams too far behind.
    pub(crate) fn events_dropped(&self) -> u64 {
        self.events.borrow().dropped() + self.event_streams_dropped.get()
    }
}

/// Logs `event` under the client's span, at the level an operator wants
/// it: what needs attention (a dead peer, a stalled subscriber, a dropped
/// message, giving up) at WARN, the link's life at INFO, attempts at
/// DEBUG. Never a payload: a dropped message shows its size.
fn log(span: &tracing::Span, event: &Event) {
    use tracing::{debug, info, warn};
    let name = event.name();
    match event {
        Event::Connecting { attempt } => debug!(parent: span, event = name, attempt),
        Event::Connected {
            attempt,
            url,
            endpoint,
            protocol,
            extensions,
            proxy,
        } => info!(
            parent: span,
            event = name,
            attempt,
            url,
            endpoint,
            protocol,
            extensions,
            proxy,
            "link up"
        ),
        Event::Disconnected { reason, will_retry } => {
            let reason_text = ErrorChain(reason);
            match reason {
                DisconnectReason::ConnectFailed(_) => {
                    debug!(parent: span, event = name, reason = %reason_text, will_retry)
                }
                DisconnectReason::PongTimeout(_)
                | DisconnectReason::Silence(_)
                | DisconnectReason::WriteTimeout(_)
                | DisconnectReason::SubscriberStalled(_)
                | DisconnectReason::Protocol(_) => warn!(
                    parent: span,
                    event = name,
                    reason = %reason_text,
                    will_retry,
                    "link down"
                ),
                _ => info!(
                    parent: span,
                    event = name,
                    reason = %reason_text,
                    will_retry,
                    "link down"
                ),
            }
        }
        Event::Reconnecting { attempt, delay } => info!(
            parent: span,
            event = name,
            attempt,
            delay_ms = delay.as_millis() as u64,
            "reconnecting"
        ),
        Event::GaveUp { reason, attempts } => warn!(
            parent: span,
            event = name,
            reason = %ErrorChain(reason),
            attempts,
            "giving up"
        ),
        Event::Dropped { message } => warn!(
            parent: span,
            event = name,
            bytes = message.len(),
            "queued message dropped by the overflow policy"
        ),
        Event::SubscriberStalled {
            stalled_for,
            behind_bytes,
        } => warn!(
            parent: span,
            event = name,
            stalled_ms = stalled_for.as_millis() as u64,
            behind_bytes,
            "a subscriber is stalled"
        ),
        Event::RotationFailed { reason, retry_in } => warn!(
            parent: span,
            event = name,
            reason = %ErrorChain(reason),
            retry_in_ms = retry_in.as_millis() as u64,
            "rotation failed"
        ),
        Event::Replaying { messages } => info!(parent: span, event = name, messages),
        Event::Rotating { reason, age } => info!(
            parent: span,
            event = name,
            reason = reason.name(),
            age_ms = age.as_millis() as u64
        ),
        Event::Rotated { age, url, endpoint } => info!(
            parent: span,
            event = name,
            age_ms = age.as_millis() as u64,
            url,
            endpoint
        ),
        Event::Closed {
            unsent,
            possibly_delivered,
        } => info!(parent: span, event = name, unsent, possibly_delivered),
    }
}

/// Sends `msgs` to `r` in order; false if its actor has stopped.
///
/// Once `r`'s mailbox is full, the rest go in over capacity (`do_send`) and
/// the last with `send`, whose reply, pushed to `waits`, comes once `r` has
/// handled all of them.
fn send_in_order<M>(
    r: &Recipient<M>,
    msgs: impl Iterator<Item = M>,
    waits: &mut Vec<CatchUp>,
) -> bool
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    let mut msgs = msgs;
    while let Some(m) = msgs.next() {
        match r.try_send(m) {
            Ok(()) => {}
            Err(MailboxSendError::Closed(_)) => return false,
            Err(MailboxSendError::Full(mut m)) => {
                for next in msgs {
                    r.do_send(m);
                    m = next;
                }
                // `send` on a sender that `try_send` parked would hold the
                // message back until the mailbox has room, letting the next
                // read's messages overtake it; a fresh clone is not parked,
                // so it queues the message now, in order.
                let reply = r.clone().send(m);
                waits.push(Box::pin(async move {
                    let _ = reply.await;
                }));
                return true;
            }
        }
    }
    true
}

/// The subscribers of one kind of side-channel message (events, typed
/// values), each allowed to fall behind by a bounded number of messages.
///
/// A subscriber with room in its mailbox gets the message at once. One whose
/// mailbox is full still gets it, over capacity, until [`FANOUT_BACKLOG`]
/// messages wait there beyond its capacity; after that, messages for it are
/// dropped and counted ([`Fanout::dropped`]) until it catches up, so a stuck
/// subscriber costs bounded memory and delays nobody. Subscribers whose
/// actor has stopped are forgotten.
#[derive(Debug)]
pub struct Fanout<M: actix::Message + Send>
where
    M::Result: Send,
{
    subscribers: Vec<(Recipient<M>, Rc<Cell<usize>>)>,
    dropped: u64,
}

impl<M: actix::Message + Send> Default for Fanout<M>
where
    M::Result: Send,
{
    fn default() -> Self {
        Self {
            subscribers: Vec::new(),
            dropped: 0,
        }
    }
}

impl<M> Fanout<M>
where
    M: actix::Message + Send + Clone + 'static,
    M::Result: Send,
{
    /// Adds a subscriber.
    pub fn push(&mut self, r: Recipient<M>) {
        self.subscribers.push((r, Rc::default()));
    }

    /// Whether there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Messages dropped for subscribers that were too far behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Delivers `msg` to every subscriber (a clone to all but the last).
    pub fn deliver(&mut self, msg: M) {
        let mut dropped = 0;
        give_each(&mut self.subscribers, msg, |(r, behind), m| {
            match r.try_send(m) {
                Ok(()) => true,
                Err(MailboxSendError::Closed(_)) => false,
                Err(MailboxSendError::Full(_)) if behind.get() >= FANOUT_BACKLOG => {
                    dropped += 1;
                    true
                }
                Err(MailboxSendError::Full(m)) => {
                    // Over capacity, counted until handled. A fresh clone is
                    // not parked, so `send` queues the message now, in order.
                    behind.set(behind.get() + 1);
                    let handled = r.clone().send(m);
                    let behind = behind.clone();
                    actix_rt::spawn(async move {
                        let _ = handled.await;
                        behind.set(behind.get().saturating_sub(1));
                    });
                    true
                }
            }
        });
        self.dropped = self.dropped.saturating_add(dropped);
    }
}

/// Hands `value` to every recipient in `list` (the last gets it, the others
/// a clone) and keeps those for which `give` returns true.
fn give_each<R, T: Clone>(list: &mut Vec<R>, value: T, mut give: impl FnMut(&R, T) -> bool) {
    let mut value = Some(value);
    let last = list.len().saturating_sub(1);
    let mut i = 0;
    list.retain(|r| {
        let v = if i == last {
            value.take()
        } else {
            value.clone()
        };
        i += 1;
        v.is_none_or(|v| give(r, v))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::prelude::*;

    #[derive(Debug, Clone, actix::Message)]
    #[rtype(result = "()")]
    struct Note;

    /// Never finishes handling its first message.
    struct Stuck;

    impl Actor for Stuck {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(4);
        }
    }

    impl Handler<Note> for Stuck {
        type Result = ();

        fn handle(&mut self, _: Note, ctx: &mut Context<Self>) {
            ctx.wait(actix::fut::wrap_future(futures::future::pending::<()>()));
        }
    }

    #[test]
    fn a_stuck_subscriber_costs_a_bounded_backlog_and_counted_drops() {
        actix_rt::System::new().block_on(async {
            let mut fanout = Fanout::default();
            fanout.push(Stuck.start().recipient());
            for _ in 0..3000 {
                fanout.deliver(Note);
                actix_rt::task::yield_now().await;
            }
            let dropped = fanout.dropped();
            // Its mailbox (4) and the backlog beyond it are all it holds.
            assert!(
                (3000 - FANOUT_BACKLOG as u64 - 8..=3000 - FANOUT_BACKLOG as u64)
                    .contains(&dropped),
                "{dropped} dropped"
            );
        });
    }
}

/// What one flushed batch wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}
