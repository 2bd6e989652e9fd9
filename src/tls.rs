//! The default rustls configuration for wss://.

use std::sync::Arc;

use actix_tether_actors::ConfigError;
use rustls::crypto::ring;

/// webpki roots, ring, TLS 1.2 and 1.3, ALPN `http/1.1` (a WebSocket upgrade
/// needs HTTP/1.1; a server that picks h2 could not upgrade).
pub(crate) fn default_config() -> Result<Arc<rustls::ClientConfig>, ConfigError> {
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
