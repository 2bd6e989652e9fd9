//! The rustls configuration for wss:// and https:// proxies: the built-in
//! roots, and what the builder adds (root certificates, a client
//! identity, the OS trust store, or no verification at all).

use std::io;
use std::sync::{Arc, OnceLock};

use actix_tether_actors::{ConfigError, ConnectErrorKind};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What the builder says about TLS.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    /// PEM bundles, each with one or more certificates.
    pub(crate) roots: Vec<Vec<u8>>,
    /// A PEM certificate chain and its PEM key.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) accept_invalid_certs: bool,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

impl TlsOptions {
    pub(crate) fn is_default(&self) -> bool {
        self.roots.is_empty() && self.identity.is_none() && !self.accept_invalid_certs
    }

    /// The configuration these options make; without options, the one
    /// every client shares.
    pub(crate) fn config(&self) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
        if self.is_default() {
            default_config()
        } else {
            build(self)
        }
    }
}

/// The built-in roots (webpki; with the `native-roots` feature the OS
/// store too), ring, TLS 1.2 and 1.3, ALPN `http/1.1` (a WebSocket upgrade
/// needs HTTP/1.1; a server that picks h2 could not upgrade).
///
/// Built once per process and shared: the root store alone is a few
/// kilobytes, which thousands of clients need not hold each.
pub(crate) fn default_config() -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, ConfigError>> = OnceLock::new();
    CONFIG.get_or_init(|| build(&TlsOptions::default())).clone()
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidTls {
        setting,
        reason: reason.into(),
    }
}

/// The certificates of a PEM bundle; none is an error.
fn certificates(
    setting: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(setting, format!("the PEM does not parse: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(setting, "no CERTIFICATE block in the PEM"));
    }
    Ok(certs)
}

fn build(options: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| ConfigError::TlsUnavailable)?;
    let builder = if options.accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        #[cfg(feature = "native-roots")]
        {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "a certificate of the OS trust store was not loaded");
            }
            let (_, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::warn!(
                    ignored,
                    "certificates of the OS trust store were not usable"
                );
            }
        }
        for pem in &options.roots {
            for cert in certificates("add_root_certificate", pem)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid("add_root_certificate", e.to_string()))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &options.identity {
        Some((chain, key)) => {
            let chain = certificates("identity", chain)?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
                invalid(
                    "identity",
                    format!("no PKCS#8, RSA or SEC1 private key in the PEM: {e}"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("identity", e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How a failed TLS handshake is classified, if the failure came from
/// rustls: a certificate the client does not trust is
/// [`ConnectErrorKind::Certificate`], anything else rustls refused
/// [`ConnectErrorKind::Tls`]. A handshake cut in the middle is not a rustls
/// error (`None`), and is retried like any lost connection.
pub(crate) fn failure_kind(e: &io::Error) -> Option<ConnectErrorKind> {
    let error = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match error {
        rustls::Error::InvalidCertificate(_) => ConnectErrorKind::Certificate,
        _ => ConnectErrorKind::Tls,
    })
}

/// `danger_accept_invalid_certs`: any certificate is taken as the server's,
/// but the handshake's signatures are still checked, so the session is
/// still with whoever holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

    #[test]
    fn bad_pem_is_a_typed_error() {
        let options = TlsOptions {
            roots: vec![b"not a certificate".to_vec()],
            ..TlsOptions::default()
        };
        match options.config() {
            Err(ConfigError::InvalidTls { setting, .. }) => {
                assert_eq!(setting, "add_root_certificate")
            }
            other => panic!("{other:?}"),
        }
        let options = TlsOptions {
            identity: Some((Vec::new(), b"-----BEGIN NOTHING-----".to_vec())),
            ..TlsOptions::default()
        };
        assert!(matches!(
            options.config(),
            Err(ConfigError::InvalidTls {
                setting: "identity",
                ..
            })
        ));
    }
}
