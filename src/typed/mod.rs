//! Typed messaging (feature `typed`): send serde values, subscribe actors to
//! decoded types or to routing keys, and make requests matched to their
//! responses by a correlation id.
//!
//! ```
//! use std::time::Duration;
//! use actix_tether::testkit::{mock, run_paused};
//! use actix_tether::typed::TypedClient;
//! use actix_tether::ClientBuilder;
//! use serde_json::{json, Value};
//!
//! run_paused(async {
//!     let (transport, mut server) = mock();
//!     let client = ClientBuilder::new("ws://api.test/").transport(transport).start().unwrap();
//!     let api = TypedClient::builder()
//!         .correlate("/id", "/id")
//!         .start(&client);
//!     let call = api.request::<_, Value>(&json!({"method": "time"}), Duration::from_secs(1));
//!     let answer = async {
//!         let mut conn = server.accept().await.unwrap();
//!         let request: Value = serde_json::from_str(&conn.next_text().await.unwrap()).unwrap();
//!         conn.send_text(&json!({"id": request["id"], "result": 42}).to_string());
//!     };
//!     let (response, ()) = futures::join!(call, answer);
//!     assert_eq!(response.unwrap()["result"], 42);
//! });
//! ```
//!
//! What requests guarantee: a response is matched to its request by the id
//! the client wrote into it; a request that gets no response within its
//! timeout fails with [`TypedError::Timeout`] and is forgotten (a late
//! response then goes to the subscribers like any message). When the link
//! goes down, each pending request's delivery barrier decides (see
//! [`Receipt`](actix_tether_actors::Receipt)): one a Pong confirmed reached
//! the server and fails with [`TypedError::ResponseLost`] (the server may
//! have acted on it); one written and not confirmed fails with
//! [`TypedError::Disconnected`] (it may not have arrived); one the client
//! still holds (still queued, or in the tail that replay writes again)
//! keeps waiting, within its timeout, for a response on the next link.
//! Requests sent with `retry_on_reconnect` are written again after the
//! reconnect instead of failing: the server may then see them twice.
//!
//! What acknowledged delivery guarantees: a message sent with
//! [`TypedClient::send_reliable`] is delivered at least once: it is written
//! again after every reconnect, oldest first and ahead of the queued
//! backlog, until the server acknowledges its id or the client closes (then
//! its outcome is `GaveUp` with the message). A rotation is not a
//! reconnect: its new link re-sends nothing (the old link keeps writing
//! until the switch, which waits until the server has read all it wrote).
//! It may arrive more than once, so the server must deduplicate by id.
//!
//! Three levels of delivery, from weakest: a plain send is delivered at
//! most once (a message flushed into a link that dies may be lost); with
//! `replay_unconfirmed` on the client, at least once to the server's
//! WebSocket layer (a Pong confirmed it, or it is written again; any RFC
//! 6455 server); a reliable send, at least once to the server's application
//! (it acknowledged the id). Only the last survives a server that crashes
//! after reading a message and before handling it.

mod codec;
mod error;
mod reliable;
mod router;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_tether_actors::{Client, Message};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use codec::{Codec, CodecError, JsonCodec};
pub use error::TypedError;
pub use reliable::Delivery;
pub use router::{Correlation, DecodeFailed, Decoded, KeyFn, RouteKey, Routed, Topics};

use futures::channel::oneshot;
use router::{
    Configure, ForgetRequest, PendingCount, Reliable, Request, Router, SendReliable, UnackedCount,
};

/// Configures the typed layer of a client.
#[must_use]
#[derive(Debug, Default)]
pub struct TypedBuilder {
    codec: Option<Arc<dyn Codec>>,
    key: Option<RouteKey>,
    correlation: Option<Correlation>,
    acknowledge: Option<(String, String)>,
    max_unacked: Option<usize>,
    max_pending: Option<usize>,
    topics: Topics,
}

/// Tells the router that a request's caller stopped waiting.
struct Forget {
    router: Addr<Router>,
    id: Option<String>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.router.do_send(ForgetRequest(id));
        }
    }
}

impl std::fmt::Debug for dyn Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

