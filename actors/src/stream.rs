//! Inbound messages and events as `futures::Stream`s, subscriptions made
//! after start, and the client's state as any thread sees it.
//!
//! The hub runs on the client's arbiter; handles and streams may live on any
//! thread. What crosses between them is here, behind `Arc`s: a stream's
//! queue, the subscribers waiting to join the hub, and the state.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use actix::Recipient;
use futures::channel::oneshot;
use futures::Stream;

use futures::future::LocalBoxFuture;

use crate::events::{Event, Inbound, InboundBatch, State};
use crate::frame::Message;

/// Messages a subscriber may fall behind, past its mailbox capacity, before
/// [`Fanout`](crate::Fanout) drops what it would send it.
pub const FANOUT_BACKLOG: usize = 1024;

/// Resolves once a subscriber that was full has handled what it was sent.
pub(crate) type CatchUp = LocalBoxFuture<'static, ()>;

/// Reads a message stream holds before further reads count against the
/// read-ahead: as a batch subscriber's default mailbox capacity.
pub const STREAM_CAPACITY: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The queue between the hub (pushing one read at a time) and one stream.
struct Chan<T> {
    reads: VecDeque<Vec<T>>,
    waker: Option<Waker>,
    /// The client closed: the stream ends once `reads` is empty.
    ended: bool,
    /// The stream was dropped: the hub forgets it.
    gone: bool,
    /// Reads pushed, and reads the stream has finished yielding.
    pushed: u64,
    handled: u64,
    /// Reads over capacity, each with who waits for it to be handled.
    waits: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl<T> Chan<T> {
    fn new() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            reads: VecDeque::new(),
            waker: None,
            ended: false,
            gone: false,
            pushed: 0,
            handled: 0,
            waits: VecDeque::new(),
        }))
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Marks the reads up to `handled` done, resolving who waits for them.
    fn release(&mut self) {
        while self
            .waits
            .front()
            .is_some_and(|(seq, _)| *seq <= self.handled)
        {
            if let Some((_, tx)) = self.waits.pop_front() {
                let _ = tx.send(());
            }
        }
    }
}

/// The receiving half shared by both stream kinds: the current read is
/// taken out of the queue whole, so yielding its items costs no lock.
struct Receiver<T> {
    chan: Arc<Mutex<Chan<T>>>,
    current: std::vec::IntoIter<T>,
    /// Whether `current` came from the queue and is not counted handled.
    holding: bool,
}

impl<T> Receiver<T> {
    fn new(chan: Arc<Mutex<Chan<T>>>) -> Self {
        Self {
            chan,
            current: Vec::new().into_iter(),
            holding: false,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            if let Some(item) = self.current.next() {
                return Poll::Ready(Some(item));
            }
            let mut chan = lock(&self.chan);
            if std::mem::take(&mut self.holding) {
                chan.handled += 1;
                chan.release();
            }
            match chan.reads.pop_front() {
                Some(read) => {
                    self.current = read.into_iter();
                    self.holding = true;
                }
                None if chan.ended => return Poll::Ready(None),
                None => {
                    if !chan.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        chan.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn queued(&self) -> usize {
        let chan = lock(&self.chan);
        self.current.len() + chan.reads.iter().map(Vec::len).sum::<usize>()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut chan = lock(&self.chan);
        chan.gone = true;
        chan.reads.clear();
        // Dropping the senders resolves every wait: reading resumes.
        chan.waits.clear();
    }
}

/// The inbound messages of a client, in order, as a [`Stream`]
/// ([`Client::stream`](crate::Client::stream)).
///
/// Works from any task on any thread; in an actor,
/// `ctx.add_stream(client.stream())` with a `StreamHandler<Message>` gives
/// one handler call per message. The client hands the stream one socket
/// read at a time (one lock per read, none per message).
///
/// Backpressure is a subscriber's: the stream holds up to its capacity in
/// reads ([`STREAM_CAPACITY`] by default); reads beyond it still reach it,
/// in order, but count against the client's read-ahead until the stream has
/// yielded them, and once the read-ahead is full the client stops reading
/// (TCP then pushes back on the server) and reports
/// [`Event::SubscriberStalled`] after the stall timeout. Nothing is dropped.
///
/// The stream receives every message read after it was made, across
/// reconnects, and ends (`None`) once the client has closed or its last
/// handle is gone and everything it holds is yielded. Dropping it
/// unsubscribes it.
pub struct MessageStream(Receiver<Message>);

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStream")
            .field("queued", &self.0.queued())
            .finish_non_exhaustive()
    }
}

impl MessageStream {
    /// Messages received and not yielded yet.
    pub fn queued(&self) -> usize {
        self.0.queued()
    }
}

impl Stream for MessageStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.0.poll_next(cx)
    }
}

/// A client's events, in the order they happened, as a [`Stream`]
/// ([`Client::events`](crate::Client::events)).
///
/// Bounded as event subscribers are: it may fall [`FANOUT_BACKLOG`] events
/// behind; events past that are dropped for it and counted
/// ([`Stats::events_dropped`](crate::Stats::events_dropped)) until it
/// catches up, so a stream nobody polls costs bounded memory and delays
/// nobody. It ends after [`Event::Closed`].
pub struct EventStream(Receiver<Event>);

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("queued", &self.0.queued())
            .finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.0.poll_next(cx)
    }
}

