//! The router actor: decodes each inbound message once, answers pending
//! requests, feeds typed subscribers and topic subscribers.
//!
//! Lifecycle: started by [`TypedBuilder::start`](super::TypedBuilder::start),
//! subscribed to the client's messages and events; it stops with the client
//! (its last event is `Closed`). Order of an inbound message's journey: a
//! response to a pending request resolves that request and goes nowhere
//! else; anything else goes to every typed subscription (decoded once per
//! type) and then to the subscribers of its routing key, or to the unrouted
//! subscribers when it has no key or nobody listens to that key.

use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use actix_tether_actors::{
    DisconnectReason, Event, Fanout, Inbound, Message, Receipt, SendError, Unconfirmed, WeakClient,
};
use futures::channel::oneshot;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::codec::{Codec, CodecError};
use super::error::TypedError;
use super::reliable::{self, Delivery, SharedWindow};

/// Acknowledged delivery: where the id goes, where acks carry it, and how
/// many may await their ack at once.
pub(crate) struct Reliable {
    pub(crate) request: String,
    pub(crate) response: String,
    pub(crate) max_unacked: usize,
    pub(crate) window: SharedWindow,
}

/// A decoded value of the type an actor subscribed to.
#[derive(Debug, Clone)]
pub struct Decoded<T>(pub T);

impl<T: 'static> actix::Message for Decoded<T> {
    type Result = ();
}

/// A message for a routing key (or an unrouted one), decoded once and
/// shared between subscribers.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct Routed {
    /// The routing key, if the message had one.
    pub key: Option<String>,
    /// The decoded value.
    pub value: Arc<Value>,
    /// The message as received.
    pub raw: Message,
}

/// An inbound message that could not be decoded, as a whole or as a
/// subscribed type. Nothing crashes; subscribers to failures are told.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct DecodeFailed {
    /// The message as received.
    pub raw: Message,
    /// What it should have been: the codec's value, or a type name.
    pub expected: &'static str,
    /// Why it is not.
    pub error: CodecError,
}

/// The routing keys actors subscribed to, shared with whoever needs them:
/// typically the on-connect hook, to resubscribe after a reconnect.
#[derive(Debug, Clone, Default)]
pub struct Topics(Arc<Mutex<BTreeSet<String>>>);

impl Topics {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscribed keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.iter().cloned().collect()
    }

    fn insert(&self, key: String) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.insert(key);
    }
}

/// A routing key computed from a decoded value.
pub type KeyFn = Box<dyn Fn(&Value) -> Option<String> + Send>;

/// Where a message's routing key is.
pub enum RouteKey {
    /// A JSON pointer (`/channel`, `/data/stream`); strings and numbers.
    Pointer(String),
    /// A function of the decoded value.
    Fn(KeyFn),
}

impl fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteKey::Pointer(p) => write!(f, "Pointer({p:?})"),
            RouteKey::Fn(_) => f.write_str("Fn"),
        }
    }
}

/// Where the correlation id goes in a request and is found in a response
/// (JSON pointers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    /// Where the client writes the id into each request.
    pub request: String,
    /// Where the client looks for it in each inbound message.
    pub response: String,
}

fn key_at(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Writes `id` at `pointer`, creating the last member; the parent must be
/// an object.
pub(crate) fn set_at(value: &mut Value, pointer: &str, id: Value) -> Result<(), CodecError> {
    let bad = || CodecError::new(BadPointer(pointer.to_owned()));
    let (parent, last) = pointer.rsplit_once('/').ok_or_else(bad)?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let object = value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .ok_or_else(bad)?;
    object.insert(last, id);
    Ok(())
}

#[derive(Debug)]
struct BadPointer(String);

impl fmt::Display for BadPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no object to hold the id at JSON pointer `{}`", self.0)
    }
}

impl std::error::Error for BadPointer {}

trait Slot {
    fn deliver(&mut self, value: &Value, raw: &Message, failures: &mut Fanout<DecodeFailed>);
    fn as_any(&mut self) -> &mut dyn Any;
}

struct TypedSlot<T: Send + 'static> {
    recipients: Fanout<Decoded<T>>,
    _type: PhantomData<T>,
}

