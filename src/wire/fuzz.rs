//! Entry points for the `cargo fuzz` targets in `fuzz/` (built only with
//! `--cfg fuzzing`): the decoder, the inflater and the negotiation parser
//! read untrusted bytes.

use bytes::BytesMut;

use super::decode::Decoder;
use super::deflate::Compression;

/// The most any input may inflate to or decode as one message.
const LIMIT: usize = 64 * 1024;

/// Feeds `data` to a decoder in pieces: the first byte chooses compression
/// and the piece length. Checks what must hold of any input: no panic, no
/// frame or message over the limits, nothing left in the buffer unread
/// after an error is reported.
pub fn decode(data: &[u8]) {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let inflater = (first & 1 == 1).then(|| {
        let answer = if first & 2 == 2 {
            "permessage-deflate; server_no_context_takeover"
        } else {
            "permessage-deflate"
        };
        match Compression::offer().accept([answer]) {
            Ok(Some(agreed)) => agreed.split().0,
            _ => unreachable!("a valid answer"),
        }
    });
    let mut decoder = Decoder::new(LIMIT, LIMIT, inflater);
    let piece = usize::from(first >> 2) + 1;
    let mut buf = BytesMut::new();
    for chunk in bytes.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    use actix_tether_actors::Frame;
                    let len = match &frame {
                        Frame::Text(b)
                        | Frame::Binary(b)
                        | Frame::Continuation(_, b)
                        | Frame::Ping(b)
                        | Frame::Pong(b) => b.len(),
                        Frame::Close(_) => 0,
                    };
                    assert!(len <= LIMIT, "a frame over the limit: {len}");
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Checks the answer parser on any header value: no panic, and whatever it
/// accepts it can describe.
pub fn negotiate(data: &[u8]) {
    let Ok(answer) = std::str::from_utf8(data) else {
        return;
    };
    for c in [
        Compression::offer(),
        Compression::require().server_max_window_bits(Some(10)),
    ] {
        if let Ok(Some(agreed)) = c.accept([answer]) {
            assert!(agreed.text.starts_with("permessage-deflate"));
            let _ = agreed.split();
        }
    }
}

/// Compresses `data` with the client's deflater and inflates it with the
/// client's inflater (as a server using the same settings would): the
/// bytes must come back, for context takeover and without.
pub fn round_trip(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let c = Compression::offer()
        .client_no_context_takeover(first & 1 == 1)
        .client_max_window_bits(9 + (first >> 1) % 7)
        .level(u32::from(first >> 4) % 10);
    let Ok(Some(agreed)) = c.accept(["permessage-deflate"]) else {
        unreachable!("a valid answer");
    };
    let (_, mut deflater) = agreed.clone().split();
    let (mut inflater, _) = agreed.split();
    for message in body.chunks(1 + usize::from(first)) {
        let Some(out) = deflater.deflate(message) else {
            panic!("the deflater failed on {} bytes", message.len());
        };
        match inflater.inflate(out, true, LIMIT) {
            Ok(back) => assert_eq!(&back[..], message),
            Err(e) => panic!("{e:?}"),
        }
    }
}
