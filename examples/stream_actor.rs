//! An actor that holds the client and reads its messages as a stream
//! (`ctx.add_stream`), answering through the handle; and the async side of
//! the API: `connected().await`, `state()`, and the events as a stream.
//!
//! It starts the embedded demo feed on 127.0.0.1 (which drops every
//! connection after four seconds) and runs for about six seconds:
//!
//!     cargo run --example stream_actor --features demo

use std::time::Duration;

use actix::prelude::*;
use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::{ClientBuilder, Event, Message, WeakClient};
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

impl StreamHandler<Message> for Ticker {
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) {
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

    /// The stream ends once the client has closed. (actix's default
    /// `finished` stops the actor; this one says so first.)
    fn finished(&mut self, ctx: &mut Context<Self>) {
        println!("ticker: {} ticks, stream ended", self.ticks);
        ctx.stop();
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
            let messages = client.stream();
            let client = client.downgrade();
            let ticker = Ticker::create(move |ctx| {
                ctx.add_stream(messages);
                Ticker { client, ticks: 0 }
            });
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
    // The actor sees its stream end; give it a turn to say so.
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    demo.stop().await;
    Ok(())
}
