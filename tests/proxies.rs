//! Proxies and TLS options through the builder, against third-party
//! proxies and servers on 127.0.0.1 (tinyproxy, microsocks, nginx; see
//! `support/daemons.rs`), with the test's own WebSocket server behind them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_tether::testkit::Recorder;
use actix_tether::{
    ClientBuilder, ConnectError, ConnectErrorKind, DisconnectReason, Event, Jitter, Proxy,
};
use support::daemons::{self, free_port, microsocks, nginx, pems, tinyproxy, tinyproxy_at, Daemon};
use support::mock::connected;
use support::{close_at_once, echo, Spec, TestServer};

const BOUND: Duration = Duration::from_secs(15);

fn client(url: String, rec: &Recorder) -> ClientBuilder {
    ClientBuilder::new(url)
        .jitter(Jitter::None)
        .backoff_initial(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(200))
        .min_uptime(Duration::from_millis(50))
        .proxy_from_env(false)
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
}

/// The proxy a `Connected` event names.
fn proxy_of(e: &Event) -> Option<String> {
    match e {
        Event::Connected { proxy, .. } => proxy.clone(),
        other => panic!("not connected: {other:?}"),
    }
}

/// Connects, checks the proxy the event names, and echoes one message.
async fn connects_and_echoes(builder: ClientBuilder, rec: &Recorder, proxy: Option<&str>) {
    let client = builder.start().unwrap();
    let up = rec.wait_for(connected, BOUND).await.expect("connects");
    assert_eq!(proxy_of(&up.value).as_deref(), proxy);
    client.send("through").await.unwrap();
    rec.wait_for_text("through", BOUND).await.expect("echoed");
    assert!(client.close(BOUND).await.unwrap().is_empty());
}

/// Connects through `proxy` (named `shown` in the event), echoes one
/// message, then stops the proxy: a link that really runs through the
/// tunnel goes down with it.
async fn carried_through(builder: ClientBuilder, rec: &Recorder, proxy: Daemon, shown: &str) {
    let client = builder.start().unwrap();
    let up = rec.wait_for(connected, BOUND).await.expect("connects");
    assert_eq!(proxy_of(&up.value).as_deref(), Some(shown));
    client.send("through").await.unwrap();
    rec.wait_for_text("through", BOUND).await.expect("echoed");
    drop(proxy);
    rec.wait_for(|e| matches!(e, Event::Disconnected { .. }), BOUND)
        .await
        .expect("the link ends with its proxy");
}

/// The next failed attempt's error, and whether a retry follows.
async fn next_connect_failure(rec: &Recorder) -> (ConnectError, bool) {
    let down = rec
        .wait_for(|e| matches!(e, Event::Disconnected { .. }), BOUND)
        .await
        .expect("the attempt fails");
    match down.value {
        Event::Disconnected {
            reason: DisconnectReason::ConnectFailed(e),
            will_retry,
        } => (e, will_retry),
        other => panic!("{other:?}"),
    }
}

/// The connect error a client gave up with, checking nothing was retried.
async fn gives_up_at_once(builder: ClientBuilder, rec: &Recorder) -> ConnectError {
    let _client = builder.start().unwrap();
    let gave_up = rec
        .wait_for(|e| matches!(e, Event::GaveUp { .. }), BOUND)
        .await
        .expect("gives up");
    assert_eq!(
        rec.event_names(),
        ["connecting", "disconnected", "gave_up"],
        "a fatal failure is not retried"
    );
    match gave_up.value {
        Event::GaveUp {
            reason: DisconnectReason::ConnectFailed(e),
            ..
        } => e,
        other => panic!("{other:?}"),
    }
}

/// nginx terminating TLS for `backend` with the trusted certificate.
fn tls_front(backend: &TestServer, pems: &daemons::Pems, extra: &str) -> Daemon {
    daemons::tls_front(
        backend.addr,
        pems,
        (&pems.server_chain, &pems.server_key),
        extra,
    )
}

#[actix_rt::test]
async fn ws_through_an_http_connect_proxy() {
    let server = TestServer::start(Spec::new(echo));
    let proxy = tinyproxy(None);
    let rec = Recorder::start();
    let url = format!("http://{}", proxy.addr());
    let builder = client(server.url(), &rec).proxy(Proxy::http(&url).unwrap());
    carried_through(builder, &rec, proxy, &url).await;
}

