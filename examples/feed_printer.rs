//! An actor that subscribes to a feed and prints what it receives.
//!
//! Without arguments it starts the embedded demo feed on 127.0.0.1 and
//! watches it drop and reconnect for ten seconds:
//!
//!     cargo run --example feed_printer --features demo
//!
//! With a URL it prints that feed instead: `-- ws://127.0.0.1:9001/feed 30`
//! (the second argument is how many seconds to run).

use std::time::Duration;

use actix::prelude::*;
use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::engine::ErrorChain;
use actix_tether::{ClientBuilder, Event, Inbound, Message};

/// Prints every message and every state change.
struct FeedPrinter {
    received: usize,
}

impl Actor for FeedPrinter {
    type Context = Context<Self>;
}

impl Handler<Inbound> for FeedPrinter {
    type Result = ();

    fn handle(&mut self, Inbound(msg): Inbound, _: &mut Context<Self>) {
        self.received += 1;
        match msg {
            Message::Text(t) => println!("#{:<4} {t}", self.received),
            Message::Binary(b) => println!("#{:<4} <{} bytes>", self.received, b.len()),
        }
    }
}

impl Handler<Event> for FeedPrinter {
    type Result = ();

    fn handle(&mut self, event: Event, _: &mut Context<Self>) {
        match event {
            Event::Connected { attempt, .. } => println!("-- connected (attempt {attempt})"),
            Event::Disconnected { reason, will_retry } => {
                println!(
                    "-- disconnected: {} (retry: {will_retry})",
                    ErrorChain(&reason)
                )
            }
            Event::Reconnecting { delay, .. } => println!("-- reconnecting in {delay:?}"),
            other => println!("-- {}", other.name()),
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
    let seconds = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10u64);

    let printer = FeedPrinter { received: 0 }.start();
    let client = ClientBuilder::new(url)
        .backoff_initial(Duration::from_millis(200))
        .ping_interval(Duration::from_secs(1))
        .subscribe(printer.clone().recipient())
        .subscribe_events(printer.recipient())
        .start()?;

    actix_rt::time::sleep(Duration::from_secs(seconds)).await;
    let stats = client.stats().await?;
    println!(
        "-- {} messages in, {} reconnects, last RTT {:?}",
        stats.messages_in, stats.reconnects, stats.last_rtt
    );
    client.close(Duration::from_secs(2)).await?;
    if let Some(demo) = demo {
        demo.stop().await;
    }
    Ok(())
}
