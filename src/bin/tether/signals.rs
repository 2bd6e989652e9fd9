//! What stops `tether` from outside: SIGINT (Ctrl-C) and SIGTERM (`docker
//! stop`, systemd, Kubernetes) each drain what is queued, close with 1000
//! and exit; a signal while the program is already ending (after a first
//! signal, at stdin's end with `--exit-on-eof`, after giving up) exits at
//! once.

use std::future::pending;

#[cfg(unix)]
use actix_rt::signal::unix::{signal, Signal, SignalKind};

/// A signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caught {
    Interrupt,
    Terminate,
}

impl Caught {
    /// The exit status when it exits at once: 128 plus the signal's
    /// number, as a shell reports a process the signal killed.
    pub(crate) fn at_once(self) -> i32 {
        match self {
            Caught::Interrupt => 130,
            Caught::Terminate => 143,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Caught::Interrupt => "SIGINT",
            Caught::Terminate => "SIGTERM",
        }
    }
}

/// SIGINT and SIGTERM, caught from the start (a signal that comes before
/// anyone waits is kept for the next wait).
#[cfg(unix)]
pub(crate) struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

#[cfg(unix)]
impl Signals {
    /// Catches both signals; one that cannot be caught keeps its default
    /// action (it ends the program), which is said on stderr.
    pub(crate) fn catch() -> Self {
        let catch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("tether: cannot catch {name}: {e}");
                None
            }
        };
        Self {
            interrupt: catch(SignalKind::interrupt(), "SIGINT"),
            terminate: catch(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// The next signal.
    pub(crate) async fn next(&mut self) -> Caught {
        async fn recv(s: &mut Option<Signal>) {
            let received = match s {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            if !received {
                pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => Caught::Interrupt,
            () = recv(&mut self.terminate) => Caught::Terminate,
        }
    }
}

/// Elsewhere, Ctrl-C only.
#[cfg(not(unix))]
pub(crate) struct Signals;

#[cfg(not(unix))]
impl Signals {
    pub(crate) fn catch() -> Self {
        Signals
    }

    pub(crate) async fn next(&mut self) -> Caught {
        if actix_rt::signal::ctrl_c().await.is_err() {
            pending::<()>().await;
        }
        Caught::Interrupt
    }
}
