//! The heartbeat actor: pings, measures round trips, declares dead links.
//!
//! Lifecycle: started by each connection actor when its link is up, and
//! stopped by it when the link ends (an actor with a timer never stops on its
//! own). It asks for a ping every interval; the writer numbers each Ping as
//! it writes it (its payload is a delivery barrier, see `delivery.rs`), and a
//! Pong to that Ping or a later one (a peer may answer only the latest)
//! records the RTT.
//! When no such pong arrives within the pong timeout the heartbeat tells the
//! connection the link is dead and stops; the connection drops the link and
//! the supervisor reconnects. With `any_frame_is_alive`, any inbound frame
//! since the ping also counts. With a silence timeout, a link that receives
//! nothing at all for that long is declared dead as well. While the
//! connection has stopped reading to let a slow subscriber catch up, the link
//! is not judged: its answer may be waiting, unread, in the socket.
//!
//! A busy uplink is not a dead peer: the Pong to a Ping comes only after the
//! peer has read everything written before the Ping, which on a slow link
//! can take longer than the pong timeout. When the timeout passes and, since
//! the Ping or the last check, the socket accepted more bytes than may sit
//! unsent in the kernel (`FrameWriter::unsent_bound`), some of them left
//! for the peer, whose TCP therefore took them: the deadline moves one pong
//! timeout on. A peer that stops reading stops that (the window closes, the
//! kernel's unsent bytes reach their bound, writes wait) and is declared
//! dead one pong timeout later; so is a blackholed peer, and a link that
//! only trickles (less than the bound per pong timeout) gets no extension
//! at all.

use std::rc::Rc;

use actix::prelude::*;
use actix_rt::time::Instant;

use crate::config::HeartbeatConfig;
use crate::error::DisconnectReason;
use crate::hub::Hub;
use crate::messages::{FromHeartbeat, Pong, StopHeartbeat};

struct Outstanding {
    /// The heartbeat's own count of pings, to match its deadline checks.
    seq: u64,
    /// The number the Ping asked for gets, at least: a Pong to it or to any
    /// later Ping answers.
    number: u64,
    sent_at: Instant,
    frames_at_send: u64,
    /// Bytes accepted below the writer at the ping, then at each extension
    /// of its deadline.
    accepted_at_check: u64,
}

pub(crate) struct Heartbeat {
    /// The parent, reached only through the message it is sent.
    connection: Recipient<FromHeartbeat>,
    hub: Rc<Hub>,
    config: HeartbeatConfig,
    seq: u64,
    outstanding: Option<Outstanding>,
    frames_at_silence_check: u64,
}

impl Heartbeat {
    pub(crate) fn new(
        connection: Recipient<FromHeartbeat>,
        hub: Rc<Hub>,
        config: HeartbeatConfig,
    ) -> Self {
        Self {
            connection,
            hub,
            config,
            seq: 0,
            outstanding: None,
            frames_at_silence_check: 0,
        }
    }

    fn frames(&self) -> u64 {
        self.hub.counters.frames_in.get()
    }

    fn accepted(&self) -> u64 {
        self.hub.counters.bytes_accepted.get()
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.outstanding.is_some() {
            // The previous ping's deadline has not passed yet (pong timeout
            // longer than the interval): one ping in flight at a time.
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.outstanding = Some(Outstanding {
            seq,
            number: self.hub.delivery.borrow().next_ping(),
            sent_at: Instant::now(),
            frames_at_send: self.frames(),
            accepted_at_check: self.accepted(),
        });
        self.connection.do_send(FromHeartbeat::Ping);
        ctx.run_later(self.config.pong_timeout, move |act, ctx| {
            act.check_pong(seq, ctx)
        });
    }

    fn check_pong(&mut self, seq: u64, ctx: &mut Context<Self>) {
        let accepted = self.accepted();
        let bound = self.hub.counters.unsent_bound.get();
        let frames = self.frames();
        let reading_paused = self.hub.reading.is_closed();
        let Some(out) = &mut self.outstanding else {
            return;
        };
        if out.seq != seq {
            return;
        }
        let heard = self.config.any_frame_is_alive && frames != out.frames_at_send;
        if heard || reading_paused {
            self.outstanding = None;
            return;
        }
        if accepted.saturating_sub(out.accepted_at_check) > bound {
            out.accepted_at_check = accepted;
            ctx.run_later(self.config.pong_timeout, move |act, ctx| {
                act.check_pong(seq, ctx)
            });
            return;
        }
        self.dead(DisconnectReason::PongTimeout(self.config.pong_timeout), ctx);
    }

    fn check_silence(&mut self, ctx: &mut Context<Self>) {
        let Some(timeout) = self.config.silence_timeout else {
            return;
        };
        let frames = self.frames();
        if frames == self.frames_at_silence_check && !self.hub.reading.is_closed() {
            self.dead(DisconnectReason::Silence(timeout), ctx);
            return;
        }
        self.frames_at_silence_check = frames;
        ctx.run_later(timeout, |act, ctx| act.check_silence(ctx));
    }

    fn dead(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        self.connection.do_send(FromHeartbeat::Dead(reason));
        ctx.stop();
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(interval) = self.config.ping_interval {
            ctx.run_interval(interval, |act, ctx| act.tick(ctx));
        }
        if let Some(timeout) = self.config.silence_timeout {
            self.frames_at_silence_check = self.frames();
            ctx.run_later(timeout, |act, ctx| act.check_silence(ctx));
        }
    }
}

impl Handler<Pong> for Heartbeat {
    type Result = ();

    fn handle(&mut self, msg: Pong, _: &mut Context<Self>) {
        let Some(out) = &self.outstanding else {
            return;
        };
        if msg.0 >= out.number {
            self.hub.counters.rtt(out.sent_at.elapsed());
            self.outstanding = None;
        }
    }
}

impl Handler<StopHeartbeat> for Heartbeat {
    type Result = ();

    fn handle(&mut self, _: StopHeartbeat, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
