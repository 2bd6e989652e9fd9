//! Typed errors of the engine.
//!
//! Every failure a user can observe is one of these types. They are cheap to
//! clone (sources are shared behind an [`Arc`]) because the supervisor hands
//! the same error to every subscriber.
//!
//! They follow the standard library's convention: an error's `Display` says
//! what happened in one line and does not repeat its source, which
//! `source()` returns. A [`DisconnectReason`] says what its error says
//! ("connect failed: connection refused by 127.0.0.1:9001") and its source
//! is that error's source. Walk the chain (or let anyhow or eyre do it, or
//! print an [`ErrorChain`]) to print everything once, and downcast a source
//! to reach, for example, the `std::io::Error` of a refused connection:
//!
//! ```
//! use std::error::Error;
//! use actix_tether_actors::{ConnectError, ConnectErrorKind, DisconnectReason};
//!
//! let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
//! let reason = DisconnectReason::ConnectFailed(
//!     ConnectError::with_source(ConnectErrorKind::Refused, io).with_target("127.0.0.1:9001"),
//! );
//! let mut chain = vec![reason.to_string()];
//! let mut source = reason.source();
//! while let Some(e) = source {
//!     chain.push(e.to_string());
//!     source = e.source();
//! }
//! assert_eq!(
//!     chain.join(": "),
//!     "connect failed: connection refused by 127.0.0.1:9001: refused"
//! );
//! let io = reason.source().and_then(|e| e.downcast_ref::<std::io::Error>());
//! assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::Message;

/// Displays an error and its sources, each level once, joined by ": "
/// ("connect failed: connection refused: Connection refused (os error
/// 111)"): for logs and programs that print one line per error.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(s) = next {
            write!(f, ": {s}")?;
            next = s.source();
        }
        Ok(())
    }
}

/// A shared, thread-safe error source.
pub type BoxSource = Arc<dyn StdError + Send + Sync + 'static>;

/// What went wrong while opening a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// Nothing listens at the address (connection refused).
    Refused,
    /// The peer reset the connection during the handshake.
    Reset,
    /// Connecting and upgrading took longer than the connect timeout.
    Timeout,
    /// The host name could not be resolved.
    Dns,
    /// The TLS handshake failed for a reason other than the certificate
    /// (no common protocol version or cipher, a fatal alert from the
    /// server). Not retryable. An untrusted certificate is
    /// [`ConnectErrorKind::Certificate`]; a handshake cut in the middle is
    /// [`ConnectErrorKind::Reset`] or [`ConnectErrorKind::Io`] and retried.
    Tls,
    /// The server answered the upgrade with an HTTP status other than 101.
    Http,
    /// The server answered 101 but the handshake was invalid (bad
    /// `Sec-WebSocket-Accept`, missing `Upgrade`/`Connection` headers, ...).
    Handshake,
    /// The server selected a subprotocol the client did not offer.
    ProtocolMismatch,
    /// The server's `Sec-WebSocket-Extensions` answer is invalid: an
    /// extension or parameter that was not offered, a repeated parameter, a
    /// bad value, or no permessage-deflate when it is required.
    Extension,
    /// The request itself is invalid (bad URL, scheme, header name or value).
    InvalidRequest,
    /// Any other I/O failure.
    Io,
    /// The proxy could not be reached or could not reach the server: the
    /// proxy refused the connection, answered `CONNECT` with 502, 503 or
    /// 504, or its SOCKS5 reply said the network or host is unreachable,
    /// the connection was refused, the TTL expired or it failed in general.
    /// Retryable.
    ProxyUnavailable,
    /// The proxy refused the tunnel for good: authentication refused
    /// (HTTP 407, a SOCKS5 password refused or no acceptable method), any
    /// other 4xx to `CONNECT`, a SOCKS5 ruleset refusal or an unsupported
    /// command or address type, or an answer that is not HTTP or SOCKS5.
    /// Not retryable.
    ProxyRefused,
    /// The server's (or an https:// proxy's) certificate is not trusted:
    /// an unknown issuer, expired, or issued for another name. Not
    /// retryable: repeating the handshake cannot make it trusted.
    Certificate,
}

