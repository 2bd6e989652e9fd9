//! Command-line parsing, kept apart from the validated client configuration
//! it produces.

use std::path::PathBuf;
use std::time::Duration;

use std::hash::{DefaultHasher, Hash, Hasher};

use actix_tether::{
    ClientBuilder, CompressionMode, ConnectError, ConnectErrorKind, ConnectRequest, Jitter,
    Message, OverflowPolicy, Proxy,
};
use clap::Parser;

/// Output formats, signals and exit statuses, after the options in `--help`.
const AFTER_HELP: &str = "\
Output: in text mode, each inbound text message is one line on stdout and
each binary message one line `[binary N bytes] BASE64`; events go to stderr.
With --json, stdout has one JSON object per line: inbound messages as
{\"event\":\"message\",\"data\":TEXT} or {\"event\":\"message\",\"base64\":B64},
and the events (connected, disconnected, reconnecting, dropped, closed, ...).

Signals: SIGINT (Ctrl-C) and SIGTERM deliver what is queued within
--close-timeout, close with 1000, report every line left unwritten (a
`dropped` event with --json) and exit; a second signal, or one while the
program is already closing (--exit-on-eof, after giving up), exits at once.
A closed stdout (`tether URL | head -1`) stops the program the same way.

Exit status: 0 done, 1 gave up or left lines undelivered, 2 invalid
arguments, 130 or 143 on a second SIGINT or SIGTERM.";

/// A resilient WebSocket client: stdin lines out, inbound messages on stdout,
/// reconnecting with backoff. Without a URL it connects to an embedded demo
/// feed that drops its clients every few seconds.
#[derive(Debug, Parser)]
#[command(name = "tether", version, after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// ws://, wss://, http:// or https:// URLs: the first is the primary,
    /// the rest are fallbacks in order; none starts the demo server.
    #[arg(value_name = "URL")]
    pub(crate) urls: Vec<String>,
    /// A text message written first on every link, before any stdin line
    /// (a login, a subscription; repeatable, in order).
    /// [default: none]
    #[arg(long = "on-connect", value_name = "TEXT")]
    pub(crate) on_connect: Vec<String>,
    /// Rotate each link before it is this old: open a new one, switch, close
    /// the old one with 1000 (nothing lost).
    /// [default: none: links are not rotated]
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    max_age: Option<Duration>,
    /// Hold stdin lines on each link until an inbound text message
    /// containing TEXT arrives on it (after the --on-connect messages).
    /// [default: none]
    #[arg(long, value_name = "TEXT")]
    ready_pattern: Option<String>,
    /// How long a link waits for --ready-pattern before it counts as a
    /// failed attempt.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "10s")]
    ready_timeout: Option<Duration>,
    /// After this long on a fallback URL, move back to the primary (make
    /// before break).
    /// [default: none: stay on a fallback until it fails]
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    return_to_primary: Option<Duration>,
    /// Consecutive failed attempts on one URL before moving to the next.
    #[arg(long, value_name = "N", default_value = "2")]
    failover_after: Option<u32>,
    /// Run CMD (with sh -c) before every attempt and send the first line it
    /// prints as the Authorization header (a fresh token per attempt). It
    /// shares the connect timeout; a failure is retried.
    /// [default: none]
    #[arg(long, value_name = "CMD")]
    auth_command: Option<String>,
    /// A server close code that ends the program (exit 1) instead of a
    /// reconnect (repeatable).
    /// [default: none]
    #[arg(long = "fatal-close-code", value_name = "CODE")]
    fatal_close_codes: Vec<u16>,
    /// Drop inbound JSON messages whose top-level FIELD (a number or a
    /// string) a rotation's other link already delivered.
    /// [default: none]
    #[arg(long, value_name = "FIELD")]
    dedup_key: Option<String>,
    /// Print one JSON object per event on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// At stdin EOF, deliver everything queued, close with 1000 and exit.
    #[arg(long)]
    pub(crate) exit_on_eof: bool,
    /// First retry delay.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "500ms")]
    backoff_initial: Option<Duration>,
    /// Largest retry delay.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "30s")]
    backoff_max: Option<Duration>,
    /// Growth factor of the retry delay.
    #[arg(long, value_name = "FACTOR", default_value = "2")]
    backoff_factor: Option<f64>,
    /// Jitter mode: none, full, equal, decorrelated.
    #[arg(long, value_name = "MODE", default_value = "full")]
    jitter: Option<Jitter>,
    /// Give up after this many consecutive failed retries.
    /// [default: none: retry forever]
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
    /// Uptime after which the backoff starts over.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "5s")]
    min_uptime: Option<Duration>,
    /// Time between pings (0s disables pings).
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "20s")]
    ping_interval: Option<Duration>,
    /// How long a ping may go unanswered.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "10s")]
    pong_timeout: Option<Duration>,
    /// Most queued outbound messages.
    #[arg(long, value_name = "N", default_value = "1024")]
    pub(crate) queue_size: Option<usize>,
    /// Most queued outbound bytes (e.g. 64KiB).
    #[arg(long, value_parser = size, value_name = "SIZE", default_value = "8MiB")]
    queue_bytes: Option<usize>,
    /// What a full queue does with a stdin line: reject, drop-oldest, or
    /// wait (stop reading stdin until there is room).
    #[arg(long, value_name = "POLICY", default_value = "reject")]
    pub(crate) overflow: Option<OverflowPolicy>,
    /// Request header 'Name: value' (repeatable).
    /// [default: none]
    #[arg(short = 'H', long = "header", value_parser = header, value_name = "HEADER")]
    headers: Vec<(String, String)>,
    /// Subprotocol to offer (repeatable).
    /// [default: none]
    #[arg(long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// Largest inbound message (e.g. 16MiB).
    #[arg(long, value_parser = size, value_name = "SIZE", default_value = "16MiB")]
    max_message_size: Option<usize>,
    /// Bound on connect plus handshake.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "10s")]
    connect_timeout: Option<Duration>,
    /// A write with no progress for this long ends the link (0s waits
    /// forever).
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "30s")]
    write_timeout: Option<Duration>,
    /// Longest server Retry-After honoured.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "5m")]
    max_retry_after: Option<Duration>,
    /// Keep written messages until a Pong confirms them and write the
    /// unconfirmed tail again after a reconnect (at least once).
    #[arg(long)]
    replay_unconfirmed: bool,
    /// permessage-deflate: off, offer (used if the server agrees) or
    /// require (a server that declines fails the attempt).
    #[arg(long, value_name = "MODE", default_value = "offer")]
    compression: CompressionMode,
    /// Bound on draining and closing at exit.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "5s")]
    pub(crate) close_timeout: Duration,
    /// Connect through this proxy: http://, https://, socks5:// (the client
    /// resolves names) or socks5h:// (the proxy does), credentials in the
    /// URL. Without it, http_proxy/HTTP_PROXY (ws://),
    /// https_proxy/HTTPS_PROXY (wss://) and all_proxy/ALL_PROXY are read.
    /// [default: from the environment]
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Hosts reached without a proxy, in NO_PROXY syntax (comma-separated
    /// names, which match their subdomains, addresses, CIDR ranges, or *);
    /// applies to --proxy too and replaces NO_PROXY.
    /// [default: NO_PROXY, no_proxy]
    #[arg(long = "no-proxy", value_name = "LIST")]
    no_proxy: Option<String>,
    /// Trust the certificates of this PEM bundle, in addition to the
    /// built-in roots.
    /// [default: none: the built-in roots]
    #[arg(long = "ca-file", value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Present this PEM client certificate chain (with --key).
    /// [default: none]
    #[arg(long, value_name = "PATH", requires = "key")]
    cert: Option<PathBuf>,
    /// The PEM private key of --cert (PKCS#8, RSA or SEC1).
    /// [default: none]
    #[arg(long, value_name = "PATH", requires = "cert")]
    key: Option<PathBuf>,
    /// Accept any server certificate, unverified (prints a warning).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Serve the client's metrics at http://ADDR/metrics in the Prometheus
    /// text format (e.g. 127.0.0.1:9898).
    /// [default: none: not served]
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// Print a `stats` event (the client's counters) at this interval.
    /// [default: none: not printed]
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub(crate) stats: Option<Duration>,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 250ms or 5s ({e})"))
}

