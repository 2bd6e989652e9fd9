//! actix-tether: a WebSocket client for actix that stays connected.
//!
//! A supervisor actor reconnects with jittered exponential backoff, a
//! heartbeat actor detects dead peers, a queue actor holds what you send while
//! the link is down and writes it, in order, after the reconnect (behind your
//! on-connect messages), and every subscribed actor receives inbound messages
//! and state changes as typed actix messages.
//!
//! ```no_run
//! use actix::prelude::*;
//! use actix_tether::{ClientBuilder, Event, Inbound};
//!
//! struct Printer;
//! impl Actor for Printer {
//!     type Context = Context<Self>;
//! }
//! impl Handler<Inbound> for Printer {
//!     type Result = ();
//!     fn handle(&mut self, Inbound(msg): Inbound, _: &mut Context<Self>) {
//!         println!("received {msg:?}");
//!     }
//! }
//! impl Handler<Event> for Printer {
//!     type Result = ();
//!     fn handle(&mut self, event: Event, _: &mut Context<Self>) {
//!         println!("event {event:?}");
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = ClientBuilder::new("ws://127.0.0.1:9001/feed")
//!         .on_connect(|_| vec![r#"{"op":"subscribe","channel":"ticks"}"#.into()])
//!         // Before the first attempt: the printer misses nothing.
//!         .on_start(|client| {
//!             let printer = Printer::create(|ctx| {
//!                 // Its `Handler<Inbound>` once per message, in order; the
//!                 // actor is woken once per socket read.
//!                 client.subscribe_context(ctx);
//!                 Printer
//!             });
//!             client.subscribe_events(printer.recipient());
//!         })
//!         .start()?;
//!     client.send("hello").await?;
//!     let unsent = client.close(std::time::Duration::from_secs(5)).await?;
//!     assert!(unsent.is_empty());
//!     Ok(())
//! }
//! ```
//!
//! # Streams, for async code and for actors
//!
//! [`Client::stream`] is the inbound messages as a `futures::Stream`
//! (bounded like a subscriber: reading pauses while it is behind), and
//! [`Client::events`] the events; [`Client::connected`] waits for a link
//! and [`Client::state`] says where the client is. In an actor,
//! [`Client::subscribe_context`] (above) is the fast way in;
//! `ctx.add_stream(client.stream())` gives a `StreamHandler` one call per
//! message (actix takes 16 of them per turn); and
//! [`ClientBuilder::on_start`] hands the handle to an actor that replies,
//! before the first attempt, so it misses nothing.
//!
//! ```no_run
//! use std::time::Duration;
//! use actix::prelude::*;
//! use actix_tether::{ClientBuilder, Message, WeakClient};
//! use futures::StreamExt;
//!
//! struct Replier(WeakClient);
//! impl Actor for Replier {
//!     type Context = Context<Self>;
//! }
//! impl StreamHandler<Message> for Replier {
//!     fn handle(&mut self, msg: Message, _: &mut Context<Self>) {
//!         if let Some(client) = self.0.upgrade() {
//!             let _ = client.try_send(format!("got {} bytes", msg.len()));
//!         }
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = ClientBuilder::new("ws://127.0.0.1:9001/feed")
//!         .on_start(|client| {
//!             let messages = client.stream();
//!             let weak = client.downgrade();
//!             Replier::create(move |ctx| {
//!                 ctx.add_stream(messages);
//!                 Replier(weak)
//!             });
//!         })
//!         .start()?;
//!     // Made right after start: every message from the first link on.
//!     let mut messages = client.stream();
//!     client.connected().await?;
//!     client.send(r#"{"op":"ping"}"#).await?;
//!     if let Some(msg) = messages.next().await {
//!         println!("received {:?}", msg.as_text());
//!     }
//!     client.close(Duration::from_secs(5)).await?;
//!     Ok(())
//! }
//! ```
//!
//! # What reached the server
//!
//! Every Ping the client writes is a delivery barrier: the server's Pong
//! confirms what was written before it. [`Client::confirmed`] waits for
//! that, [`Stats`] counts it, and with [`ClientBuilder::replay_unconfirmed`]
//! what a dying link wrote without confirmation is written again on the next
//! link (at least once; see the README's "What delivered means"). Here
//! against the test kit's mock server, which answers Pings:
//!
//! ```
//! use actix_tether::testkit::{mock, run_paused};
//! use actix_tether::ClientBuilder;
//!
//! run_paused(async {
//!     let (transport, mut server) = mock();
//!     let client = ClientBuilder::new("ws://orders.test/")
//!         .transport(transport)
//!         .replay_unconfirmed(true)
//!         .start()
//!         .unwrap();
//!     let mut conn = server.accept().await.unwrap();
//!     client.send("order 1").await.unwrap();
//!     client.confirmed().await.unwrap();
//!     assert_eq!(conn.next_text().await.as_deref(), Some("order 1"));
//!     let stats = client.stats().await.unwrap();
//!     assert_eq!((stats.confirmed, stats.unconfirmed), (1, 0));
//! });
//! ```
//!
//! # Proxies and TLS
//!
//! Connections go through HTTP (`CONNECT`), HTTPS and SOCKS5 proxies
//! ([`ClientBuilder::proxy`] with a [`Proxy`], [`ClientBuilder::no_proxy`]),
//! or those the environment names (`HTTP_PROXY`, `HTTPS_PROXY`,
//! `ALL_PROXY`, `NO_PROXY`; read by default, see
//! [`ClientBuilder::proxy_from_env`]). TLS takes extra roots
//! ([`ClientBuilder::add_root_certificate`]), a client certificate
//! ([`ClientBuilder::identity`]) and, for tests,
//! [`ClientBuilder::danger_accept_invalid_certs`]; the README's "Proxies and
//! TLS" has the rules and how each failure is treated.
//!
//! # Observability
//!
//! With the `metrics` feature, every client reports through the
//! [`metrics`](https://docs.rs/metrics) facade to whatever exporter the
//! application installed (before starting clients), each series labelled
//! `client` with [`ClientBuilder::name`]: counters
//! `tether_connect_attempts_total`, `tether_connects_total`,
//! `tether_disconnects_total{reason}` (`server_close`, `dropped`,
//! `dead_peer`, `protocol`, `write_timeout`, `ready_timeout`, `paused`,
//! `closed`, `other`), `tether_messages_received_total`,
//! `tether_messages_sent_total`, `tether_bytes_received_total`,
//! `tether_bytes_sent_total`, `tether_wire_bytes_received_total`,
//! `tether_wire_bytes_sent_total`, `tether_messages_dropped_total{reason}`
//! (`refused`, `evicted`, `unsent`), `tether_messages_replayed_total`,
//! `tether_rotations_total`, `tether_give_ups_total`; gauges
//! `tether_connected`, `tether_queue_messages`, `tether_queue_bytes`,
//! `tether_unconfirmed_messages`; histograms (seconds)
//! `tether_rtt_seconds`, `tether_connect_duration_seconds`,
//! `tether_link_duration_seconds`, `tether_backoff_delay_seconds`. The
//! README's "Observability" says what each counts;
//! `examples/prometheus.rs` serves them to Prometheus.
//!
//! Spans and logs go through `tracing`, URLs redacted, never a payload,
//! header value or password:
//!
//! | span | fields |
//! |---|---|
//! | `ws_client` (one per client) | `client`, `url` (the primary) |
//! | `ws_connect` (per attempt, in `ws_client`) | `url`, `attempt`, `endpoint`, `outcome`, `proxy` |
//! | `ws_link` (per link, in `ws_client`, follows from its attempt) | `link`, `endpoint`, `url`, `protocol`, `extensions`, `proxy`, `reason` (when it ends) |
//!
//! Each [`Event`] is logged in `ws_client` with an `event` field (its
//! [`name`](Event::name)) and its own fields: WARN for what needs
//! attention (a dead peer, a write timeout, a protocol violation, a stalled
//! subscriber, a dropped message, a failed rotation, giving up), INFO for
//! the link's life (up, down, reconnecting, rotations, closed), DEBUG for
//! attempts; nothing per frame. With tracing-subscriber:
//!
//! ```no_run
//! tracing_subscriber::fmt()
//!     .with_env_filter("actix_tether=info,actix_tether_actors=info")
//!     .init();
//! ```
//!
//! For OpenTelemetry, add `tracing_opentelemetry::layer()` to the same
//! subscriber: the spans above become OpenTelemetry spans.
//!
//! The engine (actors, policies, the transport seam) lives in
//! [`actix_tether_actors`], re-exported here as [`engine`].

