//! Deterministic simulation: one seed gives one configuration and one
//! schedule of server faults and client calls, run on the mock transport and
//! a paused clock; after every run the client's promises are checked.
//!
//! - `SIM_SEEDS=N` runs seeds `0..N` (default 2000), after the regression
//!   seeds in [`REGRESSIONS`];
//! - `SIM_SEED=n` runs seed `n` alone and prints its schedule and trace.
//!
//! Each seed turns features on and off (swarm testing: replay, a ready
//! gate, a dedup key, a maximum age, a fallback endpoint, a reconnect
//! budget, a tiny queue and read-ahead, every overflow policy, heartbeats),
//! then mixes, at random virtual times, what a server does (accept, refuse,
//! 503 with Retry-After, never answer, drop, close with assorted codes, go
//! silent, stop or slow reading, numbered data of every size, fragments,
//! ping floods, the gate message late or never) and what an application
//! does (`try_send`, `send` futures dropped half-way, `rotate`, `pause`,
//! `resume`, `reconnect_now`, `confirmed`, streams never polled, `close`).
//! The same seed gives the same run: the first seeds are run twice and their
//! traces compared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use actix_tether::testkit::{mock, run_paused, settle, MockConn, MockServer, Outcome, Recorder};
use actix_tether::{
    ClientBuilder, ConnectErrorKind, DisconnectReason, Event, Jitter, Message, MessageStream,
    OverflowPolicy, Receipt, ReconnectBudget, State, Unconfirmed,
};
use bytes::Bytes;
use futures::FutureExt;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::time::Instant;

/// Seeds that once failed: they run first, every time.
///
/// - 1097: a rotation began while a pause was closing the link, and its new
///   link's books replaced the old link's: a later Pong confirmed a message
///   the server never read (rotations wait for the pause; the books settle
///   a link still held before taking the next).
/// - 2616: closing while a paused link's close was under way did not hand
///   back that link's unconfirmed tail (its writer had broken, so the queue
///   never ended it).
/// - 3991, 7872: a `confirmed()` call made after a hook's panic ended the
///   client waited forever (the queue still answered, the books were
///   closed): a wait on closed books now fails at once with `Closed`.
const REGRESSIONS: &[u64] = &[1097, 2616, 3991, 7872];

/// How many seeds are run twice to check that a seed replays exactly.
const REPLAYED: u64 = 50;

// ---------------------------------------------------------------- randomness

/// splitmix64: small, fast, and the same on every platform and version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ------------------------------------------------------------- configuration

const FATAL: u16 = 4999;

/// What one seed turns on.
#[derive(Debug, Clone)]
struct Setup {
    replay: bool,
    gate: bool,
    dedup: bool,
    max_age: Option<Duration>,
    fallback: bool,
    failover_after: u32,
    budget: bool,
    read_ahead: Option<usize>,
    queue_size: Option<usize>,
    overflow: OverflowPolicy,
    ping: Option<(Duration, Duration)>,
    fatal_code: bool,
    /// A subscriber that gets stuck on its first message.
    stuck: bool,
    /// A subscriber that stops after a few messages, or panics in its
    /// handler (the application's bug, which must not take the client
    /// down).
    quitter: Option<Quit>,
    /// The stuck subscriber and the quitter subscribe from their contexts
    /// (`subscribe_context`) instead of with a recipient.
    in_context: bool,
    /// An actor subscribed from its context records what it handles: the
    /// same messages, in the same order, as the recorder's recipient.
    observer: bool,
    /// The dedup key hook panics on a "boom" message (the application's
    /// bug): the client ends, and what it held must still be accounted for.
    hook_panics: bool,
    steps: usize,
}

impl Setup {
    fn pick(rng: &mut Rng) -> Self {
        Setup {
            replay: rng.chance(50),
            gate: rng.chance(30),
            dedup: rng.chance(40),
            max_age: rng.chance(35).then(|| rng.ms(500, 8000)),
            fallback: rng.chance(30),
            failover_after: 1 + rng.below(3) as u32,
            budget: rng.chance(20),
            read_ahead: rng.chance(30).then(|| rng.pick(&[1usize, 64, 1024, 4096])),
            queue_size: rng.chance(40).then(|| rng.pick(&[1usize, 2, 8, 64])),
            overflow: rng.pick(&[
                OverflowPolicy::Reject,
                OverflowPolicy::DropOldest,
                OverflowPolicy::Wait,
            ]),
            ping: rng
                .chance(60)
                .then(|| (rng.ms(200, 3000), rng.ms(200, 3000))),
            fatal_code: rng.chance(20),
            stuck: rng.chance(15),
            quitter: match rng.below(10) {
                0 => Some(Quit::Stop(rng.below(5) as usize)),
                1 => Some(Quit::Panic(rng.below(5) as usize)),
                _ => None,
            },
            hook_panics: rng.chance(5),
            in_context: rng.chance(50),
            observer: rng.chance(50),
            steps: 10 + rng.below(50) as usize,
        }
    }