impl TypedBuilder {
    /// The codec. Default is [`JsonCodec`].
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Some(Arc::new(codec));
        self
    }

    /// Routes messages by the value at a JSON pointer (`/channel`). Default
    /// is no routing: every message is unrouted.
    pub fn route_by(mut self, pointer: impl Into<String>) -> Self {
        self.key = Some(RouteKey::Pointer(pointer.into()));
        self
    }

    /// Routes messages by a key computed from the decoded value.
    pub fn route_with(mut self, key: impl Fn(&Value) -> Option<String> + Send + 'static) -> Self {
        self.key = Some(RouteKey::Fn(Box::new(key)));
        self
    }

    /// Matches responses to requests: the client writes a fresh id at the
    /// `request` pointer and looks for it at the `response` pointer. Default
    /// is none (requests fail with an encode error).
    ///
    /// On the wire, ids are JSON strings of decimal numbers, counting from
    /// `"1"` for each typed client (`{"id":"1",...}`, then `"2"`, ...); a
    /// response may carry its id as that string or as the number (`1`).
    pub fn correlate(mut self, request: impl Into<String>, response: impl Into<String>) -> Self {
        self.correlation = Some(Correlation {
            request: request.into(),
            response: response.into(),
        });
        self
    }

    /// Enables acknowledged delivery: [`TypedClient::send_reliable`] writes
    /// a fresh id at the `id` pointer and waits for an inbound message that
    /// carries it at the `ack` pointer. Default is off.
    ///
    /// On the wire, ids are JSON strings `"r1"`, `"r2"`, ... counting from
    /// 1 for each typed client (the `r` keeps them apart from request ids);
    /// the server acknowledges by sending a message with the same string at
    /// the `ack` pointer, and must deduplicate by it, since a message is
    /// re-sent with its id on every link until acknowledged.
    pub fn acknowledge(mut self, id: impl Into<String>, ack: impl Into<String>) -> Self {
        self.acknowledge = Some((id.into(), ack.into()));
        self
    }

    /// How many reliable messages may await their ack at once; beyond it
    /// `send_reliable` fails with [`TypedError::WindowFull`]. Default is 1024.
    ///
    /// Each reliable message also takes a place in the client's queue
    /// (1,024 messages by default) until it is written: with the queue
    /// full, `send_reliable` fails with [`TypedError::Send`] even below this
    /// bound. Re-sends after a reconnect go in the setup lane and take no
    /// place in the queue. Keep `max_unacked` at most the queue's size to
    /// have `WindowFull` say when to slow down.
    pub fn max_unacked(mut self, n: usize) -> Self {
        self.max_unacked = Some(n);
        self
    }

    /// How many requests may await their response at once; beyond it
    /// `request` fails with [`TypedError::TooManyRequests`]. A request whose
    /// caller drops its future leaves the table at once. Default is 16,384.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = Some(n);
        self
    }

    /// Shares the set of subscribed routing keys, so that an on-connect hook
    /// built before the client can resubscribe to all of them. Default is a
    /// fresh set.
    pub fn topics(mut self, topics: Topics) -> Self {
        self.topics = topics;
        self
    }

    /// Starts the router on the current arbiter and subscribes it to
    /// `client`. It may start at any time: acknowledged delivery re-sends on
    /// every link after the client's first, whenever the router started
    /// (inbound messages that arrived before it started are not seen).
    pub fn start(self, client: &Client) -> TypedClient {
        let codec = self.codec.unwrap_or_else(|| Arc::new(JsonCodec));
        let reliable = self.acknowledge.map(|(request, response)| {
            let window = Arc::default();
            client.add_setup_source(reliable::resender(Arc::clone(&window)));
            Reliable {
                request,
                response,
                max_unacked: self.max_unacked.unwrap_or(1024),
                window,
            }
        });
        let router = Router::new(
            codec.clone(),
            client.downgrade(),
            self.key,
            self.topics,
            self.correlation,
            reliable,
            self.max_pending.unwrap_or(16_384),
        );
        let inbound = client.clone();
        // Subscribed from its context: woken once per read, not once per
        // message.
        let router = Router::create(move |ctx| {
            inbound.subscribe_context(ctx);
            router
        });
        client.subscribe_events(router.clone().recipient());
        TypedClient {
            client: client.clone(),
            router,
            codec,
        }
    }
}

/// Options of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// How long to wait for the response.
    pub timeout: Duration,
    /// Keep the request across a disconnect and write it again after the
    /// reconnect, instead of failing it with `Disconnected`.
    pub retry_on_reconnect: bool,
}

impl RequestOptions {
    /// A request that waits up to `timeout` and fails on disconnect.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            retry_on_reconnect: false,
        }
    }

    /// Also survive disconnects (the server may see the request twice).
    pub fn retry_on_reconnect(mut self) -> Self {
        self.retry_on_reconnect = true;
        self
    }
}

/// A client that speaks values: cloneable and `Send`.
#[derive(Clone)]
pub struct TypedClient {
    client: Client,
    router: Addr<Router>,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for TypedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedClient").finish_non_exhaustive()
    }
}

