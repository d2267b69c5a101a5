//! Email over SMTP with lettre: STARTTLS when `require_tls`, implicit TLS on port 465,
//! both with the receiver's (or the global `smtp_tls_config`) `tls_config`; subject, text
//! and HTML bodies and headers rendered from templates.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{Attempt, read_secret, render};
use crate::config::Global;
use crate::notification::Notification;

/// `email_configs` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EmailConfig {
    /// Send resolved alerts too (default false).
    #[serde(default)]
    pub send_resolved: bool,
    /// Recipients (comma separated).
    pub to: Option<String>,
    /// Sender (default: global).
    pub from: Option<String>,
    /// SMTP server (default: global).
    pub smarthost: Option<String>,
    /// EHLO name.
    pub hello: Option<String>,
    /// SMTP user.
    pub auth_username: Option<String>,
    /// SMTP password.
    pub auth_password: Option<String>,
    /// SMTP password file.
    pub auth_password_file: Option<String>,
    /// CRAM-MD5 secret.
    pub auth_secret: Option<String>,
    /// CRAM-MD5 secret file.
    pub auth_secret_file: Option<String>,
    /// Identity.
    pub auth_identity: Option<String>,
    /// Extra headers (templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTML body (template).
    pub html: Option<String>,
    /// Text body (template).
    pub text: Option<String>,
    /// Require STARTTLS (default: global).
    pub require_tls: Option<bool>,
    /// TLS settings (CA, client certificate, `server_name`, `insecure_skip_verify`,
    /// `min_version`), for STARTTLS and implicit TLS alike.
    pub tls_config: Option<lookout_http::TlsConfig>,
}

impl EmailConfig {
    /// Alertmanager's checks of one entry, with the global settings it falls back on.
    pub(crate) fn validate(&self, g: &Global) -> Result<(), String> {
        if self.to.as_deref().is_none_or(str::is_empty) {
            return Err("missing to address in email config".into());
        }
        if self.smarthost.is_none() && g.smtp_smarthost.is_none() {
            return Err("no global SMTP smarthost set".into());
        }
        // Unreadable or malformed certificates are named at load, not at the first page
        // (the host name only matters when connecting).
        if let Some(t) = self.tls_config.as_ref().or(g.smtp_tls_config.as_ref()) {
            tls_parameters("localhost", Some(t)).map_err(|e| format!("email config: {e}"))?;
        }
        if self.from.is_none() && g.smtp_from.is_none() {
            return Err("no global mail from address set".into());
        }
        if self.auth_password.is_some() && self.auth_password_file.is_some() {
            return Err(
                "at most one of auth_password & auth_password_file must be configured".into(),
            );
        }
        Ok(())
    }

