//! Prometheus's client `tls_config` (scrapes, notifications, alert forwarding), built on
//! rustls with the ring provider as Prometheus's is on Go's: CA certificates from a file or inline (the
//! public roots when neither is set), a client certificate for mutual TLS, a
//! `server_name` the server's certificate is verified against instead of the URL's host,
//! and `insecure_skip_verify`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use serde::Deserialize;

/// `tls_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates (PEM) to verify the server with, instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default)]
    pub ca: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default)]
    pub cert: Option<String>,
    /// Client key (PEM) for mutual TLS.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default)]
    pub key: Option<String>,
    /// Name to verify the server's certificate against.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// PEM from inline `text` or `file` (at most one), named `what` in errors.
fn pem(
    what: &str,
    text: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<Vec<u8>>, String> {
    match (text, file) {
        (Some(_), Some(_)) => Err(format!("tls_config: set {what} or {what}_file, not both")),
        (Some(t), None) => Ok(Some(t.clone().into_bytes())),
        (None, Some(f)) => std::fs::read(f)
            .map(Some)
            .map_err(|e| format!("reading {what}_file {}: {e}", f.display())),
        (None, None) => Ok(None),
    }
}

/// The rustls client configuration `t` asks for.
pub fn client_config(t: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match pem("ca", &t.ca, &t.ca_file)? {
        Some(p) => {
            for c in CertificateDer::pem_slice_iter(&p) {
                let c = c.map_err(|e| format!("tls_config.ca: not a PEM certificate: {e}"))?;
                roots.add(c).map_err(|e| format!("tls_config.ca: {e}"))?;
            }
            if roots.is_empty() {
                return Err("tls_config.ca holds no certificate".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let roots = (!t.insecure_skip_verify)
        .then(|| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("tls_config: {e}"))
        })
        .transpose()?;
    let name = t
        .server_name
        .as_ref()
        .map(|n| {
            ServerName::try_from(n.clone())
                .map_err(|e| format!("tls_config.server_name {n:?}: {e}"))
        })
        .transpose()?;
    let verifier = Arc::new(Verifier {
        roots,
        name,
        provider: Arc::clone(&provider),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls_config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cert = pem("cert", &t.cert, &t.cert_file)?;
    let key = pem("key", &t.key, &t.key_file)?;
    let mut cfg = match (cert, key) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_slice_iter(&c)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls_config.cert: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(&k).map_err(|e| format!("tls_config.key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls_config.cert/key: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("tls_config needs both cert_file and key_file".into()),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The server-certificate check a `tls_config` asks for: against the roots, for the
/// configured `server_name` (Prometheus's) or else the URL's host; with
/// `insecure_skip_verify` none (`roots` is `None`). The handshake's signatures are
/// checked either way, so the connection is encrypted to whoever answered.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<WebPkiServerVerifier>>,
    name: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.roots {
            Some(v) => v.verify_server_cert(
                end_entity,
                intermediates,
                self.name.as_ref().unwrap_or(server_name),
                ocsp,
                now,
            ),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
