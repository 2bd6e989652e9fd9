//! A SOCKS5 tunnel (RFC 1928), with username and password (RFC 1929) when
//! the proxy URL has credentials, through tokio-socks.
//!
//! With `socks5://` the client resolves the server's name and asks for an
//! address; with `socks5h://` it sends the name and the proxy resolves it.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_socks::tcp::Socks5Stream;
use tokio_socks::TargetAddr;

use actix_tether_actors::{ConnectError, ConnectErrorKind};

use super::{ProxyScheme, ProxyUrl};

/// What to ask the proxy for: with `socks5h://`, or a host that is an
/// address, the name as given; with `socks5://`, every address the name
/// resolves to here, in order.
pub(crate) async fn targets(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<Vec<TargetAddr<'static>>, ConnectError> {
    if let Ok(ip) = host.parse() {
        return Ok(vec![TargetAddr::Ip(std::net::SocketAddr::new(ip, port))]);
    }
    if proxy.scheme == ProxyScheme::Socks5h {
        return Ok(vec![TargetAddr::Domain(host.to_owned().into(), port)]);
    }
    let resolved: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ConnectError::with_source(ConnectErrorKind::Dns, e))?
        .map(TargetAddr::Ip)
        .collect();
    if resolved.is_empty() {
        return Err(ConnectError::with_source(
            ConnectErrorKind::Dns,
            format!("{host} has no addresses"),
        ));
    }
    Ok(resolved)
}

/// Opens a tunnel to `target` (`shown` as `host:port` in errors) through
/// the SOCKS5 proxy on `socket` and gives the socket back, the tunnel open
/// on it.
pub(crate) async fn tunnel<S>(
    socket: S,
    proxy: &ProxyUrl,
    target: TargetAddr<'_>,
    shown: &str,
) -> Result<S, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let opened = match &proxy.credentials {
        Some((user, password)) => {
            Socks5Stream::connect_with_password_and_socket(socket, target, user, password).await
        }
        None => Socks5Stream::connect_with_socket(socket, target).await,
    };
    match opened {
        Ok(stream) => Ok(stream.into_inner()),
        Err(e) => {
            let kind = classify(&e);
            let message = format!("SOCKS5 proxy {proxy} refused the tunnel to {shown}");
            Err(super::failure(kind, message, Some(Box::new(e))))
        }
    }
}

/// Whether a failed tunnel to one address of a name is worth trying with
/// the next: the proxy could not reach that address.
pub(crate) fn try_next(e: &ConnectError) -> bool {
    use std::error::Error as _;
    let reply = e
        .source()
        .and_then(|detail| detail.source())
        .and_then(|s| s.downcast_ref::<tokio_socks::Error>());
    matches!(
        reply,
        Some(
            tokio_socks::Error::ConnectionRefused
                | tokio_socks::Error::HostUnreachable
                | tokio_socks::Error::NetworkUnreachable
                | tokio_socks::Error::TtlExpired
        )
    )
}

/// The first tunnel `open` opens, trying the targets in order: on to the
/// next when the proxy could not reach one ([`try_next`]), stopping at any
/// other failure; the last failure when none opens.
pub(crate) async fn first_open<T, S, F, Fut>(
    targets: Vec<T>,
    mut open: F,
) -> Result<S, ConnectError>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<S, ConnectError>>,
{
    let mut last = None;
    for to in targets {
        match open(to).await {
            Ok(opened) => return Ok(opened),
            Err(e) if try_next(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::new(ConnectErrorKind::Dns)))
}

/// Which SOCKS failures another attempt may get past.
pub(crate) fn classify(e: &tokio_socks::Error) -> ConnectErrorKind {
    use tokio_socks::Error as E;
    match e {
        // The proxy, or the network behind it, is in trouble now.
        E::Io(_)
        | E::ProxyServerUnreachable
        | E::GeneralSocksServerFailure
        | E::NetworkUnreachable
        | E::HostUnreachable
        | E::ConnectionRefused
        | E::TtlExpired => ConnectErrorKind::ProxyUnavailable,
        E::InvalidTargetAddress(_) => ConnectErrorKind::InvalidRequest,
        // Authentication refused, a ruleset, what the proxy cannot do, or
        // an answer that is not SOCKS5: the same request fails again.
        _ => ConnectErrorKind::ProxyRefused,
    }
}
