//! How typed values become frames and back.

use std::fmt;
use std::sync::Arc;

use actix_tether_actors::{BoxSource, Message};
use serde_json::Value;

/// Turns values into messages and messages into values.
///
/// The intermediate form is a [`serde_json::Value`], so routing keys and
/// correlation ids are found the same way whatever the wire format; a binary
/// codec (CBOR, MessagePack) maps its frames to and from that form.
pub trait Codec: Send + Sync + 'static {
    /// Encodes `value` as one message.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] for a value the format cannot carry.
    fn encode(&self, value: &Value) -> Result<Message, CodecError>;
    /// Decodes one message.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] for a message that is not in the format.
    fn decode(&self, message: &Message) -> Result<Value, CodecError>;
}

/// JSON in text frames (binary frames holding JSON are accepted too).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn encode(&self, value: &Value) -> Result<Message, CodecError> {
        serde_json::to_string(value)
            .map(Message::from)
            .map_err(CodecError::new)
    }

    fn decode(&self, message: &Message) -> Result<Value, CodecError> {
        match message {
            Message::Text(t) => serde_json::from_str(t),
            Message::Binary(b) => serde_json::from_slice(b),
        }
        .map_err(CodecError::new)
    }
}

/// A value that could not be encoded, or a message that could not be
/// decoded.
#[derive(Clone)]
pub struct CodecError(BoxSource);

impl CodecError {
    /// Wraps the codec's own error.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(source))
    }
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodecError({})", self.0)
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The codec's own error is the source: not repeated here.
        f.write_str("codec error")
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0 as &(dyn std::error::Error + 'static))
    }
}
