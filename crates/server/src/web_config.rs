//! The web configuration file (`--web.config.file`) in the Prometheus exporter-toolkit
//! format, used as is: TLS for the HTTP server (`tls_server_config`, on rustls with the
//! ring provider; `client_allowed_sans` for DNS names and IP addresses), response headers
//! (`http_server_config.headers`), basic-auth users (`basic_auth_users`, bcrypt hashes)
//! and the server-wide `rate_limit` (429 beyond it; the open health probes are exempt,
//! so a flood does not get the server restarted by its orchestrator).
//!
//! Everything the file asks for is either done or refused with an error naming the key:
//! rustls speaks TLS 1.2 and 1.3 only, offers the AEAD cipher suites only and the curves
//! X25519, P-256 and P-384, and verifies every client certificate it accepts, so
//! `TLS10`/`TLS11`, CBC suites, `CurveP521`, `RequestClientCert` and
//! `RequireAnyClientCert` are named errors. The server speaks HTTP/1.1 (`http2` is
//! accepted and has no effect).
//!
//! [`WebSecurity`] holds the file's current contents for the server: the file is read
//! again when it changes (checked at most once a second, on new connections and
//! requests) and on SIGHUP; a file that no longer loads keeps the previous settings and
//! is logged. Connections already open keep going.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::Error;

fn invalid(key: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        key,
        message: message.into(),
    }
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: HttpServerConfig,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    rate_limit: Option<RateLimitFile>,
}

/// `rate_limit` as written: one request per `interval`, bursts of up to `burst`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    interval: Option<String>,
    burst: Option<u32>,
}

/// The server-wide request rate `rate_limit` allows (exporter-toolkit's): a token bucket
/// refilled with one token per `interval`, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Time to earn one request.
    pub interval: Duration,
    /// Requests that may arrive at once.
    pub burst: u32,
}

/// The bucket a [`RateLimit`] draws from.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            tokens: f64::INFINITY,
            last: Instant::now(),
        }
    }
}

impl Bucket {
    /// Takes one token if `limit` allows it now.
    pub(crate) fn take(&mut self, limit: RateLimit) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() / limit.interval.as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + earned).min(f64::from(limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A loaded web configuration.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// The TLS settings; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Headers added to every response.
    pub headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
    /// Basic-auth users and their bcrypt hashes; empty: no basic auth.
    pub users: BTreeMap<String, String>,
    /// The server-wide request rate limit, if any.
    pub rate_limit: Option<RateLimit>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("headers", &self.headers.len())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks `path`; relative file names in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and checks the file's text; `dir` resolves relative file names.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, Error> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            yaml_serde::from_str(text).map_err(|e| Error::Format(e.to_string()))?
        };
        let rate_limit = match file.rate_limit {
            None => None,
            Some(r) => {
                let interval = r
                    .interval
                    .as_deref()
                    .map(lookout_model::parse_duration)
                    .transpose()
                    .map_err(|e| invalid("rate_limit.interval", e))?
                    .unwrap_or_default();
                let burst = r.burst.unwrap_or(0);
                if interval.is_zero() {
                    // exporter-toolkit: a zero interval is no limit at all.
                    None
                } else if burst == 0 {
                    return Err(invalid(
                        "rate_limit.burst",
                        "must be at least 1 (0 would refuse every request)",
                    ));
                } else {
                    Some(RateLimit { interval, burst })
                }
            }
        };
        for (user, hash) in &file.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                return Err(invalid(
                    "basic_auth_users",
                    format!("invalid user name {user:?}"),
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(
                    "basic_auth_users",
                    format!("the password of {user:?} is not a bcrypt hash"),
                ));
            }
        }
        let _ = file.http_server_config.http2;
        Ok(Self {
            tls: file
                .tls_server_config
                .map(|t| tls(&t, dir).map(Arc::new))
                .transpose()?,
            headers: headers(&file.http_server_config.headers)?,
            users: file.basic_auth_users,
            rate_limit,
        })
    }
}

