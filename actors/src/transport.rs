//! The transport seam: how a connection actor obtains a socket.
//!
//! The engine never names a socket library. A [`Transport`] turns a
//! [`ConnectRequest`] into a [`Link`]: a stream of decoded [`Frame`]s and a
//! [`FrameWriter`] that encodes borrowed frames ([`OutRef`]) and flushes them.
//! Any `Sink` of owned [`OutFrame`]s becomes a writer through [`SinkWriter`]. `actix-tether` plugs awc in here; its test kit plugs
//! in an in-memory mock, which is what makes the engine testable on a paused
//! clock.

use std::cell::Cell;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::{Sink, Stream};

use crate::error::{ConnectError, TransportError};
use crate::frame::{Frame, Message, OutFrame, OutRef};

/// Inbound frames of one link.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, TransportError>>>>;

/// The outbound half of a link, in the shape of a `Sink` whose items are
/// borrowed.
///
/// The engine calls `poll_ready` before each `start_send`, and `poll_flush`
/// once per batch; it keeps each batch of messages until `poll_flush` reports
/// it written, so that a batch a dying link did not take goes out on the next
/// link instead of being lost. Encoding from a borrow is what lets it keep
/// them without copying or reference-count traffic per message.
pub trait FrameWriter {
    /// Ready for one more frame; may write out a full buffer first.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;

    /// Encodes `frame` into the write buffer.
    ///
    /// # Errors
    ///
    /// A [`TransportError`] when the link cannot take it: the engine ends
    /// the link and writes the batch on the next one.
    fn start_send(&mut self, frame: OutRef<'_>) -> Result<(), TransportError>;

    /// Writes everything buffered to the socket.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;

    /// Encodes a run of messages from the head of `messages`; returns how
    /// many it took, at least one when `messages` is not empty.
    ///
    /// The default takes one through `poll_ready` and `start_send`; a
    /// transport can take as many as its buffer holds in one call, saving a
    /// dynamic call pair per message.
    fn poll_write_messages(
        &mut self,
        cx: &mut Context<'_>,
        messages: &[Message],
    ) -> Poll<Result<usize, TransportError>> {
        let Some(first) = messages.first() else {
            return Poll::Ready(Ok(0));
        };
        match self.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(self.start_send(OutRef::Message(first)).map(|()| 1)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Bytes the socket below this writer has accepted so far, if the
    /// transport counts them. The heartbeat uses them as proof that a busy
    /// link still moves data (see [`FrameWriter::unsent_bound`]). The
    /// default is `None`: the engine then counts the payload bytes of the
    /// messages the writer took.
    fn bytes_accepted(&self) -> Option<u64> {
        None
    }

    /// How many of the data messages handed to this writer (by
    /// `start_send` and `poll_write_messages`, in order) the socket below
    /// has not wholly accepted yet: the last ones handed, still (or partly)
    /// in the writer's buffer.
    ///
    /// When a link dies in the middle of a batch, the messages the socket
    /// took whole are settled like flushed ones (without replay: possibly
    /// lost, never written again; with replay: written again on the next
    /// link unless a Pong confirmed them), and only those it never took
    /// whole go back to the head of the queue. The default, `None`, means
    /// the transport cannot tell: a batch cut mid-write then goes back
    /// whole, less what a Pong confirmed, and what the socket took of it
    /// may reach the server twice.
    fn messages_unaccepted(&self) -> Option<u64> {
        None
    }

    /// The most accepted bytes that may still wait unsent below this writer
    /// (in the kernel). More than this accepted within one pong timeout
    /// means some left for the peer, whose TCP therefore acknowledged data:
    /// the heartbeat then waits longer for a Pong that is stuck behind the
    /// backlog. `u64::MAX` never counts as progress. The default is 0 (what
    /// the writer takes has left it, as with an in-memory channel).
    fn unsent_bound(&self) -> u64 {
        0
    }
}

impl fmt::Debug for dyn FrameWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FrameWriter")
    }
}

/// A [`FrameWriter`] over any `Sink` of owned frames: each frame is cloned
/// on its way in (payloads are reference-counted, so a clone copies no
/// payload bytes).
#[derive(Debug)]
pub struct SinkWriter<S>(pub S);

impl<S> FrameWriter for SinkWriter<S>
where
    S: Sink<OutFrame, Error = TransportError> + Unpin,
{
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Pin::new(&mut self.0).poll_ready(cx)
    }

