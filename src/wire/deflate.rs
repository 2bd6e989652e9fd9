//! permessage-deflate (RFC 7692): the offer, the server's answer, and the
//! per-link compressor and decompressor.
//!
//! The backend is zlib-rs, a Rust port of zlib (the backend flate2 offers
//! too), through its safe API: it takes window bits in both directions
//! (miniz_oxide, flate2's default, cannot), which is what `*_max_window_bits`
//! negotiate, and the memory level, which flate2 does not expose and which
//! sets most of a compressor's memory.

use std::fmt;

use actix_tether_actors::Message;
use bytes::{Bytes, BytesMut};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status};

/// The bytes a sync flush ends with; RFC 7692 §7.2.1 removes them from each
/// compressed message and §7.2.2 appends them before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Decides per message whether to compress it.
type Filter = std::sync::Arc<dyn Fn(&Message) -> bool + Send + Sync>;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub(crate) const NAME: &str = "permessage-deflate";

/// Whether the client asks for permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionMode {
    /// Not offered: frames are never compressed.
    Off,
    /// Offered; a server that declines gets an uncompressed link.
    #[default]
    Offer,
    /// Offered, and a server that declines fails the attempt
    /// (`ConnectErrorKind::Extension`).
    Require,
}

impl std::str::FromStr for CompressionMode {
    type Err = actix_tether_actors::ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(CompressionMode::Off),
            "offer" => Ok(CompressionMode::Offer),
            "require" => Ok(CompressionMode::Require),
            _ => Err(actix_tether_actors::ConfigError::Invalid {
                setting: "compression",
                requirement: "one of off, offer, require",
            }),
        }
    }
}

impl From<CompressionMode> for Compression {
    /// The default parameters in `mode`.
    fn from(mode: CompressionMode) -> Self {
        Self {
            mode,
            ..Self::offer()
        }
    }
}

/// permessage-deflate settings (RFC 7692).
///
/// The default offers the extension with `client_max_window_bits` (so that
/// a server may shrink the client's window) and nothing else: the server
/// compresses with its own window, the client with a 4 KiB window at zlib's
/// memory level 5, and messages under 256 bytes are sent uncompressed.
///
/// Memory, measured (BENCHMARKS.md): the inflater, allocated with the first
/// compressed message received, takes 47.5 KB (about 20 KB resident; zlib-rs
/// allocates a 32 KiB window whatever the server's window bits). The
/// compressor, allocated with the first message the client compresses,
/// takes 165 KB at the default settings (zlib-rs's hash table has 64 K
/// entries whatever the memory level; zlib's defaults, window 2^15 and
/// level 8, take 380 KB). A feed client that only sends small subscription
/// messages never allocates one.
#[derive(Clone)]
pub struct Compression {
    pub(crate) mode: CompressionMode,
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: Option<u8>,
    pub(crate) client_max_window_bits: u8,
    pub(crate) threshold: usize,
    pub(crate) level: u32,
    pub(crate) mem_level: u8,
    pub(crate) filter: Option<Filter>,
}

impl fmt::Debug for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compression")
            .field("mode", &self.mode)
            .field(
                "server_no_context_takeover",
                &self.server_no_context_takeover,
            )
            .field(
                "client_no_context_takeover",
                &self.client_no_context_takeover,
            )
            .field("server_max_window_bits", &self.server_max_window_bits)
            .field("client_max_window_bits", &self.client_max_window_bits)
            .field("threshold", &self.threshold)
            .field("level", &self.level)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::offer()
    }
}

impl Compression {
    /// Offered with the default parameters; declined means uncompressed.
    pub fn offer() -> Self {
        Self {
            mode: CompressionMode::Offer,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: 12,
            threshold: 256,
            level: 6,
            mem_level: 5,
            filter: None,
        }
    }

    /// Not offered.
    pub fn off() -> Self {
        Self {
            mode: CompressionMode::Off,
            ..Self::offer()
        }
    }

