//! Drives the Autobahn client test cases through actix-tether's public API:
//! a subscriber actor echoes every message back through the client handle.
//!
//! Start a fuzzing server (see .ci/autobahn), then:
//!
//!     cargo run --release --example autobahn -- ws://127.0.0.1:9001 actix-tether
//!
//! Each case is one client with `max_retries(0)`: it connects once, echoes
//! until the server (or the client, on a protocol violation) closes, and
//! gives up; the next case follows. `AUTOBAHN_CASE=N` runs case N only.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use actix_tether::{Client, ClientBuilder, Compression, Event, Inbound, Message};
use futures::channel::oneshot;

/// Echoes inbound messages once it has the client; tells `done` when the
/// client gives up (the case is over).
struct Echo {
    client: Arc<OnceLock<Client>>,
    pending: Vec<Message>,
    first_text: Option<oneshot::Sender<String>>,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Echo {
    fn flush(&mut self) {
        if let Some(client) = self.client.get() {
            for m in self.pending.drain(..) {
                if let Err(e) = client.try_send(m) {
                    eprintln!("echo refused: {e}");
                }
            }
        }
    }
}

impl Handler<Inbound> for Echo {
    type Result = ();

    fn handle(&mut self, Inbound(msg): Inbound, _: &mut Context<Self>) {
        if let (Some(tx), Some(text)) = (self.first_text.take(), msg.as_text()) {
            let _ = tx.send(text.to_owned());
        }
        self.pending.push(msg);
        self.flush();
    }
}

/// The client handle is in the slot: echo what waited for it.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Echo {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.flush();
    }
}

impl Handler<Event> for Echo {
    type Result = ();

    fn handle(&mut self, event: Event, ctx: &mut Context<Self>) {
        if matches!(event, Event::GaveUp { .. }) {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
            // Every message of the link came before this event.
            ctx.stop();
        }
    }
}

/// Runs one session against `url`; returns the first text message received.
async fn session(url: String) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let slot = Arc::new(OnceLock::new());
    let (text_tx, text_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let echo = Echo {
        client: slot.clone(),
        pending: Vec::new(),
        first_text: Some(text_tx),
        done: Some(done_tx),
    }
    .start();
    let client = ClientBuilder::new(url)
        // permessage-deflate for 12.* and 13.*, offered so that every case
        // can negotiate: kosoku only asks a client for no context takeover
        // (13.2, 13.5, 13.6) when its offer carries
        // `client_no_context_takeover`, and it fails on an uncompressed
        // text message in a compressed session (it hashes the payload as a
        // str), so every message is compressed here (threshold 0).
        .compression(
            Compression::offer()
                .client_no_context_takeover(true)
                .threshold(0),
        )
        .no_ping()
        .max_retries(0)
        .max_message_size(64 << 20)
        .queue_size(1 << 20)
        .queue_bytes(256 << 20)
        .close_timeout(Duration::from_secs(2))
        .subscribe(echo.clone().recipient())
        .subscribe_events(echo.clone().recipient())
        .start()?;
    let _ = slot.set(client.clone());
    // Echo anything that arrived before the slot was filled.
    echo.do_send(Flush);
    let finished = actix_rt::time::timeout(Duration::from_secs(120), done_rx).await;
    let _ = client.close(Duration::from_millis(100)).await;
    if finished.is_err() {
        eprintln!("session timed out");
    }
    Ok(text_rx.await.ok())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "actix-tether".into());
    let count: u32 = session(format!("{base}/getCaseCount"))
        .await?
        .ok_or("no case count")?
        .trim()
        .parse()?;
    println!("running {count} cases as {agent}");
    let only: Option<u32> = std::env::var("AUTOBAHN_CASE")
        .ok()
        .and_then(|c| c.parse().ok());
    for case in 1..=count {
        if only.is_some_and(|o| o != case) {
            continue;
        }
        let started = std::time::Instant::now();
        session(format!("{base}/runCase?case={case}&agent={agent}")).await?;
        if started.elapsed() > Duration::from_secs(5) {
            eprintln!("case {case} took {:?}", started.elapsed());
        }
    }
    session(format!("{base}/updateReports?agent={agent}")).await?;
    println!("reports updated");
    Ok(())
}