fn size(s: &str) -> Result<usize, String> {
    let bytes = s
        .parse::<bytesize::ByteSize>()
        .map_err(|_| format!("`{s}` is not a size like 64KiB or 16MiB"))?;
    usize::try_from(bytes.as_u64()).map_err(|_| format!("`{s}` is too large"))
}

fn header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("`{s}` is not a header like 'Name: value'")),
    }
}

impl Args {
    /// The client configuration these arguments describe; the builder checks
    /// the values when it starts.
    ///
    /// `demo` says the URL is the embedded demo server's, which the
    /// environment's proxies cannot reach (a `--proxy` still applies).
    pub(crate) fn builder(
        &self,
        primary: String,
        fallbacks: &[String],
        demo: bool,
    ) -> Result<ClientBuilder, String> {
        let mut b = ClientBuilder::new(primary);
        b = self.reach(b, demo)?;
        for url in fallbacks {
            b = b.fallback(url.clone());
        }
        if !self.on_connect.is_empty() {
            let setup: Vec<Message> = self
                .on_connect
                .iter()
                .map(|t| Message::from(t.as_str()))
                .collect();
            b = b.on_connect(move |_| setup.clone());
        }
        if let Some(age) = self.max_age {
            b = b.max_connection_age(age);
        }
        if !self.fatal_close_codes.is_empty() {
            b = b.fatal_close_codes(self.fatal_close_codes.clone());
        }
        if let Some(field) = self.dedup_key.clone() {
            b = b.dedup_key(move |m| json_key(m, &field));
        }
        if let Some(cmd) = self.auth_command.clone() {
            let (headers, protocols) = (self.headers.clone(), self.protocols.clone());
            b = b.request_provider_async(move |attempt| {
                let request = ConnectRequest {
                    url: attempt.url.clone(),
                    headers: headers.clone(),
                    protocols: protocols.clone(),
                };
                auth_request(cmd.clone(), request)
            });
        }
        if let Some(pattern) = self.ready_pattern.clone() {
            b = b.ready_gate(move |m| m.as_text().is_some_and(|t| t.contains(pattern.as_str())));
        }
        for (name, value) in &self.headers {
            b = b.header(name, value);
        }
        for p in &self.protocols {
            b = b.protocol(p);
        }
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    b = b.$field(v);
                }
            )*};
        }
        set!(
            backoff_initial,
            backoff_max,
            backoff_factor,
            jitter,
            max_retries,
            min_uptime,
            pong_timeout,
            queue_size,
            queue_bytes,
            overflow,
            max_message_size,
            connect_timeout,
            max_retry_after,
            ready_timeout,
            return_to_primary,
            failover_after
        );
        match self.write_timeout {
            Some(d) if d.is_zero() => b = b.no_write_timeout(),
            Some(d) => b = b.write_timeout(d),
            None => {}
        }
        match self.ping_interval {
            Some(d) if d.is_zero() => b = b.no_ping(),
            Some(d) => b = b.ping_interval(d),
            None => {}
        }
        Ok(b.replay_unconfirmed(self.replay_unconfirmed)
            .compression(self.compression.into())
            .close_timeout(self.close_timeout))
    }

    /// The proxy and TLS flags.
    fn reach(&self, mut b: ClientBuilder, demo: bool) -> Result<ClientBuilder, String> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
        };
        if let Some(url) = &self.proxy {
            b = b.proxy(Proxy::all(url).map_err(|e| format!("--proxy: {e}"))?);
        } else if demo {
            b = b.proxy_from_env(false);
        }
        if let Some(list) = &self.no_proxy {
            b = b.no_proxy(list.clone());
        }
        if let Some(path) = &self.ca_file {
            b = b.add_root_certificate(read("--ca-file", path)?);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            b = b.identity(read("--cert", cert)?, read("--key", key)?);
        }
        Ok(b.danger_accept_invalid_certs(self.insecure))
    }
}

