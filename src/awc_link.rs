//! One awc socket as the engine's [`Link`].
//!
//! awc does the upgrade and hands over a `Framed` socket, whose read buffer
//! may already hold the first frames; its codec is set aside, and frames are
//! decoded and encoded by our own ([`crate::wire`]). Splitting the socket
//! with `StreamExt::split` would put a `BiLock` (atomic operations on every
//! poll) between the two halves, and a sink takes messages by value, so the
//! engine would have to copy every message it keeps for a possible requeue.
//! Instead the socket, its buffers and the codec's state live in one
//! `Rc<RefCell>` shared by the read half and the writer (everything runs on
//! one arbiter, and neither half calls into the other), messages are encoded
//! from a borrow, and the buffers are sized here:
//!
//! - reads ask for room adapted to the traffic: 8 KiB while it is light,
//!   doubling to 256 KiB while reads fill the buffer (a large buffer holds
//!   several large frames, so a frame cut by a read is rarely copied into
//!   a new buffer while subscribers still hold the frames before it: 64 KiB
//!   inbound went from 0.84x to 0.89-0.96x raw awc);
//! - writes go out when 64 KiB are buffered or on flush (the engine flushes
//!   once per batch), at most 64 KiB per write call, so that the kernel's
//!   unsent bytes stay under `TCP_NOTSENT_LOWAT` plus one write: what the
//!   socket accepted beyond that has left for the peer, which is how the
//!   heartbeat tells a slow link from a dead one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use actix_codec::{AsyncWrite, FramedParts};
use actix_http::ws::Codec;
use actix_tether_actors::{
    Frame, FrameWriter, Message, OutRef, TransportError, TransportErrorKind,
};
use awc::BoxedSocket;
use bytes::{Buf, BytesMut};
use futures::Stream;

use crate::wire::decode::Decoder;
use crate::wire::deflate::Deflater;
use crate::wire::{self, Masks};

/// Room asked for before a read while traffic is light.
const READ_MIN: usize = 8 * 1024;
/// The most room asked for before a read.
const READ_MAX: usize = 256 * 1024;
/// Buffered bytes that make the writer write before encoding more.
const WRITE_HIGH: usize = 64 * 1024;
/// The most bytes handed to the socket in one write call.
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;

struct Socket {
    io: BoxedSocket,
    decoder: Decoder,
    /// The compressor, when permessage-deflate was agreed.
    deflater: Option<Deflater>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Room to ask for before the next read.
    read_room: usize,
    /// `read_buf` may hold a whole frame.
    readable: bool,
    eof: bool,
    /// The decoder failed the link: what arrives after is read and dropped
    /// (the client's Close is on its way; the server's answer cannot be
    /// parsed behind a bad frame).
    failed: bool,
    /// Bytes the socket has accepted.
    accepted: u64,
    /// Where each data message in `write_buf` ends, as a count of bytes
    /// the socket will have accepted once it took the whole message: a
    /// link cut mid-batch tells which messages the socket never took.
    /// Bounded by the messages `write_buf` holds.
    message_ends: VecDeque<u64>,
    /// Bytes read from the socket (shared with the engine's counters).
    received: Rc<Cell<u64>>,
    masks: Masks,
}

impl Socket {
    /// Nothing to read: an empty buffer gives its memory back (an idle link
    /// holds no buffers; the next read allocates `READ_MIN` again), and so
    /// does an empty write buffer.
    fn release_idle(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
            if self.write_buf.is_empty() {
                self.write_buf = BytesMut::new();
            }
        }
    }
}

type Shared = Rc<RefCell<Socket>>;

