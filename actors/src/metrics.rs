//! Metrics through the [`metrics`] facade (feature `metrics`): any
//! exporter the application installs (Prometheus, StatsD, OpenTelemetry)
//! receives them.
//!
//! Handles are registered once per client, when it starts, with the label
//! `client` (the client's name); the per-message path then costs one
//! relaxed atomic add per read or per written batch, never per message.
//! Install the recorder before starting clients: handles taken before
//! that go nowhere.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_rt::time::Instant;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};

use crate::error::{DisconnectReason, TransportErrorKind};
use crate::events::Event;

/// The values of `tether_disconnects_total`'s `reason` label.
const REASONS: [&str; 9] = [
    "server_close",
    "dropped",
    "dead_peer",
    "protocol",
    "write_timeout",
    "ready_timeout",
    "paused",
    "closed",
    "other",
];

/// The index in [`REASONS`] of the label of a link that ended for `reason`:
/// a socket error is a drop, a pong or silence timeout a dead peer.
fn reason_label(reason: &DisconnectReason) -> usize {
    match reason {
        DisconnectReason::ServerClosed { .. } => 0,
        DisconnectReason::Dropped => 1,
        DisconnectReason::Transport(e) if e.kind() == TransportErrorKind::Io => 1,
        DisconnectReason::PongTimeout(_) | DisconnectReason::Silence(_) => 2,
        DisconnectReason::Protocol(_) => 3,
        DisconnectReason::WriteTimeout(_) => 4,
        DisconnectReason::ReadyTimeout(_) => 5,
        DisconnectReason::Paused => 6,
        DisconnectReason::ClientClosed => 7,
        _ => 8,
    }
}

/// Tells the recorder what each metric means (its `# HELP` line).
fn describe() {
    use Unit::{Bytes, Count, Seconds};
    for (name, unit, help) in [
        (
            "tether_connect_attempts_total",
            Count,
            "Connection attempts begun.",
        ),
        (
            "tether_connects_total",
            Count,
            "Links that came up (rotations included).",
        ),
        (
            "tether_disconnects_total",
            Count,
            "Links that ended, by reason.",
        ),
        (
            "tether_messages_received_total",
            Count,
            "Inbound data messages delivered.",
        ),
        (
            "tether_messages_sent_total",
            Count,
            "Outbound messages the socket took, each time.",
        ),
        (
            "tether_bytes_received_total",
            Bytes,
            "Payload bytes of the messages received.",
        ),
        (
            "tether_bytes_sent_total",
            Bytes,
            "Payload bytes of the messages sent.",
        ),
        (
            "tether_wire_bytes_received_total",
            Bytes,
            "Bytes read from the socket.",
        ),
        (
            "tether_wire_bytes_sent_total",
            Bytes,
            "Bytes the socket accepted.",
        ),
        (
            "tether_messages_dropped_total",
            Count,
            "Outbound messages not sent, by reason.",
        ),
        (
            "tether_messages_replayed_total",
            Count,
            "Unconfirmed messages written again.",
        ),
        (
            "tether_rotations_total",
            Count,
            "Links replaced by a rotation.",
        ),
        (
            "tether_give_ups_total",
            Count,
            "Times the client stopped retrying.",
        ),
    ] {
        describe_counter!(name, unit, help);
    }
    for (name, unit, help) in [
        ("tether_connected", Count, "1 while a link is up, else 0."),
        (
            "tether_queue_messages",
            Count,
            "Outbound messages queued or in flight.",
        ),
        (
            "tether_queue_bytes",
            Bytes,
            "Payload bytes queued or in flight.",
        ),
        (
            "tether_unconfirmed_messages",
            Count,
            "Messages written on the link, not yet confirmed.",
        ),
    ] {
        describe_gauge!(name, unit, help);
    }
    for (name, help) in [
        ("tether_rtt_seconds", "Ping round trips."),
        (
            "tether_connect_duration_seconds",
            "From an attempt's start to its link being up.",
        ),
        (
            "tether_link_duration_seconds",
            "How long each link that ended was up.",
        ),
        (
            "tether_backoff_delay_seconds",
            "Delays before reconnect attempts.",
        ),
    ] {
        describe_histogram!(name, Seconds, help);
    }
}

#[derive(Debug)]
struct Handles {
    attempts: Counter,
    connects: Counter,
    disconnects: [Counter; REASONS.len()],
    messages_in: Counter,
    messages_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    wire_in: Counter,
    wire_out: Counter,
    refused: Counter,
    evicted: Counter,
    unsent: Counter,
    replayed: Counter,
    rotations: Counter,
    give_ups: Counter,
    connected: Gauge,
    queue_messages: Gauge,
    queue_bytes: Gauge,
    unconfirmed: Gauge,
    rtt: Histogram,
    connect_duration: Histogram,
    link_duration: Histogram,
    backoff: Histogram,
    /// When the current attempt began and when the current link came up.
    clock: Mutex<Clock>,
}

#[derive(Debug, Default)]
struct Clock {
    attempt: Option<Instant>,
    link: Option<Instant>,
}

/// A client's metric handles, shared by its actors and its queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics(Option<Arc<Handles>>);

