//! Starting the engine, and the handle applications keep.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::dev::channel::{channel, AddressReceiver};
use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::poll_fn;

use crate::backoff::{Backoff, RandomSource};
use crate::budget::ReconnectBudget;
use crate::buffer::{lock, Accepted, Buffer, SharedBuffer, Undelivered};
use crate::config::Config;
use crate::error::{CloseError, ConfigError, NotConnected, SendError, Unconfirmed};
use crate::events::{Event, Inbound, InboundBatch, State};
use crate::frame::Message;
use crate::hooks::{DedupKey, OnConnect, ReadyPredicate, RedactUrl, RequestProvider};
use crate::hub::{Dedup, Hub};
use crate::messages::{
    AddSetupSource, Close, GetStats, Orphaned, ReconnectNow, Rotate, SetPaused, SetupSource,
    WaitConfirmed, Wake,
};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::stats::Stats;
use crate::stream::{
    event_stream, message_stream, EventStream, Joiner, MessageStream, Shared, STREAM_CAPACITY,
};
use crate::subscriber::Pump;
use crate::supervisor::{Parts, Supervisor};
use crate::transport::{redact_url, Transport};
use crate::writer::Handoff;

/// Messages [`Client::send_all`] takes from its iterator per run.
const SEND_ALL_RUN: usize = 64;

/// Runs once with the new client's handle on the client's arbiter, before
/// its first attempt (see [`Engine::on_start`]).
pub type OnStart = Box<dyn FnOnce(&Client)>;

/// Mailbox capacity of the supervisor and the queue: actix's default.
const MAILBOX: usize = 16;

/// Assembles and starts the actors of one client.
///
/// `actix-tether`'s `ClientBuilder` wraps this with URL handling and the awc
/// transport; use it directly to plug in another transport.
#[must_use]
pub struct Engine {
    config: Config,
    transport: Box<dyn Transport>,
    provider: RequestProvider,
    on_connect: Option<OnConnect>,
    on_start: Option<OnStart>,
    random: Option<Box<dyn RandomSource>>,
    /// Subscribers present from the first attempt.
    subscribers: Vec<Joiner>,
    urls: Vec<String>,
    budget: Option<ReconnectBudget>,
    gate: Option<ReadyPredicate>,
    dedup: Option<DedupKey>,
    redact: Option<RedactUrl>,
}

