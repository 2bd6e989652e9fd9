//! Typed messaging: serde values out, typed and topic subscriptions in,
//! requests matched to responses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_tether::testkit::{mock, settle, MockTransport};
use actix_tether::typed::{
    DecodeFailed, Decoded, RequestOptions, Routed, Topics, TypedClient, TypedError,
};
use actix_tether::{Client, ClientBuilder, Jitter, Message};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn client(t: MockTransport) -> ClientBuilder {
    ClientBuilder::new("ws://typed.test/")
        .transport(t)
        .jitter(Jitter::None)
        .backoff_initial(ms(100))
        .no_ping()
}

/// Collects whatever it receives.
struct Sink<M>(Arc<Mutex<Vec<M>>>);

impl<M: 'static + Unpin> Actor for Sink<M> {
    type Context = Context<Self>;
}

impl<M: actix::Message<Result = ()> + Unpin + 'static> Handler<M> for Sink<M> {
    type Result = ();

    fn handle(&mut self, msg: M, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(msg);
    }
}

fn sink<M: actix::Message<Result = ()> + Send + Unpin + 'static>(
) -> (Recipient<M>, Arc<Mutex<Vec<M>>>)
where
    M::Result: Send,
{
    let store = Arc::new(Mutex::new(Vec::new()));
    (Sink(store.clone()).start().recipient(), store)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Price {
    symbol: String,
    price: f64,
}

static DECODES: AtomicUsize = AtomicUsize::new(0);

/// A price whose decoding is counted.
#[derive(Debug, Clone, PartialEq)]
struct CountedPrice(Price);

impl<'de> Deserialize<'de> for CountedPrice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::SeqCst);
        Price::deserialize(d).map(CountedPrice)
    }
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn values_out_typed_values_in_decoded_once_per_type() {
    let (t, mut server) = mock();
    let c = client(t).start().unwrap();
    let typed = TypedClient::builder().start(&c);
    let (a, got_a) = sink::<Decoded<CountedPrice>>();
    let (b, got_b) = sink::<Decoded<CountedPrice>>();
    let (p, got_p) = sink::<Decoded<Price>>();
    let (f, failures) = sink::<DecodeFailed>();
    typed.subscribe(a);
    typed.subscribe(b);
    typed.subscribe(p);
    typed.subscribe_failures(f);
    let mut conn = server.accept().await.unwrap();
    typed
        .send_json(&Price {
            symbol: "BTC".into(),
            price: 1.5,
        })
        .await
        .unwrap();
    let sent: Value = serde_json::from_str(&conn.next_text().await.unwrap()).unwrap();
    assert_eq!(sent, json!({"symbol": "BTC", "price": 1.5}));

    conn.send_text(r#"{"symbol":"ETH","price":2.0}"#);
    conn.send_text(r#"{"not":"a price"}"#);
    conn.send_text("not json at all");
    settle(ms(10)).await;
    let eth = Price {
        symbol: "ETH".into(),
        price: 2.0,
    };
    assert_eq!(got_a.lock().unwrap().len(), 1);
    assert_eq!(got_b.lock().unwrap()[0].0, CountedPrice(eth.clone()));
    assert_eq!(got_p.lock().unwrap()[0].0, eth);
    // Two subscribers of CountedPrice, two messages that are JSON: two
    // decodes, not four.
    assert_eq!(DECODES.load(Ordering::SeqCst), 2);
    let failures = failures.lock().unwrap().clone();
    let raw: Vec<_> = failures.iter().map(|f| f.raw.clone()).collect();
    assert_eq!(
        raw,
        [
            Message::from(r#"{"not":"a price"}"#),
            Message::from(r#"{"not":"a price"}"#),
            Message::from("not json at all")
        ]
    );
    assert!(failures.iter().any(|f| f.expected.contains("Price")));
    // Serialization errors come back as values, not panics: JSON object
    // keys must be strings.
    let bad: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
    assert!(matches!(
        typed.send_json(&bad).await,
        Err(TypedError::Encode(_))
    ));
    assert!(matches!(
        typed.request::<_, Value>(&bad, ms(10)).await,
        Err(TypedError::Encode(_))
    ));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn topics_route_and_are_resubscribed_after_a_reconnect() {
    let (t, mut server) = mock();
    let topics = Topics::new();
    let hook_topics = topics.clone();
    let c = client(t)
        .on_connect(move |_| {
            hook_topics
                .keys()
                .into_iter()
                .map(|k| Message::from(json!({"op": "subscribe", "channel": k}).to_string()))
                .collect()
        })
        .start()
        .unwrap();
    let typed = TypedClient::builder()
        .route_by("/channel")
        .topics(topics.clone())
        .start(&c);
    let (trades, got_trades) = sink::<Routed>();
    let (book, got_book) = sink::<Routed>();
    let (rest, got_rest) = sink::<Routed>();
    typed.subscribe_topic("trades", trades);
    typed.subscribe_topic("book", book);
    typed.subscribe_unrouted(rest);
    let conn = server.accept().await.unwrap();
    conn.send_text(r#"{"channel":"trades","p":1}"#);
    conn.send_text(r#"{"channel":"book","p":2}"#);
    conn.send_text(r#"{"channel":"other","p":3}"#);
    conn.send_text(r#"{"p":4}"#);
    settle(ms(10)).await;
    assert_eq!(got_trades.lock().unwrap()[0].value["p"], 1);
    assert_eq!(got_book.lock().unwrap()[0].key.as_deref(), Some("book"));
    let rest: Vec<Value> = got_rest
        .lock()
        .unwrap()
        .iter()
        .map(|r| (*r.value).clone())
        .collect();
    assert_eq!(rest, [json!({"channel":"other","p":3}), json!({"p":4})]);
    assert_eq!(topics.keys(), ["book", "trades"]);

    conn.drop_link();
    let mut again = server.accept().await.unwrap();
    let mut subs = Vec::new();
    for _ in 0..2 {
        let v: Value = serde_json::from_str(&again.next_text().await.unwrap()).unwrap();
        subs.push(v["channel"].as_str().unwrap().to_owned());
    }
    assert_eq!(subs, ["book", "trades"]);
}

async fn answer_next(conn: &mut actix_tether::testkit::MockConn) -> Value {
    let req: Value = serde_json::from_str(&conn.next_text().await.unwrap()).unwrap();
    conn.send_text(&json!({"id": req["id"], "result": req["params"]}).to_string());
    req
}

fn api(c: &Client) -> TypedClient {
    TypedClient::builder().correlate("/id", "/id").start(c)
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn requests_resolve_time_out_and_fail_on_disconnect() {
    let (t, mut server) = mock();
    let c = client(t).start().unwrap();
    let api = api(&c);
    let mut conn = server.accept().await.unwrap();

    let call = api.request::<_, Value>(&json!({"params": 5}), Duration::from_secs(1));
    let (res, req) = futures::join!(call, answer_next(&mut conn));
    assert_eq!(res.unwrap()["result"], 5);
    assert_eq!(req["id"], "1");

    let started = actix_rt::time::Instant::now();
    let late = api
        .request::<_, Value>(&json!({"params": 6}), ms(750))
        .await;
    assert!(matches!(late, Err(TypedError::Timeout)));
    assert_eq!(started.elapsed(), ms(750));

    let api2 = api.clone();
    let cut = actix_rt::spawn(async move {
        api2.request::<_, Value>(&json!({"params": 7}), Duration::from_secs(30))
            .await
    });
    let api3 = api.clone();
    let kept = actix_rt::spawn(async move {
        let opts = RequestOptions::new(Duration::from_secs(30)).retry_on_reconnect();
        api3.request_with::<_, Value>(&json!({"params": 8}), opts)
            .await
    });
    settle(ms(10)).await;
    conn.drop_link();
    assert!(matches!(cut.await.unwrap(), Err(TypedError::Disconnected)));
    // The retrying request goes out again on the next link and is answered.
    let mut conn2 = server.accept().await.unwrap();
    let mut answered = answer_next(&mut conn2).await;
    while answered["params"] != 8 {
        answered = answer_next(&mut conn2).await;
    }
    assert_eq!(kept.await.unwrap().unwrap()["result"], 8);
    assert_eq!(api.pending_requests().await.unwrap(), 0);

    let api4 = api.clone();
    let closing = actix_rt::spawn(async move {
        api4.request::<_, Value>(&json!({"params": 9}), Duration::from_secs(30))
            .await
    });
    settle(ms(10)).await;
    c.close(ms(100)).await.unwrap();
    assert!(matches!(closing.await.unwrap(), Err(TypedError::Closed)));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_wrong_response_type_is_a_decode_error() {
    let (t, mut server) = mock();
    let c = client(t).start().unwrap();
    let api = api(&c);
    let mut conn = server.accept().await.unwrap();
    let call = api.request::<_, Price>(&json!({"params": "not a price"}), Duration::from_secs(1));
    let (res, _) = futures::join!(call, answer_next(&mut conn));
    assert!(matches!(res, Err(TypedError::Decode(_))));
    let none = TypedClient::builder().start(&c);
    assert!(matches!(
        none.request::<_, Value>(&json!({}), ms(10)).await,
        Err(TypedError::Encode(_))
    ));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_pending_table_never_leaks_over_100k_requests() {
    let (t, mut server) = mock();
    let c = client(t).queue_size(1 << 17).start().unwrap();
    let api = api(&c);
    let mut conn = server.accept().await.unwrap();
    let total = 100_000u32;
    let mut calls = Vec::with_capacity(total as usize);
    for i in 0..total {
        let api = api.clone();
        calls.push(actix_rt::spawn(async move {
            api.request::<_, Value>(&json!({"params": i}), ms(500))
                .await
        }));
        if i % 10_000 == 9_999 {
            // Answer every third, leave the rest to time out; every other
            // round, cut the link while requests are in flight.
            settle(ms(1)).await;
            while let Ok(Some(text)) = actix_rt::time::timeout(ms(1), conn.next_text()).await {
                let req: Value = serde_json::from_str(&text).unwrap();
                if req["params"].as_u64().unwrap() % 3 == 0 {
                    conn.send_text(&json!({"id": req["id"], "result": 1}).to_string());
                }
            }
            if (i / 10_000) % 2 == 1 {
                conn.drop_link();
                conn = server.accept().await.unwrap();
            } else {
                settle(ms(600)).await;
            }
        }
    }
    settle(Duration::from_secs(1)).await;
    let (mut ok, mut timeout, mut cut) = (0, 0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(TypedError::Timeout) => timeout += 1,
            Err(TypedError::Disconnected) => cut += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    println!("100k requests: {ok} answered, {timeout} timed out, {cut} cut by disconnects");
    assert_eq!(ok + timeout + cut, total);
    assert!(ok > 0 && timeout > 0 && cut > 0);
    assert_eq!(api.pending_requests().await.unwrap(), 0);
}

#[actix_rt::test]
async fn requests_against_a_real_server() {
    let server = support::TestServer::start(support::Spec::new(support::echo));
    let c = ClientBuilder::new(server.url()).start().unwrap();
    let api = api(&c);
    let (p, got) = sink::<Decoded<Price>>();
    api.subscribe(p);
    for i in 0..20 {
        let echoed: Value = api
            .request(&json!({"params": i}), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(echoed["params"], i);
    }
    api.send_json(&Price {
        symbol: "SOL".into(),
        price: 3.0,
    })
    .await
    .unwrap();
    assert!(support::eventually(Duration::from_secs(5), || !got.lock().unwrap().is_empty()).await);
    assert_eq!(got.lock().unwrap()[0].0.symbol, "SOL");
    assert_eq!(api.pending_requests().await.unwrap(), 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn reliable_messages_are_resent_in_order_until_acknowledged() {
    use actix_tether::typed::Delivery;
    let (t, mut server) = mock();
    let c = client(t).start().unwrap();
    let api = TypedClient::builder()
        .acknowledge("/id", "/ack")
        .max_unacked(3)
        .start(&c);
    let mut conn = server.accept().await.unwrap();
    let sends: Vec<_> = (1..=3)
        .map(|n| actix_rt::spawn(api.send_reliable(&json!({ "n": n }))))
        .collect();
    settle(ms(1)).await;
    assert!(matches!(
        api.send_reliable(&json!({"n": 4})).await,
        Err(TypedError::WindowFull)
    ));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v: Value = serde_json::from_str(&conn.next_text().await.unwrap()).unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids, ["r1", "r2", "r3"]);
    conn.send_text(r#"{"ack":"r1"}"#);
    settle(ms(1)).await;
    conn.drop_link();
    settle(ms(1)).await;
    c.try_send("plain, queued while down").unwrap();

    // After the reconnect the unacknowledged go first, in order, then the
    // backlog.
    let mut conn2 = server.accept().await.unwrap();
    let mut texts = Vec::new();
    for _ in 0..3 {
        texts.push(conn2.next_text().await.unwrap());
    }
    assert_eq!(
        texts,
        [
            r#"{"id":"r2","n":2}"#,
            r#"{"id":"r3","n":3}"#,
            "plain, queued while down"
        ]
    );
    conn2.send_text(r#"{"ack":"r3"}"#);
    conn2.send_text(r#"{"ack":"r2"}"#);
    let outcomes: Vec<Delivery> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            Delivery::Acked {
                id: "r1".into(),
                resends: 0
            },
            Delivery::Acked {
                id: "r2".into(),
                resends: 1
            },
            Delivery::Acked {
                id: "r3".into(),
                resends: 1
            },
        ]
    );
    assert_eq!(api.unacked().await.unwrap(), 0);

    let last = actix_rt::spawn(api.send_reliable(&json!({"n": 5})));
    settle(ms(1)).await;
    c.close(ms(100)).await.unwrap();
    assert!(matches!(
        last.await.unwrap(),
        Ok(Delivery::GaveUp { id, resends: 0, .. }) if id == "r4"
    ));
}

#[actix_rt::test]
async fn reliable_delivery_against_a_real_server() {
    use actix_tether::typed::Delivery;
    // The echo server sends each message back, id included: an ack.
    let server = support::TestServer::start(support::Spec::new(support::echo));
    let c = ClientBuilder::new(server.url()).start().unwrap();
    let api = TypedClient::builder().acknowledge("/id", "/id").start(&c);
    for n in 0..10 {
        let outcome = api.send_reliable(&json!({ "n": n })).await.unwrap();
        assert!(matches!(outcome, Delivery::Acked { resends: 0, .. }));
    }
    assert_eq!(api.unacked().await.unwrap(), 0);
}

/// A binary codec: JSON bytes in binary frames.
struct BinaryJson;

impl actix_tether::typed::Codec for BinaryJson {
    fn encode(&self, value: &Value) -> Result<Message, actix_tether::typed::CodecError> {
        serde_json::to_vec(value)
            .map(Message::from)
            .map_err(actix_tether::typed::CodecError::new)
    }

    fn decode(&self, message: &Message) -> Result<Value, actix_tether::typed::CodecError> {
        match message {
            Message::Binary(b) => {
                serde_json::from_slice(b).map_err(actix_tether::typed::CodecError::new)
            }
            Message::Text(_) => Err(actix_tether::typed::CodecError::new(std::io::Error::other(
                "text frame on a binary codec",
            ))),
        }
    }
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_binary_codec_plugs_in() {
    let (t, mut server) = mock();
    let c = client(t).start().unwrap();
    let typed = TypedClient::builder().codec(BinaryJson).start(&c);
    let (p, got) = sink::<Decoded<Price>>();
    let (f, failures) = sink::<DecodeFailed>();
    typed.subscribe(p);
    typed.subscribe_failures(f);
    let mut conn = server.accept().await.unwrap();
    typed.send_json(&json!({"x": 1})).await.unwrap();
    assert_eq!(
        conn.next_message().await,
        Some(Message::Binary(br#"{"x":1}"#.to_vec().into()))
    );
    conn.send_binary(br#"{"symbol":"ADA","price":0.5}"#.to_vec());
    conn.send_text(r#"{"symbol":"ADA","price":0.5}"#);
    settle(ms(10)).await;
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(failures.lock().unwrap().len(), 1);
}

#[actix_rt::test]
async fn topics_against_a_real_server() {
    let server = support::TestServer::start(support::Spec::new(support::echo));
    let c = ClientBuilder::new(server.url()).start().unwrap();
    let feed = TypedClient::builder().route_by("/channel").start(&c);
    let (a, got_a) = sink::<Routed>();
    let (other, got_other) = sink::<Routed>();
    feed.subscribe_topic("a", a);
    feed.subscribe_unrouted(other);
    for (channel, n) in [("a", 1), ("b", 2), ("a", 3)] {
        feed.send_json(&json!({"channel": channel, "n": n}))
            .await
            .unwrap();
    }
    assert!(support::eventually(Duration::from_secs(5), || got_a.lock().unwrap().len() == 2).await);
    let a: Vec<Value> = got_a
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.value["n"].clone())
        .collect();
    assert_eq!(a, [json!(1), json!(3)]);
    assert!(
        support::eventually(Duration::from_secs(5), || got_other.lock().unwrap().len()
            == 1)
        .await
    );
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_typed_layer_started_after_the_first_link_still_resends() {
    use actix_tether::typed::Delivery;
    let (t, mut server) = mock();
    let c = client(t).start().unwrap();
    let conn = server.accept().await.unwrap();
    settle(ms(10)).await;
    // Started once the first link is up.
    let api = TypedClient::builder().acknowledge("/id", "/ack").start(&c);
    let sent = actix_rt::spawn(api.send_reliable(&json!({"n": 1})));
    settle(ms(10)).await;
    conn.drop_link();
    let mut conn2 = server.accept().await.unwrap();
    assert_eq!(
        conn2.next_text().await.as_deref(),
        Some(r#"{"id":"r1","n":1}"#),
        "re-sent on the next link"
    );
    conn2.send_text(r#"{"ack":"r1"}"#);
    assert_eq!(
        sent.await.unwrap().unwrap(),
        Delivery::Acked {
            id: "r1".into(),
            resends: 1
        }
    );
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_retry_request_the_queue_refuses_fails_at_once_with_the_reason() {
    let (t, mut server) = mock();
    let c = client(t).queue_size(2).start().unwrap();
    let api = api(&c);
    let conn = server.accept().await.unwrap();
    let call = {
        let api = api.clone();
        actix_rt::spawn(async move {
            api.request_with::<_, Value>(
                &json!({"params": 1}),
                RequestOptions::new(Duration::from_secs(3600)).retry_on_reconnect(),
            )
            .await
        })
    };
    settle(ms(10)).await;
    conn.drop_link();
    settle(ms(1)).await;
    // The queue fills while the link is down: the re-send has no room.
    c.try_send("a").unwrap();
    c.try_send("b").unwrap();
    let _conn2 = server.accept().await.unwrap();
    let outcome = actix_rt::time::timeout(ms(100), call).await;
    assert!(
        matches!(&outcome, Ok(Ok(Err(TypedError::Send(e)))) if e.is_full()),
        "{outcome:?}"
    );
    assert_eq!(api.pending_requests().await.unwrap(), 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_pending_table_is_bounded_and_a_dropped_request_leaves_at_once() {
    let (t, mut server) = mock();
    let c = client(t).start().unwrap();
    let api = TypedClient::builder()
        .correlate("/id", "/id")
        .max_pending(2)
        .start(&c);
    let _conn = server.accept().await.unwrap();
    let long = Duration::from_secs(3600);
    let first = actix_rt::spawn(api.request::<_, Value>(&json!({}), long));
    let second = actix_rt::spawn(api.request::<_, Value>(&json!({}), long));
    settle(ms(10)).await;
    assert_eq!(api.pending_requests().await.unwrap(), 2);
    assert!(matches!(
        api.request::<_, Value>(&json!({}), long).await,
        Err(TypedError::TooManyRequests)
    ));
    first.abort();
    settle(ms(10)).await;
    assert_eq!(
        api.pending_requests().await.unwrap(),
        1,
        "the dropped request left the table before its timeout"
    );
    second.abort();
}

/// Reads frames until a Ping; returns its payload (fails if none comes).
async fn next_ping(conn: &mut actix_tether::testkit::MockConn) -> bytes::Bytes {
    loop {
        match conn.next_frame().await {
            Some(actix_tether::engine::OutFrame::Ping(p)) => return p,
            Some(_) => {}
            None => panic!("the client wrote no Ping"),
        }
    }
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_request_a_pong_confirmed_fails_as_response_lost_when_the_link_goes() {
    let (t, mut server) = mock();
    server.script([actix_tether::testkit::Outcome::AcceptSilent]);
    let c = client(t).delivery_barriers(true).start().unwrap();
    let api = api(&c);
    let mut conn = server.accept().await.unwrap();
    let api2 = api.clone();
    let call = actix_rt::spawn(async move {
        api2.request::<_, Value>(&json!({"params": 1}), Duration::from_secs(30))
            .await
    });
    let ping = next_ping(&mut conn).await;
    conn.send_frame(actix_tether::engine::Frame::Pong(ping));
    settle(ms(10)).await;
    conn.drop_link();
    assert!(matches!(call.await.unwrap(), Err(TypedError::ResponseLost)));
    // Unconfirmed, it may not have arrived: Disconnected, as before.
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    let api3 = api.clone();
    let call = actix_rt::spawn(async move {
        api3.request::<_, Value>(&json!({"params": 2}), Duration::from_secs(30))
            .await
    });
    let _ = next_ping(&mut conn).await;
    conn.drop_link();
    assert!(matches!(call.await.unwrap(), Err(TypedError::Disconnected)));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn with_replay_an_unconfirmed_request_survives_the_disconnect() {
    let (t, mut server) = mock();
    server.script([actix_tether::testkit::Outcome::AcceptSilent]);
    let c = client(t).replay_unconfirmed(true).start().unwrap();
    let api = api(&c);
    let mut conn = server.accept().await.unwrap();
    let api2 = api.clone();
    let call = actix_rt::spawn(async move {
        api2.request::<_, Value>(&json!({"params": 3}), Duration::from_secs(30))
            .await
    });
    let _ = next_ping(&mut conn).await;
    conn.drop_link();
    // The client writes it again on the next link, which answers it.
    let mut conn = server.accept().await.unwrap();
    let req = answer_next(&mut conn).await;
    assert_eq!(req["params"], 3);
    assert_eq!(call.await.unwrap().unwrap()["result"], 3);
    assert_eq!(api.pending_requests().await.unwrap(), 0);
}
