//! `tether`: a resilient WebSocket client on the command line.
//!
//! Each stdin line goes out as a text message (queued while disconnected);
//! inbound text goes to stdout. Exit codes: 0 done, 1 gave up or left
//! messages undelivered, 2 invalid arguments, 130 or 143 on a second SIGINT
//! or SIGTERM (the first drains and closes).

mod args;
mod lines;
mod observe;
mod output;
mod signals;
mod writer;

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::{Client, Message, OverflowPolicy, Undelivered};
use clap::Parser;
use futures::channel::mpsc;
use futures::StreamExt;
use tokio::io::AsyncBufReadExt;

use args::Args;
use lines::Lines;
use output::{Printer, Terminal};
use signals::Signals;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("tether: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (out, writer, stdout_closed) = writer::start();
    let system = actix_rt::System::new();
    let code = system.block_on(run(args, out.clone(), stdout_closed));
    // Every line printed so far reaches its stream before the exit.
    writer.flush(&out);
    // Exit now: dropping the runtime would wait for the thread blocked
    // reading stdin, so a script piping into `tether` would hang after a
    // fatal refusal until its stdin closed.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(i32::from(code))
}

async fn run(
    args: Args,
    out: tokio::sync::mpsc::Sender<writer::Out>,
    stdout_closed: tokio::sync::oneshot::Receiver<()>,
) -> u8 {
    // Caught from the start: a signal during the first connect drains and
    // closes too.
    let mut signals = Signals::catch();
    let mut stdout_closed = std::pin::pin!(async move {
        let failed_write = async {
            if stdout_closed.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = failed_write => {}
            () = writer::reader_gone() => {}
        }
    });
    let demo = match args.urls.first() {
        Some(_) => None,
        None => match DemoServer::start(DemoConfig::default()) {
            Ok(d) => {
                eprintln!("tether: demo feed at {} (Ctrl-C to stop)", d.url());
                Some(d)
            }
            Err(e) => {
                eprintln!("tether: cannot start the demo server: {e}");
                return 1;
            }
        },
    };
    let (primary, fallbacks) = match (args.urls.split_first(), &demo) {
        (Some((primary, fallbacks)), _) => (primary.clone(), fallbacks),
        (None, Some(d)) => (d.url(), &[][..]),
        (None, None) => return 1,
    };
    // Installed before the client starts, so that its handles report here.
    let metrics = match args.metrics_addr.map(observe::serve_metrics) {
        None => None,
        Some(Ok(server)) => Some(server),
        Some(Err(e)) => {
            if let Some(addr) = args.metrics_addr {
                eprintln!("tether: cannot serve metrics at {addr}: {e}");
            }
            return 2;
        }
    };
    let (terminal_tx, mut terminal) = mpsc::unbounded();
    // The queue's size, and room for the lines read while a drop is on its
    // way to the printer.
    let remembered = args.queue_size.unwrap_or(1024).saturating_add(65_536);
    let lines = Rc::new(RefCell::new(Lines::new(remembered)));
    let printer = Printer {
        json: args.json,
        out: out.clone(),
        terminal: terminal_tx,
        lines: lines.clone(),
        gave_up: false,
    }
    .start();
    let builder = match args.builder(primary, fallbacks, args.urls.is_empty()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tether: {e}");
            return 2;
        }
    };
    if args.insecure {
        eprintln!(
            "tether: warning: --insecure: server certificates are not verified; \
             anyone on the path can pose as the server"
        );
    }
    let client = match builder
        .subscribe(printer.clone().recipient())
        .subscribe_events(printer.recipient())
        .start()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tether: {e}");
            return 2;
        }
    };
    if let Some(interval) = args.stats {
        let (weak, out) = (client.downgrade(), out.clone());
        actix_rt::spawn(observe::report_stats(weak, interval, args.json, out));
    }
    let input = Input {
        out: &out,
        json: args.json,
        wait: args.overflow == Some(OverflowPolicy::Wait),
        lines: &lines,
        refused: &Cell::new(0),
    };
    // One loop, so that the client's end is handled to completion: a close
    // begun when the client gives up is not dropped because stdin ended
    // meanwhile (a dropped close would leave the lines unreported).
    let mut pump = std::pin::pin!(pump_stdin(&client, input));
    let mut stdin_done = false;
    let code = loop {
        tokio::select! {
            () = &mut pump, if !stdin_done => {
                if args.exit_on_eof {
                    let ending = finish(&client, args.close_timeout, &mut terminal, input);
                    break unless_signalled(ending, &mut signals).await;
                }
                stdin_done = true;
            }
            t = terminal.next() => match t {
                Some(Terminal::Closed) => break 0,
                Some(Terminal::GaveUp) | None => {
                    let ending = async {
                        // What was still queued will not be sent: say so,
                        // line by line.
                        if let Ok(left) = client.close(args.close_timeout).await {
                            input.not_sent(&left, "the client gave up").await;
                        }
                        // Lines stdin already holds (or one being sent when
                        // the client gave up) are refused now: report them,
                        // for at most a moment, whatever stdin does after.
                        if !stdin_done {
                            let _ = tokio::time::timeout(STDIN_GRACE, &mut pump).await;
                        }
                        1
                    };
                    break unless_signalled(ending, &mut signals).await;
                }
            },
            // A signal, or a reader that went away: deliver what is queued
            // within the close timeout, close with 1000 and report every
            // line not sent, as at stdin's end with `--exit-on-eof`.
            caught = signals.next() => {
                eprintln!("tether: {}: closing", caught.name());
                let ending = finish(&client, args.close_timeout, &mut terminal, input);
                break unless_signalled(ending, &mut signals).await;
            }
            () = &mut stdout_closed => {
                eprintln!("tether: stdout closed: closing");
                let ending = finish(&client, args.close_timeout, &mut terminal, input);
                break unless_signalled(ending, &mut signals).await;
            }
        }
    };
    if let Some(d) = demo {
        d.stop().await;
    }
    if let Some(m) = metrics {
        m.stop(false).await;
    }
    code
}