impl TypedClient {
    /// A builder with the JSON codec, no routing, no correlation.
    pub fn builder() -> TypedBuilder {
        TypedBuilder::default()
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Encodes `value` and queues it like [`Client::send`].
    ///
    /// # Errors
    ///
    /// [`TypedError::Encode`] for a value that does not encode,
    /// [`TypedError::Send`] (the message inside) when the client refuses it.
    pub async fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), TypedError> {
        let message = self.encode(value)?;
        self.client.send(message).await.map_err(TypedError::Send)
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Message, TypedError> {
        let value =
            serde_json::to_value(value).map_err(|e| TypedError::Encode(CodecError::new(e)))?;
        self.codec.encode(&value).map_err(TypedError::Encode)
    }

    /// Subscribes an actor to every inbound message that decodes as `T`;
    /// each message is decoded once per type, whatever the number of
    /// subscribers.
    pub fn subscribe<T>(&self, r: Recipient<Decoded<T>>)
    where
        T: DeserializeOwned + Clone + Send + 'static,
    {
        self.router
            .do_send(Configure(Box::new(move |router| router.add_typed(r))));
    }

    /// Subscribes an actor to the messages whose routing key is `key`, and
    /// adds `key` to the shared [`Topics`].
    pub fn subscribe_topic(&self, key: impl Into<String>, r: Recipient<Routed>) {
        let key = key.into();
        self.router
            .do_send(Configure(Box::new(move |router| router.add_topic(key, r))));
    }

    /// Subscribes an actor to messages with no key, or a key nobody
    /// subscribed to.
    pub fn subscribe_unrouted(&self, r: Recipient<Routed>) {
        self.router
            .do_send(Configure(Box::new(move |router| router.add_unrouted(r))));
    }

    /// Subscribes an actor to decode failures.
    pub fn subscribe_failures(&self, r: Recipient<DecodeFailed>) {
        self.router
            .do_send(Configure(Box::new(move |router| router.add_failures(r))));
    }

    /// Sends `request` and waits up to `timeout` for its response.
    ///
    /// The request is encoded at once; the returned future owns everything
    /// it needs.
    pub fn request<Req, Resp>(
        &self,
        request: &Req,
        timeout: Duration,
    ) -> impl Future<Output = Result<Resp, TypedError>> + 'static
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.request_with(request, RequestOptions::new(timeout))
    }

    /// Sends `request` with `options` and waits for its response.
    ///
    /// # Errors
    ///
    /// [`TypedError::Timeout`], [`TypedError::Disconnected`] or
    /// [`TypedError::ResponseLost`] when no response came (see each),
    /// [`TypedError::Decode`] for a response of another type,
    /// [`TypedError::Encode`], [`TypedError::Send`],
    /// [`TypedError::TooManyRequests`] or [`TypedError::Closed`] when the
    /// request could not go out.
    pub fn request_with<Req, Resp>(
        &self,
        request: &Req,
        options: RequestOptions,
    ) -> impl Future<Output = Result<Resp, TypedError>> + 'static
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let value =
            serde_json::to_value(request).map_err(|e| TypedError::Encode(CodecError::new(e)));
        let router = self.router.clone();
        async move {
            let (reply, response) = oneshot::channel();
            let request = Request {
                value: value?,
                timeout: options.timeout,
                retry: options.retry_on_reconnect,
                reply,
            };
            let id = router
                .send(request)
                .await
                .map_err(|_| TypedError::Closed)??;
            // Dropping this future before the response forgets the request
            // at once instead of at its timeout.
            let mut forget = Forget {
                router,
                id: Some(id),
            };
            let response = response.await.unwrap_or(Err(TypedError::Closed));
            forget.id = None;
            Resp::deserialize(&response?).map_err(|e| TypedError::Decode(CodecError::new(e)))
        }
    }

    /// Sends `value` with acknowledged delivery (see
    /// [`TypedBuilder::acknowledge`]) and resolves with its outcome: acked
    /// (with how many times it was re-sent after reconnects) or given up when
    /// the client closed first. At least once: the server must deduplicate
    /// by id.
    ///
    /// The value is encoded at once, but handed to the client (given its id
    /// and queued) only when the returned future is first polled: a future
    /// never polled sends nothing, and messages go out in the order their
    /// futures were first polled.
    ///
    /// # Errors
    ///
    /// [`TypedError::Encode`], [`TypedError::WindowFull`], and
    /// [`TypedError::Closed`] when the client closed before the ack.
    pub fn send_reliable<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<Delivery, TypedError>> + 'static {
        let value = serde_json::to_value(value).map_err(|e| TypedError::Encode(CodecError::new(e)));
        let router = self.router.clone();
        async move {
            router
                .send(SendReliable(value?))
                .await
                .map_err(|_| TypedError::Closed)?
        }
    }

    /// How many reliable messages await their ack.
    ///
    /// # Errors
    ///
    /// [`TypedError::Closed`] once the client has closed.
    pub async fn unacked(&self) -> Result<usize, TypedError> {
        self.router
            .send(UnackedCount)
            .await
            .map_err(|_| TypedError::Closed)
    }

    /// How many requests await a response (for monitoring and leak checks).
    ///
    /// # Errors
    ///
    /// [`TypedError::Closed`] once the client has closed.
    pub async fn pending_requests(&self) -> Result<usize, TypedError> {
        self.router
            .send(PendingCount)
            .await
            .map_err(|_| TypedError::Closed)
    }
}