#[actix_rt::test]
async fn wss_through_a_connect_tunnel_trusting_a_ca_file() {
    let pems = pems();
    let server = TestServer::start(Spec::new(echo));
    let front = tls_front(&server, &pems, "");
    let proxy = tinyproxy(None);
    let rec = Recorder::start();
    let url = format!("http://{}", proxy.addr());
    let builder = client(format!("wss://127.0.0.1:{}/ws", front.port), &rec)
        .add_root_certificate(pems.ca.clone())
        .proxy(Proxy::https(&url).unwrap())
        .proxy(Proxy::http("http://127.0.0.1:1").unwrap());
    carried_through(builder, &rec, proxy, &url).await;
}

#[actix_rt::test]
async fn an_http_proxy_wants_its_credentials_and_407_is_fatal() {
    let server = TestServer::start(Spec::new(echo));
    let proxy = tinyproxy(Some(("alice", "s3cret-pw")));
    let rec = Recorder::start();
    let bare = format!("http://{}", proxy.addr());
    let e = gives_up_at_once(
        client(server.url(), &rec).proxy(Proxy::all(&bare).unwrap()),
        &rec,
    )
    .await;
    assert_eq!(
        (e.kind(), e.status()),
        (ConnectErrorKind::ProxyRefused, Some(407))
    );
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("proxy authentication"), "{e}");

    let rec = Recorder::start();
    let with = format!("http://alice:s3cret-pw@{}", proxy.addr());
    let shown = format!("http://alice:****@{}", proxy.addr());
    let builder = client(server.url(), &rec).proxy(Proxy::all(&with).unwrap());
    carried_through(builder, &rec, proxy, &shown).await;
    let everything = format!("{:?}", rec.recorded_events());
    assert!(!everything.contains("s3cret-pw"), "{everything}");
}

#[actix_rt::test]
async fn socks5_with_a_password_resolving_here_or_at_the_proxy() {
    let server = TestServer::start(Spec::new(echo));
    let url = format!("ws://localhost:{}/ws", server.addr.port());
    for scheme in ["socks5", "socks5h"] {
        let proxy = microsocks(Some(("bob", "socks-pw")));
        let rec = Recorder::start();
        let with = format!("{scheme}://bob:socks-pw@{}", proxy.addr());
        let shown = format!("{scheme}://bob:****@{}", proxy.addr());
        let builder = client(url.clone(), &rec).proxy(Proxy::all(&with).unwrap());
        carried_through(builder, &rec, proxy, &shown).await;
        assert!(!format!("{:?}", rec.recorded_events()).contains("socks-pw"));
    }
    let proxy = microsocks(Some(("bob", "socks-pw")));
    let rec = Recorder::start();
    let wrong = format!("socks5://bob:wrong-pw@{}", proxy.addr());
    let e = gives_up_at_once(
        client(server.url(), &rec).proxy(Proxy::all(&wrong).unwrap()),
        &rec,
    )
    .await;
    assert_eq!(e.kind(), ConnectErrorKind::ProxyRefused);
    let chain = actix_tether::ErrorChain(&e).to_string();
    assert!(
        chain.contains("SOCKS5") && !chain.contains("wrong-pw"),
        "{chain}"
    );
    // No password at all, to a proxy that wants one.
    let rec = Recorder::start();
    let none = format!("socks5://{}", proxy.addr());
    let e = gives_up_at_once(
        client(server.url(), &rec).proxy(Proxy::all(&none).unwrap()),
        &rec,
    )
    .await;
    assert_eq!(e.kind(), ConnectErrorKind::ProxyRefused);
}

#[actix_rt::test]
async fn a_proxy_that_is_down_is_retried_then_used() {
    let server = TestServer::start(Spec::new(echo));
    let port = free_port();
    let rec = Recorder::start();
    let url = format!("http://127.0.0.1:{port}");
    let client = client(server.url(), &rec)
        .proxy(Proxy::all(&url).unwrap())
        .start()
        .unwrap();
    for _ in 0..2 {
        let (e, will_retry) = next_connect_failure(&rec).await;
        assert!(will_retry);
        assert_eq!(e.kind(), ConnectErrorKind::ProxyUnavailable);
    }
    let _proxy = tinyproxy_at(port, None);
    let up = rec
        .wait_for(connected, BOUND)
        .await
        .expect("connects once the proxy is up");
    assert_eq!(proxy_of(&up.value), Some(url));
    client.send("late").await.unwrap();
    rec.wait_for_text("late", BOUND).await.expect("echoed");
}

