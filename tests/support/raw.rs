//! A raw TCP "WebSocket server" that says exactly the bytes a test wants,
//! for input no real server would send.

use std::net::SocketAddr;

use base64::Engine as _;
use futures::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Listens on 127.0.0.1 and runs `script` on every connection.
pub async fn serve(
    script: impl Fn(TcpStream) -> LocalBoxFuture<'static, ()> + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    actix_rt::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            actix_rt::spawn(script(s));
        }
    });
    addr
}

/// Like [`serve`], with a small receive buffer on every accepted socket, so
/// that a script that stops reading pushes back on the client at once.
pub async fn serve_with_recv_buffer(
    bytes: u32,
    script: impl Fn(TcpStream) -> LocalBoxFuture<'static, ()> + 'static,
) -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(bytes).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    actix_rt::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            actix_rt::spawn(script(s));
        }
    });
    addr
}

/// Reads the HTTP request head; returns it as text.
pub async fn read_request(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The Sec-WebSocket-Accept value for the request's key.
pub fn accept_for(request: &str) -> String {
    let key = request
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    String::from_utf8_lossy(&actix_http::ws::hash_key(key.as_bytes())).into_owned()
}

/// The 101 answer to `request`, with `extra` headers (each ending in
/// \r\n).
pub fn answer(request: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
        accept_for(request)
    )
}

/// Reads the request and answers 101 with `extra` headers (each ending in
/// \r\n); returns the request.
pub async fn upgrade(s: &mut TcpStream, extra: &str) -> String {
    let req = read_request(s).await;
    let _ = s.write_all(answer(&req, extra).as_bytes()).await;
    req
}

/// An unmasked server frame with first byte `b0` (FIN, RSV, opcode).
pub fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n < 65536 => {
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

/// Reads one (masked) client frame: (opcode, payload).
pub async fn read_frame(s: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.ok()?;
    let mut len = u64::from(head[1] & 0x7F);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.ok()?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await.ok()?;
        len = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        s.read_exact(&mut mask).await.ok()?;
    }
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    s.read_exact(&mut payload).await.ok()?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Some((head[0] & 0x0F, payload))
}

/// Reads client frames until a Close; returns its code (1005 for none).
pub async fn close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        let (op, payload) = read_frame(s).await?;
        if op == 0x8 {
            return Some(match payload.get(..2) {
                Some(b) => u16::from_be_bytes([b[0], b[1]]),
                None => 1005,
            });
        }
    }
}

/// Base64 of `data`, for handshake tests that need a wrong accept key.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}
