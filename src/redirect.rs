//! Redirects of the upgrade request (`ClientBuilder::follow_redirects`):
//! which ones are followed, and what the next request carries.

use actix_tether_actors::{redact_url, ConnectError, ConnectErrorKind, ConnectRequest};

use crate::validate;

/// A redirect the server answered the upgrade with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub(crate) status: u16,
    /// The `Location` header, if there was one.
    pub(crate) location: Option<String>,
}

/// The statuses followed: 301, 302, 307 and 308 (303 asks for a GET of
/// another resource, not for the upgrade to be repeated there).
pub(crate) fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 307 | 308)
}

/// The request for the next hop, or the error that ends the attempt: the
/// redirect's status, as a fatal HTTP failure that says why it was not
/// followed. `hops` redirects were followed before this one, `allowed` may
/// be.
pub(crate) fn follow(
    request: ConnectRequest,
    redirect: &Redirect,
    hops: u32,
    allowed: u32,
) -> Result<ConnectRequest, ConnectError> {
    let refuse = |why: String| {
        Err(ConnectError::with_source(ConnectErrorKind::Http, why).with_status(redirect.status))
    };
    let Some(location) = &redirect.location else {
        return refuse("a redirect without a Location header".into());
    };
    if hops >= allowed {
        let shown = redact_url(location);
        return refuse(if allowed == 0 {
            format!("redirect to {shown} not followed (follow_redirects is off)")
        } else {
            format!("redirect to {shown} not followed: {allowed} redirects already followed")
        });
    }
    let Ok(from) = url::Url::parse(&request.url) else {
        return refuse("the request's URL does not parse".into());
    };
    let Ok(next) = from.join(location) else {
        return refuse(format!(
            "a redirect to an invalid URL {}",
            redact_url(location)
        ));
    };
    let secure = |scheme: &str| matches!(scheme, "wss" | "https");
    if !matches!(next.scheme(), "ws" | "wss" | "http" | "https") {
        return refuse(format!("a redirect to a {}:// URL", next.scheme()));
    }
    if secure(from.scheme()) && !secure(next.scheme()) {
        return refuse(format!(
            "a redirect from {}:// to {}:// (refused: it would drop TLS)",
            from.scheme(),
            next.scheme()
        ));
    }
    let same_origin = secure(from.scheme()) == secure(next.scheme())
        && from.host_str() == next.host_str()
        && from.port_or_known_default() == next.port_or_known_default();
    let next = ConnectRequest {
        url: next.to_string(),
        headers: if same_origin {
            request.headers
        } else {
            Vec::new()
        },
        protocols: request.protocols,
    };
    validate::request(&next)
        .map_err(|e| ConnectError::with_source(ConnectErrorKind::InvalidRequest, e))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(url: &str) -> ConnectRequest {
        ConnectRequest {
            url: url.into(),
            headers: vec![("Authorization".into(), "Bearer t".into())],
            protocols: vec!["feed.v1".into()],
        }
    }

    fn to(location: &str, status: u16) -> Redirect {
        Redirect {
            status,
            location: Some(location.into()),
        }
    }

    #[test]
    fn follows_relative_and_absolute_locations_keeping_headers_on_the_same_origin() {
        let next = follow(request("ws://a.test:9001/old"), &to("/new?x=1", 301), 0, 1).unwrap();
        assert_eq!(next.url, "ws://a.test:9001/new?x=1");
        assert_eq!(next.headers.len(), 1);
        assert_eq!(next.protocols, ["feed.v1"]);
        // ws:// and http:// on the same host and port are one origin here.
        let next = follow(
            request("ws://a.test/x"),
            &to("http://a.test:80/y", 307),
            0,
            1,
        )
        .unwrap();
        assert_eq!(next.headers.len(), 1);
    }

    #[test]
    fn another_origin_gets_no_headers() {
        for location in ["ws://b.test/x", "ws://a.test:9002/x", "wss://a.test:9001/x"] {
            let next = follow(request("ws://a.test:9001/x"), &to(location, 308), 0, 3).unwrap();
            assert!(next.headers.is_empty(), "{location}");
            assert_eq!(next.protocols, ["feed.v1"], "{location}");
        }
    }

    #[test]
    fn refuses_a_downgrade_the_last_hop_and_no_location() {
        let e = follow(request("wss://a.test/x"), &to("ws://a.test/x", 302), 0, 5).unwrap_err();
        assert_eq!((e.kind(), e.status()), (ConnectErrorKind::Http, Some(302)));
        assert!(!e.is_retryable());
        let e = follow(
            request("https://a.test/x"),
            &to("http://a.test/x", 301),
            0,
            5,
        )
        .unwrap_err();
        assert_eq!(e.status(), Some(301));
        let e = follow(request("ws://a.test/x"), &to("ws://b.test/x", 307), 2, 2).unwrap_err();
        assert_eq!(e.status(), Some(307));
        let e = follow(request("ws://a.test/x"), &to("ws://b.test/x", 307), 0, 0).unwrap_err();
        assert!(format!("{e:?}").contains("follow_redirects is off"));
        let none = Redirect {
            status: 301,
            location: None,
        };
        assert!(follow(request("ws://a.test/x"), &none, 0, 1).is_err());
        let e = follow(request("ws://a.test/x"), &to("ftp://a.test/x", 301), 0, 1).unwrap_err();
        assert!(!e.is_retryable());
    }

    #[test]
    fn a_location_with_credentials_is_not_shown() {
        let e = follow(
            request("ws://a.test/x"),
            &to("ws://u:secret@b.test/x?token=abc", 301),
            0,
            0,
        )
        .unwrap_err();
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("abc"),
            "{shown}"
        );
    }
}
