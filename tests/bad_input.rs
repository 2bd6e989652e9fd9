//! Every bad input gets a typed error or the right close code, never a
//! panic, and leaves a client whose state and counters still make sense.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix::prelude::*;
use actix_tether::testkit::Recorder;
use actix_tether::{
    ClientBuilder, ConfigError, ConnectErrorKind, DisconnectReason, Event, Inbound, Jitter,
    ProtocolViolation, State,
};
use actix_web::HttpResponse;
use futures::channel::mpsc;
use futures::StreamExt;
use support::raw;
use support::{Spec, TestServer};
use tokio::io::AsyncWriteExt;

const BOUND: Duration = Duration::from_secs(10);

fn client(url: String, rec: &Recorder) -> ClientBuilder {
    ClientBuilder::new(url)
        .jitter(Jitter::None)
        .backoff_initial(Duration::from_millis(50))
        .connect_timeout(Duration::from_secs(2))
        .no_ping()
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
}

async fn first_reason(rec: &Recorder) -> (DisconnectReason, bool) {
    match rec
        .wait_for(|e| matches!(e, Event::Disconnected { .. }), BOUND)
        .await
        .map(|s| s.value)
    {
        Some(Event::Disconnected { reason, will_retry }) => (reason, will_retry),
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

/// Serves `bytes` after a valid upgrade; returns the close code the client
/// answered with, the reason it reported, and its state afterwards.
async fn after_frames(bytes: Vec<u8>, max_message: usize) -> (u16, DisconnectReason, State) {
    let (tx, mut codes) = mpsc::unbounded();
    let addr = raw::serve(move |mut s| {
        let (tx, bytes) = (tx.clone(), bytes.clone());
        Box::pin(async move {
            raw::upgrade(&mut s, "").await;
            let _ = s.write_all(&bytes).await;
            let _ = tx.unbounded_send(raw::close_code(&mut s).await);
        })
    })
    .await;
    let rec = Recorder::start();
    let c = client(format!("ws://{addr}/"), &rec)
        .max_message_size(max_message)
        .start()
        .unwrap();
    let code = codes.next().await.flatten().unwrap_or(0);
    let (reason, will_retry) = first_reason(&rec).await;
    assert!(will_retry, "a misbehaving server is retried");
    assert!(
        rec.recorded_inbound().is_empty(),
        "nothing bad was delivered"
    );
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.messages_in, 0);
    (code, reason, stats.state)
}

#[actix_rt::test]
async fn every_frame_level_violation_is_a_protocol_reason_with_its_close_code() {
    use ProtocolViolation as V;
    let cases: Vec<(&str, Vec<u8>, ProtocolViolation, u16)> = vec![
        (
            "control frame over 125 bytes",
            raw::frame(0x89, &[0u8; 126]),
            V::ControlFrameTooBig,
            1002,
        ),
        (
            "fragmented control frame",
            raw::frame(0x09, b"ping"),
            V::FragmentedControlFrame,
            1002,
        ),
        (
            "reserved data opcode 0x3",
            raw::frame(0x83, b"x"),
            V::ReservedOpcode,
            1002,
        ),
        (
            "reserved control opcode 0xB",
            raw::frame(0x8B, b"x"),
            V::ReservedOpcode,
            1002,
        ),
        (
            "RSV1 without an extension",
            raw::frame(0xC1, b"x"),
            V::ReservedBits,
            1002,
        ),
        (
            "RSV2 without an extension",
            raw::frame(0xA1, b"x"),
            V::ReservedBits,
            1002,
        ),
        (
            "RSV3 without an extension",
            raw::frame(0x91, b"x"),
            V::ReservedBits,
            1002,
        ),
        (
            "a masked frame",
            vec![0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1],
            V::MaskedFrame,
            1002,
        ),
        (
            "a 64-bit length with the top bit set",
            vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1],
            V::InvalidLength,
            1002,
        ),
        (
            "a length not in its minimal encoding",
            vec![0x82, 126, 0, 5, 1, 2, 3, 4, 5],
            V::InvalidLength,
            1002,
        ),
        (
            "close with invalid code 999",
            raw::frame(0x88, &999u16.to_be_bytes()),
            V::InvalidCloseFrame,
            1002,
        ),
        (
            "close with reserved code 1005",
            raw::frame(0x88, &1005u16.to_be_bytes()),
            V::InvalidCloseFrame,
            1002,
        ),
        (
            "close with a one-byte payload",
            raw::frame(0x88, &[3]),
            V::InvalidCloseFrame,
            1002,
        ),
        (
            "close reason not UTF-8",
            raw::frame(0x88, &[0x03, 0xE8, 0xFF]),
            V::InvalidCloseReason,
            1007,
        ),
        (
            "a continuation without a message",
            raw::frame(0x80, b"orphan"),
            V::UnexpectedContinuation,
            1002,
        ),
    ];
    for (what, bytes, violation, want) in cases {
        let (code, reason, state) = after_frames(bytes, 1 << 20).await;
        assert_eq!(code, want, "{what}");
        assert_eq!(violation.close_code(), want, "{what}");
        assert!(
            matches!(reason, DisconnectReason::Protocol(v) if v == violation),
            "{what}: {reason:?}"
        );
        // One line that says what happened and the code the client sent.
        let text = reason.to_string();
        assert_eq!(
            text,
            format!("protocol violation: {violation} (closed with {want})"),
            "{what}"
        );
        assert!(
            matches!(state, State::Waiting | State::Connecting | State::Connected),
            "{what}"
        );
    }
}