    fn builder(
        &self,
        seed: u64,
        transport: actix_tether::testkit::MockTransport,
        rec: &Recorder,
        observed: &Observed,
    ) -> ClientBuilder {
        // Every random choice the client makes (age jitter) comes from the
        // seed too.
        let mut random = Rng(seed ^ 0x5EED);
        let mut b = ClientBuilder::new("ws://primary.sim/feed")
            .random(move || (random.next() >> 11) as f64 / (1u64 << 53) as f64)
            .transport(transport)
            .jitter(Jitter::None)
            .backoff_initial(Duration::from_millis(100))
            .backoff_max(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(2))
            .no_max_retries()
            .replay_unconfirmed(self.replay)
            .overflow(self.overflow)
            .subscribe(rec.inbound())
            .subscribe_events(rec.events());
        if self.gate {
            b = b
                .ready_gate(|m| m.as_text() == Some("ready"))
                .ready_timeout(Duration::from_secs(3));
        }
        if self.hook_panics {
            b = b.dedup_key(|m| {
                if m.as_text() == Some("boom") {
                    std::panic::panic_any(PLANNED_PANIC);
                }
                m.as_text().and_then(feed_number)
            });
        } else if self.dedup {
            b = b.dedup_key(|m| m.as_text().and_then(feed_number));
        }
        if let Some(age) = self.max_age {
            b = b.max_connection_age(age);
        }
        if self.fallback {
            b = b
                .fallback("ws://fallback.sim/feed")
                .failover_after(self.failover_after)
                .return_to_primary(Duration::from_secs(5));
        }
        if self.budget {
            b = b.reconnect_budget(ReconnectBudget::new(5.0, 2).unwrap());
        }
        if let Some(n) = self.read_ahead {
            b = b.read_ahead(n);
        }
        if let Some(n) = self.queue_size {
            b = b.queue_size(n);
        }
        b = match self.ping {
            Some((every, within)) => b.ping_interval(every).pong_timeout(within),
            None => b.no_ping(),
        };
        if self.fatal_code {
            b = b.fatal_close_codes([FATAL]);
        }
        let (stuck, quitter, observer) = (self.stuck, self.quitter, self.observer);
        if self.in_context {
            let observed = observed.clone();
            // Made before the first attempt: they miss nothing.
            b = b.on_start(move |client| {
                if stuck {
                    start_in_context(client, support::mock::Stuck);
                }
                if let Some(quit) = quitter {
                    start_in_context(client, Quitter(quit));
                }
                if observer {
                    start_in_context(client, Observer(observed));
                }
            });
        } else {
            if stuck {
                b = b.subscribe(actix::Actor::start(support::mock::Stuck).recipient());
            }
            if let Some(quit) = quitter {
                b = b.subscribe(actix::Actor::start(Quitter(quit)).recipient());
            }
            if observer {
                let observed = observed.clone();
                b = b.on_start(move |client| {
                    start_in_context(client, Observer(observed));
                });
            }
        }
        b
    }
}

/// The number of a broadcast feed message, `f<n>`.
fn feed_number(text: &str) -> Option<u64> {
    text.strip_prefix('f')?.parse().ok()
}

// ------------------------------------------------------------------ schedule

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Let virtual time pass.
    Wait(Duration),
    /// The next attempts' outcomes.
    Script(Attempt),
    /// A feed message broadcast on every live connection.
    Feed,
    /// A message on one connection only (a reply), of a given size.
    Unique(usize, Size),
    Fragmented(usize),
    /// A thousand empty messages at once.
    Flood(usize),
    PingFlood(usize, u16),
    Gate(usize),
    /// The message the dedup key hook panics on.
    Boom(usize),
    Drop(usize),
    CloseWith(usize, u16),
    Silent(usize),
    StopReading(usize),
    ResumeReading(usize),
    ReadSlowly(usize, Duration),
    TrySend(Size),
    /// `send` with a deadline: a future dropped half-way when it expires.
    Send(Duration),
    Burst(u16),
    Rotate,
    Pause,
    Resume,
    ReconnectNow,
    Confirmed,
    /// `connected()` with no deadline: it must resolve or fail by the end.
    Connected,
    Stream,
    DropStream,
}

#[derive(Debug, Clone, Copy)]
enum Attempt {
    Refuse,
    Unavailable(u64),
    Timeout,
    Slow(Duration),
}

#[derive(Debug, Clone, Copy)]
enum Size {
    Empty,
    Small,
    Large,
}

impl Step {
    fn pick(rng: &mut Rng, setup: &Setup) -> Self {
        let conn = rng.below(4) as usize;
        let size = rng.pick(&[Size::Empty, Size::Small, Size::Small, Size::Large]);
        match rng.below(100) {
            0..=14 => Step::Wait(rng.ms(0, 3000)),
            15..=19 => Step::Script(match rng.below(4) {
                0 => Attempt::Refuse,
                1 => Attempt::Unavailable(rng.below(3)),
                2 => Attempt::Timeout,
                _ => Attempt::Slow(rng.ms(10, 1500)),
            }),
            20..=31 => Step::Feed,
            32..=35 => Step::Unique(conn, size),
            36 => Step::Fragmented(conn),
            37 => Step::Flood(conn),
            38..=39 => Step::PingFlood(conn, 1 + rng.below(300) as u16),
            40 if setup.hook_panics => Step::Boom(conn),
            40..=41 => Step::Gate(conn),
            42..=44 => Step::Drop(conn),
            45..=47 => Step::CloseWith(
                conn,
                if setup.fatal_code && rng.chance(20) {
                    FATAL
                } else {
                    rng.pick(&[1000, 1001, 1011, 4000, 4001])
                },
            ),
            48 => Step::Silent(conn),
            49..=50 => Step::StopReading(conn),
            51..=52 => Step::ResumeReading(conn),
            53 => Step::ReadSlowly(conn, rng.ms(1, 200)),
            54..=67 => Step::TrySend(size),
            68..=71 => Step::Send(rng.ms(0, 500)),
            72..=74 => Step::Burst(1 + rng.below(40) as u16),
            75..=78 => Step::Rotate,
            79..=81 => Step::Pause,
            82..=85 => Step::Resume,
            86..=88 => Step::ReconnectNow,
            89..=91 => Step::Confirmed,
            92 => Step::Connected,
            93..=95 => Step::Stream,
            _ => Step::DropStream,
        }
    }
}

fn payload(size: Size, tag: &str) -> String {
    match size {
        Size::Empty => String::new(),
        Size::Small => tag.to_owned(),
        Size::Large => format!("{tag}{}", "x".repeat(3000)),
    }
}

// ------------------------------------------------------------ subscribers

/// How a subscriber leaves.
#[derive(Debug, Clone, Copy)]
enum Quit {
    /// Stops its actor after this many messages.
    Stop(usize),
    /// Panics in its handler after this many messages.
    Panic(usize),
}