/// The channels and shared state of a client whose actors are not running
/// yet: what a handle needs, made before the actors so that a handle can be
/// returned from another thread than theirs.
struct Wiring {
    supervisor: AddressReceiver<Supervisor>,
    queue: AddressReceiver<Queue>,
    buffer: SharedBuffer,
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl Wiring {
    fn new(config: &Config) -> (Client, Wiring) {
        let (supervisor_tx, supervisor) = channel(MAILBOX);
        let (queue_tx, queue) = channel(MAILBOX);
        let supervisor_addr = Addr::new(supervisor_tx);
        let metrics = Metrics::new(&config.name);
        let buffer = Buffer::new(config.queue).observed(metrics.clone());
        let buffer: SharedBuffer = Arc::new(Mutex::new(buffer));
        let shared = Shared::new();
        let client = Client {
            handle: Arc::new(LastHandle(supervisor_addr.clone())),
            supervisor: supervisor_addr,
            queue: Addr::new(queue_tx),
            buffer: buffer.clone(),
            shared: shared.clone(),
        };
        let wiring = Wiring {
            supervisor,
            queue,
            buffer,
            shared,
            metrics,
        };
        (client, wiring)
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine that opens links through `transport` with the requests
    /// `provider` makes.
    pub fn new(config: Config, transport: Box<dyn Transport>, provider: RequestProvider) -> Self {
        Self {
            config,
            transport,
            provider,
            on_connect: None,
            on_start: None,
            random: None,
            subscribers: Vec::new(),
            urls: Vec::new(),
            budget: None,
            gate: None,
            dedup: None,
            redact: None,
        }
    }

    /// The endpoints' URLs, the primary first and then the fallbacks in
    /// order: each attempt's [`Attempt`](crate::Attempt) names one, and the provider makes
    /// its request (see [`FeedConfig`](crate::FeedConfig) for how attempts
    /// move between them). Default is one endpoint with an empty URL.
    pub fn endpoints(mut self, urls: Vec<String>) -> Self {
        self.urls = urls;
        self
    }

    /// Consults `budget` before every attempt (see [`ReconnectBudget`]).
    /// Default is none: attempts wait only for their backoff.
    pub fn reconnect_budget(mut self, budget: ReconnectBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Holds each link's backlog, after its setup lane, until an inbound
    /// message satisfies `predicate`, for at most the ready timeout
    /// ([`FeedConfig::ready_timeout`](crate::FeedConfig::ready_timeout)).
    /// Default is none: the backlog follows the setup lane at once.
    pub fn ready_gate(mut self, predicate: ReadyPredicate) -> Self {
        self.gate = Some(predicate);
        self
    }

    /// Drops the messages a rotation's new link delivers that the old one
    /// already delivered, by `key`, over the dedup window
    /// ([`FeedConfig::dedup_window`](crate::FeedConfig::dedup_window)).
    /// Default is none.
    pub fn dedup_key(mut self, key: DedupKey) -> Self {
        self.dedup = Some(key);
        self
    }

    /// Redacts URLs further before events and spans show them (after the
    /// default redaction: see [`redact_url`](crate::redact_url)). Default
    /// is the default redaction alone.
    pub fn redact_url(mut self, redact: RedactUrl) -> Self {
        self.redact = Some(redact);
        self
    }

    /// Sets the on-connect hook that fills the setup lane. Default is none.
    pub fn on_connect(mut self, hook: OnConnect) -> Self {
        self.on_connect = Some(hook);
        self
    }

    /// Sets a hook that receives the new client's handle once, on the
    /// client's arbiter, before the first attempt: what it subscribes (an
    /// actor made with the handle, a stream) receives everything from the
    /// first link on. Default is none.
    pub fn on_start(mut self, hook: OnStart) -> Self {
        self.on_start = Some(hook);
        self
    }

    /// Sets the random source of the backoff jitter. Default is a generator
    /// seeded by the operating system.
    pub fn random(mut self, random: Box<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// Adds a subscriber to inbound messages, present from the first link.
    pub fn subscribe(mut self, r: Recipient<Inbound>) -> Self {
        self.subscribers.push(Joiner::Inbound(r));
        self
    }

    /// Adds a subscriber to inbound messages one socket read at a time.
    pub fn subscribe_batches(mut self, r: Recipient<InboundBatch>) -> Self {
        self.subscribers.push(Joiner::Batches(r));
        self
    }

    /// Adds a subscriber to events, present from the first attempt.
    pub fn subscribe_events(mut self, r: Recipient<Event>) -> Self {
        self.subscribers.push(Joiner::Events(r));
        self
    }

    /// Validates the configuration and starts the actors on the current
    /// arbiter. Must be called inside a running actix `System`.
    ///
    /// The actors begin when this thread next yields to its runtime:
    /// subscriptions and streams made with the handle before that (right
    /// after `start` returns, in the same synchronous code) receive
    /// everything from the first link on.
    ///
    /// # Errors
    ///
    /// The first invalid setting ([`ConfigError`]), or
    /// [`ConfigError::NoSystem`] outside a running actix `System`.
    pub fn start(self) -> Result<Client, ConfigError> {
        self.config.validate()?;
        // Actors need a running System on this thread; the System's handle
        // outlives `block_on`, so also ask whether a runtime is running.
        if actix_rt::System::try_current().is_none()
            || tokio::runtime::Handle::try_current().is_err()
        {
            return Err(ConfigError::NoSystem);
        }
        let (client, wiring) = Wiring::new(&self.config);
        self.launch(wiring, &client.downgrade());
        Ok(client)
    }

    /// Validates `config` and starts on `arbiter` the engine that `make`
    /// builds around it. `make` runs on the arbiter's thread, so the
    /// transport and hooks it creates need not be `Send`; the handle is
    /// returned at once. Subscriptions made with the handle after this
    /// returns may miss the first messages of the first link: subscribe
    /// in the engine, or with [`Engine::on_start`], to receive everything.
    ///
    /// # Errors
    ///
    /// The first invalid setting ([`ConfigError`]), or
    /// [`ConfigError::ArbiterStopped`] if the arbiter is not running.
    pub fn start_on<F>(
        arbiter: &ArbiterHandle,
        config: Config,
        make: F,
    ) -> Result<Client, ConfigError>
    where
        F: FnOnce(Config) -> Engine + Send + 'static,
    {
        config.validate()?;
        let (client, wiring) = Wiring::new(&config);
        let weak = client.downgrade();
        if !arbiter.spawn_fn(move || make(config).launch(wiring, &weak)) {
            return Err(ConfigError::ArbiterStopped);
        }
        Ok(client)
    }

    /// Starts the actors on the current arbiter, with the channels the
    /// handles already hold.
    fn launch(self, wiring: Wiring, client: &WeakClient) {
        let backoff = match self.random {
            Some(r) => Backoff::with_random(self.config.backoff, r),
            None => Backoff::new(self.config.backoff),
        };
        let window = self.config.feed.dedup_window;
        let dedup = self.dedup.map(|key| Dedup::new(key, window));
        let url = self.urls.first().map(|u| {
            let url = redact_url(u);
            match &self.redact {
                Some(redact) => redact(&url),
                None => url,
            }
        });
        let span = tracing::info_span!(
            "ws_client",
            client = %self.config.name,
            url = url.as_deref(),
        );
        let hub = Hub::new(&self.config, wiring.shared, wiring.metrics)
            .with_feed(self.gate, dedup)
            .with_span(span);
        let hub = Rc::new(hub);
        for joiner in self.subscribers {
            hub.join(joiner);
        }
        let buffer = wiring.buffer;
        let handoff = Rc::new(Handoff::default());
        let queue = Context::with_receiver(wiring.queue).run(Queue::new(
            buffer.clone(),
            hub.clone(),
            handoff.clone(),
            self.config.write_batch,
        ));
        hub.delivery
            .borrow_mut()
            .connect(queue.clone().recipient(), buffer.clone());
        if let (Some(hook), Some(client)) = (self.on_start, client.upgrade()) {
            hook(&client);
        }
        Context::with_receiver(wiring.supervisor).run(Supervisor::new(Parts {
            config: Rc::new(self.config),
            transport: self.transport,
            provider: self.provider,
            on_connect: self.on_connect,
            backoff,
            hub,
            buffer,
            queue,
            urls: self.urls,
            budget: self.budget,
            redact: self.redact,
            handoff,
        }));
    }
}

/// The handle to a running client: cheap to clone, `Send`, usable from any
/// thread.
///
/// # Outbound: what `send` promises
///
/// A message the client accepts (`Ok`) is written in order, after the setup
/// lane of the link it goes out on; if the link is down it is held and
/// written after the reconnect. It leaves the queue only by being written,
/// by the overflow policy (`try_send` with `DropOldest`, reported as
/// [`Event::Dropped`]), or by [`Client::close`] handing it back. The queue is
/// bounded by count and bytes: [`Client::send`] waits for room,
/// [`Client::try_send`] applies the overflow policy. See
/// [`Supervisor`](crate::Supervisor) for what a lost link does to the
/// messages on their way.
///
/// # Delivery: what a Pong confirms
///
/// Written is not delivered: a link can die with bytes the kernel took and
/// the peer never read. Every Ping the client writes is a barrier whose Pong
/// confirms what was written before it ([`DeliveryConfig`](crate::DeliveryConfig)).
/// [`Client::confirmed`] waits for that; [`Client::try_send_tracked`] tracks
/// one message; [`Stats`] counts confirmed, unconfirmed and possibly lost
/// messages. With replay on, what no Pong confirmed is written again after a
/// reconnect: at least once to the server's WebSocket layer.
///
/// # Inbound: backpressure
///
/// Subscribers receive every message in order. One that falls behind its
/// mailbox capacity still receives everything; the client reads ahead up to
/// the read-ahead (1 MiB by default, each message counting its payload and
/// 128 bytes) so that it keeps answering Pings and finding dead peers, then
/// pauses reading until the subscriber catches up.
/// A subscriber behind for the stall timeout is reported with
/// [`Event::SubscriberStalled`]. A [`MessageStream`] ([`Client::stream`])
/// follows the same rules, counting socket reads instead of mailbox
/// messages.
///
/// # Async code, and subscribing after start
///
/// [`Client::stream`] and [`Client::events`] are streams for any task on
/// any thread; [`Client::connected`] waits for a link and
/// [`Client::state`] reads where the client is. Subscriptions and streams
/// made from a handle take effect at the client's next read or event:
/// made right after [`Engine::start`] returns, before an `.await`, they see
/// everything from the first link on; [`Engine::on_start`] is the way for
/// clients started on another arbiter.
///
/// # Dropping the last handle
///
/// The client lives as long as a handle does, as a channel lives as long as
/// a sender. When the last `Client` (or the last typed client holding one)
/// is dropped, the client closes as [`Client::close`] would with the close
/// timeout: it stops accepting messages, writes what it holds (reconnecting
/// if it must, until the timeout), closes the link with 1000 and stops every
/// actor; subscribers see `Disconnected` and `Closed` as usual, and what could
/// not be written is counted in `Closed` and dropped. Subscribers and the
/// engine's own actors hold no handle; an actor that must not keep the client
/// alive holds a [`WeakClient`].
#[derive(Clone)]
pub struct Client {
    supervisor: Addr<Supervisor>,
    queue: Addr<Queue>,
    buffer: SharedBuffer,
    shared: Arc<Shared>,
    handle: Arc<LastHandle>,
}

/// Tells the supervisor when the last strong handle goes.
struct LastHandle(Addr<Supervisor>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.do_send(Orphaned);
    }
}

/// A handle that does not keep the client alive (see [`Client`]); upgrade it
/// to send.
#[derive(Clone)]
pub struct WeakClient {
    supervisor: Addr<Supervisor>,
    queue: Addr<Queue>,
    buffer: SharedBuffer,
    shared: Arc<Shared>,
    handle: Weak<LastHandle>,
}

impl fmt::Debug for WeakClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakClient")
            .field("alive", &(self.handle.strong_count() > 0))
            .finish_non_exhaustive()
    }
}

impl WeakClient {
    /// A full handle, if some other handle still keeps the client alive.
    pub fn upgrade(&self) -> Option<Client> {
        Some(Client {
            handle: self.handle.upgrade()?,
            supervisor: self.supervisor.clone(),
            queue: self.queue.clone(),
            buffer: self.buffer.clone(),
            shared: self.shared.clone(),
        })
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = lock(&self.buffer);
        f.debug_struct("Client")
            .field("queue_depth", &buf.depth())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A handle that does not keep the client alive.
    pub fn downgrade(&self) -> WeakClient {
        WeakClient {
            supervisor: self.supervisor.clone(),
            queue: self.queue.clone(),
            buffer: self.buffer.clone(),
            shared: self.shared.clone(),
            handle: Arc::downgrade(&self.handle),
        }
    }

    /// Queues `msg` without waiting. While the link is up it is written in
    /// order; while it is down it is held and written after the reconnect.
    ///
    /// On a full queue the overflow policy decides: `Reject` (and `Wait`)
    /// hand the message back in [`SendError::Full`]; `DropOldest` drops the
    /// oldest queued messages when that makes room (each reported as
    /// [`Event::Dropped`]) and otherwise refuses the new one, dropping
    /// nothing.
    ///
    /// # Errors
    ///
    /// Each hands the message back: [`SendError::Full`] when the queue is
    /// full and the policy refuses it, [`SendError::TooLarge`] for a
    /// message over the queue's byte limit, [`SendError::Closed`] once the
    /// client is closing, closed or gave up.
    pub fn try_send(&self, msg: impl Into<Message>) -> Result<(), SendError> {
        let accepted = lock(&self.buffer).push(msg.into())?;
        if accepted.wake {
            self.queue.do_send(Wake);
        }
        Ok(())
    }

    /// Queues `msg` as [`Client::try_send`] does, and returns a [`Receipt`]
    /// that learns whether it reached the server.
    ///
    /// # Errors
    ///
    /// Those of [`Client::try_send`], the message handed back.
    pub fn try_send_tracked(&self, msg: impl Into<Message>) -> Result<Receipt, SendError> {
        let (accepted, rx) = lock(&self.buffer).push_tracked(msg.into())?;
        if accepted.wake {
            self.queue.do_send(Wake);
        }
        Ok(Receipt(rx))
    }

    /// Queues `msg`, waiting while the queue is full, whatever the overflow
    /// policy (backpressure, as a bounded channel's `send`). Waiting senders
    /// get room in the order they called.
    ///
    /// # Errors
    ///
    /// At once, the message handed back: [`SendError::Closed`] once the
    /// client is closing, closed or gave up, [`SendError::TooLarge`] for a
    /// message larger than the queue's byte limit.
    ///
    /// # Cancel safety
    ///
    /// While it waits, the message stays inside this future. Dropping the
    /// future before it completes (a `select!` that took another branch, a
    /// timeout) drops the message: it is never sent later. Once the future
    /// has returned `Ok`, the message is queued.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<(), SendError> {
        // Room now and nobody in line: no waiting machinery at all. The
        // waiting path is boxed so that this future stays small.
        let first = lock(&self.buffer).push_or_wait(msg.into())?;
        let accepted = match first {
            Ok(accepted) => accepted,
            Err(msg) => Box::pin(self.wait_for_room(msg)).await?,
        };
        if accepted.wake {
            self.queue.do_send(Wake);
        }
        Ok(())
    }

