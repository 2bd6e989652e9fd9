//! An in-memory transport with a server-side handle per accepted connection.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_tether_actors::{
    CloseFrame, ConnectError, ConnectErrorKind, ConnectRequest, Fragment, Frame, Link, Message,
    OutFrame, SinkWriter, Transport, TransportError, TransportErrorKind,
};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::{self, LocalBoxFuture};
use futures::{SinkExt, StreamExt};
use tokio::sync::Notify;

/// How long the server-side `accept` and `next_*` wait before giving up
/// with `None`, so a broken expectation fails a test instead of hanging it.
/// On a paused clock the wait costs no real time.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// How the mock answers one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Accept at once.
    Accept,
    /// Accept a connection that is silent from its first frame, as after
    /// [`MockConn::go_silent`]: it reads, and answers neither Ping nor
    /// Close.
    AcceptSilent,
    /// Accept and report that the server selected this subprotocol.
    AcceptProtocol(String),
    /// Accept after a delay (on the client's clock).
    AcceptAfter(Duration),
    /// Refuse the TCP connection.
    Refuse,
    /// Answer the upgrade with an HTTP status and an optional `Retry-After`.
    Status(u16, Option<Duration>),
    /// Never answer: the client's connect timeout decides.
    Timeout,
    /// Fail with an error of this kind, as the real transport reports it:
    /// `ProxyUnavailable` for a proxy that is down (retried),
    /// `ProxyRefused` for refused proxy credentials or `Certificate` for an
    /// untrusted server certificate (both give up at once).
    Fail(ConnectErrorKind),
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Shared {
    script: VecDeque<Outcome>,
    requests: Vec<ConnectRequest>,
    sent: Vec<(usize, OutFrame)>,
    accepted: mpsc::UnboundedSender<MockConn>,
    connections: usize,
}

/// Creates a mock transport and the server-side handle that controls it.
pub fn mock() -> (MockTransport, MockServer) {
    let (tx, rx) = mpsc::unbounded();
    let shared = Arc::new(Mutex::new(Shared {
        script: VecDeque::new(),
        requests: Vec::new(),
        sent: Vec::new(),
        accepted: tx,
        connections: 0,
    }));
    (
        MockTransport {
            shared: shared.clone(),
        },
        MockServer {
            shared,
            accepted: rx,
        },
    )
}

/// The client side: plug it in with
/// [`ClientBuilder::transport`](crate::ClientBuilder::transport).
pub struct MockTransport {
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for MockTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MockTransport")
    }
}

/// The server side: scripts attempt outcomes and hands out accepted
/// connections.
pub struct MockServer {
    shared: Arc<Mutex<Shared>>,
    accepted: mpsc::UnboundedReceiver<MockConn>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared);
        f.debug_struct("MockServer")
            .field("attempts", &s.requests.len())
            .field("connections", &s.connections)
            .finish()
    }
}

impl MockServer {
    /// Queues outcomes for the next attempts, in order; once they run out,
    /// attempts are accepted.
    pub fn script(&self, outcomes: impl IntoIterator<Item = Outcome>) {
        lock(&self.shared).script.extend(outcomes);
    }

    /// The next accepted connection, or `None` once the transport is gone
    /// or after [`WAIT_LIMIT`] (on the client's clock).
    pub async fn accept(&mut self) -> Option<MockConn> {
        tokio::time::timeout(WAIT_LIMIT, self.accepted.next())
            .await
            .ok()
            .flatten()
    }

    /// Every request the client made, in order.
    pub fn requests(&self) -> Vec<ConnectRequest> {
        lock(&self.shared).requests.clone()
    }

    /// Every data message the client wrote, across all connections, in
    /// order, with the index of the connection (0-based) it went to.
    pub fn sent(&self) -> Vec<(usize, Message)> {
        lock(&self.shared)
            .sent
            .iter()
            .filter_map(|(i, f)| match f {
                OutFrame::Message(m) => Some((*i, m.clone())),
                _ => None,
            })
            .collect()
    }

    /// Forgets the requests and frames recorded so far (for long-running
    /// tests that would otherwise keep them all).
    pub fn clear_log(&self) {
        let mut s = lock(&self.shared);
        s.requests.clear();
        s.sent.clear();
    }

    /// Every frame the client wrote, control frames included.
    pub fn sent_frames(&self) -> Vec<(usize, OutFrame)> {
        lock(&self.shared).sent.clone()
    }
}