/// An error from one connection attempt.
///
/// Use [`ConnectError::is_retryable`] to learn whether the supervisor will try
/// again, [`ConnectError::status`] and [`ConnectError::retry_after`] for HTTP
/// refusals.
#[derive(Clone)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    target: Option<String>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    source: Option<BoxSource>,
}

impl ConnectError {
    /// Creates an error of the given kind without a source.
    pub fn new(kind: ConnectErrorKind) -> Self {
        Self {
            kind,
            target: None,
            status: None,
            retry_after: None,
            source: None,
        }
    }

    /// The same error naming the server it happened with (`host:port`),
    /// which its `Display` then shows ("connection refused by
    /// 127.0.0.1:9001").
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The server the attempt went to (`host:port`), when known.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Creates an error of the given kind caused by `source`.
    pub fn with_source(
        kind: ConnectErrorKind,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            source: Some(Arc::from(source.into())),
            ..Self::new(kind)
        }
    }

    /// An HTTP refusal of the upgrade with `status` and the server's
    /// `Retry-After`, if it sent one.
    pub fn http(status: u16, retry_after: Option<Duration>) -> Self {
        Self {
            status: Some(status),
            retry_after,
            ..Self::new(ConnectErrorKind::Http)
        }
    }

    /// The same error with `status`: the HTTP status a proxy answered
    /// `CONNECT` with ([`ConnectErrorKind::ProxyUnavailable`],
    /// [`ConnectErrorKind::ProxyRefused`]).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// The HTTP status of an [`ConnectErrorKind::Http`] refusal, or the
    /// status a proxy answered `CONNECT` with.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// How long the server asked the client to wait (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether another attempt may succeed, with 4xx statuses other than 408
    /// and 429 treated as fatal.
    ///
    /// Refused, reset, timeouts, DNS and other I/O failures, 5xx, 408 and 429
    /// are retryable, and so is a proxy that is unavailable; TLS and
    /// certificate failures, a proxy's refusal (407 among them), invalid
    /// handshakes, subprotocol mismatches and invalid requests are not,
    /// because repeating them cannot help.
    pub fn is_retryable(&self) -> bool {
        self.is_retryable_with(false)
    }

    /// Like [`ConnectError::is_retryable`], but retries every 4xx when
    /// `retry_client_errors` is true.
    pub fn is_retryable_with(&self, retry_client_errors: bool) -> bool {
        match self.kind {
            ConnectErrorKind::Refused
            | ConnectErrorKind::Reset
            | ConnectErrorKind::Timeout
            | ConnectErrorKind::Dns
            | ConnectErrorKind::Io
            | ConnectErrorKind::ProxyUnavailable => true,
            ConnectErrorKind::Http => match self.status {
                Some(408 | 429) => true,
                Some(s) if (400..500).contains(&s) => retry_client_errors,
                Some(s) => s >= 500,
                None => false,
            },
            _ => false,
        }
    }
}

