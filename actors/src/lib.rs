//! The engine of [actix-tether](https://docs.rs/actix-tether): actors that
//! keep a WebSocket connection alive.
//!
//! - [`Supervisor`] connects, reconnects with jittered [`Backoff`], gives up
//!   after `max_retries`, and closes.
//! - The connection actor owns one socket and does the protocol duties
//!   (Pong, Close, reassembly, UTF-8); the heartbeat actor pings and declares
//!   dead links; the queue actor writes accepted messages in order, setup lane
//!   first.
//! - Subscribers receive [`Inbound`] messages and [`Event`]s; so do
//!   streams ([`Client::stream`], [`Client::events`]). An actor that
//!   subscribes from its own context ([`Client::subscribe_context`]) is
//!   woken once per socket read, not once per message.
//! - The socket comes from a [`Transport`]: awc in `actix-tether`, a mock in
//!   its test kit.
//!
//! Most applications use `actix-tether`'s `ClientBuilder`; [`Engine`] is the
//! lower-level entry point for custom transports.

#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod batch;
mod budget;
mod buffer;
mod client;
mod config;
mod connection;
mod control;
mod delivery;
mod error;
mod events;
mod frame;
mod gate;
mod heartbeat;
mod hooks;
mod hub;
mod messages;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "metrics_off.rs"]
mod metrics;
mod policy;
mod queue;
mod read_batch;
mod reassembly;
mod stats;
mod stream;
mod subscriber;
mod supervisor;
mod time;
mod transport;
mod writer;

pub use backoff::{Backoff, BackoffPolicy, Jitter, RandomSource};
pub use budget::ReconnectBudget;
pub use buffer::{OverflowPolicy, QueueLimits, Undelivered};
pub use client::{Client, Engine, OnStart, Receipt, WeakClient};
pub use config::{Config, DeliveryConfig, FeedConfig, HeartbeatConfig, StallPolicy};
pub use error::{
    BoxSource, CloseError, ConfigError, ConnectError, ConnectErrorKind, DisconnectReason,
    ErrorChain, NotConnected, ProtocolViolation, SendError, TransportError, TransportErrorKind,
    Unconfirmed,
};
pub use events::{Event, Inbound, InboundBatch, RotateReason, State};
pub use frame::{CloseFrame, Fragment, Frame, Message, OutFrame, OutRef};
pub use hooks::{
    Attempt, DedupKey, OnConnect, ReadyPredicate, RedactUrl, RequestFuture, RequestProvider,
};
pub use hub::Fanout;
pub use messages::{ConnectInfo, SetupSource};
pub use stats::Stats;
pub use stream::FANOUT_BACKLOG;
pub use stream::{EventStream, MessageStream, STREAM_CAPACITY};
pub use supervisor::Supervisor;
pub use transport::{
    redact_url, ConnectRequest, FrameStream, FrameWriter, Link, SinkWriter, Transport,
};
