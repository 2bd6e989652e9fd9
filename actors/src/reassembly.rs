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

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// A deliberately naive model of RFC 6455 reassembly.
    #[derive(Default)]
    struct Model {
        partial: Option<(bool, Vec<u8>)>,
    }

    #[derive(Debug, PartialEq)]
    enum Out {
        Nothing,
        Msg(bool, Vec<u8>),
        Violation(ProtocolViolation),
    }

    impl Model {
        fn step(&mut self, frame: &(u8, Vec<u8>), max: usize) -> Out {
            let (kind, data) = frame;
            let finish = |binary: bool, bytes: Vec<u8>| {
                if bytes.len() > max {
                    Out::Violation(ProtocolViolation::MessageTooBig)
                } else if !binary && std::str::from_utf8(&bytes).is_err() {
                    Out::Violation(ProtocolViolation::InvalidUtf8)
                } else {
                    Out::Msg(binary, bytes)
                }
            };
            match (kind, self.partial.take()) {
                (0 | 1, Some(_)) => Out::Violation(ProtocolViolation::UnexpectedContinuation),
                (0 | 1, None) => finish(*kind == 1, data.clone()),
                (2 | 3, Some(_)) => Out::Violation(ProtocolViolation::UnexpectedContinuation),
                (2 | 3, None) if data.len() > max => {
                    Out::Violation(ProtocolViolation::MessageTooBig)
                }
                (2 | 3, None) => {
                    self.partial = Some((*kind == 3, data.clone()));
                    Out::Nothing
                }
                (_, None) => Out::Violation(ProtocolViolation::UnexpectedContinuation),
                (k, Some((binary, mut buf))) => {
                    buf.extend_from_slice(data);
                    if buf.len() > max {
                        Out::Violation(ProtocolViolation::MessageTooBig)
                    } else if *k == 4 {
                        self.partial = Some((binary, buf));
                        Out::Nothing
                    } else {
                        finish(binary, buf)
                    }
                }
            }
        }
    }

    fn real_step(r: &mut Reassembler, frame: &(u8, Vec<u8>)) -> Out {
        let data = Bytes::copy_from_slice(&frame.1);
        let res = match frame.0 {
            0 => r.whole(false, data).map(Some),
            1 => r.whole(true, data).map(Some),
            2 => r.fragment(Fragment::FirstText, data),
            3 => r.fragment(Fragment::FirstBinary, data),
            4 => r.fragment(Fragment::Continue, data),
            _ => r.fragment(Fragment::Last, data),
        };
        match res {
            Ok(None) => Out::Nothing,
            Ok(Some(Message::Text(t))) => Out::Msg(false, t.as_bytes().to_vec()),
            Ok(Some(Message::Binary(b))) => Out::Msg(true, b.to_vec()),
            Err(v) => Out::Violation(v),
        }
    }

    fn frames() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        // Bytes drawn mostly from ASCII plus the pieces of "é" and an invalid
        // byte, so valid and invalid UTF-8 both show up, split anywhere.
        let byte =
            prop_oneof![4 => 0x61u8..0x7a, 1 => Just(0xC3u8), 1 => Just(0xA9u8), 1 => Just(0xFFu8)];
        proptest::collection::vec((0u8..6, proptest::collection::vec(byte, 0..6)), 0..40)
    }

    proptest! {
        #[test]
        fn matches_the_model_on_any_frame_sequence(seq in frames(), max in 1usize..24) {
            let mut real = Reassembler::new(max);
            let mut model = Model::default();
            for frame in &seq {
                let want = model.step(frame, max);
                let got = real_step(&mut real, frame);
                let violated = matches!(want, Out::Violation(_));
                prop_assert_eq!(got, want);
                if violated {
                    // The connection closes on a violation: nothing follows.
                    break;
                }
            }
        }

        #[test]
        fn any_split_of_valid_messages_reassembles_exactly(
            texts in proptest::collection::vec("\\PC{0,12}", 1..8),
            cuts in proptest::collection::vec(0usize..64, 1..8),
        ) {
            let mut r = Reassembler::new(1 << 20);
            for (i, text) in texts.iter().enumerate() {
                let bytes = text.as_bytes();
                let cut = cuts[i % cuts.len()].min(bytes.len());
                let out = if cut == 0 {
                    r.whole(false, Bytes::copy_from_slice(bytes)).map(Some)
                } else {
                    prop_assert_eq!(r.fragment(Fragment::FirstText, Bytes::copy_from_slice(&bytes[..cut])), Ok(None));
                    r.fragment(Fragment::Last, Bytes::copy_from_slice(&bytes[cut..]))
                };
                prop_assert_eq!(out, Ok(Some(Message::Text(text.as_str().into()))));
            }
        }
    }
}