    /// Offered, and required: a server that declines fails the attempt.
    pub fn require() -> Self {
        Self {
            mode: CompressionMode::Require,
            ..Self::offer()
        }
    }

    /// The mode.
    pub fn mode(&self) -> CompressionMode {
        self.mode
    }

    /// Asks the server to compress each message on its own
    /// (`server_no_context_takeover`): less memory kept between messages on
    /// the server's side (the client's inflater is the same either way),
    /// worse compression of similar messages.
    pub fn server_no_context_takeover(mut self, yes: bool) -> Self {
        self.server_no_context_takeover = yes;
        self
    }

    /// Compresses each outbound message on its own and says so
    /// (`client_no_context_takeover`).
    pub fn client_no_context_takeover(mut self, yes: bool) -> Self {
        self.client_no_context_takeover = yes;
        self
    }

    /// Asks the server for a window of at most 2^`bits` bytes (8 to 15;
    /// `server_max_window_bits`): the inflater's memory. Values outside the
    /// range are clamped.
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.server_max_window_bits = bits.map(|b| b.clamp(8, 15));
        self
    }

    /// The client's own window, 2^`bits` bytes (9 to 15; a server may ask
    /// for less with `client_max_window_bits`). Values outside the range are
    /// clamped.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// Messages shorter than this are sent uncompressed (default 256 bytes).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The zlib compression level, 0 to 9 (default 6; clamped).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Decides per outbound message whether to compress it (after the
    /// threshold): return `false` for payloads that are already compressed
    /// (images, archives) or must not share a compression context with
    /// secrets (RFC 7692 §9).
    pub fn filter(mut self, f: impl Fn(&Message) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(std::sync::Arc::new(f));
        self
    }

    /// The `Sec-WebSocket-Extensions` value to offer, if any.
    pub(crate) fn offer_header(&self) -> Option<String> {
        if self.mode == CompressionMode::Off {
            return None;
        }
        let mut offer = String::from(NAME);
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            offer.push_str(&format!("; server_max_window_bits={bits}"));
        }
        offer.push_str("; client_max_window_bits");
        Some(offer)
    }

    /// Checks the server's answer (every `Sec-WebSocket-Extensions` value)
    /// against the offer: the parameters to run the link with, or `None` for
    /// an uncompressed link.
    pub(crate) fn accept<'a>(
        &self,
        answers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Agreed>, NegotiationError> {
        let mut agreed = None;
        for answer in answers {
            for ext in split_outside_quotes(answer, ',') {
                let ext = ext.trim();
                if ext.is_empty() {
                    continue;
                }
                let mut params = split_outside_quotes(ext, ';').into_iter();
                let name = params.next().unwrap_or_default().trim();
                if !name.eq_ignore_ascii_case(NAME) || self.mode == CompressionMode::Off {
                    return Err(NegotiationError(format!(
                        "the server accepted `{name}`, which was not offered"
                    )));
                }
                if agreed.is_some() {
                    return Err(NegotiationError(format!(
                        "the server accepted `{NAME}` twice"
                    )));
                }
                agreed = Some(self.parameters(params)?);
            }
        }
        match agreed {
            None if self.mode == CompressionMode::Require => Err(NegotiationError(format!(
                "the server declined `{NAME}`, which is required"
            ))),
            agreed => Ok(agreed),
        }
    }

    fn parameters<'a>(
        &self,
        params: impl Iterator<Item = &'a str>,
    ) -> Result<Agreed, NegotiationError> {
        let mut agreed = Agreed {
            server_no_context_takeover: false,
            client_no_context_takeover: self.client_no_context_takeover,
            client_max_window_bits: self.client_max_window_bits,
            level: self.level,
            mem_level: self.mem_level,
            threshold: self.threshold,
            filter: self.filter.clone(),
            text: String::from(NAME),
        };
        let mut seen: Vec<String> = Vec::new();
        for param in params {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
                None => (param.trim(), None),
            };
            let key = key.to_ascii_lowercase();
            if seen.contains(&key) {
                return Err(NegotiationError(format!("the server repeated `{key}`")));
            }
            seen.push(key.clone());
            let bare = |v: &Option<&str>| match v {
                None => Ok(()),
                Some(v) => Err(NegotiationError(format!(
                    "`{key}` takes no value, got `{v}`"
                ))),
            };
            match key.as_str() {
                "server_no_context_takeover" => {
                    bare(&value)?;
                    agreed.server_no_context_takeover = true;
                }
                "client_no_context_takeover" => {
                    bare(&value)?;
                    agreed.client_no_context_takeover = true;
                }
                "server_max_window_bits" => {
                    let bits = window_bits(&key, value)?;
                    if self
                        .server_max_window_bits
                        .is_some_and(|offered| bits > offered)
                    {
                        return Err(NegotiationError(format!(
                            "the server answered `{key}={bits}`, more than offered"
                        )));
                    }
                }
                "client_max_window_bits" => {
                    // Offered without a value: the answer must carry one.
                    let bits = window_bits(&key, value)?;
                    agreed.client_max_window_bits = agreed.client_max_window_bits.min(bits);
                }
                other => {
                    return Err(NegotiationError(format!(
                        "the server answered the unknown parameter `{other}`"
                    )))
                }
            }
            // As a header would say it: lower case, unquoted.
            agreed.text.push_str("; ");
            agreed.text.push_str(&key);
            if let Some(v) = value {
                agreed.text.push('=');
                agreed.text.push_str(v);
            }
        }
        if self.server_no_context_takeover && !agreed.server_no_context_takeover {
            return Err(NegotiationError(
                "the server did not agree to `server_no_context_takeover`, which was offered"
                    .into(),
            ));
        }
        if let Some(bits) = self.server_max_window_bits {
            if !seen.iter().any(|k| k == "server_max_window_bits") {
                return Err(NegotiationError(format!(
                    "the server did not answer `server_max_window_bits={bits}`, which was offered"
                )));
            }
        }
        Ok(agreed)
    }
}

