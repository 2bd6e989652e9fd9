//! The transport seam: how a connection actor obtains a socket.
//!
//! The engine never names a socket library. A [`Transport`] turns a
//! [`ConnectRequest`] into a [`Link`]: a stream of decoded [`Frame`]s and a
//! sink of [`OutFrame`]s. `actix-tether` plugs awc in here; its test kit plugs
//! in an in-memory mock, which is what makes the engine testable on a paused
//! clock.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::{Sink, Stream};

use crate::error::{ConnectError, TransportError};
use crate::frame::{Frame, OutFrame};

/// Inbound frames of one link.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, TransportError>>>>;

/// Outbound frames of one link.
pub type FrameSink = Pin<Box<dyn Sink<OutFrame, Error = TransportError>>>;

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

    /// The URL without credentials (user info) and without its query, fit for
    /// logs and spans.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Removes user info and the query from a URL string, for logging.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    };
    match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

/// An open WebSocket connection, as handed to the connection actor.
pub struct Link {
    /// Decoded inbound frames; the stream ends when the socket closes.
    pub stream: FrameStream,
    /// Outbound frames; flushing it pushes them onto the socket.
    pub sink: FrameSink,
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("protocol", &self.protocol)
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
    fn redaction_removes_credentials_and_query() {
        assert_eq!(
            redact_url("wss://user:secret@example.com:8443/feed?token=abc#x"),
            "wss://example.com:8443/feed"
        );
        assert_eq!(redact_url("ws://127.0.0.1:9/"), "ws://127.0.0.1:9/");
        assert_eq!(redact_url("ws://h?token=1"), "ws://h");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