/// The hub's end of a stream: it holds up to `capacity` reads (messages)
/// or events before the stream counts as behind.
pub(crate) struct Sender<T> {
    chan: Arc<Mutex<Chan<T>>>,
    capacity: usize,
}

pub(crate) type MessageSender = Sender<Message>;
pub(crate) type EventSender = Sender<Event>;

/// What pushing to a stream did.
pub(crate) enum Pushed {
    /// Queued within capacity.
    Queued,
    /// A read queued over capacity: resolves once the stream has yielded it.
    Behind(CatchUp),
    /// An event not queued: the stream is [`FANOUT_BACKLOG`] behind.
    Dropped,
    /// The stream is gone.
    Gone,
}

impl Sender<Message> {
    pub(crate) fn push(&self, read: Vec<Message>) -> Pushed {
        let mut chan = lock(&self.chan);
        if chan.gone {
            return Pushed::Gone;
        }
        chan.reads.push_back(read);
        chan.pushed += 1;
        let over = chan.reads.len() > self.capacity;
        let behind = over.then(|| {
            let (tx, rx) = oneshot::channel();
            let seq = chan.pushed;
            chan.waits.push_back((seq, tx));
            rx
        });
        chan.wake();
        match behind {
            None => Pushed::Queued,
            Some(rx) => Pushed::Behind(Box::pin(async move {
                let _ = rx.await;
            })),
        }
    }
}

impl Sender<Event> {
    /// Queues `event`, unless the stream is [`FANOUT_BACKLOG`] behind.
    pub(crate) fn push(&self, event: Event) -> Pushed {
        let mut chan = lock(&self.chan);
        if chan.gone {
            return Pushed::Gone;
        }
        if chan.reads.len() >= self.capacity {
            return Pushed::Dropped;
        }
        chan.reads.push_back(vec![event]);
        chan.wake();
        Pushed::Queued
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut chan = lock(&self.chan);
        chan.ended = true;
        chan.wake();
    }
}

/// A subscriber added after start, on its way to the hub.
pub(crate) enum Joiner {
    Inbound(Recipient<Inbound>),
    Batches(Recipient<InboundBatch>),
    Events(Recipient<Event>),
    Stream(MessageSender),
    EventStream(EventSender),
}

/// What handles and the hub share across threads.
pub(crate) struct Shared {
    joining: Mutex<Joining>,
    /// Whether `joining` has subscribers: one atomic load per publish.
    pending: AtomicBool,
    status: tokio::sync::watch::Sender<Status>,
}

#[derive(Default)]
struct Joining {
    list: Vec<Joiner>,
    /// The hub has finished: joiners are dropped at once (streams end).
    ended: bool,
}

/// Where the client is, and how many links it has had.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    pub(crate) state: State,
    pub(crate) links: u64,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        let (status, _) = tokio::sync::watch::channel(Status {
            state: State::Connecting,
            links: 0,
        });
        Arc::new(Self {
            joining: Mutex::new(Joining::default()),
            pending: AtomicBool::new(false),
            status,
        })
    }

    /// Hands `joiner` to the hub at its next publish; once the client has
    /// finished, drops it (a stream then ends at once).
    pub(crate) fn join(&self, joiner: Joiner) {
        let mut joining = lock(&self.joining);
        if joining.ended {
            return;
        }
        joining.list.push(joiner);
        self.pending.store(true, Ordering::Release);
    }

    /// Subscribers that joined since the last call.
    pub(crate) fn take_joiners(&self) -> Vec<Joiner> {
        if !self.pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut joining = lock(&self.joining);
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut joining.list)
    }

    /// The client has finished: nobody joins any more.
    pub(crate) fn end(&self) {
        let list = {
            let mut joining = lock(&self.joining);
            joining.ended = true;
            std::mem::take(&mut joining.list)
        };
        drop(list);
    }

    pub(crate) fn set_state(&self, state: State, new_link: bool) {
        self.status.send_if_modified(|s| {
            let changed = s.state != state || new_link;
            s.state = state;
            if new_link {
                s.links += 1;
            }
            changed
        });
    }

    pub(crate) fn status(&self) -> Status {
        *self.status.borrow()
    }

    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<Status> {
        self.status.subscribe()
    }
}

/// A stream's two ends.
fn channel<T>(capacity: usize) -> (Receiver<T>, Sender<T>) {
    let chan = Chan::new();
    let sender = Sender {
        chan: chan.clone(),
        capacity: capacity.max(1),
    };
    (Receiver::new(chan), sender)
}

/// A message stream and the hub's end of it.
pub(crate) fn message_stream(capacity: usize) -> (MessageStream, MessageSender) {
    let (rx, tx) = channel(capacity);
    (MessageStream(rx), tx)
}

/// An event stream and the hub's end of it.
pub(crate) fn event_stream() -> (EventStream, EventSender) {
    let (rx, tx) = channel(FANOUT_BACKLOG);
    (EventStream(rx), tx)
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