/// Splits at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A value, without the quotes a quoted-string may put around it (RFC 7692
/// §7.1: "the value may be quoted"; a token either way).
fn unquote(v: &str) -> Result<&str, NegotiationError> {
    match v.strip_prefix('"') {
        None => Ok(v),
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\']))
            .ok_or_else(|| NegotiationError(format!("badly quoted value `{v}`"))),
    }
}

fn window_bits(key: &str, value: Option<&str>) -> Result<u8, NegotiationError> {
    let value = value.ok_or_else(|| NegotiationError(format!("`{key}` needs a value")))?;
    // RFC 7692 §7.1.2: 1*DIGIT, 8 to 15, no leading zero.
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if !value.starts_with('0') && !value.starts_with('+') => Ok(bits),
        _ => Err(NegotiationError(format!(
            "`{key}={value}` is not a window size (8 to 15)"
        ))),
    }
}

/// The server's answer did not make a valid permessage-deflate agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationError(String);

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NegotiationError {}

/// What the handshake settled for one link.
#[derive(Clone)]
pub(crate) struct Agreed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    client_max_window_bits: u8,
    level: u32,
    mem_level: u8,
    threshold: usize,
    filter: Option<Filter>,
    /// What the server agreed to, as a header value would say it.
    pub(crate) text: String,
}

impl fmt::Debug for Agreed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Agreed {
    pub(crate) fn split(self) -> (Inflater, Deflater) {
        // The server's window and context takeover need nothing of the
        // inflater: a 2^15 window reads any smaller one (zlib-rs allocates
        // 32 KiB whatever the bits), and a window kept from earlier messages
        // is harmless when the server does not refer back into it.
        let inflater = Inflater { state: None };
        let deflater = Deflater {
            // A window of 2^8 cannot be written by zlib: a server that asks
            // for it gets uncompressed messages (RSV1 is per message).
            window_bits: (self.client_max_window_bits >= 9).then_some(self.client_max_window_bits),
            state: None,
            out: Vec::new(),
            reset: self.client_no_context_takeover,
            level: self.level,
            mem_level: self.mem_level,
            threshold: self.threshold,
            filter: self.filter,
        };
        (inflater, deflater)
    }
}

