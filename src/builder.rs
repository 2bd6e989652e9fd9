//! The client builder.

use std::fmt;
use std::time::Duration;

use actix::{ArbiterHandle, Recipient};
use actix_tether_actors::{
    Attempt, BackoffPolicy, Client, Config, ConfigError, ConnectError, ConnectInfo, ConnectRequest,
    DedupKey, Engine, Event, Inbound, InboundBatch, Jitter, Message, OnConnect, OverflowPolicy,
    QueueLimits, RandomSource, ReadyPredicate, ReconnectBudget, RedactUrl, RequestFuture,
    RequestProvider, StallPolicy, Transport,
};
use futures::FutureExt;

use crate::awc_transport::AwcTransport;
use crate::proxy::ProxySettings;
use crate::validate;
use crate::wire::deflate::Compression;

mod reach;

/// The builder's hooks are `Send`, so that the builder can be moved to the
/// arbiter a client starts on ([`ClientBuilder::start_on`]).
type SendProvider = Box<dyn FnMut(&Attempt) -> RequestFuture + Send>;
type SendPredicate = Box<dyn FnMut(&Message) -> bool + Send>;
type SendDedupKey = Box<dyn FnMut(&Message) -> Option<u64> + Send>;
type SendRedactUrl = Box<dyn Fn(&str) -> String + Send>;
type SendOnConnect = Box<dyn FnMut(&ConnectInfo) -> Vec<Message> + Send>;
type SendOnStart = Box<dyn FnOnce(&Client) + Send>;

