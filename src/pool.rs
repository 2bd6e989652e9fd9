//! Arbiters to spread many clients over the cores.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use actix::{Arbiter, ArbiterHandle};
use actix_tether_actors::{Client, ConfigError, Undelivered, WeakClient};

use crate::builder::ClientBuilder;

/// A set of arbiters (event-loop threads) that clients are started on in
/// turn, each client's actors all on one arbiter: many feeds use many cores
/// while each client keeps its single-threaded actors.
///
/// ```no_run
/// use actix_tether::{ClientBuilder, Pool};
///
/// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::per_core()?;
/// let mut feeds = Vec::new();
/// for symbol in ["btc", "eth", "sol", "ada"] {
///     let url = format!("ws://127.0.0.1:9001/{symbol}");
///     feeds.push(pool.start(ClientBuilder::new(url))?);
/// }
/// # Ok(()) }
/// ```
///
/// Dropping the pool stops its arbiters: the clients on them stop at once,
/// without a close handshake, so close them first ([`Pool::close`] closes
/// every client the pool started).
pub struct Pool {
    arbiters: Vec<Arbiter>,
    next: AtomicUsize,
    /// The clients started here, for `close`; those whose handles are all
    /// gone are swept out as clients start, so this holds about as many as
    /// the application keeps.
    clients: Mutex<Vec<WeakClient>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("arbiters", &self.arbiters.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `arbiters` new arbiters (at least one). Must be called
    /// inside a running actix `System`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for zero arbiters, [`ConfigError::NoSystem`]
    /// outside a running actix `System`.
    pub fn new(arbiters: usize) -> Result<Self, ConfigError> {
        if arbiters == 0 {
            return Err(ConfigError::Invalid {
                setting: "arbiters",
                requirement: "must be at least 1",
            });
        }
        // `Arbiter::new` panics outside a System.
        if actix_rt::System::try_current().is_none() {
            return Err(ConfigError::NoSystem);
        }
        Ok(Self {
            arbiters: (0..arbiters).map(|_| Arbiter::new()).collect(),
            next: AtomicUsize::new(0),
            clients: Mutex::new(Vec::new()),
        })
    }

    /// A pool with one arbiter per core the process may use.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoSystem`] outside a running actix `System`.
    pub fn per_core() -> Result<Self, ConfigError> {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Starts `builder`'s client on the next arbiter in turn (see
    /// [`ClientBuilder::start_on`]).
    ///
    /// The client's actors run on another thread and may begin before this
    /// returns: a stream or subscription made with the returned handle may
    /// miss the first messages. Subscribe with the builder, or make streams
    /// in [`ClientBuilder::on_start`], to receive everything from the first
    /// link on.
    ///
    /// # Errors
    ///
    /// The first invalid setting of `builder` ([`ConfigError`]), or
    /// [`ConfigError::ArbiterStopped`].
    pub fn start(&self, builder: ClientBuilder) -> Result<Client, ConfigError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        let client = builder.start_on(&self.arbiters[i].handle())?;
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.retain(|c| c.upgrade().is_some());
        clients.push(client.downgrade());
        Ok(client)
    }

    /// Closes every client this pool started that is still open, all at
    /// once, each as [`Client::close`] does within `timeout`: what is
    /// queued is delivered, the links close with 1000. Returns what each
    /// could not deliver, in the order the clients were started (clients
    /// already closed, or whose handles were all dropped, are left out).
    /// The arbiters keep running: the pool can start clients again.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops waiting; the clients go on closing.
    pub async fn close(&self, timeout: Duration) -> Vec<Undelivered> {
        let clients: Vec<Client> = {
            let mut weak = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut *weak)
                .iter()
                .filter_map(WeakClient::upgrade)
                .collect()
        };
        let closing = clients.iter().map(|c| c.close(timeout));
        futures::future::join_all(closing)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// The pool's arbiters, to start other actors beside the clients.
    pub fn arbiters(&self) -> Vec<ArbiterHandle> {
        self.arbiters.iter().map(Arbiter::handle).collect()
    }

    /// How many arbiters the pool has.
    pub fn len(&self) -> usize {
        self.arbiters.len()
    }

    /// Always false: a pool has at least one arbiter.
    pub fn is_empty(&self) -> bool {
        self.arbiters.is_empty()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
