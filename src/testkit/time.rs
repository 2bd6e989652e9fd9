//! A paused clock for actor tests.

use std::future::Future;
use std::time::Duration;

use actix_rt::{System, SystemRunner};

/// An actix `System` on a current-thread runtime whose clock starts paused.
///
/// Timers fire at exactly their deadlines: when every task is idle the clock
/// jumps to the next timer. Use it with `#[actix_rt::test(system =
/// "actix_tether::testkit::PausedSystem")]`, or through [`run_paused`].
/// Never use it around real sockets: the clock jumps while I/O is pending.
#[derive(Debug)]
pub struct PausedSystem;

impl PausedSystem {
    /// Builds the system runner.
    ///
    /// # Panics
    /// When the tokio runtime cannot be built (out of resources), as a test
    /// harness would.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> SystemRunner {
        System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap_or_else(|e| panic!("cannot build a paused tokio runtime: {e}"))
        })
    }
}

/// Runs `fut` to completion on a [`PausedSystem`].
pub fn run_paused<F: Future>(fut: F) -> F::Output {
    PausedSystem::new().block_on(fut)
}

/// Advances the paused clock by `d`, letting every actor run what became due
/// along the way and settle afterwards.
///
/// ```
/// use std::time::Duration;
/// use actix_tether::testkit::{run_paused, settle};
///
/// run_paused(async {
///     let start = actix_rt::time::Instant::now();
///     settle(Duration::from_secs(90)).await;
///     // Ninety virtual seconds, no real waiting.
///     assert_eq!(start.elapsed(), Duration::from_secs(90));
/// });
/// ```
pub async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}