/// Inflated data would exceed the bound, or is not a valid deflate stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    TooBig,
    Corrupt,
}

/// The decompressor of one link, allocated with the first compressed
/// message.
pub(crate) struct Inflater {
    state: Option<Inflate>,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

/// Output is made in steps of at most this much, so that a bound is
/// enforced without ever inflating far past it.
const STEP: usize = 16 * 1024;

impl Inflater {
    /// Inflates one frame's payload of a compressed message; `last` for its
    /// final frame. At most `limit` bytes come out: one more is an error,
    /// found before more than `STEP` bytes beyond what came out are
    /// reserved.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        limit: usize,
    ) -> Result<Bytes, InflateError> {
        let z = self.state.get_or_insert_with(|| Inflate::new(false, 15));
        // Empty: the first step of output allocates exactly its size (most
        // messages take one step).
        let mut out = BytesMut::new();
        let ended = if last && input.len() <= STEP {
            // One call for the payload and the tail: small messages are
            // most of a feed, and each call into zlib costs its setup.
            TAILED.with(|t| {
                let mut t = t.borrow_mut();
                t.clear();
                t.extend_from_slice(input);
                t.extend_from_slice(&TAIL);
                run_inflate(z, &t, &mut out, limit, TAIL.len())
            })?
        } else {
            let ended = run_inflate(z, input, &mut out, limit, 0)?;
            if last && !ended {
                run_inflate(z, &TAIL, &mut out, limit, TAIL.len())?
            } else {
                ended
            }
        };
        if ended {
            // The server ended its deflate stream with a final block (RFC
            // 7692 §7.2.3.4): what follows starts a new one.
            z.reset(false);
        }
        Ok(out.freeze())
    }
}

thread_local! {
    /// Where inflated bytes land before they are copied to a message of
    /// their exact size: zlib-rs's safe API writes into initialized memory,
    /// and zeroing a step of output per message costs more than the copy.
    /// One per thread, shared by every link on it.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A small message's last payload with the tail appended.
    static TAILED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Inflates all of `input` onto `out`, at most `limit` bytes in all; true
/// if the deflate stream ended (a final block) at the end of the input, or
/// just before its last `tail` bytes (the sync tail the client appended,
/// which a stream that ended has no use for). Input after a final block
/// starts a new stream (RFC 7692 §7.2.3.4 follows one with 0x00, the start
/// of an empty stored block that the tail completes).
fn run_inflate(
    z: &mut Inflate,
    input: &[u8],
    out: &mut BytesMut,
    limit: usize,
    tail: usize,
) -> Result<bool, InflateError> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.len() < STEP {
            scratch.resize(STEP, 0);
        }
        inflate_into(z, input, out, limit, tail, &mut scratch[..STEP])
    })
}

fn inflate_into(
    z: &mut Inflate,
    mut input: &[u8],
    out: &mut BytesMut,
    limit: usize,
    tail: usize,
    scratch: &mut [u8],
) -> Result<bool, InflateError> {
    loop {
        // Room for one byte past the limit is enough to know it was passed.
        let room = (limit + 1)
            .saturating_sub(out.len())
            .clamp(1, scratch.len());
        let (before_in, before_out) = (z.total_in(), z.total_out());
        let status = z.decompress(input, &mut scratch[..room], InflateFlush::SyncFlush);
        let used = (z.total_in() - before_in) as usize;
        let made = (z.total_out() - before_out) as usize;
        out.extend_from_slice(&scratch[..made]);
        input = &input[used..];
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        match status {
            Err(_) => return Err(InflateError::Corrupt),
            Ok(Status::StreamEnd) if input.is_empty() || input.len() == tail => return Ok(true),
            Ok(Status::StreamEnd) => z.reset(false),
            // Nothing moved although there was room: input that cannot go
            // on (zlib takes input whenever it has room to write).
            _ if used == 0 && made == 0 && !input.is_empty() => return Err(InflateError::Corrupt),
            // Everything is in and the output was not full: nothing waits.
            _ if input.is_empty() && made < room => return Ok(false),
            _ => {}
        }
    }
}

