//! Where `tether`'s output goes: a thread of its own writes stdout and
//! stderr, fed through a bounded channel, so that a stalled stdout (a pipe
//! nobody reads) stalls the printing actor, a subscriber like any other
//! (the read-ahead fills, `SubscriberStalled` is reported), and never the
//! client's arbiter, whose heartbeat and Pongs go on. A closed stdout (the
//! reader went away: `tether URL | head -1`) is reported once, so that the
//! program can close and exit: when a write fails with a broken pipe, or,
//! for a pipe, as soon as its reader is gone, even if nothing more is
//! written ([`reader_gone`]).

use std::io::{ErrorKind, Write};

use tokio::sync::{mpsc, oneshot};

/// Lines that may wait for the writer thread; then the printer waits.
const LINES: usize = 1024;

/// One line, for stdout or stderr.
#[derive(Debug)]
pub(crate) enum Out {
    Stdout(String),
    Stderr(String),
    /// Answered once every line before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The writer thread, if it could be started (without it, lines are
/// dropped: the client runs on).
pub(crate) struct Writer {
    running: bool,
}

/// Starts the writer thread: lines sent to the returned sender are written
/// in the order sent. The receiver learns when stdout is closed (a write
/// failed with a broken pipe); lines for stdout are dropped from then on.
pub(crate) fn start() -> (mpsc::Sender<Out>, Writer, oneshot::Receiver<()>) {
    let (tx, mut rx) = mpsc::channel::<Out>(LINES);
    let (closed_tx, closed) = oneshot::channel();
    let running = std::thread::Builder::new()
        .name("tether-output".into())
        .spawn(move || {
            let mut closed_tx = Some(closed_tx);
            while let Some(out) = rx.blocking_recv() {
                let stdout = match out {
                    Out::Stdout(text) => writeln!(std::io::stdout().lock(), "{text}"),
                    // A failing stderr drops the line; the program goes on.
                    Out::Stderr(text) => {
                        let _ = writeln!(std::io::stderr().lock(), "{text}");
                        Ok(())
                    }
                    Out::Flush(done) => {
                        let flushed = std::io::stdout().flush();
                        let _ = done.send(());
                        flushed
                    }
                };
                if stdout.is_err_and(|e| e.kind() == ErrorKind::BrokenPipe) {
                    if let Some(tx) = closed_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        })
        .is_ok();
    (tx, Writer { running }, closed)
}

impl Writer {
    /// Waits until every line sent through `out` so far is written (called
    /// outside the runtime: it blocks). The thread is not joined: the
    /// actors still hold senders, and the program exits next.
    pub(crate) fn flush(self, out: &mpsc::Sender<Out>) {
        let (done, written) = std::sync::mpsc::channel();
        if self.running && out.blocking_send(Out::Flush(done)).is_ok() {
            let _ = written.recv();
        }
    }
}

/// Resolves once stdout is a pipe whose reader has gone (the kernel
/// reports an error on the pipe's write end), even if nothing is written
/// meanwhile; never for a terminal, a file, or where it cannot tell.
#[cfg(unix)]
pub(crate) async fn reader_gone() {
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    // `with_interest` is deprecated because a registered descriptor must
    // outlive its registration (I/O safety); stdout's descriptor lives as
    // long as the process.
    #[allow(deprecated)]
    let registered = AsyncFd::with_interest(std::io::stdout(), Interest::ERROR);
    // Files and /dev/null cannot be watched (EPERM): their writes tell.
    let Ok(fd) = registered else {
        return std::future::pending().await;
    };
    loop {
        match fd.ready(Interest::ERROR).await {
            Ok(guard) if guard.ready().is_error() => return,
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => return std::future::pending().await,
        }
    }
}

/// Elsewhere, only a failed write tells.
#[cfg(not(unix))]
pub(crate) async fn reader_gone() {
    std::future::pending().await
}
