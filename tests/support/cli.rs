//! Running the `tether` program as a user runs it.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// What happens to tether's stdin once `stdin` is written.
#[derive(Clone, Copy)]
pub enum Stdin {
    /// Closed at once.
    Close,
    /// Held open this long, then closed.
    HoldFor(Duration),
    /// Held open until the program exits (a script that keeps its pipe).
    KeepOpen,
}

/// Runs tether with `args`, writing `stdin`; kills it if it is still running
/// 30 s after its stdin closed (or after start, with `KeepOpen`).
pub fn run_tether(args: &[&str], stdin: &str, how: Stdin) -> Run {
    run_tether_env(args, &[], stdin, how)
}

/// [`run_tether`] with these environment variables set.
pub fn run_tether_env(args: &[&str], env: &[(&str, &str)], stdin: &str, how: Stdin) -> Run {
    let (mut child, mut input) = spawn_tether_env(args, env);
    // A program that exits early closes its stdin; that is not our failure.
    let _ = input.write_all(stdin.as_bytes());
    let open = match how {
        Stdin::Close => {
            drop(input);
            None
        }
        Stdin::HoldFor(d) => {
            std::thread::sleep(d);
            drop(input);
            None
        }
        Stdin::KeepOpen => Some(input),
    };
    let code = wait_exit(&mut child, Duration::from_secs(30));
    drop(open);
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code,
        stdout,
        stderr,
    }
}

/// The proxy variables tether would read: removed from every run, so that
/// a machine's own proxy settings do not reach the tests.
pub const PROXY_VARS: [&str; 9] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
];

/// Starts tether with `args` and its streams piped; stdin taken out.
pub fn spawn_tether<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Child, ChildStdin) {
    spawn_tether_env(args, &[])
}

/// [`spawn_tether`] with these environment variables set (and no others
/// of [`PROXY_VARS`]).
pub fn spawn_tether_env<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &str)],
) -> (Child, ChildStdin) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    let mut child = command
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Waits up to `limit` for `child` to exit, then kills it; its status code
/// (`None` if it was killed, by us or by a signal).
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`run_tether`] off the test's event loop, so that in-process servers keep
/// serving meanwhile.
pub async fn tether_async(args: Vec<String>, stdin: &'static str, how: Stdin) -> Run {
    tether_async_env(args, Vec::new(), stdin, how).await
}

/// [`tether_async`] with these environment variables set.
pub async fn tether_async_env(
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: &'static str,
    how: Stdin,
) -> Run {
    actix_rt::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_tether_env(&args, &env, stdin, how)
    })
    .await
    .unwrap()
}

/// One JSON value per stdout line.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A loopback URL where nothing listens.
pub fn down_url() -> String {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!("ws://{free}/")
}