    fn start_send(&mut self, frame: OutRef<'_>) -> Result<(), TransportError> {
        Pin::new(&mut self.0).start_send(frame.to_frame())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    /// A sink has accepted every frame `start_send` gave it.
    fn messages_unaccepted(&self) -> Option<u64> {
        Some(0)
    }
}

/// Everything needed to open one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The URL (`ws://`, `wss://`, `http://` or `https://`).
    pub url: String,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
}

impl ConnectRequest {
    /// A request for `url` with no extra headers or subprotocols.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Adds a request header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The URL without credentials (see [`redact_url`]), fit for logs,
    /// spans and events.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// A URL string fit for logs and events: without user info or fragment, and
/// with the value of every query parameter replaced by `***`, keys kept
/// (`?streams=btc&token=abc` becomes `?streams=***&token=***`): a query
/// value may be a credential whatever its key is called (`?jwt=`, `?t=`).
/// Path segments are shown as they are; mask path tokens with a redaction
/// hook ([`Engine::redact_url`](crate::Engine::redact_url)).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let tail = tail.split_once('#').map_or(tail, |(t, _)| t);
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut out = match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) => {
                    out.push_str(key);
                    out.push_str("=***");
                }
                None => out.push_str(pair),
            }
        }
    }
    out
}

/// An open WebSocket connection, as handed to the connection actor.
///
/// Built with [`Link::new`] and the `with_*` steps.
#[non_exhaustive]
pub struct Link {
    /// Decoded inbound frames; the stream ends when the socket closes.
    pub stream: FrameStream,
    /// Outbound frames; flushing it pushes them onto the socket.
    pub writer: Box<dyn FrameWriter>,
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
    /// The extensions the server agreed to, as `Sec-WebSocket-Extensions`
    /// says them (`permessage-deflate; client_max_window_bits=12`), if any.
    pub extensions: Option<String>,
    /// Bytes read from the socket so far, if the transport counts them
    /// (frame headers and compressed payloads: [`Stats::wire_bytes_in`]).
    ///
    /// [`Stats::wire_bytes_in`]: crate::Stats::wire_bytes_in
    pub bytes_received: Option<Rc<Cell<u64>>>,
    /// The proxy the link goes through, its password masked
    /// (`http://user:****@proxy:3128`), or `None` for a direct connection.
    pub proxy: Option<String>,
}

impl Link {
    /// A link reading `stream` and writing with `writer`, without a
    /// subprotocol or extensions.
    pub fn new(stream: FrameStream, writer: Box<dyn FrameWriter>) -> Self {
        Self {
            stream,
            writer,
            protocol: None,
            extensions: None,
            bytes_received: None,
            proxy: None,
        }
    }

    /// The subprotocol the server selected.
    pub fn with_protocol(mut self, protocol: Option<String>) -> Self {
        self.protocol = protocol;
        self
    }

    /// The extensions the server agreed to.
    pub fn with_extensions(mut self, extensions: Option<String>) -> Self {
        self.extensions = extensions;
        self
    }

    /// The proxy the link goes through, its password masked.
    pub fn with_proxy(mut self, proxy: Option<String>) -> Self {
        self.proxy = proxy;
        self
    }

    /// The transport's count of bytes read from the socket.
    pub fn with_bytes_received(mut self, counter: Rc<Cell<u64>>) -> Self {
        self.bytes_received = Some(counter);
        self
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Opens WebSocket connections.
///
/// Implementations run on the actor's own thread, so they need not be `Send`
/// (awc's client is not). The supervisor bounds each call with the connect
/// timeout; a transport may enforce its own as well.
pub trait Transport: 'static {
    /// Opens a connection for `request`.
    fn connect(
        &mut self,
        request: &ConnectRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Result<Link, ConnectError>>;
}

impl fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transport")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_credentials_and_every_query_value() {
        assert_eq!(
            redact_url("wss://user:secret@example.com:8443/feed?token=abc#x"),
            "wss://example.com:8443/feed?token=***"
        );
        assert_eq!(redact_url("ws://127.0.0.1:9/"), "ws://127.0.0.1:9/");
        assert_eq!(
            redact_url("wss://h/stream?streams=btcusdt@trade&listenKey=k1&x&api_key=k2"),
            "wss://h/stream?streams=***&listenKey=***&x&api_key=***"
        );
        // Issue 21, item 12: keys that do not look like credentials.
        assert_eq!(
            redact_url("wss://h/ws?jwt=SECRET&t=SECRET"),
            "wss://h/ws?jwt=***&t=***"
        );
        assert_eq!(redact_url("wss://u@h/ws?=v"), "wss://h/ws?=***");
        assert_eq!(redact_url("ws://h?"), "ws://h");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
