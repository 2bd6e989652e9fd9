//! The `cargo fuzz` entry point for what proxies answer (built only with
//! `--cfg fuzzing`): the answer to `CONNECT` and the SOCKS5 replies are
//! bytes from the network.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{http, socks, ProxyUrl};

/// A proxy that answers with the fuzzer's bytes, `piece` at a time, and
/// takes whatever is written to it.
struct Scripted<'a> {
    answer: &'a [u8],
    piece: usize,
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.piece.min(self.answer.len()).min(buf.remaining());
        let (now, rest) = self.answer.split_at(n);
        buf.put_slice(now);
        self.answer = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs the `CONNECT` tunnel or the SOCKS5 handshake (the first byte
/// chooses, and the size of the pieces the answer arrives in) against a
/// proxy that answers with the rest. Checks what must hold of any answer:
/// no panic, and a tunnel opened only on a 2xx head (bytes after it would
/// be the server's, read by awc).
pub fn proxy_answers(data: &[u8]) {
    let Some((&first, answer)) = data.split_first() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let piece = usize::from(first >> 2) + 1;
    let mut proxy = Scripted { answer, piece };
    runtime.block_on(async {
        if first & 1 == 0 {
            let auth = (first & 2 == 2).then_some("Basic dTpw");
            let opened = http::tunnel(&mut proxy, "example.test:443", auth, "fuzz").await;
            if opened.is_ok() {
                let head = http::parse_answer(answer);
                assert!(matches!(head, Ok(Some(ref a)) if (200..300).contains(&a.status)));
            }
        } else {
            let url = if first & 2 == 2 {
                "socks5h://u:p@127.0.0.1:1080"
            } else {
                "socks5h://127.0.0.1:1080"
            };
            let Ok(url) = ProxyUrl::parse(url) else {
                unreachable!("a valid proxy URL")
            };
            let to = tokio_socks::TargetAddr::Domain("example.test".into(), 443);
            let _ = socks::tunnel(proxy, &url, to, "example.test:443").await;
        }
    });
}
