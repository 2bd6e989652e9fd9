//! An actor subscribed from inside its own context: one wake per socket
//! read, one `Handler<Inbound>` call per message.
//!
//! A [`Recipient<Inbound>`](actix::Recipient) costs every message a boxed
//! envelope, the mailbox's atomics and a mailbox poll, and actix lets
//! nothing batch behind it (an envelope can only be packed from one
//! message, and a crate cannot add handlers to the application's actors).
//! What actix does allow is a future spawned into the actor's own context:
//! it holds the actor mutably while it runs, so it can call the actor's
//! handler for each message of a read it takes from a channel. The channel
//! is a [`MessageStream`]: bounded like every subscriber (its capacity in
//! reads, then the read-ahead, then `SubscriberStalled`), forgotten by the
//! client once the actor stops.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix::dev::MessageResponse;
use actix::fut::ActorFuture;
use actix::{Actor, AsyncContext, Handler};
use futures::Stream;

use crate::events::Inbound;
use crate::stream::MessageStream;

/// Messages handled in one turn before the actor's mailbox and its other
/// futures get theirs: a flood from another thread never starves them.
const TURN: usize = 1024;

/// Feeds a client's inbound messages to the actor whose context runs it.
pub(crate) struct Pump<A> {
    messages: MessageStream,
    actor: PhantomData<fn(&mut A)>,
}

impl<A> Pump<A> {
    pub(crate) fn new(messages: MessageStream) -> Self {
        Self {
            messages,
            actor: PhantomData,
        }
    }
}

impl<A> ActorFuture<A> for Pump<A>
where
    A: Actor + Handler<Inbound>,
    A::Context: AsyncContext<A>,
{
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut A::Context,
        task: &mut Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..TURN {
            // A handler that made the actor wait (`ctx.wait`) or stop holds
            // the rest back, as the mailbox does; the context polls this
            // future again once the wait is over.
            if ctx.waiting() {
                return Poll::Pending;
            }
            match Pin::new(&mut this.messages).poll_next(task) {
                Poll::Ready(Some(m)) => {
                    <A as Handler<Inbound>>::handle(act, Inbound(m), ctx).handle(ctx, None);
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        task.waker().wake_by_ref();
        Poll::Pending
    }
}