/// Configures and starts a supervised WebSocket client.
///
/// Every setter takes and returns the builder; nothing is checked until
/// [`ClientBuilder::start`], which reports the first invalid setting as a
/// [`ConfigError`] instead of panicking.
///
/// ```no_run
/// use std::time::Duration;
/// use actix_tether::{ClientBuilder, OverflowPolicy};
///
/// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientBuilder::new("ws://127.0.0.1:9001/feed")
///     .header("Authorization", "Bearer secret")
///     .ping_interval(Duration::from_secs(15))
///     .overflow(OverflowPolicy::DropOldest)
///     .start()?;
/// client.send("hello").await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct ClientBuilder {
    url: String,
    fallbacks: Vec<String>,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    provider: Option<SendProvider>,
    /// The provider builds on the endpoints' URLs: check them.
    provider_uses_urls: bool,
    config: Config,
    backoff_initial: Duration,
    backoff_max: Duration,
    backoff_factor: f64,
    jitter: Jitter,
    queue_size: usize,
    queue_bytes: usize,
    overflow: OverflowPolicy,
    max_frame_size: Option<usize>,
    compression: Compression,
    hooks: Hooks,
    budget: Option<ReconnectBudget>,
    transport: Option<Box<dyn Transport + Send>>,
    #[cfg(feature = "rustls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    #[cfg(feature = "rustls")]
    tls_options: crate::tls::TlsOptions,
    proxies: ProxySettings,
    redirects: u32,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &actix_tether_actors::redact_url(&self.url))
            .field("protocols", &self.protocols)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder for a client of `url` (`ws://`, `wss://`, `http://` or
    /// `https://`).
    pub fn new(url: impl Into<String>) -> Self {
        let config = Config::default();
        let backoff = config.backoff;
        let queue = config.queue;
        Self {
            url: url.into(),
            fallbacks: Vec::new(),
            headers: Vec::new(),
            protocols: Vec::new(),
            provider: None,
            provider_uses_urls: false,
            backoff_initial: backoff.initial(),
            backoff_max: backoff.max(),
            backoff_factor: backoff.factor(),
            jitter: backoff.jitter(),
            queue_size: queue.max_messages(),
            queue_bytes: queue.max_bytes(),
            overflow: queue.policy(),
            config,
            max_frame_size: None,
            compression: Compression::default(),
            hooks: Hooks::default(),
            budget: None,
            transport: None,
            #[cfg(feature = "rustls")]
            tls: None,
            #[cfg(feature = "rustls")]
            tls_options: crate::tls::TlsOptions::default(),
            proxies: ProxySettings::default(),
            redirects: 0,
        }
    }

    /// Names the client: the `client` label of its metrics (feature
    /// `metrics`) and the `client` field of its `ws_client` tracing span.
    /// Give each client of a process its own name, or their metrics add
    /// up. Default is `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Adds a request header sent with every handshake. Default is none.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (repeat for several, in order of preference). A
    /// server that selects one not offered fails the attempt fatally. Default
    /// is none.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a fallback endpoint (repeat for several, in order): attempts
    /// move to the next endpoint after `failover_after` failures in a row
    /// on one, from the last back to the primary (the builder's URL). The
    /// headers and protocols go to every endpoint. Default is none.
    ///
    /// A link that stays up less than the minimum uptime
    /// ([`ClientBuilder::min_uptime`], 5 s by default) counts as a failed
    /// attempt: with `failover_after(1)`, a server that accepts and drops
    /// at once, or closes within 5 s, moves the next attempt to the next
    /// endpoint. Lower `min_uptime` if links that short are healthy.
    pub fn fallback(mut self, url: impl Into<String>) -> Self {
        self.fallbacks.push(url.into());
        self
    }

    /// Consecutive failed attempts on one endpoint before attempts move to
    /// the next. A link that stays up less than the minimum uptime (5 s by
    /// default) counts as a failed attempt, so with `failover_after(1)` a
    /// link closed after 2 s moves the next attempt to the next endpoint.
    /// Default is 2.
    pub fn failover_after(mut self, n: u32) -> Self {
        self.config.feed.failover_after = n;
        self
    }

    /// After this long on a fallback, try the primary again with a
    /// make-before-break rotation; if the primary fails, the client stays
    /// on the fallback and tries again after the same time. Default is to
    /// stay on the fallback until it fails.
    pub fn return_to_primary(mut self, after: Duration) -> Self {
        self.config.feed.return_to_primary = Some(after);
        self
    }

    /// Replaces the fixed URL, headers and protocols with a function called
    /// before every attempt (with the attempt number), so a token or the URL
    /// can change between attempts. Its request's URL is used as is: with
    /// fallbacks, use [`ClientBuilder::request_provider_async`], which
    /// learns the endpoint. Default is the fixed request.
    pub fn request_provider(
        mut self,
        mut provider: impl FnMut(u32) -> Result<ConnectRequest, ConnectError> + Send + 'static,
    ) -> Self {
        self.provider = Some(Box::new(move |a: &Attempt| {
            futures::future::ready(provider(a.number)).boxed_local()
        }));
        self.provider_uses_urls = false;
        self
    }

    /// Replaces the fixed request with an asynchronous provider, called
    /// before every attempt with its [`Attempt`] (number, endpoint and the
    /// endpoint's URL): fetch a token over HTTP, sign a URL. The future runs
    /// on the client's arbiter; it and the connect that follows are bounded
    /// together by the connect timeout (a provider that takes too long
    /// fails the attempt with a retryable timeout). Its errors are
    /// classified like connect errors: [`ConnectError::new`] with a
    /// retryable kind to try again, a fatal kind (or an HTTP 4xx) to give
    /// up.
    ///
    /// ```no_run
    /// use actix_tether::{ClientBuilder, ConnectRequest};
    ///
    /// # async fn fetch_token() -> String { String::new() }
    /// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let _client = ClientBuilder::new("wss://feed.example/ws")
    ///     .request_provider_async(|attempt| {
    ///         let url = attempt.url.clone();
    ///         async move {
    ///             let token = fetch_token().await;
    ///             Ok(ConnectRequest::new(url).header("Authorization", format!("Bearer {token}")))
    ///         }
    ///     })
    ///     .start()?;
    /// # Ok(()) }
    /// ```
    pub fn request_provider_async<F, Fut>(mut self, mut provider: F) -> Self
    where
        F: FnMut(&Attempt) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<ConnectRequest, ConnectError>> + 'static,
    {
        self.provider = Some(Box::new(move |a: &Attempt| provider(a).boxed_local()));
        self.provider_uses_urls = true;
        self
    }

    /// Rotates every link before it is this old (exchanges that end
    /// connections after 24 hours): a second link is opened and set up, both
    /// directions move to it, and the old one closes with 1000, losing
    /// nothing. Each link's rotation is brought forward by up to the age
    /// jitter. Default is never.
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.config.feed.max_connection_age = Some(age);
        self
    }

    /// The fraction of the maximum age by which a rotation is brought
    /// forward at random (0 to 1; 0 rotates at exactly the age). Default is
    /// 0.1.
    pub fn age_jitter(mut self, fraction: f64) -> Self {
        self.config.feed.age_jitter = fraction;
        self
    }

    /// Once a rotation's new link is ready, how long the old link's
    /// messages are still delivered while the new one has sent nothing (at
    /// most a quarter of the maximum age). Default is 1 s.
    pub fn rotation_overlap(mut self, d: Duration) -> Self {
        self.config.feed.rotation_overlap = d;
        self
    }

    /// A key per message (a sequence number, an update id) by which the
    /// messages both links of a rotation deliver are dropped the second
    /// time, over the dedup window. Default is none: the overlap may
    /// deliver a few messages twice.
    pub fn dedup_key(mut self, key: impl FnMut(&Message) -> Option<u64> + Send + 'static) -> Self {
        self.hooks.dedup = Some(Box::new(key));
        self
    }

    /// Redacts URLs further before events, spans and `tether --json` show
    /// them: `redact` gets the URL as the default leaves it (no user info
    /// or fragment, every query value `***`, keys kept) and returns what to
    /// show, for instance with a path token masked. Default is the default
    /// redaction alone.
    pub fn redact_url(mut self, redact: impl Fn(&str) -> String + Send + 'static) -> Self {
        self.hooks.redact = Some(Box::new(redact));
        self
    }

    /// How many recent keys the dedup window holds. Default is 1024.
    pub fn dedup_window(mut self, n: usize) -> Self {
        self.config.feed.dedup_window = n;
        self
    }

    /// Holds the backlog of every link, after its setup lane, until an
    /// inbound message satisfies `predicate` (the server's login
    /// acknowledgement), for at most the ready timeout; a link whose gate
    /// does not open in time is closed and counts as a failed attempt.
    /// Inbound messages are delivered meanwhile, the one that opens the
    /// gate included: subscribers and streams receive it like any other.
    /// Default is none.
    pub fn ready_gate(mut self, predicate: impl FnMut(&Message) -> bool + Send + 'static) -> Self {
        self.hooks.gate = Some(Box::new(predicate));
        self
    }

    /// How long a link waits for its ready gate. Default is 10 s.
    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.config.feed.ready_timeout = d;
        self
    }

    /// Consults a shared [`ReconnectBudget`] before every attempt, so that
    /// many clients (of one process, on any arbiters) do not reconnect at
    /// once. Default is none.
    pub fn reconnect_budget(mut self, budget: ReconnectBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Server close codes that end the client (`GaveUp`) instead of being
    /// retried. Default is none.
    pub fn fatal_close_codes(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.config.fatal_close_codes = codes.into_iter().collect();
        self
    }

    /// Delay before the first retry. Default is 500 ms.
    pub fn backoff_initial(mut self, d: Duration) -> Self {
        self.backoff_initial = d;
        self
    }

    /// Largest delay between retries. Default is 30 s.
    pub fn backoff_max(mut self, d: Duration) -> Self {
        self.backoff_max = d;
        self
    }

    /// Growth factor of the delay. Default is 2.
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff_factor = factor;
        self
    }

    /// How delays are randomised. Default is [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The random source of the jitter, for deterministic tests. Default is
    /// a generator seeded by the operating system.
    pub fn random(mut self, random: impl RandomSource + Send) -> Self {
        self.hooks.random = Some(Box::new(random));
        self
    }

    /// Give up after this many consecutive failed retries. Default is to
    /// retry forever.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.config.max_retries = Some(n);
        self
    }

    /// Retries forever again, undoing [`ClientBuilder::max_retries`].
    pub fn no_max_retries(mut self) -> Self {
        self.config.max_retries = None;
        self
    }

    /// How long a link must stay up before the backoff starts over. Default
    /// is 5 s.
    pub fn min_uptime(mut self, d: Duration) -> Self {
        self.config.min_uptime = d;
        self
    }

    /// Retry 4xx refusals other than 408 and 429 instead of giving up.
    /// Default is false.
    pub fn retry_client_errors(mut self, yes: bool) -> Self {
        self.config.retry_client_errors = yes;
        self
    }

    /// The longest server `Retry-After` the client honours; a longer one
    /// (`Retry-After: 86400`) waits this long instead. Default is 5 minutes.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.config.max_retry_after = d;
        self
    }

    /// Bound on connecting plus the upgrade handshake. Default is 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// Bound on the close handshake. Default is 5 s.
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.config.close_handshake_timeout = d;
        self
    }

    /// Time between pings. Default is 20 s.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat.ping_interval = Some(d);
        self
    }

    /// Sends no pings. Default is to ping.
    pub fn no_ping(mut self) -> Self {
        self.config.heartbeat.ping_interval = None;
        self
    }

    /// How long a ping may go unanswered before the link is declared dead.
    /// Default is 10 s.
    pub fn pong_timeout(mut self, d: Duration) -> Self {
        self.config.heartbeat.pong_timeout = d;
        self
    }

    /// Whether any inbound frame proves the peer alive, not only the pong.
    /// Default is false.
    pub fn any_frame_is_alive(mut self, yes: bool) -> Self {
        self.config.heartbeat.any_frame_is_alive = yes;
        self
    }

    /// Reconnect when nothing at all arrives for this long. Default is off.
    pub fn silence_timeout(mut self, d: Duration) -> Self {
        self.config.heartbeat.silence_timeout = Some(d);
        self
    }

    /// A write that makes no progress for this long (a peer that stopped
    /// reading) ends the link; its batch goes back to the head of the
    /// queue for the next link. Default is 30 s.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.config.write_timeout = Some(d);
        self
    }

    /// Lets a write wait for the peer forever. Default is a 30 s write
    /// timeout.
    pub fn no_write_timeout(mut self) -> Self {
        self.config.write_timeout = None;
        self
    }

    /// Inbound bytes read ahead of a subscriber that is behind (or of a
    /// stream nobody polls, or held by a rotation's new link before it takes
    /// over); while below it, reading (and Ping, Pong, Close handling) goes
    /// on; at it, reading pauses until the subscriber catches up (see
    /// [`Inbound`]). Each message counts its payload and 128 bytes more, so
    /// the bound holds whatever the message sizes: at 1 MiB, at most 8,192
    /// empty messages wait (plus the read that crossed the bound, at most
    /// one read's worth of frames). Default is 1 MiB.
    pub fn read_ahead(mut self, bytes: usize) -> Self {
        self.config.read_ahead = bytes;
        self
    }

    /// How long a subscriber may stay behind before it is reported with
    /// [`Event::SubscriberStalled`] and the stall policy applies. Default is
    /// 30 s.
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.config.stall_timeout = d;
        self
    }

    /// What a stalled subscriber does to the link. Default is
    /// [`StallPolicy::Wait`].
    pub fn on_stall(mut self, policy: StallPolicy) -> Self {
        self.config.on_stall = policy;
        self
    }

    /// Keeps every message written until a Pong confirms it, and writes the
    /// unconfirmed tail of a link that ends again on the next link, behind
    /// its setup lane and ahead of the backlog: at-least-once delivery to
    /// the server's WebSocket layer, with duplicates only in that tail.
    /// Turns on delivery barriers. Default is off (a message flushed into a
    /// link that dies may be lost; [`Stats::possibly_lost`] counts them).
    ///
    /// [`Stats::possibly_lost`]: crate::Stats::possibly_lost
    pub fn replay_unconfirmed(mut self, yes: bool) -> Self {
        self.config.delivery.replay = yes;
        self
    }

    /// Sends barrier Pings of its own after write batches while messages
    /// are unconfirmed (at once when the tail reaches half the window,
    /// otherwise at most one per barrier interval), so that confirmations
    /// follow writes within about a round trip. Default is off: only
    /// heartbeat pings confirm (replay turns it on).
    pub fn delivery_barriers(mut self, yes: bool) -> Self {
        self.config.delivery.barriers = yes;
        self
    }

    /// The least time between two barrier Pings while the unconfirmed tail
    /// is below half the window. Default is 100 ms.
    pub fn barrier_interval(mut self, d: Duration) -> Self {
        self.config.delivery.barrier_interval = d;
        self
    }

    /// With replay, the most messages and payload bytes written and not yet
    /// confirmed; at the bound, writing waits for a Pong. Default is 4096
    /// messages, 8 MiB.
    pub fn unconfirmed_window(mut self, messages: usize, bytes: usize) -> Self {
        self.config.delivery.window_messages = messages;
        self.config.delivery.window_bytes = bytes;
        self
    }

    /// Most messages held in the outbound queue. Default is 1024.
    pub fn queue_size(mut self, n: usize) -> Self {
        self.queue_size = n;
        self
    }

    /// Most payload bytes held in the outbound queue. Default is 8 MiB.
    pub fn queue_bytes(mut self, n: usize) -> Self {
        self.queue_bytes = n;
        self
    }

    /// What a full queue does with a new message. Default is
    /// [`OverflowPolicy::Reject`].
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// Largest inbound message after reassembly; larger ones close the link
    /// with 1009. Default is 16 MiB.
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.config.max_message_size = n;
        self
    }

    /// Largest single inbound frame, refused (1009) on its header before any
    /// of it is buffered. Default is the maximum message size.
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = Some(n);
        self
    }

    /// permessage-deflate (RFC 7692): [`Compression::offer`] by default,
    /// [`Compression::off`], or [`Compression::require`], each with its
    /// parameters. Inflated messages are bounded by the maximum message
    /// size as they inflate (a compression bomb closes the link with 1009).
    /// What the server agreed to is in [`Event::Connected`]; bytes on the
    /// wire next to payload bytes are in [`Stats`].
    ///
    /// [`Event::Connected`]: crate::Event::Connected
    /// [`Stats`]: crate::Stats
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Messages to write first on every connect and reconnect, before the
    /// queued backlog: authentication, resubscription. Default is none.
    pub fn on_connect(
        mut self,
        hook: impl FnMut(&ConnectInfo) -> Vec<Message> + Send + 'static,
    ) -> Self {
        self.hooks.on_connect = Some(Box::new(hook));
        self
    }

    /// Hands the new client's handle to `hook` once, on the client's
    /// arbiter, before the first attempt: the race-free way for an actor
    /// that holds the handle (to reply, say) to receive every message from
    /// the first link on. What the hook subscribes (`client.subscribe`,
    /// `client.stream()`) is in place before anything is read. Default is
    /// none.
    ///
    /// An actor subscribed here that keeps a strong [`Client`] keeps the
    /// client alive until [`Client::close`]; one that should not holds a
    /// [`WeakClient`](crate::WeakClient).
    ///
    /// ```no_run
    /// use actix::prelude::*;
    /// use actix_tether::{Client, ClientBuilder, Message};
    ///
    /// /// Answers every message with its length.
    /// struct Echo(Client);
    ///
    /// impl Actor for Echo {
    ///     type Context = Context<Self>;
    /// }
    ///
    /// impl StreamHandler<Message> for Echo {
    ///     fn handle(&mut self, msg: Message, _: &mut Context<Self>) {
    ///         let _ = self.0.try_send(msg.len().to_string());
    ///     }
    /// }
    ///
    /// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = ClientBuilder::new("ws://127.0.0.1:9001/feed")
    ///     .on_start(|client| {
    ///         let messages = client.stream();
    ///         let client = client.clone();
    ///         Echo::create(move |ctx| {
    ///             ctx.add_stream(messages);
    ///             Echo(client)
    ///         });
    ///     })
    ///     .start()?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn on_start(mut self, hook: impl FnOnce(&Client) + Send + 'static) -> Self {
        self.hooks.on_start = Some(Box::new(hook));
        self
    }

    /// Subscribes an actor to inbound messages from the first link on. A
    /// subscriber that falls behind its mailbox capacity pauses reading
    /// until it catches up (see [`Inbound`]). Each message is one mailbox
    /// message; an actor that subscribes from its own context
    /// ([`Client::subscribe_context`], from [`ClientBuilder::on_start`] for
    /// the first link's messages) is woken once per socket read instead.
    pub fn subscribe(mut self, r: Recipient<Inbound>) -> Self {
        self.hooks.inbound.push(r);
        self
    }

    /// Subscribes an actor to inbound messages one socket read at a time
    /// ([`InboundBatch`]): one actor message per read instead of one per
    /// message, for feeds of many small messages.
    pub fn subscribe_batches(mut self, r: Recipient<InboundBatch>) -> Self {
        self.hooks.batches.push(r);
        self
    }

    /// Subscribes an actor to events from the first attempt on.
    pub fn subscribe_events(mut self, r: Recipient<Event>) -> Self {
        self.hooks.events.push(r);
        self
    }

    /// Opens links through `transport` instead of awc (the test kit's mock,
    /// for one). Default is awc.
    pub fn transport(mut self, transport: impl Transport + Send) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// Checks every setting and starts the client's actors on the current
    /// arbiter. Must be called inside a running actix `System`.
    ///
    /// The actors begin when this thread next yields to its runtime, so
    /// subscriptions and streams made with the handle right after `start`
    /// returns, before any `.await`, receive everything from the first link
    /// on (as do those of the builder and of [`ClientBuilder::on_start`]).
    ///
    /// # Errors
    ///
    /// The first invalid setting, as a [`ConfigError`] naming it (a URL, a
    /// header, a proxy, a TLS file, a value out of range), or
    /// [`ConfigError::NoSystem`] outside a running actix `System`.
    pub fn start(self) -> Result<Client, ConfigError> {
        let (config, parts) = self.prepare()?;
        parts.into_engine(config).start()
    }

    /// Checks every setting and starts the client's actors on `arbiter`
    /// (another thread's event loop; see [`Pool`](crate::Pool) to spread
    /// clients over one arbiter per core). The handle is returned at once
    /// and works from any thread.
    ///
    /// The client's actors may begin before this returns: subscribe with
    /// the builder or in [`ClientBuilder::on_start`] to receive everything
    /// from the first link on.
    ///
    /// # Errors
    ///
    /// Those of [`ClientBuilder::start`], and
    /// [`ConfigError::ArbiterStopped`] if the arbiter is not running.
    ///
    /// ```no_run
    /// use actix::Arbiter;
    /// use actix_tether::ClientBuilder;
    ///
    /// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let arbiter = Arbiter::new();
    /// let client = ClientBuilder::new("ws://127.0.0.1:9001/feed").start_on(&arbiter.handle())?;
    /// client.connected().await?;
    /// # Ok(()) }
    /// ```
    pub fn start_on(self, arbiter: &ArbiterHandle) -> Result<Client, ConfigError> {
        let (config, parts) = self.prepare()?;
        Engine::start_on(arbiter, config, move |config| parts.into_engine(config))
    }

    /// Checks every setting: the configuration, and the parts that make an
    /// engine on the client's arbiter.
    fn prepare(self) -> Result<(Config, Parts), ConfigError> {
        let mut config = self.config;
        config.backoff = BackoffPolicy::new(
            self.backoff_initial,
            self.backoff_max,
            self.backoff_factor,
            self.jitter,
        )?;
        config.queue = QueueLimits::new(self.queue_size, self.queue_bytes, self.overflow)?;
        config.validate()?;
        let max_frame_size = self.max_frame_size.unwrap_or(config.max_message_size);
        if max_frame_size == 0 {
            return Err(ConfigError::Invalid {
                setting: "max_frame_size",
                requirement: "must be above zero",
            });
        }
        let urls: Vec<String> = std::iter::once(self.url).chain(self.fallbacks).collect();
        let base = ConnectRequest {
            url: String::new(),
            headers: self.headers,
            protocols: self.protocols,
        };
        // Unless a synchronous provider makes its own URLs, every endpoint
        // is checked now, with the headers and protocols it will carry.
        if self.provider.is_none() || self.provider_uses_urls {
            for url in &urls {
                validate::request(&ConnectRequest {
                    url: url.clone(),
                    ..base.clone()
                })?;
            }
        }
        let provider = match self.provider {
            Some(p) => p,
            None => Box::new(move |a: &Attempt| {
                let request = ConnectRequest {
                    url: a.url.clone(),
                    ..base.clone()
                };
                futures::future::ready(Ok(request)).boxed_local()
            }),
        };
        let transport = match self.transport {
            Some(t) => t,
            None => Box::new(AwcTransport {
                max_frame_size,
                max_message_size: config.max_message_size,
                compression: self.compression,
                #[cfg(feature = "rustls")]
                tls: match self.tls {
                    Some(_) if !self.tls_options.is_default() => {
                        return Err(ConfigError::Invalid {
                            setting: "tls_config",
                            requirement: "cannot be combined with add_root_certificate, identity \
                                          or danger_accept_invalid_certs",
                        })
                    }
                    Some(tls) => tls,
                    None => self.tls_options.config()?,
                },
                routes: std::sync::Arc::new(self.proxies.resolve()?),
                redirects: self.redirects,
            }),
        };
        let parts = Parts {
            transport,
            provider,
            urls,
            budget: self.budget,
            hooks: self.hooks,
        };
        Ok((config, parts))
    }
}

