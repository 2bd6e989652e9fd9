#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;

use super::http::{parse_answer, refusal, BadAnswer, MAX_ANSWER};
use super::*;

fn routes(vars: &[(&str, &str)], settings: ProxySettings) -> Result<Routes, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    settings.resolve_with(|name| vars.get(name).cloned())
}

fn shown(r: &Routes, host: &str, secure: bool) -> Option<String> {
    r.route(host, secure).map(|p| p.to_string())
}

#[test]
fn proxy_urls_parse_with_defaults_and_mask_the_password() {
    let p = ProxyUrl::parse("http://alice:s%40cret@proxy.test:3128").unwrap();
    assert_eq!(p.scheme, ProxyScheme::Http);
    assert_eq!((p.host.as_str(), p.port), ("proxy.test", 3128));
    assert_eq!(
        p.credentials,
        Some(("alice".to_owned(), "s@cret".to_owned()))
    );
    assert_eq!(p.to_string(), "http://alice:****@proxy.test:3128");
    assert!(!format!("{p:?}").contains("cret"));
    // "alice:s@cret" in Basic.
    assert_eq!(p.basic_auth().unwrap(), "Basic YWxpY2U6c0BjcmV0");
    let p = ProxyUrl::parse("proxy.test:8080").unwrap();
    assert_eq!((p.scheme, p.port), (ProxyScheme::Http, 8080));
    let p = ProxyUrl::parse("https://proxy.test").unwrap();
    assert_eq!(p.port, 443);
    let p = ProxyUrl::parse("socks5h://[::1]").unwrap();
    assert_eq!(
        (p.scheme, p.host.as_str(), p.port),
        (ProxyScheme::Socks5h, "::1", 1080)
    );
    assert_eq!(p.to_string(), "socks5h://[::1]:1080");
    assert_eq!(
        ProxyUrl::parse("socks5://u@h:1").unwrap().credentials,
        Some(("u".into(), "".into()))
    );
}

