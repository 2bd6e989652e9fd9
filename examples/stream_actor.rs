//! An actor subscribed from its own context (`subscribe_context`: its
//! `Handler<Inbound>` once per message, the actor woken once per socket
//! read), answering through the handle; and the async side of the API:
//! `connected().await`, `state()`, and the events as a stream.
//!
//! It starts the embedded demo feed on 127.0.0.1 (which drops every
//! connection after four seconds) and runs for about six seconds:
//!
//!     cargo run --example stream_actor --features demo

use std::time::Duration;

use actix::prelude::*;
use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::{ClientBuilder, Event, Inbound, WeakClient};
use futures::StreamExt;

/// Counts the demo's ticks and thanks the server for every fourth one.
struct Ticker {
    /// Weak: the actor must not keep the client alive after `main` is done.
    client: WeakClient,
    ticks: u64,
}

impl Actor for Ticker {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Ticker {
    type Result = ();

    fn handle(&mut self, Inbound(msg): Inbound, _: &mut Context<Self>) {
        let Some(text) = msg.as_text() else {
            return;
        };
        if text.starts_with("echo: ") {
            println!("server: {text}");
            return;
        }
        self.ticks += 1;
        if self.ticks % 4 == 0 {
            if let Some(client) = self.client.upgrade() {
                // Queued while the link is down, written after the reconnect.
                let _ = client.try_send(format!("thanks for tick {}", self.ticks));
            }
        }
    }
}

/// The subscription ends when the client closes; the actor keeps running
/// until it stops itself.
impl Handler<Event> for Ticker {
    type Result = ();

    fn handle(&mut self, event: Event, ctx: &mut Context<Self>) {
        if let Event::Closed { .. } = event {
            println!("ticker: {} ticks, client closed", self.ticks);
            ctx.stop();
        }
    }
}

/// How many ticks the actor has counted.
#[derive(actix::Message)]
#[rtype(result = "u64")]
struct Ticks;

impl Handler<Ticks> for Ticker {
    type Result = u64;

    fn handle(&mut self, _: Ticks, _: &mut Context<Self>) -> u64 {
        self.ticks
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = DemoServer::start(DemoConfig::default())?;
    // `on_start` runs on the client's arbiter; the actor's address comes
    // back through a channel (an `Addr` is `Send`).
    let (addr_tx, addr_rx) = futures::channel::oneshot::channel();
    let client = ClientBuilder::new(demo.url())
        .backoff_initial(Duration::from_millis(200))
        // The handle, before the first attempt: the actor made here gets
        // every message from the first link on.
        .on_start(move |client| {
            let weak = client.downgrade();
            let ticker = Ticker::create(|ctx| {
                client.subscribe_context(ctx);
                Ticker {
                    client: weak,
                    ticks: 0,
                }
            });
            client.subscribe_events(ticker.clone().recipient());
            let _ = addr_tx.send(ticker);
        })
        .start()?;
    let ticker = addr_rx.await?;
    let mut events = client.events();

    client.connected().await?;
    println!("up: state is {:?}", client.state());

    let run = actix_rt::time::sleep(Duration::from_secs(6));
    tokio::pin!(run);
    loop {
        tokio::select! {
            () = &mut run => break,
            Some(event) = events.next() => match event {
                Event::Connected { attempt, .. } => println!("event: connected (attempt {attempt})"),
                other => println!("event: {}", other.name()),
            },
        }
    }
    println!("ticker counted {} ticks", ticker.send(Ticks).await?);
    let unsent = client.close(Duration::from_secs(2)).await?;
    println!("closed with {} unsent", unsent.len());
    // The actor sees the client close; give it a turn to say so.
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    demo.stop().await;
    Ok(())
}
