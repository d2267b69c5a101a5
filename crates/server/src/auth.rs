//! Basic authentication and response headers from the web configuration, on every route
//! but the health probes (`/-/healthy`, `/-/ready`, `/health/live`, `/health/ready`),
//! which load balancers and orchestrators call without credentials.
//!
//! A password is checked with bcrypt once; a success is remembered per user as a SHA-256
//! digest of the user, password and hash, compared in constant time, so later requests
//! cost a hash, not a bcrypt (as exporter-toolkit caches them). An unknown user costs a
//! bcrypt against a fixed hash too, so timing does not tell which users exist.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::web_config::{WebConfig, WebSecurity};

/// Paths open without credentials.
const OPEN: [&str; 4] = ["/-/healthy", "/-/ready", "/health/live", "/health/ready"];

/// A bcrypt hash (cost 10) of a password nobody is told, verified for unknown users.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| bcrypt::hash("lookout: no such user", 10).unwrap_or_default());

/// The user a request authenticated as, for handlers that record who did something.
#[derive(Debug, Clone)]
pub struct AuthUser(pub String);

/// Checks credentials where the web configuration asks for them and adds its headers.
pub(crate) async fn layer(
    State(sec): State<Arc<WebSecurity>>,
    mut req: Request,
    next: Next,
) -> Response {
    let cfg = sec.current();
    let mut resp = if cfg.users.is_empty() || OPEN.contains(&req.uri().path()) {
        next.run(req).await
    } else {
        match credentials(req.headers()) {
            Some((user, pass)) if verify(&sec, &cfg, &user, &pass).await => {
                req.extensions_mut().insert(AuthUser(user));
                next.run(req).await
            }
            _ => unauthorized(),
        }
    };
    for (n, v) in &cfg.headers {
        resp.headers_mut().insert(n.clone(), v.clone());
    }
    resp
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"lookout\"")],
        "Unauthorized\n",
    )
        .into_response()
}

/// The user and password of a `Basic` authorization header.
fn credentials(h: &HeaderMap) -> Option<(String, String)> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let b64 = b64.trim();
    if b64.len() > 8192 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn digest(user: &str, pass: &str, hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, pass, hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// Whether `user`:`pass` matches the configured hash (bcrypt once, then the cache).
async fn verify(sec: &WebSecurity, cfg: &WebConfig, user: &str, pass: &str) -> bool {
    let Some(hash) = cfg.users.get(user) else {
        let pass = pass.to_string();
        let _ = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &DUMMY_HASH)).await;
        return false;
    };
    let d = digest(user, pass, hash);
    if let Some(known) = sec.verified.lock().expect("lock").get(user)
        && bool::from(known.ct_eq(&d))
    {
        return true;
    }
    let (p, h) = (pass.to_string(), hash.clone());
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(p, &h).unwrap_or(false))
        .await
        .unwrap_or(false);
    if ok {
        sec.verified
            .lock()
            .expect("lock")
            .insert(user.to_string(), d);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Basic YWxpY2U6czNjcjN0Og==".parse().unwrap(),
        );
        assert_eq!(
            credentials(&h),
            Some(("alice".to_string(), "s3cr3t:".to_string()))
        );
        h.insert(header::AUTHORIZATION, "Basic !!!!".parse().unwrap());
        assert_eq!(credentials(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(credentials(&h), None);
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
    }
}
