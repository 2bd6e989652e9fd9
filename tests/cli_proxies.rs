//! `tether` through proxies and with TLS options, as the contract
//! says: `--proxy`, `--no-proxy`, the proxy environment, `--ca-file`,
//! `--cert`/`--key`, `--insecure`, `connected.proxy`, and how fatal and
//! passing failures end. Against tinyproxy, microsocks and nginx on
//! 127.0.0.1 (`support/daemons.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::Value;
use support::cli::{
    json_lines, run_tether, spawn_tether_env, tether_async_env, wait_exit, Run, Stdin,
};
use support::daemons::{
    free_port, https_proxy, microsocks, pems, tinyproxy, tinyproxy_at, tls_front, TempDir,
};
use support::{echo, Spec, TestServer};

/// Runs `tether --json --exit-on-eof ARGS` with `env`, sending one line.
async fn tether(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all: Vec<String> = vec!["--json".into(), "--exit-on-eof".into()];
    all.extend(args.iter().map(|s| s.to_string()));
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tether_async_env(all, env, "hello\n", Stdin::Close).await
}

/// The `connected` event of a run that must have connected and exited 0.
fn connected(run: &Run) -> Value {
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let events = json_lines(&run.stdout);
    let up = events
        .iter()
        .find(|e| e["event"] == "connected")
        .unwrap_or_else(|| panic!("no connected event: {}", run.stdout))
        .clone();
    assert!(up.as_object().unwrap().contains_key("proxy"), "{up}");
    up
}