/// A subscriber that leaves after a few messages.
struct Quitter(Quit);

/// What a subscriber that panics on purpose says: not the client's panic.
const PLANNED_PANIC: &str = "sim: a subscriber's own bug";

impl actix::Actor for Quitter {
    type Context = actix::Context<Self>;
}

impl actix::Handler<actix_tether::Inbound> for Quitter {
    type Result = ();

    fn handle(&mut self, _: actix_tether::Inbound, ctx: &mut actix::Context<Self>) {
        match &mut self.0 {
            Quit::Stop(0) => actix::ActorContext::stop(ctx),
            Quit::Panic(0) => std::panic::panic_any(PLANNED_PANIC),
            Quit::Stop(n) | Quit::Panic(n) => *n -= 1,
        }
    }
}

/// What the observer handled, in order.
type Observed = std::sync::Arc<Mutex<Vec<Message>>>;

/// Records every message it handles.
struct Observer(Observed);

impl actix::Actor for Observer {
    type Context = actix::Context<Self>;
}

impl actix::Handler<actix_tether::Inbound> for Observer {
    type Result = ();

    fn handle(&mut self, m: actix_tether::Inbound, _: &mut actix::Context<Self>) {
        if let Ok(mut log) = self.0.lock() {
            log.push(m.0);
        }
    }
}

/// Starts `actor` on the current arbiter, subscribed from its context.
fn start_in_context<A>(client: &actix_tether::Client, actor: A)
where
    A: actix::Actor<Context = actix::Context<A>> + actix::Handler<actix_tether::Inbound>,
{
    let client = client.clone();
    A::create(move |ctx| {
        client.subscribe_context(ctx);
        actor
    });
}

// ------------------------------------------------------------------ panics

static HOOK: Once = Once::new();
static PANICKED: AtomicBool = AtomicBool::new(false);
static PANIC_TEXT: Mutex<String> = Mutex::new(String::new());

/// A panic anywhere (an actor's handler included, which the runtime would
/// otherwise swallow) fails the run that caused it.
fn watch_panics() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() == Some(&PLANNED_PANIC) {
                return;
            }
            PANICKED.store(true, Ordering::SeqCst);
            if let Ok(mut t) = PANIC_TEXT.lock() {
                *t = info.to_string();
            }
            default(info);
        }));
    });
}

fn take_panic() -> Option<String> {
    if PANICKED.swap(false, Ordering::SeqCst) {
        Some(PANIC_TEXT.lock().map(|t| t.clone()).unwrap_or_default())
    } else {
        None
    }
}

// ------------------------------------------------------------------- world

/// Where a `confirmed()` call's outcome lands.
type Slot = Rc<RefCell<Option<Result<(), Unconfirmed>>>>;

/// What the application side knows.
#[derive(Default)]
struct Books {
    /// Accepted client messages, by number, with a receipt when tracked.
    accepted: BTreeMap<u64, Option<Receipt>>,
    next_id: u64,
    confirmed_waits: Vec<Slot>,
    connected_waits: Vec<Rc<RefCell<Option<bool>>>>,
}

struct World {
    rng: Rng,
    setup: Setup,
    server: MockServer,
    conns: Vec<MockConn>,
    feed: u64,
    unique: u64,
    fatal_sent: bool,
    /// Whether the last refusal scripted was a proxy that is down.
    proxy_down: bool,
    paused: bool,
    /// When each pause began and, once resumed, ended.
    pauses: Vec<(Instant, Option<Instant>)>,
    streams: Vec<MessageStream>,
    streams_made: usize,
    start: Instant,
    /// `Stats::messages_in` just before the close.
    messages_in: u64,
    /// The stats just before the close.
    books_out: Option<actix_tether::Stats>,
    trace: String,
}

impl World {
    /// Takes every connection accepted so far; a gated server says "ready"
    /// at once on most of them.
    fn accept_all(&mut self) {
        while let Some(Some(conn)) = self.server.accept().now_or_never() {
            if self.setup.gate && self.rng.chance(80) {
                conn.send_text("ready");
            }
            let _ = writeln!(self.trace, "  accepted #{}", conn.index());
            self.conns.push(conn);
        }
    }

    fn conn(&self, pick: usize) -> Option<&MockConn> {
        // The newest connections are the live ones, mostly.
        let n = self.conns.len();
        (n > 0).then(|| &self.conns[n - 1 - pick % n.min(2)])
    }
}

fn text_message(s: String) -> Message {
    Message::from(s)
}

// ---------------------------------------------------------------------- run

struct Run {
    trace: String,
    violations: Vec<String>,
}

