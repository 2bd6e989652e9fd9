//! Reassembly of fragmented messages and UTF-8 validation of text.
//!
//! A transport hands continuation frames up raw (the mock's unchecked, the
//! awc transport's checked only as far as it must fail fast); this pure
//! state machine turns the frame sequence into complete [`Message`]s, or a
//! [`ProtocolViolation`] that the connection answers with a close code.
//!
//! Text is checked as it comes: a fragment whose bytes cannot begin valid
//! UTF-8, whatever follows, fails at once (RFC 6455 §8.1 asks to fail fast),
//! not when the last fragment arrives. A sequence cut at a fragment's end
//! waits for the next fragment.

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
    partial: Option<Partial>,
}

/// A fragmented message in progress.
#[derive(Debug)]
struct Partial {
    kind: Kind,
    buf: BytesMut,
    /// Text: the length of the prefix known to be whole, valid UTF-8.
    checked: usize,
}

impl Partial {
    /// Text: fails if what arrived cannot begin valid UTF-8; a sequence cut
    /// at the end waits for more.
    fn check(&mut self) -> Result<(), ProtocolViolation> {
        if self.kind == Kind::Binary {
            return Ok(());
        }
        match std::str::from_utf8(&self.buf[self.checked..]) {
            Ok(_) => {
                self.checked = self.buf.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() => {
                self.checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(ProtocolViolation::InvalidUtf8),
        }
    }
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
                let mut partial = Partial {
                    kind,
                    buf: BytesMut::from(&data[..]),
                    checked: 0,
                };
                partial.check()?;
                self.partial = Some(partial);
                Ok(None)
            }
            (Fragment::Continue | Fragment::Last, Some(partial)) => {
                if partial.buf.len() + data.len() > self.max_message {
                    self.partial = None;
                    return Err(ProtocolViolation::MessageTooBig);
                }
                partial.buf.extend_from_slice(&data);
                if fragment == Fragment::Continue {
                    if let Err(v) = partial.check() {
                        self.partial = None;
                        return Err(v);
                    }
                    return Ok(None);
                }
                match self.partial.take() {
                    Some(Partial {
                        kind: Kind::Binary,
                        buf,
                        ..
                    }) => Ok(Some(Message::Binary(buf.freeze()))),
                    Some(Partial { buf, .. }) => text(buf.freeze()).map(Some),
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
    fn invalid_utf8_fails_at_the_fragment_that_makes_it_invalid() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.fragment(Fragment::FirstText, b(b"ok ")), Ok(None));
        // Autobahn 6.4.1: the second of three fragments holds bytes no
        // continuation can make valid (a code point above U+10FFFF).
        assert_eq!(
            r.fragment(Fragment::Continue, b(&[0xF4, 0x90, 0x80, 0x80])),
            Err(ProtocolViolation::InvalidUtf8)
        );
        let mut r = Reassembler::new(100);
        assert_eq!(
            r.fragment(Fragment::FirstText, b(&[0xFF])),
            Err(ProtocolViolation::InvalidUtf8),
            "even the first fragment"
        );
        // A sequence cut at the fragment's end is not invalid yet.
        let mut r = Reassembler::new(100);
        assert_eq!(r.fragment(Fragment::FirstText, b(&[0xF0, 0x9F])), Ok(None));
        assert_eq!(r.fragment(Fragment::Continue, b(&[0x98])), Ok(None));
        assert_eq!(
            r.fragment(Fragment::Last, b(&[0x80])),
            Ok(Some(Message::Text("😀".into())))
        );
        // Binary is not text.
        assert_eq!(r.fragment(Fragment::FirstBinary, b(&[0xFF])), Ok(None));
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
                (2 | 3, None) if *kind == 2 && !could_be_utf8(data) => {
                    Out::Violation(ProtocolViolation::InvalidUtf8)
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
                    } else if *k == 4 && !binary && !could_be_utf8(&buf) {
                        Out::Violation(ProtocolViolation::InvalidUtf8)
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

    /// Whether `bytes` is valid UTF-8 or a prefix of it: some bytes could
    /// follow that make it valid (tried naively: every continuation of up
    /// to three bytes).
    fn could_be_utf8(bytes: &[u8]) -> bool {
        if std::str::from_utf8(bytes).is_ok() {
            return true;
        }
        let tails: Vec<Vec<u8>> = (1..=3)
            .flat_map(|n| {
                (0..64u8).map(move |x| {
                    let mut t = vec![0x80 | x; n];
                    t[n - 1] = 0x80 | x;
                    t
                })
            })
            .collect();
        tails.iter().any(|t| {
            let mut v = bytes.to_vec();
            v.extend_from_slice(t);
            std::str::from_utf8(&v).is_ok()
        })
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