/// After the client gives up, how long stdin is still read so that the lines
/// it already holds are reported as not sent.
const STDIN_GRACE: Duration = Duration::from_millis(50);

/// How stdin lines go in, and how those not sent are reported.
#[derive(Debug, Clone, Copy)]
struct Input<'a> {
    out: &'a tokio::sync::mpsc::Sender<writer::Out>,
    json: bool,
    /// `--overflow wait`: a full queue makes reading stdin wait; otherwise
    /// the overflow policy applies to each line.
    wait: bool,
    lines: &'a RefCell<Lines>,
    /// Lines not accepted (refused by a full queue, not UTF-8, unreadable).
    refused: &'a Cell<u64>,
}

impl Input<'_> {
    /// Reports queued messages that were not delivered, each with its line:
    /// those written but not confirmed by a Pong (possibly delivered), then
    /// those never sent.
    async fn not_sent(&self, left: &Undelivered, reason: &str) {
        let maybe = format!("{reason} (written, not confirmed: possibly delivered)");
        let numbers = |messages: &[Message]| -> Vec<Option<u64>> {
            let lines = self.lines.borrow();
            messages.iter().map(|m| lines.line_of(m)).collect()
        };
        for n in numbers(&left.possibly_delivered) {
            output::line_refused(self.out, self.json, n, &maybe).await;
        }
        for n in numbers(&left.unsent) {
            output::line_refused(self.out, self.json, n, reason).await;
        }
    }
}

/// Sends each stdin line, until stdin ends. Every line not accepted is
/// reported (a JSON `dropped` event with `--json`) and counted in
/// `input.refused`.
async fn pump_stdin(client: &Client, input: Input<'_>) {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut raw = Vec::new();
    let mut number = 0u64;
    let refused = || input.refused.set(input.refused.get() + 1);
    loop {
        raw.clear();
        match stdin.read_until(b'\n', &mut raw).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                eprintln!("tether: cannot read stdin: {e}");
                refused();
                return;
            }
        }
        number += 1;
        let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(text) = std::str::from_utf8(line) else {
            output::line_refused(input.out, input.json, Some(number), "not valid UTF-8").await;
            refused();
            continue;
        };
        let message = Message::from(text);
        let tracked = message.clone();
        let sent = if input.wait {
            client.send(message).await
        } else {
            client.try_send(message)
        };
        match sent {
            Ok(()) => input.lines.borrow_mut().accepted(&tracked, number),
            Err(e) => {
                output::line_refused(input.out, input.json, Some(number), &e.to_string()).await;
                refused();
            }
        }
    }
}

/// At stdin's end with `--exit-on-eof`, on a signal or a closed stdout:
/// deliver everything, close, and report; 0 if every line was delivered.
async fn finish(
    client: &Client,
    close_timeout: Duration,
    terminal: &mut mpsc::UnboundedReceiver<Terminal>,
    input: Input<'_>,
) -> u8 {
    let dropped = client.stats().await.map(|s| s.dropped).unwrap_or(0);
    let closed = close_and_report(client.close(close_timeout), terminal, input).await;
    match closed {
        Some(Closed {
            unsent: 0,
            gave_up: false,
        }) if input.refused.get() == 0 && dropped == 0 => 0,
        _ => 1,
    }
}

/// Runs `ending` (the program's drain and close) unless a signal comes
/// first: then the program exits at once.
async fn unless_signalled(
    ending: impl std::future::Future<Output = u8>,
    signals: &mut Signals,
) -> u8 {
    tokio::select! {
        code = ending => code,
        again = signals.next() => {
            eprintln!("tether: {}: exiting now", again.name());
            std::process::exit(again.at_once());
        }
    }
}

/// How a close ended: messages left undelivered, and whether the client
/// had given up.
struct Closed {
    unsent: usize,
    gave_up: bool,
}

/// Waits for `closing`, reports the lines it did not deliver and lets the
/// printer write the final events; `None` if the close failed.
async fn close_and_report(
    closing: impl std::future::Future<Output = Result<Undelivered, actix_tether::CloseError>>,
    terminal: &mut mpsc::UnboundedReceiver<Terminal>,
    input: Input<'_>,
) -> Option<Closed> {
    let unsent = match closing.await {
        Ok(unsent) => {
            input
                .not_sent(&unsent, "not delivered before the close timeout")
                .await;
            unsent.len()
        }
        Err(e) => {
            eprintln!("tether: {e}");
            return None;
        }
    };
    let mut gave_up = false;
    while let Ok(Some(t)) = actix_rt::time::timeout(Duration::from_secs(1), terminal.next()).await {
        match t {
            Terminal::GaveUp => gave_up = true,
            Terminal::Closed => break,
        }
    }
    if unsent > 0 {
        eprintln!("tether: {unsent} queued messages were not delivered");
    }
    Some(Closed { unsent, gave_up })
}