/// The response headers exporter-toolkit allows, checked as it checks them.
fn headers(
    given: &BTreeMap<String, String>,
) -> Result<Vec<(axum::http::HeaderName, axum::http::HeaderValue)>, Error> {
    const KEY: &str = "http_server_config.headers";
    let mut out = Vec::new();
    for (name, value) in given {
        let allowed = [
            "Content-Security-Policy",
            "X-Frame-Options",
            "X-Content-Type-Options",
            "X-XSS-Protection",
            "Strict-Transport-Security",
        ];
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            return Err(invalid(
                KEY,
                format!("{name:?} is not allowed (only {})", allowed.join(", ")),
            ));
        }
        if value.is_empty() {
            continue;
        }
        let ok = match name.to_ascii_lowercase().as_str() {
            "x-frame-options" => {
                ["deny", "sameorigin"].contains(&value.to_ascii_lowercase().as_str())
            }
            "x-content-type-options" => value.eq_ignore_ascii_case("nosniff"),
            _ => true,
        };
        if !ok {
            return Err(invalid(KEY, format!("invalid value {value:?} for {name}")));
        }
        let n = axum::http::HeaderName::try_from(name.as_str())
            .map_err(|e| invalid(KEY, format!("{name}: {e}")))?;
        let v = axum::http::HeaderValue::try_from(value.as_str())
            .map_err(|e| invalid(KEY, format!("{name}: {e}")))?;
        out.push((n, v));
    }
    Ok(out)
}

/// PEM text from inline `inline` or file `file` (exactly one), for error key `key`.
fn pem(
    key: &'static str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
    dir: &Path,
) -> Result<Option<Vec<u8>>, Error> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(key, "set the inline value or the file, not both")),
        (Some(t), None) => Ok(Some(t.clone().into_bytes())),
        (None, Some(f)) => {
            let p = if f.is_relative() {
                dir.join(f)
            } else {
                f.clone()
            };
            std::fs::read(&p)
                .map(Some)
                .map_err(|source| Error::Read { path: p, source })
        }
        (None, None) => Ok(None),
    }
}

fn certs(key: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn version(key: &'static str, v: &Option<String>, default: u8) -> Result<u8, Error> {
    match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(v @ ("TLS10" | "TLS11")) => Err(invalid(
            key,
            format!("{v} is not supported (rustls speaks TLS12 and TLS13 only)"),
        )),
        Some(v) => Err(invalid(key, format!("unknown TLS version {v:?}"))),
    }
}

/// The rustls suite for a Go TLS 1.2 cipher-suite name.
fn cipher_suite(name: &str) -> Result<rustls::SupportedCipherSuite, Error> {
    use rustls::crypto::ring::cipher_suite as c;
    Ok(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => c::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => c::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            c::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => c::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => c::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            c::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        other => {
            return Err(invalid(
                "tls_server_config.cipher_suites",
                format!(
                    "{other} is not supported (rustls offers the ECDHE AES-GCM and ChaCha20-Poly1305 suites)"
                ),
            ));
        }
    })
}

/// The rustls key-exchange group for a Go curve name.
fn kx_group(name: &str) -> Result<&'static dyn rustls::crypto::SupportedKxGroup, Error> {
    use rustls::crypto::ring::kx_group as k;
    Ok(match name {
        "X25519" => k::X25519,
        "CurveP256" => k::SECP256R1,
        "CurveP384" => k::SECP384R1,
        other => {
            return Err(invalid(
                "tls_server_config.curve_preferences",
                format!("{other} is not supported (X25519, CurveP256, CurveP384)"),
            ));
        }
    })
}