fn run_seed(seed: u64) -> Run {
    let mut rng = Rng(seed);
    let setup = Setup::pick(&mut rng);
    let steps: Vec<Step> = (0..setup.steps)
        .map(|_| Step::pick(&mut rng, &setup))
        .collect();
    let mut trace = format!("seed {seed}\n{setup:?}\n");
    let violations = run_paused(async {
        let (transport, server) = mock();
        let rec = Recorder::start();
        let observed = Observed::default();
        // Each seed's metrics in a recorder of its own.
        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let client = metrics::with_local_recorder(&recorder, || {
            setup
                .builder(seed, transport, &rec, &observed)
                .name("sim")
                .start()
                .unwrap()
        });
        let books = Rc::new(RefCell::new(Books::default()));
        let mut w = World {
            rng,
            setup: setup.clone(),
            server,
            conns: Vec::new(),
            feed: 0,
            unique: 0,
            fatal_sent: false,
            proxy_down: false,
            paused: false,
            pauses: Vec::new(),
            streams: Vec::new(),
            streams_made: 0,
            start: Instant::now(),
            messages_in: 0,
            books_out: None,
            trace: String::new(),
        };
        let start = w.start;
        let mut violations = Vec::new();
        for step in &steps {
            settle(Duration::from_millis(1)).await;
            w.accept_all();
            // The state never says connected without a link, nor anything
            // but connected or closing with one.
            if let Ok(stats) = client.stats().await {
                let linked = stats.uptime.is_some();
                let consistent = match stats.state {
                    State::Connected => linked,
                    State::Closing => true,
                    _ => !linked,
                };
                if !consistent {
                    violations.push(format!(
                        "{} ms: state {:?} and a link up: {linked}",
                        start.elapsed().as_millis(),
                        stats.state
                    ));
                }
            }
            let _ = writeln!(w.trace, "{:>6} ms {step:?}", start.elapsed().as_millis());
            match *step {
                Step::Wait(d) => {
                    // In slices, so that connections are taken as they come.
                    let end = Instant::now() + d;
                    while Instant::now() < end {
                        settle(Duration::from_millis(100).min(end - Instant::now())).await;
                        w.accept_all();
                    }
                }
                Step::Script(a) => {
                    let outcome = match a {
                        // Every other refusal is a proxy that is down: the
                        // same retry, through the transport's other failure
                        // path (no draw from the schedule's generator, so
                        // seeds keep their schedules).
                        Attempt::Refuse => {
                            w.proxy_down = !w.proxy_down;
                            if w.proxy_down {
                                Outcome::Fail(ConnectErrorKind::ProxyUnavailable)
                            } else {
                                Outcome::Refuse
                            }
                        }
                        Attempt::Unavailable(s) => {
                            Outcome::Status(503, Some(Duration::from_secs(s)))
                        }
                        Attempt::Timeout => Outcome::Timeout,
                        Attempt::Slow(d) => Outcome::AcceptAfter(d),
                    };
                    w.server.script([outcome]);
                }
                Step::Feed => {
                    w.feed += 1;
                    let n = w.feed;
                    for c in w.conns.iter().rev().take(2) {
                        c.send_text(&format!("f{n}"));
                    }
                }
                Step::Unique(i, size) => {
                    w.unique += 1;
                    let tag = format!("u{}", w.unique);
                    if let Some(c) = w.conn(i) {
                        match size {
                            Size::Empty => c.send_binary(Bytes::new()),
                            _ => c.send_text(&payload(size, &tag)),
                        }
                    }
                }
                Step::Fragmented(i) => {
                    w.unique += 1;
                    let tag = format!("u{}-fragmented", w.unique);
                    if let Some(c) = w.conn(i) {
                        c.send_fragmented(&tag, 3);
                    }
                }
                Step::Flood(i) => {
                    if let Some(c) = w.conn(i) {
                        for _ in 0..1000 {
                            c.send_binary(Bytes::new());
                        }
                    }
                }
                Step::PingFlood(i, n) => {
                    if let Some(c) = w.conn(i) {
                        for k in 0..n {
                            c.ping(Bytes::from(k.to_be_bytes().to_vec()));
                        }
                    }
                }
                Step::Boom(i) => {
                    if let Some(c) = w.conn(i) {
                        c.send_text("boom");
                    }
                }
                Step::Gate(i) => {
                    if let Some(c) = w.conn(i) {
                        c.send_text("ready");
                    }
                }
                Step::Drop(i) => {
                    if let Some(c) = w.conn(i) {
                        c.drop_link();
                    }
                }
                Step::CloseWith(i, code) => {
                    if let Some(c) = w.conn(i) {
                        c.close(code, "sim");
                        w.fatal_sent |= code == FATAL;
                    }
                }
                Step::Silent(i) => {
                    if let Some(c) = w.conn(i) {
                        c.go_silent();
                    }
                }
                Step::StopReading(i) => {
                    if let Some(c) = w.conn(i) {
                        c.stop_reading();
                    }
                }
                Step::ResumeReading(i) => {
                    if let Some(c) = w.conn(i) {
                        c.resume_reading();
                    }
                }
                Step::ReadSlowly(i, d) => {
                    if let Some(c) = w.conn(i) {
                        c.read_slowly(d);
                    }
                }
                Step::TrySend(size) => {
                    let mut b = books.borrow_mut();
                    let id = b.next_id;
                    b.next_id += 1;
                    let text = format!("c{id} {}", payload(size, ""));
                    if let Ok(r) = client.try_send_tracked(text_message(text)) {
                        b.accepted.insert(id, Some(r));
                    }
                }
                Step::Send(limit) => {
                    let id = {
                        let mut b = books.borrow_mut();
                        b.next_id += 1;
                        b.next_id - 1
                    };
                    let sent = tokio::time::timeout(limit, client.send(format!("c{id} "))).await;
                    if let Ok(Ok(())) = sent {
                        books.borrow_mut().accepted.insert(id, None);
                    }
                }
                Step::Burst(n) => {
                    let mut b = books.borrow_mut();
                    for _ in 0..n {
                        let id = b.next_id;
                        b.next_id += 1;
                        if client.try_send(format!("c{id} ")).is_ok() {
                            b.accepted.insert(id, None);
                        }
                    }
                }
                Step::Rotate => client.rotate(),
                Step::Pause => {
                    if !w.paused {
                        w.pauses.push((Instant::now(), None));
                    }
                    w.paused = true;
                    client.pause();
                }
                Step::Resume => {
                    if let Some((_, end @ None)) = w.pauses.last_mut() {
                        *end = Some(Instant::now());
                    }
                    w.paused = false;
                    client.resume();
                }
                Step::ReconnectNow => client.reconnect_now(),
                Step::Confirmed => {
                    let slot = Rc::new(RefCell::new(None));
                    books.borrow_mut().confirmed_waits.push(slot.clone());
                    let c = client.clone();
                    actix_rt::spawn(async move {
                        let r = c.confirmed().await;
                        *slot.borrow_mut() = Some(r);
                    });
                }
                Step::Connected => {
                    let slot = Rc::new(RefCell::new(None));
                    books.borrow_mut().connected_waits.push(slot.clone());
                    let c = client.clone();
                    actix_rt::spawn(async move {
                        let r = c.connected().await;
                        *slot.borrow_mut() = Some(r.is_ok());
                    });
                }
                Step::Stream => {
                    w.streams_made += 1;
                    w.streams.push(client.stream());
                }
                Step::DropStream => {
                    w.streams.pop();
                }
            }
        }
        // The end: the server turns friendly, the application closes.
        w.server.script(std::iter::empty());
        if w.paused && client.state() != State::Paused {
            settle(Duration::from_millis(1)).await;
        }
        for c in &w.conns {
            c.resume_reading();
        }
        if let Ok(stats) = client.stats().await {
            let _ = writeln!(
                w.trace,
                "  stats: confirmed {} possibly_lost {} replayed {} dropped {} in {} out {}",
                stats.confirmed,
                stats.possibly_lost,
                stats.replayed,
                stats.dropped,
                stats.messages_in,
                stats.messages_out
            );
            w.messages_in = stats.messages_in;
            w.books_out = Some(stats);
        }
        // A pause still open ends with the close (which connects to
        // deliver what is queued).
        if let Some((_, end @ None)) = w.pauses.last_mut() {
            *end = Some(Instant::now());
        }
        let close_timeout = w.rng.ms(0, 5000);
        let _ = writeln!(
            w.trace,
            "{:>6} ms close({close_timeout:?})",
            start.elapsed().as_millis()
        );
        let closing = client.close(close_timeout);
        futures::pin_mut!(closing);
        let closed_at = Instant::now();
        // Close may reconnect to deliver what is queued: keep accepting.
        // Its timeout, then the close handshake (5 s by default) and the
        // wait for the server's TCP close (250 ms), with a second to spare.
        let bound = close_timeout + Duration::from_millis(6250);
        let undelivered = loop {
            if let Some(r) = (&mut closing).now_or_never() {
                break Some(r);
            }
            if closed_at.elapsed() > bound {
                break None;
            }
            settle(Duration::from_millis(50)).await;
            w.accept_all();
            for c in &w.conns {
                c.resume_reading();
            }
        };
        settle(Duration::from_millis(10)).await;
        for (conn, frame) in w.server.sent_frames() {
            let _ = writeln!(w.trace, "  #{conn} read {}", short(&frame));
        }
        let events = rec.recorded_events();
        for e in &events {
            let _ = writeln!(
                w.trace,
                "  event {:>6} ms {:?}",
                (e.at - start).as_millis(),
                e.value
            );
        }
        check(
            &mut violations,
            &w,
            &mut books.borrow_mut(),
            &events,
            &rec,
            undelivered,
            &client,
        );
        check_metrics(&mut violations, &metrics.render(), &events, &rec);
        if setup.observer {
            check_observer(&mut violations, &rec, &observed);
        }
        trace.push_str(&w.trace);
        violations
    });
    if let Some(p) = take_panic() {
        let mut v = violations;
        v.push(format!("panic: {p}"));
        return Run {
            trace,
            violations: v,
        };
    }
    Run { trace, violations }
}