impl Metrics {
    /// Registers the handles of the client called `client`.
    pub(crate) fn new(client: &str) -> Self {
        describe();
        let c = |name: &'static str| counter!(name, "client" => client.to_owned());
        let dropped = |reason: &'static str| counter!("tether_messages_dropped_total", "client" => client.to_owned(), "reason" => reason);
        let g = |name: &'static str| gauge!(name, "client" => client.to_owned());
        let h = |name: &'static str| histogram!(name, "client" => client.to_owned());
        Self(Some(Arc::new(Handles {
            attempts: c("tether_connect_attempts_total"),
            connects: c("tether_connects_total"),
            disconnects: REASONS.map(|reason| {
                counter!("tether_disconnects_total", "client" => client.to_owned(), "reason" => reason)
            }),
            messages_in: c("tether_messages_received_total"),
            messages_out: c("tether_messages_sent_total"),
            bytes_in: c("tether_bytes_received_total"),
            bytes_out: c("tether_bytes_sent_total"),
            wire_in: c("tether_wire_bytes_received_total"),
            wire_out: c("tether_wire_bytes_sent_total"),
            refused: dropped("refused"),
            evicted: dropped("evicted"),
            unsent: dropped("unsent"),
            replayed: c("tether_messages_replayed_total"),
            rotations: c("tether_rotations_total"),
            give_ups: c("tether_give_ups_total"),
            connected: g("tether_connected"),
            queue_messages: g("tether_queue_messages"),
            queue_bytes: g("tether_queue_bytes"),
            unconfirmed: g("tether_unconfirmed_messages"),
            rtt: h("tether_rtt_seconds"),
            connect_duration: h("tether_connect_duration_seconds"),
            link_duration: h("tether_link_duration_seconds"),
            backoff: h("tether_backoff_delay_seconds"),
            clock: Mutex::default(),
        })))
    }

    /// What an event says happened.
    pub(crate) fn event(&self, event: &Event) {
        let Some(m) = &self.0 else { return };
        // Only the link's life needs the clock: a flood of evictions does
        // not take the lock.
        let clock = || m.clock.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Connecting { .. } => {
                m.attempts.increment(1);
                clock().attempt = Some(Instant::now());
            }
            Event::Connected { .. } => {
                m.connects.increment(1);
                m.connected.set(1.0);
                let now = Instant::now();
                let mut clock = clock();
                if let Some(at) = clock.attempt.take() {
                    m.connect_duration.record(now - at);
                }
                clock.link = Some(now);
            }
            Event::Disconnected { reason, .. } => {
                if let Some(at) = clock().link.take() {
                    m.link_duration.record(at.elapsed());
                }
                if !matches!(reason, DisconnectReason::ConnectFailed(_)) {
                    m.disconnects[reason_label(reason)].increment(1);
                }
                m.connected.set(0.0);
            }
            Event::Reconnecting { delay, .. } => m.backoff.record(*delay),
            Event::GaveUp { .. } => m.give_ups.increment(1),
            Event::Dropped { .. } => m.evicted.increment(1),
            Event::Replaying { messages } => m.replayed.increment(*messages as u64),
            Event::Rotated { age, .. } => {
                // The old link ended after `age`; the new one is up.
                m.rotations.increment(1);
                m.connects.increment(1);
                m.link_duration.record(*age);
                clock().link = Some(Instant::now());
            }
            Event::Closed { unsent, .. } => {
                m.unsent.increment(*unsent as u64);
                m.connected.set(0.0);
            }
            _ => {}
        }
    }

    /// One read handed `messages` of `bytes` payload to subscribers.
    #[inline]
    pub(crate) fn received(&self, messages: u64, bytes: u64) {
        if let Some(m) = &self.0 {
            m.messages_in.increment(messages);
            m.bytes_in.increment(bytes);
        }
    }

    /// A batch of `messages` of `bytes` payload reached the socket.
    #[inline]
    pub(crate) fn sent(&self, messages: u64, bytes: u64) {
        if let Some(m) = &self.0 {
            m.messages_out.increment(messages);
            m.bytes_out.increment(bytes);
        }
    }

    /// `bytes` crossed the wire inward.
    #[inline]
    pub(crate) fn wire_in(&self, bytes: u64) {
        if let Some(m) = &self.0 {
            m.wire_in.increment(bytes);
        }
    }

    /// The socket accepted `bytes`.
    #[inline]
    pub(crate) fn wire_out(&self, bytes: u64) {
        if let Some(m) = &self.0 {
            m.wire_out.increment(bytes);
        }
    }

    /// The queue refused a message (full, or larger than its byte bound).
    pub(crate) fn refused(&self) {
        if let Some(m) = &self.0 {
            m.refused.increment(1);
        }
    }

    /// The queue now holds `messages` of `bytes` (in flight included).
    #[inline]
    pub(crate) fn queue(&self, messages: usize, bytes: usize) {
        if let Some(m) = &self.0 {
            m.queue_messages.set(messages as f64);
            m.queue_bytes.set(bytes as f64);
        }
    }

    /// The current link wrote `messages` no Pong confirmed yet.
    pub(crate) fn unconfirmed(&self, messages: u64) {
        if let Some(m) = &self.0 {
            m.unconfirmed.set(messages as f64);
        }
    }

    /// A Pong came back after `rtt`.
    pub(crate) fn rtt(&self, rtt: Duration) {
        if let Some(m) = &self.0 {
            m.rtt.record(rtt);
        }
    }
}
