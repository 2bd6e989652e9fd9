//! A topic feed consumer that resubscribes after every reconnect: the
//! on-connect hook reads the subscribed keys from the shared `Topics`, so
//! the server hears `subscribe` again before anything else on each link.
//!
//!     cargo run --example topic_feed --features demo,typed
//!
//! With a URL, it consumes that feed instead: `-- ws://127.0.0.1:9001/ 20`
//! (the second argument is how many seconds to run).

use std::time::Duration;

use actix::prelude::*;
use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::typed::{Routed, Topics, TypedClient};
use actix_tether::{ClientBuilder, Event, Message};
use serde_json::json;

/// Prints each message of its topic, and the reconnects.
struct Ticker {
    received: u32,
}

impl Actor for Ticker {
    type Context = Context<Self>;
}

impl Handler<Routed> for Ticker {
    type Result = ();

    fn handle(&mut self, msg: Routed, _: &mut Context<Self>) {
        self.received += 1;
        println!("[{}] {}", msg.key.unwrap_or_default(), msg.value);
    }
}

impl Handler<Event> for Ticker {
    type Result = ();

    fn handle(&mut self, event: Event, _: &mut Context<Self>) {
        if let Event::Connected { attempt, .. } = event {
            println!("-- connected (attempt {attempt}); resubscribed");
        }
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (url, demo) = match args.next() {
        Some(url) => (url, None),
        None => {
            let demo = DemoServer::start(DemoConfig::default())?;
            (demo.url(), Some(demo))
        }
    };
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);

    let topics = Topics::new();
    let resubscribe = topics.clone();
    let ticker = Ticker { received: 0 }.start();
    let client = ClientBuilder::new(url)
        .backoff_initial(Duration::from_millis(100))
        .on_connect(move |_| {
            resubscribe
                .keys()
                .into_iter()
                .map(|channel| {
                    Message::from(json!({"op": "subscribe", "channel": channel}).to_string())
                })
                .collect()
        })
        .subscribe_events(ticker.clone().recipient())
        .start()?;
    let feed = TypedClient::builder()
        .route_by("/channel")
        .topics(topics)
        .start(&client);
    feed.subscribe_topic("ticks", ticker.recipient());
    // The first link may already be up: subscribe on it too.
    feed.send_json(&json!({"op": "subscribe", "channel": "ticks"}))
        .await?;

    actix_rt::time::sleep(Duration::from_secs(seconds)).await;
    client.close(Duration::from_secs(2)).await?;
    if let Some(demo) = demo {
        demo.stop().await;
    }
    Ok(())
}
