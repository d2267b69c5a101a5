//! Authentication, roles and response headers, on every route but the health probes
//! (`/-/healthy`, `/-/ready`, `/health/live`, `/health/ready`), which load balancers and
//! orchestrators call without credentials.
//!
//! Credentials are required once the web configuration has basic-auth users or Lookout's
//! configuration has bearer tokens. A request without valid ones gets 401 with
//! `WWW-Authenticate`; one whose role is below what the route needs gets 403 naming the
//! role. Roles: `viewer` reads (every GET, the query endpoints also by POST, the UI,
//! `/metrics`); `operator` also changes alerting state (acknowledgements, silences,
//! posted alerts, reload); `admin` also the admin APIs and the audit log. Basic-auth
//! users are viewers unless `web.roles` says otherwise; each bearer token has its role.
//!
//! A password is checked with bcrypt once; a success is remembered per user as a SHA-256
//! digest of the user, password and hash, compared in constant time, so later requests
//! cost a hash, not a bcrypt (as exporter-toolkit caches them). An unknown user costs a
//! bcrypt against a fixed hash too, so timing does not tell which users exist.
//!
//! Writes from browsers must come from Lookout's own pages: a request that changes
//! something and carries an `Origin` of another host, or `Sec-Fetch-Site: cross-site`,
//! gets 403 whether or not it authenticated (a browser sends stored basic-auth
//! credentials along with a forged cross-site form). Reads and clients that send neither
//! header (curl, amtool, Grafana's backend) are unaffected.
//!
//! A client address that fails authentication [`LOCKOUT_AFTER`] times in a row is locked
//! out (429 with `Retry-After`) for a second, doubling with every further failure up to
//! five minutes; a success clears it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::web_config::{WebConfig, WebSecurity};

/// Failed authentications in a row after which a client address is locked out.
pub const LOCKOUT_AFTER: u32 = 5;

/// Most client addresses whose failures are remembered.
const LOCKOUT_TRACKED: usize = 10_000;

/// Authentication failures per client address.
#[derive(Debug, Default)]
pub(crate) struct Lockouts(
    std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
);

impl Lockouts {
    /// How long `ip` must still wait, if it is locked out.
    fn wait(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        let m = self.0.lock().expect("lock");
        let (_, until) = m.get(&ip)?;
        until.checked_duration_since(std::time::Instant::now())
    }

    fn failed(&self, ip: std::net::IpAddr) {
        let mut m = self.0.lock().expect("lock");
        if m.len() >= LOCKOUT_TRACKED && !m.contains_key(&ip) {
            // Forget the addresses whose lock-out is over first, then anyone.
            let now = std::time::Instant::now();
            m.retain(|_, (_, until)| *until > now);
            if m.len() >= LOCKOUT_TRACKED {
                m.clear();
            }
        }
        let e = m.entry(ip).or_insert((0, std::time::Instant::now()));
        e.0 += 1;
        if e.0 >= LOCKOUT_AFTER {
            let secs = 1u64 << (e.0 - LOCKOUT_AFTER).min(9);
            e.1 = std::time::Instant::now() + std::time::Duration::from_secs(secs.min(300));
        }
    }

    fn succeeded(&self, ip: std::net::IpAddr) {
        self.0.lock().expect("lock").remove(&ip);
    }
}

/// Paths open without credentials.
const OPEN: [&str; 4] = ["/-/healthy", "/-/ready", "/health/live", "/health/ready"];

/// A bcrypt hash (cost 10) of a password nobody is told, verified for unknown users.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| bcrypt::hash("lookout: no such user", 10).unwrap_or_default());

/// The user a request authenticated as, for handlers that record who did something.
#[derive(Debug, Clone)]
pub struct AuthUser(pub String);

/// What a user may do; each role may do everything the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: every query, status and alert listing, the UI, `/metrics`.
    Viewer,
    /// Also acknowledges, silences, posts alerts and reloads.
    Operator,
    /// Also the admin APIs (deleting series) and the audit log.
    Admin,
}

impl Role {
    /// The role's name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// A machine's credential: `Authorization: Bearer TOKEN`.
#[derive(Clone)]
pub struct BearerToken {
    /// Who it stands for (audit, logs).
    pub name: String,
    /// The token itself; never logged or shown.
    pub token: String,
    /// What it may do.
    pub role: Role,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("name", &self.name)
            .field("token", &"<secret>")
            .field("role", &self.role)
            .finish()
    }
}

/// Roles of basic-auth users and the bearer tokens (Lookout's `web:` configuration).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Roles of basic-auth users; unlisted users are viewers.
    pub roles: std::collections::BTreeMap<String, Role>,
    /// Bearer tokens.
    pub tokens: Vec<BearerToken>,
    /// Whether the health probes answer without credentials (true by default).
    pub closed_probes: bool,
}

/// Requests that read although they are POSTs (PromQL and lookups take form bodies).
const READ_POSTS: [&str; 7] = [
    "/api/v1/read",
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/query_exemplars",
    "/api/v1/format_query",
];

/// The role a request needs.
pub fn required_role(method: &axum::http::Method, path: &str) -> Role {
    use axum::http::Method;
    if path.starts_with("/api/v1/admin/") || path == "/api/v1/lookout/audit" {
        Role::Admin
    } else if method == Method::GET || method == Method::HEAD || READ_POSTS.contains(&path) {
        Role::Viewer
    } else {
        Role::Operator
    }
}

