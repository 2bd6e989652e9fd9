//! A subscriber actor on an exchange-style feed: a login on every link, a
//! ready gate that holds orders until the login is accepted, links rotated
//! before the server's 24-hour-style cut (here two seconds), duplicates of
//! the rotation overlap dropped by sequence number, and a fallback endpoint
//! that takes over when the primary goes away.
//!
//! It starts two embedded demo servers in exchange mode on 127.0.0.1 (a
//! primary and a fallback), stops the primary after four seconds, and runs
//! for about seven:
//!
//!     cargo run --example exchange_feed --features demo

use std::time::Duration;

use actix::prelude::*;
use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::{ClientBuilder, Event, Inbound, Message};

/// The feed's sequence number, if `m` is a feed message.
fn seq(m: &Message) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(m.as_text()?).ok()?;
    v["seq"].as_u64()
}

/// Follows the feed: counts messages and gaps in the numbering, and prints
/// what the client does.
#[derive(Default)]
struct Book {
    messages: u64,
    last: Option<u64>,
    gaps: u64,
}

impl Actor for Book {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Book {
    type Result = ();

    fn handle(&mut self, Inbound(m): Inbound, _: &mut Context<Self>) {
        let Some(n) = seq(&m) else {
            println!("server: {}", m.as_text().unwrap_or("(binary)"));
            return;
        };
        self.messages += 1;
        match self.last {
            // Each server numbers its own feed: a fallback starts elsewhere.
            Some(last) if n > last + 1 && n - last < 1000 => self.gaps += n - last - 1,
            _ => {}
        }
        self.last = Some(n);
    }
}

impl Handler<Event> for Book {
    type Result = ();

    fn handle(&mut self, event: Event, _: &mut Context<Self>) {
        match event {
            Event::Connected { url, endpoint, .. } => {
                println!("connected to endpoint {endpoint} ({url})");
                // A new server's numbering is not a gap.
                self.last = None;
            }
            Event::Rotating { reason, age } => {
                println!("rotating ({}) after {} ms", reason.name(), age.as_millis());
            }
            Event::Rotated { age, .. } => {
                println!("rotated: old link closed after {} ms", age.as_millis());
            }
            Event::Disconnected { reason, .. } => println!("disconnected: {reason}"),
            Event::Closed { unsent, .. } => {
                println!(
                    "closed with {unsent} unsent; {} feed messages, gaps: {}",
                    self.messages, self.gaps
                );
            }
            _ => {}
        }
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Both servers cut every connection at two seconds, as an exchange cuts
    // at 24 hours; the client rotates first.
    let exchange = DemoConfig::exchange(Duration::from_millis(50), Duration::from_secs(2));
    let primary = DemoServer::start(exchange)?;
    let fallback = DemoServer::start(exchange)?;
    let book = Book::default().start();
    let client = ClientBuilder::new(primary.url())
        .fallback(fallback.url())
        .failover_after(1)
        .backoff_initial(Duration::from_millis(100))
        // The setup lane: the login goes first on every link...
        .on_connect(|_| vec![Message::from(r#"{"op":"login","token":"demo"}"#)])
        // ...and the orders wait until the server has accepted it.
        .ready_gate(|m| m.as_text().is_some_and(|t| t.contains(r#""status":"ok""#)))
        .max_connection_age(Duration::from_millis(1500))
        .age_jitter(0.2)
        .dedup_key(seq)
        // An order written into a link that then died is written again.
        .replay_unconfirmed(true)
        .subscribe(book.clone().recipient())
        .subscribe_events(book.recipient())
        .start()?;
    client.send(r#"{"op":"order","id":1}"#).await?;

    actix_rt::time::sleep(Duration::from_secs(4)).await;
    println!("stopping the primary");
    primary.stop().await;
    client.send(r#"{"op":"order","id":2}"#).await?;
    actix_rt::time::sleep(Duration::from_secs(3)).await;

    let stats = client.stats().await?;
    println!(
        "rotations: {}, duplicates dropped: {}, on endpoint {:?}",
        stats.rotations, stats.duplicates_dropped, stats.endpoint
    );
    client.close(Duration::from_secs(2)).await?;
    // Let the actor print the last event.
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    fallback.stop().await;
    Ok(())
}