#[actix_rt::test]
async fn message_level_violations_close_with_1007_and_1009() {
    let (code, reason, _) = after_frames(raw::frame(0x81, &[0xFF, 0xFE]), 1 << 20).await;
    assert_eq!(code, 1007);
    assert!(matches!(
        reason,
        DisconnectReason::Protocol(ProtocolViolation::InvalidUtf8)
    ));

    let mut fragments = raw::frame(0x01, b"0123456789");
    fragments.extend(raw::frame(0x80, b"0123456789"));
    let (code, reason, _) = after_frames(fragments, 16).await;
    assert_eq!(code, 1009);
    assert!(matches!(
        reason,
        DisconnectReason::Protocol(ProtocolViolation::MessageTooBig)
    ));

    // The frame limit defaults to the message limit: the header says enough.
    let (code, reason, _) = after_frames(raw::frame(0x82, &[0u8; 64]), 16).await;
    assert_eq!(code, 1009);
    assert!(
        matches!(
            reason,
            DisconnectReason::Protocol(ProtocolViolation::FrameTooBig)
        ),
        "{reason:?}"
    );
}

/// Answers every connection with `response` (after reading the request).
async fn answering(response: &'static str) -> String {
    let addr = raw::serve(move |mut s| {
        Box::pin(async move {
            raw::read_request(&mut s).await;
            let _ = s.write_all(response.as_bytes()).await;
        })
    })
    .await;
    format!("ws://{addr}/")
}

async fn connect_error(url: String) -> (ConnectErrorKind, Option<u16>, bool, State) {
    let rec = Recorder::start();
    let c = client(url, &rec).start().unwrap();
    let (reason, will_retry) = first_reason(&rec).await;
    let err = reason
        .connect_error()
        .cloned()
        .unwrap_or_else(|| panic!("{reason:?}"));
    let state = c.stats().await.unwrap().state;
    (err.kind(), err.status(), will_retry, state)
}

#[actix_rt::test]
async fn broken_handshakes_are_typed_and_fatal() {
    let garbage = answering("\x00\x01garbage that is not HTTP\r\n\r\n").await;
    let (kind, _, retry, state) = connect_error(garbage).await;
    assert_eq!(
        (kind, retry, state),
        (ConnectErrorKind::Handshake, false, State::GaveUp)
    );

    let bad_accept = raw::serve(|mut s| {
        Box::pin(async move {
            raw::read_request(&mut s).await;
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                raw::b64(b"definitely not the hash")
            );
            let _ = s.write_all(resp.as_bytes()).await;
        })
    })
    .await;
    let (kind, _, retry, _) = connect_error(format!("ws://{bad_accept}/")).await;
    assert_eq!((kind, retry), (ConnectErrorKind::Handshake, false));

    let no_accept = answering(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let (kind, _, retry, _) = connect_error(no_accept).await;
    assert_eq!((kind, retry), (ConnectErrorKind::Handshake, false));

    let unoffered = raw::serve(|mut s| {
        Box::pin(async move {
            raw::upgrade(&mut s, "Sec-WebSocket-Protocol: evil\r\n").await;
            actix_rt::time::sleep(Duration::from_secs(5)).await;
        })
    })
    .await;
    let rec = Recorder::start();
    let c = client(format!("ws://{unoffered}/"), &rec)
        .protocol("good")
        .start()
        .unwrap();
    let (reason, retry) = first_reason(&rec).await;
    assert!(!retry);
    assert_eq!(
        reason.connect_error().map(|e| e.kind()),
        Some(ConnectErrorKind::ProtocolMismatch)
    );
    assert_eq!(c.stats().await.unwrap().state, State::GaveUp);
}

