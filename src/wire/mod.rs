//! Our own RFC 6455 codec, used on the socket awc upgraded: the outbound
//! encoder here, the decoder in [`decode`], permessage-deflate in
//! [`deflate`].
//!
//! A client masks every frame (§5.3) with a key its peer cannot predict
//! (§10.3). Each link draws its keys from its own ChaCha generator seeded by
//! the operating system, instead of reaching a thread-local generator per
//! frame, and masks eight bytes at a time.

pub(crate) mod decode;
pub(crate) mod deflate;
#[cfg(fuzzing)]
pub(crate) mod fuzz;
mod utf8;

use bytes::{BufMut, BytesMut};
use rand::rngs::StdRng;
use rand::RngExt;

/// Opcodes (§5.2).
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

const FIN: u8 = 0x80;
/// Set on the first frame of a compressed message (RFC 7692 §6).
pub(crate) const RSV1: u8 = 0x40;
const MASKED: u8 = 0x80;

/// Masking keys for one link.
#[derive(Debug)]
pub(crate) struct Masks(StdRng);

impl Masks {
    pub(crate) fn new() -> Self {
        Self(rand::make_rng())
    }

    fn next(&mut self) -> [u8; 4] {
        self.0.random()
    }
}

/// Appends one final frame carrying `payload`, masked; `first` is the
/// opcode, with RSV1 for a compressed message.
pub(crate) fn encode(dst: &mut BytesMut, masks: &mut Masks, first: u8, payload: &[u8]) {
    let len = payload.len();
    dst.reserve(len + 14);
    dst.put_u8(FIN | first);
    if len < 126 {
        dst.put_u8(MASKED | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        dst.put_u8(MASKED | 126);
        dst.put_u16(short);
    } else {
        dst.put_u8(MASKED | 127);
        dst.put_u64(len as u64);
    }
    let key = masks.next();
    dst.put_slice(&key);
    let start = dst.len();
    dst.put_slice(payload);
    mask(&mut dst[start..], key);
}

/// Appends a Close frame: no payload, or the status code and the reason.
pub(crate) fn encode_close(dst: &mut BytesMut, masks: &mut Masks, close: Option<(u16, &str)>) {
    match close {
        None => encode(dst, masks, CLOSE, &[]),
        Some((code, reason)) => {
            // A control frame carries at most 125 bytes (§5.5): the reason
            // is cut at a character boundary to fit beside the code.
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            let reason = &reason[..end];
            let mut payload = Vec::with_capacity(2 + reason.len());
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
            encode(dst, masks, CLOSE, &payload);
        }
    }
}

/// XORs `buf` with the repeating `key`, eight bytes at a time (the bytes
/// were just copied there, so this second pass runs in cache).
fn mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of eight, so the key lines up again.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_http::ws::{OpCode, Parser};

    use super::*;

    /// What a server's parser (actix-http's, unmasking) reads back.
    fn read_back(mut buf: BytesMut) -> (bool, OpCode, Vec<u8>) {
        let (fin, op, payload) = Parser::parse(&mut buf, true, 64 << 20).unwrap().unwrap();
        assert!(buf.is_empty(), "one frame, nothing after it");
        (fin, op, payload.map(|p| p.to_vec()).unwrap_or_default())
    }

    #[test]
    fn every_length_class_reads_back_through_another_parser() {
        let mut masks = Masks::new();
        let sizes = [
            0, 1, 7, 8, 9, 15, 16, 17, 125, 126, 127, 65_535, 65_536, 70_001,
        ];
        for len in sizes {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            for (opcode, op) in [(TEXT, OpCode::Text), (BINARY, OpCode::Binary)] {
                let mut buf = BytesMut::new();
                encode(&mut buf, &mut masks, opcode, &payload);
                assert_ne!(buf[1] & MASKED, 0, "masked");
                assert_eq!(read_back(buf), (true, op, payload.clone()), "{len}");
            }
        }
    }

    #[test]
    fn control_frames_and_close_payloads() {
        let mut masks = Masks::new();
        let mut buf = BytesMut::new();
        encode(&mut buf, &mut masks, PING, b"barrier");
        assert_eq!(read_back(buf), (true, OpCode::Ping, b"barrier".to_vec()));
        let mut buf = BytesMut::new();
        encode_close(&mut buf, &mut masks, Some((1001, "away")));
        assert_eq!(
            read_back(buf),
            (
                true,
                OpCode::Close,
                [&1001u16.to_be_bytes()[..], b"away"].concat()
            )
        );
        let mut buf = BytesMut::new();
        let long = "é".repeat(100);
        encode_close(&mut buf, &mut masks, Some((1000, &long)));
        let (_, _, payload) = read_back(buf);
        assert_eq!(
            payload.len(),
            124,
            "cut to 123 bytes of reason at a boundary"
        );
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        let mut buf = BytesMut::new();
        encode_close(&mut buf, &mut masks, None);
        assert_eq!(read_back(buf), (true, OpCode::Close, Vec::new()));
    }

    #[test]
    fn masking_matches_the_definition_at_every_offset() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        let src: Vec<u8> = (0..64u8).collect();
        for len in 0..src.len() {
            let mut dst = src[..len].to_vec();
            mask(&mut dst, key);
            let want: Vec<u8> = src[..len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(dst, want, "{len}");
        }
    }

    #[test]
    fn keys_differ_between_frames_and_links() {
        let (mut a, mut b) = (Masks::new(), Masks::new());
        let from_a: Vec<[u8; 4]> = (0..8).map(|_| a.next()).collect();
        let from_b: Vec<[u8; 4]> = (0..8).map(|_| b.next()).collect();
        assert_ne!(from_a, from_b);
        assert!(from_a.windows(2).any(|w| w[0] != w[1]));
    }
}
