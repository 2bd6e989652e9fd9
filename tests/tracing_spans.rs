//! Each connection attempt is a tracing span with the URL (credentials and
//! query removed), the attempt number and the outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_tether::testkit::{mock, Outcome, Recorder};
use actix_tether::{ClientBuilder, Event, Jitter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Default, Clone)]
struct Spans(Arc<Mutex<Vec<(u64, String, String)>>>);

struct Fields<'a>(&'a Spans, u64);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let mut v = self.0 .0.lock().unwrap();
        v.push((self.1, field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let mut v = self.0 .0.lock().unwrap();
        v.push((self.1, field.name().to_owned(), value.to_owned()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "ws_connect" {
            attrs.record(&mut Fields(self, id.into_u64()));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        values.record(&mut Fields(self, id.into_u64()));
    }
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn every_attempt_has_a_span_with_redacted_url_attempt_and_outcome() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let (t, mut server) = mock();
    server.script([Outcome::Refuse]);
    let rec = Recorder::start();
    let _client = ClientBuilder::new("ws://alice:secret@mock.test/feed?token=abc")
        .transport(t)
        .jitter(Jitter::None)
        .no_ping()
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    let _conn = server.accept().await.unwrap();
    rec.wait_for(
        |e| matches!(e, Event::Connected { .. }),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let recorded = spans.0.lock().unwrap().clone();
    let field = |span: usize, name: &str| -> Vec<String> {
        let mut ids: Vec<u64> = Vec::new();
        for (id, _, _) in &recorded {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        recorded
            .iter()
            .filter(|(id, n, _)| *id == ids[span] && n == name)
            .map(|(_, _, v)| v.clone())
            .collect()
    };
    assert_eq!(field(0, "url"), ["ws://mock.test/feed?token=***"]);
    assert_eq!(field(0, "attempt"), ["1"]);
    assert!(field(0, "outcome")[0].contains("refused"), "{recorded:?}");
    assert_eq!(field(1, "attempt"), ["2"]);
    assert_eq!(field(1, "outcome"), ["connected"]);
    assert!(!recorded
        .iter()
        .any(|(_, _, v)| v.contains("secret") || v.contains("abc")));
}

/// Every span and event, with its parent span's name and its fields as
/// text.
#[derive(Default, Clone)]
struct Tree(Arc<Mutex<Vec<Seen>>>);

#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    name: String,
    level: tracing::Level,
    parent: Option<String>,
    fields: String,
}

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S> Layer<S> for Tree
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = String::new();
        attrs.record(&mut Text(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_owned());
        self.0.lock().unwrap().push(Seen {
            kind: "span",
            name: attrs.metadata().name().to_owned(),
            level: *attrs.metadata().level(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = String::new();
        values.record(&mut Text(&mut fields));
        let name = ctx
            .span(id)
            .map(|s| s.name().to_owned())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            kind: "record",
            name,
            level: tracing::Level::TRACE,
            parent: None,
            fields,
        });
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = String::new();
        event.record(&mut Text(&mut fields));
        let parent = ctx.event_span(event).map(|s| s.name().to_owned());
        self.0.lock().unwrap().push(Seen {
            kind: "event",
            name: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            parent,
            fields,
        });
    }
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_client_span_holds_its_attempts_and_links_and_events_log_at_their_level() {
    let tree = Tree::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(tree.clone()));
    let (t, mut server) = mock();
    server.script([Outcome::Refuse]);
    let rec = Recorder::start();
    let client = ClientBuilder::new("ws://alice:secret@mock.test/feed?token=abc")
        .name("audit")
        .transport(t)
        .jitter(Jitter::None)
        .ping_interval(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(1))
        .queue_size(1)
        .overflow(actix_tether::OverflowPolicy::DropOldest)
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    // While the first attempt fails: the second message evicts the first.
    client.try_send("SECRET-payload-1").unwrap();
    client.try_send("SECRET-payload-2").unwrap();
    // Link 1 goes silent: a dead peer.
    let conn = server.accept().await.unwrap();
    conn.go_silent();
    // Link 2 is closed by the server.
    let conn = server.accept().await.unwrap();
    conn.close(1000, "");
    let _conn = server.accept().await.unwrap();
    client.close(Duration::from_secs(1)).await.unwrap();
    actix_tether::testkit::settle(Duration::from_millis(10)).await;

    let seen = tree.0.lock().unwrap().clone();
    let spans = |name: &str| -> Vec<&Seen> {
        seen.iter()
            .filter(|s| s.kind == "span" && s.name == name)
            .collect()
    };
    let clients = spans("ws_client");
    assert_eq!(clients.len(), 1, "{seen:#?}");
    assert!(
        clients[0].fields.contains("client=audit"),
        "{:?}",
        clients[0]
    );
    assert!(
        clients[0]
            .fields
            .contains("url=\"ws://mock.test/feed?token=***\""),
        "{:?}",
        clients[0]
    );
    let attempts = spans("ws_connect");
    assert_eq!(attempts.len(), 4);
    assert!(attempts
        .iter()
        .all(|s| s.parent.as_deref() == Some("ws_client")));
    let links = spans("ws_link");
    assert_eq!(links.len(), 3);
    assert!(links
        .iter()
        .all(|s| s.parent.as_deref() == Some("ws_client")));
    assert!(links[0].fields.contains("link=1"), "{:?}", links[0]);
    // Why each link ended is recorded on it.
    let reasons: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.kind == "record" && s.name == "ws_link" && s.fields.contains("reason="))
        .collect();
    assert_eq!(reasons.len(), 3, "{seen:#?}");
    assert!(reasons[0].fields.contains("no pong"), "{:?}", reasons[0]);
    assert!(reasons[1].fields.contains("code 1000"), "{:?}", reasons[1]);

    let events = |name: &str| -> Vec<&Seen> {
        seen.iter()
            .filter(|s| s.kind == "event" && s.fields.contains(&format!("event=\"{name}\"")))
            .collect()
    };
    let level =
        |name: &str| -> Vec<tracing::Level> { events(name).iter().map(|s| s.level).collect() };
    assert_eq!(level("dropped"), [tracing::Level::WARN]);
    assert!(events("dropped")[0].fields.contains("bytes=16"));
    assert_eq!(level("connected"), [tracing::Level::INFO; 3]);
    assert_eq!(level("connecting"), [tracing::Level::DEBUG; 4]);
    // A failed attempt (DEBUG), a dead peer (WARN), a server's close and
    // the application's (INFO).
    assert_eq!(
        level("disconnected"),
        [
            tracing::Level::DEBUG,
            tracing::Level::WARN,
            tracing::Level::INFO,
            tracing::Level::INFO
        ]
    );
    assert!(level("reconnecting")
        .iter()
        .all(|l| *l == tracing::Level::INFO));
    assert_eq!(level("closed"), [tracing::Level::INFO]);
    assert!(seen
        .iter()
        .filter(|s| s.kind == "event" && s.fields.contains("event="))
        .all(|s| s.parent.as_deref() == Some("ws_client")));
    // No payload, password or query value anywhere.
    for s in &seen {
        for secret in ["SECRET", "secret", "abc"] {
            assert!(!s.fields.contains(secret), "{secret} in {s:?}");
        }
    }
}
