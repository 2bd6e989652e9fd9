//! wss:// against a local rustls server whose certificate is signed by a CA
//! generated in the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::error::Error;
use std::time::Duration;

use actix_tether::testkit::Recorder;
use actix_tether::{ClientBuilder, ConnectErrorKind, DisconnectReason, Event, Jitter};
use support::mock::{connected, disconnected};
use support::tls::test_ca;
use support::{echo, eventually, record, Spec, TestServer};

const BOUND: Duration = Duration::from_secs(10);

fn client(url: String, rec: &Recorder) -> ClientBuilder {
    ClientBuilder::new(url)
        .jitter(Jitter::None)
        .backoff_initial(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(200))
        .min_uptime(Duration::from_millis(50))
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
}

#[actix_rt::test]
async fn custom_roots_through_tls_config_connect_and_echo() {
    let ca = test_ca();
    let server = TestServer::start_tls(Spec::new(echo), ca.server);
    let rec = Recorder::start();
    let client = client(server.wss_url(), &rec)
        .tls_config(ca.client)
        .start()
        .unwrap();
    rec.wait_for(connected, BOUND).await.expect("wss connects");
    client.send("over tls").await.unwrap();
    rec.wait_for_text("over tls", BOUND).await.expect("echoed");
    assert!(client.close(BOUND).await.unwrap().is_empty());
}

#[actix_rt::test]
async fn a_tls_link_reconnects_and_delivers_what_was_queued() {
    let ca = test_ca();
    let server_config = ca.server.clone();
    let server = TestServer::start_tls(Spec::new(record), ca.server);
    let addr = server.addr;
    let log = server.log.clone();
    let rec = Recorder::start();
    let client = client(server.wss_url(), &rec)
        .tls_config(ca.client)
        .start()
        .unwrap();
    rec.wait_for(connected, BOUND).await.unwrap();
    client.send("first").await.unwrap();
    assert!(eventually(BOUND, || log.texts().len() == 1).await);
    server.stop().await;
    rec.wait_for(disconnected, BOUND).await.unwrap();
    for n in 0..3 {
        client.try_send(format!("queued {n}")).unwrap();
    }
    let _again = TestServer::start_tls_at(addr, Spec::new(record), log.clone(), server_config);
    assert!(
        eventually(BOUND, || log.texts().len() == 4).await,
        "{:?}",
        log.texts()
    );
    assert_eq!(log.texts(), ["first", "queued 0", "queued 1", "queued 2"]);
    assert!(client.close(BOUND).await.unwrap().is_empty());
}

#[actix_rt::test]
async fn an_untrusted_certificate_is_a_fatal_certificate_error_with_the_rustls_cause() {
    let ca = test_ca();
    let server = TestServer::start_tls(Spec::new(echo), ca.server);
    let rec = Recorder::start();
    // The default configuration trusts the web's roots, not the test CA.
    let _client = client(server.wss_url(), &rec).start().unwrap();
    let gave_up = rec
        .wait_for(|e| matches!(e, Event::GaveUp { .. }), BOUND)
        .await
        .expect("a certificate failure is not retried");
    let Event::GaveUp { reason, attempts } = gave_up.value else {
        unreachable!()
    };
    assert_eq!(attempts, 1);
    let err = reason.connect_error().unwrap();
    assert_eq!(err.kind(), ConnectErrorKind::Certificate);
    assert!(!err.is_retryable());
    // The io::Error is the source, and the rustls error is inside it.
    let io = err
        .source()
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .expect("the io::Error is reachable");
    let tls = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(tls, Some(rustls::Error::InvalidCertificate(_))),
        "{}",
        actix_tether::ErrorChain(&reason)
    );
    assert!(matches!(reason, DisconnectReason::ConnectFailed(_)));
}

#[actix_rt::test]
async fn a_tls_handshake_cut_in_the_middle_is_retried() {
    // A server that hangs up in the handshake: once with unread bytes (a
    // reset), once after reading the whole ClientHello (an end of stream).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cutter = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut hello = [0u8; 64];
        let _ = std::io::Read::read(&mut socket, &mut hello);
        drop(socket);
        let (mut socket, _) = listener.accept().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut hello = [0u8; 4096];
        while matches!(std::io::Read::read(&mut socket, &mut hello), Ok(n) if n > 0) {}
        socket.shutdown(std::net::Shutdown::Both).unwrap();
    });
    let rec = Recorder::start();
    let _client = client(format!("wss://{addr}/"), &rec).start().unwrap();
    for _ in 0..2 {
        let down = rec
            .wait_for(disconnected, BOUND)
            .await
            .expect("the attempt fails");
        let Event::Disconnected { reason, will_retry } = down.value else {
            unreachable!()
        };
        let err = reason.connect_error().unwrap();
        assert!(will_retry, "{err:?}");
        assert!(err.is_retryable());
        assert_ne!(err.kind(), ConnectErrorKind::Certificate);
    }
    cutter.join().unwrap();
}

#[actix_rt::test]
async fn a_slow_tls_handshake_has_the_whole_connect_timeout() {
    use actix_tether::testkit::{Fault, FaultProxy};

    let ca = test_ca();
    let server = TestServer::start_tls(Spec::new(echo), ca.server);
    // Three seconds each way: the TLS handshake alone takes about six,
    // more than awc's own 5 s handshake limit, less than the attempt's 40 s.
    let slow = FaultProxy::start(server.addr).await.unwrap();
    slow.set(Fault::Latency(Duration::from_secs(3)));
    let rec = Recorder::start();
    let _client = client(format!("wss://{}/ws", slow.addr()), &rec)
        .tls_config(ca.client)
        .connect_timeout(Duration::from_secs(40))
        .start()
        .unwrap();
    let first = rec
        .wait_for(
            |e| matches!(e, Event::Connected { .. } | Event::Disconnected { .. }),
            Duration::from_secs(60),
        )
        .await
        .expect("the attempt ends");
    assert!(
        matches!(first.value, Event::Connected { .. }),
        "{:?}",
        first.value
    );
}