struct ConnState {
    responsive: AtomicBool,
    reading: AtomicBool,
    /// Time the server takes to read each frame (a slow peer or link).
    pace: Mutex<Option<Duration>>,
    resume: Notify,
}

/// Frames the client can write before a server that stopped reading makes
/// its writes wait.
const CLIENT_WINDOW: usize = 8;

/// One accepted connection, seen from the server.
///
/// The mock answers the client's pings with pongs and its Close with a Close
/// (until [`MockConn::go_silent`]); every frame the client writes also lands
/// in this handle's inbox ([`MockConn::next_frame`]).
pub struct MockConn {
    index: usize,
    request: ConnectRequest,
    to_client: mpsc::UnboundedSender<Result<Frame, TransportError>>,
    inbox: mpsc::UnboundedReceiver<OutFrame>,
    state: Arc<ConnState>,
}

impl fmt::Debug for MockConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConn")
            .field("index", &self.index)
            .field("url", &self.request.url)
            .finish_non_exhaustive()
    }
}

impl MockConn {
    /// Which connection this is (0-based, in accept order).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The request the client connected with.
    pub fn request(&self) -> &ConnectRequest {
        &self.request
    }

    /// Sends a raw frame to the client (fragments, invalid UTF-8, ...).
    pub fn send_frame(&self, frame: Frame) {
        let _ = self.to_client.unbounded_send(Ok(frame));
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) {
        self.send_frame(Frame::Text(Bytes::copy_from_slice(text.as_bytes())));
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: impl Into<Bytes>) {
        self.send_frame(Frame::Binary(data.into()));
    }

    /// Sends a Ping with `payload`.
    pub fn ping(&self, payload: impl Into<Bytes>) {
        self.send_frame(Frame::Ping(payload.into()));
    }

    /// Sends a Close with `code` and `reason`.
    pub fn close(&self, code: u16, reason: &str) {
        self.send_frame(Frame::Close(Some(CloseFrame::new(code, reason))));
    }

    /// Makes the client's socket fail with a transport error of `kind`.
    pub fn fail(&self, kind: TransportErrorKind) {
        let err = io::Error::new(io::ErrorKind::ConnectionReset, "mock failure");
        let _ = self
            .to_client
            .unbounded_send(Err(TransportError::new(kind, err)));
        self.drop_link();
    }

    /// Ends the connection abruptly, without a Close frame.
    pub fn drop_link(&self) {
        self.to_client.close_channel();
    }

    /// Stops answering pings and Close frames (a dead peer whose socket
    /// stays open).
    pub fn go_silent(&self) {
        self.state.responsive.store(false, Ordering::Relaxed);
    }

    /// Stops reading what the client writes: after a few frames the client's
    /// writes wait, as on a socket whose peer does not read (backpressure).
    pub fn stop_reading(&self) {
        self.state.reading.store(false, Ordering::Relaxed);
    }

    /// Reads one frame per `per_frame` from now on (on the client's clock),
    /// as a slow peer or a throttled link would: the client's writes wait
    /// once a few frames are unread, but they keep moving.
    pub fn read_slowly(&self, per_frame: Duration) {
        *self.state.pace.lock().unwrap_or_else(|p| p.into_inner()) = Some(per_frame);
    }

    /// Reads again after [`MockConn::stop_reading`].
    pub fn resume_reading(&self) {
        self.state.reading.store(true, Ordering::Relaxed);
        self.state.resume.notify_one();
    }

    /// Sends `text` as a fragmented message of `parts` frames (at least one).
    pub fn send_fragmented(&self, text: &str, parts: usize) {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let parts = parts.max(1);
        if parts == 1 {
            self.send_frame(Frame::Text(bytes));
            return;
        }
        let step = bytes.len().div_ceil(parts).max(1);
        for i in 0..parts {
            let chunk = bytes.slice((i * step).min(bytes.len())..((i + 1) * step).min(bytes.len()));
            let fragment = match i {
                0 => Fragment::FirstText,
                i if i + 1 == parts => Fragment::Last,
                _ => Fragment::Continue,
            };
            self.send_frame(Frame::Continuation(fragment, chunk));
        }
    }

    /// The next frame the client wrote, or `None` once its side is gone or
    /// after [`WAIT_LIMIT`] (on the client's clock).
    pub async fn next_frame(&mut self) -> Option<OutFrame> {
        tokio::time::timeout(WAIT_LIMIT, self.inbox.next())
            .await
            .ok()
            .flatten()
    }

