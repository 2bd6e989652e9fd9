//! What subscribers receive.

use std::time::Duration;

use crate::error::DisconnectReason;
use crate::frame::Message;

/// An inbound data message, delivered to every inbound subscriber.
///
/// The payload is shared, not copied, between subscribers. Delivery is
/// backpressured: when a subscriber's mailbox is full, it still receives
/// everything read (in order; nothing is lost), and the client keeps
/// reading, up to the read-ahead (`read_ahead`, 1 MiB by default), so that
/// Pings, Pongs and Close frames are still handled and a dead peer still
/// found. Once the read-ahead is full, reading pauses until the subscriber
/// catches up, and TCP pushes back on the server. Each message counts its
/// payload and 128 bytes more against the read-ahead, so a flood of empty
/// messages is bounded too (1 MiB holds at most 8,192 of them). A subscriber behind for
/// the stall timeout is reported with [`Event::SubscriberStalled`]. Set the
/// subscriber's mailbox capacity (`ctx.set_mailbox_capacity`) to how far it
/// may fall behind before the read-ahead counts.
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Message);

/// The inbound messages of one socket read, in order: for subscribers that
/// handle many small messages and would rather pay one actor message per
/// read than one per message.
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct InboundBatch(pub Vec<Message>);

/// A change in the client's life, delivered to every event subscriber in the
/// order it happened.
///
/// For one link, subscribers see `Connecting`, `Connected`, then the link's
/// inbound messages, then `Disconnected` (and `Reconnecting` when a retry
/// follows), never interleaved otherwise.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum Event {
    /// An attempt to connect begins (1 is the first attempt since the last
    /// stable connection).
    Connecting {
        /// The attempt number.
        attempt: u32,
    },
    /// The link is up.
    Connected {
        /// The attempt that succeeded.
        attempt: u32,
        /// The endpoint's URL, credentials redacted
        /// ([`redact_url`](crate::redact_url)).
        url: String,
        /// Which endpoint: 0 for the primary, then the fallbacks in order.
        endpoint: usize,
        /// The subprotocol the server selected.
        protocol: Option<String>,
        /// The extensions the server agreed to, as the handshake said them
        /// (`permessage-deflate; client_max_window_bits=12`), if any.
        extensions: Option<String>,
        /// The proxy the link goes through, its password masked
        /// (`socks5://user:****@127.0.0.1:1080`), or `None` when the
        /// connection is direct.
        proxy: Option<String>,
    },
    /// The link went down, or an attempt failed.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Whether a reconnect follows.
        will_retry: bool,
    },
    /// The supervisor waits `delay` before attempt `attempt`.
    Reconnecting {
        /// The attempt that will follow the delay.
        attempt: u32,
        /// The (jittered) delay.
        delay: Duration,
    },
    /// The supervisor stopped retrying: a fatal error, or the maximum number
    /// of retries was reached. Queued messages stay queued until `close`
    /// hands them back.
    GaveUp {
        /// The last failure.
        reason: DisconnectReason,
        /// How many attempts were made in the final streak.
        attempts: u32,
    },
    /// The overflow policy dropped a queued message to make room.
    Dropped {
        /// The message that will never be sent.
        message: Message,
    },
    /// A subscriber has been behind for the stall timeout: its mailbox has
    /// been full that long. Reported once per stall; the stall policy says
    /// whether the link stays up.
    SubscriberStalled {
        /// How long the oldest waiting read has waited.
        stalled_for: Duration,
        /// What waits in subscribers' mailboxes, as the read-ahead counts
        /// it: payload bytes and 128 per message.
        behind_bytes: usize,
    },
    /// A new link writes again, right after its setup lane, messages an
    /// earlier link wrote and no Pong confirmed: the replayed tail (with
    /// replay on) and the unflushed part of a batch that link was writing.
    /// The server may see them twice.
    Replaying {
        /// How many messages are written again.
        messages: usize,
    },
    /// A rotation begins: a second link is opened while the current one
    /// stays up (see [`Supervisor`](crate::Supervisor)).
    Rotating {
        /// Why.
        reason: RotateReason,
        /// The current link's age.
        age: Duration,
    },
    /// A rotation finished: outbound traffic and inbound delivery moved to
    /// the new link, and the old one is being closed with 1000.
    Rotated {
        /// The old link's age when it was replaced.
        age: Duration,
        /// The new link's endpoint URL, credentials redacted.
        url: String,
        /// Which endpoint the new link is on (0 is the primary).
        endpoint: usize,
    },
    /// A rotation's new link could not be opened or made ready: the current
    /// link stays, and the rotation is tried again after `retry_in`.
    RotationFailed {
        /// Why the new link failed.
        reason: DisconnectReason,
        /// When the rotation is tried again.
        retry_in: Duration,
    },
    /// The client closed; every actor has stopped.
    Closed {
        /// How many accepted messages were handed back never written.
        unsent: usize,
        /// How many were handed back written but not confirmed by a Pong
        /// (the server may have them).
        possibly_delivered: usize,
    },
}

impl Event {
    /// A short stable name: `connecting`, `connected`, `disconnected`,
    /// `reconnecting`, `gave_up`, `dropped`, `subscriber_stalled`,
    /// `replaying`, `rotating`, `rotated`, `rotation_failed` or `closed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connecting { .. } => "connecting",
            Event::Connected { .. } => "connected",
            Event::Disconnected { .. } => "disconnected",
            Event::Reconnecting { .. } => "reconnecting",
            Event::GaveUp { .. } => "gave_up",
            Event::Dropped { .. } => "dropped",
            Event::SubscriberStalled { .. } => "subscriber_stalled",
            Event::Replaying { .. } => "replaying",
            Event::Rotating { .. } => "rotating",
            Event::Rotated { .. } => "rotated",
            Event::RotationFailed { .. } => "rotation_failed",
            Event::Closed { .. } => "closed",
        }
    }
}

/// Where the client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// An attempt to connect is under way.
    Connecting,
    /// The link is up.
    Connected,
    /// Waiting out a backoff delay before the next attempt.
    Waiting,
    /// `close` was called; the queue is draining.
    Closing,
    /// Kept down by [`Client::pause`](crate::Client::pause) until
    /// [`Client::resume`](crate::Client::resume); messages queue as usual.
    Paused,
    /// Retries stopped; see [`Event::GaveUp`].
    GaveUp,
    /// Closed; every actor has stopped.
    Closed,
}

impl State {
    /// A short stable name: `connecting`, `connected`, `waiting`,
    /// `closing`, `paused`, `gave_up` or `closed`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Waiting => "waiting",
            State::Closing => "closing",
            State::Paused => "paused",
            State::GaveUp => "gave_up",
            State::Closed => "closed",
        }
    }
}

/// Why a rotation began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateReason {
    /// The link reached its (jittered) maximum age.
    Age,
    /// [`Client::rotate`](crate::Client::rotate) was called.
    Requested,
    /// The client is on a fallback endpoint and tries the primary again.
    ReturnToPrimary,
}

impl RotateReason {
    /// A short stable name: `age`, `requested` or `return_to_primary`.
    pub fn name(&self) -> &'static str {
        match self {
            RotateReason::Age => "age",
            RotateReason::Requested => "requested",
            RotateReason::ReturnToPrimary => "return_to_primary",
        }
    }
}
