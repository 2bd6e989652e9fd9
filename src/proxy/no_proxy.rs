//! The no-proxy list, as curl and reqwest read `NO_PROXY`.
//!
//! - Entries are separated by commas; whitespace around them is trimmed and
//!   empty entries are skipped.
//! - `*` alone matches every host, names and addresses alike.
//! - A name matches itself and its subdomains: `example.com` and
//!   `.example.com` both match `example.com` and `a.b.example.com`, not
//!   `notexample.com`. Case does not matter; a trailing dot is ignored, and
//!   so is a leading `*.`.
//! - An IP address matches itself; a CIDR range (`10.0.0.0/8`,
//!   `fd00::/8`) every address in it. IPv6 may be written in brackets.
//! - A port on an entry (`example.com:8080`, `[::1]:9001`) is ignored: the
//!   entry matches the host on every port.
//!
//! Loopback is not special: `127.0.0.1` and `localhost` go through the
//! proxy unless the list names them (curl and reqwest agree; Go differs).

use std::net::IpAddr;

use ipnet::IpNet;

/// A parsed no-proxy list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    everything: bool,
    networks: Vec<IpNet>,
    /// Lower case, without leading or trailing dots.
    names: Vec<String>,
}

impl NoProxy {
    /// Parses a list; entries that are neither addresses nor ranges are
    /// names, so parsing cannot fail.
    pub(crate) fn parse(list: &str) -> Self {
        let mut no = NoProxy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                no.everything = true;
                continue;
            }
            let host = without_port(entry);
            if let Ok(net) = host.parse::<IpNet>() {
                no.networks.push(net);
            } else if let Ok(ip) = host.parse::<IpAddr>() {
                no.networks.push(IpNet::from(ip));
            } else {
                let name = host.trim_start_matches("*.").trim_matches('.');
                if !name.is_empty() {
                    no.names.push(name.to_ascii_lowercase());
                }
            }
        }
        no
    }

    /// Whether `host` (a name, or an address with or without IPv6
    /// brackets) bypasses the proxy.
    pub(crate) fn matches(&self, host: &str) -> bool {
        if self.everything {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.networks.iter().any(|net| net.contains(&ip));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|name| {
            host == *name
                || (host.len() > name.len()
                    && host.ends_with(name.as_str())
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.')
        })
    }
}

/// An entry without its port: `[::1]:80` is `::1`, `host:80` is `host`; a
/// bare IPv6 address (more than one colon) and a CIDR range are kept.
fn without_port(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(inside, _)| inside);
    }
    match entry.rsplit_once(':') {
        Some((host, port))
            if !host.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => entry,
    }
}