impl fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConnectError");
        d.field("kind", &self.kind);
        if let Some(target) = &self.target {
            d.field("target", target);
        }
        if let Some(status) = self.status {
            d.field("status", &status);
        }
        if let Some(ra) = self.retry_after {
            d.field("retry_after", &ra);
        }
        if let Some(src) = &self.source {
            d.field("source", &format_args!("{src}"));
        }
        d.finish()
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The server's name where it says who failed.
        let by = |f: &mut fmt::Formatter<'_>, joint: &str| match &self.target {
            Some(t) => write!(f, " {joint} {t}"),
            None => Ok(()),
        };
        match self.kind {
            ConnectErrorKind::Refused => {
                f.write_str("connection refused")?;
                by(f, "by")?
            }
            ConnectErrorKind::Reset => {
                f.write_str("connection reset during handshake")?;
                by(f, "with")?
            }
            ConnectErrorKind::Timeout => match &self.target {
                Some(t) => write!(f, "connecting to {t} timed out")?,
                None => f.write_str("connect timed out")?,
            },
            ConnectErrorKind::Dns => match &self.target {
                Some(t) => write!(f, "cannot resolve the host name of {t}")?,
                None => f.write_str("host name could not be resolved")?,
            },
            ConnectErrorKind::Tls => {
                f.write_str("TLS handshake failed")?;
                by(f, "with")?
            }
            ConnectErrorKind::Http => match self.status {
                Some(s) => write!(f, "server refused the upgrade with HTTP {s}")?,
                None => f.write_str("server refused the upgrade")?,
            },
            ConnectErrorKind::Handshake => f.write_str("invalid WebSocket handshake")?,
            ConnectErrorKind::ProtocolMismatch => {
                f.write_str("server selected a subprotocol that was not offered")?
            }
            ConnectErrorKind::Extension => {
                f.write_str("server answered the extension negotiation wrongly")?
            }
            ConnectErrorKind::InvalidRequest => f.write_str("invalid connect request")?,
            ConnectErrorKind::Io => {
                f.write_str("I/O error while connecting")?;
                by(f, "to")?
            }
            ConnectErrorKind::ProxyUnavailable => match self.status {
                Some(s) => write!(f, "proxy unavailable: it answered CONNECT with HTTP {s}")?,
                None => f.write_str("proxy unavailable")?,
            },
            ConnectErrorKind::ProxyRefused => match self.status {
                Some(407) => f.write_str(
                    "proxy refused the tunnel with HTTP 407 (proxy authentication required)",
                )?,
                Some(401) => f.write_str(
                    "proxy refused the tunnel with HTTP 401 (proxy authentication refused)",
                )?,
                Some(s) => write!(f, "proxy refused the tunnel with HTTP {s}")?,
                None => f.write_str("proxy refused the tunnel")?,
            },
            ConnectErrorKind::Certificate => {
                f.write_str("server certificate not trusted")?;
                by(f, "for")?
            }
        }
        Ok(())
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// What kind of failure ended an established link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The socket failed (reset, broken pipe, ...).
    Io,
    /// A frame exceeded the transport's maximum frame size (close code 1009).
    FrameTooBig,
    /// The peer sent a frame the codec rejects: reserved opcode, RSV bits,
    /// an oversized or fragmented control frame, ... (close code 1002).
    Protocol,
    /// The peer sent text (or a close reason) that is not valid UTF-8,
    /// found by the transport's codec as it arrived (close code 1007). The
    /// link's reason is then `DisconnectReason::Protocol(InvalidUtf8)`, as
    /// when the engine finds it.
    InvalidData,
    /// A message (inflated, with compression) exceeded the maximum message
    /// size, found by the transport's codec before it was buffered (close
    /// code 1009). The link's reason is then
    /// `DisconnectReason::Protocol(MessageTooBig)`, as when the engine finds
    /// it.
    MessageTooBig,
}

/// A failure of an established link reported by the transport: a socket
/// error, or a protocol violation its codec found
/// ([`TransportError::violation`]), which the engine reports as
/// [`DisconnectReason::Protocol`].
#[derive(Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    violation: Option<ProtocolViolation>,
    source: Option<BoxSource>,
}

