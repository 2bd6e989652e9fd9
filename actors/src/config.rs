//! Engine settings.

use std::time::Duration;

use crate::backoff::BackoffPolicy;
use crate::buffer::QueueLimits;
use crate::error::ConfigError;

/// Heartbeat settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatConfig {
    /// Time between pings; `None` disables pings. Default is 20 s.
    pub ping_interval: Option<Duration>,
    /// How long a ping may go unanswered before the link is declared dead.
    /// Default is 10 s.
    pub pong_timeout: Duration,
    /// Whether any inbound frame, not only the pong, proves the peer alive.
    /// Default is false.
    pub any_frame_is_alive: bool,
    /// Reconnect a feed that sends nothing at all for this long (detected
    /// between one and two timeouts after the last frame); `None` disables
    /// it. Default is `None`.
    pub silence_timeout: Option<Duration>,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(10),
            any_frame_is_alive: false,
            silence_timeout: None,
        }
    }
}

/// What the client does about a subscriber that stays behind for the stall
/// timeout (see [`Config::stall_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StallPolicy {
    /// Report it ([`Event::SubscriberStalled`](crate::Event::SubscriberStalled))
    /// and keep waiting: nothing is lost, reading stays paused while the
    /// read-ahead is full.
    #[default]
    Wait,
    /// Report it and end the link (Close 1001); the client reconnects as
    /// after any failure. What the subscriber has not handled stays in its
    /// mailbox.
    Disconnect,
}

/// Delivery barriers and replay of the unconfirmed tail.
///
/// Every Ping the client writes is a delivery barrier: a server answers it
/// only after reading every frame written before it (RFC 6455 §5.5.2), so
/// its Pong confirms that those messages reached the server's WebSocket
/// layer. Heartbeat pings always serve as barriers, which is what
/// [`Stats`](crate::Stats) counts confirmed, unconfirmed and possibly lost
/// messages by. The settings here add barrier pings of their own and the
/// replay of what no Pong confirmed.
///
/// What a Pong proves is limited by who sends it: an intermediary (proxy,
/// load balancer) that answers Pings itself confirms delivery only as far
/// as itself, and a server that read a frame into a buffer it then lost (a
/// crash after its Pong) confirmed it all the same. A peer that answers
/// with a payload the client did not send confirms nothing; one that
/// answers late confirms late (the heartbeat still judges it by its pong
/// timeout); one that never answers confirms nothing, and with replay on
/// the window fills and writing waits until the heartbeat ends the link.
/// Acknowledged delivery (the typed layer) covers the server's application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryConfig {
    /// Keep every message written until a Pong confirms it, and write the
    /// unconfirmed tail of a link that ends again on the next link, ahead
    /// of the backlog and behind the setup lane: at-least-once delivery to
    /// the server's WebSocket layer. Turns on `barriers`. Default is false.
    pub replay: bool,
    /// Send barrier Pings while messages are unconfirmed: after a write
    /// batch at once when the unconfirmed tail reaches half the window and
    /// no Ping is on its way (younger than the pong timeout), otherwise at
    /// most one per `barrier_interval`. Default is false: only heartbeat
    /// pings confirm, and barrier Pings go only while someone waits for a
    /// confirmation (`close`, `Client::confirmed`).
    pub barriers: bool,
    /// The least time between two barrier pings while the unconfirmed tail
    /// is below half the window. Default is 100 ms.
    pub barrier_interval: Duration,
    /// With replay, the most messages written and not yet confirmed; at the
    /// bound, writing waits for a confirmation (as a TCP window does).
    /// Default is 4096.
    pub window_messages: usize,
    /// With replay, the most payload bytes written and not yet confirmed
    /// (a single larger message still goes out once the window is empty).
    /// Default is 8 MiB.
    pub window_bytes: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            replay: false,
            barriers: false,
            barrier_interval: Duration::from_millis(100),
            window_messages: 4096,
            window_bytes: 8 << 20,
        }
    }
}

impl DeliveryConfig {
    /// Whether the client sends barrier pings of its own.
    pub fn sends_barriers(&self) -> bool {
        self.barriers || self.replay
    }
}