#[actix_rt::test]
async fn http_statuses_are_classified() {
    let cases = [
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, false),
        ("HTTP/1.1 301 Moved Permanently\r\nLocation: ws://elsewhere/\r\nContent-Length: 0\r\n\r\n", 301, false),
        ("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", 401, false),
        ("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403, false),
        ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404, false),
        ("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", 429, true),
        ("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 500, true),
        ("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", 503, true),
    ];
    for (response, status, retry) in cases {
        let url = answering(response).await;
        let rec = Recorder::start();
        let c = client(url, &rec).start().unwrap();
        let (reason, will_retry) = first_reason(&rec).await;
        let err = reason.connect_error().unwrap();
        assert_eq!(
            (err.kind(), err.status()),
            (ConnectErrorKind::Http, Some(status))
        );
        assert_eq!(will_retry, retry, "{status}");
        if status == 429 || status == 503 {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
            let wait = rec
                .wait_for(|e| matches!(e, Event::Reconnecting { .. }), BOUND)
                .await
                .unwrap();
            assert!(
                matches!(wait.value, Event::Reconnecting { delay, .. } if delay >= Duration::from_secs(1))
            );
        }
        let state = c.stats().await.unwrap().state;
        assert_eq!(state == State::GaveUp, !retry, "{status}");
    }
}

#[actix_rt::test]
async fn unreachable_servers_are_retryable_errors() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (kind, _, retry, _) = connect_error(format!("ws://{free}/")).await;
    assert_eq!((kind, retry), (ConnectErrorKind::Refused, true));

    let (kind, _, retry, _) = connect_error("ws://no-such-host.invalid/".into()).await;
    assert_eq!((kind, retry), (ConnectErrorKind::Dns, true));

    // Accepts TCP, never answers the upgrade: the connect timeout decides.
    let mute = raw::serve(|mut s| {
        Box::pin(async move {
            raw::read_request(&mut s).await;
            actix_rt::time::sleep(Duration::from_secs(30)).await;
        })
    })
    .await;
    let (kind, _, retry, _) = connect_error(format!("ws://{mute}/")).await;
    assert_eq!((kind, retry), (ConnectErrorKind::Timeout, true));

    let plain_http = TestServer::start(Spec {
        refusal: Some(|_, _| Some(HttpResponse::Ok().body("not a websocket"))),
        ..Spec::new(support::echo)
    });
    let (kind, status, retry, _) = connect_error(plain_http.url()).await;
    assert_eq!(
        (kind, status, retry),
        (ConnectErrorKind::Http, Some(200), false)
    );
}

#[test]
fn bad_settings_are_errors_from_start_not_panics() {
    actix_rt::System::new().block_on(async {
        let start = |b: ClientBuilder| b.start().err();
        for url in ["ws//missing-colon", "", "ws://", "ws://host:99999/", "ws://exa mple.com/"] {
            assert!(
                matches!(start(ClientBuilder::new(url)), Some(ConfigError::InvalidUrl { .. })),
                "{url}"
            );
        }
        for url in ["ftp://127.0.0.1/", "file:///etc/passwd", "mailto:a@b"] {
            assert!(
                matches!(start(ClientBuilder::new(url)), Some(ConfigError::UnsupportedScheme { .. })),
                "{url}"
            );
        }
        let ok = || ClientBuilder::new("ws://127.0.0.1/");
        assert!(matches!(start(ok().header("Bad Header", "x")), Some(ConfigError::InvalidHeader { .. })));
        assert!(matches!(start(ok().header("X", "a\r\nb")), Some(ConfigError::InvalidHeader { .. })));
        assert!(matches!(start(ok().protocol("a b")), Some(ConfigError::InvalidProtocol { .. })));
        let invalid = |b, name: &str| matches!(start(b), Some(ConfigError::Invalid { setting, .. }) if setting == name);
        assert!(invalid(ok().backoff_factor(f64::NAN), "backoff_factor"));
        assert!(invalid(ok().backoff_initial(Duration::ZERO), "backoff_initial"));
        assert!(invalid(ok().backoff_max(Duration::from_millis(1)), "backoff_max"));
        assert!(invalid(ok().queue_size(0), "queue_size"));
        assert!(invalid(ok().queue_bytes(0), "queue_bytes"));
        assert!(invalid(ok().ping_interval(Duration::ZERO), "ping_interval"));
        assert!(invalid(ok().max_message_size(0), "max_message_size"));
        assert!(invalid(ok().max_frame_size(0), "max_frame_size"));
        assert!(invalid(ok().connect_timeout(Duration::ZERO), "connect_timeout"));
    });
    assert!(matches!(
        ClientBuilder::new("ws://127.0.0.1/").start(),
        Err(ConfigError::NoSystem)
    ));
}