/// Checks credentials and roles where the configuration asks for them, records
/// authentication failures, refusals and writes in the audit log, and adds the web
/// configuration's headers.
pub(crate) async fn layer(
    State(sec): State<Arc<WebSecurity>>,
    mut req: Request,
    next: Next,
) -> Response {
    let cfg = sec.current();
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let ip = peer.map(|p| p.ip());
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let guarded = !cfg.users.is_empty() || !sec.access.tokens.is_empty();
    let needed = required_role(&method, &path);
    let writes = needed > Role::Viewer;
    let audit = |who: &str, role: Option<Role>, action: &str, result: StatusCode| {
        sec.audit.record(crate::audit::Event {
            who,
            role: role.map(Role::as_str),
            remote_addr: peer,
            action,
            target: &path,
            result: result.as_u16(),
        });
    };
    let probe = OPEN.contains(&path.as_str());
    let limited = !probe
        && cfg
            .rate_limit
            .is_some_and(|l| !sec.bucket.lock().expect("lock").take(l));
    let mut resp = if limited {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "too many requests: the server's rate_limit is reached\n",
        )
            .into_response()
    } else if writes && cross_site(req.headers()) {
        audit("", None, "forbidden", StatusCode::FORBIDDEN);
        (
            StatusCode::FORBIDDEN,
            "forbidden: a cross-site request may not change anything\n",
        )
            .into_response()
    } else if !guarded || (!sec.access.closed_probes && probe) {
        let resp = next.run(req).await;
        if writes {
            audit("", None, method.as_str(), resp.status());
        }
        resp
    } else if let Some(wait) = ip.and_then(|ip| sec.lockouts.wait(ip)) {
        audit("", None, "locked_out", StatusCode::TOO_MANY_REQUESTS);
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, (wait.as_secs() + 1).to_string())],
            "too many failed logins from this address; try again later\n",
        )
            .into_response()
    } else {
        match identify(&sec, &cfg, req.headers()).await {
            None => {
                if let Some(ip) = ip {
                    sec.lockouts.failed(ip);
                }
                let claimed = credentials(req.headers()).map(|c| c.0).unwrap_or_default();
                audit(&claimed, None, "auth_failure", StatusCode::UNAUTHORIZED);
                tracing::warn!(remote_addr = ?peer, path = %path, "Authentication failed");
                unauthorized()
            }
            Some((who, role)) => {
                if let Some(ip) = ip {
                    sec.lockouts.succeeded(ip);
                }
                if role < needed {
                    audit(&who, Some(role), "forbidden", StatusCode::FORBIDDEN);
                    (
                        StatusCode::FORBIDDEN,
                        format!(
                            "forbidden: this needs the {} role; {who} has {}\n",
                            needed.as_str(),
                            role.as_str()
                        ),
                    )
                        .into_response()
                } else {
                    req.extensions_mut().insert(AuthUser(who.clone()));
                    req.extensions_mut().insert(role);
                    let resp = next.run(req).await;
                    if writes {
                        audit(&who, Some(role), method.as_str(), resp.status());
                    }
                    resp
                }
            }
        }
    };
    for (n, v) in &cfg.headers {
        resp.headers_mut().insert(n.clone(), v.clone());
    }
    resp
}

/// Who a request is and their role, from a basic-auth user or a bearer token.
async fn identify(sec: &WebSecurity, cfg: &WebConfig, h: &HeaderMap) -> Option<(String, Role)> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let given = rest.trim().as_bytes();
        // Compare with every token, in constant time, so timing tells nothing.
        let mut found = None;
        for t in &sec.access.tokens {
            if bool::from(t.token.as_bytes().ct_eq(given)) {
                found = Some((t.name.clone(), t.role));
            }
        }
        return found;
    }
    let (user, pass) = credentials(h)?;
    if cfg.users.is_empty() || !verify(sec, cfg, &user, &pass).await {
        return None;
    }
    let role = sec.access.roles.get(&user).copied().unwrap_or(Role::Viewer);
    Some((user, role))
}

/// Whether a browser sent the request from another site: an `Origin` whose host is not
/// the request's `Host`, or `Sec-Fetch-Site: cross-site`.
fn cross_site(h: &HeaderMap) -> bool {
    if h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return true;
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
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
    fn routes_need_the_roles_the_issue_names() {
        use axum::http::Method;
        let r = |m: Method, p: &str| required_role(&m, p);
        assert_eq!(r(Method::GET, "/api/v1/query"), Role::Viewer);
        assert_eq!(r(Method::POST, "/api/v1/query_range"), Role::Viewer);
        assert_eq!(r(Method::GET, "/metrics"), Role::Viewer);
        assert_eq!(r(Method::POST, "/api/v2/silences"), Role::Operator);
        assert_eq!(r(Method::DELETE, "/api/v2/silence/x"), Role::Operator);
        assert_eq!(
            r(Method::POST, "/api/v1/lookout/alerts/ab/ack"),
            Role::Operator
        );
        assert_eq!(r(Method::POST, "/-/reload"), Role::Operator);
        assert_eq!(r(Method::POST, "/api/v2/alerts"), Role::Operator);
        assert_eq!(
            r(Method::POST, "/api/v1/admin/tsdb/delete_series"),
            Role::Admin
        );
        assert_eq!(r(Method::GET, "/api/v1/lookout/audit"), Role::Admin);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }

    #[test]
    fn cross_site_writes_are_recognised() {
        let h = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    axum::http::HeaderName::try_from(*k).unwrap(),
                    v.parse().unwrap(),
                );
            }
            h
        };
        assert!(!cross_site(&h(&[("host", "lk:9180")])));
        assert!(!cross_site(&h(&[
            ("host", "lk:9180"),
            ("origin", "https://lk:9180")
        ])));
        assert!(cross_site(&h(&[
            ("host", "lk:9180"),
            ("origin", "https://evil.example")
        ])));
        assert!(cross_site(&h(&[("host", "lk:9180"), ("origin", "null")])));
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")])));
    }

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