impl<T> Slot for TypedSlot<T>
where
    T: DeserializeOwned + Clone + Send + 'static,
{
    fn deliver(&mut self, value: &Value, raw: &Message, failures: &mut Fanout<DecodeFailed>) {
        // Once per type, whatever the number of subscribers.
        match T::deserialize(value) {
            Ok(v) => self.recipients.deliver(Decoded(v)),
            Err(e) => failures.deliver(DecodeFailed {
                raw: raw.clone(),
                expected: std::any::type_name::<T>(),
                error: CodecError::new(e),
            }),
        }
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

struct Pending {
    reply: oneshot::Sender<Result<Value, TypedError>>,
    timer: SpawnHandle,
    retry: bool,
    message: Message,
    /// What the client knows of the request's delivery.
    receipt: Receipt,
    cut: bool,
}

pub(crate) struct Router {
    pub(crate) codec: Arc<dyn Codec>,
    /// Weak, so that the router (a subscriber) does not keep the client
    /// alive once the application dropped its handles.
    pub(crate) client: WeakClient,
    pub(crate) key: Option<RouteKey>,
    pub(crate) topics: Topics,
    pub(crate) correlation: Option<Correlation>,
    pub(crate) reliable: Option<Reliable>,
    by_key: HashMap<String, Fanout<Routed>>,
    unrouted: Fanout<Routed>,
    typed: HashMap<TypeId, Box<dyn Slot>>,
    failures: Fanout<DecodeFailed>,
    pending: HashMap<String, Pending>,
    /// The most requests awaiting a response.
    pub(crate) max_pending: usize,
    next_id: u64,
    up: bool,
}

impl Router {
    pub(crate) fn new(
        codec: Arc<dyn Codec>,
        client: WeakClient,
        key: Option<RouteKey>,
        topics: Topics,
        correlation: Option<Correlation>,
        reliable: Option<Reliable>,
        max_pending: usize,
    ) -> Self {
        Self {
            codec,
            client,
            key,
            topics,
            correlation,
            reliable,
            by_key: HashMap::new(),
            unrouted: Fanout::default(),
            typed: HashMap::new(),
            failures: Fanout::default(),
            pending: HashMap::new(),
            max_pending,
            next_id: 0,
            up: false,
        }
    }

    pub(crate) fn add_typed<T>(&mut self, r: Recipient<Decoded<T>>)
    where
        T: DeserializeOwned + Clone + Send + 'static,
    {
        let slot = self.typed.entry(TypeId::of::<T>()).or_insert_with(|| {
            Box::new(TypedSlot::<T> {
                recipients: Fanout::default(),
                _type: PhantomData,
            })
        });
        if let Some(slot) = slot.as_any().downcast_mut::<TypedSlot<T>>() {
            slot.recipients.push(r);
        }
    }

    pub(crate) fn add_topic(&mut self, key: String, r: Recipient<Routed>) {
        self.topics.insert(key.clone());
        self.by_key.entry(key).or_default().push(r);
    }

    pub(crate) fn add_unrouted(&mut self, r: Recipient<Routed>) {
        self.unrouted.push(r);
    }

    pub(crate) fn add_failures(&mut self, r: Recipient<DecodeFailed>) {
        self.failures.push(r);
    }

    /// Writes `id` at `pointer`, encodes, and queues the message.
    fn send_with_id(
        &self,
        mut value: Value,
        pointer: &str,
        id: &str,
    ) -> Result<Message, TypedError> {
        set_at(&mut value, pointer, Value::String(id.to_owned())).map_err(TypedError::Encode)?;
        let message = self.codec.encode(&value).map_err(TypedError::Encode)?;
        self.try_send(message.clone()).map_err(TypedError::Send)?;
        Ok(message)
    }

    /// Queues a request, with a receipt for its delivery.
    fn send_request(&self, message: Message) -> Result<Receipt, SendError> {
        match self.client.upgrade() {
            Some(client) => client.try_send_tracked(message),
            None => Err(SendError::Closed(message)),
        }
    }

    /// The link went down: each pending request's receipt (settled before
    /// the event) says what to do. Still with the client (queued, or
    /// replayed): it goes out on the next link by itself. Confirmed by a
    /// Pong: it reached the server, only the response is missing. Written
    /// and unconfirmed, or dropped: it may not have reached the server.
    fn link_lost(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            let failure = match p.receipt.outcome() {
                None => continue,
                Some(_) if p.retry => {
                    p.cut = true;
                    continue;
                }
                Some(Ok(())) => TypedError::ResponseLost,
                Some(Err(Unconfirmed::PossiblyLost | Unconfirmed::Dropped)) => {
                    TypedError::Disconnected
                }
                Some(Err(_)) => TypedError::Closed,
            };
            if let Some(p) = self.forget(&id, ctx) {
                let _ = p.reply.send(Err(failure));
            }
        }
    }

    fn try_send(&self, message: Message) -> Result<(), SendError> {
        match self.client.upgrade() {
            Some(client) => client.try_send(message),
            None => Err(SendError::Closed(message)),
        }
    }

    /// Removes request `id` and its timer; the caller answers it, if anyone
    /// still waits.
    fn forget(&mut self, id: &str, ctx: &mut Context<Self>) -> Option<Pending> {
        let p = self.pending.remove(id)?;
        ctx.cancel_future(p.timer);
        Some(p)
    }

    fn fail_all(&mut self, ctx: &mut Context<Self>, err: TypedError) {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            if let Some(p) = self.forget(&id, ctx) {
                let _ = p.reply.send(Err(err.clone()));
            }
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Router {
    type Result = ();

    fn handle(&mut self, Inbound(raw): Inbound, ctx: &mut Context<Self>) {
        let value = match self.codec.decode(&raw) {
            Ok(v) => v,
            Err(error) => {
                let failed = DecodeFailed {
                    raw,
                    expected: "a value of the codec",
                    error,
                };
                self.failures.deliver(failed);
                return;
            }
        };
        if let Some(c) = &self.correlation {
            if let Some(p) = key_at(&value, &c.response).and_then(|id| self.pending.remove(&id)) {
                ctx.cancel_future(p.timer);
                let _ = p.reply.send(Ok(value));
                return;
            }
        }
        if let Some(r) = &self.reliable {
            if let Some(id) = key_at(&value, &r.response) {
                if reliable::lock(&r.window).ack(&id) {
                    return;
                }
            }
        }
        for slot in self.typed.values_mut() {
            slot.deliver(&value, &raw, &mut self.failures);
        }
        let key = match &self.key {
            Some(RouteKey::Pointer(p)) => key_at(&value, p),
            Some(RouteKey::Fn(f)) => f(&value),
            None => None,
        };
        let routed = Routed {
            key: key.clone(),
            value: Arc::new(value),
            raw,
        };
        match key
            .and_then(|k| self.by_key.get_mut(&k))
            .filter(|l| !l.is_empty())
        {
            Some(list) => list.deliver(routed),
            None => self.unrouted.deliver(routed),
        }
    }
}

impl Handler<Event> for Router {
    type Result = ();

    fn handle(&mut self, event: Event, ctx: &mut Context<Self>) {
        match event {
            Event::Connected { .. } => {
                self.up = true;
                // Requests marked to retry go out again on the new link; one
                // the queue refuses fails now, with the reason, instead of
                // timing out later for a request that was never re-sent.
                let cut: Vec<String> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| p.cut)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in cut {
                    let Some(p) = self.pending.get_mut(&id) else {
                        continue;
                    };
                    p.cut = false;
                    let message = p.message.clone();
                    match self.send_request(message) {
                        Ok(receipt) => {
                            if let Some(p) = self.pending.get_mut(&id) {
                                p.receipt = receipt;
                            }
                        }
                        Err(e) => {
                            if let Some(p) = self.forget(&id, ctx) {
                                let _ = p.reply.send(Err(TypedError::Send(e)));
                            }
                        }
                    }
                }
            }
            Event::Disconnected {
                reason: DisconnectReason::ClientClosed,
                ..
            } => {
                self.up = false;
                self.fail_all(ctx, TypedError::Closed);
            }
            Event::Disconnected { .. } if self.up => {
                self.up = false;
                self.link_lost(ctx);
            }
            Event::GaveUp { .. } | Event::Closed { .. } => {
                self.fail_all(ctx, TypedError::Closed);
                if let Some(r) = &self.reliable {
                    reliable::lock(&r.window).give_up();
                }
            }
            _ => {}
        }
    }
}

/// Send a request; its response goes to `reply`. Answered with the
/// request's id, for [`ForgetRequest`].
#[derive(actix::Message)]
#[rtype(result = "Result<String, TypedError>")]
pub(crate) struct Request {
    pub(crate) value: Value,
    pub(crate) timeout: Duration,
    pub(crate) retry: bool,
    pub(crate) reply: oneshot::Sender<Result<Value, TypedError>>,
}

impl Handler<Request> for Router {
    type Result = Result<String, TypedError>;

    fn handle(&mut self, req: Request, ctx: &mut Context<Self>) -> Self::Result {
        let Some(pointer) = self.correlation.as_ref().map(|c| c.request.clone()) else {
            return Err(TypedError::Encode(CodecError::new(BadPointer(
                "(no correlation configured)".into(),
            ))));
        };
        if self.pending.len() >= self.max_pending {
            // Callers that gave up before their entry was made leave one
            // behind: clear those before refusing.
            let gone: Vec<String> = self
                .pending
                .iter()
                .filter(|(_, p)| p.reply.is_canceled())
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                self.forget(&id, ctx);
            }
            if self.pending.len() >= self.max_pending {
                return Err(TypedError::TooManyRequests);
            }
        }
        self.next_id += 1;
        let id = self.next_id.to_string();
        let mut value = req.value;
        set_at(&mut value, &pointer, Value::String(id.clone())).map_err(TypedError::Encode)?;
        let message = self.codec.encode(&value).map_err(TypedError::Encode)?;
        let receipt = self
            .send_request(message.clone())
            .map_err(TypedError::Send)?;
        let timer_id = id.clone();
        let timer = ctx.run_later(req.timeout, move |act, _| {
            if let Some(p) = act.pending.remove(&timer_id) {
                let _ = p.reply.send(Err(TypedError::Timeout));
            }
        });
        self.pending.insert(
            id.clone(),
            Pending {
                reply: req.reply,
                timer,
                retry: req.retry,
                message,
                receipt,
                cut: false,
            },
        );
        Ok(id)
    }
}

/// The caller of request `0` stopped waiting: forget it now.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(crate) struct ForgetRequest(pub(crate) String);

impl Handler<ForgetRequest> for Router {
    type Result = ();

    fn handle(&mut self, msg: ForgetRequest, ctx: &mut Context<Self>) {
        self.forget(&msg.0, ctx);
    }
}

/// Send a message that stays in the window until acknowledged.
#[derive(actix::Message)]
#[rtype(result = "Result<Delivery, TypedError>")]
pub(crate) struct SendReliable(pub(crate) Value);

impl Handler<SendReliable> for Router {
    type Result = ResponseFuture<Result<Delivery, TypedError>>;

    fn handle(&mut self, msg: SendReliable, _: &mut Context<Self>) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(async move { Err(e) }) };
        let Some(r) = &self.reliable else {
            return fail(TypedError::Encode(CodecError::new(BadPointer(
                "(no acknowledgement configured)".into(),
            ))));
        };
        let mut window = reliable::lock(&r.window);
        if window.len() >= r.max_unacked {
            return fail(TypedError::WindowFull);
        }
        let message = match self.send_with_id(msg.0, &r.request, &window.next_id()) {
            Ok(m) => m,
            Err(e) => return fail(e),
        };
        let outcome = window.insert(message);
        Box::pin(async move { outcome.await.map_err(|_| TypedError::Closed) })
    }
}

