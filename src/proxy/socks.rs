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

/// Opens a tunnel to `host:port` through the SOCKS5 proxy on `socket` and
/// gives the socket back, the tunnel open on it.
pub(crate) async fn tunnel<S>(
    socket: S,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<S, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let target: TargetAddr<'_> = match host.parse() {
        Ok(ip) => TargetAddr::Ip(std::net::SocketAddr::new(ip, port)),
        Err(_) if proxy.scheme == ProxyScheme::Socks5h => TargetAddr::Domain(host.into(), port),
        Err(_) => {
            let resolved = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| ConnectError::with_source(ConnectErrorKind::Dns, e))?
                .next()
                .ok_or_else(|| {
                    ConnectError::with_source(
                        ConnectErrorKind::Dns,
                        format!("{host} has no addresses"),
                    )
                })?;
            TargetAddr::Ip(resolved)
        }
    };
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
            let message = format!("SOCKS5 proxy {proxy} refused the tunnel to {host}:{port}");
            Err(super::failure(kind, message, Some(Box::new(e))))
        }
    }
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
