//! A proxy's URL: how to speak to it, where it is, who to say we are.

use std::fmt;

use actix_tether_actors::{redact_url, ConfigError};
use base64::Engine as _;

/// How the client speaks to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyScheme {
    /// HTTP `CONNECT` over plain TCP.
    Http,
    /// HTTP `CONNECT` over TLS to the proxy.
    Https,
    /// SOCKS5, the client resolving the server's name.
    Socks5,
    /// SOCKS5, the proxy resolving the server's name.
    Socks5h,
}

impl ProxyScheme {
    fn name(self) -> &'static str {
        match self {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        }
    }
}

/// A parsed proxy URL. Its `Debug` and `Display` mask the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxyUrl {
    pub(crate) scheme: ProxyScheme,
    /// The host name or address, without IPv6 brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The user name and password, percent-decoded.
    pub(crate) credentials: Option<(String, String)>,
    /// The user name as the URL spelled it, for display.
    shown_user: Option<String>,
}

impl ProxyUrl {
    /// Parses `http://`, `https://`, `socks5://` and `socks5h://` URLs; a
    /// URL without a scheme is an HTTP proxy. The port defaults to 80 for
    /// http, 443 for https and 1080 for SOCKS5.
    pub(crate) fn parse(given: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidProxy {
            url: mask(given),
            reason,
        };
        let given = given.trim();
        let with_scheme;
        let text = if given.contains("://") {
            given
        } else {
            with_scheme = format!("http://{given}");
            &with_scheme
        };
        let url = ::url::Url::parse(text).map_err(|_| invalid("not a URL"))?;
        let scheme = match url.scheme() {
            "http" => ProxyScheme::Http,
            "https" => ProxyScheme::Https,
            "socks5" => ProxyScheme::Socks5,
            "socks5h" => ProxyScheme::Socks5h,
            _ => return Err(invalid("the scheme must be http, https, socks5 or socks5h")),
        };
        let host = match url.host() {
            Some(::url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(invalid("no host")),
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = url.port().unwrap_or(match scheme {
            ProxyScheme::Http => 80,
            ProxyScheme::Https => 443,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => 1080,
        });
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| invalid("the user name or password is not UTF-8"))
            };
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or(""))?;
            Some((user, password))
        };
        Ok(Self {
            scheme,
            host,
            port,
            shown_user: credentials.as_ref().map(|_| url.username().to_owned()),
            credentials,
        })
    }

    /// The `Proxy-Authorization` value for an HTTP proxy, if it has
    /// credentials.
    pub(crate) fn basic_auth(&self) -> Option<String> {
        let (user, password) = self.credentials.as_ref()?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {token}"))
    }

    /// The host as it goes in a URL or a `host:port` (IPv6 in brackets).
    pub(crate) fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, an IPv6 address in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A proxy URL that did not parse, shown without its user info: whatever
/// comes before the last `@` may hold a password, even where an unencoded
/// `/` or `#` in it broke the URL.
fn mask(given: &str) -> String {
    let (scheme, rest) = given.split_once("://").unwrap_or(("", given));
    match rest.rsplit_once('@') {
        Some((_, host)) if scheme.is_empty() => format!("****@{host}"),
        Some((_, host)) => format!("{scheme}://****@{host}"),
        None => redact_url(given),
    }
}

impl fmt::Display for ProxyUrl {
    /// `scheme://user:****@host:port`: the user name kept, the password
    /// masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.name())?;
        if let Some(user) = &self.shown_user {
            write!(f, "{user}:****@")?;
        }
        f.write_str(&self.authority())
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}
