//! How to test your own actor against a feed, without a network and without
//! sleeping: the mock transport plays the server, the paused clock makes
//! every delay exact, and the recorder lets the test wait for events.
//!
//! The actor under test, `Trader`, keeps the last price of a ticker, stops
//! trading while the link is down, and relies on the client's setup lane to
//! resubscribe after every reconnect.
//!
//!     cargo test --example testing_your_actor --features testkit
//!     cargo run  --example testing_your_actor --features testkit

use std::time::Duration;

use actix::prelude::*;
use actix_tether::{ClientBuilder, Event, Inbound, Message};

/// The user's actor: prices in, a trading switch that follows the link.
#[derive(Default)]
struct Trader {
    last_price: Option<f64>,
    trading: bool,
    pauses: u32,
}

impl Actor for Trader {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Trader {
    type Result = ();

    fn handle(&mut self, Inbound(msg): Inbound, _: &mut Context<Self>) {
        if let Some(price) = msg.as_text().and_then(|t| t.strip_prefix("price ")) {
            self.last_price = price.parse().ok();
        }
    }
}

impl Handler<Event> for Trader {
    type Result = ();

    fn handle(&mut self, event: Event, _: &mut Context<Self>) {
        match event {
            Event::Connected { .. } => self.trading = true,
            Event::Disconnected { .. } => {
                self.trading = false;
                self.pauses += 1;
            }
            _ => {}
        }
    }
}

/// A question the test asks the actor.
#[derive(Message)]
#[rtype(result = "(Option<f64>, bool, u32)")]
struct Report;

impl Handler<Report> for Trader {
    type Result = MessageResult<Report>;

    fn handle(&mut self, _: Report, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.last_price, self.trading, self.pauses))
    }
}

/// The client as the application builds it: subscribe on every connect.
fn client_for(trader: &Addr<Trader>, builder: ClientBuilder) -> ClientBuilder {
    builder
        .on_connect(|_| vec![Message::from("subscribe BTC-USD")])
        .subscribe(trader.clone().recipient())
        .subscribe_events(trader.clone().recipient())
}

/// The scenario: a price arrives, the link drops, the trader pauses, the
/// client reconnects after exactly the backoff delay and resubscribes, the
/// trader resumes with the next price.
async fn scenario() -> Result<(), String> {
    use actix_tether::testkit::{mock, Recorder};
    use actix_tether::Jitter;

    let (transport, mut server) = mock();
    let trader = Trader::default().start();
    let recorder = Recorder::start();
    let builder = ClientBuilder::new("wss://exchange.test/ws")
        .transport(transport)
        .jitter(Jitter::None)
        .backoff_initial(Duration::from_millis(250))
        .subscribe(recorder.inbound())
        .subscribe_events(recorder.events());
    let _client = client_for(&trader, builder)
        .start()
        .map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(5);

    let mut first = server.accept().await.ok_or("no first connection")?;
    check(
        first.next_text().await.as_deref() == Some("subscribe BTC-USD"),
        "subscribed",
    )?;
    first.send_text("price 64000.5");
    let connected = recorder
        .wait_for(|e| matches!(e, Event::Connected { .. }), limit)
        .await
        .ok_or("never connected")?;
    // Once the recorder has the price, the trader's copy is in its mailbox
    // ahead of the report request.
    recorder
        .wait_for_text("price 64000.5", limit)
        .await
        .ok_or("price not delivered")?;
    let report = trader.send(Report).await.map_err(|e| e.to_string())?;
    check(
        report == (Some(64000.5), true, 0),
        "trading on the first price",
    )?;

    first.drop_link();
    let down = recorder
        .wait_for(|e| matches!(e, Event::Disconnected { .. }), limit)
        .await
        .ok_or("never saw the drop")?;
    let report = trader.send(Report).await.map_err(|e| e.to_string())?;
    check(!report.1 && report.2 == 1, "paused while the link is down")?;

    let mut second = server.accept().await.ok_or("no reconnect")?;
    let back = recorder
        .wait_for(|e| matches!(e, Event::Connected { .. }), limit)
        .await
        .ok_or("never reconnected")?;
    check(
        back.at - down.at == Duration::from_millis(250),
        "exact backoff",
    )?;
    check(back.at > connected.at, "events in order")?;
    check(
        second.next_text().await.as_deref() == Some("subscribe BTC-USD"),
        "resubscribed",
    )?;
    second.send_text("price 64100");
    recorder
        .wait_for_text("price 64100", limit)
        .await
        .ok_or("second price not delivered")?;
    let report = trader.send(Report).await.map_err(|e| e.to_string())?;
    check(
        report == (Some(64100.0), true, 1),
        "trading again on the new price",
    )
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("failed: {what}"))
    }
}

fn main() {
    match actix_tether::testkit::run_paused(scenario()) {
        Ok(()) => println!("the trader pauses on disconnect and resubscribes after reconnect"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
    async fn trader_pauses_and_resubscribes() {
        assert_eq!(super::scenario().await, Ok(()));
    }
}
