//! The WebSocket server every client is measured against: tokio-tungstenite
//! on 127.0.0.1, in a thread of the benchmark or (for the scale figures) in a
//! child process that can be stopped and restarted.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;

/// Server behaviours, chosen by the request path.
// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
pub(crate) async fn serve_one(stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let callback =
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            path = req.uri().path().to_owned();
            Ok(resp)
        };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
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

/// Starts the server in a thread of this process.
pub(crate) fn start_server() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || run(listener));
    Ok(addr)
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