/// Splits awc's socket into the read half and the writer, which decode with
/// `decoder` and compress with `deflater`; `unsent_bound` is how many
/// accepted bytes the kernel may still hold unsent.
pub(crate) fn split(
    parts: FramedParts<BoxedSocket, Codec>,
    decoder: Decoder,
    deflater: Option<Deflater>,
    unsent_bound: u64,
    received: Rc<Cell<u64>>,
) -> (ReadHalf, WriteHalf) {
    // Bytes after the handshake response, read with it, crossed the wire
    // on this link too.
    let early = parts.read_buf.len() as u64;
    received.set(received.get().saturating_add(early));
    let socket = Rc::new(RefCell::new(Socket {
        io: parts.io,
        decoder,
        deflater,
        // Bytes after the handshake response may already be here.
        read_buf: parts.read_buf,
        write_buf: parts.write_buf,
        read_room: READ_MIN,
        readable: true,
        eof: false,
        failed: false,
        accepted: 0,
        message_ends: VecDeque::new(),
        received,
        masks: Masks::new(),
    }));
    (
        ReadHalf(socket.clone()),
        WriteHalf {
            socket,
            unsent_bound,
        },
    )
}

/// Borrows the socket. The halves are polled one at a time on one thread and
/// never call into each other, so the borrow cannot clash; if it ever did,
/// that is an error on this link, not a panic.
fn borrow(shared: &Shared) -> Result<std::cell::RefMut<'_, Socket>, TransportError> {
    shared.try_borrow_mut().map_err(|_| {
        TransportError::new(
            TransportErrorKind::Io,
            io::Error::other("socket halves polled re-entrantly"),
        )
    })
}

fn io_error(e: io::Error) -> TransportError {
    TransportError::new(TransportErrorKind::Io, e)
}

/// Decoded frames, converted for the engine.
pub(crate) struct ReadHalf(Shared);

impl Stream for ReadHalf {
    type Item = Result<Frame, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut s = match borrow(&self.0) {
            Ok(s) => s,
            Err(e) => return Poll::Ready(Some(Err(e))),
        };
        let s = &mut *s;
        loop {
            if s.failed {
                s.read_buf.clear();
            } else if s.readable {
                match s.decoder.decode(&mut s.read_buf) {
                    Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Err(e) => {
                        s.failed = true;
                        return Poll::Ready(Some(Err(TransportError::protocol(e))));
                    }
                    Ok(None) => s.readable = false,
                }
            }
            if s.eof {
                if s.read_buf.is_empty() {
                    return Poll::Ready(None);
                }
                // Report a frame cut off by the end of the stream once.
                s.read_buf.clear();
                let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended mid-frame");
                return Poll::Ready(Some(Err(io_error(cut))));
            }
            let room = s.read_room;
            if s.read_buf.capacity() - s.read_buf.len() < room / 2 {
                s.read_buf.reserve(room);
            }
            let spare = s.read_buf.capacity() - s.read_buf.len();
            let n = match tokio_util::io::poll_read_buf(Pin::new(&mut s.io), cx, &mut s.read_buf) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(io_error(e)))),
                Poll::Pending => {
                    s.release_idle();
                    return Poll::Pending;
                }
            };
            s.received.set(s.received.get().saturating_add(n as u64));
            // A read that filled the room asks for more next time; a light
            // one goes back to the minimum (idle links stay small).
            s.read_room = if n >= spare {
                (room * 2).min(READ_MAX)
            } else {
                READ_MIN
            };
            if n == 0 {
                s.eof = true;
            }
            s.readable = true;
        }
    }
}

/// Encodes borrowed frames into the shared write buffer.
pub(crate) struct WriteHalf {
    socket: Shared,
    unsent_bound: u64,
}