/// The compressor of one link, allocated with the first message it
/// compresses.
pub(crate) struct Deflater {
    window_bits: Option<u8>,
    state: Option<Deflate>,
    /// The last message compressed, without the flush's tail.
    out: Vec<u8>,
    reset: bool,
    level: u32,
    mem_level: u8,
    threshold: usize,
    filter: Option<Filter>,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// Whether `message` goes out compressed.
    pub(crate) fn wants(&self, message: &Message) -> bool {
        self.window_bits.is_some()
            && message.len() >= self.threshold
            && self.filter.as_ref().is_none_or(|f| f(message))
    }

    /// Compresses one message, without the sync flush's tail. `None` if the
    /// compressor failed (the message then goes out uncompressed, which RSV1
    /// per message allows, and the next one starts a new stream). Call
    /// [`Deflater::release`] once the bytes are written.
    pub(crate) fn deflate(&mut self, input: &[u8]) -> Option<&[u8]> {
        let out = &mut self.out;
        out.clear();
        let bits = self.window_bits?;
        let (level, mem_level) = (self.level, self.mem_level);
        let z = self.state.get_or_insert_with(|| {
            Deflate::new_with_config(DeflateConfig {
                level: level as i32,
                window_bits: -i32::from(bits),
                mem_level: i32::from(mem_level),
                ..DeflateConfig::default()
            })
        });
        let mut rest = input;
        loop {
            let room = (rest.len() / 2).clamp(64, STEP);
            let at = out.len();
            out.resize(at + room, 0);
            let (before_in, before_out) = (z.total_in(), z.total_out());
            let status = z.compress(rest, &mut out[at..], DeflateFlush::SyncFlush);
            let made = (z.total_out() - before_out) as usize;
            out.truncate(at + made);
            rest = &rest[(z.total_in() - before_in) as usize..];
            if status.is_err() {
                z.reset();
                return None;
            }
            // Done when all input is in and the flush fit with room to spare.
            if rest.is_empty() && made < room {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        // An empty message right after another's flush compresses to
        // nothing, and the tail the peer appends would then begin a stored
        // block instead of ending one: RFC 7692 §7.2.3.6 sends 0x00.
        if out.is_empty() {
            out.push(0);
        }
        if self.reset {
            z.reset();
        }
        Some(out)
    }

    /// Frees the output buffer after a large message, so that an idle link
    /// does not keep it.
    pub(crate) fn release(&mut self) {
        if self.out.capacity() > KEEP {
            self.out = Vec::new();
        }
    }
}

/// The compressed output kept between messages.
const KEEP: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn agreed(c: &Compression, answer: &str) -> Result<Option<String>, NegotiationError> {
        c.accept([answer]).map(|a| a.map(|a| a.text))
    }

    #[test]
    fn the_offer_carries_every_configured_parameter() {
        assert_eq!(
            Compression::offer().offer_header().as_deref(),
            Some("permessage-deflate; client_max_window_bits")
        );
        let all = Compression::require()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(Some(10));
        assert_eq!(
            all.offer_header().as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits"
            )
        );
        assert_eq!(Compression::off().offer_header(), None);
    }