/// The rustls server configuration `t` asks for.
fn tls(t: &TlsServerConfig, dir: &Path) -> Result<rustls::ServerConfig, Error> {
    use rustls::crypto::ring as p;
    let cert_pem = pem("tls_server_config.cert_file", &t.cert, &t.cert_file, dir)?
        .ok_or_else(|| invalid("tls_server_config", "missing cert_file (or cert)"))?;
    let key_pem = pem("tls_server_config.key_file", &t.key, &t.key_file, dir)?
        .ok_or_else(|| invalid("tls_server_config", "missing key_file (or key)"))?;
    let chain = certs("tls_server_config.cert_file", &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(
            "tls_server_config.key_file",
            format!("not a PEM private key: {e}"),
        )
    })?;

    let min = version("tls_server_config.min_version", &t.min_version, 12)?;
    let max = version("tls_server_config.max_version", &t.max_version, 13)?;
    if min > max {
        return Err(invalid(
            "tls_server_config.min_version",
            "is above max_version",
        ));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, s)| s)
            .collect();

    let mut provider = p::default_provider();
    if !t.cipher_suites.is_empty() {
        let tls12 = t
            .cipher_suites
            .iter()
            .map(|n| cipher_suite(n))
            .collect::<Result<Vec<_>, _>>()?;
        // Go's list only governs TLS 1.2; TLS 1.3 suites stay as they are.
        provider
            .cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13);
        provider.cipher_suites.extend(tls12);
    }
    if !t.curve_preferences.is_empty() {
        provider.kx_groups = t
            .curve_preferences
            .iter()
            .map(|n| kx_group(n))
            .collect::<Result<Vec<_>, _>>()?;
    }
    let provider = Arc::new(provider);

    let client_ca = pem(
        "tls_server_config.client_ca_file",
        &t.client_ca,
        &t.client_ca_file,
        dir,
    )?;
    let verifier = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" | "" => None,
        mode @ ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven") => {
            let ca = client_ca.ok_or_else(|| {
                invalid(
                    "tls_server_config.client_ca_file",
                    format!("client_auth_type {mode} needs a client CA"),
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("tls_server_config.client_ca_file", &ca)? {
                roots
                    .add(c)
                    .map_err(|e| invalid("tls_server_config.client_ca_file", e.to_string()))?;
            }
            let b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let b = if mode == "VerifyClientCertIfGiven" {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(
                b.build()
                    .map_err(|e| invalid("tls_server_config.client_auth_type", e.to_string()))?,
            )
        }
        mode @ ("RequestClientCert" | "RequireAnyClientCert") => {
            return Err(invalid(
                "tls_server_config.client_auth_type",
                format!(
                    "{mode} is not supported: it accepts certificates nobody verified (use RequireAndVerifyClientCert)"
                ),
            ));
        }
        other => {
            return Err(invalid(
                "tls_server_config.client_auth_type",
                format!("unknown client auth type {other:?}"),
            ));
        }
    };
    let verifier = match (verifier, t.client_allowed_sans.is_empty()) {
        (v, true) => v,
        (None, false) => {
            return Err(invalid(
                "tls_server_config.client_allowed_sans",
                "needs client_auth_type RequireAndVerifyClientCert or VerifyClientCertIfGiven",
            ));
        }
        (Some(inner), false) => {
            let names = t
                .client_allowed_sans
                .iter()
                .map(|n| {
                    rustls::pki_types::ServerName::try_from(n.clone()).map_err(|_| {
                        invalid(
                            "tls_server_config.client_allowed_sans",
                            format!("{n:?}: only DNS names and IP addresses are supported"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(Arc::new(AllowedSans { inner, names }) as Arc<dyn ClientCertVerifier>)
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("tls_server_config", e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid("tls_server_config.key_file", e.to_string()))?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client-certificate check that, after the CA's, also requires one of the allowed
/// subject alternative names (exporter-toolkit's `client_allowed_sans`).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<rustls::pki_types::ServerName<'static>>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(ok)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The web configuration in effect for the server, re-read when its file changes and on
/// [`WebSecurity::reload`].
pub struct WebSecurity {
    path: Option<PathBuf>,
    /// Roles and bearer tokens (Lookout's configuration; not part of the file).
    pub access: crate::auth::Access,
    current: RwLock<Arc<WebConfig>>,
    seen: Mutex<(Instant, Option<SystemTime>)>,
    /// Successful basic-auth checks, by user: a digest of the password and the hash it
    /// matched, so a request costs a hash and a constant-time comparison, not a bcrypt.
    pub(crate) verified: Mutex<BTreeMap<String, [u8; 32]>>,
    /// Authentication failures per client address.
    pub(crate) lockouts: crate::auth::Lockouts,
    /// The tokens `rate_limit` hands out.
    pub(crate) bucket: Mutex<Bucket>,
    /// Where authentication failures and writes are recorded.
    pub audit: Arc<crate::audit::AuditLog>,
}

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WebSecurity {
    /// No web configuration: plain HTTP, no authentication.
    pub fn none() -> Self {
        Self::with(None, WebConfig::default())
    }

    /// The configuration in `path`, loaded now (an error stops start-up).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let cfg = WebConfig::load(path)?;
        Ok(Self::with(Some(path.to_path_buf()), cfg))
    }

    fn with(path: Option<PathBuf>, cfg: WebConfig) -> Self {
        let mtime = path.as_deref().and_then(modified);
        Self {
            path,
            access: crate::auth::Access::default(),
            current: RwLock::new(Arc::new(cfg)),
            seen: Mutex::new((Instant::now(), mtime)),
            verified: Mutex::new(BTreeMap::new()),
            lockouts: crate::auth::Lockouts::default(),
            bucket: Mutex::new(Bucket::default()),
            audit: Arc::new(crate::audit::AuditLog::memory()),
        }
    }

    /// These settings with `access` (roles and bearer tokens).
    pub fn with_access(mut self, access: crate::auth::Access) -> Self {
        self.access = access;
        self
    }

    /// These settings recording into `audit`.
    pub fn with_audit(mut self, audit: Arc<crate::audit::AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Whether a web configuration file is in use.
    pub fn configured(&self) -> bool {
        self.path.is_some()
    }

    /// The configuration in effect, re-read first if its file changed (checked at most
    /// once a second).
    pub fn current(&self) -> Arc<WebConfig> {
        if let Some(path) = &self.path {
            let mut seen = self.seen.lock().expect("lock");
            if seen.0.elapsed() >= Duration::from_secs(1) {
                seen.0 = Instant::now();
                let m = modified(path);
                if m != seen.1 {
                    seen.1 = m;
                    drop(seen);
                    self.reload();
                }
            }
        }
        Arc::clone(&self.current.read().expect("lock"))
    }

    /// Reads the file again; a file that does not load keeps the settings in effect.
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        match WebConfig::load(path) {
            Ok(cfg) => {
                *self.current.write().expect("lock") = Arc::new(cfg);
                self.verified.lock().expect("lock").clear();
                tracing::info!(file = %path.display(), "Web configuration reloaded");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "Web configuration not reloaded; the previous one stays in effect");
            }
        }
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_one_per_interval() {
        let limit = RateLimit {
            interval: Duration::from_millis(200),
            burst: 2,
        };
        let mut b = Bucket::default();
        assert!(b.take(limit) && b.take(limit));
        assert!(!b.take(limit));
        std::thread::sleep(Duration::from_millis(250));
        assert!(b.take(limit));
        assert!(!b.take(limit));
        let none = WebConfig::parse("rate_limit: {interval: 0s, burst: 0}\n", Path::new("."));
        assert_eq!(none.unwrap().rate_limit, None);
    }

    #[test]
    fn client_allowed_sans_need_verified_clients_and_names() {
        let e = WebConfig::parse(
            "tls_server_config: {cert: x, key: y, client_allowed_sans: [a]}\n",
            Path::new("."),
        );
        assert!(e.is_err());
    }

    #[test]
    fn unsupported_settings_are_named() {
        let dir = Path::new(".");
        let cases = [
            ("rate_limit: {interval: 1s, burst: 0}\n", "rate_limit.burst"),
            (
                "rate_limit: {interval: soon, burst: 1}\n",
                "rate_limit.interval",
            ),
            ("basic_auth_users: {alice: plain}\n", "basic_auth_users"),
            (
                "http_server_config: {headers: {X-Powered-By: me}}\n",
                "http_server_config.headers",
            ),
            (
                "http_server_config: {headers: {X-Frame-Options: allow}}\n",
                "http_server_config.headers",
            ),
            ("nonsense: 1\n", "unknown field"),
            (
                "tls_server_config: {cert: x, cert_file: y, key_file: z}\n",
                "tls_server_config.cert_file",
            ),
        ];
        for (text, key) in cases {
            let e = WebConfig::parse(text, dir).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let ok = WebConfig::parse(
            "basic_auth_users:\n  alice: $2y$04$0Ul2NsYmoS0RH35gRnSDhuS5QOOuwBCyBVu01N8Q5dP16gfMnGrIe\nhttp_server_config:\n  headers: {X-Frame-Options: deny, Content-Security-Policy: \"default-src 'self'\"}\n",
            dir,
        )
        .unwrap();
        assert_eq!(ok.users.len(), 1);
        assert_eq!(ok.headers.len(), 2);
        assert!(ok.tls.is_none());
    }
}
