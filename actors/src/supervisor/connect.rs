//! Attempts: the request, the link, its connection actor and its setup
//! lane (the lifecycle is on [`Supervisor`]).

use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use futures::FutureExt;

use super::{Current, Opened, Opening, Supervisor};
use crate::connection::{Connection, Role};
use crate::error::{ConnectError, ConnectErrorKind, DisconnectReason, ErrorChain};
use crate::events::{Event, State};
use crate::frame::Message;
use crate::hooks::Attempt;
use crate::messages::{Attach, ConnectInfo};
use crate::transport::{ConnectRequest, Link};

impl Supervisor {
    /// The attempt `number` on `endpoint`, as the request provider sees it.
    pub(super) fn attempt_info(&self, number: u32, endpoint: usize, rotation: bool) -> Attempt {
        Attempt {
            number,
            endpoint,
            url: self.urls.get(endpoint).cloned().unwrap_or_default(),
            rotation,
        }
    }

    /// Asks the provider for a request and opens a link with it, both
    /// within the connect timeout.
    pub(super) fn open(&mut self, attempt: &Attempt) -> impl ActorFuture<Self, Output = Opened> {
        fn failed(e: ConnectError, act: &mut Supervisor) -> Opening {
            Box::pin(futures::future::ready(Err(e)).into_actor(act))
        }
        let timeout = self.config.connect_timeout;
        let deadline = crate::time::saturating_add(Instant::now(), timeout);
        let requested = tokio::time::timeout_at(deadline, (self.provider)(attempt));
        let number = attempt.number;
        requested.into_actor(self).then(move |res, act, _| {
            let request = match res {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return failed(e, act),
                Err(_) => {
                    let e = ConnectError::with_source(
                        ConnectErrorKind::Timeout,
                        "the request provider did not answer within the connect timeout",
                    );
                    return failed(e, act);
                }
            };
            let span = tracing::info_span!(
                "ws_connect",
                url = %act.shown_url(&request),
                attempt = number,
                outcome = tracing::field::Empty,
            );
            let offered = request.protocols.clone();
            let connect = act.transport.connect(&request, timeout);
            let fut = tokio::time::timeout_at(deadline, connect).map(move |r| {
                let link = match r {
                    Ok(r) => r,
                    Err(_) => Err(ConnectError::new(ConnectErrorKind::Timeout)),
                }
                .and_then(|link| check_protocol(link, &offered));
                match &link {
                    Ok(_) => {
                        span.record("outcome", "connected");
                    }
                    Err(e) => {
                        span.record("outcome", tracing::field::display(e));
                        tracing::info!(parent: &span, error = %ErrorChain(e), "connect failed");
                    }
                }
                link.map(|l| (l, request, span))
            });
            Box::pin(fut.into_actor(act)) as Opening
        })
    }

    /// What the reconnect budget adds to an attempt that would start at
    /// `at` (taking its token).
    pub(super) fn budget_wait(&self, at: Instant) -> Duration {
        self.budget
            .as_ref()
            .map_or(Duration::ZERO, |b| b.reserve(at))
    }

    /// Waits `delay`, and what the budget adds, then attempts. Returns the
    /// whole wait.
    pub(super) fn schedule_attempt(
        &mut self,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) -> Duration {
        let now = Instant::now();
        let wait = delay.saturating_add(self.budget_wait(crate::time::saturating_add(now, delay)));
        self.attempt_after(wait, ctx);
        wait
    }

    /// Attempts once `wait` has passed.
    pub(super) fn attempt_after(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        self.next_attempt_at = Instant::now().checked_add(wait);
        self.pending = Some(ctx.run_later(wait, |act, ctx| act.try_connect(ctx)));
    }

    pub(super) fn try_connect(&mut self, ctx: &mut Context<Self>) {
        self.pending = None;
        self.next_attempt_at = None;
        let number = self.policy.begin_attempt();
        self.attempts_total = self.attempts_total.saturating_add(1);
        if !self.closing() {
            self.set_state(State::Connecting);
        }
        self.hub.publish(Event::Connecting { attempt: number });
        let attempt = self.attempt_info(number, self.endpoints.current(), false);
        let endpoint = attempt.endpoint;
        let handle = ctx.spawn(self.open(&attempt).map(move |res, act, ctx| {
            act.pending = None;
            match res {
                Ok((link, request, span)) => act.on_link(link, &request, endpoint, span, ctx),
                Err(e) => act.after_down(DisconnectReason::ConnectFailed(e), None, ctx),
            }
        }));
        self.pending = Some(handle);
    }

    /// Starts a connection actor on `link`; `role` says whether it delivers
    /// at once or stands by for a rotation.
    pub(super) fn start_link(
        &mut self,
        link: Link,
        request: &ConnectRequest,
        endpoint: usize,
        role: Role,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) -> (Current, Option<String>, Option<String>) {
        self.next_link += 1;
        let id = self.next_link;
        let protocol = link.protocol.clone();
        let extensions = link.extensions.clone();
        let conn = Connection::new(
            id,
            link,
            self.config.clone(),
            self.hub.clone(),
            ctx.address().recipient(),
            role,
            span,
        );
        self.handoff.put(id, conn.writer());
        let addr = conn.start();
        let current = Current {
            id,
            addr,
            since: Instant::now(),
            endpoint,
            url: self.shown_url(request),
        };
        (current, protocol, extensions)
    }

    /// The setup lane of a new link: the application's hook first
    /// (authentication, subscriptions), then the sources layers added
    /// (re-sends of unacknowledged messages), each in its own order. The
    /// hook learns from `info.closing` that it may skip resubscribing.
    pub(super) fn setup_lane(&mut self, info: &ConnectInfo) -> Vec<Message> {
        let mut setup = Vec::new();
        if let Some(hook) = &mut self.on_connect {
            setup.extend(hook(info));
        }
        for source in &mut self.setup_sources {
            setup.extend(source(info));
        }
        setup
    }

    pub(super) fn on_link(
        &mut self,
        link: Link,
        request: &ConnectRequest,
        endpoint: usize,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        let (current, protocol, extensions) =
            self.start_link(link, request, endpoint, Role::Active, span, ctx);
        let id = current.id;
        if self.ever_connected {
            self.reconnects += 1;
        }
        self.ever_connected = true;
        if !self.closing() {
            self.state = State::Connected;
        }
        // Before the event: a subscriber that asks the handle finds it.
        self.hub.shared.set_state(self.state, true);
        let attempt = self.policy.attempt();
        self.hub.publish(Event::Connected {
            attempt,
            url: current.url.clone(),
            endpoint,
            protocol: protocol.clone(),
            extensions,
        });
        let info = ConnectInfo {
            attempt,
            link: id,
            protocol,
            closing: self.closing(),
            rotation: false,
        };
        // Every link, a closing client's too, gets its setup lane before the
        // backlog.
        let setup = self.setup_lane(&info);
        self.queue.do_send(Attach {
            link: id,
            setup,
            gated: self.gated,
        });
        self.current = Some(current);
        if self.closing() {
            self.drain_then_close(ctx);
        } else {
            self.arm_rotation_timer(ctx);
        }
    }
}

fn check_protocol(link: Link, offered: &[String]) -> Result<Link, ConnectError> {
    match &link.protocol {
        Some(p) if !offered.iter().any(|o| o == p) => Err(ConnectError::with_source(
            ConnectErrorKind::ProtocolMismatch,
            format!("server selected `{p}`, offered {offered:?}"),
        )),
        _ => Ok(link),
    }
}