/// Everything the engine needs to know, with defaults that suit a long-lived
/// feed. Start from [`Config::default`] and change fields; [`Config::validate`]
/// (called when the client starts) rejects what cannot work.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The client's name: the `client` label of its metrics and the
    /// `client` field of its tracing span. Give each client of a process
    /// its own name, or their metrics add up. Default is `"default"`.
    pub name: String,
    /// Delays between attempts. Default is [`BackoffPolicy::default`].
    pub backoff: BackoffPolicy,
    /// Give up after this many consecutive retries; `None` retries forever.
    /// Default is `None`.
    pub max_retries: Option<u32>,
    /// A link must stay up this long before the backoff starts over. Default
    /// is 5 s.
    pub min_uptime: Duration,
    /// Bound on connecting plus the upgrade. Default is 10 s.
    pub connect_timeout: Duration,
    /// Bound on the close handshake; after it the socket is dropped. Default
    /// is 5 s.
    pub close_handshake_timeout: Duration,
    /// Bound on sending a Close to a link already found dead before dropping
    /// it. Default is 250 ms.
    pub dead_close_timeout: Duration,
    /// A write that makes no progress for this long ends the link (its
    /// batch goes back to the head of the queue); `None` waits forever.
    /// Progress is the socket taking bytes; a watchdog checks four times per
    /// timeout, so the link ends between one and one and a quarter timeouts
    /// after the last progress. Default is 30 s.
    pub write_timeout: Option<Duration>,
    /// Heartbeat settings.
    pub heartbeat: HeartbeatConfig,
    /// Largest reassembled message; larger ones close the link with 1009.
    /// Default is 16 MiB.
    pub max_message_size: usize,
    /// Inbound payload bytes the client reads ahead of a subscriber that is
    /// behind (its mailbox full). While below it, reading goes on and Ping,
    /// Pong and Close are handled as they arrive, so a dead peer is still
    /// found; at it, reading pauses until the subscriber catches up (nothing
    /// is lost: TCP holds the rest). Default is 1 MiB.
    pub read_ahead: usize,
    /// A subscriber that stays behind this long is reported with
    /// [`Event::SubscriberStalled`](crate::Event::SubscriberStalled), and the
    /// stall policy applies. Default is 30 s.
    pub stall_timeout: Duration,
    /// What a stalled subscriber does to the link. Default is
    /// [`StallPolicy::Wait`].
    pub on_stall: StallPolicy,
    /// Bounds and overflow policy of the outbound queue.
    pub queue: QueueLimits,
    /// Most queued messages written (and flushed) as one batch; a batch also
    /// stops at 1 MiB of payload (and always holds at least one message).
    /// Default is 1024.
    pub write_batch: usize,
    /// Retry 4xx refusals other than 408 and 429 too. Default is false.
    pub retry_client_errors: bool,
    /// The longest server `Retry-After` honoured; a longer one waits this
    /// long. Default is 5 minutes.
    pub max_retry_after: Duration,
    /// Delivery barriers and replay. Default is [`DeliveryConfig::default`]
    /// (heartbeat pings confirm; nothing is replayed).
    pub delivery: DeliveryConfig,
    /// Server close codes that end the client (as a fatal failure: `GaveUp`)
    /// instead of being retried, such as an exchange's "banned" or a
    /// server's "policy violation". Default is none.
    pub fatal_close_codes: Vec<u16>,
    /// Feed operations: rotation, endpoints, the ready gate.
    pub feed: FeedConfig,
}

/// Rotation, endpoint failover and the ready gate.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FeedConfig {
    /// Rotate every link before it is this old: open a second link, run its
    /// setup lane, switch to it, close the old one with 1000 (see
    /// [`Supervisor`](crate::Supervisor)). `None` never rotates on age.
    /// Default is `None`.
    pub max_connection_age: Option<Duration>,
    /// The fraction of `max_connection_age` by which each link's rotation
    /// is brought forward at random, so that a fleet does not rotate at
    /// once: a rotation begins at a uniformly random age in
    /// `[age * (1 - jitter), age]`. 0 rotates at exactly the age. Default is
    /// 0.1.
    pub age_jitter: f64,
    /// Once the new link of a rotation is ready, how long the old link's
    /// inbound messages keep being delivered while nothing has arrived on
    /// the new one yet; the switch happens at the new link's first message
    /// or after this, whichever comes first (at most a quarter of
    /// `max_connection_age`). Default is 1 s.
    pub rotation_overlap: Duration,
    /// With a dedup key, how many of the last delivered messages' keys a
    /// new link's first messages are checked against. Default is 1024.
    pub dedup_window: usize,
    /// Consecutive failed attempts on one endpoint after which attempts
    /// move to the next endpoint. Default is 2.
    pub failover_after: u32,
    /// After this long on a fallback endpoint, try the primary again with a
    /// make-before-break rotation (it stays on the fallback if the primary
    /// fails, and tries again after the same time). `None` stays on the
    /// fallback until it fails. Default is `None`.
    pub return_to_primary: Option<Duration>,
    /// With a ready gate, how long a link may wait for the message that
    /// opens it before it is ended as a failed attempt. Default is 10 s.
    pub ready_timeout: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            max_connection_age: None,
            age_jitter: 0.1,
            rotation_overlap: Duration::from_secs(1),
            dedup_window: 1024,
            failover_after: 2,
            return_to_primary: None,
            ready_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            backoff: BackoffPolicy::default(),
            max_retries: None,
            min_uptime: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            close_handshake_timeout: Duration::from_secs(5),
            dead_close_timeout: Duration::from_millis(250),
            write_timeout: Some(Duration::from_secs(30)),
            heartbeat: HeartbeatConfig::default(),
            max_message_size: 16 << 20,
            read_ahead: 1 << 20,
            stall_timeout: Duration::from_secs(30),
            on_stall: StallPolicy::Wait,
            queue: QueueLimits::default(),
            write_batch: 1024,
            retry_client_errors: false,
            max_retry_after: Duration::from_secs(300),
            delivery: DeliveryConfig::default(),
            fatal_close_codes: Vec::new(),
            feed: FeedConfig::default(),
        }
    }
}