impl TransportError {
    /// A failure of `kind` caused by `source`.
    pub fn new(
        kind: TransportErrorKind,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            violation: None,
            source: Some(Arc::from(source.into())),
        }
    }

    /// The peer violated the protocol in the way `violation` says, found
    /// by the transport's codec.
    pub fn protocol(violation: ProtocolViolation) -> Self {
        let kind = match violation {
            ProtocolViolation::FrameTooBig => TransportErrorKind::FrameTooBig,
            ProtocolViolation::MessageTooBig => TransportErrorKind::MessageTooBig,
            ProtocolViolation::InvalidUtf8 | ProtocolViolation::InvalidCloseReason => {
                TransportErrorKind::InvalidData
            }
            _ => TransportErrorKind::Protocol,
        };
        Self {
            kind,
            violation: Some(violation),
            source: None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// Which violation the peer committed, for an error of a kind other
    /// than [`TransportErrorKind::Io`]: the one the codec named, or the
    /// one its kind implies.
    pub fn violation(&self) -> Option<ProtocolViolation> {
        self.violation.or(match self.kind {
            TransportErrorKind::Io => None,
            TransportErrorKind::FrameTooBig => Some(ProtocolViolation::FrameTooBig),
            TransportErrorKind::Protocol => Some(ProtocolViolation::InvalidFrame),
            TransportErrorKind::InvalidData => Some(ProtocolViolation::InvalidUtf8),
            TransportErrorKind::MessageTooBig => Some(ProtocolViolation::MessageTooBig),
        })
    }

    /// The close code the client answers this failure with, if the socket is
    /// still usable enough to send one.
    pub fn close_code(&self) -> Option<u16> {
        self.violation().map(ProtocolViolation::close_code)
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TransportError");
        d.field("kind", &self.kind);
        if let Some(v) = self.violation {
            d.field("violation", &v);
        }
        if let Some(src) = &self.source {
            d.field("source", &format_args!("{src}"));
        }
        d.finish()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.violation()) {
            (TransportErrorKind::Io, _) | (_, None) => f.write_str("the socket failed"),
            (_, Some(v)) => v.fmt(f),
        }
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// A WebSocket protocol violation by the peer, answered with a close code.
///
/// Whichever layer finds it (the frame decoder, the inflater, the
/// reassembler, the engine), a violation ends the link with
/// [`DisconnectReason::Protocol`] and the client closes with
/// [`ProtocolViolation::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A text message was not valid UTF-8 (close code 1007).
    InvalidUtf8,
    /// A message exceeded the maximum message size, inflated (close code
    /// 1009).
    MessageTooBig,
    /// A continuation frame arrived without a started message, or a new data
    /// frame arrived in the middle of a fragmented one (close code 1002).
    UnexpectedContinuation,
    /// A frame exceeded the maximum frame size (close code 1009).
    FrameTooBig,
    /// The server masked a frame; only clients mask (close code 1002).
    MaskedFrame,
    /// A reserved bit was set that no negotiated extension defines: RSV2 or
    /// RSV3, RSV1 without permessage-deflate, or RSV1 on a control or
    /// continuation frame (close code 1002).
    ReservedBits,
    /// A frame had a reserved opcode (close code 1002).
    ReservedOpcode,
    /// A control frame (Ping, Pong, Close) was fragmented (close code 1002).
    FragmentedControlFrame,
    /// A control frame carried more than 125 bytes (close code 1002).
    ControlFrameTooBig,
    /// A frame's length was not in its minimal encoding, or over 63 bits
    /// (close code 1002).
    InvalidLength,
    /// A Close frame had a one-byte payload or a code no endpoint may send
    /// (close code 1002).
    InvalidCloseFrame,
    /// A Close frame's reason was not valid UTF-8 (close code 1007).
    InvalidCloseReason,
    /// A compressed message did not inflate (close code 1002).
    InvalidCompressedData,
    /// A transport reported a violation without saying which (close code
    /// 1002).
    InvalidFrame,
}

impl ProtocolViolation {
    /// The close code the client sends when it detects this violation.
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolViolation::InvalidUtf8 | ProtocolViolation::InvalidCloseReason => 1007,
            ProtocolViolation::MessageTooBig | ProtocolViolation::FrameTooBig => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolViolation::InvalidUtf8 => "server sent text that is not valid UTF-8",
            ProtocolViolation::MessageTooBig => {
                "server sent a message over the maximum message size"
            }
            ProtocolViolation::UnexpectedContinuation => {
                "server sent a continuation frame outside a fragmented message, \
                 or a new message inside one"
            }
            ProtocolViolation::FrameTooBig => "server sent a frame over the maximum frame size",
            ProtocolViolation::MaskedFrame => "server sent a masked frame",
            ProtocolViolation::ReservedBits => {
                "server set a reserved bit that no negotiated extension defines"
            }
            ProtocolViolation::ReservedOpcode => "server sent a frame with a reserved opcode",
            ProtocolViolation::FragmentedControlFrame => "server fragmented a control frame",
            ProtocolViolation::ControlFrameTooBig => "server sent a control frame over 125 bytes",
            ProtocolViolation::InvalidLength => {
                "server sent a frame length that is not minimally encoded or over 63 bits"
            }
            ProtocolViolation::InvalidCloseFrame => {
                "server sent a close frame with one byte or an invalid close code"
            }
            ProtocolViolation::InvalidCloseReason => {
                "server sent a close reason that is not valid UTF-8"
            }
            ProtocolViolation::InvalidCompressedData => {
                "server sent compressed data that does not inflate"
            }
            ProtocolViolation::InvalidFrame => "server sent an invalid frame",
        })
    }
}