/// `--dedup-key`: the message's top-level `field`, a number as it is, a
/// string hashed.
fn json_key(m: &Message, field: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(m.as_text()?).ok()?;
    match v.get(field)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => {
            let mut h = DefaultHasher::new();
            s.hash(&mut h);
            Some(h.finish())
        }
        _ => None,
    }
}

/// `--auth-command`: runs `cmd` and adds its first line as the
/// Authorization header of `request`. Killed if the attempt's timeout
/// drops it first.
async fn auth_request(
    cmd: String,
    mut request: ConnectRequest,
) -> Result<ConnectRequest, ConnectError> {
    let out = tokio::process::Command::new("sh")
        .args(["-c", &cmd])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ConnectError::with_source(ConnectErrorKind::Io, e))?;
    if !out.status.success() {
        return Err(ConnectError::with_source(
            ConnectErrorKind::Io,
            format!("--auth-command failed ({})", out.status),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    request.headers.push(("Authorization".to_owned(), token));
    Ok(request)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_human_values() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(duration("soon").is_err());
        assert_eq!(size("64KiB"), Ok(64 * 1024));
        assert_eq!(size("16MiB"), Ok(16 << 20));
        assert!(size("lots").is_err());
        assert_eq!(header("X-A:  b c "), Ok(("X-A".into(), "b c".into())));
        assert!(header("novalue").is_err());
        assert!(header(": v").is_err());
    }

    #[test]
    fn the_defaults_help_shows_are_the_librarys() {
        use actix_tether::engine::{BackoffPolicy, Config, QueueLimits};
        let a = Args::try_parse_from(["tether"]).unwrap();
        let c = Config::default();
        let backoff = BackoffPolicy::default();
        let queue = QueueLimits::default();
        assert_eq!(a.backoff_initial, Some(backoff.initial()));
        assert_eq!(a.backoff_max, Some(backoff.max()));
        assert_eq!(a.backoff_factor, Some(backoff.factor()));
        assert_eq!(a.jitter, Some(backoff.jitter()));
        assert_eq!(a.min_uptime, Some(c.min_uptime));
        assert_eq!(a.ping_interval, c.heartbeat.ping_interval);
        assert_eq!(a.pong_timeout, Some(c.heartbeat.pong_timeout));
        assert_eq!(a.queue_size, Some(queue.max_messages()));
        assert_eq!(a.queue_bytes, Some(queue.max_bytes()));
        assert_eq!(a.overflow, Some(queue.policy()));
        assert_eq!(a.max_message_size, Some(c.max_message_size));
        assert_eq!(a.connect_timeout, Some(c.connect_timeout));
        assert_eq!(a.write_timeout, c.write_timeout);
        assert_eq!(a.max_retry_after, Some(c.max_retry_after));
        assert_eq!(a.ready_timeout, Some(c.feed.ready_timeout));
        assert_eq!(a.failover_after, Some(c.feed.failover_after));
        assert_eq!(a.max_retries, c.max_retries);
    }

    #[test]
    fn help_shows_a_default_for_every_option_that_takes_a_value() {
        let help = <Args as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        // Each option's heading line and the text under it.
        let mut options: Vec<String> = Vec::new();
        for line in help.lines() {
            if line.trim_start().starts_with('-') {
                options.push(line.trim_start().to_owned());
            } else if let Some(last) = options.last_mut() {
                last.push_str(line);
            }
        }
        let taking: Vec<&String> = options
            .iter()
            .filter(|o| {
                o.split_once("  ")
                    .is_some_and(|(head, _)| head.contains('<'))
            })
            .collect();
        assert!(taking.len() > 30, "{help}");
        for option in taking {
            assert!(option.contains("[default: "), "no default shown: {option}");
        }
    }

    #[test]
    fn dedup_keys_come_from_a_top_level_field() {
        let key = |t: &str| json_key(&Message::from(t), "id");
        assert_eq!(key(r#"{"id": 7}"#), Some(7));
        assert_eq!(key(r#"{"id": "a"}"#), key(r#"{"id": "a", "x": 1}"#));
        assert_ne!(key(r#"{"id": "a"}"#), key(r#"{"id": "b"}"#));
        assert_eq!(key(r#"{"other": 7}"#), None);
        assert_eq!(key("not json"), None);
    }
}
