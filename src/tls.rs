//! The default rustls configuration for wss://.

use std::sync::{Arc, OnceLock};

use actix_tether_actors::ConfigError;
use rustls::crypto::ring;

/// webpki roots, ring, TLS 1.2 and 1.3, ALPN `http/1.1` (a WebSocket upgrade
/// needs HTTP/1.1; a server that picks h2 could not upgrade).
///
/// Built once per process and shared: the root store alone is a few
/// kilobytes, which thousands of clients need not hold each.
pub(crate) fn default_config() -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, ConfigError>> = OnceLock::new();
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|_| ConfigError::TlsUnavailable)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_share_one_default_config() {
        match (default_config(), default_config()) {
            (Ok(a), Ok(b)) => assert!(Arc::ptr_eq(&a, &b)),
            other => panic!("default TLS config unavailable: {other:?}"),
        }
    }
}