    /// Queues every message of `msgs`, in order, as [`Client::send`] one by
    /// one would (waiting while the queue is full, whatever the overflow
    /// policy), but taking the queue's lock once per 64 messages and waking
    /// the writer once per run: for many messages at once. Another task's
    /// `send` may land between two runs.
    ///
    /// # Errors
    ///
    /// The first refusal ends it, the refused message handed back
    /// ([`SendError::Closed`] once the client is closing, closed or gave
    /// up, [`SendError::TooLarge`] for a message larger than the queue's
    /// byte limit): the messages before it are queued, those after it are
    /// not.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for room drops the message it
    /// holds and those not yet taken from `msgs`; those before are queued.
    ///
    /// ```
    /// # use actix_tether_actors::Client;
    /// # #[allow(dead_code)]
    /// # async fn run(client: Client) -> Result<(), actix_tether_actors::SendError> {
    /// client.send_all((0..1000).map(|i| format!("order {i}"))).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_all<I>(&self, msgs: I) -> Result<(), SendError>
    where
        I: IntoIterator,
        I::Item: Into<Message>,
    {
        let mut msgs = msgs.into_iter().map(Into::into);
        let mut run = VecDeque::with_capacity(SEND_ALL_RUN);
        loop {
            // Taken from the iterator outside the lock: its code may use
            // this client.
            run.extend(msgs.by_ref().take(SEND_ALL_RUN));
            if run.is_empty() {
                return Ok(());
            }
            while !run.is_empty() {
                let (mut wake, mut full, mut refused) = (false, None, None);
                {
                    let mut buffer = lock(&self.buffer);
                    while let Some(msg) = run.pop_front() {
                        match buffer.push_or_wait(msg) {
                            Ok(Ok(accepted)) => wake |= accepted.wake,
                            Ok(Err(msg)) => {
                                full = Some(msg);
                                break;
                            }
                            Err(e) => {
                                refused = Some(e);
                                break;
                            }
                        }
                    }
                }
                if wake {
                    self.queue.do_send(Wake);
                }
                if let Some(e) = refused {
                    return Err(e);
                }
                // Full: what is queued goes out while this one waits.
                if let Some(msg) = full {
                    if Box::pin(self.wait_for_room(msg)).await?.wake {
                        self.queue.do_send(Wake);
                    }
                }
            }
        }
    }