    /// The next data message the client wrote, skipping control frames
    /// (each frame waits at most [`WAIT_LIMIT`]).
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let OutFrame::Message(m) = self.next_frame().await? {
                return Some(m);
            }
        }
    }

    /// The next text message the client wrote, skipping everything else
    /// (each frame waits at most [`WAIT_LIMIT`]).
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            if let Message::Text(t) = self.next_message().await? {
                return Some(t.to_string());
            }
        }
    }
}

impl Transport for MockTransport {
    fn connect(
        &mut self,
        request: &ConnectRequest,
        _timeout: Duration,
    ) -> LocalBoxFuture<'static, Result<Link, ConnectError>> {
        let outcome = {
            let mut s = lock(&self.shared);
            s.requests.push(request.clone());
            s.script.pop_front().unwrap_or(Outcome::Accept)
        };
        let shared = self.shared.clone();
        let request = request.clone();
        match outcome {
            Outcome::Accept => Box::pin(future::ready(Ok(accept(&shared, request, None, true)))),
            Outcome::AcceptSilent => {
                Box::pin(future::ready(Ok(accept(&shared, request, None, false))))
            }
            Outcome::AcceptProtocol(p) => {
                Box::pin(future::ready(Ok(accept(&shared, request, Some(p), true))))
            }
            Outcome::AcceptAfter(d) => Box::pin(async move {
                actix_rt::time::sleep(d).await;
                Ok(accept(&shared, request, None, true))
            }),
            Outcome::Refuse => Box::pin(future::ready(Err(ConnectError::with_source(
                ConnectErrorKind::Refused,
                io::Error::new(io::ErrorKind::ConnectionRefused, "mock refused"),
            )))),
            Outcome::Status(status, retry_after) => {
                Box::pin(future::ready(Err(ConnectError::http(status, retry_after))))
            }
            Outcome::Timeout => Box::pin(future::pending()),
            Outcome::Fail(kind) => Box::pin(future::ready(Err(ConnectError::with_source(
                kind,
                "mock failure",
            )))),
        }
    }
}

fn accept(
    shared: &Arc<Mutex<Shared>>,
    request: ConnectRequest,
    protocol: Option<String>,
    responsive: bool,
) -> Link {
    let (to_client, client_stream) = mpsc::unbounded();
    let (client_sink, mut from_client) = mpsc::channel::<OutFrame>(CLIENT_WINDOW);
    let (to_inbox, inbox) = mpsc::unbounded();
    let state = Arc::new(ConnState {
        responsive: AtomicBool::new(responsive),
        reading: AtomicBool::new(true),
        pace: Mutex::new(None),
        resume: Notify::new(),
    });
    let index = {
        let mut s = lock(shared);
        s.connections += 1;
        s.connections - 1
    };
    let conn = MockConn {
        index,
        request,
        to_client: to_client.clone(),
        inbox,
        state: state.clone(),
    };
    let log = shared.clone();
    // The server's automatic duties: log, answer pings and the close
    // handshake, forward to the test's inbox.
    actix_rt::spawn(async move {
        loop {
            while !state.reading.load(Ordering::Relaxed) {
                state.resume.notified().await;
            }
            let pace = *state.pace.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pace) = pace {
                actix_rt::time::sleep(pace).await;
            }
            let Some(frame) = from_client.next().await else {
                return;
            };
            lock(&log).sent.push((index, frame.clone()));
            if state.responsive.load(Ordering::Relaxed) {
                match &frame {
                    OutFrame::Ping(p) => {
                        let _ = to_client.unbounded_send(Ok(Frame::Pong(p.clone())));
                    }
                    OutFrame::Close(c) => {
                        let echo = c.as_ref().map(|c| CloseFrame::new(c.code, ""));
                        let _ = to_client.unbounded_send(Ok(Frame::Close(echo)));
                        to_client.close_channel();
                    }
                    _ => {}
                }
            }
            let _ = to_inbox.unbounded_send(frame);
        }
    });
    let _ = lock(shared).accepted.unbounded_send(conn);
    let sink = client_sink.sink_map_err(|e| {
        TransportError::new(
            TransportErrorKind::Io,
            io::Error::new(io::ErrorKind::BrokenPipe, e),
        )
    });
    Link::new(Box::pin(client_stream), Box::new(SinkWriter(sink))).with_protocol(protocol)
}
