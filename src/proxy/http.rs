//! An HTTP `CONNECT` tunnel (RFC 9110 9.3.6) through an http:// or
//! https:// proxy.
//!
//! The request asks for the server's `host:port`; any 2xx answer opens the
//! tunnel. The answer's head is parsed with httparse and may be at most
//! [`MAX_ANSWER`] bytes; a proxy that sends anything after its head before
//! the client has spoken is not a tunnel this client can use.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use actix_tether_actors::{ConnectError, ConnectErrorKind};

/// The longest answer head accepted: proxies answer `CONNECT` in a few
/// hundred bytes; a head longer than this is refused, not buffered.
pub(crate) const MAX_ANSWER: usize = 16 * 1024;

/// Headers parsed in an answer; more is a refusal.
const MAX_HEADERS: usize = 64;

/// A proxy's answer to `CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// Bytes the head took.
    pub(crate) len: usize,
}

/// Why an answer cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadAnswer {
    /// Not an HTTP/1.x response head.
    NotHttp,
    /// Longer than [`MAX_ANSWER`], or more than 64 headers.
    TooLong,
}

/// Parses the head of an answer from the start of `buf`: `Ok(None)` when
/// more bytes are needed.
pub(crate) fn parse_answer(buf: &[u8]) -> Result<Option<Answer>, BadAnswer> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_ANSWER => Ok(Some(Answer {
            status: response.code.unwrap_or(0),
            reason: response.reason.unwrap_or("").to_owned(),
            len,
        })),
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            Err(BadAnswer::TooLong)
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_ANSWER => Err(BadAnswer::TooLong),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(BadAnswer::NotHttp),
    }
}

/// The `CONNECT` request for `authority` (`host:port`).
pub(crate) fn request(authority: &str, auth: Option<&str>) -> String {
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = auth {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// How a status that is not 2xx is taken: 502, 503 and 504 (the proxy
/// could not reach the server, or is overloaded), 408 and 429 may pass;
/// 407 and every other refusal will not.
pub(crate) fn refusal(status: u16) -> ConnectErrorKind {
    match status {
        408 | 429 | 502 | 503 | 504 => ConnectErrorKind::ProxyUnavailable,
        _ => ConnectErrorKind::ProxyRefused,
    }
}

/// Asks the proxy on `io` for a tunnel to `authority`. `shown` names the
/// proxy in errors (password masked).
pub(crate) async fn tunnel<S>(
    io: &mut S,
    authority: &str,
    auth: Option<&str>,
    shown: &str,
) -> Result<(), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let lost = |e: std::io::Error| {
        super::failure(
            ConnectErrorKind::ProxyUnavailable,
            format!("proxy {shown} failed during CONNECT"),
            Some(Box::new(e)),
        )
    };
    io.write_all(request(authority, auth).as_bytes())
        .await
        .map_err(lost)?;
    io.flush().await.map_err(lost)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let answer = loop {
        let n = io.read(&mut chunk).await.map_err(lost)?;
        if n == 0 {
            return Err(super::failure(
                ConnectErrorKind::ProxyUnavailable,
                format!("proxy {shown} closed the connection before answering CONNECT"),
                None,
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_answer(&buf) {
            Ok(Some(answer)) => break answer,
            Ok(None) => {}
            Err(bad) => {
                let what = match bad {
                    BadAnswer::NotHttp => "an answer to CONNECT that is not HTTP",
                    BadAnswer::TooLong => "an answer to CONNECT over 16 KiB",
                };
                return Err(super::failure(
                    ConnectErrorKind::ProxyRefused,
                    format!("proxy {shown} sent {what}"),
                    None,
                ));
            }
        }
    };
    if !(200..300).contains(&answer.status) {
        let kind = refusal(answer.status);
        let reason = answer.reason.chars().take(80).collect::<String>();
        let message = format!(
            "proxy {shown} answered CONNECT {authority} with {} {reason}",
            answer.status
        );
        return Err(super::failure(kind, message, None).with_status(answer.status));
    }
    if buf.len() > answer.len {
        return Err(super::failure(
            ConnectErrorKind::ProxyRefused,
            format!("proxy {shown} sent data after its answer to CONNECT"),
            None,
        ));
    }
    Ok(())
}