#[actix_rt::test]
async fn no_proxy_sends_listed_hosts_direct() {
    let server = TestServer::start(Spec::new(echo));
    // Nothing listens at the proxy: a connection that tried it would fail.
    let dead = format!("http://127.0.0.1:{}", free_port());
    for list in ["127.0.0.1", "127.0.0.0/8", "*", "other.test, 127.0.0.1:9"] {
        let rec = Recorder::start();
        let builder = client(server.url(), &rec)
            .proxy(Proxy::all(&dead).unwrap())
            .no_proxy(list);
        connects_and_echoes(builder, &rec, None).await;
    }
    let rec = Recorder::start();
    let url = format!("ws://localhost:{}/ws", server.addr.port());
    let builder = client(url, &rec)
        .proxy(Proxy::all(&dead).unwrap())
        .no_proxy(".localhost");
    connects_and_echoes(builder, &rec, None).await;
}

#[actix_rt::test]
async fn an_https_proxy_carries_ws_and_wss() {
    let pems = pems();
    let server = TestServer::start(Spec::new(echo));
    let front = tls_front(&server, &pems, "");
    let inner = tinyproxy(None);
    for target in [server.url(), format!("wss://127.0.0.1:{}/ws", front.port)] {
        let tls_proxy = daemons::https_proxy(&inner, &pems);
        let url = format!("https://127.0.0.1:{}", tls_proxy.port);
        let rec = Recorder::start();
        let builder = client(target, &rec)
            .add_root_certificate(pems.ca.clone())
            .proxy(Proxy::all(&url).unwrap());
        carried_through(builder, &rec, tls_proxy, &url).await;
    }
    // The proxy's certificate is checked like a server's.
    let tls_proxy = daemons::https_proxy(&inner, &pems);
    let url = format!("https://127.0.0.1:{}", tls_proxy.port);
    let rec = Recorder::start();
    let e = gives_up_at_once(
        client(server.url(), &rec).proxy(Proxy::all(&url).unwrap()),
        &rec,
    )
    .await;
    assert_eq!(e.kind(), ConnectErrorKind::Certificate);
}

#[actix_rt::test]
async fn a_link_through_a_proxy_reconnects_through_it() {
    let server = TestServer::start(Spec::new(close_at_once));
    let proxy = microsocks(None);
    let rec = Recorder::start();
    let url = format!("socks5h://{}", proxy.addr());
    let _client = client(server.url(), &rec)
        .proxy(Proxy::all(&url).unwrap())
        .start()
        .unwrap();
    for _ in 0..3 {
        let up = rec
            .wait_for(connected, BOUND)
            .await
            .expect("connects again");
        assert_eq!(proxy_of(&up.value), Some(url.clone()));
    }
}

#[actix_rt::test]
async fn a_client_certificate_is_presented_when_required() {
    let pems = pems();
    let server = TestServer::start(Spec::new(echo));
    let front = tls_front(&server, &pems, " ssl_verify_client on;");
    let url = format!("wss://127.0.0.1:{}/ws", front.port);
    let rec = Recorder::start();
    let builder = client(url.clone(), &rec)
        .add_root_certificate(pems.ca.clone())
        .identity(pems.client_chain.clone(), pems.client_key.clone());
    connects_and_echoes(builder, &rec, None).await;
    // Without it nginx refuses (400): fatal, not retried.
    let rec = Recorder::start();
    let e = gives_up_at_once(
        client(url, &rec).add_root_certificate(pems.ca.clone()),
        &rec,
    )
    .await;
    assert!(!e.is_retryable(), "{e:?}");
}

#[actix_rt::test]
async fn untrusted_misnamed_and_expired_certificates_are_fatal_unless_told_otherwise() {
    let pems = pems();
    let server = TestServer::start(Spec::new(echo));
    let (untrusted, misnamed, expired) = (free_port(), free_port(), free_port());
    let block = |port: u16, name: &str| {
        format!(
            "server {{\n listen 127.0.0.1:{port} ssl;\n ssl_certificate {{dir}}/{name}.pem;\n\
             ssl_certificate_key {{dir}}/{name}.key;\n location / {{\n  proxy_pass http://{};\n\
             proxy_http_version 1.1;\n  proxy_set_header Upgrade $http_upgrade;\n\
             proxy_set_header Connection upgrade;\n }}\n}}\n",
            server.addr
        )
    };
    let http =
        block(untrusted, "untrusted") + &block(misnamed, "misnamed") + &block(expired, "expired");
    let _nginx = nginx(
        untrusted,
        &http,
        None,
        &[
            ("untrusted.pem", &pems.untrusted_chain),
            ("untrusted.key", &pems.untrusted_key),
            ("misnamed.pem", &pems.wrong_name_chain),
            ("misnamed.key", &pems.wrong_name_key),
            ("expired.pem", &pems.expired_chain),
            ("expired.key", &pems.expired_key),
        ],
    );
    for port in [untrusted, misnamed, expired] {
        let url = format!("wss://127.0.0.1:{port}/ws");
        let rec = Recorder::start();
        let builder = client(url.clone(), &rec).add_root_certificate(pems.ca.clone());
        let e = gives_up_at_once(builder, &rec).await;
        assert_eq!(e.kind(), ConnectErrorKind::Certificate, "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");
        let rec = Recorder::start();
        let builder = client(url, &rec).danger_accept_invalid_certs(true);
        connects_and_echoes(builder, &rec, None).await;
    }
}

