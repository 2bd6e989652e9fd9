//! The data that crosses the transport seam.

use bytes::Bytes;
use bytestring::ByteString;

/// A complete WebSocket data message, sent or received.
///
/// Payloads are reference-counted: cloning a message never copies its bytes,
/// so one inbound message fans out to any number of subscribers for free.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A UTF-8 text message.
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes, for either kind (a text message's UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// The payload, for either kind, without copying it.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The text, for a text message, without copying it; a binary message
    /// comes back as it was.
    ///
    /// # Errors
    ///
    /// A binary message, handed back unchanged.
    pub fn into_text(self) -> Result<ByteString, Message> {
        match self {
            Message::Text(t) => Ok(t),
            other => Err(other),
        }
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<ByteString> for Message {
    fn from(s: ByteString) -> Self {
        Message::Text(s)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b.into())
    }
}

/// A close code and reason, as carried by a Close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code (1000 normal, 1001 going away, ...).
    pub code: u16,
    /// The reason text, possibly empty.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Which part of a fragmented message a continuation frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// The first frame of a fragmented text message.
    FirstText,
    /// The first frame of a fragmented binary message.
    FirstBinary,
    /// A middle frame.
    Continue,
    /// The final frame.
    Last,
}

/// A frame as the transport decoded it, before the connection reassembles
/// fragments, checks UTF-8 and answers control frames.
///
/// Text payloads are raw bytes here: the connection validates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An unfragmented text frame (not yet UTF-8 checked).
    Text(Bytes),
    /// An unfragmented binary frame.
    Binary(Bytes),
    /// Part of a fragmented message.
    Continuation(Fragment, Bytes),
    /// A Ping; the connection answers with a Pong echoing the payload.
    Ping(Bytes),
    /// A Pong.
    Pong(Bytes),
    /// A Close, with the code and reason if the peer sent them.
    Close(Option<CloseFrame>),
}

/// A frame the connection asks the transport to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFrame {
    /// A data message.
    Message(Message),
    /// A Ping with a payload of at most 125 bytes.
    Ping(Bytes),
    /// A Pong echoing a Ping's payload.
    Pong(Bytes),
    /// A Close frame.
    Close(Option<CloseFrame>),
}

impl OutFrame {
    /// This frame, borrowed.
    pub fn borrowed(&self) -> OutRef<'_> {
        match self {
            OutFrame::Message(m) => OutRef::Message(m),
            OutFrame::Ping(b) => OutRef::Ping(b),
            OutFrame::Pong(b) => OutRef::Pong(b),
            OutFrame::Close(c) => OutRef::Close(c.as_ref()),
        }
    }
}

/// A frame to write, borrowed: the engine keeps a batch of messages until the
/// transport has flushed it, so that a batch a dying link did not take can go
/// out on the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutRef<'a> {
    /// A data message.
    Message(&'a Message),
    /// A Ping with a payload of at most 125 bytes.
    Ping(&'a Bytes),
    /// A Pong echoing a Ping's payload.
    Pong(&'a Bytes),
    /// A Close frame.
    Close(Option<&'a CloseFrame>),
}

impl OutRef<'_> {
    /// An owned copy (payloads are reference-counted, not copied).
    pub fn to_frame(self) -> OutFrame {
        match self {
            OutRef::Message(m) => OutFrame::Message(m.clone()),
            OutRef::Ping(b) => OutFrame::Ping(b.clone()),
            OutRef::Pong(b) => OutFrame::Pong(b.clone()),
            OutRef::Close(c) => OutFrame::Close(c.cloned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_cover_both_kinds_without_copying() {
        let text = Message::from("héllo");
        assert!(text.is_text() && !text.is_binary());
        assert_eq!(text.as_bytes(), "héllo".as_bytes());
        assert_eq!(text.as_ref(), "héllo".as_bytes());
        let bytes = Bytes::from_static(b"\x00\x01");
        let binary = Message::Binary(bytes.clone());
        assert!(binary.is_binary() && !binary.is_text());
        assert_eq!(binary.as_bytes(), b"\x00\x01");
        // The same buffer comes back, not a copy.
        assert_eq!(binary.clone().into_bytes().as_ptr(), bytes.as_ptr());
        assert_eq!(binary.clone().into_text(), Err(binary));
        let shared = ByteString::from("shared");
        let from_text = Message::Text(shared.clone()).into_bytes();
        assert_eq!(from_text.as_ptr(), shared.as_bytes().as_ptr());
        assert_eq!(Message::Text(shared.clone()).into_text(), Ok(shared));
    }
}
