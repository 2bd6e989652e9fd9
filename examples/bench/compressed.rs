//! permessage-deflate figures: 1 KiB JSON-like messages, compressed by the
//! server (inbound) or by actix-tether (outbound), against zlib-rs alone
//! inflating or deflating the same bytes in a loop: what the client costs
//! above the compression itself.
//!
//! The server's side is precomputed: the bench server agrees to
//! permessage-deflate and writes frames compressed before the handshake
//! answer went out (one zlib stream with context takeover, as a server
//! compresses a feed), or counts the client's frames without inflating.

use std::time::{Duration, Instant};

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush};

use crate::clients::{tether, Client};
use crate::Res;

/// The size of every message.
pub(crate) const SIZE: usize = 1024;

/// Message `i`: a JSON-like object of `SIZE` bytes whose numbers change
/// from message to message, as in a market-data feed.
pub(crate) fn message(i: usize) -> String {
    let mut s = format!("{{\"seq\":{i},\"channel\":\"book.BTC-USD\",\"levels\":[");
    let mut k = 0;
    while s.len() < SIZE - 40 {
        let px = 60_000 + (i * 7 + k * 13) % 500;
        s.push_str(&format!(
            "{{\"px\":{px}.{:02},\"qty\":{}}},",
            (i + k) % 100,
            (k * 3 + i) % 17 + 1
        ));
        k += 1;
    }
    s.push_str("{\"end\":true}]}");
    while s.len() < SIZE {
        s.push(' ');
    }
    s.truncate(SIZE);
    s
}

/// Compresses `payload` with `z` (sync flush, tail removed: RFC 7692
/// §7.2.1).
fn compress(z: &mut Deflate, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.resize(payload.len() + 64, 0);
    let before = z.total_out();
    let _ = z.compress(payload, out, DeflateFlush::SyncFlush);
    out.truncate((z.total_out() - before) as usize);
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
}

/// The compressed payloads of messages `0..n`, one stream with context
/// takeover, as a server using zlib's defaults writes them.
pub(crate) fn server_payloads(n: usize) -> Vec<Vec<u8>> {
    server_payloads_with(n, 15)
}

/// Like [`server_payloads`], with a window of 2^`bits`.
fn server_payloads_with(n: usize, bits: u8) -> Vec<Vec<u8>> {
    let mut z = Deflate::new(6, false, bits);
    let mut out = Vec::new();
    (0..n)
        .map(|i| {
            compress(&mut z, message(i).as_bytes(), &mut out);
            out.clone()
        })
        .collect()
}

/// The frames of `n` compressed messages with a window of 2^`bits`
/// (unmasked, RSV1 set), back to back.
pub(crate) fn server_frames_with(n: usize, bits: u8) -> Vec<u8> {
    let mut frames = Vec::new();
    for p in server_payloads_with(n, bits) {
        frames.push(0xC1);
        match p.len() {
            len @ 0..=125 => frames.push(len as u8),
            len @ 126..=65535 => {
                frames.push(126);
                frames.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frames.push(127);
                frames.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frames.extend_from_slice(&p);
    }
    frames
}

/// zlib-rs alone: seconds to inflate `payloads` in order (each with the
/// tail appended), with the window the client uses for a server that did
/// not restrict its own.
pub(crate) fn inflate_alone(payloads: &[Vec<u8>]) -> f64 {
    let mut z = Inflate::new(false, 15);
    let mut out = vec![0u8; SIZE * 2];
    let mut input = Vec::new();
    let start = Instant::now();
    for p in payloads {
        input.clear();
        input.extend_from_slice(p);
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let _ = z.decompress(&input, &mut out, InflateFlush::SyncFlush);
    }
    start.elapsed().as_secs_f64()
}

/// zlib-rs alone: seconds to deflate messages `0..n` with the client's
/// default settings (window 2^12, memory level 5, level 6).
pub(crate) fn deflate_alone(n: usize) -> f64 {
    let messages: Vec<String> = (0..n).map(message).collect();
    let mut z = Deflate::new_with_config(DeflateConfig {
        level: 6,
        window_bits: -12,
        mem_level: 5,
        ..DeflateConfig::default()
    });
    let mut out = Vec::new();
    let start = Instant::now();
    for m in &messages {
        compress(&mut z, m.as_bytes(), &mut out);
    }
    start.elapsed().as_secs_f64()
}

/// What one compressed run of actix-tether measured.
pub(crate) struct Run {
    pub(crate) secs: f64,
    /// Bytes on the wire per payload byte, in the measured direction.
    pub(crate) wire_ratio: f64,
}

/// actix-tether receives `n` compressed messages.
pub(crate) async fn inbound(client: Client, base: &str, n: usize) -> Res<Run> {
    let (c, mut tally) = tether(format!("{base}/deflate-push/{n}"), client).await?;
    let start = Instant::now();
    tally.count(n).await?;
    let secs = start.elapsed().as_secs_f64();
    let s = c.stats().await?;
    let _ = c.close(Duration::from_secs(1)).await;
    Ok(Run {
        secs,
        wire_ratio: s.wire_bytes_in as f64 / s.bytes_in.max(1) as f64,
    })
}

/// actix-tether sends `n` messages, compressed; the server counts them.
pub(crate) async fn outbound(client: Client, base: &str, n: usize) -> Res<Run> {
    let messages: Vec<String> = (0..n).map(message).collect();
    let (c, mut tally) = tether(format!("{base}/deflate-sink/{n}"), client).await?;
    let start = Instant::now();
    for m in &messages {
        c.send(m.as_str()).await?;
    }
    tally.count(1).await?;
    let secs = start.elapsed().as_secs_f64();
    let s = c.stats().await?;
    let _ = c.close(Duration::from_secs(1)).await;
    Ok(Run {
        secs,
        wire_ratio: s.wire_bytes_out as f64 / s.bytes_out.max(1) as f64,
    })
}

/// The floor of a compressed feed: a plain socket read loop that frames
/// and inflates with zlib-rs, no WebSocket library, no actors (as raw awc
/// is for uncompressed ones; awc's codec refuses RSV1). Seconds from the
/// handshake to the `n`th message.
pub(crate) async fn raw_socket_inflate(base: &str, n: usize) -> Res<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("ws://");
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let request = format!(
        "GET /deflate-push/{n} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut have = 0;
    let body = loop {
        let got = s.read(&mut buf[have..]).await?;
        if got == 0 {
            return Err("server closed during the handshake".into());
        }
        have += got;
        if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    buf.copy_within(body..have, 0);
    have -= body;
    let start = Instant::now();
    let mut z = Inflate::new(false, 15);
    let mut out = vec![0u8; SIZE * 2];
    let mut input = Vec::new();
    let mut seen = 0;
    loop {
        let mut at = 0;
        while have - at >= 2 {
            let (len, head) = match buf[at + 1] & 0x7F {
                126 if have - at >= 4 => (
                    usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                    4,
                ),
                126 | 127 => break,
                l => (usize::from(l), 2),
            };
            if have - at < head + len {
                break;
            }
            input.clear();
            input.extend_from_slice(&buf[at + head..at + head + len]);
            input.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let _ = z.decompress(&input, &mut out, InflateFlush::SyncFlush);
            seen += 1;
            at += head + len;
        }
        if seen >= n {
            return Ok(start.elapsed().as_secs_f64());
        }
        buf.copy_within(at..have, 0);
        have -= at;
        let got = s.read(&mut buf[have..]).await?;
        if got == 0 {
            return Err("server closed early".into());
        }
        have += got;
    }
}
