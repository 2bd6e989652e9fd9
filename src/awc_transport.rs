//! The awc transport: ws:// and wss:// (rustls) connections for the engine.
//!
//! A fresh `awc::Client` is built for every attempt, on the supervisor's
//! arbiter (awc's client is not `Send`). awc's handshake drops the response
//! head when the server refuses the upgrade, so a small connector middleware
//! records `Retry-After` on the way through.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix_http::error::ParseError;
use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tether_actors::{ConnectError, ConnectErrorKind, ConnectRequest, Link, Transport};
use actix_tls::connect::Resolver;
use awc::error::{ConnectError as AwcConnectError, SendRequestError, WsClientError};
use awc::http::header::{
    HeaderMap, LOCATION, RETRY_AFTER, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL,
};
use awc::middleware::Transform;
use futures::future::{self, LocalBoxFuture};

use crate::proxy::{Dialer, ProxyScheme, ProxyUrl, Routes};
use crate::redirect::{self, Redirect};
use crate::wire::decode::Decoder;
use crate::wire::deflate::Compression;
use crate::{awc_link, validate};

/// Opens links with awc, then speaks WebSocket with our own codec.
#[derive(Debug, Clone)]
pub(crate) struct AwcTransport {
    pub(crate) max_frame_size: usize,
    pub(crate) max_message_size: usize,
    pub(crate) compression: Compression,
    #[cfg(feature = "rustls")]
    pub(crate) tls: std::sync::Arc<rustls::ClientConfig>,
    /// Which proxy each URL goes through.
    pub(crate) routes: std::sync::Arc<Routes>,
    /// Redirects of the upgrade to follow.
    pub(crate) redirects: u32,
}

impl AwcTransport {
    /// An awc client for one attempt, its sockets opened through `route`;
    /// `bounded` learns whether the kernel's unsent bytes are bounded on its
    /// socket.
    fn client(
        &self,
        timeout: Duration,
        route: Option<std::sync::Arc<ProxyUrl>>,
        head: Rc<Head>,
        bounded: Rc<Cell<bool>>,
    ) -> awc::Client {
        // awc leaves Nagle's algorithm on; a WebSocket client flushes whole
        // batches itself, and a small message (a ping, one request) must not
        // wait for the previous segment's acknowledgement.
        let prepare = move |tcp: &TcpStream| {
            let _ = tcp.set_nodelay(true);
            bounded.set(limit_unsent(tcp));
        };
        let dialer = Dialer {
            tcp: actix_tls::connect::Connector::new(Resolver::default()).service(),
            route,
            #[cfg(feature = "rustls")]
            tls: self.tls.clone(),
            prepare: Rc::new(prepare),
        };
        // The attempt's timeout bounds TCP and the tunnel, and the TLS
        // handshake too (awc's own handshake limit is 5 s whatever the
        // attempt allows).
        let connector = awc::Connector::new()
            .connector(dialer)
            .timeout(timeout)
            .handshake_timeout(timeout);
        #[cfg(feature = "rustls")]
        let connector = connector.rustls_0_23(self.tls.clone());
        awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .wrap(CaptureHead(head))
            .finish()
    }
}

/// Unsent bytes the kernel may hold below the writer.
#[cfg(any(target_os = "linux", target_os = "android"))]
const NOTSENT_LOWAT: u32 = 16 * 1024;

/// The most accepted bytes that may still wait unsent below the writer, when
/// `TCP_NOTSENT_LOWAT` is set: the low-water mark plus one write, plus for
/// each layer of TLS (wss://, and an https:// proxy under it) rustls's own
/// send buffer (64 KiB of plaintext by default, counted as 80 KiB with
/// record overhead). Without the option nothing bounds them, and the
/// heartbeat never takes accepted bytes as proof of a moving link.
fn unsent_bound(bounded: bool, tls_layers: u64) -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if bounded {
        return u64::from(NOTSENT_LOWAT) + awc_link::WRITE_CHUNK as u64 + tls_layers * 80 * 1024;
    }
    let _ = (bounded, tls_layers);
    u64::MAX
}

/// Keeps the kernel's unsent data small (`TCP_NOTSENT_LOWAT`): the socket
/// reports writable only while less than 16 KiB wait to be sent, so the
/// writer's own buffer, where control frames go ahead of data, holds the
/// backlog instead of a send buffer of megabytes that a Pong would queue
/// behind. Elsewhere the kernel's default applies.
fn limit_unsent(tcp: &TcpStream) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match socket2::SockRef::from(tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
                false
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = tcp;
        false
    }
}

