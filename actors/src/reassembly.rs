//! Reassembly of fragmented messages and UTF-8 validation of text.
//!
//! awc hands continuation frames up raw and does not check text; this pure
//! state machine turns the frame sequence into complete [`Message`]s, or a
//! [`ProtocolViolation`] that the connection answers with a close code.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::ProtocolViolation;
use crate::frame::{Fragment, Message};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Collects data frames into messages of at most `max_message` bytes.
#[derive(Debug)]
pub(crate) struct Reassembler {
    max_message: usize,
    partial: Option<(Kind, BytesMut)>,
}

impl Reassembler {
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
        }
    }

    /// An unfragmented data frame. It is a violation while a fragmented
    /// message is in progress.
    pub(crate) fn whole(
        &mut self,
        binary: bool,
        data: Bytes,
    ) -> Result<Message, ProtocolViolation> {
        if self.partial.is_some() {
            return Err(ProtocolViolation::UnexpectedContinuation);
        }
        if data.len() > self.max_message {
            return Err(ProtocolViolation::MessageTooBig);
        }
        if binary {
            Ok(Message::Binary(data))
        } else {
            text(data)
        }
    }

    /// A continuation frame; returns the message when `fragment` completes it.
    pub(crate) fn fragment(
        &mut self,
        fragment: Fragment,
        data: Bytes,
    ) -> Result<Option<Message>, ProtocolViolation> {
        match (fragment, self.partial.as_mut()) {
            (Fragment::FirstText | Fragment::FirstBinary, Some(_)) => {
                Err(ProtocolViolation::UnexpectedContinuation)
            }
            (Fragment::Continue | Fragment::Last, None) => {
                Err(ProtocolViolation::UnexpectedContinuation)
            }
            (Fragment::FirstText | Fragment::FirstBinary, None) => {
                if data.len() > self.max_message {
                    return Err(ProtocolViolation::MessageTooBig);
                }
                let kind = if fragment == Fragment::FirstText {
                    Kind::Text
                } else {
                    Kind::Binary
                };
                self.partial = Some((kind, BytesMut::from(&data[..])));
                Ok(None)
            }
            (Fragment::Continue | Fragment::Last, Some((_, buf))) => {
                if buf.len() + data.len() > self.max_message {
                    self.partial = None;
                    return Err(ProtocolViolation::MessageTooBig);
                }
                buf.extend_from_slice(&data);
                if fragment == Fragment::Continue {
                    return Ok(None);
                }
                match self.partial.take() {
                    Some((Kind::Binary, buf)) => Ok(Some(Message::Binary(buf.freeze()))),
                    Some((Kind::Text, buf)) => text(buf.freeze()).map(Some),
                    None => Err(ProtocolViolation::UnexpectedContinuation),
                }
            }
        }
    }
}

fn text(data: Bytes) -> Result<Message, ProtocolViolation> {
    ByteString::try_from(data)
        .map(Message::Text)
        .map_err(|_| ProtocolViolation::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn joins_fragments_in_order() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.fragment(Fragment::FirstText, b(b"he")), Ok(None));
        assert_eq!(r.fragment(Fragment::Continue, b(b"ll")), Ok(None));
        assert_eq!(
            r.fragment(Fragment::Last, b(b"o")),
            Ok(Some(Message::Text("hello".into())))
        );
        assert_eq!(
            r.fragment(Fragment::FirstBinary, b(b"\x00"))
                .and(r.fragment(Fragment::Last, b(b"\x01"))),
            Ok(Some(Message::Binary(b(b"\x00\x01"))))
        );
    }

    #[test]
    fn utf8_is_checked_on_the_whole_message() {
        let mut r = Reassembler::new(100);
        // "é" split across two fragments is valid once joined.
        assert_eq!(r.fragment(Fragment::FirstText, b(&[0xC3])), Ok(None));
        assert_eq!(
            r.fragment(Fragment::Last, b(&[0xA9])),
            Ok(Some(Message::Text("é".into())))
        );
        assert_eq!(
            r.whole(false, b(&[0xFF])),
            Err(ProtocolViolation::InvalidUtf8)
        );
    }

    #[test]
    fn enforces_the_size_limit() {
        let mut r = Reassembler::new(4);
        assert_eq!(
            r.whole(true, b(b"12345")),
            Err(ProtocolViolation::MessageTooBig)
        );
        assert_eq!(r.fragment(Fragment::FirstBinary, b(b"123")), Ok(None));
        assert_eq!(
            r.fragment(Fragment::Last, b(b"45")),
            Err(ProtocolViolation::MessageTooBig)
        );
        assert_eq!(r.whole(true, b(b"1234")), Ok(Message::Binary(b(b"1234"))));
    }

    #[test]
    fn rejects_out_of_place_frames() {
        let mut r = Reassembler::new(100);
        assert_eq!(
            r.fragment(Fragment::Continue, b(b"x")),
            Err(ProtocolViolation::UnexpectedContinuation)
        );
        assert_eq!(r.fragment(Fragment::FirstText, b(b"x")), Ok(None));
        assert_eq!(
            r.whole(false, b(b"y")),
            Err(ProtocolViolation::UnexpectedContinuation)
        );
        assert_eq!(
            r.fragment(Fragment::FirstBinary, b(b"x")),
            Err(ProtocolViolation::UnexpectedContinuation)
        );
    }
}
