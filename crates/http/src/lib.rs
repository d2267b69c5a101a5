//! Lookout's outbound HTTP clients, one builder for everything Lookout sends: scrapes,
//! notifications and alert forwarding. It reads Prometheus's and Alertmanager's common
//! `http_config` as they write it (TLS, basic auth, `authorization`, bearer tokens,
//! `proxy_url`, `follow_redirects`) and builds reqwest clients on rustls with the ring
//! provider; secrets given by file are read when a request is made, so a rotated
//! password or token is picked up without a reload.

mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use tls::{IdentityPem, TlsConfig, TlsVersion, client_config};

/// An `http_config` that cannot be used; names the setting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that is wrong.
    #[error("http_config: {0}")]
    Invalid(String),
    /// A secret file that cannot be read.
    #[error("http_config: reading {}: {source}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `basic_auth`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user.
    pub username: String,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `authorization`: `Authorization: <type> <credentials>`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme (default `Bearer`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The credentials.
    #[serde(default)]
    pub credentials: Option<String>,
    /// A file holding the credentials.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// Prometheus's and Alertmanager's common `http_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// An `Authorization` header.
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// A bearer token (legacy form of `authorization`).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file holding a bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// An HTTP proxy (`http://host:port`).
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Follow redirects (default true).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Accepted for compatibility; Lookout's clients speak HTTP/1.1.
    #[serde(default)]
    pub enable_http2: Option<bool>,
}

/// The user agent of every request Lookout makes.
pub const USER_AGENT: &str = concat!("Lookout/", env!("CARGO_PKG_VERSION"));

/// A client for `cfg` (TLS, proxy, redirects); authentication is added per request by
/// [`authorize`].
pub fn client(cfg: &HttpConfig) -> Result<reqwest::Client, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let redirects = if cfg.follow_redirects.unwrap_or(true) {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(redirects);
    if let Some(p) = &cfg.proxy_url {
        b = b.proxy(
            reqwest::Proxy::all(p).map_err(|e| Error::Invalid(format!("proxy_url {p:?}: {e}")))?,
        );
    }
    if let Some(t) = &cfg.tls_config {
        b = b.use_preconfigured_tls(client_config(t).map_err(Error::Invalid)?);
    }
    b.build()
        .map_err(|e| Error::Invalid(format!("building the client: {e}")))
}

fn secret(inline: &Option<String>, file: &Option<PathBuf>) -> Result<Option<String>, Error> {
    match (inline, file) {
        (Some(s), _) => Ok(Some(s.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|source| Error::Secret {
                path: f.clone(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// `req` with the credentials `cfg` names (files read now).
pub fn authorize(
    req: reqwest::RequestBuilder,
    cfg: &HttpConfig,
) -> Result<reqwest::RequestBuilder, Error> {
    if let Some(b) = &cfg.basic_auth {
        let pw = secret(&b.password, &b.password_file)?;
        return Ok(req.basic_auth(&b.username, pw));
    }
    if let Some(a) = &cfg.authorization {
        let kind = a.kind.as_deref().unwrap_or("Bearer");
        let cred = secret(&a.credentials, &a.credentials_file)?.unwrap_or_default();
        return Ok(req.header("Authorization", format!("{kind} {cred}")));
    }
    match secret(&cfg.bearer_token, &cfg.bearer_token_file)? {
        Some(t) => Ok(req.bearer_auth(t)),
        None => Ok(req),
    }
}

/// Timeouts Lookout uses when a configuration names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_and_prometheus_shapes_parse() {
        let c: HttpConfig = serde_json::from_str(
            r#"{"basic_auth": {"username": "u", "password": "p"}, "proxy_url": "foo",
                "follow_redirects": false, "tls_config": {"insecure_skip_verify": true}}"#,
        )
        .unwrap();
        assert_eq!(c.follow_redirects, Some(false));
        assert!(
            client(&c).is_ok(),
            "Alertmanager's own test file uses proxy_url: foo"
        );
        let c = HttpConfig {
            proxy_url: Some("http://[::1".into()),
            ..c
        };
        let e = client(&c).unwrap_err().to_string();
        assert!(e.contains("proxy_url"), "{e}");
        let bad = serde_json::from_str::<HttpConfig>(r#"{"oauth2": {}}"#);
        assert!(bad.is_err(), "unsupported settings are not ignored");
    }
}
