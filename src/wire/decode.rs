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

use std::fmt;

use actix_tether_actors::{CloseFrame, Fragment, Frame, TransportError, TransportErrorKind};
use bytes::{Buf, Bytes, BytesMut};

use super::deflate::{InflateError, Inflater};
use super::utf8::Utf8;
use super::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV23: u8 = 0x30;
const MASKED: u8 = 0x80;

/// Why the decoder failed the link; the close code follows from the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// A frame that breaks the protocol (close code 1002).
    Protocol(&'static str),
    /// A frame over its limit (close code 1009).
    TooBig(&'static str),
    /// A message over its limit (close code 1009).
    MessageTooBig(&'static str),
    /// Text or a close reason that is not UTF-8 (close code 1007).
    InvalidUtf8(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (WireError::Protocol(s)
        | WireError::TooBig(s)
        | WireError::MessageTooBig(s)
        | WireError::InvalidUtf8(s)) = self;
        f.write_str(s)
    }
}

impl std::error::Error for WireError {}

impl From<WireError> for TransportError {
    fn from(e: WireError) -> Self {
        let kind = match e {
            WireError::Protocol(_) => TransportErrorKind::Protocol,
            WireError::TooBig(_) => TransportErrorKind::FrameTooBig,
            WireError::MessageTooBig(_) => TransportErrorKind::MessageTooBig,
            WireError::InvalidUtf8(_) => TransportErrorKind::InvalidData,
        };
        TransportError::new(kind, e)
    }
}

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
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(head) = self.head(buf)? else {
            return Ok(None);
        };
        let end = head.at + head.len;
        if buf.len() < end {
            if self.plain_text(&head) {
                let from = head.at + self.checked;
                if buf.len() > from {
                    self.utf8
                        .feed(&buf[from..])
                        .map_err(|_| WireError::InvalidUtf8("text is not valid UTF-8"))?;
                    self.checked = buf.len() - head.at;
                }
            }
            // The limits were checked: this is at most one frame's worth.
            buf.reserve(end - buf.len());
            return Ok(None);
        }
        let checked = std::mem::take(&mut self.checked);
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

    /// Whether a frame's payload is text to check as it arrives (compressed
    /// text is checked once inflated).
    fn plain_text(&self, head: &Head) -> bool {
        match head.opcode {
            TEXT => !head.rsv1,
            CONTINUATION => self.message.is_some_and(|m| m.text && !m.compressed),
            _ => false,
        }
    }

    /// Parses and checks the header at the head of `buf`.
    fn head(&self, buf: &[u8]) -> Result<Option<Head>, WireError> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        let (fin, rsv1, opcode) = (first & FIN != 0, first & RSV1 != 0, first & 0x0F);
        if first & RSV23 != 0 {
            return Err(WireError::Protocol(
                "RSV2 or RSV3 set: no extension defines them",
            ));
        }
        if second & MASKED != 0 {
            return Err(WireError::Protocol("a server must not mask its frames"));
        }
        let short = usize::from(second & 0x7F);
        match opcode {
            PING | PONG | CLOSE => {
                if !fin {
                    return Err(WireError::Protocol("fragmented control frame"));
                }
                if short > 125 {
                    return Err(WireError::Protocol("control frame over 125 bytes"));
                }
                if rsv1 {
                    return Err(WireError::Protocol("RSV1 set on a control frame"));
                }
            }
            TEXT | BINARY => {
                if self.message.is_some() {
                    return Err(WireError::Protocol(
                        "a new message began inside a fragmented one",
                    ));
                }
                if rsv1 && self.inflater.is_none() {
                    return Err(WireError::Protocol(
                        "RSV1 set without permessage-deflate negotiated",
                    ));
                }
            }
            CONTINUATION => {
                if self.message.is_none() {
                    return Err(WireError::Protocol("continuation frame without a message"));
                }
                if rsv1 {
                    return Err(WireError::Protocol("RSV1 set on a continuation frame"));
                }
            }
            _ => return Err(WireError::Protocol("reserved opcode")),
        }
        let (at, len) = match short {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (4, usize::from(u16::from_be_bytes([a, b]))),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(bytes) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(bytes);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(WireError::Protocol("payload length over 63 bits"));
                    }
                    let len = usize::try_from(len)
                        .map_err(|_| WireError::TooBig("frame larger than memory"))?;
                    (10, len)
                }
                None => return Ok(None),
            },
            n => (2, n),
        };
        if len > self.max_frame {
            return Err(WireError::TooBig("frame exceeds the maximum frame size"));
        }
        let compressed = rsv1 || self.message.is_some_and(|m| m.compressed);
        let before = self.message.map_or(0, |m| m.size);
        if !matches!(opcode, PING | PONG | CLOSE)
            && !compressed
            && len > self.max_message.saturating_sub(before)
        {
            return Err(WireError::MessageTooBig(
                "message exceeds the maximum message size",
            ));
        }
        Ok(Some(Head {
            fin,
            rsv1,
            opcode,
            at,
            len,
        }))
    }

    /// A whole data frame: inflated if compressed, text checked, and placed
    /// in its message.
    fn data(&mut self, head: Head, payload: Bytes, checked: usize) -> Result<Frame, WireError> {
        let first = head.opcode != CONTINUATION;
        let (text, compressed, before) = match self.message {
            Some(m) if !first => (m.text, m.compressed, m.size),
            _ => (head.opcode == TEXT, head.rsv1, 0),
        };
        let invalid = |_| WireError::InvalidUtf8("text is not valid UTF-8");
        let data = match (&mut self.inflater, compressed) {
            (Some(inflater), true) => {
                let limit = self.max_message - before;
                let out = inflater
                    .inflate(&payload, head.fin, limit)
                    .map_err(|e| match e {
                        InflateError::TooBig => WireError::MessageTooBig(
                            "inflated message exceeds the maximum message size",
                        ),
                        InflateError::Corrupt => WireError::Protocol("invalid deflate data"),
                    })?;
                if text {
                    self.utf8.feed(&out).map_err(invalid)?;
                }
                out
            }
            _ => {
                if text {
                    self.utf8.feed(&payload[checked..]).map_err(invalid)?;
                }
                payload
            }
        };
        if text && head.fin {
            self.utf8.finish().map_err(invalid)?;
        }
        self.message = (!head.fin).then_some(InProgress {
            text,
            compressed,
            size: before + data.len(),
        });
        Ok(match (first, head.fin, text) {
            (true, true, true) => Frame::Text(data),
            (true, true, false) => Frame::Binary(data),
            (true, false, true) => Frame::Continuation(Fragment::FirstText, data),
            (true, false, false) => Frame::Continuation(Fragment::FirstBinary, data),
            (false, false, _) => Frame::Continuation(Fragment::Continue, data),
            (false, true, _) => Frame::Continuation(Fragment::Last, data),
        })
    }
}

/// A Close frame's payload: nothing, or a code (§7.4) and a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, WireError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(WireError::Protocol("close payload of one byte")),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    // 1004-1006 and 1015 must not be sent; 1000-2999 beyond the registered
    // ones are reserved; 3000-4999 are for libraries and applications.
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(WireError::Protocol("invalid close code"));
    }
    let reason = std::str::from_utf8(reason)
        .map_err(|_| WireError::InvalidUtf8("close reason is not valid UTF-8"))?;
    Ok(Some(CloseFrame::new(code, reason)))
}