#[test]
fn bad_proxy_urls_are_typed_errors_without_the_password() {
    for bad in [
        "ftp://h:1",
        "socks4://h:1",
        "http://",
        "http://u:pw@:1",
        "::::",
    ] {
        match ProxyUrl::parse(bad) {
            Err(ConfigError::InvalidProxy { url, .. }) => {
                assert!(!url.contains("pw"), "{url}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn no_proxy_follows_curl_and_reqwest() {
    let no = no_proxy::NoProxy::parse(
        " example.com, .corp.test ,10.0.0.0/8,::1, [fd00::1]:80, internal.test:8080, *.wild.test,",
    );
    for host in [
        "example.com",
        "EXAMPLE.com",
        "a.b.example.com",
        "example.com.",
        "corp.test",
        "x.corp.test",
        "10.1.2.3",
        "::1",
        "[::1]",
        "fd00::1",
        "internal.test",
        "wild.test",
        "a.wild.test",
    ] {
        assert!(no.matches(host), "{host} should bypass");
    }
    for host in [
        "notexample.com",
        "example.co",
        "11.0.0.1",
        "127.0.0.1",
        "localhost",
        "::2",
        "com",
    ] {
        assert!(!no.matches(host), "{host} should be proxied");
    }
    let all = no_proxy::NoProxy::parse("*");
    for host in ["anything.test", "127.0.0.1", "::1", "[::1]"] {
        assert!(all.matches(host), "* should match {host}");
    }
    // `*` inside a list is still everything; as part of a name it is not.
    assert!(no_proxy::NoProxy::parse("a.test, *").matches("10.0.0.1"));
    assert!(!no_proxy::NoProxy::parse("").matches("localhost"));
}

#[test]
fn the_environment_is_read_as_curl_reads_it() {
    let r = routes(
        &[
            ("HTTP_PROXY", "http://plain:3128"),
            ("HTTPS_PROXY", "http://secure:3128"),
            ("NO_PROXY", "direct.test"),
        ],
        ProxySettings::default(),
    )
    .unwrap();
    assert_eq!(
        shown(&r, "a.test", false).as_deref(),
        Some("http://plain:3128")
    );
    assert_eq!(
        shown(&r, "a.test", true).as_deref(),
        Some("http://secure:3128")
    );
    assert_eq!(shown(&r, "x.direct.test", true), None);
    // Loopback is proxied when the environment says so.
    assert_eq!(
        shown(&r, "127.0.0.1", false).as_deref(),
        Some("http://plain:3128")
    );

    // ALL_PROXY fills in for the absent one; wss:// never takes HTTP_PROXY.
    let r = routes(
        &[
            ("HTTP_PROXY", "http://plain:1"),
            ("ALL_PROXY", "socks5://all:2"),
        ],
        ProxySettings::default(),
    )
    .unwrap();
    assert_eq!(
        shown(&r, "a.test", false).as_deref(),
        Some("http://plain:1")
    );
    assert_eq!(shown(&r, "a.test", true).as_deref(), Some("socks5://all:2"));
    let r = routes(
        &[("HTTP_PROXY", "http://plain:1")],
        ProxySettings::default(),
    )
    .unwrap();
    assert_eq!(shown(&r, "a.test", true), None);

    // Lower case wins; empty counts as absent.
    let r = routes(
        &[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:1"),
            ("http_proxy", ""),
            ("HTTP_PROXY", "http://upper:2"),
        ],
        ProxySettings::default(),
    )
    .unwrap();
    assert_eq!(shown(&r, "a.test", true).as_deref(), Some("http://lower:1"));
    assert_eq!(
        shown(&r, "a.test", false).as_deref(),
        Some("http://upper:2")
    );

    // A CGI script ignores it all (httpoxy).
    let r = routes(
        &[("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil:1")],
        ProxySettings::default(),
    )
    .unwrap();
    assert_eq!(shown(&r, "a.test", false), None);

    // Off when asked, and a broken variable is an error that names it.
    let off = ProxySettings {
        from_env: false,
        ..ProxySettings::default()
    };
    let r = routes(&[("ALL_PROXY", "http://all:1")], off).unwrap();
    assert_eq!(shown(&r, "a.test", false), None);
    assert!(matches!(
        routes(&[("HTTPS_PROXY", "ftp://x:1")], ProxySettings::default()),
        Err(ConfigError::InvalidProxy { .. })
    ));
}

#[test]
fn builder_proxies_win_over_the_environment_and_no_proxy_applies_to_them() {
    let settings = ProxySettings {
        proxies: vec![
            Proxy::https("http://secure:1").unwrap(),
            Proxy::all("socks5h://all:2").unwrap(),
        ],
        no_proxy: Some("10.0.0.0/8".into()),
        from_env: true,
    };
    let r = routes(
        &[("ALL_PROXY", "http://env:9"), ("NO_PROXY", "*")],
        settings,
    )
    .unwrap();
    assert_eq!(
        shown(&r, "a.test", true).as_deref(),
        Some("http://secure:1")
    );
    assert_eq!(
        shown(&r, "a.test", false).as_deref(),
        Some("socks5h://all:2")
    );
    // The builder's list replaced NO_PROXY=*.
    assert_eq!(shown(&r, "10.9.9.9", false), None);
    assert!(shown(&r, "11.0.0.1", false).is_some());
    let only_plain = ProxySettings {
        proxies: vec![Proxy::http("http://plain:1").unwrap()],
        ..ProxySettings::default()
    };
    let r = routes(&[("HTTPS_PROXY", "http://env:9")], only_plain).unwrap();
    assert_eq!(
        shown(&r, "a.test", true),
        None,
        "builder proxies replace the environment"
    );
}

#[test]
fn connect_answers_parse_and_classify() {
    let head = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n";
    let answer = parse_answer(head).unwrap().unwrap();
    assert_eq!((answer.status, answer.len), (200, head.len()));
    assert_eq!(parse_answer(&head[..20]), Ok(None));
    assert_eq!(
        parse_answer(b"SSH-2.0-OpenSSH\r\n"),
        Err(BadAnswer::NotHttp)
    );
    let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    long.resize(MAX_ANSWER + 1, b'a');
    assert_eq!(parse_answer(&long), Err(BadAnswer::TooLong));
    assert_eq!(refusal(407), ConnectErrorKind::ProxyRefused);
    assert_eq!(refusal(403), ConnectErrorKind::ProxyRefused);
    for s in [502, 503, 504] {
        assert_eq!(refusal(s), ConnectErrorKind::ProxyUnavailable);
    }
}

#[test]
fn socks_replies_are_classified() {
    use tokio_socks::Error as E;
    for e in [
        E::NetworkUnreachable,
        E::HostUnreachable,
        E::ConnectionRefused,
        E::TtlExpired,
        E::GeneralSocksServerFailure,
    ] {
        assert_eq!(
            socks::classify(&e),
            ConnectErrorKind::ProxyUnavailable,
            "{e}"
        );
    }
    for e in [
        E::PasswordAuthFailure(1),
        E::NoAcceptableAuthMethods,
        E::ConnectionNotAllowedByRuleset,
        E::CommandNotSupported,
        E::AddressTypeNotSupported,
        E::InvalidResponseVersion,
    ] {
        assert_eq!(socks::classify(&e), ConnectErrorKind::ProxyRefused, "{e}");
    }
}

/// A SOCKS failure as the tunnel reports it.
fn socks_failure(e: tokio_socks::Error) -> ConnectError {
    failure(
        socks::classify(&e),
        "SOCKS5 proxy refused".into(),
        Some(Box::new(e)),
    )
}

#[test]
fn socks5_tries_each_address_until_the_proxy_reaches_one() {
    use tokio_socks::Error as E;
    let run = |replies: Vec<Result<u8, E>>| {
        let replies = std::cell::RefCell::new(replies.into_iter());
        let tried = std::cell::Cell::new(0);
        let targets = vec![1, 2, 3];
        let result = futures::executor::block_on(socks::first_open(targets, |to| {
            tried.set(to);
            let reply = replies.borrow_mut().next().unwrap();
            async move { reply.map_err(socks_failure) }
        }));
        (result.map_err(|e| e.kind()), tried.get())
    };
    // The proxy cannot reach the first two addresses; the third opens.
    let (result, tried) = run(vec![
        Err(E::ConnectionRefused),
        Err(E::HostUnreachable),
        Ok(3),
    ]);
    assert_eq!((result, tried), (Ok(3), 3));
    // A refusal that is about the client, not the address, stops there.
    let (result, tried) = run(vec![Err(E::PasswordAuthFailure(1))]);
    assert_eq!((result, tried), (Err(ConnectErrorKind::ProxyRefused), 1));
    let (result, tried) = run(vec![
        Err(E::NetworkUnreachable),
        Err(E::ConnectionNotAllowedByRuleset),
    ]);
    assert_eq!((result, tried), (Err(ConnectErrorKind::ProxyRefused), 2));
    // None reachable: the last failure, retryable.
    let (result, tried) = run(vec![
        Err(E::TtlExpired),
        Err(E::ConnectionRefused),
        Err(E::HostUnreachable),
    ]);
    assert_eq!(
        (result, tried),
        (Err(ConnectErrorKind::ProxyUnavailable), 3)
    );
    // A proxy that cannot be reached at all is not worth another address.
    let unreachable = failure(
        ConnectErrorKind::ProxyUnavailable,
        "cannot reach proxy".into(),
        None,
    );
    let tried = std::cell::Cell::new(0);
    let result = futures::executor::block_on(socks::first_open(vec![1, 2], |to| {
        tried.set(to);
        let e = unreachable.clone();
        async move { Err::<u8, _>(e) }
    }));
    assert_eq!(
        (result.map_err(|e| e.kind()), tried.get()),
        (Err(ConnectErrorKind::ProxyUnavailable), 1)
    );
}

proptest! {
    /// Any bytes, cut anywhere: the answer parser never panics, and a head
    /// it accepts whole is accepted the same way from any longer prefix.
    #[test]
    fn connect_answer_parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
        let cut = cut.min(bytes.len());
        let whole = parse_answer(&bytes);
        if let Ok(Some(answer)) = &whole {
            prop_assert!(answer.len <= bytes.len());
            prop_assert_eq!(parse_answer(&bytes[..answer.len]), Ok(Some(answer.clone())));
        }
        let _ = parse_answer(&bytes[..cut]);
    }

    /// A valid answer split at any point: incomplete before the end of its
    /// head, the same answer from there on.
    #[test]
    fn connect_answer_split_anywhere(status in 100u16..600, reason in "[A-Za-z ]{0,20}", headers in proptest::collection::vec(("[A-Za-z-]{1,10}", "[ -~]{0,20}"), 0..5), cut in 0usize..400) {
        let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {}\r\n", value.trim()));
        }
        head.push_str("\r\n");
        let bytes = head.as_bytes();
        let cut = cut.min(bytes.len());
        let answer = parse_answer(bytes).unwrap().unwrap();
        prop_assert_eq!((answer.status, answer.len), (status, bytes.len()));
        if cut < bytes.len() {
            prop_assert_eq!(parse_answer(&bytes[..cut]), Ok(None));
        }
    }

    /// Names match themselves and their subdomains, never a longer name
    /// that merely ends the same.
    #[test]
    fn no_proxy_names(name in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}", sub in "[a-z]{1,8}", prefix in "[a-z]{1,3}", dot in any::<bool>()) {
        let entry = if dot { format!(".{name}") } else { name.clone() };
        let no = no_proxy::NoProxy::parse(&entry);
        prop_assert!(no.matches(&name));
        let subdomain = format!("{sub}.{name}");
        let glued = format!("{prefix}{name}");
        prop_assert!(no.matches(&subdomain));
        prop_assert!(!no.matches(&glued));
    }

    /// An address is in a CIDR range exactly when its leading bits are the
    /// range's.
    #[test]
    fn no_proxy_ranges(net in any::<u32>(), len in 0u8..=32, ip in any::<u32>()) {
        let range = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(net), len).unwrap().trunc();
        let no = no_proxy::NoProxy::parse(&range.to_string());
        let inside = len == 0 || (ip >> (32 - u32::from(len))) == (net >> (32 - u32::from(len)));
        prop_assert_eq!(no.matches(&std::net::Ipv4Addr::from(ip).to_string()), inside);
    }

    /// Whatever the list, matching never panics.
    #[test]
    fn no_proxy_is_total(list in "[ -~]{0,60}", host in "[ -~]{0,30}") {
        let _ = no_proxy::NoProxy::parse(&list).matches(&host);
    }
}
