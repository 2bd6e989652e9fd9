//! Attempts: the request, the link, its connection actor and its setup
//! lane (the lifecycle is on [`Supervisor`]).

use actix::prelude::*;
use actix_rt::time::Instant;
use futures::FutureExt;

use super::{Current, Fresh, Input, Opened, Opening, Supervisor};
use crate::connection::{Connection, Role};
use crate::error::{ConnectError, ConnectErrorKind, DisconnectReason, ErrorChain};
use crate::events::Event;
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
        let (number, endpoint) = (attempt.number, attempt.endpoint);
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
                parent: &act.hub.span,
                "ws_connect",
                url = %act.shown_url(&request),
                attempt = number,
                endpoint,
                outcome = tracing::field::Empty,
                proxy = tracing::field::Empty,
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
                    Ok(link) => {
                        span.record("outcome", "connected");
                        if let Some(proxy) = &link.proxy {
                            span.record("proxy", proxy.as_str());
                        }
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

    /// Starts attempt `number` on `endpoint`; the lifecycle learns whether
    /// it opened a link.
    pub(super) fn try_connect(&mut self, number: u32, endpoint: usize, ctx: &mut Context<Self>) {
        self.attempts_total = self.attempts_total.saturating_add(1);
        let attempt = self.attempt_info(number, endpoint, false);
        let handle = ctx.spawn(self.open(&attempt).map(move |res, act, ctx| {
            act.pending = None;
            let input = match res {
                Ok((link, request, span)) => {
                    act.fresh = Some(Fresh {
                        link,
                        request,
                        endpoint,
                        span,
                    });
                    Input::Opened
                }
                Err(e) => Input::Down {
                    reason: DisconnectReason::ConnectFailed(e),
                    uptime: None,
                    backlog: act.backlog(),
                },
            };
            act.feed(input, ctx);
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
        let url = self.shown_url(request);
        // The link's own span, from its attempt's: the connection logs in
        // it and records why it ended.
        let span = {
            let attempt = span;
            let span = tracing::info_span!(
                parent: &self.hub.span,
                "ws_link",
                link = id,
                endpoint,
                url = %url,
                protocol = protocol.as_deref(),
                extensions = extensions.as_deref(),
                proxy = link.proxy.as_deref(),
                reason = tracing::field::Empty,
            );
            span.follows_from(&attempt);
            span
        };
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
            url,
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

    /// The link an attempt opened becomes the current one (the state
    /// handles read says so already: a subscriber that asks on `Connected`
    /// finds it).
    pub(super) fn on_link(
        &mut self,
        fresh: Fresh,
        attempt: u32,
        closing: bool,
        ctx: &mut Context<Self>,
    ) {
        let Fresh {
            link,
            request,
            endpoint,
            span,
        } = fresh;
        let proxy = link.proxy.clone();
        let (current, protocol, extensions) =
            self.start_link(link, &request, endpoint, Role::Active, span, ctx);
        let id = current.id;
        if self.ever_connected {
            self.reconnects += 1;
        }
        self.ever_connected = true;
        self.hub.publish(Event::Connected {
            attempt,
            url: current.url.clone(),
            endpoint,
            protocol: protocol.clone(),
            extensions,
            proxy,
        });
        let info = ConnectInfo {
            attempt,
            link: id,
            protocol,
            closing,
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