    /// This entry with the global SMTP settings filled in where it sets none.
    pub(crate) fn with_defaults(&self, g: &Global) -> Self {
        let mut e = self.clone();
        let fill = |v: &mut Option<String>, d: &Option<String>| {
            if v.is_none() {
                v.clone_from(d);
            }
        };
        fill(&mut e.from, &g.smtp_from);
        fill(&mut e.smarthost, &g.smtp_smarthost);
        fill(&mut e.hello, &g.smtp_hello);
        if e.auth_username.is_none() {
            e.auth_username.clone_from(&g.smtp_auth_username);
            e.auth_password.clone_from(&g.smtp_auth_password);
            e.auth_password_file.clone_from(&g.smtp_auth_password_file);
            e.auth_secret.clone_from(&g.smtp_auth_secret);
            e.auth_secret_file.clone_from(&g.smtp_auth_secret_file);
            e.auth_identity.clone_from(&g.smtp_auth_identity);
        }
        if e.require_tls.is_none() {
            e.require_tls = Some(g.smtp_require_tls);
        }
        if e.tls_config.is_none() {
            e.tls_config.clone_from(&g.smtp_tls_config);
        }
        e
    }
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailParts {
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body, when configured.
    pub html: Option<String>,
    /// Other headers.
    pub headers: Vec<(String, String)>,
}

/// The email for a notification.
pub fn email_parts(
    n: &Notification,
    c: &EmailConfig,
    external_url: &str,
) -> crate::Result<EmailParts> {
    let d = crate::template::data(n, external_url);
    let mut headers = Vec::new();
    let mut subject = None;
    for (k, v) in &c.headers {
        let v = n.templates.render(v, &d)?;
        if k.eq_ignore_ascii_case("subject") {
            subject = Some(v);
        } else {
            headers.push((k.clone(), v));
        }
    }
    let subject = match subject {
        Some(s) => s,
        None => render(n, &d, None, "email.default.subject")?,
    };
    let text = render(n, &d, c.text.as_deref(), "email.default.text")?;
    let html = c
        .html
        .as_deref()
        .map(|h| n.templates.render(h, &d))
        .transpose()?;
    Ok(EmailParts {
        subject,
        text,
        html,
        headers,
    })
}

/// lettre's TLS parameters for `host` from Alertmanager's `tls_config`: a configured CA
/// replaces the public roots (as Go's `RootCAs` does), `server_name` is the name the
/// certificate must carry, a client certificate is presented for mutual TLS.
fn tls_parameters(
    host: &str,
    t: Option<&lookout_http::TlsConfig>,
) -> Result<lettre::transport::smtp::client::TlsParameters, String> {
    use lettre::transport::smtp::client::{
        Certificate, CertificateStore, Identity, TlsParameters, TlsVersion,
    };
    let default = lookout_http::TlsConfig::default();
    let t = t.unwrap_or(&default);
    let domain = t.server_name.clone().unwrap_or_else(|| host.to_string());
    let mut b = TlsParameters::builder(domain);
    let versions = t.versions()?;
    if t.max_version
        .is_some_and(|v| v < lookout_http::TlsVersion::Tls13)
    {
        return Err("tls_config.max_version is not supported for email (only min_version)".into());
    }
    if !versions.contains(&&rustls::version::TLS12) {
        b = b.set_min_tls_version(TlsVersion::Tlsv13);
    }
    if let Some(ca) = t.ca_pem()? {
        let cert = Certificate::from_pem(&ca).map_err(|e| format!("tls_config.ca: {e}"))?;
        b = b
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    if let Some((cert, key)) = t.identity_pem()? {
        // lettre's `Identity::from_pem` takes the certificate as DER (the key as PEM), and
        // one certificate: the first of the file, the client's own.
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::pem_slice_iter(&cert)
            .next()
            .ok_or("tls_config.cert holds no certificate")?
            .map_err(|e| format!("tls_config.cert: {e}"))?;
        let id = Identity::from_pem(&der, &key).map_err(|e| format!("tls_config.cert/key: {e}"))?;
        b = b.identify_with(id);
    }
    if t.insecure_skip_verify {
        b = b.dangerous_accept_invalid_certs(true);
    }
    b.build_rustls().map_err(|e| format!("tls_config: {e}"))
}

pub(super) async fn send_email(n: &Notification, c: &EmailConfig, external_url: &str) -> Attempt {
    use lettre::message::{Mailbox, MultiPart, SinglePart, header};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::Tls;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let EmailParts {
        subject,
        text,
        html,
        headers,
    } = match email_parts(n, c, external_url) {
        Ok(p) => p,
        Err(e) => return Attempt::Fatal(format!("rendering the email: {e}")),
    };
    let Some(smarthost) = &c.smarthost else {
        return Attempt::Fatal("no smarthost".into());
    };
    let (host, port) = match smarthost
        .rsplit_once(':')
        .map(|(h, p)| (h, p.parse::<u16>()))
    {
        Some((h, Ok(p))) => (h.to_string(), p),
        _ => return Attempt::Fatal(format!("invalid smarthost {smarthost:?} (use host:port)")),
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<Mailbox>()
            .map_err(|e| format!("invalid address {s:?}: {e}"))
    };
    let build = || -> Result<Message, String> {
        let mut b = Message::builder()
            .from(parse(c.from.as_deref().unwrap_or(""))?)
            .subject(subject.clone());
        for to in
            c.to.as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|t| !t.trim().is_empty())
        {
            b = b.to(parse(to)?);
        }
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("to") || k.eq_ignore_ascii_case("from") {
                continue;
            }
            b = b.raw_header(header::HeaderValue::new(
                header::HeaderName::new_from_ascii(k.clone())
                    .map_err(|e| format!("header {k:?}: {e}"))?,
                v.clone(),
            ));
        }
        let body = match &html {
            Some(h) => b.multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(text.clone()))
                    .singlepart(SinglePart::html(h.clone())),
            ),
            None => b.singlepart(SinglePart::plain(text.clone())),
        };
        body.map_err(|e| e.to_string())
    };
    let msg = match build() {
        Ok(m) => m,
        Err(e) => return Attempt::Fatal(e),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone()).port(port);
    if port == 465 || c.require_tls.unwrap_or(true) {
        let params = match tls_parameters(&host, c.tls_config.as_ref()) {
            Ok(p) => p,
            Err(e) => return Attempt::Fatal(format!("TLS for {host}: {e}")),
        };
        t = t.tls(if port == 465 {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let Some(user) = &c.auth_username {
        let pass = match (&c.auth_password, &c.auth_password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => match read_secret(f) {
                Ok(p) => p,
                Err(e) => return Attempt::Fatal(e.to_string()),
            },
            _ => String::new(),
        };
        t = t.credentials(Credentials::new(user.clone(), pass));
    }
    if let Some(h) = &c.hello {
        t = t.hello_name(lettre::transport::smtp::extension::ClientId::Domain(
            h.clone(),
        ));
    }
    match t
        .timeout(Some(Duration::from_secs(30)))
        .build()
        .send(msg)
        .await
    {
        Ok(_) => Attempt::Done,
        Err(e) if e.is_permanent() => Attempt::Fatal(format!("SMTP {smarthost}: {e}")),
        // A certificate that does not verify will not verify on the next attempt either.
        Err(e) if e.is_tls() => Attempt::Fatal(format!("SMTP {smarthost}: TLS: {e}")),
        Err(e) => Attempt::Retry(format!("SMTP {smarthost}: {e}")),
    }
}
