//! Testing actors that use actix-tether: a mock transport with a server-side
//! handle, a paused clock, an event recorder, and a probe for actors that
//! read `client.stream()` (feature `testkit`).
//!
//! ```
//! use std::time::Duration;
//! use actix_tether::testkit::{mock, run_paused, Outcome, Recorder};
//! use actix_tether::{ClientBuilder, Event, Jitter};
//!
//! run_paused(async {
//!     let (transport, mut server) = mock();
//!     server.script([Outcome::Refuse]);
//!     let recorder = Recorder::start();
//!     let client = ClientBuilder::new("ws://feed.test/")
//!         .transport(transport)
//!         .jitter(Jitter::None)
//!         .backoff_initial(Duration::from_millis(100))
//!         .subscribe(recorder.inbound())
//!         .subscribe_events(recorder.events())
//!         .start()
//!         .unwrap();
//!     // The first attempt is refused; the retry 100 ms later is accepted.
//!     let mut conn = server.accept().await.unwrap();
//!     conn.send_text("tick");
//!     recorder.wait_for_text("tick", Duration::from_secs(1)).await.unwrap();
//!     client.send("order").await.unwrap();
//!     assert_eq!(conn.next_text().await.as_deref(), Some("order"));
//!     let connected = recorder
//!         .wait_for(|e| matches!(e, Event::Connected { .. }), Duration::ZERO)
//!         .await
//!         .unwrap();
//!     assert_eq!(connected.at, recorder.start_time() + Duration::from_millis(100));
//! });
//! ```

mod mock;
mod probe;
mod proxy;
mod recorder;
mod time;

pub use mock::{mock, MockConn, MockServer, MockTransport, Outcome, WAIT_LIMIT};
pub use probe::{probe, Probe, Probed};
pub use proxy::{Fault, FaultProxy};
pub use recorder::{Recorder, Stamped};
pub use time::{run_paused, settle, PausedSystem};