/// The `gave_up` event of a run that gave up at once and exited 1.
fn gave_up_at_once(run: &Run) -> String {
    assert_eq!(
        run.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let events = json_lines(&run.stdout);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // The line sent is then reported as dropped; nothing is retried.
    assert_eq!(names[..2], ["disconnected", "gave_up"], "{}", run.stdout);
    assert!(!names.contains(&"reconnecting"), "{}", run.stdout);
    assert_eq!(events[0]["will_retry"], false);
    events[1]["reason"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn each_kind_of_proxy_through_the_flag_names_it_masked() {
    let pems = pems();
    let files = TempDir::new("cli-proxies");
    let ca = files.write("ca.pem", &pems.ca);
    let ca = ca.to_str().unwrap();
    let server = TestServer::start(Spec::new(echo));
    let front = tls_front(
        server.addr,
        &pems,
        (&pems.server_chain, &pems.server_key),
        "",
    );
    let wss = format!("wss://127.0.0.1:{}/ws", front.port);
    let http = tinyproxy(Some(("alice", "http-pw")));
    let socks = microsocks(Some(("bob", "socks-pw")));
    let tls_proxy = https_proxy(&http, &pems);
    let cases = [
        (
            format!("http://alice:http-pw@{}", http.addr()),
            format!("http://alice:****@{}", http.addr()),
        ),
        (
            format!("socks5://bob:socks-pw@{}", socks.addr()),
            format!("socks5://bob:****@{}", socks.addr()),
        ),
        (
            format!("socks5h://bob:socks-pw@{}", socks.addr()),
            format!("socks5h://bob:****@{}", socks.addr()),
        ),
        (
            format!("https://alice:http-pw@127.0.0.1:{}", tls_proxy.port),
            format!("https://alice:****@127.0.0.1:{}", tls_proxy.port),
        ),
    ];
    for (proxy, shown) in cases {
        for url in [server.url(), wss.clone()] {
            let args = ["--proxy", &proxy, "--ca-file", ca, &url];
            let run = tether(&args, &[("RUST_LOG", "debug")]).await;
            assert_eq!(connected(&run)["proxy"], shown.as_str(), "{proxy} {url}");
            // The logs name the proxy, masked (the connect span's field).
            assert!(run.stderr.contains(&shown), "{}", run.stderr);
            for secret in ["http-pw", "socks-pw"] {
                assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
            }
        }
    }
    // A direct connection says null.
    let run = tether(&[&server.url()], &[]).await;
    assert_eq!(connected(&run)["proxy"], Value::Null);
}

/// A URL, the environment to run with, and the `proxy` it must connect through.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value);

#[actix_rt::test]
async fn the_environment_picks_the_proxy_and_the_flag_wins() {
    let pems = pems();
    let files = TempDir::new("cli-env");
    let ca = files.write("ca.pem", &pems.ca);
    let ca = ca.to_str().unwrap();
    let server = TestServer::start(Spec::new(echo));
    let front = tls_front(
        server.addr,
        &pems,
        (&pems.server_chain, &pems.server_key),
        "",
    );
    let wss = format!("wss://127.0.0.1:{}/ws", front.port);
    let http = tinyproxy(None);
    let socks = microsocks(None);
    let via_http = format!("http://{}", http.addr());
    let via_socks = format!("socks5://{}", socks.addr());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ws = server.url();
    let cases: [Case<'_>; 8] = [
        (&ws, &[("HTTP_PROXY", &via_http)], via_http.as_str().into()),
        (&ws, &[("http_proxy", &via_http)], via_http.as_str().into()),
        (
            &wss,
            &[("HTTPS_PROXY", &via_http)],
            via_http.as_str().into(),
        ),
        (
            &wss,
            &[("https_proxy", &via_socks)],
            via_socks.as_str().into(),
        ),
        (&ws, &[("ALL_PROXY", &via_socks)], via_socks.as_str().into()),
        (
            &wss,
            &[("ALL_PROXY", &via_socks), ("HTTP_PROXY", &dead)],
            via_socks.as_str().into(),
        ),
        // wss:// never takes HTTP_PROXY, ws:// never HTTPS_PROXY.
        (&wss, &[("HTTP_PROXY", &dead)], Value::Null),
        (&ws, &[("HTTPS_PROXY", &dead)], Value::Null),
    ];
    for (url, env, want) in cases {
        let run = tether(&["--ca-file", ca, url], env).await;
        assert_eq!(connected(&run)["proxy"], want, "{url} {env:?}");
    }
    // --proxy wins over the environment.
    let run = tether(
        &["--proxy", &via_http, &ws],
        &[("ALL_PROXY", &dead), ("HTTP_PROXY", &dead)],
    )
    .await;
    assert_eq!(connected(&run)["proxy"], via_http.as_str());
    // A CGI script ignores the environment.
    let run = tether(&[&ws], &[("HTTP_PROXY", &dead), ("REQUEST_METHOD", "GET")]).await;
    assert_eq!(connected(&run)["proxy"], Value::Null);
}

#[actix_rt::test]
async fn no_proxy_and_the_no_proxy_flag_bypass_listed_hosts() {
    let server = TestServer::start(Spec::new(echo));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ws = server.url();
    let localhost = format!("ws://localhost:{}/ws", server.addr.port());
    for (url, list) in [
        (&ws, "127.0.0.1"),
        (&ws, "other.test,127.0.0.0/8"),
        (&ws, "*"),
        (&localhost, "localhost"),
        (&localhost, ".localhost"),
    ] {
        let run = tether(&[url], &[("HTTP_PROXY", &dead), ("NO_PROXY", list)]).await;
        assert_eq!(connected(&run)["proxy"], Value::Null, "NO_PROXY={list}");
        let run = tether(&[url], &[("http_proxy", &dead), ("no_proxy", list)]).await;
        assert_eq!(connected(&run)["proxy"], Value::Null, "no_proxy={list}");
        let run = tether(&["--proxy", &dead, "--no-proxy", list, url], &[]).await;
        assert_eq!(connected(&run)["proxy"], Value::Null, "--no-proxy {list}");
    }
    // Loopback is proxied when nothing exempts it: the dead proxy is tried.
    let mut args = vec!["--json".to_owned(), "--max-retries".into(), "1".into()];
    args.push(ws.clone());
    let env = vec![("HTTP_PROXY".to_owned(), dead.clone())];
    let run = tether_async_env(args, env, "", Stdin::Close).await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(run.stdout.contains("proxy unavailable"), "{}", run.stdout);
}

#[actix_rt::test]
async fn refused_proxy_credentials_give_up_at_once() {
    let server = TestServer::start(Spec::new(echo));
    let http = tinyproxy(Some(("alice", "http-pw")));
    let socks = microsocks(Some(("bob", "socks-pw")));
    let ws = server.url();
    let run = tether(&["--proxy", &format!("http://{}", http.addr()), &ws], &[]).await;
    let reason = gave_up_at_once(&run);
    assert!(
        reason.contains("407") && reason.contains("proxy authentication"),
        "{reason}"
    );
    let wrong = format!("socks5://bob:not-it@{}", socks.addr());
    let run = tether(&["--proxy", &wrong, &ws], &[]).await;
    let reason = gave_up_at_once(&run);
    assert!(
        reason.contains("SOCKS5") && reason.contains("auth"),
        "{reason}"
    );
    assert!(!run.stdout.contains("not-it") && !run.stderr.contains("not-it"));
    // Through the environment too, with every log line on stderr.
    let env = format!("http://alice:wrong-pw@{}", http.addr());
    let run = tether(&[&ws], &[("HTTP_PROXY", &env), ("RUST_LOG", "trace")]).await;
    assert!(run.stderr.lines().count() > 5, "logs: {}", run.stderr);
    let reason = gave_up_at_once(&run);
    assert!(reason.contains("proxy authentication"), "{reason}");
    assert!(!run.stdout.contains("wrong-pw") && !run.stderr.contains("wrong-pw"));
}

#[actix_rt::test]
async fn certificates_ca_file_client_identity_and_insecure() {
    let pems = pems();
    let files = TempDir::new("cli-tls");
    let ca = files.write("ca.pem", &pems.ca);
    let cert = files.write("client.pem", &pems.client_chain);
    let key = files.write("client.key", &pems.client_key);
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let server = TestServer::start(Spec::new(echo));
    let trusted = tls_front(
        server.addr,
        &pems,
        (&pems.server_chain, &pems.server_key),
        "",
    );
    let trusted = format!("wss://127.0.0.1:{}/ws", trusted.port);
    let untrusted = tls_front(
        server.addr,
        &pems,
        (&pems.untrusted_chain, &pems.untrusted_key),
        "",
    );
    let untrusted = format!("wss://127.0.0.1:{}/ws", untrusted.port);
    let mutual = tls_front(
        server.addr,
        &pems,
        (&pems.server_chain, &pems.server_key),
        " ssl_verify_client on;",
    );
    let mutual = format!("wss://127.0.0.1:{}/ws", mutual.port);

    // Untrusted: fatal, the reason says certificate, unless --insecure.
    for url in [&trusted, &untrusted] {
        let run = tether(&[url], &[]).await;
        assert!(
            gave_up_at_once(&run).contains("certificate"),
            "{}",
            run.stdout
        );
    }
    let run = tether(&["--ca-file", ca, &untrusted], &[]).await;
    assert!(gave_up_at_once(&run).contains("certificate"));
    let run = tether(&["--ca-file", ca, &trusted], &[]).await;
    connected(&run);
    assert!(!run.stderr.contains("not verified"));
    let run = tether(&["--insecure", &untrusted], &[]).await;
    connected(&run);
    assert!(
        run.stderr.contains("certificates are not verified"),
        "{}",
        run.stderr
    );

    // Mutual TLS: refused without the certificate, accepted with it.
    let run = tether(&["--ca-file", ca, &mutual], &[]).await;
    gave_up_at_once(&run);
    let run = tether(
        &["--ca-file", ca, "--cert", cert, "--key", key, &mutual],
        &[],
    )
    .await;
    connected(&run);
}

#[test]
fn bad_proxy_and_tls_flags_are_one_line_and_exit_2() {
    let dir = TempDir::new("cli-bad");
    let junk = dir.write("junk.pem", "not a certificate");
    let junk = junk.to_str().unwrap();
    for args in [
        &["--proxy", "ftp://127.0.0.1:21", "ws://127.0.0.1:1/"][..],
        &["--proxy", "socks4://127.0.0.1:1080", "ws://127.0.0.1:1/"],
        &["--ca-file", "/nonexistent/ca.pem", "ws://127.0.0.1:1/"],
        &["--ca-file", junk, "ws://127.0.0.1:1/"],
        &["--cert", junk, "ws://127.0.0.1:1/"],
        &["--cert", junk, "--key", junk, "ws://127.0.0.1:1/"],
    ] {
        let run = run_tether(args, "", Stdin::Close);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("tether: "), "{}", run.stderr);
    }
    let run = run_tether(
        &[
            "--proxy",
            "http://u:secret-pw@127.0.0.1:1",
            "--ca-file",
            junk,
            "ws://127.0.0.1:1/",
        ],
        "",
        Stdin::Close,
    );
    assert_eq!(run.code, Some(2));
    assert!(!run.stderr.contains("secret-pw"), "{}", run.stderr);
}

#[actix_rt::test]
async fn a_proxy_that_is_down_is_retried_then_used() {
    let server = TestServer::start(Spec::new(echo));
    let port = free_port();
    let proxy = format!("http://127.0.0.1:{port}");
    let url = server.url();
    let lines = actix_rt::task::spawn_blocking(move || {
        let args = [
            "--json",
            "--exit-on-eof",
            "--backoff-initial",
            "50ms",
            "--backoff-max",
            "200ms",
            "--proxy",
            &proxy,
            &url,
        ];
        let (mut child, stdin) = spawn_tether_env(&args, &[]);
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        let mut daemon = None;
        for line in out.by_ref() {
            let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
            let name = event["event"].as_str().unwrap().to_owned();
            seen.push(event);
            if name == "reconnecting" && daemon.is_none() {
                daemon = Some(tinyproxy_at(port, None));
            }
            if name == "connected" {
                break;
            }
        }
        drop(stdin);
        assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0));
        seen
    })
    .await
    .unwrap();
    let first = &lines[0];
    assert_eq!(first["event"], "disconnected", "{lines:?}");
    assert_eq!(first["will_retry"], true);
    assert!(first["reason"]
        .as_str()
        .unwrap()
        .contains("proxy unavailable"));
    assert_eq!(lines[1]["event"], "reconnecting");
    let up = lines.last().unwrap();
    assert_eq!(up["event"], "connected", "{lines:?}");
    assert_eq!(up["proxy"], format!("http://127.0.0.1:{port}"));
}

/// With `native-roots`, the OS trust store is read (here through
/// `SSL_CERT_FILE`, which rustls-native-certs honours as the platform
/// store): a server signed by a CA only the store knows is trusted without
/// `--ca-file`.
#[cfg(feature = "native-roots")]
#[actix_rt::test]
async fn the_os_trust_store_is_read_with_native_roots() {
    let pems = pems();
    let files = TempDir::new("cli-native");
    let store = files.write("store.pem", &pems.ca);
    let server = TestServer::start(Spec::new(echo));
    let front = tls_front(
        server.addr,
        &pems,
        (&pems.server_chain, &pems.server_key),
        "",
    );
    let url = format!("wss://127.0.0.1:{}/ws", front.port);
    let run = tether(&[&url], &[("SSL_CERT_FILE", store.to_str().unwrap())]).await;
    connected(&run);
    let elsewhere = files.write("other.pem", &pems.client_ca);
    let run = tether(&[&url], &[("SSL_CERT_FILE", elsewhere.to_str().unwrap())]).await;
    assert!(gave_up_at_once(&run).contains("certificate"));
}
