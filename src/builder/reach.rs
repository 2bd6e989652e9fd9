//! The builder's reach: TLS settings, proxies and redirects.

use super::ClientBuilder;

impl ClientBuilder {
    /// The rustls configuration for wss:// (and https:// proxies), in place
    /// of the one the client builds. Its ALPN list should be `http/1.1` only
    /// (WebSocket has no HTTP/2 upgrade here). It cannot be combined with
    /// [`add_root_certificate`](Self::add_root_certificate),
    /// [`identity`](Self::identity) or
    /// [`danger_accept_invalid_certs`](Self::danger_accept_invalid_certs):
    /// `start()` refuses the mix. Default is the webpki root certificates
    /// (and with the `native-roots` feature the OS trust store) with
    /// `http/1.1`.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Trusts the certificates of a PEM bundle (one or more `CERTIFICATE`
    /// blocks), in addition to the built-in roots: a private certificate
    /// authority, or a server's self-signed certificate. May be called more
    /// than once. A bundle without a certificate, or one that does not
    /// parse, fails `start()` with [`ConfigError::InvalidTls`](crate::ConfigError::InvalidTls). Default is
    /// the built-in roots only.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn add_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_options.roots.push(pem.into());
        self
    }

    /// Presents a client certificate to servers that ask for one (mutual
    /// TLS): `chain_pem` is the certificate chain, the client's own first,
    /// `key_pem` its private key (PKCS#8, RSA or SEC1 PEM). A chain or key
    /// that does not parse, or a key that does not fit, fails `start()`
    /// with [`ConfigError::InvalidTls`](crate::ConfigError::InvalidTls). Default is no client certificate.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn identity(mut self, chain_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls_options.identity = Some((chain_pem.into(), key_pem.into()));
        self
    }

    /// Accepts any server certificate: untrusted, expired, or issued for
    /// another name. The handshake's signatures are still checked, but
    /// anyone on the path can pose as the server: for tests and for
    /// servers reached only through a trusted network. Also applies to an
    /// https:// proxy's certificate. Default is false.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls_options.accept_invalid_certs = accept;
        self
    }

    /// Sends connections through `proxy` when it serves their scheme
    /// ([`Proxy::all`], [`Proxy::http`] for ws://, [`Proxy::https`] for
    /// wss://). May be called more than once: the first proxy that serves a
    /// URL's scheme is used. Once any proxy is given, the environment's
    /// proxy variables are not read. Hosts on the no-proxy list
    /// ([`no_proxy`](Self::no_proxy)) are reached directly.
    ///
    /// A proxy that cannot be reached, or answers `CONNECT` with 502, 503 or
    /// 504, is retried with the backoff like a server that is down; a proxy
    /// that refuses (407, a SOCKS5 password refused, a ruleset) gives up at
    /// once. Default is none: the environment decides (see
    /// [`proxy_from_env`](Self::proxy_from_env)).
    ///
    /// [`Proxy::all`]: crate::Proxy::all
    /// [`Proxy::http`]: crate::Proxy::http
    /// [`Proxy::https`]: crate::Proxy::https
    pub fn proxy(mut self, proxy: crate::Proxy) -> Self {
        self.proxies.proxies.push(proxy);
        self
    }

    /// Hosts reached directly, never through a proxy, in `NO_PROXY` syntax:
    /// comma-separated; `*` alone for every host; a name matches itself and
    /// its subdomains (`example.com` and `.example.com` alike); IP
    /// addresses and CIDR ranges (`10.0.0.0/8`); ports ignored. Applies to
    /// the builder's proxies and the environment's, and replaces the
    /// environment's `NO_PROXY`. Default is the environment's `NO_PROXY`
    /// (when the environment is read), else no host.
    pub fn no_proxy(mut self, list: impl Into<String>) -> Self {
        self.proxies.no_proxy = Some(list.into());
        self
    }

    /// Whether the environment's proxy variables are read when no proxy is
    /// given to the builder: `http_proxy`/`HTTP_PROXY` for ws://,
    /// `https_proxy`/`HTTPS_PROXY` for wss://, `all_proxy`/`ALL_PROXY` for
    /// either when the specific one is absent, and `no_proxy`/`NO_PROXY`
    /// (lower case wins when both are set; all are ignored when
    /// `REQUEST_METHOD` is set, as in a CGI script). They are read once, by
    /// `start()`; a value that is not a proxy URL fails `start()` with
    /// [`ConfigError::InvalidProxy`](crate::ConfigError::InvalidProxy). Default is true.
    pub fn proxy_from_env(mut self, read: bool) -> Self {
        self.proxies.from_env = read;
        self
    }

    /// Follows up to `hops` redirects (301, 302, 307, 308) of the upgrade
    /// request to another ws://, wss://, http:// or https:// URL. A
    /// redirect from wss:// (or https://) to ws:// (or http://) is refused,
    /// and so is one past the last hop, with the redirect's status as a
    /// fatal [`ConnectErrorKind::Http`] failure. The request's headers go
    /// to the new URL only when it has the same scheme, host and port; its
    /// subprotocols always do. Every attempt starts from the endpoint's own
    /// URL again. Default is 0: a redirect is a failure.
    ///
    /// [`ConnectErrorKind::Http`]: crate::ConnectErrorKind::Http
    pub fn follow_redirects(mut self, hops: u32) -> Self {
        self.redirects = hops;
        self
    }
}
