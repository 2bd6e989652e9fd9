//! The inbound frame decoder (RFC 6455 §5, RFC 7692 §6), our own.
//!
//! It reads what a server writes and checks everything a client must:
//! reserved bits only for a negotiated extension (RSV1 for
//! permessage-deflate, on the first frame of a message), known opcodes,
//! control frames final and at most 125 bytes, close codes and reasons
//! (§5.5.1, §7.4), no mask from a server (§5.1), 63-bit lengths, and the
//! frame and message limits before any payload is buffered. Text is checked
//! for UTF-8 as its bytes arrive, within a frame still arriving too, so an
//! invalid byte fails at once (§8.1). Payloads are slices of the read buffer,
//! not copies.
//!
//! The engine checks every text message again as it turns it into a
//! `ByteString` (which only a checked conversion makes without `unsafe`), so
//! the decoder checks only what the engine would see too late: frames still
//! arriving, and the fragments of uncompressed messages. A whole
//! unfragmented frame, and inflated text (which the engine checks fragment
//! by fragment), are checked once, by the engine.

use actix_tether_actors::{CloseFrame, Fragment, Frame, ProtocolViolation};
use bytes::{Buf, Bytes, BytesMut};

use super::deflate::{InflateError, Inflater};
use super::utf8::Utf8;
use super::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV23: u8 = 0x30;
const MASKED: u8 = 0x80;

/// The most the read buffer is grown by at once for a frame still
/// arriving.
const RESERVE_STEP: usize = 64 * 1024;

/// A frame header: where the payload starts and how long it is.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    at: usize,
    len: usize,
}

/// The fragmented message in progress.
#[derive(Debug, Clone, Copy)]
struct InProgress {
    text: bool,
    compressed: bool,
    /// Bytes delivered so far (inflated, when compressed).
    size: usize,
}

/// Turns the bytes of one link into frames.
#[derive(Debug)]
pub(crate) struct Decoder {
    max_frame: usize,
    max_message: usize,
    inflater: Option<Inflater>,
    message: Option<InProgress>,
    utf8: Utf8,
    /// Payload bytes of the incomplete frame at the head of the buffer that
    /// are already checked as text.
    checked: usize,
}

impl Decoder {
    /// A decoder for frames of at most `max_frame` bytes and messages of at
    /// most `max_message` bytes (inflated), inflating with `inflater` when
    /// permessage-deflate was agreed.
    pub(crate) fn new(max_frame: usize, max_message: usize, inflater: Option<Inflater>) -> Self {
        Self {
            max_frame,
            max_message,
            inflater,
            message: None,
            utf8: Utf8::default(),
            checked: 0,
        }
    }

