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
    /// Lowest TLS version offered (`TLS10` … `TLS13`; rustls speaks 1.2 and 1.3 only).
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version offered.
    #[serde(default)]
    pub max_version: Option<TlsVersion>,
}

/// A client certificate chain and its key, as PEM.
pub type IdentityPem = (Vec<u8>, Vec<u8>);

/// A TLS version as Prometheus's configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0 (not spoken by rustls).
    #[serde(rename = "TLS10")]
    Tls10,
    /// TLS 1.1 (not spoken by rustls).
    #[serde(rename = "TLS11")]
    Tls11,
    /// TLS 1.2.
    #[serde(rename = "TLS12")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLS13")]
    Tls13,
}

impl TlsConfig {
    /// The protocol versions `min_version` and `max_version` allow, of those rustls speaks
    /// (a minimum below 1.2 allows 1.2 and up; a maximum below 1.2 is an error).
    pub fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
        let min = self.min_version.unwrap_or(TlsVersion::Tls12);
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        if max < TlsVersion::Tls12 {
            return Err(format!(
                "tls_config.max_version {max:?}: only TLS12 and TLS13 are supported"
            ));
        }
        if min > max {
            return Err(format!(
                "tls_config: min_version {min:?} is above max_version {max:?}"
            ));
        }
        let mut v = Vec::new();
        if min <= TlsVersion::Tls12 {
            v.push(&rustls::version::TLS12);
        }
        if max >= TlsVersion::Tls13 {
            v.push(&rustls::version::TLS13);
        }
        Ok(v)
    }

    /// The CA certificates (PEM) configured, from `ca` or `ca_file`.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, String> {
        pem("ca", &self.ca, &self.ca_file)
    }

    /// The client certificate and key (PEM) configured, if any; one without the other is
    /// an error.
    pub fn identity_pem(&self) -> Result<Option<IdentityPem>, String> {
        match (
            pem("cert", &self.cert, &self.cert_file)?,
            pem("key", &self.key, &self.key_file)?,
        ) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            _ => Err("tls_config needs both cert_file and key_file".into()),
        }
    }
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
    match t.ca_pem()? {
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
        .with_protocol_versions(&t.versions()?)
        .map_err(|e| format!("tls_config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match t.identity_pem()? {
        Some((c, k)) => {
            let chain = CertificateDer::pem_slice_iter(&c)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls_config.cert: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(&k).map_err(|e| format!("tls_config.key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls_config.cert/key: {e}"))?
        }
        None => builder.with_no_client_auth(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> TlsConfig {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn versions_follow_min_and_max() {
        let v = |y: &str| {
            cfg(y)
                .versions()
                .map(|v| v.iter().map(|p| p.version).collect::<Vec<_>>())
        };
        use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(v("{}").unwrap(), vec![TLSv1_2, TLSv1_3]);
        assert_eq!(v("{min_version: TLS10}").unwrap(), vec![TLSv1_2, TLSv1_3]);
        assert_eq!(v("{min_version: TLS13}").unwrap(), vec![TLSv1_3]);
        assert_eq!(v("{max_version: TLS12}").unwrap(), vec![TLSv1_2]);
        assert!(
            v("{max_version: TLS11}")
                .unwrap_err()
                .contains("max_version")
        );
        assert!(
            v("{min_version: TLS13, max_version: TLS12}")
                .unwrap_err()
                .contains("above")
        );
        assert!(yaml_serde::from_str::<TlsConfig>("{min_version: SSL3}").is_err());
    }

    #[test]
    fn a_certificate_without_its_key_is_named() {
        let t = cfg("{cert: x}");
        assert!(t.identity_pem().unwrap_err().contains("key_file"));
        assert!(client_config(&t).is_err());
    }
}
