//! The proxy variables of the environment, read once when a client starts.
//!
//! | variable | serves |
//! |---|---|
//! | `http_proxy`, `HTTP_PROXY` | ws:// and http:// |
//! | `https_proxy`, `HTTPS_PROXY` | wss:// and https:// |
//! | `all_proxy`, `ALL_PROXY` | both, when the specific one is absent |
//! | `no_proxy`, `NO_PROXY` | hosts that bypass every proxy |
//!
//! When both forms of a name are set, the lower-case one wins (curl's
//! order). An empty value counts as absent. wss:// never falls back to
//! `HTTP_PROXY`. When `REQUEST_METHOD` is set the process is a CGI script,
//! where `HTTP_PROXY` may come from a request's `Proxy:` header
//! ("httpoxy"), and the whole environment is ignored.

use std::sync::Arc;

use actix_tether_actors::ConfigError;

use super::ProxyUrl;

/// The proxies the environment names.
#[derive(Debug, Clone, Default)]
pub(super) struct Env {
    plain: Option<Arc<ProxyUrl>>,
    secure: Option<Arc<ProxyUrl>>,
    pub(super) no_proxy: Option<String>,
}

impl Env {
    /// Reads the variables through `var`; a proxy variable that does not
    /// parse is an error naming the variable, not a silent direct
    /// connection.
    pub(super) fn read(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        if var("REQUEST_METHOD").is_some() {
            return Ok(Env::default());
        }
        let get = |lower: &str, upper: &str| {
            [lower, upper]
                .into_iter()
                .find_map(|name| var(name).filter(|v| !v.trim().is_empty()))
        };
        let parse = |value: Option<String>| -> Result<Option<Arc<ProxyUrl>>, ConfigError> {
            value.map(|v| ProxyUrl::parse(&v).map(Arc::new)).transpose()
        };
        let all = parse(get("all_proxy", "ALL_PROXY"))?;
        let plain = parse(get("http_proxy", "HTTP_PROXY"))?.or_else(|| all.clone());
        let secure = parse(get("https_proxy", "HTTPS_PROXY"))?.or(all);
        Ok(Env {
            plain,
            secure,
            no_proxy: get("no_proxy", "NO_PROXY"),
        })
    }

    pub(super) fn proxy_for(&self, secure: bool) -> Option<Arc<ProxyUrl>> {
        if secure {
            self.secure.clone()
        } else {
            self.plain.clone()
        }
    }
}