impl Transport for AwcTransport {
    fn connect(
        &mut self,
        request: &ConnectRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Result<Link, ConnectError>> {
        // A request provider may hand us anything: check what awc would
        // otherwise panic on or misreport.
        if let Err(e) = validate::request(request) {
            let err = ConnectError::with_source(ConnectErrorKind::InvalidRequest, e);
            return Box::pin(future::ready(Err(err)));
        }
        let this = self.clone();
        let mut request = request.clone();
        Box::pin(async move {
            let mut hops = 0;
            loop {
                match this.attempt(&request, timeout).await {
                    Ok(link) => return Ok(link),
                    Err(Failed::Error(e)) => return Err(e),
                    Err(Failed::Redirect(redirect)) => {
                        request = redirect::follow(request, &redirect, hops, this.redirects)?;
                        hops += 1;
                    }
                }
            }
        })
    }
}

/// How one handshake failed.
enum Failed {
    Error(ConnectError),
    /// A redirect, for [`redirect::follow`] to judge.
    Redirect(Redirect),
}

impl From<ConnectError> for Failed {
    fn from(e: ConnectError) -> Self {
        Failed::Error(e)
    }
}

impl AwcTransport {
    /// One handshake with `request.url`, through the proxy its host is
    /// routed to.
    async fn attempt(&self, request: &ConnectRequest, timeout: Duration) -> Result<Link, Failed> {
        let secure = request.url.starts_with("wss:") || request.url.starts_with("https:");
        let parsed = ::url::Url::parse(&request.url).ok();
        let route = parsed
            .as_ref()
            .and_then(|url| url.host_str())
            .and_then(|host| self.routes.route(host, secure));
        // `host:port`, for errors to say which server failed.
        let target = parsed.as_ref().and_then(|url| {
            let host = url.host_str()?;
            let port = url.port().unwrap_or(if secure { 443 } else { 80 });
            Some(format!("{host}:{port}"))
        });
        let named = |e: ConnectError| match (&target, e.target()) {
            (Some(t), None) => e.with_target(t.clone()),
            _ => e,
        };
        let shown_proxy = route.as_ref().map(|p| p.to_string());
        let tls_layers = u64::from(secure)
            + u64::from(
                route
                    .as_ref()
                    .is_some_and(|p| p.scheme == ProxyScheme::Https),
            );
        let head = Rc::new(Head::default());
        let bounded = Rc::new(Cell::new(false));
        let client = self.client(timeout, route, head.clone(), bounded.clone());
        // awc's codec is set aside after the upgrade (our decoder has the
        // limits), so its frame size is not set.
        let mut ws = client.ws(request.url.as_str());
        for (name, value) in &request.headers {
            ws = ws.header(name.as_str(), value.as_str());
        }
        if !request.protocols.is_empty() {
            ws = ws.protocols(&request.protocols);
        }
        if let Some(offer) = self.compression.offer_header() {
            // A request provider's own extension header would be answered
            // for an offer we did not make: ours replaces it.
            ws = ws.set_header(SEC_WEBSOCKET_EXTENSIONS, offer.as_str());
        }
        let (response, framed) = match ws.connect().await {
            Ok(done) => done,
            Err(WsClientError::InvalidResponseStatus(status))
                if redirect::is_redirect(status.as_u16()) =>
            {
                return Err(Failed::Redirect(Redirect {
                    status: status.as_u16(),
                    location: head.location.take(),
                }))
            }
            Err(e) => {
                let e = map_connect_error(e, secure, head.retry_after.get());
                return Err(named(e).into());
            }
        };
        let protocol = response
            .headers()
            .get(SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answers = response
            .headers()
            .get_all(SEC_WEBSOCKET_EXTENSIONS)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let agreed = self
            .compression
            .accept(answers)
            .map_err(|e| ConnectError::with_source(ConnectErrorKind::Extension, e))?;
        let extensions = agreed.as_ref().map(|a| a.text.clone());
        let (inflater, deflater) = agreed.map(|a| a.split()).unzip();
        let decoder = Decoder::new(self.max_frame_size, self.max_message_size, inflater);
        let bound = unsent_bound(bounded.get(), tls_layers);
        let received = Rc::new(Cell::new(0));
        let (stream, writer) = awc_link::split(
            framed.into_parts(),
            decoder,
            deflater,
            bound,
            received.clone(),
        );
        Ok(Link::new(Box::pin(stream), Box::new(writer))
            .with_protocol(protocol)
            .with_extensions(extensions)
            .with_bytes_received(received)
            .with_proxy(shown_proxy))
    }
}

fn io_kind(e: &io::Error, secure: bool) -> ConnectErrorKind {
    #[cfg(feature = "rustls")]
    if let Some(kind) = crate::tls::failure_kind(e) {
        return kind;
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectErrorKind::Refused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            ConnectErrorKind::Reset
        }
        io::ErrorKind::TimedOut => ConnectErrorKind::Timeout,
        io::ErrorKind::InvalidData if secure => ConnectErrorKind::Tls,
        _ => ConnectErrorKind::Io,
    }
}

fn map_connect_error(
    e: WsClientError,
    secure: bool,
    retry_after: Option<Duration>,
) -> ConnectError {
    // A proxy's failure arrives whole, wrapped in an `io::Error` to pass
    // through awc.
    let e = match e {
        WsClientError::SendRequest(SendRequestError::Connect(AwcConnectError::Io(io))) => {
            match io.downcast::<ConnectError>() {
                Ok(failure) => return failure,
                Err(io) => {
                    WsClientError::SendRequest(SendRequestError::Connect(AwcConnectError::Io(io)))
                }
            }
        }
        other => other,
    };
    let kind = match &e {
        WsClientError::InvalidResponseStatus(status) => {
            return ConnectError::http(status.as_u16(), retry_after)
        }
        WsClientError::SendRequest(SendRequestError::Connect(c)) => match c {
            AwcConnectError::Resolver(_)
            | AwcConnectError::NoRecords
            | AwcConnectError::Unresolved => ConnectErrorKind::Dns,
            AwcConnectError::Timeout => ConnectErrorKind::Timeout,
            AwcConnectError::Io(io) => io_kind(io, secure),
            AwcConnectError::SslIsNotSupported => ConnectErrorKind::Tls,
            _ => ConnectErrorKind::Io,
        },
        WsClientError::SendRequest(SendRequestError::Send(io)) => io_kind(io, secure),
        WsClientError::SendRequest(SendRequestError::Timeout) => ConnectErrorKind::Timeout,
        WsClientError::SendRequest(SendRequestError::Url(_) | SendRequestError::Http(_)) => {
            ConnectErrorKind::InvalidRequest
        }
        // The connection ended before a whole response arrived: a server
        // (or a proxy in front of it) going away, worth another attempt.
        WsClientError::SendRequest(SendRequestError::Response(
            ParseError::Incomplete | ParseError::Io(_),
        )) => ConnectErrorKind::Reset,
        WsClientError::SendRequest(SendRequestError::Response(ParseError::Timeout)) => {
            ConnectErrorKind::Timeout
        }
        WsClientError::SendRequest(SendRequestError::Response(_)) => ConnectErrorKind::Handshake,
        WsClientError::SendRequest(_) => ConnectErrorKind::Io,
        _ => ConnectErrorKind::Handshake,
    };
    // An I/O failure keeps its `io::Error` as the source (reachable by
    // downcasting: the OS error, or the rustls error inside a TLS failure).
    // awc's other errors are not `Send`; their text is the source.
    match e {
        WsClientError::SendRequest(
            SendRequestError::Connect(AwcConnectError::Io(io))
            | SendRequestError::Send(io)
            | SendRequestError::Response(ParseError::Io(io)),
        ) => ConnectError::with_source(kind, io),
        other => ConnectError::with_source(kind, other.to_string()),
    }
}

/// Parses `Retry-After` as delay-seconds or an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What the handshake's response head said that awc does not pass on
/// when it refuses the upgrade.
#[derive(Default)]
struct Head {
    retry_after: Cell<Option<Duration>>,
    location: Cell<Option<String>>,
}

/// Connector middleware that records the `Retry-After` and `Location` of
/// the handshake response.
struct CaptureHead(Rc<Head>);

struct CaptureHeadService<S> {
    inner: S,
    head: Rc<Head>,
}

impl<S> Transform<S, awc::ConnectRequest> for CaptureHead
where
    S: Service<awc::ConnectRequest, Response = awc::ConnectResponse, Error = SendRequestError>,
    S::Future: 'static,
{
    type Transform = CaptureHeadService<S>;

    fn new_transform(self, inner: S) -> Self::Transform {
        CaptureHeadService {
            inner,
            head: self.0,
        }
    }
}

impl<S> Service<awc::ConnectRequest> for CaptureHeadService<S>
where
    S: Service<awc::ConnectRequest, Response = awc::ConnectResponse, Error = SendRequestError>,
    S::Future: 'static,
{
    type Response = awc::ConnectResponse;
    type Error = SendRequestError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::forward_ready!(inner);

    fn call(&self, req: awc::ConnectRequest) -> Self::Future {
        let fut = self.inner.call(req);
        let head = self.head.clone();
        Box::pin(async move {
            let res = fut.await?;
            if let awc::ConnectResponse::Tunnel(response, _) = &res {
                head.retry_after.set(parse_retry_after(&response.headers));
                let location = response
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                head.location.set(location);
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use awc::http::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
        // A date two minutes ahead waits about two minutes (the header has
        // whole seconds, and the clock moves while the test runs).
        let ahead = SystemTime::now() + Duration::from_secs(120);
        let value = HeaderValue::from_str(&httpdate::fmt_http_date(ahead)).unwrap();
        h.insert(RETRY_AFTER, value);
        let wait = parse_retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(115) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }
}