impl WriteHalf {
    fn flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let mut s = borrow(&self.socket)?;
        let s = &mut *s;
        while !s.write_buf.is_empty() {
            let chunk = s.write_buf.len().min(WRITE_CHUNK);
            let n = ready!(Pin::new(&mut s.io).poll_write(cx, &s.write_buf[..chunk]))
                .map_err(io_error)?;
            if n == 0 {
                let e = io::Error::new(io::ErrorKind::WriteZero, "socket took no bytes");
                return Poll::Ready(Err(io_error(e)));
            }
            s.write_buf.advance(n);
            s.accepted = s.accepted.saturating_add(n as u64);
            while s.message_ends.front().is_some_and(|&end| end <= s.accepted) {
                s.message_ends.pop_front();
            }
        }
        ready!(Pin::new(&mut s.io).poll_flush(cx)).map_err(io_error)?;
        Poll::Ready(Ok(()))
    }

    fn encode(&self, frame: OutRef<'_>) -> Result<(), TransportError> {
        let mut s = borrow(&self.socket)?;
        let s = &mut *s;
        let (dst, masks) = (&mut s.write_buf, &mut s.masks);
        match frame {
            OutRef::Message(m) => {
                write_data(dst, masks, &mut s.deflater, m);
                s.message_ends
                    .push_back(s.accepted.saturating_add(dst.len() as u64));
            }
            OutRef::Ping(b) => wire::encode(dst, masks, wire::PING, b),
            OutRef::Pong(b) => wire::encode(dst, masks, wire::PONG, b),
            OutRef::Close(c) => {
                wire::encode_close(dst, masks, c.map(|c| (c.code, c.reason.as_str())))
            }
        }
        Ok(())
    }
}