    #[test]
    fn valid_answers_are_agreed() {
        let c = Compression::offer();
        assert_eq!(
            agreed(&c, "permessage-deflate").unwrap().as_deref(),
            Some(NAME)
        );
        let full = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                    server_max_window_bits=9; client_max_window_bits=\"10\"";
        assert_eq!(
            agreed(&c, full).unwrap().as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=10"
            )
        );
        // Case and spaces do not matter; no answer is an uncompressed link.
        assert!(agreed(&c, "Permessage-Deflate ;Server_No_Context_Takeover").is_ok());
        assert_eq!(c.accept([]).unwrap().map(|a| a.text), None);
        // The client's window shrinks to what the server asks.
        let a = c
            .accept(["permessage-deflate; client_max_window_bits=9"])
            .unwrap()
            .unwrap();
        assert_eq!(a.split().1.window_bits, Some(9));
        let a = c
            .accept(["permessage-deflate; client_max_window_bits=8"])
            .unwrap()
            .unwrap();
        assert_eq!(
            a.split().1.window_bits,
            None,
            "zlib cannot write 8: uncompressed"
        );
    }

    #[test]
    fn invalid_answers_fail_the_attempt() {
        let c = Compression::offer();
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; mystery",
        ] {
            assert!(agreed(&c, bad).is_err(), "{bad}");
        }
        // Declined although required; anything answered although not offered.
        assert!(Compression::require().accept([]).is_err());
        assert!(agreed(&Compression::off(), "permessage-deflate").is_err());
        // Offered a server window: the answer must carry one, no larger.
        let c = Compression::offer().server_max_window_bits(Some(10));
        assert!(agreed(&c, "permessage-deflate").is_err());
        assert!(agreed(&c, "permessage-deflate; server_max_window_bits=11").is_err());
        assert!(agreed(&c, "permessage-deflate; server_max_window_bits=10").is_ok());
        // Offered server_no_context_takeover: the answer must agree.
        let c = Compression::offer().server_no_context_takeover(true);
        assert!(agreed(&c, "permessage-deflate").is_err());
        // The error says what was wrong.
        let e = agreed(
            &Compression::offer(),
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server repeated `client_max_window_bits`"
        );
    }

    /// Inflates what our deflater wrote with a separate inflater of zlib's
    /// default window, as a server would.
    fn server_inflate(z: &mut Inflate, body: &[u8]) -> Vec<u8> {
        let mut input = body.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = vec![0u8; 1 << 20];
        let before = z.total_out();
        z.decompress(&input, &mut out, InflateFlush::SyncFlush)
            .unwrap();
        out.truncate((z.total_out() - before) as usize);
        out
    }

    #[test]
    fn deflated_messages_inflate_on_the_other_side() {
        for no_takeover in [false, true] {
            let c = Compression::offer().client_no_context_takeover(no_takeover);
            let (_, mut deflater) = c.accept(["permessage-deflate"]).unwrap().unwrap().split();
            let mut server = Inflate::new(false, 15);
            let message = br#"{"op":"order","side":"buy","qty":10}"#.repeat(10);
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let out = deflater.deflate(&message).unwrap();
                sizes.push(out.len());
                if no_takeover {
                    // Each message stands alone.
                    server = Inflate::new(false, 15);
                }
                assert_eq!(server_inflate(&mut server, out), message);
            }
            // With context takeover the second copy is a back reference.
            assert_eq!(sizes[1] < sizes[0], !no_takeover, "{sizes:?}");
        }
        // Empty messages, one after another, each stand for nothing.
        let (_, mut deflater) = Compression::offer()
            .threshold(0)
            .accept(["permessage-deflate"])
            .unwrap()
            .unwrap()
            .split();
        let mut server = Inflate::new(false, 15);
        for m in [&b""[..], b"", b"", b"after", b""] {
            let out = deflater.deflate(m).unwrap();
            assert_eq!(server_inflate(&mut server, out), m);
        }
        let (_, d) = Compression::offer()
            .threshold(100)
            .filter(|m| m.as_text().is_some())
            .accept(["permessage-deflate"])
            .unwrap()
            .unwrap()
            .split();
        assert!(!d.wants(&"short".into()), "under the threshold");
        assert!(!d.wants(&Message::from(vec![0u8; 200])), "filtered out");
        assert!(d.wants(&"x".repeat(200).into()));
    }
}