    /// Waits in line until `msg` fits; leaves the line if dropped.
    async fn wait_for_room(&self, msg: Message) -> Result<Accepted, SendError> {
        let mut waiting = WaitingSend {
            buffer: &self.buffer,
            msg: Some(msg),
            ticket: None,
        };
        poll_fn(|cx| lock(waiting.buffer).poll_push(&mut waiting.msg, &mut waiting.ticket, cx))
            .await
    }

    /// Subscribes an actor to inbound messages: it receives every message
    /// read after this call, across reconnects (see [`Engine::start`] for
    /// receiving the first link's too). Each message is one mailbox
    /// message; [`Client::subscribe_context`] is the fast way for an actor.
    pub fn subscribe(&self, r: Recipient<Inbound>) {
        self.shared.join(Joiner::Inbound(r));
    }

    /// Subscribes the actor whose context this is to inbound messages, from
    /// the next read on: its `Handler<Inbound>` is called once per message,
    /// in order, but the actor is woken once per socket read instead of
    /// receiving one mailbox message per message, so it keeps up with
    /// feeds at the rate of a raw socket loop. The fast way to subscribe an
    /// actor; call it where its context is at hand (`Actor::started`, or
    /// `Actor::create`'s closure).
    ///
    /// Bounded as [`Client::stream`] is: [`STREAM_CAPACITY`] reads, then
    /// the read-ahead (reading pauses, [`Event::SubscriberStalled`] after
    /// the stall timeout), nothing dropped. A handler that calls `ctx.wait`
    /// holds the next messages back until the wait is over, as the mailbox
    /// does. The subscription ends when the actor stops (the client forgets
    /// it) or when the client closes (the actor keeps running). A panic in
    /// the handler is the actor's: on an arbiter of its own it ends that
    /// arbiter, not the client.
    ///
    /// ```
    /// use actix::prelude::*;
    /// use actix_tether_actors::{Client, Inbound};
    ///
    /// struct Printer(Client);
    ///
    /// impl Actor for Printer {
    ///     type Context = Context<Self>;
    ///
    ///     fn started(&mut self, ctx: &mut Context<Self>) {
    ///         self.0.subscribe_context(ctx);
    ///     }
    /// }
    ///
    /// impl Handler<Inbound> for Printer {
    ///     type Result = ();
    ///
    ///     fn handle(&mut self, Inbound(msg): Inbound, _: &mut Context<Self>) {
    ///         println!("{:?}", msg.as_text());
    ///     }
    /// }
    /// # #[allow(dead_code)]
    /// # fn run(client: Client) { Printer(client).start(); }
    /// ```
    pub fn subscribe_context<A>(&self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>> + Handler<Inbound>,
    {
        ctx.spawn(Pump::new(self.stream()));
    }

    /// Subscribes an actor to inbound messages one socket read at a time,
    /// from the next read on.
    pub fn subscribe_batches(&self, r: Recipient<InboundBatch>) {
        self.shared.join(Joiner::Batches(r));
    }

    /// Subscribes an actor to events, from the next event on.
    pub fn subscribe_events(&self, r: Recipient<Event>) {
        self.shared.join(Joiner::Events(r));
    }

    /// The inbound messages read from now on, as a [`Stream`]: for async
    /// code, and for an actor through `ctx.add_stream(client.stream())`.
    /// Holds [`STREAM_CAPACITY`] reads before reads count against the
    /// read-ahead (see [`MessageStream`]).
    ///
    /// ```
    /// # use actix_tether_actors::Client;
    /// # #[allow(dead_code)]
    /// # async fn run(client: Client) {
    /// use futures::StreamExt;
    ///
    /// let mut messages = client.stream();
    /// client.send("ping?").await.ok();
    /// if let Some(reply) = messages.next().await {
    ///     println!("{:?}", reply.as_text());
    /// }
    /// # }
    /// ```
    pub fn stream(&self) -> MessageStream {
        self.stream_with_capacity(STREAM_CAPACITY)
    }

    /// [`Client::stream`] holding `reads` socket reads (at least one)
    /// before further reads count against the read-ahead.
    pub fn stream_with_capacity(&self, reads: usize) -> MessageStream {
        let (stream, sender) = message_stream(reads);
        self.shared.join(Joiner::Stream(sender));
        stream
    }

    /// The client's events from now on, as a [`Stream`] that ends after
    /// [`Event::Closed`] (see [`EventStream`]).
    pub fn events(&self) -> EventStream {
        let (stream, sender) = event_stream();
        self.shared.join(Joiner::EventStream(sender));
        stream
    }

    /// Where the client is now: what the supervisor last set, read from
    /// shared state (no message to the supervisor, no waiting), from any
    /// thread.
    pub fn state(&self) -> State {
        self.shared.status().state
    }

    /// Waits until a link is up: at once if one is, otherwise when the next
    /// link comes up (its `Connected` event is published after).
    ///
    /// Bound it with a timeout to wait a limited time.
    ///
    /// # Errors
    ///
    /// [`NotConnected::GaveUp`] when retries stop first,
    /// [`NotConnected::Closed`] when the client is closing or closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future only stops the wait.
    pub async fn connected(&self) -> Result<(), NotConnected> {
        let mut status = self.shared.watch();
        let links = status.borrow_and_update().links;
        let seen = status
            .wait_for(|s| {
                s.links > links
                    || matches!(
                        s.state,
                        State::Connected | State::GaveUp | State::Closing | State::Closed
                    )
            })
            .await
            .map(|s| *s);
        match seen {
            Ok(s) if s.links > links || s.state == State::Connected => Ok(()),
            Ok(s) if s.state == State::GaveUp => Err(NotConnected::GaveUp),
            _ => Err(NotConnected::Closed),
        }
    }

    /// Rotates now: opens a second link, runs its setup lane, then moves
    /// both directions to it and closes the current one with 1000 (see
    /// [`Supervisor`](crate::Supervisor)). Does nothing unless a link is up
    /// and no rotation is under way.
    pub fn rotate(&self) {
        self.supervisor.do_send(Rotate);
    }

    /// Skips the current wait (the backoff delay, and the reconnect
    /// budget's) and attempts at once. Does nothing unless the client is
    /// waiting to reconnect.
    pub fn reconnect_now(&self) {
        self.supervisor.do_send(ReconnectNow);
    }

    /// Keeps the client down until [`Client::resume`]: closes the link with
    /// 1000 (subscribers see `Disconnected` with
    /// [`DisconnectReason::Paused`](crate::DisconnectReason::Paused)) and
    /// makes no attempt. Sending goes on as usual: messages queue, within
    /// the queue's bounds. Closing a paused client connects again to
    /// deliver what is queued.
    pub fn pause(&self) {
        self.supervisor.do_send(SetPaused(true));
    }

    /// Lets a paused client connect again, at once and with a fresh
    /// backoff.
    pub fn resume(&self) {
        self.supervisor.do_send(SetPaused(false));
    }

    /// Adds a source of setup-lane messages, called on every connect after
    /// the on-connect hook; what it returns is written before the queued
    /// backlog. Layers such as acknowledged delivery use it to re-send.
    pub fn add_setup_source(&self, source: SetupSource) {
        self.supervisor.do_send(AddSetupSource(source));
    }

    /// A snapshot of the client's statistics.
    ///
    /// # Errors
    ///
    /// [`CloseError::AlreadyClosed`] once the client's actors have stopped.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future only drops the answer.
    pub async fn stats(&self) -> Result<Stats, CloseError> {
        self.supervisor
            .send(GetStats)
            .await
            .map_err(|_| CloseError::AlreadyClosed)
    }

    /// Waits until every message accepted before the call has reached the
    /// server's WebSocket layer: a Pong to a Ping written after it came back
    /// (messages the overflow policy dropped excepted). While it waits, the
    /// client sends barrier Pings (at most one per barrier interval) so the
    /// wait is about a round trip once the messages are written.
    ///
    /// With replay, a link that ends first does not fail it: the tail is
    /// written again and the wait goes on. Without replay, it fails with
    /// [`Unconfirmed::PossiblyLost`] when a link ends with some of the
    /// messages written and unconfirmed (they may be lost: see
    /// [`Stats::possibly_lost`]), and with [`Unconfirmed::Closed`] when the
    /// client closes or gives up first. A peer that does not answer Pings
    /// never confirms anything; the heartbeat then ends the link.
    ///
    /// # Errors
    ///
    /// [`Unconfirmed::PossiblyLost`] and [`Unconfirmed::Closed`], as above.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future only stops the wait; the messages stay queued.
    pub async fn confirmed(&self) -> Result<(), Unconfirmed> {
        let target = lock(&self.buffer).next_seq();
        let wait = self
            .queue
            .send(WaitConfirmed(target))
            .await
            .map_err(|_| Unconfirmed::Closed)?;
        wait.await.unwrap_or(Err(Unconfirmed::Closed))
    }

    /// Closes the client: stops accepting messages, writes what is queued
    /// (reconnecting if needed) and waits for a Pong to confirm it, until
    /// `timeout`; then sends Close 1000, stops every actor and returns what
    /// it could not deliver, in order: first what was written and not
    /// confirmed (with replay, or the part of a batch a dying link was
    /// writing), then what was never written.
    ///
    /// # Errors
    ///
    /// [`CloseError::AlreadyClosed`] if the client was closed already and
    /// holds nothing.
    ///
    /// # Cancel safety
    ///
    /// The close begins when this is called; the future only waits for its
    /// outcome, so dropping it (a timeout around it, a `select!` that took
    /// another branch) does not stop the close.
    pub fn close(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Undelivered, CloseError>> + 'static {
        let (reply, outcome) = oneshot::channel();
        self.supervisor.do_send(Close { timeout, reply });
        let buffer = self.buffer.clone();
        async move {
            match outcome.await {
                Ok(outcome) => outcome,
                // The client's actors ended without closing (an arbiter
                // stopped, a hook panicked): what is queued comes back.
                Err(oneshot::Canceled) => {
                    let left = lock(&buffer).take_all();
                    if left.is_empty() {
                        Err(CloseError::AlreadyClosed)
                    } else {
                        Ok(left)
                    }
                }
            }
        }
    }
}

/// The fate of one message sent with [`Client::try_send_tracked`].
///
/// Resolves `Ok` once a Pong to a Ping written after the message came back:
/// the server's WebSocket layer read it. Resolves with
/// [`Unconfirmed::PossiblyLost`] when, without replay, a link ends after
/// flushing it and before confirming it; with [`Unconfirmed::Dropped`] when
/// the overflow policy drops it; with [`Unconfirmed::Closed`] when the client
/// closes or gives up first. With replay, a link that ends does not settle
/// it: it is written again, and the receipt waits for that.
///
/// Settling happens when the connection stops, before the `Disconnected`
/// event is published: an event subscriber that holds a receipt can look
/// ([`Receipt::outcome`]) and find what that link confirmed. A receipt
/// costs nothing on the wire; it resolves with the next barrier (heartbeat
/// or barrier Ping). Dropping one is fine: the client forgets it.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<(), Unconfirmed>>);

impl Receipt {
    /// The outcome, if it is known yet.
    pub fn outcome(&mut self) -> Option<Result<(), Unconfirmed>> {
        match self.0.try_recv() {
            Ok(outcome) => outcome,
            Err(oneshot::Canceled) => Some(Err(Unconfirmed::Closed)),
        }
    }
}

impl Future for Receipt {
    type Output = Result<(), Unconfirmed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Unconfirmed::Closed)))
    }
}

/// A `send` waiting for room; leaves the line when dropped.
struct WaitingSend<'a> {
    buffer: &'a SharedBuffer,
    msg: Option<Message>,
    ticket: Option<u64>,
}

impl Drop for WaitingSend<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            lock(self.buffer).cancel(t);
        }
    }
}
