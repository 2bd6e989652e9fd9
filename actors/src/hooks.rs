//! The application's hooks and what they are given: the request provider
//! and its `Attempt`, the ready gate, the dedup key, the URL redaction and
//! the on-connect hook.

use futures::future::LocalBoxFuture;

use crate::error::ConnectError;
use crate::frame::Message;
use crate::messages::ConnectInfo;
use crate::transport::ConnectRequest;

/// What the request provider learns about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The attempt's number in the current streak (1 is the first since the
    /// last stable link); for a rotation, in its streak of failed rotations.
    pub number: u32,
    /// Which endpoint the attempt goes to: 0 is the primary, then the
    /// fallbacks in order.
    pub endpoint: usize,
    /// That endpoint's URL as configured ([`Engine::endpoints`](crate::Engine::endpoints)); empty for
    /// an engine without endpoints.
    pub url: String,
    /// The attempt opens a rotation's second link while the current one
    /// stays up.
    pub rotation: bool,
}

/// The future a request provider returns: the request for one attempt, or
/// why there is none (classified like a connect error: retryable or fatal).
pub type RequestFuture = LocalBoxFuture<'static, Result<ConnectRequest, ConnectError>>;

/// Produces the request for each attempt, so the URL, a token or headers
/// can change between attempts. The future runs on the client's arbiter,
/// bounded, with the connect that follows it, by the connect timeout.
pub type RequestProvider = Box<dyn FnMut(&Attempt) -> RequestFuture>;

/// The ready gate: whether an inbound message confirms the session (a login
/// acknowledgement), after which the link's backlog may go.
pub type ReadyPredicate = Box<dyn FnMut(&Message) -> bool>;

/// A key that identifies a message across links (a sequence number or an
/// update id), for dropping what both links of a rotation deliver; `None`
/// for messages not to check.
pub type DedupKey = Box<dyn FnMut(&Message) -> Option<u64>>;

/// Shows a URL in events and spans: takes the URL as the default redaction
/// leaves it (user info and fragment removed, every query value masked)
/// and returns what to show instead (a path token masked, say).
pub type RedactUrl = Box<dyn Fn(&str) -> String>;

/// Produces the setup lane for each new link: messages (authentication,
/// resubscription) written before anything queued.
pub type OnConnect = Box<dyn FnMut(&ConnectInfo) -> Vec<Message>>;