/// A frame the server read, in a line of the trace.
fn short(frame: &actix_tether::engine::OutFrame) -> String {
    // A barrier Ping carries a random per-client tag: only its number is
    // part of the schedule.
    if let actix_tether::engine::OutFrame::Ping(p) = frame {
        return format!("Ping #{:?}", p.get(8..));
    }
    let s = format!("{frame:?}");
    if s.chars().count() > 60 {
        format!("{}..", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

// ------------------------------------------------------------- invariants

fn client_id(m: &Message) -> Option<u64> {
    m.as_text()?
        .strip_prefix('c')?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[allow(clippy::too_many_arguments)]
fn check(
    v: &mut Vec<String>,
    w: &World,
    books: &mut Books,
    events: &[actix_tether::testkit::Stamped<Event>],
    rec: &Recorder,
    undelivered: Option<Result<actix_tether::Undelivered, actix_tether::CloseError>>,
    client: &actix_tether::Client,
) {
    // Liveness: close resolves within its timeout and the handshake bound.
    let Some(undelivered) = undelivered else {
        v.push("close did not resolve".into());
        return;
    };
    // A client whose hook panicked ends without a Closed event; its
    // handle says so, and close still hands back what it held.
    let crashed = !events
        .iter()
        .any(|e| matches!(e.value, Event::Closed { .. }));
    let gave_up = events
        .iter()
        .any(|e| matches!(e.value, Event::GaveUp { .. }));
    if gave_up && !w.fatal_sent {
        v.push("gave up without a fatal code or max_retries".into());
    }
    if client.state() != State::Closed {
        v.push(format!("state after close: {:?}", client.state()));
    }
    if !matches!(
        client.try_send("late"),
        Err(actix_tether::SendError::Closed(_))
    ) {
        v.push("try_send after close was not refused with Closed".into());
    }
    if !matches!(client.connected().now_or_never(), Some(Err(_))) {
        v.push("connected() after close did not fail at once".into());
    }
    if crashed && !w.setup.hook_panics {
        v.push("no Closed event".into());
    }
    if !crashed
        && events
            .last()
            .is_some_and(|e| !matches!(e.value, Event::Closed { .. }))
    {
        v.push("an event came after Closed".into());
    }
    let returned: BTreeSet<u64> = match &undelivered {
        Ok(u) => u.iter().filter_map(client_id).collect(),
        // After a crash with nothing queued, there is nothing to hand back.
        Err(actix_tether::CloseError::AlreadyClosed) if crashed => BTreeSet::new(),
        Err(e) => {
            v.push(format!("close failed: {e:?}"));
            BTreeSet::new()
        }
    };
    let dropped: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match &e.value {
            Event::Dropped { message } => client_id(message),
            _ => None,
        })
        .collect();
    // Close hands back as unsent only what no socket took.
    if let Ok(u) = &undelivered {
        let unsent: BTreeSet<u64> = u.unsent.iter().filter_map(client_id).collect();
        for (_, m) in w.server.sent() {
            if let Some(id) = client_id(&m).filter(|id| unsent.contains(id)) {
                v.push(format!(
                    "c{id}: handed back as unsent, but the server read it"
                ));
            }
        }
    }
    // Without replay, what a socket took is never written again (issue
    // 25, item 1), and the books count each write the socket took.
    if !w.setup.replay {
        let mut reads: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, m) in w.server.sent() {
            if let Some(id) = client_id(&m) {
                *reads.entry(id).or_default() += 1;
            }
        }
        for (id, n) in reads.iter().filter(|(_, n)| **n > 1) {
            v.push(format!("c{id} read {n} times without replay"));
        }
        if let Some(s) = &w.books_out {
            if s.messages_out > s.confirmed + s.possibly_lost + s.unconfirmed {
                v.push(format!(
                    "messages_out {} > confirmed {} + possibly_lost {} + unconfirmed {}",
                    s.messages_out, s.confirmed, s.possibly_lost, s.unconfirmed
                ));
            }
        }
    }
    // Order: on each connection, client messages arrive in accept order.
    let sent = w.server.sent();
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for (conn, m) in &sent {
        let Some(id) = client_id(m) else { continue };
        if let Some(prev) = last.insert(*conn, id) {
            if id <= prev {
                v.push(format!("connection #{conn} got c{id} after c{prev}"));
            }
        }
        seen.insert(id);
        if !books.accepted.contains_key(&id) {
            v.push(format!("the server got c{id}, which was never accepted"));
        }
    }
    // Accounting: every accepted message is seen by the server, handed
    // back, dropped with an event, or (without replay) possibly lost.
    let mut missing = Vec::new();
    for (id, receipt) in books.accepted.iter_mut() {
        let outcome = receipt.as_mut().map(Receipt::outcome);
        match outcome {
            Some(None) => v.push(format!("c{id}: its receipt is still pending after close")),
            Some(Some(Ok(()))) if !seen.contains(id) => {
                v.push(format!("c{id}: confirmed, but the server never read it"))
            }
            Some(Some(Err(Unconfirmed::Closed))) if !returned.contains(id) => v.push(format!(
                "c{id}: receipt says Closed, but close did not hand it back"
            )),
            Some(Some(Err(Unconfirmed::Dropped))) if !dropped.contains(id) => {
                v.push(format!("c{id}: receipt says Dropped, but no Dropped event"))
            }
            Some(Some(Err(Unconfirmed::PossiblyLost))) if w.setup.replay && !gave_up => {
                v.push(format!("c{id}: possibly lost with replay on"))
            }
            _ => {}
        }
        if !seen.contains(id) && !returned.contains(id) && !dropped.contains(id) {
            missing.push(*id);
        }
    }
    if w.setup.replay && !gave_up && !missing.is_empty() {
        v.push(format!("with replay, lost without a trace: {missing:?}"));
    }
    for slot in &books.confirmed_waits {
        if slot.borrow().is_none() {
            v.push("a confirmed() call never resolved".into());
        }
    }
    for slot in &books.connected_waits {
        if slot.borrow().is_none() {
            v.push("a connected() call never resolved".into());
        }
    }
    // A pause holds until resume: no link comes up in between.
    for e in events {
        if let Event::Connected { .. } = e.value {
            let inside = w
                .pauses
                .iter()
                .any(|&(from, to)| e.at > from && to.is_none_or(|to| e.at < to));
            if inside {
                v.push(format!("connected at {:?} while paused", e.at - w.start));
            }
        }
    }
    // Memory: behind a stuck subscriber, what the client reads stays within
    // the read-ahead (128 bytes a message at least), twice over for a
    // rotation's standby link, plus the read that crossed the bound.
    if let (true, 0, Some(ra)) = (w.setup.stuck, w.streams_made, w.setup.read_ahead) {
        // Subscribed from its context, the stuck actor's channel holds
        // STREAM_CAPACITY reads (of up to 256 messages) before the
        // read-ahead counts.
        let held = if w.setup.in_context {
            256 * actix_tether::STREAM_CAPACITY
        } else {
            0
        };
        let bound = 2 * (ra.div_ceil(128) + 256 + held) + 2;
        if w.messages_in > bound as u64 {
            v.push(format!(
                "{} messages read behind a stuck subscriber, read-ahead {ra}",
                w.messages_in
            ));
        }
    }
    // Inbound: no feed number twice with a dedup key (inside its window).
    if w.setup.dedup {
        let mut got = BTreeSet::new();
        for m in rec.recorded_inbound() {
            if let Some(n) = m.as_text().and_then(feed_number) {
                if !got.insert(n) {
                    v.push(format!("feed f{n} delivered twice with a dedup key"));
                }
            }
        }
    }
}

/// The actor subscribed from its context handled what the recipient
/// subscriber did: every message, once, in the same order.
fn check_observer(v: &mut Vec<String>, rec: &Recorder, observed: &Observed) {
    let seen = observed.lock().map(|l| l.clone()).unwrap_or_default();
    let recorded = rec.recorded_inbound();
    if seen != recorded {
        let first = seen
            .iter()
            .zip(&recorded)
            .position(|(a, b)| a != b)
            .unwrap_or(seen.len().min(recorded.len()));
        v.push(format!(
            "the actor subscribed from its context handled {} messages, the recipient {}; \
             they differ from message {first}",
            seen.len(),
            recorded.len()
        ));
    }
}

/// The scrape says what the events and the inbound messages say: each
/// counter, each disconnect under its reason, each link that ended timed.
fn check_metrics(
    v: &mut Vec<String>,
    scrape: &str,
    events: &[actix_tether::testkit::Stamped<Event>],
    rec: &Recorder,
) {
    let series: BTreeMap<&str, f64> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, value) = l.rsplit_once(' ')?;
            Some((k, value.parse().ok()?))
        })
        .collect();
    let got = |name: &str, labels: &str| {
        let key = format!("{name}{{client=\"sim\"{labels}}}");
        series.get(key.as_str()).map_or(0, |v| *v as u64)
    };
    let count =
        |pick: &dyn Fn(&Event) -> bool| events.iter().filter(|e| pick(&e.value)).count() as u64;
    let mut want: Vec<(&str, String, u64)> = vec![
        (
            "tether_connect_attempts_total",
            String::new(),
            count(&|e| matches!(e, Event::Connecting { .. })),
        ),
        (
            "tether_connects_total",
            String::new(),
            count(&|e| matches!(e, Event::Connected { .. } | Event::Rotated { .. })),
        ),
        (
            "tether_rotations_total",
            String::new(),
            count(&|e| matches!(e, Event::Rotated { .. })),
        ),
        (
            "tether_give_ups_total",
            String::new(),
            count(&|e| matches!(e, Event::GaveUp { .. })),
        ),
        (
            "tether_messages_dropped_total",
            ",reason=\"evicted\"".into(),
            count(&|e| matches!(e, Event::Dropped { .. })),
        ),
        (
            "tether_backoff_delay_seconds_count",
            String::new(),
            count(&|e| matches!(e, Event::Reconnecting { .. })),
        ),
    ];
    let replayed: usize = events
        .iter()
        .map(|e| match e.value {
            Event::Replaying { messages } => messages,
            _ => 0,
        })
        .sum();
    want.push((
        "tether_messages_replayed_total",
        String::new(),
        replayed as u64,
    ));
    // Links that ended: a rotation's old link, and each link down after
    // being up (a ready timeout may end a link never announced).
    let (mut up, mut ended) = (false, 0);
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events {
        match &e.value {
            Event::Connected { .. } => up = true,
            Event::Rotated { .. } => ended += 1,
            Event::Disconnected { reason, .. } => {
                if std::mem::take(&mut up) {
                    ended += 1;
                }
                let label = match reason {
                    DisconnectReason::ConnectFailed(_) => continue,
                    DisconnectReason::ServerClosed { .. } => "server_close",
                    DisconnectReason::Dropped => "dropped",
                    DisconnectReason::Transport(t)
                        if t.kind() == actix_tether::TransportErrorKind::Io =>
                    {
                        "dropped"
                    }
                    DisconnectReason::PongTimeout(_) | DisconnectReason::Silence(_) => "dead_peer",
                    DisconnectReason::Protocol(_) => "protocol",
                    DisconnectReason::WriteTimeout(_) => "write_timeout",
                    DisconnectReason::ReadyTimeout(_) => "ready_timeout",
                    DisconnectReason::Paused => "paused",
                    DisconnectReason::ClientClosed => "closed",
                    _ => "other",
                };
                *reasons.entry(label).or_default() += 1;
            }
            _ => {}
        }
    }
    want.push(("tether_link_duration_seconds_count", String::new(), ended));
    for label in [
        "server_close",
        "dropped",
        "dead_peer",
        "protocol",
        "write_timeout",
        "ready_timeout",
        "paused",
        "closed",
        "other",
    ] {
        let n = reasons.get(label).copied().unwrap_or(0);
        want.push((
            "tether_disconnects_total",
            format!(",reason=\"{label}\""),
            n,
        ));
    }
    let inbound = rec.recorded_inbound();
    want.push((
        "tether_messages_received_total",
        String::new(),
        inbound.len() as u64,
    ));
    let bytes: usize = inbound.iter().map(Message::len).sum();
    want.push(("tether_bytes_received_total", String::new(), bytes as u64));
    for (name, labels, n) in want {
        let has = got(name, &labels);
        if has != n {
            v.push(format!("metric {name}{labels} is {has}, the run says {n}"));
        }
    }
    // Closed: nothing up, nothing queued.
    if events
        .iter()
        .any(|e| matches!(e.value, Event::Closed { .. }))
    {
        for name in [
            "tether_connected",
            "tether_queue_messages",
            "tether_queue_bytes",
        ] {
            if got(name, "") != 0 {
                v.push(format!("{name} is {} after close", got(name, "")));
            }
        }
    }
}