/// The builder's hooks and subscribers.
#[derive(Default)]
struct Hooks {
    on_connect: Option<SendOnConnect>,
    on_start: Option<SendOnStart>,
    random: Option<Box<dyn RandomSource + Send>>,
    gate: Option<SendPredicate>,
    dedup: Option<SendDedupKey>,
    redact: Option<SendRedactUrl>,
    inbound: Vec<Recipient<Inbound>>,
    batches: Vec<Recipient<InboundBatch>>,
    events: Vec<Recipient<Event>>,
}

/// What a checked builder hands to the client's arbiter.
struct Parts {
    transport: Box<dyn Transport + Send>,
    provider: SendProvider,
    urls: Vec<String>,
    budget: Option<ReconnectBudget>,
    hooks: Hooks,
}

impl Parts {
    fn into_engine(self, config: Config) -> Engine {
        let provider: RequestProvider = self.provider;
        let mut engine = Engine::new(config, self.transport, provider).endpoints(self.urls);
        if let Some(budget) = self.budget {
            engine = engine.reconnect_budget(budget);
        }
        if let Some(gate) = self.hooks.gate {
            let gate: ReadyPredicate = gate;
            engine = engine.ready_gate(gate);
        }
        if let Some(key) = self.hooks.dedup {
            let key: DedupKey = key;
            engine = engine.dedup_key(key);
        }
        if let Some(redact) = self.hooks.redact {
            let redact: RedactUrl = redact;
            engine = engine.redact_url(redact);
        }
        if let Some(hook) = self.hooks.on_connect {
            let hook: OnConnect = hook;
            engine = engine.on_connect(hook);
        }
        if let Some(hook) = self.hooks.on_start {
            engine = engine.on_start(hook);
        }
        if let Some(r) = self.hooks.random {
            engine = engine.random(r);
        }
        for r in self.hooks.inbound {
            engine = engine.subscribe(r);
        }
        for r in self.hooks.batches {
            engine = engine.subscribe_batches(r);
        }
        for r in self.hooks.events {
            engine = engine.subscribe_events(r);
        }
        engine
    }
}