/// How many reliable messages await their ack.
#[derive(actix::Message)]
#[rtype(result = "usize")]
pub(crate) struct UnackedCount;

impl Handler<UnackedCount> for Router {
    type Result = usize;

    fn handle(&mut self, _: UnackedCount, _: &mut Context<Self>) -> usize {
        self.reliable
            .as_ref()
            .map_or(0, |r| reliable::lock(&r.window).len())
    }
}

/// How many requests await a response.
#[derive(actix::Message)]
#[rtype(result = "usize")]
pub(crate) struct PendingCount;

impl Handler<PendingCount> for Router {
    type Result = usize;

    fn handle(&mut self, _: PendingCount, _: &mut Context<Self>) -> usize {
        self.pending.len()
    }
}

/// Changes the router's subscriptions.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Configure(pub(crate) Box<dyn FnOnce(&mut Router) + Send>);

impl Handler<Configure> for Router {
    type Result = ();

    fn handle(&mut self, msg: Configure, _: &mut Context<Self>) {
        (msg.0)(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_find_and_place_ids() {
        let v = json!({"channel": "trades", "n": 7, "deep": {"k": "x"}});
        assert_eq!(key_at(&v, "/channel").as_deref(), Some("trades"));
        assert_eq!(key_at(&v, "/n").as_deref(), Some("7"));
        assert_eq!(key_at(&v, "/deep/k").as_deref(), Some("x"));
        assert_eq!(key_at(&v, "/missing"), None);
        let mut req = json!({"method": "ping", "meta": {}});
        assert!(set_at(&mut req, "/meta/id", json!("1")).is_ok());
        assert!(set_at(&mut req, "/a~1b", json!("2")).is_ok());
        assert_eq!(
            req,
            json!({"method": "ping", "meta": {"id": "1"}, "a/b": "2"})
        );
        assert!(set_at(&mut json!([1]), "/id", json!("1")).is_err());
        assert!(set_at(&mut json!({}), "id", json!("1")).is_err());
    }
}