    /// The next whole frame at the head of `buf`, taken out of it; `None`
    /// until one has arrived.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Frame>, ProtocolViolation> {
        let Some(head) = self.head(buf)? else {
            return Ok(None);
        };
        // The limits were checked, but a limit may be usize::MAX: the sum is
        // checked too (32-bit targets included).
        let end = head
            .at
            .checked_add(head.len)
            .ok_or(ProtocolViolation::FrameTooBig)?;
        if buf.len() < end {
            if self.plain_text(&head) {
                let from = head.at + self.checked;
                if buf.len() > from {
                    self.utf8
                        .feed(&buf[from..])
                        .map_err(|_| ProtocolViolation::InvalidUtf8)?;
                    self.checked = buf.len() - head.at;
                }
            }
            // Room for what is still to come, in bounded steps: the buffer
            // grows with the bytes that arrive, never with the length a
            // header claims (a hostile header would pick the allocation).
            buf.reserve((end - buf.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        let checked = std::mem::take(&mut self.checked);
        if self.message_of(&head).compressed {
            // Inflated straight from the read buffer: the compressed bytes
            // need not become a payload of their own.
            let data = self.inflate(&head, &buf[head.at..end]);
            buf.advance(end);
            return Ok(Some(self.place(head, data?)));
        }
        let payload = if head.len == 0 {
            buf.advance(end);
            Bytes::new()
        } else {
            let mut frame = buf.split_to(end);
            frame.advance(head.at);
            frame.freeze()
        };
        let frame = match head.opcode {
            PING => Frame::Ping(payload),
            PONG => Frame::Pong(payload),
            CLOSE => Frame::Close(close_payload(&payload)?),
            _ => self.data(head, payload, checked)?,
        };
        Ok(Some(frame))
    }

    /// The message a data frame starts or continues, as it stands before
    /// the frame (for a control frame: neither text nor compressed).
    fn message_of(&self, head: &Head) -> InProgress {
        match self.message {
            Some(m) if head.opcode == CONTINUATION => m,
            _ => InProgress {
                text: head.opcode == TEXT,
                compressed: head.rsv1,
                size: 0,
            },
        }
    }

    /// Whether a frame's payload is text to check as it arrives (compressed
    /// text is checked once inflated).
    fn plain_text(&self, head: &Head) -> bool {
        let m = self.message_of(head);
        m.text && !m.compressed
    }

    /// Parses and checks the header at the head of `buf`.
    fn head(&self, buf: &[u8]) -> Result<Option<Head>, ProtocolViolation> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        let (fin, rsv1, opcode) = (first & FIN != 0, first & RSV1 != 0, first & 0x0F);
        if first & RSV23 != 0 {
            return Err(ProtocolViolation::ReservedBits);
        }
        if second & MASKED != 0 {
            return Err(ProtocolViolation::MaskedFrame);
        }
        let short = usize::from(second & 0x7F);
        match opcode {
            PING | PONG | CLOSE => {
                if !fin {
                    return Err(ProtocolViolation::FragmentedControlFrame);
                }
                if short > 125 {
                    return Err(ProtocolViolation::ControlFrameTooBig);
                }
                if rsv1 {
                    return Err(ProtocolViolation::ReservedBits);
                }
            }
            TEXT | BINARY => {
                if self.message.is_some() {
                    return Err(ProtocolViolation::UnexpectedContinuation);
                }
                if rsv1 && self.inflater.is_none() {
                    return Err(ProtocolViolation::ReservedBits);
                }
            }
            CONTINUATION => {
                if self.message.is_none() {
                    return Err(ProtocolViolation::UnexpectedContinuation);
                }
                if rsv1 {
                    return Err(ProtocolViolation::ReservedBits);
                }
            }
            _ => return Err(ProtocolViolation::ReservedOpcode),
        }
        let (at, len) = match short {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => {
                    let len = u16::from_be_bytes([a, b]);
                    if len < 126 {
                        return Err(ProtocolViolation::InvalidLength);
                    }
                    (4, usize::from(len))
                }
                _ => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(bytes) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(bytes);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(ProtocolViolation::InvalidLength);
                    }
                    if len <= 0xFFFF {
                        return Err(ProtocolViolation::InvalidLength);
                    }
                    let len = usize::try_from(len).map_err(|_| ProtocolViolation::FrameTooBig)?;
                    (10, len)
                }
                None => return Ok(None),
            },
            n => (2, n),
        };
        if len > self.max_frame {
            return Err(ProtocolViolation::FrameTooBig);
        }
        let head = Head {
            fin,
            rsv1,
            opcode,
            at,
            len,
        };
        // Compressed messages are held to the limit as they inflate.
        let m = self.message_of(&head);
        if !matches!(opcode, PING | PONG | CLOSE)
            && !m.compressed
            && len > self.max_message.saturating_sub(m.size)
        {
            return Err(ProtocolViolation::MessageTooBig);
        }
        Ok(Some(head))
    }

    /// Inflates a whole frame of a compressed message, within what is left
    /// of the message limit.
    fn inflate(&mut self, head: &Head, payload: &[u8]) -> Result<Bytes, ProtocolViolation> {
        if payload.is_empty() && head.fin && head.opcode != CONTINUATION {
            // An empty message sent whole with RSV1: nothing to inflate, and
            // the sync tail alone would leave the inflater mid-block.
            return Ok(Bytes::new());
        }
        let before = self.message_of(head).size;
        let inflater = self
            .inflater
            .as_mut()
            .ok_or(ProtocolViolation::ReservedBits)?;
        inflater
            .inflate(payload, head.fin, self.max_message - before)
            .map_err(|e| match e {
                InflateError::TooBig => ProtocolViolation::MessageTooBig,
                InflateError::Corrupt => ProtocolViolation::InvalidCompressedData,
            })
    }

    /// A whole uncompressed data frame, its text checked where the engine
    /// would see it too late.
    fn data(
        &mut self,
        head: Head,
        payload: Bytes,
        checked: usize,
    ) -> Result<Frame, ProtocolViolation> {
        let whole = head.opcode != CONTINUATION && head.fin;
        if self.message_of(&head).text && !whole {
            let invalid = |_| ProtocolViolation::InvalidUtf8;
            self.utf8.feed(&payload[checked..]).map_err(invalid)?;
            if head.fin {
                self.utf8.finish().map_err(invalid)?;
            }
        } else {
            // Checked by the engine; forget what was checked of it while it
            // arrived.
            self.utf8 = Utf8::default();
        }
        Ok(self.place(head, payload))
    }

    /// Places a data frame's (inflated) bytes in its message.
    fn place(&mut self, head: Head, data: Bytes) -> Frame {
        let first = head.opcode != CONTINUATION;
        let m = self.message_of(&head);
        self.message = (!head.fin).then_some(InProgress {
            size: m.size + data.len(),
            ..m
        });
        match (first, head.fin, m.text) {
            (true, true, true) => Frame::Text(data),
            (true, true, false) => Frame::Binary(data),
            (true, false, true) => Frame::Continuation(Fragment::FirstText, data),
            (true, false, false) => Frame::Continuation(Fragment::FirstBinary, data),
            (false, false, _) => Frame::Continuation(Fragment::Continue, data),
            (false, true, _) => Frame::Continuation(Fragment::Last, data),
        }
    }
}

