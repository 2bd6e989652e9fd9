//! Where `tether`'s output goes: a thread of its own writes stdout and
//! stderr, fed through a bounded channel, so that a stalled stdout (a pipe
//! nobody reads) stalls the printing actor, a subscriber like any other
//! (the read-ahead fills, `SubscriberStalled` is reported), and never the
//! client's arbiter, whose heartbeat and Pongs go on.

use std::io::Write;

use tokio::sync::mpsc;

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
/// in the order sent.
pub(crate) fn start() -> (mpsc::Sender<Out>, Writer) {
    let (tx, mut rx) = mpsc::channel::<Out>(LINES);
    let running = std::thread::Builder::new()
        .name("tether-output".into())
        .spawn(move || {
            while let Some(out) = rx.blocking_recv() {
                // A closed stdout (`tether | head`) is not worth a panic:
                // the line is dropped and the program goes on.
                let _ = match out {
                    Out::Stdout(text) => writeln!(std::io::stdout().lock(), "{text}"),
                    Out::Stderr(text) => writeln!(std::io::stderr().lock(), "{text}"),
                    Out::Flush(done) => {
                        let _ = std::io::stdout().flush();
                        let _ = done.send(());
                        Ok(())
                    }
                };
            }
        })
        .is_ok();
    (tx, Writer { running })
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
