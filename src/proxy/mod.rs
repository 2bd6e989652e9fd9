//! Proxies: which one a connection goes through, and the tunnels through
//! them.
//!
//! - [`Proxy`]: one proxy URL and the schemes it serves; `http://` and
//!   `https://` proxies open an HTTP `CONNECT` tunnel, `socks5://` and
//!   `socks5h://` a SOCKS5 one. The WebSocket handshake (and for wss:// its
//!   TLS) runs inside the tunnel.
//! - `route`: the proxy a URL goes through: the builder's proxies, else the
//!   environment's (`env.rs`), unless the no-proxy list matches its host
//!   (`no_proxy.rs`).
//! - `dial.rs`: the connector awc calls for every attempt; `http.rs` and
//!   `socks.rs`: the two tunnels.

mod dial;
mod env;
#[cfg(fuzzing)]
pub(crate) mod fuzz;
pub(crate) mod http;
mod no_proxy;
mod proxy_url;
mod socks;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use actix_tether_actors::{ConfigError, ConnectError, ConnectErrorKind};

pub(crate) use self::dial::Dialer;
use self::env::Env;
use self::no_proxy::NoProxy;
pub(crate) use self::proxy_url::{ProxyScheme, ProxyUrl};

/// A proxy for the client's connections, and which of them it serves.
///
/// The URL's scheme says how to speak to the proxy: `http://` (an HTTP
/// proxy, `CONNECT`), `https://` (the same over TLS to the proxy),
/// `socks5://` (SOCKS5; the client resolves the server's name) or
/// `socks5h://` (SOCKS5; the proxy resolves it). A URL without a scheme is
/// an HTTP proxy. Credentials in the URL (`http://user:pass@host:3128`,
/// percent-encoded) are sent as Basic authentication to an HTTP proxy and
/// as a username and password (RFC 1929) to a SOCKS5 proxy; the password
/// never appears in events, logs, errors or `Debug` output.
///
/// ```no_run
/// use actix_tether::{ClientBuilder, Event, Proxy};
/// use futures::StreamExt;
///
/// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientBuilder::new("wss://feed.example.com/stream")
///     .proxy(Proxy::https("http://user:secret@proxy.corp:3128")?)
///     .no_proxy("localhost, .internal, 10.0.0.0/8")
///     .start()?;
/// let mut events = client.events();
/// // `Connected { proxy: Some("http://user:****@proxy.corp:3128"), .. }`
/// while let Some(event) = events.next().await {
///     if let Event::Connected { proxy, .. } = event {
///         println!("up through {proxy:?}");
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Proxy {
    serves: Serves,
    url: Arc<ProxyUrl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    All,
    Plain,
    Secure,
}

impl Proxy {
    /// A proxy for every connection, ws:// and wss://.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidProxy`] for a URL that is not an `http://`,
    /// `https://`, `socks5://` or `socks5h://` proxy (its password masked).
    pub fn all(url: &str) -> Result<Self, ConfigError> {
        Self::new(Serves::All, url)
    }

    /// A proxy for ws:// (and http://) connections only.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidProxy`] for a URL that is not an `http://`,
    /// `https://`, `socks5://` or `socks5h://` proxy (its password masked).
    pub fn http(url: &str) -> Result<Self, ConfigError> {
        Self::new(Serves::Plain, url)
    }

    /// A proxy for wss:// (and https://) connections only.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidProxy`] for a URL that is not an `http://`,
    /// `https://`, `socks5://` or `socks5h://` proxy (its password masked).
    pub fn https(url: &str) -> Result<Self, ConfigError> {
        Self::new(Serves::Secure, url)
    }

    fn new(serves: Serves, url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            serves,
            url: Arc::new(ProxyUrl::parse(url)?),
        })
    }

    fn serves(&self, secure: bool) -> bool {
        match self.serves {
            Serves::All => true,
            Serves::Plain => !secure,
            Serves::Secure => secure,
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("serves", &self.serves)
            .field("url", &self.url)
            .finish()
    }
}

/// What the builder says about proxies, before the environment is read.
#[derive(Debug, Clone)]
pub(crate) struct ProxySettings {
    pub(crate) proxies: Vec<Proxy>,
    pub(crate) no_proxy: Option<String>,
    pub(crate) from_env: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            proxies: Vec::new(),
            no_proxy: None,
            from_env: true,
        }
    }
}

impl ProxySettings {
    /// The routes, with the environment read now (when it is to be read).
    pub(crate) fn resolve(self) -> Result<Routes, ConfigError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    fn resolve_with(self, var: impl Fn(&str) -> Option<String>) -> Result<Routes, ConfigError> {
        let env = if self.from_env && self.proxies.is_empty() {
            Env::read(&var)?
        } else {
            Env::default()
        };
        let list = match self.no_proxy {
            Some(list) => list,
            None if self.from_env => env.no_proxy.clone().unwrap_or_default(),
            None => String::new(),
        };
        Ok(Routes {
            proxies: self.proxies,
            env,
            no_proxy: NoProxy::parse(&list),
        })
    }
}

/// Which proxy, if any, each URL goes through.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    proxies: Vec<Proxy>,
    env: Env,
    no_proxy: NoProxy,
}

impl Routes {
    /// The proxy for a connection to `host` (ws:// when `secure` is false,
    /// wss:// when true).
    ///
    /// The no-proxy list wins over every proxy. Proxies given to the
    /// builder are tried in order, and when there are any the environment
    /// is not read.
    pub(crate) fn route(&self, host: &str, secure: bool) -> Option<Arc<ProxyUrl>> {
        if self.no_proxy.matches(host) {
            return None;
        }
        if !self.proxies.is_empty() {
            return self
                .proxies
                .iter()
                .find(|p| p.serves(secure))
                .map(|p| p.url.clone());
        }
        self.env.proxy_for(secure)
    }
}

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// What went wrong with a proxy, in words that name it (password masked),
/// and the lower error.
#[derive(Debug)]
struct Detail {
    message: String,
    source: Option<BoxError>,
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Detail {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// A connect error of `kind` whose source says what the proxy did.
pub(crate) fn failure(
    kind: ConnectErrorKind,
    message: String,
    source: Option<BoxError>,
) -> ConnectError {
    ConnectError::with_source(kind, Detail { message, source })
}

#[cfg(test)]
mod tests;