/// A Close frame's payload: nothing, or a code (§7.4) and a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolViolation> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(ProtocolViolation::InvalidCloseFrame),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    // 1004-1006 and 1015 must not be sent; 1000-2999 beyond the registered
    // ones are reserved; 3000-4999 are for libraries and applications.
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(ProtocolViolation::InvalidCloseFrame);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| ProtocolViolation::InvalidCloseReason)?;
    Ok(Some(CloseFrame::new(code, reason)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use zlib_rs::{Deflate, DeflateFlush};

    use super::*;
    use crate::wire::deflate::Compression;

    /// One unmasked frame as a server writes it.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=65535 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn plain(max: usize) -> Decoder {
        Decoder::new(max, max, None)
    }

    /// A decoder with permessage-deflate agreed (`no_takeover`: the server
    /// resets its context per message).
    fn deflating(max: usize, no_takeover: bool) -> Decoder {
        let answer = if no_takeover {
            "permessage-deflate; server_no_context_takeover"
        } else {
            "permessage-deflate"
        };
        let agreed = Compression::offer().accept([answer]).unwrap().unwrap();
        Decoder::new(max, max, Some(agreed.split().0))
    }

    /// Everything `bytes` decodes to, fed whole.
    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Frame>, ProtocolViolation> {
        decode_in_pieces(d, bytes, &[]).map(|(frames, _)| frames)
    }

    /// Feeds `bytes` to `d` in pieces of the lengths `cuts` gives (then the
    /// rest at once), decoding after each piece: the frames and the bytes
    /// left undecoded, or the first error.
    fn decode_in_pieces(
        d: &mut Decoder,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Result<(Vec<Frame>, usize), ProtocolViolation> {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut at = 0;
        let mut cuts = cuts.iter();
        while at < bytes.len() {
            let end = (at + cuts.next().copied().unwrap_or(bytes.len())).min(bytes.len());
            buf.extend_from_slice(&bytes[at..end]);
            at = end;
            while let Some(f) = d.decode(&mut buf)? {
                frames.push(f);
            }
        }
        Ok((frames, buf.len()))
    }

    fn first_error(d: &mut Decoder, bytes: &[u8]) -> ProtocolViolation {
        decode_all(d, bytes).unwrap_err()
    }

    /// A server's compressor: zlib's default window and level, which the
    /// client's inflater must read whatever its own settings.
    struct Server(Deflate);

    impl Server {
        fn new() -> Self {
            Self(Deflate::new(9, false, 15))
        }

        /// One message compressed, without the sync flush's tail.
        fn compress(&mut self, data: &[u8]) -> Vec<u8> {
            let mut out = vec![0u8; data.len() * 2 + 64];
            let before = self.0.total_out();
            self.0
                .compress(data, &mut out, DeflateFlush::SyncFlush)
                .unwrap();
            out.truncate((self.0.total_out() - before) as usize);
            if out.ends_with(&[0, 0, 0xff, 0xff]) {
                out.truncate(out.len() - 4);
            }
            // An empty message right after a flush compresses to nothing;
            // RFC 7692 §7.2.3.6 sends a single 0x00 then.
            if out.is_empty() {
                out.push(0);
            }
            out
        }
    }

    /// RFC 7692 §7.2.3's examples, each a whole frame sequence, decoded
    /// one after another on one link (so the shared window of §7.2.3.2
    /// carries, and a final block of §7.2.3.4 starts the next message on a
    /// new stream).
    #[test]
    fn the_rfc_7692_examples_decode() {
        let hello = Frame::Text(Bytes::from_static(b"Hello"));
        let examples: [(&str, &[u8], Vec<Frame>); 7] = [
            (
                "7.2.3.1 one frame",
                &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                vec![hello.clone()],
            ),
            (
                "7.2.3.1 fragmented",
                &[
                    0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
                ],
                vec![
                    Frame::Continuation(Fragment::FirstText, Bytes::from_static(b"He")),
                    Frame::Continuation(Fragment::Last, Bytes::from_static(b"llo")),
                ],
            ),
            (
                "7.2.3.2 the shared window",
                &[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00],
                vec![hello.clone()],
            ),
            (
                "7.2.3.3 a stored block",
                &[
                    0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                vec![hello.clone()],
            ),
            (
                "7.2.3.4 a final block",
                &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                vec![hello.clone()],
            ),
            (
                "7.2.3.5 two blocks",
                &[
                    0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9,
                    0x07, 0x00,
                ],
                vec![hello.clone()],
            ),
            (
                "7.2.3.6 an empty message",
                &[0xc1, 0x01, 0x00],
                vec![Frame::Text(Bytes::new())],
            ),
        ];
        let mut d = deflating(1 << 20, false);
        for (name, bytes, want) in examples {
            let got = decode_all(&mut d, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Fragments come out as they inflate: compare the bytes.
            let text = |f: &[Frame]| -> Vec<u8> {
                f.iter()
                    .flat_map(|f| match f {
                        Frame::Text(b) | Frame::Continuation(_, b) => b.to_vec(),
                        _ => Vec::new(),
                    })
                    .collect()
            };
            assert_eq!(text(&got), text(&want), "{name}");
            assert_eq!(got.len(), want.len(), "{name}");
        }
        // After them, and after a message ending in a final block alone
        // (no 0x00 after it), the link still decodes.
        let mut d = deflating(1 << 20, false);
        let final_only = [0xc1, 0x07, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        for _ in 0..3 {
            assert_eq!(
                decode_all(&mut d, &final_only).unwrap(),
                std::slice::from_ref(&hello)
            );
        }
        // An empty payload with RSV1 leaves the inflater ready for the next.
        assert_eq!(
            decode_all(&mut d, &[0xc1, 0x00]).unwrap(),
            [Frame::Text(Bytes::new())]
        );
        assert_eq!(
            decode_all(
                &mut d,
                &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
            )
            .unwrap(),
            [hello]
        );
    }

    #[test]
    fn a_hostile_length_reserves_a_bounded_step_not_what_it_claims() {
        // Issue 21, item 7: with no limits, a header claiming 2^62 bytes
        // made the buffer reserve them and the process abort.
        let mut d = plain(usize::MAX);
        let mut buf = BytesMut::from(&[0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.capacity() <= 2 * RESERVE_STEP, "{}", buf.capacity());
        // And the largest 63-bit length with the header's own bytes does not
        // overflow the end of the frame.
        let mut d = plain(usize::MAX);
        let mut buf =
            BytesMut::from(&[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        let got = d.decode(&mut buf);
        assert!(
            matches!(got, Ok(None) | Err(ProtocolViolation::FrameTooBig)),
            "{got:?}"
        );
        assert!(buf.capacity() <= 2 * RESERVE_STEP);
    }

    #[test]
    fn lengths_must_use_their_minimal_encoding() {
        // RFC 6455 §5.2: 7E 00 05 says 5 in the 16-bit form.
        let mut bytes = vec![0x82, 0x7E, 0x00, 0x05];
        bytes.extend_from_slice(b"hello");
        assert_eq!(
            first_error(&mut plain(1 << 20), &bytes),
            ProtocolViolation::InvalidLength
        );
        let mut bytes = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        bytes.extend(std::iter::repeat_n(0u8, 0xFFFF));
        assert_eq!(
            first_error(&mut plain(1 << 20), &bytes),
            ProtocolViolation::InvalidLength
        );
        // The smallest of each form is fine.
        let ok = frame(0x82, &[7u8; 126]);
        assert_eq!(ok[1], 0x7E);
        assert!(decode_all(&mut plain(1 << 20), &ok).is_ok());
    }

    #[test]
    fn every_length_class_decodes_and_leaves_what_follows() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut bytes = frame(0x82, &payload);
            bytes.extend(frame(0x89, b"next"));
            let got = decode_all(&mut plain(1 << 20), &bytes).unwrap();
            assert_eq!(
                got,
                [
                    Frame::Binary(payload.into()),
                    Frame::Ping(Bytes::from_static(b"next"))
                ],
                "{len}"
            );
        }
    }

    #[test]
    fn fragments_and_control_frames_between_them() {
        let mut bytes = frame(0x01, b"hel");
        bytes.extend(frame(0x89, b"p"));
        bytes.extend(frame(0x00, b"lo "));
        bytes.extend(frame(0x80, "wörld".as_bytes()));
        bytes.extend(frame(0x88, &[0x03, 0xE8, b'o', b'k']));
        let got = decode_all(&mut plain(1 << 20), &bytes).unwrap();
        assert_eq!(
            got,
            [
                Frame::Continuation(Fragment::FirstText, Bytes::from_static(b"hel")),
                Frame::Ping(Bytes::from_static(b"p")),
                Frame::Continuation(Fragment::Continue, Bytes::from_static(b"lo ")),
                Frame::Continuation(Fragment::Last, Bytes::from("wörld")),
                Frame::Close(Some(CloseFrame::new(1000, "ok"))),
            ]
        );
    }

    #[test]
    fn what_the_rfc_forbids_fails_with_its_close_code() {
        let too_long_ping = [0x89, 126, 0, 126];
        let huge = {
            let mut h = vec![0x82, 127];
            h.extend_from_slice(&(1u64 << 63).to_be_bytes());
            h
        };
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("RSV2", frame(0xA1, b"x"), 1002),
            ("RSV3", frame(0x91, b"x"), 1002),
            ("RSV1 without deflate", frame(0xC1, b"x"), 1002),
            ("masked", vec![0x81, 0x81, 1, 2, 3, 4, b'x'], 1002),
            ("opcode 3", frame(0x83, b""), 1002),
            ("opcode 7", frame(0x87, b"x"), 1002),
            ("opcode 0xB", frame(0x8B, b""), 1002),
            ("opcode 0xF", frame(0x8F, b"x"), 1002),
            ("fragmented ping", frame(0x09, b""), 1002),
            ("ping of 126 bytes", too_long_ping.to_vec(), 1002),
            ("length with the top bit", huge, 1002),
            ("continuation first", frame(0x80, b"x"), 1002),
            ("close of one byte", frame(0x88, &[3]), 1002),
            ("close 999", frame(0x88, &999u16.to_be_bytes()), 1002),
            ("close 1004", frame(0x88, &1004u16.to_be_bytes()), 1002),
            ("close 1005", frame(0x88, &1005u16.to_be_bytes()), 1002),
            ("close 1006", frame(0x88, &1006u16.to_be_bytes()), 1002),
            ("close 1015", frame(0x88, &1015u16.to_be_bytes()), 1002),
            ("close 2999", frame(0x88, &2999u16.to_be_bytes()), 1002),
            ("close 5000", frame(0x88, &5000u16.to_be_bytes()), 1002),
            ("close reason", frame(0x88, &[0x03, 0xE8, 0xFF]), 1007),
            ("a fragment", frame(0x01, &[b'a', 0xC0, 0x80]), 1007),
            (
                "a last fragment cut",
                [frame(0x01, b"a"), frame(0x80, &[0xE2, 0x82])].concat(),
                1007,
            ),
        ];
        for (what, bytes, code) in cases {
            let e = first_error(&mut plain(1 << 20), &bytes);
            assert_eq!(e.close_code(), code, "{what}");
        }
        let mut nested = frame(0x01, b"a");
        nested.extend(frame(0x81, b"b"));
        let e = first_error(&mut plain(1 << 20), &nested);
        assert_eq!(e, ProtocolViolation::UnexpectedContinuation);
        let mut rsv1_continuation = frame(0x01, b"a");
        rsv1_continuation.extend(frame(0xC0, b"b"));
        let e = first_error(&mut deflating(1 << 20, false), &rsv1_continuation);
        assert_eq!(e, ProtocolViolation::ReservedBits);
        let e = first_error(&mut deflating(1 << 20, false), &frame(0xC9, b""));
        assert_eq!(e, ProtocolViolation::ReservedBits);
    }

    #[test]
    fn valid_close_codes_pass() {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4999,
        ] {
            let got = decode_all(&mut plain(1 << 20), &frame(0x88, &code.to_be_bytes())).unwrap();
            assert_eq!(got, [Frame::Close(Some(CloseFrame::new(code, "")))]);
        }
        let got = decode_all(&mut plain(1 << 20), &frame(0x88, b"")).unwrap();
        assert_eq!(got, [Frame::Close(None)]);
    }

    #[test]
    fn limits_fail_on_the_header_before_the_payload_arrives() {
        // Only the header of a frame over the limit: it fails already.
        let mut header = frame(0x82, &[0u8; 70_000]);
        header.truncate(10);
        let e = first_error(&mut plain(65_536), &header);
        assert_eq!(e, ProtocolViolation::FrameTooBig);
        // A message whose fragments add up to more than the limit fails at
        // the header of the fragment that passes it.
        let mut d = Decoder::new(1 << 20, 16, None);
        let mut bytes = frame(0x02, &[0u8; 10]);
        bytes.extend(&frame(0x80, &[0u8; 10])[..2]);
        let e = first_error(&mut d, &bytes);
        assert_eq!(e, ProtocolViolation::MessageTooBig);
    }

    #[test]
    fn invalid_text_fails_inside_a_frame_still_arriving() {
        let mut d = plain(1 << 20);
        let whole = frame(0x81, &[b'a'; 1000]);
        let mut buf = BytesMut::from(&whole[..500]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[0xFF]);
        assert_eq!(d.decode(&mut buf), Err(ProtocolViolation::InvalidUtf8));
        // A code point cut by the read is not an error.
        let mut d = plain(1 << 20);
        let text = "aé".repeat(300);
        let whole = frame(0x81, text.as_bytes());
        let mut buf = BytesMut::new();
        for chunk in whole.chunks(7) {
            buf.extend_from_slice(chunk);
            if let Some(f) = d.decode(&mut buf).unwrap() {
                assert_eq!(f, Frame::Text(Bytes::from(text.clone())));
            }
        }
    }

    #[test]
    fn compressed_messages_inflate_with_context_takeover_and_fragments() {
        let mut server = Server::new();
        let mut d = deflating(1 << 20, false);
        let message = br#"{"channel":"ticks","price":101.25,"size":3}"#;
        for _ in 0..3 {
            // The second and later copies refer back into the first.
            let got = decode_all(&mut d, &frame(0xC1, &server.compress(message))).unwrap();
            assert_eq!(got, [Frame::Text(Bytes::from_static(message))]);
        }
        // Fragmented: RSV1 on the first frame only; cut anywhere.
        let body = server.compress(&message.repeat(20));
        let (a, b) = body.split_at(body.len() / 3);
        let mut bytes = frame(0x42, a);
        bytes.extend(frame(0x80, b));
        let got = decode_all(&mut d, &bytes).unwrap();
        let joined: Vec<u8> = got
            .iter()
            .flat_map(|f| match f {
                Frame::Continuation(_, b) => b.to_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(joined, message.repeat(20));
        // An uncompressed message in between is allowed (RSV1 per message).
        let got = decode_all(&mut d, &frame(0x81, b"plain")).unwrap();
        assert_eq!(got, [Frame::Text(Bytes::from_static(b"plain"))]);
    }

    #[test]
    fn messages_compressed_each_on_its_own_inflate() {
        let mut d = deflating(1 << 20, true);
        for _ in 0..3 {
            // A fresh server compressor per message, as the server agreed.
            let body = Server::new().compress(b"same message, fresh context");
            let got = decode_all(&mut d, &frame(0xC1, &body)).unwrap();
            assert_eq!(
                got,
                [Frame::Text(Bytes::from_static(
                    b"same message, fresh context"
                ))]
            );
        }
    }

    #[test]
    fn a_compression_bomb_fails_at_the_limit() {
        let bomb = Server::new().compress(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        let e = first_error(&mut deflating(1 << 20, false), &frame(0xC2, &bomb));
        assert_eq!(e, ProtocolViolation::MessageTooBig);
        let e = first_error(&mut deflating(1 << 20, false), &frame(0xC2, &[0xFF; 16]));
        assert_eq!(e, ProtocolViolation::InvalidCompressedData);
    }

    /// A frame to send in the property test: the decoded frame it must give.
    fn sequence() -> impl Strategy<Value = Vec<(u8, Vec<u8>, Frame)>> {
        let text = ".{0,40}".prop_map(String::into_bytes);
        let data = prop::collection::vec(any::<u8>(), 0..300);
        let one = prop_oneof![
            text.clone()
                .prop_map(|t| vec![(0x81, t.clone(), Frame::Text(t.into()))]),
            data.prop_map(|b| vec![(0x82, b.clone(), Frame::Binary(b.into()))]),
            prop::collection::vec(any::<u8>(), 0..125).prop_map(|b| vec![(
                0x89,
                b.clone(),
                Frame::Ping(b.into())
            )]),
            prop::collection::vec(any::<u8>(), 0..125).prop_map(|b| vec![(
                0x8A,
                b.clone(),
                Frame::Pong(b.into())
            )]),
            // A fragmented text message with a Ping between its frames.
            text.prop_map(|t| vec![
                (
                    0x01,
                    t.clone(),
                    Frame::Continuation(Fragment::FirstText, t.into())
                ),
                (0x89, Vec::new(), Frame::Ping(Bytes::new())),
                (
                    0x80,
                    b"!".to_vec(),
                    Frame::Continuation(Fragment::Last, Bytes::from_static(b"!"))
                ),
            ]),
        ];
        prop::collection::vec(one, 0..12).prop_map(|m| m.concat())
    }

    proptest! {
        #[test]
        fn frames_cut_at_any_points_decode_the_same(
            frames in sequence(),
            cuts in prop::collection::vec(1usize..64, 0..40),
        ) {
            let bytes: Vec<u8> = frames.iter().flat_map(|(op, p, _)| frame(*op, p)).collect();
            let want: Vec<Frame> = frames.into_iter().map(|(_, _, f)| f).collect();
            let (got, left) = decode_in_pieces(&mut plain(1 << 20), &bytes, &cuts).unwrap();
            prop_assert_eq!(left, 0);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn compressed_messages_cut_at_any_points_inflate_the_same(
            messages in prop::collection::vec((".{0,200}", any::<bool>(), 0usize..100), 1..10),
            cuts in prop::collection::vec(1usize..48, 0..40),
        ) {
            // One server stream with context takeover; some messages in two
            // frames (RSV1 on the first only), a Ping after each.
            let mut server = Server::new();
            let mut bytes = Vec::new();
            for (text, split, at) in &messages {
                let body = server.compress(text.as_bytes());
                if *split {
                    let (a, b) = body.split_at(at % (body.len() + 1));
                    bytes.extend(frame(0x41, a));
                    bytes.extend(frame(0x80, b));
                } else {
                    bytes.extend(frame(0xC1, &body));
                }
                bytes.extend(frame(0x89, b"p"));
            }
            let (frames, left) =
                decode_in_pieces(&mut deflating(1 << 20, false), &bytes, &cuts).unwrap();
            prop_assert_eq!(left, 0);
            let (mut got, mut partial) = (Vec::new(), Vec::new());
            for f in frames {
                match f {
                    Frame::Text(t) => got.push(String::from_utf8(t.to_vec()).unwrap()),
                    Frame::Continuation(Fragment::Last, t) => {
                        partial.extend_from_slice(&t);
                        got.push(String::from_utf8(std::mem::take(&mut partial)).unwrap());
                    }
                    Frame::Continuation(_, t) => partial.extend_from_slice(&t),
                    Frame::Ping(_) => {}
                    other => panic!("{other:?}"),
                }
            }
            let want: Vec<String> = messages.into_iter().map(|(t, _, _)| t).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            cuts in prop::collection::vec(1usize..32, 0..16),
            compressed in any::<bool>(),
        ) {
            let mut d = if compressed { deflating(4096, false) } else { plain(4096) };
            // Frames or an error, whichever the bytes make; never a panic.
            let _ = decode_in_pieces(&mut d, &bytes, &cuts);
        }
    }
}