#[actix_rt::test]
async fn redirects_are_followed_when_asked_and_never_to_plain_ws() {
    let pems = pems();
    let server = TestServer::start(Spec::new(echo));
    let plain = free_port();
    let target = format!("ws://{}/ws", server.addr);
    let http = format!(
        "server {{\n listen 127.0.0.1:{plain};\n location /moved {{ return 301 {target}; }}\n\
         location /twice {{ return 308 /moved; }}\n}}"
    );
    let _redirects = nginx(plain, &http, None, &[]);
    let front = tls_front(
        &server,
        &pems,
        &format!(" location /down {{ return 302 {target}; }}"),
    );

    let moved = format!("ws://127.0.0.1:{plain}/moved");
    let twice = format!("ws://127.0.0.1:{plain}/twice");
    let rec = Recorder::start();
    connects_and_echoes(client(twice.clone(), &rec).follow_redirects(2), &rec, None).await;
    // Off by default, and limited.
    for (url, hops, status) in [(moved, 0, 301), (twice, 1, 301)] {
        let rec = Recorder::start();
        let e = gives_up_at_once(client(url, &rec).follow_redirects(hops), &rec).await;
        assert_eq!(
            (e.kind(), e.status()),
            (ConnectErrorKind::Http, Some(status))
        );
    }
    // wss:// never follows a redirect to ws://.
    let rec = Recorder::start();
    let down = format!("wss://127.0.0.1:{}/down", front.port);
    let builder = client(down, &rec)
        .add_root_certificate(pems.ca.clone())
        .follow_redirects(5);
    let e = gives_up_at_once(builder, &rec).await;
    assert_eq!(e.status(), Some(302));
    assert!(
        actix_tether::ErrorChain(&e)
            .to_string()
            .contains("wss:// to ws://"),
        "{e:?}"
    );
}

#[actix_rt::test]
async fn a_proxy_that_never_answers_times_out_and_is_retried() {
    let server = TestServer::start(Spec::new(echo));
    // The kernel accepts connections to a listener nobody reads.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let rec = Recorder::start();
    let _client = client(server.url(), &rec)
        .proxy(Proxy::all(&url).unwrap())
        .connect_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let (e, will_retry) = next_connect_failure(&rec).await;
    assert!(will_retry);
    assert_eq!(e.kind(), ConnectErrorKind::Timeout);
}

#[actix_rt::test]
async fn pings_keep_a_link_through_a_reverse_proxy_that_cuts_idle_ones() {
    let server = TestServer::start(Spec::new(echo));
    let port = free_port();
    let http = format!(
        "server {{\n listen 127.0.0.1:{port};\n location / {{\n  proxy_pass http://{};\n\
         proxy_http_version 1.1;\n  proxy_set_header Upgrade $http_upgrade;\n\
         proxy_set_header Connection upgrade;\n  proxy_read_timeout 1s;\n }}\n}}",
        server.addr
    );
    let _nginx = nginx(port, &http, None, &[]);
    let url = format!("ws://127.0.0.1:{port}/ws");
    // Pings every 300 ms: the Pongs are what nginx reads from the server,
    // so it never finds the link idle for its 1 s.
    let rec = Recorder::start();
    let pinging = client(url.clone(), &rec)
        .ping_interval(Duration::from_millis(300))
        .start()
        .unwrap();
    rec.wait_for(connected, BOUND).await.expect("connects");
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rec.event_names(), ["connecting", "connected"]);
    pinging.send("still here").await.unwrap();
    rec.wait_for_text("still here", BOUND)
        .await
        .expect("echoed");
    // Without pings nginx cuts the idle link, and the client reconnects.
    let rec = Recorder::start();
    let _quiet = client(url, &rec).no_ping().start().unwrap();
    rec.wait_for(connected, BOUND).await.expect("connects");
    rec.wait_for(|e| matches!(e, Event::Disconnected { .. }), BOUND)
        .await
        .expect("nginx cuts the idle link");
    rec.wait_for(connected, BOUND).await.expect("reconnects");
}