impl FrameWriter for WriteHalf {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let full = borrow(&self.socket)?.write_buf.len() >= WRITE_HIGH;
        if full {
            self.flush(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(&mut self, frame: OutRef<'_>) -> Result<(), TransportError> {
        self.encode(frame)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.flush(cx)
    }

    fn poll_write_messages(
        &mut self,
        cx: &mut Context<'_>,
        messages: &[Message],
    ) -> Poll<Result<usize, TransportError>> {
        ready!(self.poll_ready(cx))?;
        let mut s = borrow(&self.socket)?;
        let s = &mut *s;
        let (dst, masks) = (&mut s.write_buf, &mut s.masks);
        let mut taken = 0;
        for m in messages {
            // At least one; then as many as fit below the high-water mark.
            if taken > 0 && dst.len() >= WRITE_HIGH {
                break;
            }
            write_data(dst, masks, &mut s.deflater, m);
            s.message_ends
                .push_back(s.accepted.saturating_add(dst.len() as u64));
            taken += 1;
        }
        Poll::Ready(Ok(taken))
    }

    fn bytes_accepted(&self) -> Option<u64> {
        borrow(&self.socket).ok().map(|s| s.accepted)
    }

    fn messages_unaccepted(&self) -> Option<u64> {
        borrow(&self.socket)
            .ok()
            .map(|s| s.message_ends.len() as u64)
    }

    fn unsent_bound(&self) -> u64 {
        self.unsent_bound
    }
}

/// Encodes one data message, masked (a client masks every frame, RFC 6455
/// §5.3), and compressed when permessage-deflate was agreed and the message
/// is worth it.
fn write_data(dst: &mut BytesMut, masks: &mut Masks, deflater: &mut Option<Deflater>, m: &Message) {
    let opcode = if m.is_text() {
        wire::TEXT
    } else {
        wire::BINARY
    };
    let Some(d) = deflater.as_mut().filter(|d| d.wants(m)) else {
        return wire::encode(dst, masks, opcode, m.as_bytes());
    };
    match d.deflate(m.as_bytes()) {
        Some(body) => wire::encode(dst, masks, opcode | wire::RSV1, body),
        None => wire::encode(dst, masks, opcode, m.as_bytes()),
    }
    d.release();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::StreamExt;
    use tokio::io::{AsyncRead, AsyncWriteExt};

    use super::*;

    #[actix_rt::test]
    async fn an_idle_link_holds_no_buffers() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let parts = FramedParts::new(Box::new(ours) as BoxedSocket, Codec::new());
        let received = Rc::new(Cell::new(0));
        let (mut read, mut write) = split(
            parts,
            Decoder::new(1 << 20, 1 << 20, None),
            None,
            0,
            received,
        );
        write
            .start_send(OutRef::Ping(&bytes::Bytes::from_static(b"hi")))
            .unwrap();
        futures::future::poll_fn(|cx| write.poll_flush(cx))
            .await
            .unwrap();
        theirs
            .write_all(&[0x81, 5, b'h', b'e', b'l', b'l', b'o'])
            .await
            .unwrap();
        assert!(matches!(read.next().await, Some(Ok(Frame::Text(_)))));
        // Nothing more to read: the next poll is pending, and gives back
        // both buffers.
        let pending = futures::poll!(read.next());
        assert!(pending.is_pending());
        let capacities = {
            let s = read.0.borrow();
            (s.read_buf.capacity(), s.write_buf.capacity())
        };
        assert_eq!(capacities, (0, 0));
        // And reading goes on as before.
        theirs.write_all(&[0x81, 2, b'o', b'k']).await.unwrap();
        assert!(matches!(read.next().await, Some(Ok(Frame::Text(t))) if &t[..] == b"ok"));
    }

    /// Complete client frames at the head of `bytes`: (data frames,
    /// frames); a frame cut off at the end is not counted.
    fn whole_frames(mut bytes: &[u8]) -> (usize, usize) {
        let (mut data, mut all) = (0, 0);
        loop {
            let Some(&[b0, b1]) = bytes.get(..2) else {
                return (data, all);
            };
            let (len, head) = match b1 & 0x7F {
                126 => match bytes.get(2..4) {
                    Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
                    None => return (data, all),
                },
                127 => match bytes.get(2..10) {
                    Some(l) => (u64::from_be_bytes(l.try_into().unwrap()), 10),
                    None => return (data, all),
                },
                n => (u64::from(n), 2),
            };
            let end = head + 4 + len as usize;
            if bytes.len() < end {
                return (data, all);
            }
            all += 1;
            if b0 & 0x0F < 0x8 {
                data += 1;
            }
            bytes = &bytes[end..];
        }
    }

    proptest::proptest! {
        /// Whatever the message sizes, the control frames between them and
        /// how much the socket takes, the messages the writer says its
        /// socket has not taken whole are exactly those the peer cannot
        /// read whole from what the socket took (issue 25, item 1: only
        /// those go back to the queue when the link dies).
        #[test]
        fn the_writer_knows_which_messages_the_socket_took_whole(
            sizes in proptest::collection::vec(0usize..3000, 1..60),
            pings in proptest::collection::vec(proptest::bool::ANY, 60),
            socket in 1usize..20_000,
        ) {
            let (ours, mut theirs) = tokio::io::duplex(socket);
            let parts = FramedParts::new(Box::new(ours) as BoxedSocket, Codec::new());
            let (_read, mut write) = split(
                parts,
                Decoder::new(1 << 20, 1 << 20, None),
                None,
                0,
                Rc::new(Cell::new(0)),
            );
            let messages: Vec<Message> = sizes
                .iter()
                .map(|&n| Message::Binary(vec![7u8; n].into()))
                .collect();
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            let mut handed = 0;
            while handed < messages.len() {
                match write.poll_write_messages(&mut cx, &messages[handed..]) {
                    Poll::Ready(Ok(n)) => handed += n,
                    Poll::Ready(Err(e)) => panic!("{e}"),
                    Poll::Pending => break,
                }
                if pings[handed % pings.len()] {
                    write.start_send(OutRef::Ping(&bytes::Bytes::from_static(b"p"))).unwrap();
                }
            }
            let _ = write.poll_flush(&mut cx);
            // The peer reads everything the socket took.
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let mut rb = tokio::io::ReadBuf::new(&mut buf);
                match Pin::new(&mut theirs).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                        got.extend_from_slice(rb.filled());
                    }
                    _ => break,
                }
            }
            let (data, _) = whole_frames(&got);
            let unaccepted = write.messages_unaccepted().unwrap() as usize;
            proptest::prop_assert_eq!(handed - unaccepted, data);
            proptest::prop_assert_eq!(write.bytes_accepted(), Some(got.len() as u64));
        }
    }
}
