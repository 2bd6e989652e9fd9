//! What a client's counters say, at one moment.

use std::time::Duration;

use crate::events::State;

/// A snapshot of a client's counters.
///
/// The outbound books reconcile with what a server read: `messages_out`
/// counts every message a socket took, each time; each such write is later
/// `confirmed` by a Pong, or ends with its link (without replay counted in
/// `possibly_lost`, never written again; with replay counted in `replayed`
/// and written again), or is still `unconfirmed` on the current link. So,
/// without a setup lane, `messages_out` is `confirmed + possibly_lost +
/// unconfirmed` without replay and `confirmed + replayed + unconfirmed` with
/// it, once what was replayed has been written again; a server read at most
/// `messages_out` messages and at least `confirmed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Where the client is.
    pub state: State,
    /// Connection attempts made in total.
    pub attempts: u64,
    /// Successful connects after the first.
    pub reconnects: u64,
    /// Inbound data messages handed to subscribers and streams, each once
    /// (after a rotation's dedup window; control frames are not counted).
    pub messages_in: u64,
    /// Payload bytes of `messages_in` (decompressed).
    pub bytes_in: u64,
    /// Outbound messages the socket took whole, setup lane included,
    /// counted each time: a message written on two links (replayed, or
    /// given back whole by a transport that cannot say what its socket
    /// took) counts twice. What a server read is at most this; without
    /// replay, `messages_out` less what the server read is at most
    /// `possibly_lost` plus `unconfirmed` (plus the setup lane's messages,
    /// which are not tracked).
    pub messages_out: u64,
    /// Payload bytes of `messages_out`, counted the same way.
    pub bytes_out: u64,
    /// Bytes read from the socket: frame headers, control frames and
    /// payloads as they crossed the wire (compressed, with
    /// permessage-deflate). Compare with `bytes_in` for the compression
    /// ratio. A transport that does not count them reports payload bytes.
    pub wire_bytes_in: u64,
    /// Bytes the socket accepted: frame headers, control frames and
    /// payloads as written (compressed, with permessage-deflate). A
    /// transport that does not count them reports payload bytes.
    pub wire_bytes_out: u64,
    /// Messages queued or in flight.
    pub queue_depth: usize,
    /// Payload bytes queued or in flight.
    pub queue_bytes: usize,
    /// Messages dropped by the overflow policy.
    pub dropped: u64,
    /// Events not delivered to subscribers that were more than
    /// [`FANOUT_BACKLOG`](crate::FANOUT_BACKLOG) events behind.
    pub events_dropped: u64,
    /// `send` calls waiting for room (their messages are in their futures,
    /// not in the queue).
    pub waiting_senders: usize,
    /// Queued messages a Pong confirmed: the server's WebSocket layer read
    /// them. Each write is confirmed at most once, so a replayed message
    /// confirmed on its second link counts once, there (setup-lane messages
    /// are not tracked).
    pub confirmed: u64,
    /// Payload bytes of `confirmed`.
    pub confirmed_bytes: u64,
    /// Queued messages written on the current link and not confirmed yet.
    pub unconfirmed: u64,
    /// Payload bytes of `unconfirmed`.
    pub unconfirmed_bytes: u64,
    /// With replay: messages the socket took on a link that ended before
    /// a Pong confirmed them, put back at the head of the queue to be
    /// written again (so, once everything is written and confirmed,
    /// `messages_out` is `confirmed` plus `replayed`, setup lane aside).
    pub replayed: u64,
    /// Without replay: messages the socket took (flushed, or taken whole
    /// from a batch the link died in the middle of) on links that ended
    /// before a Pong confirmed them; they are never written again. An
    /// upper bound on what dead links lost: some may have reached the
    /// server (only their Pong was lost).
    pub possibly_lost: u64,
    /// Payload bytes of `possibly_lost`.
    pub possibly_lost_bytes: u64,
    /// Pings sent as delivery barriers, beyond the heartbeat's.
    pub barrier_pings: u64,
    /// The last measured ping round trip.
    pub last_rtt: Option<Duration>,
    /// How long the current link has been up.
    pub uptime: Option<Duration>,
    /// Which endpoint the current link is on (0 is the primary).
    pub endpoint: Option<usize>,
    /// Rotations completed.
    pub rotations: u64,
    /// Messages dropped by the dedup window after rotations.
    pub duplicates_dropped: u64,
}
