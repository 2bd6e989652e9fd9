//! The WebSocket server every client is measured against: tokio-tungstenite
//! on 127.0.0.1, in a child process of the benchmark (that the scale
//! figures also stop and restart).

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;

/// Server behaviours, chosen by the request path.
// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
pub(crate) async fn serve_one(stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let mut deflate = None;
    let callback =
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            path = req.uri().path().to_owned();
            // The compressed paths agree to permessage-deflate (with the
            // window the client asked for, if it did) and compute their
            // frames before the client is told it is connected.
            if path.starts_with("/deflate-") {
                let offer = req
                    .headers()
                    .get("sec-websocket-extensions")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let answer = if offer.contains("server_max_window_bits=12") {
                    "permessage-deflate; server_max_window_bits=12"
                } else {
                    "permessage-deflate"
                };
                if let Ok(v) = answer.parse() {
                    resp.headers_mut().insert("sec-websocket-extensions", v);
                }
                let n = path
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let bits = if answer.contains("=12") { 12 } else { 15 };
                deflate = Some(crate::compressed::server_frames_with(n, bits));
            }
            Ok(resp)
        };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["deflate-push", _] | ["deflate-idle", _] => {
            use tokio::io::AsyncWriteExt;
            let frames = deflate.unwrap_or_default();
            if ws.get_mut().write_all(&frames).await.is_err() {
                return;
            }
            // Pings and the Close come uncompressed: tungstenite reads them.
            while let Some(Ok(_)) = ws.next().await {}
        }
        ["deflate-sink", n] => {
            let n: usize = n.parse().unwrap_or(0);
            count_raw_frames(ws.get_mut(), n).await;
        }
        ["push", n, size, kind] => {
            let (n, size): (usize, usize) = (n.parse().unwrap_or(0), size.parse().unwrap_or(0));
            let text = "x".repeat(size);
            let bin = vec![7u8; size];
            for _ in 0..n {
                let m = if *kind == "t" {
                    T::text(text.clone())
                } else {
                    T::binary(bin.clone())
                };
                if ws.feed(m).await.is_err() {
                    return;
                }
            }
            let _ = ws.flush().await;
            while let Some(Ok(_)) = ws.next().await {}
        }
        ["sink", n] => {
            let n: usize = n.parse().unwrap_or(0);
            let mut seen = 0;
            while seen < n {
                match ws.next().await {
                    Some(Ok(T::Text(_) | T::Binary(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
            let _ = ws.send(T::text("done")).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
        _ => {
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads client frames off the socket without inflating them (tungstenite
/// refuses RSV1): after `n` final data frames, answers "done".
async fn count_raw_frames(s: &mut tokio::net::TcpStream, n: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 256 * 1024];
    let (mut have, mut seen) = (0, 0);
    while seen < n {
        let Ok(got) = s.read(&mut buf[have..]).await else {
            return;
        };
        if got == 0 {
            return;
        }
        have += got;
        let mut at = 0;
        // Whole frames: 2 header bytes, a length, a 4-byte mask, payload.
        while have - at >= 2 {
            let (b0, b1) = (buf[at], buf[at + 1]);
            let (len, head) = match b1 & 0x7F {
                126 if have - at >= 4 => (
                    usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                    8,
                ),
                127 if have - at >= 10 => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(&buf[at + 2..at + 10]);
                    (u64::from_be_bytes(be) as usize, 14)
                }
                126 | 127 => break,
                l => (usize::from(l), 6),
            };
            if have - at < head + len {
                break;
            }
            if b0 & 0x80 != 0 && matches!(b0 & 0x0F, 0..=2) {
                seen += 1;
            }
            at += head + len;
        }
        buf.copy_within(at..have, 0);
        have -= at;
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    let _ = s.write_all(&[0x81, 4, b'd', b'o', b'n', b'e']).await;
    let _ = s.read(&mut buf).await;
}

/// `--serve PORT` (0 for any): the child-process server. Prints its port,
/// then serves until it is killed.
pub(crate) fn serve(port: u16) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    println!("{}", listener.local_addr()?.port());
    run(listener)
}

fn run(listener: std::net::TcpListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (s, _) = listener.accept().await?;
            tokio::spawn(serve_one(s));
        }
    })
}