#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod awc_link;
mod awc_transport;
mod builder;
#[cfg(feature = "demo")]
#[cfg_attr(docsrs, doc(cfg(feature = "demo")))]
pub mod demo;
mod pool;
mod proxy;
mod redirect;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
#[cfg(feature = "rustls")]
mod tls;
#[cfg(feature = "typed")]
#[cfg_attr(docsrs, doc(cfg(feature = "typed")))]
pub mod typed;
mod validate;
mod wire;

/// Entry points for the `cargo fuzz` targets (`--cfg fuzzing` only).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz {
    pub use crate::proxy::fuzz::proxy_answers;
    pub use crate::wire::fuzz::{decode, negotiate, round_trip};
}

pub use actix_tether_actors as engine;
pub use actix_tether_actors::{
    Attempt, BackoffPolicy, Client, CloseError, CloseFrame, ConfigError, ConnectError,
    ConnectErrorKind, ConnectInfo, ConnectRequest, DeliveryConfig, DisconnectReason, ErrorChain,
    Event, EventStream, FeedConfig, Inbound, InboundBatch, Jitter, Message, MessageStream,
    NotConnected, OverflowPolicy, ProtocolViolation, RandomSource, Receipt, ReconnectBudget,
    RotateReason, SendError, StallPolicy, State, Stats, Transport, TransportError,
    TransportErrorKind, Unconfirmed, Undelivered, WeakClient, STREAM_CAPACITY,
};
pub use builder::ClientBuilder;
pub use pool::Pool;
pub use proxy::Proxy;
pub use wire::deflate::{Compression, CompressionMode, NegotiationError};