// --------------------------------------------------------------------- tests

fn report(seed: u64, out: &Run) -> String {
    format!(
        "seed {seed} broke {} promise(s): {:#?}\nreplay with SIM_SEED={seed}\n{}",
        out.violations.len(),
        out.violations,
        out.trace
    )
}

#[test]
fn seeded_schedules_keep_every_promise() {
    watch_panics();
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        let out = run_seed(seed);
        println!("{}", out.trace);
        assert!(out.violations.is_empty(), "{}", report(seed, &out));
        return;
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut failures = Vec::new();
    for seed in REGRESSIONS.iter().copied().chain(0..n) {
        let out = run_seed(seed);
        if !out.violations.is_empty() {
            eprintln!("{}", report(seed, &out));
            failures.push(seed);
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

#[test]
fn a_seed_replays_exactly() {
    watch_panics();
    for seed in 0..REPLAYED {
        let a = run_seed(seed);
        let b = run_seed(seed);
        assert_eq!(a.trace, b.trace, "seed {seed} ran two different ways");
    }
}

// ------------------------------------------------------- extreme settings

type Setting = fn(ClientBuilder, Duration, usize, f64) -> ClientBuilder;

/// Every duration, size and number a builder takes, by name.
const SETTINGS: &[(&str, Setting)] = &[
    ("connect_timeout", |b, d, _, _| b.connect_timeout(d)),
    ("close_timeout", |b, d, _, _| b.close_timeout(d)),
    ("backoff_initial", |b, d, _, _| b.backoff_initial(d)),
    ("backoff_max", |b, d, _, _| b.backoff_max(d)),
    ("max_retry_after", |b, d, _, _| b.max_retry_after(d)),
    ("min_uptime", |b, d, _, _| b.min_uptime(d)),
    ("ping_interval", |b, d, _, _| b.ping_interval(d)),
    ("pong_timeout", |b, d, _, _| b.pong_timeout(d)),
    ("silence_timeout", |b, d, _, _| b.silence_timeout(d)),
    ("write_timeout", |b, d, _, _| b.write_timeout(d)),
    ("stall_timeout", |b, d, _, _| b.stall_timeout(d)),
    ("barrier_interval", |b, d, _, _| {
        b.delivery_barriers(true).barrier_interval(d)
    }),
    ("max_connection_age", |b, d, _, _| b.max_connection_age(d)),
    ("rotation_overlap", |b, d, _, _| {
        b.max_connection_age(Duration::from_secs(2))
            .rotation_overlap(d)
    }),
    ("return_to_primary", |b, d, _, _| {
        b.fallback("ws://fallback.sim/").return_to_primary(d)
    }),
    ("ready_timeout", |b, d, _, _| {
        b.ready_gate(|m| m.as_text() == Some("ready"))
            .ready_timeout(d)
    }),
    ("read_ahead", |b, _, n, _| b.read_ahead(n)),
    ("queue_size", |b, _, n, _| b.queue_size(n)),
    ("queue_bytes", |b, _, n, _| b.queue_bytes(n)),
    ("max_message_size", |b, _, n, _| b.max_message_size(n)),
    ("max_frame_size", |b, _, n, _| b.max_frame_size(n)),
    ("dedup_window", |b, _, n, _| {
        b.dedup_key(|m| m.as_text().and_then(feed_number))
            .dedup_window(n)
    }),
    ("unconfirmed_window", |b, _, n, _| {
        b.replay_unconfirmed(true).unconfirmed_window(n, n)
    }),
    ("failover_after", |b, _, n, _| {
        b.fallback("ws://fallback.sim/")
            .failover_after(u32::try_from(n).unwrap_or(u32::MAX))
    }),
    ("max_retries", |b, _, n, _| {
        b.max_retries(u32::try_from(n).unwrap_or(u32::MAX))
    }),
    ("backoff_factor", |b, _, _, f| b.backoff_factor(f)),
    ("age_jitter", |b, _, _, f| {
        b.max_connection_age(Duration::from_secs(2)).age_jitter(f)
    }),
    ("reconnect_budget", |b, _, n, f| match ReconnectBudget::new(
        f,
        u32::try_from(n).unwrap_or(u32::MAX),
    ) {
        Ok(budget) => b.reconnect_budget(budget),
        Err(_) => b,
    }),
];

const DURATIONS: &[Duration] = &[
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_millis(1),
    Duration::from_secs(u64::MAX / 2),
    Duration::MAX.saturating_sub(Duration::from_nanos(1)),
    Duration::MAX,
];
const SIZES: &[usize] = &[0, 1, 2, usize::MAX / 2, usize::MAX - 1, usize::MAX];
const NUMBERS: &[f64] = &[
    0.0,
    1e-300,
    0.5,
    1.0,
    2.0,
    1e300,
    f64::INFINITY,
    f64::NAN,
    -1.0,
];

/// Starts a client with `settings` applied, and, if `start()` takes them,
/// drives it through a short life: connects, traffic both ways, a dropped
/// link and a refused and a throttled attempt, a rotation, a pause, a close.
fn extreme_life(settings: &[(usize, usize)]) -> Option<String> {
    let described: Vec<String> = settings
        .iter()
        .map(|&(s, v)| {
            format!(
                "{}({:?} | {} | {:e})",
                SETTINGS[s].0,
                DURATIONS[v % DURATIONS.len()],
                SIZES[v % SIZES.len()],
                NUMBERS[v % NUMBERS.len()]
            )
        })
        .collect();
    if std::env::var_os("SIM_VERBOSE").is_some() {
        eprintln!("extreme: {}", described.join(", "));
    }
    run_paused(async {
        let (transport, mut server) = mock();
        let rec = Recorder::start();
        let mut b = ClientBuilder::new("ws://primary.sim/feed")
            .transport(transport)
            .subscribe(rec.inbound())
            .subscribe_events(rec.events());
        for &(s, v) in settings {
            b = (SETTINGS[s].1)(
                b,
                DURATIONS[v % DURATIONS.len()],
                SIZES[v % SIZES.len()],
                NUMBERS[v % NUMBERS.len()],
            );
        }
        let Ok(client) = b.start() else {
            return;
        };
        let first = tokio::time::timeout(Duration::from_secs(5), server.accept()).await;
        if let Ok(Some(conn)) = first {
            conn.send_text("ready");
            conn.send_text("f1");
            conn.send_binary(Bytes::new());
            let _ = client.try_send("a");
            settle(Duration::from_millis(300)).await;
            server.script([Outcome::Refuse, Outcome::Status(503, Some(Duration::MAX))]);
            conn.drop_link();
        }
        settle(Duration::from_secs(3)).await;
        while let Some(Some(c)) = server.accept().now_or_never() {
            c.send_text("ready");
        }
        client.rotate();
        settle(Duration::from_secs(1)).await;
        client.pause();
        settle(Duration::from_millis(10)).await;
        client.resume();
        let _ = client.try_send("b");
        settle(Duration::from_secs(1)).await;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            client.close(Duration::from_secs(1)),
        )
        .await;
    });
    take_panic().map(|p| format!("{}: {p}", described.join(", ")))
}

#[test]
fn extreme_settings_are_refused_or_work_without_a_panic() {
    watch_panics();
    let mut failures = Vec::new();
    // Each setting alone at each extreme value.
    for s in 0..SETTINGS.len() {
        for v in 0..DURATIONS.len().max(SIZES.len()).max(NUMBERS.len()) {
            failures.extend(extreme_life(&[(s, v)]));
        }
    }
    // Then several at once, in seeded combinations.
    let mut rng = Rng(0xE87E);
    for _ in 0..150 {
        let k = 2 + rng.below(5) as usize;
        let combo: Vec<(usize, usize)> = (0..k)
            .map(|_| {
                (
                    rng.below(SETTINGS.len() as u64) as usize,
                    rng.below(9) as usize,
                )
            })
            .collect();
        failures.extend(extreme_life(&combo));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
