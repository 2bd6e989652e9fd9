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