impl StdError for ProtocolViolation {}

/// Why a link ended, or why an attempt to open one failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The attempt to connect failed.
    ConnectFailed(ConnectError),
    /// The server sent a Close frame.
    ServerClosed {
        /// The close code, if the server sent one (1005 means none).
        code: u16,
        /// The close reason text, possibly empty.
        reason: String,
    },
    /// The connection ended without a Close frame (reset, EOF).
    Dropped,
    /// A ping went unanswered for the pong timeout.
    PongTimeout(Duration),
    /// Nothing arrived for the silence timeout.
    Silence(Duration),
    /// A write made no progress for the write timeout (a peer that stopped
    /// reading).
    WriteTimeout(Duration),
    /// A subscriber stayed behind for this long and the stall policy ends
    /// the link.
    SubscriberStalled(Duration),
    /// The peer violated the protocol, whichever layer found it (decoder,
    /// inflater, reassembler, engine), and the client closed the link with
    /// the violation's [close code](ProtocolViolation::close_code).
    Protocol(ProtocolViolation),
    /// The socket failed while the link was up (reset, broken pipe): its
    /// `std::io::Error` is the [`source`](StdError::source).
    Transport(TransportError),
    /// The application closed the client.
    ClientClosed,
    /// The ready gate did not open within its timeout: counted as a failed
    /// attempt.
    ReadyTimeout(Duration),
    /// [`Client::pause`](crate::Client::pause) took the link down.
    Paused,
}

impl DisconnectReason {
    /// The connect error, when the reason is a failed attempt.
    pub fn connect_error(&self) -> Option<&ConnectError> {
        match self {
            DisconnectReason::ConnectFailed(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DisconnectReason::ServerClosed { code, reason } if reason.is_empty() => {
                write!(f, "server closed the connection with code {code}")
            }
            DisconnectReason::ServerClosed { code, reason } => {
                write!(f, "server closed the connection with code {code}: {reason}")
            }
            DisconnectReason::Dropped => f.write_str("connection dropped without a close frame"),
            DisconnectReason::PongTimeout(t) => write!(f, "no pong within {t:?}"),
            DisconnectReason::Silence(t) => write!(f, "nothing received for {t:?}"),
            DisconnectReason::WriteTimeout(t) => write!(f, "no write progress for {t:?}"),
            DisconnectReason::SubscriberStalled(t) => {
                write!(f, "a subscriber was stalled for {t:?}")
            }
            DisconnectReason::Protocol(v) => {
                write!(
                    f,
                    "protocol violation: {v} (closed with {})",
                    v.close_code()
                )
            }
            DisconnectReason::Transport(e) => match e.kind() {
                TransportErrorKind::Io => f.write_str("the connection failed"),
                _ => write!(f, "protocol violation: {e}"),
            },
            DisconnectReason::ClientClosed => f.write_str("closed by the client"),
            DisconnectReason::ReadyTimeout(t) => {
                write!(f, "the ready gate did not open within {t:?}")
            }
            DisconnectReason::Paused => f.write_str("paused by the application"),
        }
    }
}

/// A reason's `Display` already says what its error says, in one line:
/// its source is that error's source (the `std::io::Error` of a refused
/// connection or a reset socket), so a chain never repeats itself.
impl StdError for DisconnectReason {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            DisconnectReason::ConnectFailed(e) => e.source(),
            DisconnectReason::Transport(e) => e.source(),
            _ => None,
        }
    }
}

/// A message the client could not accept, handed back to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The queue is full and the overflow policy rejects the newest message.
    Full(Message),
    /// The client is closing, closed or gave up.
    Closed(Message),
    /// The message alone is larger than the queue's byte limit.
    TooLarge(Message),
}

impl SendError {
    /// Takes the message back.
    pub fn into_message(self) -> Message {
        match self {
            SendError::Full(m) | SendError::Closed(m) | SendError::TooLarge(m) => m,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }

    /// Whether the client no longer accepts messages.
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Full(_) => "outbound queue is full",
            SendError::Closed(_) => "client is closed",
            SendError::TooLarge(_) => "message is larger than the queue's byte limit",
        })
    }
}

