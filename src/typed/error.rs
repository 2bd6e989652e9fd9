//! Errors of the typed layer.

use std::fmt;

use actix_tether_actors::SendError;

use super::codec::CodecError;

/// Why a typed send or a request failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TypedError {
    /// No response within the request's timeout; the request was forgotten.
    Timeout,
    /// The link went down before the response arrived, and the request may
    /// not have reached the server (it was written, and no Pong confirmed
    /// it).
    Disconnected,
    /// The request reached the server (a Pong to a later Ping confirmed
    /// it), but the link went down before its response: the server may have
    /// acted on it. Not retried unless it was sent with
    /// `retry_on_reconnect`.
    ResponseLost,
    /// The client closed or gave up.
    Closed,
    /// The value could not be encoded (or the correlation id not placed).
    Encode(CodecError),
    /// The response could not be decoded as the expected type.
    Decode(CodecError),
    /// The client refused the message (queue full, closed): it is inside.
    Send(SendError),
    /// As many reliable messages as allowed already await their acks.
    WindowFull,
    /// As many requests as allowed already await their responses.
    TooManyRequests,
}

impl fmt::Display for TypedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypedError::Timeout => f.write_str("request timed out"),
            TypedError::Disconnected => f.write_str("link went down before the response"),
            TypedError::ResponseLost => f.write_str(
                "the request reached the server; the link went down before the response",
            ),
            TypedError::Closed => f.write_str("client is closed"),
            TypedError::Encode(_) => f.write_str("cannot encode"),
            TypedError::Decode(_) => f.write_str("cannot decode"),
            TypedError::Send(_) => f.write_str("the client refused the message"),
            TypedError::WindowFull => f.write_str("too many messages await acknowledgement"),
            TypedError::TooManyRequests => f.write_str("too many requests await a response"),
        }
    }
}

impl std::error::Error for TypedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TypedError::Encode(e) | TypedError::Decode(e) => Some(e),
            TypedError::Send(e) => Some(e),
            _ => None,
        }
    }
}
