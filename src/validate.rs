//! Checks on what users hand the builder (and what request providers return),
//! so that bad input becomes a typed error instead of a panic deep in awc.

use actix_tether_actors::{redact_url, ConfigError, ConnectRequest};
use awc::http::header::{HeaderName, HeaderValue};

/// Checks a URL: it must parse, use ws, wss, http or https, and name a host.
pub(crate) fn url(raw: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(raw).map_err(|_| ConfigError::InvalidUrl {
        url: redact_url(raw),
    })?;
    match parsed.scheme() {
        "ws" | "http" => {}
        "wss" | "https" => {
            if !cfg!(feature = "rustls") {
                return Err(ConfigError::TlsUnavailable);
            }
        }
        other => {
            return Err(ConfigError::UnsupportedScheme {
                scheme: other.to_owned(),
            })
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::InvalidUrl {
            url: redact_url(raw),
        });
    }
    // awc parses with `http::Uri`, which is stricter in places (no spaces,
    // for one): check it too so awc never sees what it would reject late.
    raw.parse::<awc::http::Uri>()
        .map(|_| ())
        .map_err(|_| ConfigError::InvalidUrl {
            url: redact_url(raw),
        })
}

/// Checks that a header can be sent as given.
pub(crate) fn header(name: &str, value: &str) -> Result<(), ConfigError> {
    let ok =
        HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_str(value).is_ok();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidHeader {
            name: name.to_owned(),
        })
    }
}

/// Checks that a subprotocol name is an HTTP token (RFC 6455 §4.1).
pub(crate) fn protocol(p: &str) -> Result<(), ConfigError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !p.is_empty() && p.chars().all(token) {
        Ok(())
    } else {
        Err(ConfigError::InvalidProtocol {
            protocol: p.to_owned(),
        })
    }
}

/// Checks a whole connect request.
pub(crate) fn request(r: &ConnectRequest) -> Result<(), ConfigError> {
    url(&r.url)?;
    for (name, value) in &r.headers {
        header(name, value)?;
    }
    r.protocols.iter().try_for_each(|p| protocol(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(url("ws://127.0.0.1:9000/feed").is_ok());
        assert!(url("http://localhost/").is_ok());
        assert!(matches!(
            url("ftp://x/"),
            Err(ConfigError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            url("not a url"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(url("ws://"), Err(ConfigError::InvalidUrl { .. })));
        assert!(matches!(url(""), Err(ConfigError::InvalidUrl { .. })));
        match url("ws://user:pw@[::1/") {
            Err(ConfigError::InvalidUrl { url }) => assert!(!url.contains("pw")),
            other => panic!("expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn headers_and_protocols() {
        assert!(header("Authorization", "Bearer x").is_ok());
        assert!(header("Bad Name", "x").is_err());
        assert!(header("X", "line\nbreak").is_err());
        assert!(protocol("v1.feed").is_ok());
        assert!(protocol("a,b").is_err());
        assert!(protocol("").is_err());
    }
}