impl StdError for SendError {}

/// An invalid setting, reported by a constructor or builder instead of a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is out of its valid range.
    Invalid {
        /// The name of the setting, as the builder method is called.
        setting: &'static str,
        /// What the setting must satisfy.
        requirement: &'static str,
    },
    /// The URL cannot be parsed or has no host.
    InvalidUrl {
        /// The URL as given, with credentials removed.
        url: String,
    },
    /// The URL's scheme is not ws, wss, http or https.
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// A header name or value cannot be sent.
    InvalidHeader {
        /// The header name as given.
        name: String,
    },
    /// A subprotocol name is not a valid HTTP token.
    InvalidProtocol {
        /// The protocol name as given.
        protocol: String,
    },
    /// wss:// was requested but the crate was built without TLS support.
    TlsUnavailable,
    /// A proxy URL cannot be used (`ClientBuilder::proxy`, or a proxy
    /// variable of the environment).
    InvalidProxy {
        /// The URL as given, with any password masked.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A TLS setting cannot be used: a PEM certificate or key that does
    /// not parse, a key that does not match, an empty bundle.
    InvalidTls {
        /// The builder method the setting came from
        /// (`add_root_certificate`, `identity`).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The client was started outside a running actix `System`.
    NoSystem,
    /// The arbiter given to `start_on` is not running.
    ArbiterStopped,
}

impl ConfigError {
    pub(crate) fn invalid(setting: &'static str, requirement: &'static str) -> Self {
        ConfigError::Invalid {
            setting,
            requirement,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid {
                setting,
                requirement,
            } => write!(f, "invalid setting `{setting}`: {requirement}"),
            ConfigError::InvalidUrl { url } => write!(f, "invalid URL `{url}`"),
            ConfigError::UnsupportedScheme { scheme } => write!(
                f,
                "unsupported URL scheme `{scheme}` (expected ws, wss, http or https)"
            ),
            ConfigError::InvalidHeader { name } => write!(f, "invalid header `{name}`"),
            ConfigError::InvalidProtocol { protocol } => {
                write!(f, "invalid subprotocol name `{protocol}`")
            }
            ConfigError::TlsUnavailable => {
                f.write_str("wss:// needs the `rustls` feature of actix-tether")
            }
            ConfigError::InvalidProxy { url, reason } => {
                write!(f, "invalid proxy `{url}`: {reason}")
            }
            ConfigError::InvalidTls { setting, reason } => {
                write!(f, "invalid TLS setting `{setting}`: {reason}")
            }
            ConfigError::NoSystem => f.write_str("the client must start inside an actix System"),
            ConfigError::ArbiterStopped => {
                f.write_str("the arbiter to start the client on has stopped")
            }
        }
    }
}

impl StdError for ConfigError {}

/// Why [`Client::close`](crate::Client::close) or a stats query failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseError {
    /// The client was already closed (or its actors are gone).
    AlreadyClosed,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client is already closed")
    }
}

impl StdError for CloseError {}

/// Why [`Client::connected`](crate::Client::connected) stopped waiting
/// before a link came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotConnected {
    /// Retries stopped ([`Event::GaveUp`](crate::Event::GaveUp)).
    GaveUp,
    /// The client is closing or closed.
    Closed,
}

impl fmt::Display for NotConnected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotConnected::GaveUp => "the client gave up before a link came up",
            NotConnected::Closed => "the client closed before a link came up",
        })
    }
}

impl StdError for NotConnected {}

/// Why [`Client::confirmed`](crate::Client::confirmed) or a
/// [`Receipt`](crate::Receipt) could not confirm delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unconfirmed {
    /// A link ended after writing some of them and before a Pong confirmed
    /// them, and replay is off: the server may not have them (they are
    /// counted in [`Stats::possibly_lost`](crate::Stats::possibly_lost)).
    PossiblyLost,
    /// The client closed or gave up first.
    Closed,
    /// The overflow policy dropped the message before it was written
    /// (reported as [`Event::Dropped`](crate::Event::Dropped)).
    Dropped,
}

impl fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unconfirmed::PossiblyLost => {
                "a link ended before a Pong confirmed the messages: they may be lost"
            }
            Unconfirmed::Closed => "the client closed before the messages were confirmed",
            Unconfirmed::Dropped => "the overflow policy dropped the message",
        })
    }
}