/// A subscriber that panics on its first message.
struct Panicky;

impl Actor for Panicky {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Panicky {
    type Result = ();

    fn handle(&mut self, _: Inbound, _: &mut Context<Self>) {
        panic!("subscriber bug");
    }
}

#[test]
fn a_panicking_subscriber_does_not_take_the_client_down() {
    // The subscriber lives on its own arbiter, as an application's would;
    // its panic kills that arbiter's thread, not the client's.
    actix_rt::System::new().block_on(async {
        let server = TestServer::start(Spec::new(support::echo));
        let arbiter = actix_rt::Arbiter::new();
        let panicky = Panicky::start_in_arbiter(&arbiter.handle(), |_| Panicky);
        let rec = Recorder::start();
        let c = client(server.url(), &rec)
            .subscribe(panicky.recipient())
            .start()
            .unwrap();
        for i in 0..3 {
            c.send(format!("echo {i}")).await.unwrap();
            assert!(rec
                .wait_for_text(&format!("echo {i}"), BOUND)
                .await
                .is_some());
        }
        let stats = c.stats().await.unwrap();
        assert_eq!((stats.state, stats.messages_in), (State::Connected, 3));
        assert!(c.close(BOUND).await.unwrap().is_empty());
    });
}

/// A subscriber from its own context that panics on its first message.
struct PanickyInContext(actix_tether::Client);

impl Actor for PanickyInContext {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.0.subscribe_context(ctx);
    }
}

impl Handler<Inbound> for PanickyInContext {
    type Result = ();

    fn handle(&mut self, _: Inbound, _: &mut Context<Self>) {
        CONTEXT_SUBSCRIBER_PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
        panic!("subscriber bug");
    }
}

static CONTEXT_SUBSCRIBER_PANICKED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[test]
fn a_subscriber_panicking_in_its_context_does_not_take_the_client_down() {
    actix_rt::System::new().block_on(async {
        let server = TestServer::start(Spec::new(support::echo));
        let arbiter = actix_rt::Arbiter::new();
        let rec = Recorder::start();
        let c = client(server.url(), &rec)
            .read_ahead(4 * 1024)
            .start()
            .unwrap();
        let handle = c.clone();
        PanickyInContext::start_in_arbiter(&arbiter.handle(), move |_| PanickyInContext(handle));
        // Far more than the dead subscriber's 16 reads and the 4 KiB
        // read-ahead could hold: had its subscription outlived it, reading
        // would have stopped long before the last echo.
        let payload = "z".repeat(1000);
        for i in 0..60 {
            let text = format!("echo {i:02} {payload}");
            c.send(text.clone()).await.unwrap();
            assert!(
                rec.wait_for_text(&text, BOUND).await.is_some(),
                "echo {i} never came"
            );
        }
        assert!(CONTEXT_SUBSCRIBER_PANICKED.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(c.stats().await.unwrap().state, State::Connected);
        assert!(c.close(BOUND).await.unwrap().is_empty());
    });
}

/// Frames that arrive in the same segment as the 101 (compressed ones
/// included) are decoded: our codec takes awc's read buffer over.
#[actix_rt::test]
async fn frames_sent_with_the_handshake_answer_are_not_lost() {
    let addr = raw::serve(|mut s| {
        Box::pin(async move {
            let req = raw::read_request(&mut s).await;
            let mut bytes =
                raw::answer(&req, "Sec-WebSocket-Extensions: permessage-deflate\r\n").into_bytes();
            bytes.extend(raw::frame(0x81, b"first"));
            // "hi" compressed (raw deflate, sync flush, tail removed).
            bytes.extend(raw::frame(0xC1, &[0xca, 0xc8, 0x04, 0x00]));
            bytes.extend(raw::frame(0x81, b"third"));
            let _ = s.write_all(&bytes).await;
            let _ = raw::close_code(&mut s).await;
        })
    })
    .await;
    let rec = Recorder::start();
    let _c = client(format!("ws://{addr}/"), &rec).start().unwrap();
    assert!(rec
        .wait_for_text("third", Duration::from_secs(10))
        .await
        .is_some());
    let texts: Vec<String> = rec
        .recorded_inbound()
        .iter()
        .filter_map(|m| m.as_text().map(str::to_owned))
        .collect();
    assert_eq!(texts, ["first", "hi", "third"]);
}