/// The shortest period a repeating timer may have.
const MIN_PERIOD: Duration = Duration::from_millis(1);

impl Config {
    /// Checks the settings that are not already checked by their own types.
    ///
    /// # Errors
    ///
    /// The first setting out of its range, as [`ConfigError::Invalid`]
    /// naming it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |d: Duration, name| {
            if d.is_zero() {
                Err(ConfigError::invalid(name, "must be above zero"))
            } else {
                Ok(())
            }
        };
        // Periods of timers that repeat: below a millisecond they would
        // spin (a 1 ns ping interval is a ping flood, not a heartbeat).
        let period = |d: Duration, name| {
            if d < MIN_PERIOD {
                Err(ConfigError::invalid(name, "must be at least 1 ms"))
            } else {
                Ok(())
            }
        };
        positive(self.connect_timeout, "connect_timeout")?;
        positive(self.close_handshake_timeout, "close_timeout")?;
        positive(self.dead_close_timeout, "dead_close_timeout")?;
        positive(self.heartbeat.pong_timeout, "pong_timeout")?;
        if let Some(i) = self.heartbeat.ping_interval {
            period(i, "ping_interval")?;
        }
        if let Some(w) = self.write_timeout {
            period(w, "write_timeout")?;
        }
        if let Some(s) = self.heartbeat.silence_timeout {
            period(s, "silence_timeout")?;
        }
        if self.max_message_size == 0 {
            return Err(ConfigError::invalid(
                "max_message_size",
                "must be above zero",
            ));
        }
        period(self.stall_timeout, "stall_timeout")?;
        if self.read_ahead == 0 {
            return Err(ConfigError::invalid("read_ahead", "must be above zero"));
        }
        period(self.delivery.barrier_interval, "barrier_interval")?;
        if self.delivery.window_messages == 0 {
            return Err(ConfigError::invalid(
                "window_messages",
                "must be above zero",
            ));
        }
        if self.delivery.window_bytes == 0 {
            return Err(ConfigError::invalid("window_bytes", "must be above zero"));
        }
        if self.write_batch == 0 {
            return Err(ConfigError::invalid("write_batch", "must be above zero"));
        }
        self.feed.validate()
    }
}

impl FeedConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(age) = self.max_connection_age {
            // Each rotation opens a connection: a shorter age would do
            // nothing else.
            if age < Duration::from_millis(10) {
                return Err(ConfigError::invalid(
                    "max_connection_age",
                    "must be at least 10 ms",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.age_jitter) {
            return Err(ConfigError::invalid(
                "age_jitter",
                "must be between 0 and 1",
            ));
        }
        if self.rotation_overlap.is_zero() {
            return Err(ConfigError::invalid(
                "rotation_overlap",
                "must be above zero",
            ));
        }
        if self.dedup_window == 0 {
            return Err(ConfigError::invalid("dedup_window", "must be above zero"));
        }
        if self.failover_after == 0 {
            return Err(ConfigError::invalid("failover_after", "must be at least 1"));
        }
        if self.return_to_primary.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::invalid(
                "return_to_primary",
                "must be above zero",
            ));
        }
        if self.ready_timeout.is_zero() {
            return Err(ConfigError::invalid("ready_timeout", "must be above zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeroes_are_not() {
        assert_eq!(Config::default().validate(), Ok(()));
        let mut c = Config::default();
        c.heartbeat.pong_timeout = Duration::ZERO;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                setting: "pong_timeout",
                ..
            })
        ));
        let c = Config {
            max_message_size: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