impl StdError for Unconfirmed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        let retry = |e: ConnectError| e.is_retryable();
        assert!(retry(ConnectError::new(ConnectErrorKind::Refused)));
        assert!(retry(ConnectError::new(ConnectErrorKind::Timeout)));
        assert!(retry(ConnectError::http(503, None)));
        assert!(retry(ConnectError::http(429, None)));
        assert!(!retry(ConnectError::http(401, None)));
        assert!(!retry(ConnectError::http(404, None)));
        assert!(!retry(ConnectError::new(
            ConnectErrorKind::ProtocolMismatch
        )));
        assert!(ConnectError::http(404, None).is_retryable_with(true));
    }

    #[test]
    fn connect_error_exposes_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "nope");
        let e = ConnectError::with_source(ConnectErrorKind::Refused, io);
        assert_eq!(e.to_string(), "connection refused");
        let source = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(source.map(|s| s.to_string()).as_deref(), Some("nope"));
    }

    #[test]
    fn a_transport_violation_names_its_kind_and_close_code() {
        use ProtocolViolation as V;
        for (v, kind, code) in [
            (V::MaskedFrame, TransportErrorKind::Protocol, 1002),
            (V::InvalidLength, TransportErrorKind::Protocol, 1002),
            (V::FrameTooBig, TransportErrorKind::FrameTooBig, 1009),
            (V::MessageTooBig, TransportErrorKind::MessageTooBig, 1009),
            (V::InvalidUtf8, TransportErrorKind::InvalidData, 1007),
            (V::InvalidCloseReason, TransportErrorKind::InvalidData, 1007),
        ] {
            let e = TransportError::protocol(v);
            assert_eq!(
                (e.kind(), e.violation(), e.close_code()),
                (kind, Some(v), Some(code))
            );
            assert_eq!(e.to_string(), v.to_string());
        }
        // A transport that only names a kind: the violation it implies.
        let io = || std::io::Error::other("codec said no");
        let e = TransportError::new(TransportErrorKind::Protocol, io());
        assert_eq!(e.violation(), Some(V::InvalidFrame));
        let e = TransportError::new(TransportErrorKind::Io, io());
        assert_eq!((e.violation(), e.close_code()), (None, None));
    }

    #[test]
    fn a_connect_error_names_the_server_it_failed_with() {
        let at = |kind| {
            ConnectError::new(kind)
                .with_target("127.0.0.1:9001")
                .to_string()
        };
        assert_eq!(
            at(ConnectErrorKind::Refused),
            "connection refused by 127.0.0.1:9001"
        );
        assert_eq!(
            at(ConnectErrorKind::Timeout),
            "connecting to 127.0.0.1:9001 timed out"
        );
        assert_eq!(
            at(ConnectErrorKind::Certificate),
            "server certificate not trusted for 127.0.0.1:9001"
        );
        // Where the text is about the proxy or the answer, not the server,
        // the target is kept but not shown.
        assert_eq!(
            at(ConnectErrorKind::ProxyRefused),
            "proxy refused the tunnel"
        );
        assert_eq!(
            ConnectError::new(ConnectErrorKind::Refused)
                .with_target("h:1")
                .target(),
            Some("h:1")
        );
    }

    #[test]
    fn no_level_of_a_chain_repeats_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let reasons = [
            DisconnectReason::ConnectFailed(ConnectError::with_source(
                ConnectErrorKind::Refused,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "os refused"),
            )),
            DisconnectReason::Transport(TransportError::new(TransportErrorKind::Io, io)),
            DisconnectReason::Protocol(ProtocolViolation::InvalidUtf8),
            DisconnectReason::ConnectFailed(ConnectError::http(503, None)),
        ];
        let want = [
            "connect failed: connection refused: os refused",
            "the connection failed: reset by peer",
            "protocol violation: server sent text that is not valid UTF-8 (closed with 1007)",
            "connect failed: server refused the upgrade with HTTP 503",
        ];
        for (reason, want) in reasons.iter().zip(want) {
            assert_eq!(ErrorChain(reason).to_string(), want);
        }
    }
}
