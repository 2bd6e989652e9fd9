//! The connector awc calls to open a socket for an attempt: straight to the
//! server, or to a proxy and through its tunnel. awc then speaks TLS (for
//! wss://) and HTTP on what this returns, so a tunnel is invisible above.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use actix_service::Service;
use actix_tether_actors::{ConnectError, ConnectErrorKind};
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection, ConnectorService, Host,
};
use awc::http::Uri;
use futures::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::proxy_url::authority;
use super::{http, socks, ProxyScheme, ProxyUrl};

/// The socket under awc: TCP, or TLS to an https:// proxy.
pub(crate) enum Io {
    Tcp(TcpStream),
    #[cfg(feature = "rustls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Tcp(tcp) => tcp,
            #[cfg(feature = "rustls")]
            Io::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Io::Tcp(tcp) => f.debug_tuple("Tcp").field(tcp).finish(),
            #[cfg(feature = "rustls")]
            Io::Tls(tls) => f.debug_tuple("Tls").field(tls.get_ref().0).finish(),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "rustls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "rustls")]
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "rustls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl ActixStream for Io {
    // The TCP socket's readiness, as actix-tls's own TLS stream does it:
    // awc asks only to learn whether a pooled connection is still open.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(self.tcp(), cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(self.tcp(), cx)
    }
}

/// Where a proxy listens, for actix-tls's resolver and connector.
#[derive(Debug, Clone)]
struct ProxyAddr {
    host: String,
    port: u16,
}

impl Host for ProxyAddr {
    fn hostname(&self) -> &str {
        &self.host
    }

    fn port(&self) -> Option<u16> {
        Some(self.port)
    }
}

/// Opens the socket for one attempt: directly, or through `route`.
/// `prepare` sets the socket's options once it is connected and says
/// whether its unsent bytes are bounded.
#[derive(Clone)]
pub(crate) struct Dialer {
    pub(crate) tcp: ConnectorService,
    pub(crate) route: Option<Arc<ProxyUrl>>,
    #[cfg(feature = "rustls")]
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) prepare: Rc<dyn Fn(&TcpStream)>,
}

impl Service<ConnectInfo<Uri>> for Dialer {
    type Response = Connection<Uri, Io>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let Some(proxy) = self.route.clone() else {
            let connecting = self.tcp.call(req);
            let prepare = self.prepare.clone();
            return Box::pin(async move {
                let (tcp, uri) = connecting.await?.into_parts();
                prepare(&tcp);
                Ok(Connection::new(uri, Io::Tcp(tcp)))
            });
        };
        let this = self.clone();
        Box::pin(async move {
            let host = req.hostname().trim_start_matches('[').trim_end_matches(']');
            let (host, port) = (host.to_owned(), req.port());
            let uri = req.request().clone();
            this.through(&proxy, &host, port)
                .await
                .map(|io| Connection::new(uri, io))
                .map_err(|e| TcpConnectError::Io(io::Error::other(e)))
        })
    }
}

impl Dialer {
    /// A socket to `host:port` through `proxy`'s tunnel.
    async fn through(&self, proxy: &ProxyUrl, host: &str, port: u16) -> Result<Io, ConnectError> {
        let shown = proxy.to_string();
        let target = authority(host, port);
        match proxy.scheme {
            ProxyScheme::Http => {
                let mut io = self.reach(proxy).await?;
                http::tunnel(&mut io, &target, proxy.basic_auth().as_deref(), &shown).await?;
                Ok(Io::Tcp(io))
            }
            ProxyScheme::Https => {
                let tcp = self.reach(proxy).await?;
                self.https_tunnel(tcp, proxy, &target, &shown).await
            }
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
                // Each address the name resolves to, in order, on a new
                // connection to the proxy, until one is reached: as a
                // direct connection tries them (`localhost` may resolve to
                // ::1 first for a server on 127.0.0.1 only).
                let targets = socks::targets(proxy, host, port).await?;
                let tcp = socks::first_open(targets, |to| async {
                    let tcp = self.reach(proxy).await?;
                    socks::tunnel(tcp, proxy, to, &target).await
                })
                .await?;
                Ok(Io::Tcp(tcp))
            }
        }
    }

    /// A TCP connection to the proxy, its options set.
    async fn reach(&self, proxy: &ProxyUrl) -> Result<TcpStream, ConnectError> {
        let at = ProxyAddr {
            host: proxy.host.clone(),
            port: proxy.port,
        };
        match self.tcp.call(ConnectInfo::new(at)).await {
            Ok(conn) => {
                let tcp = conn.into_parts().0;
                (self.prepare)(&tcp);
                Ok(tcp)
            }
            Err(e) => {
                let source: super::BoxError = match e {
                    TcpConnectError::Io(io) => Box::new(io),
                    other => other.to_string().into(),
                };
                Err(super::failure(
                    ConnectErrorKind::ProxyUnavailable,
                    format!("cannot reach proxy {proxy}"),
                    Some(source),
                ))
            }
        }
    }

    #[cfg(feature = "rustls")]
    async fn https_tunnel(
        &self,
        tcp: TcpStream,
        proxy: &ProxyUrl,
        target: &str,
        shown: &str,
    ) -> Result<Io, ConnectError> {
        let name = rustls::pki_types::ServerName::try_from(proxy.host.clone()).map_err(|_| {
            super::failure(
                ConnectErrorKind::InvalidRequest,
                format!("proxy {shown} has no valid TLS server name"),
                None,
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut io = connector.connect(name, tcp).await.map_err(|e| {
            let kind = crate::tls::failure_kind(&e).unwrap_or(ConnectErrorKind::ProxyUnavailable);
            super::failure(
                kind,
                format!("TLS to proxy {shown} failed"),
                Some(Box::new(e)),
            )
        })?;
        http::tunnel(&mut io, target, proxy.basic_auth().as_deref(), shown).await?;
        Ok(Io::Tls(Box::new(io)))
    }

    #[cfg(not(feature = "rustls"))]
    async fn https_tunnel(
        &self,
        _tcp: TcpStream,
        _proxy: &ProxyUrl,
        _target: &str,
        shown: &str,
    ) -> Result<Io, ConnectError> {
        Err(super::failure(
            ConnectErrorKind::InvalidRequest,
            format!("proxy {shown} needs the `rustls` feature of actix-tether"),
            None,
        ))
    }
}
