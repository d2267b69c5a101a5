//! Issue 14 through the real binary: the web configuration file (exporter-toolkit
//! format) gives TLS with certificates made here (rcgen), basic auth with bcrypt hashes,
//! response headers, mutual TLS, reloads without a restart, and `check web-config`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::browser::*;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and, signed by it, a server certificate for 127.0.0.1 and a client certificate;
/// PEM files written to `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: String,
    client_key: String,
}

fn pki(dir: &Path) -> Pki {
    pki_for(dir, &["127.0.0.1", "localhost"])
}

/// As [`pki`], with the server certificate for `names` only.
fn pki_for(dir: &Path, names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Lookout test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["grafana".to_string()]).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "grafana");
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("server.pem", server.pem()),
        key: write("server-key.pem", server_key.serialize_pem()),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A TLS client trusting only the test CA, with a client certificate if given.
fn client(p: &Pki, identity: bool) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&p.ca).unwrap()).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10));
    if identity {
        let pem = format!("{}{}", p.client_cert, p.client_key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn web_config(dir: &Path, p: &Pki, users: &[(&str, &str)], extra_tls: &str) -> PathBuf {
    let mut text = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra_tls}http_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n",
        p.cert.display(),
        p.key.display()
    );
    for (u, pw) in users {
        text.push_str(&format!("  {u}: {}\n", hash(pw)));
    }
    let f = dir.join("web.yml");
    std::fs::write(&f, text).unwrap();
    f
}

fn status(c: &reqwest::blocking::Client, url: &str, user: Option<(&str, &str)>) -> u16 {
    let mut r = c.get(url);
    if let Some((u, p)) = user {
        r = r.basic_auth(u, Some(p));
    }
    r.send().unwrap().status().as_u16()
}

#[test]
fn issue_14_tls_and_basic_auth_guard_every_endpoint_but_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let web = web_config(dir.path(), &p, &[("alice", "s3cret")], "");
    let cfg = write_config(dir.path(), "collectors: {host: {enabled: false}}\n");
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.config.file", utf8(&web)],
    );
    assert!(lk.base.starts_with("https://"), "{}", lk.base);
    let c = client(&p, false);
    let query = format!("{}/api/v1/query?query=1", lk.base);

    // The probes stay open; the configured headers are on every answer.
    let r = c.get(format!("{}/-/healthy", lk.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "deny");

    // Everything else asks for credentials.
    let r = c.get(&query).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(r.headers()["x-frame-options"], "deny");
    assert_eq!(status(&c, &query, Some(("alice", "wrong"))), 401);
    assert_eq!(status(&c, &query, Some(("mallory", "s3cret"))), 401);
    assert_eq!(status(&c, &query, Some(("alice", "s3cret"))), 200);
    // Cached: the same credentials again, and the metrics endpoint too.
    assert_eq!(status(&c, &query, Some(("alice", "s3cret"))), 200);
    assert_eq!(
        status(
            &c,
            &format!("{}/metrics", lk.base),
            Some(("alice", "s3cret"))
        ),
        200
    );

    // Plain HTTP to the TLS port gets no answer.
    let plain = lk.base.replace("https://", "http://");
    let answered = http()
        .get(format!("{plain}/-/healthy"))
        .send()
        .is_ok_and(|r| r.status().is_success());
    assert!(!answered);
    // A client that does not trust the CA cannot connect.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stranger = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        stranger
            .get(format!("{}/-/healthy", lk.base))
            .send()
            .is_err()
    );

    // The file is read again when it changes: bob replaces alice, no restart.
    web_config(dir.path(), &p, &[("bob", "hunter2")], "");
    wait_until("the new users apply", Duration::from_secs(10), || {
        status(&c, &query, Some(("bob", "hunter2"))) == 200
    });
    assert_eq!(status(&c, &query, Some(("alice", "s3cret"))), 401);
    // A broken file keeps the settings in effect.
    std::fs::write(&web, "basic_auth_users: {bob: not-a-hash}\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status(&c, &query, Some(("bob", "hunter2"))), 200);

    // Five failures in a row lock the address out, even for the right password, with
    // Retry-After; after the wait it may try again.
    for _ in 0..5 {
        assert_eq!(status(&c, &query, Some(("bob", "guess"))), 401);
    }
    let r = c
        .get(&query)
        .basic_auth("bob", Some("hunter2"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(status(&c, &query, Some(("bob", "hunter2"))), 200);
    assert!(lk.terminate().success());
}

#[test]
fn issue_14_mutual_tls_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let extra = format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  min_version: TLS13\n",
        p.ca.display()
    );
    let web = web_config(dir.path(), &p, &[], &extra);
    let cfg = write_config(dir.path(), "collectors: {host: {enabled: false}}\n");
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.config.file", utf8(&web)],
    );
    let url = format!("{}/api/v1/query?query=1", lk.base);
    assert!(client(&p, false).get(&url).send().is_err());
    assert_eq!(status(&client(&p, true), &url, None), 200);

    // client_allowed_sans: the client certificate (for "grafana") must also carry an
    // allowed name; the file is re-read without a restart.
    let sans = |names: &str| {
        std::thread::sleep(Duration::from_millis(1100));
        web_config(
            dir.path(),
            &p,
            &[],
            &format!("{extra}  client_allowed_sans: [{names}]\n"),
        );
    };
    sans("prometheus, 10.0.0.1");
    wait_until(
        "the new web config refuses grafana",
        Duration::from_secs(10),
        || client(&p, true).get(&url).send().is_err(),
    );
    sans("prometheus, grafana");
    wait_until(
        "the new web config admits grafana",
        Duration::from_secs(10),
        || {
            client(&p, true)
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().as_u16() == 200)
        },
    );
    assert!(lk.terminate().success());
}

#[test]
fn issue_14_rate_limit_answers_429_beyond_the_burst_and_spares_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let web = web_config(dir.path(), &p, &[], "");
    let text = std::fs::read_to_string(&web).unwrap();
    std::fs::write(
        &web,
        format!("{text}rate_limit: {{interval: 1m, burst: 3}}\n"),
    )
    .unwrap();
    let cfg = write_config(dir.path(), "collectors: {host: {enabled: false}}\n");
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.config.file", utf8(&web)],
    );
    let c = client(&p, false);
    let url = format!("{}/api/v1/query?query=1", lk.base);
    let got: Vec<u16> = (0..5).map(|_| status(&c, &url, None)).collect();
    assert_eq!(got, [200, 200, 200, 429, 429]);
    let r = c.get(&url).send().unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().unwrap().contains("rate_limit"));
    assert_eq!(status(&c, &format!("{}/-/healthy", lk.base), None), 200);
    assert!(lk.terminate().success());
}

#[test]
fn issue_14_check_web_config_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let good = web_config(dir.path(), &p, &[("alice", "x")], "");
    let out = run(&["check", "web-config", utf8(&good)]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    for (extra, key) in [
        ("  min_version: TLS10\n", "tls_server_config.min_version"),
        (
            "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
            "tls_server_config.cipher_suites",
        ),
        (
            "  curve_preferences: [CurveP521]\n",
            "tls_server_config.curve_preferences",
        ),
        (
            "  client_auth_type: RequireAnyClientCert\n",
            "tls_server_config.client_auth_type",
        ),
    ] {
        let bad = web_config(dir.path(), &p, &[], extra);
        let out = run(&["check", "web-config", utf8(&bad)]);
        assert_eq!(out.status.code(), Some(1), "{extra}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{extra}: {err}");
    }
    // serve refuses to start on a bad file, naming it.
    let cfg = write_config(dir.path(), "");
    let out = run(&[
        "serve",
        "--data",
        utf8(&dir.path().join("d")),
        "--config",
        utf8(&cfg),
        "--listen",
        "127.0.0.1:0",
        "--web.config.file",
        utf8(&dir.path().join("web.yml")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web.config.file"));
}

/// Certificates, a web config with the users alice, bob and carol (passwords a-pass,
/// b-pass, c-pass), and `am.yml` routing everything to one silent receiver (`route` adds
/// to the root route).
fn three_users(dir: &Path, route: &str) -> (Pki, PathBuf) {
    let p = pki(dir);
    let web = web_config(
        dir,
        &p,
        &[("alice", "a-pass"), ("bob", "b-pass"), ("carol", "c-pass")],
        "",
    );
    std::fs::write(
        dir.join("am.yml"),
        format!("route: {{receiver: x{route}}}\nreceivers: [{{name: x}}]\n"),
    )
    .unwrap();
    (p, web)
}

#[test]
fn issue_14_roles_and_bearer_tokens_decide_what_each_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let (p, web) = three_users(dir.path(), "");
    let grafana = dir.path().join("grafana.token");
    std::fs::write(&grafana, "grafana-token-0123456789\n").unwrap();
    let ci = dir.path().join("ci.token");
    std::fs::write(&ci, "ci-token-0123456789abcdef").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "collectors: {{host: {{enabled: false}}}}\nnotifier: {{config_file: am.yml}}\nweb:\n  roles: {{alice: admin, bob: operator}}\n  bearer_tokens:\n    - {{name: grafana, token_file: {}, role: viewer}}\n    - {{name: ci, token_file: {}, role: operator}}\n",
            grafana.display(),
            ci.display()
        ),
    );
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.config.file", utf8(&web)],
    );
    let c = client(&p, false);
    let url = |path: &str| format!("{}{path}", lk.base);
    let post = |path: &str,
                auth: &dyn Fn(
        reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder| {
        let r = auth(c.post(url(path))).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let basic = |u: &'static str, p: &'static str| {
        move |r: reqwest::blocking::RequestBuilder| r.basic_auth(u, Some(p))
    };
    let bearer = |t: &'static str| move |r: reqwest::blocking::RequestBuilder| r.bearer_auth(t);

    // carol is not listed: a viewer. She reads, and is told what a write needs.
    assert_eq!(
        status(&c, &url("/api/v1/query?query=1"), Some(("carol", "c-pass"))),
        200
    );
    let (st, body) = post("/-/reload", &basic("carol", "c-pass"));
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("operator"), "{body}");
    // PromQL by POST is a read.
    let (st, _) = post("/api/v1/query?query=1", &basic("carol", "c-pass"));
    assert_eq!(st, 200);

    // Each can ask who they are and what they may do (what the UI offers).
    let me: serde_json::Value = c
        .get(url("/api/v1/lookout/whoami"))
        .basic_auth("carol", Some("c-pass"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(me["data"]["user"], "carol");
    assert_eq!(me["data"]["role"], "viewer");
    assert_eq!(me["data"]["may"]["operate"], false);

    // bob operates but does not administer.
    assert_eq!(post("/-/reload", &basic("bob", "b-pass")).0, 200);
    // A write a browser sends from another site is refused even with bob's credentials;
    // from Lookout's own pages it goes through.
    let from = |origin: String| {
        move |r: reqwest::blocking::RequestBuilder| {
            r.basic_auth("bob", Some("b-pass"))
                .header("Origin", origin.clone())
        }
    };
    let (st, body) = post("/-/reload", &from("https://evil.example".into()));
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("cross-site"), "{body}");
    assert_eq!(post("/-/reload", &from(lk.base.clone())).0, 200);
    let (st, body) = post(
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        &basic("bob", "b-pass"),
    );
    assert_eq!(st, 403);
    assert!(body.contains("admin"), "{body}");
    // alice may: what answers is the admin API itself (off without the flag).
    let (st, body) = post(
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        &basic("alice", "a-pass"),
    );
    assert_eq!(st, 503, "{body}");

    // A change is recorded under who authenticated, not who the body claims, and the
    // audit log is the admins'.
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "X", "isRegex": false}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "mallory",
        "comment": "maintenance",
    });
    let r = c
        .post(url("/api/v2/silences"))
        .basic_auth("bob", Some("b-pass"))
        .json(&silence)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        status(&c, &url("/api/v1/lookout/audit"), Some(("bob", "b-pass"))),
        403
    );
    let audit: serde_json::Value = c
        .get(url("/api/v1/lookout/audit"))
        .basic_auth("alice", Some("a-pass"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entry = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "silence_create")
        .unwrap_or_else(|| panic!("{audit}"))
        .clone();
    assert_eq!(entry["who"], "bob", "{entry}");
    // The HTTP trail: failures, refusals and writes, with who, role and address.
    let trail: serde_json::Value = c
        .get(url("/api/v1/lookout/audit?source=http&limit=1000"))
        .basic_auth("alice", Some("a-pass"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let trail = trail["data"].as_array().unwrap().clone();
    let find = |action: &str, who: &str| {
        trail
            .iter()
            .find(|e| e["action"] == action && e["who"] == who)
            .unwrap_or_else(|| panic!("no {action} by {who:?} in {trail:?}"))
            .clone()
    };
    let refused = find("forbidden", "carol");
    assert_eq!(refused["role"], "viewer");
    assert_eq!(refused["target"], "/-/reload");
    assert_eq!(refused["result"], 403);
    assert!(
        refused["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let write = find("POST", "bob");
    assert_eq!(write["role"], "operator");
    assert_eq!(write["result"], 200);
    // Every record is on disk (reading the trail is itself recorded, after the answer).
    let on_disk: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("data/audit/http.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(on_disk[..trail.len()], trail[..]);
    assert_eq!(on_disk[trail.len()]["target"], "/api/v1/lookout/audit");

    // Tokens: grafana reads, ci operates, anything else is unknown.
    assert_eq!(
        c.get(url("/api/v1/query?query=1"))
            .bearer_auth("grafana-token-0123456789")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        post("/-/reload", &bearer("grafana-token-0123456789")).0,
        403
    );
    assert_eq!(
        post("/-/reload", &bearer("ci-token-0123456789abcdef")).0,
        200
    );
    assert_eq!(
        post("/-/reload", &bearer("ci-token-0123456789abcdeX")).0,
        401
    );
    assert!(lk.terminate().success());

    // A token that cannot be read stops start-up and fails the check, naming it.
    std::fs::remove_file(&ci).unwrap();
    let out = run(&["check", "config", utf8(&cfg)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.bearer_tokens \"ci\""));
}

#[test]
fn issue_14_secrets_never_leave() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("t.token");
    std::fs::write(&token, "tok-SECRET-0123456789").unwrap();
    std::fs::write(
        dir.path().join("am.yml"),
        "global:\n  slack_api_url: https://hooks.slack.com/services/T0/B0/SLACKSECRET\nroute: {receiver: team}\nreceivers:\n- name: team\n  pagerduty_configs: [{routing_key: PDSECRETKEY}]\n  webhook_configs: [{url: 'http://127.0.0.1:1/HOOKSECRET'}]\n",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\ncollectors:\n  host: {{enabled: false}}\n  postgres:\n    - name: main\n      dsn: \"postgres://monitor:PGSECRET@127.0.0.1:1/postgres?connect_timeout=1\"\nnotifier: {{config_file: am.yml}}\nweb:\n  bearer_tokens:\n    - {{name: grafana, token_file: {}}}\n",
            token.display()
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    // Let the PostgreSQL collector fail a few times: its errors must not show the DSN.
    std::thread::sleep(Duration::from_secs(3));
    let mut seen = String::new();
    for path in [
        "/api/v1/status/config",
        "/api/v1/status/flags",
        "/api/v1/status/runtimeinfo",
        "/api/v2/status",
        "/api/v2/receivers",
        "/api/v1/lookout/collectors",
        "/api/v1/targets",
        "/health",
        "/metrics",
    ] {
        let r = http()
            .get(format!("{}{path}", lk.base))
            .bearer_auth("tok-SECRET-0123456789")
            .send()
            .unwrap();
        // /health answers 503 here: the PostgreSQL collector cannot connect.
        assert!(
            r.status().is_success() || path == "/health",
            "{path}: {}",
            r.status()
        );
        seen.push_str(&r.text().unwrap());
    }
    assert!(
        seen.contains("<secret>"),
        "the redacted values are shown as <secret>"
    );
    let log = lk.log.lock().unwrap().join("\n");
    for secret in [
        "tok-SECRET",
        "PGSECRET",
        "SLACKSECRET",
        "PDSECRETKEY",
        "HOOKSECRET",
    ] {
        assert!(!seen.contains(secret), "{secret} in an API answer");
        assert!(!log.contains(secret), "{secret} in the log");
    }
    assert!(lk.terminate().success());
}

/// Whether a Debian tool is installed; says so when it is not (scripts/test installs it).
fn have(cmd: &str) -> bool {
    let ok = std::process::Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: {cmd} is not installed (scripts/test installs it)");
    }
    ok
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn issue_14_real_prometheus_and_amtool_use_tls_and_basic_auth() {
    if !have("prometheus") || !have("amtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let web = web_config(dir.path(), &p, &[("scraper", "scrape-pass")], "");
    std::fs::write(
        dir.path().join("am.yml"),
        "route: {receiver: x}\nreceivers: [{name: x}]\n",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        "collectors: {host: {enabled: false}}\nnotifier: {config_file: am.yml}\nweb: {roles: {scraper: operator}}\n",
    );
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.config.file", utf8(&web)],
    );
    let target = lk.base.trim_start_matches("https://").to_string();

    // Debian's Prometheus 2.42 scrapes /metrics over TLS, once with the right password
    // and once with a wrong one.
    let prom_cfg = dir.path().join("prometheus.yml");
    let job = |name: &str, pass: &str| {
        format!(
            "  - job_name: {name}\n    scrape_interval: 1s\n    scheme: https\n    tls_config: {{ca_file: {}}}\n    basic_auth: {{username: scraper, password: {pass}}}\n    static_configs: [{{targets: ['{target}']}}]\n",
            p.ca.display()
        )
    };
    std::fs::write(
        &prom_cfg,
        format!(
            "scrape_configs:\n{}{}",
            job("good", "scrape-pass"),
            job("bad", "wrong")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _prom = Child(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = |job: &str| -> Option<f64> {
        let v: serde_json::Value = http()
            .get(format!("http://127.0.0.1:{port}/api/v1/query"))
            .query(&[("query", format!("up{{job=\"{job}\"}}"))])
            .send()
            .ok()?
            .json()
            .ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    wait_until(
        "Prometheus scraped both jobs",
        Duration::from_secs(60),
        || up("good").is_some() && up("bad").is_some(),
    );
    assert_eq!(up("good"), Some(1.0), "the right password scrapes");
    assert_eq!(up("bad"), Some(0.0), "a wrong password does not");

    // amtool adds a silence over TLS with basic auth from its HTTP config file.
    let http_cfg = dir.path().join("amtool-http.yml");
    std::fs::write(
        &http_cfg,
        format!(
            "tls_config: {{ca_file: {}}}\nbasic_auth: {{username: scraper, password: scrape-pass}}\n",
            p.ca.display()
        ),
    )
    .unwrap();
    let amtool = |args: &[&str]| {
        std::process::Command::new("amtool")
            .arg(format!("--alertmanager.url={}", lk.base))
            .arg(format!("--http.config.file={}", http_cfg.display()))
            .args(args)
            .output()
            .unwrap()
    };
    let out = amtool(&[
        "silence",
        "add",
        "alertname=Maintenance",
        "--comment=tls",
        "--duration=1h",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = amtool(&["silence", "query", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Maintenance"));
    // curl, with the CA and a password, and without them.
    if have("curl") {
        let curl = |args: &[&str]| {
            let out = std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let url = format!("{}/api/v1/query?query=1", lk.base);
        let ca = p.ca.display().to_string();
        assert_eq!(
            curl(&["--cacert", &ca, "-u", "scraper:scrape-pass", &url]),
            "200"
        );
        assert_eq!(curl(&["--cacert", &ca, &url]), "401");
        assert_eq!(curl(&[&url]), "000", "an unknown CA fails the handshake");
    }
    // Without the HTTP config amtool cannot even connect (unknown CA).
    let out = std::process::Command::new("amtool")
        .arg(format!("--alertmanager.url={}", lk.base))
        .args(["silence", "query"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(lk.terminate().success());
}

#[test]
fn issue_14_body_limit_and_closed_probes_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("t.token");
    std::fs::write(&token, "probe-token-0123456789").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "collectors: {{host: {{enabled: false}}}}\nweb:\n  open_probes: false\n  max_request_body_size: 1KB\n  bearer_tokens: [{{name: k8s, token_file: {}}}]\n",
            token.display()
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let get = |path: &str, auth: bool| {
        let mut r = http().get(format!("{}{path}", lk.base));
        if auth {
            r = r.bearer_auth("probe-token-0123456789");
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(get("/-/healthy", false), 401, "probes closed on request");
    assert_eq!(get("/health/live", false), 401);
    assert_eq!(get("/-/healthy", true), 200);
    let post = |body: String| {
        http()
            .post(format!("{}/api/v1/query", lk.base))
            .bearer_auth("probe-token-0123456789")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(format!("query=1{}", "+0".repeat(1000))), 413);
    assert_eq!(post("query=1%2B1".to_string()), 200);
    assert!(lk.terminate().success());
}

/// A forward HTTP proxy for one test: tunnels `CONNECT host:port` and counts tunnels.
fn proxy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let seen = std::sync::Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let Ok(up) = std::net::TcpStream::connect(&target) else {
                    return;
                };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut client = s;
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let (mut a, mut b) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                let mut up2 = up;
                std::thread::spawn(move || std::io::copy(&mut a, &mut up2));
                let _ = std::io::copy(&mut b, &mut client);
            });
        }
    });
    (port, count)
}

#[test]
fn issue_14_scrapes_verify_a_configured_server_name_through_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // The target: a Lookout whose certificate names only exporter.internal.
    let target_dir = dir.path().join("target");
    std::fs::create_dir_all(&target_dir).unwrap();
    let p = pki_for(&target_dir, &["exporter.internal"]);
    let web = web_config(&target_dir, &p, &[("scraper", "pw")], "");
    let tcfg = write_config(&target_dir, "collectors: {host: {enabled: false}}\n");
    let target = Lookout::start_with(
        &target_dir.join("data"),
        &tcfg,
        &["--web.config.file", utf8(&web)],
    );
    let addr = target.base.trim_start_matches("https://").to_string();
    let (proxy_port, tunnels) = proxy();
    // The scraper: the CA inline, the name to verify, the proxy; and a job without the
    // name, which must fail (the certificate does not name 127.0.0.1).
    let ca = std::fs::read_to_string(&p.ca).unwrap();
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("          {l}\n"))
            .collect::<String>()
    };
    let scfg = write_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\ncollectors: {{host: {{enabled: false}}}}\nscrape_configs:\n  - job_name: named\n    scheme: https\n    proxy_url: http://127.0.0.1:{proxy_port}\n    basic_auth: {{username: scraper, password: pw}}\n    tls_config:\n      server_name: exporter.internal\n      ca: |\n{}    static_configs: [{{targets: ['{addr}']}}]\n  - job_name: unnamed\n    scheme: https\n    basic_auth: {{username: scraper, password: pw}}\n    tls_config:\n      ca: |\n{}    static_configs: [{{targets: ['{addr}']}}]\n",
            indent(&ca),
            indent(&ca)
        ),
    );
    let scraper = Lookout::start(&dir.path().join("data"), &scfg);
    let up = |job: &str| {
        let v = scraper.query(&format!("up{{job=\"{job}\"}}"));
        v.first().map(value_of)
    };
    wait_until("both jobs scraped", Duration::from_secs(30), || {
        up("named").is_some() && up("unnamed").is_some()
    });
    wait_until("the named job is up", Duration::from_secs(10), || {
        up("named") == Some(1.0)
    });
    assert_eq!(
        up("unnamed"),
        Some(0.0),
        "the URL's host is not in the certificate"
    );
    assert!(
        tunnels.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the named job went through the proxy"
    );
    assert!(scraper.terminate().success());
    assert!(target.terminate().success());
}

#[test]
fn issue_14_alerts_are_forwarded_over_tls_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    // The receiving side: a Lookout with its notifier behind TLS and basic auth, whose
    // `forwarder` user may post alerts (operator).
    let am_dir = dir.path().join("am");
    std::fs::create_dir_all(&am_dir).unwrap();
    let p = pki(&am_dir);
    let web = web_config(&am_dir, &p, &[("forwarder", "fw-pass")], "");
    std::fs::write(
        am_dir.join("am.yml"),
        "route: {receiver: x}\nreceivers: [{name: x}]\n",
    )
    .unwrap();
    let acfg = write_config(
        &am_dir,
        "collectors: {host: {enabled: false}}\nnotifier: {config_file: am.yml}\nweb: {roles: {forwarder: operator}}\n",
    );
    let am = Lookout::start_with(
        &am_dir.join("data"),
        &acfg,
        &["--web.config.file", utf8(&web)],
    );
    let target = am.base.trim_start_matches("https://").to_string();
    // The sending side: a rule that fires at once, forwarded with the CA and password.
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n- name: g\n  interval: 1s\n  rules:\n  - alert: Forwarded\n    expr: vector(1)\n",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "global: {{evaluation_interval: 1s}}\ncollectors: {{host: {{enabled: false}}}}\nrule_packs: []\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - scheme: https\n      tls_config: {{ca_file: {}}}\n      basic_auth: {{username: forwarder, password: fw-pass}}\n      static_configs: [{{targets: ['{target}']}}]\n",
            p.ca.display()
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let c = client(&p, false);
    wait_until(
        "the alert reached the other side",
        Duration::from_secs(30),
        || {
            c.get(format!("{}/api/v2/alerts", am.base))
                .basic_auth("forwarder", Some("fw-pass"))
                .send()
                .and_then(|r| r.text())
                .is_ok_and(|t| t.contains("Forwarded"))
        },
    );
    assert!(lk.terminate().success());
    assert!(am.terminate().success());

    // A forwarding target whose TLS settings cannot be used stops start-up, named.
    let bad = write_config(
        dir.path(),
        "alerting:\n  alertmanagers:\n    - tls_config: {ca_file: /no/such/ca.pem}\n      static_configs: [{targets: ['127.0.0.1:1']}]\n",
    );
    let out = run(&["check", "config", utf8(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alerting.alertmanagers") && err.contains("ca"),
        "{err}"
    );
}

#[test]
fn issue_14_the_web_ui_in_chromium_signs_in_shows_the_role_and_offers_only_what_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let (p, web) = three_users(dir.path(), ", group_wait: 0s");
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: ui\n    rules:\n      - alert: DiskAlmostFull\n        expr: vector(1)\n        labels: {severity: page}\n        annotations: {summary: the disk is almost full}\n",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        "global: {evaluation_interval: 1s}\ncollectors: {host: {enabled: false}}\nrule_packs: []\nrule_files: [rules.yml]\nnotifier: {config_file: am.yml}\nweb:\n  roles: {alice: operator, carol: admin}\n",
    );
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.config.file", utf8(&web)],
    );
    let c = client(&p, false);
    let alerts = {
        let (c, url) = (c.clone(), format!("{}/api/v2/alerts", lk.base));
        move || -> serde_json::Value {
            c.get(&url)
                .basic_auth("alice", Some("a-pass"))
                .send()
                .unwrap()
                .json()
                .unwrap()
        }
    };
    wait_until(
        "the alert reached the notifier",
        Duration::from_secs(30),
        || alerts().as_array().is_some_and(|a| !a.is_empty()),
    );
    let driver = chromedriver();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // alice, an operator: her name and role, the reload and acknowledge buttons, but not
        // the admin-only audit log.
        let b = browser(&driver, &dir.path().join("alice-profile")).await;
        sign_in(&b, &lk.base, "alice", "a-pass").await;
        wait_text(&b, "#whoami", |t| t == "alice (operator)").await;
        wait_text(&b, "#alerts tbody", |t| t.contains("DiskAlmostFull")).await;
        assert!(displayed(&b, "#reload").await);
        assert!(!displayed(&b, "#audit-link").await);
        let ack = b
            .find(fantoccini::Locator::XPath(
                "//table[@id='alerts']//button[text()='Acknowledge']",
            ))
            .await
            .unwrap();
        assert!(ack.is_displayed().await.unwrap());
        ack.click().await.unwrap();
        wait_text(&b, "#alerts tbody", |t| t.contains("by alice")).await;
        // (reqwest's blocking client may not run on this runtime's thread)
        let a = tokio::task::spawn_blocking(alerts.clone()).await.unwrap();
        assert_eq!(a[0]["acknowledged"]["by"], "alice", "{a}");
        assert_eq!(a[0]["acknowledged"]["comment"], "from the web UI", "{a}");
        b.find(fantoccini::Locator::Id("reload"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&b, "#action-status", |t| t.contains("reloaded")).await;

        // A cross-site form posting to Lookout with alice's credentials cached in the browser
        // is refused by the origin check.
        let form = format!(
            "data:text/html,<form id=f method=post action='{}/-/reload'></form><script>document.getElementById('f').submit()</script>",
            lk.base
        );
        b.goto(&form).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let src = b.source().await.unwrap_or_default();
            if src.contains("cross-site") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{src}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        b.close().await.unwrap();

        // bob, unlisted and so a viewer: he reads the alert but is offered no button, and a
        // write he forces from the page's console is refused with the role it needs.
        let b = browser(&driver, &dir.path().join("bob-profile")).await;
        sign_in(&b, &lk.base, "bob", "b-pass").await;
        wait_text(&b, "#whoami", |t| t == "bob (viewer)").await;
        wait_text(&b, "#alerts tbody", |t| t.contains("by alice")).await;
        assert!(!displayed(&b, "#reload").await);
        assert!(!displayed(&b, "#alerts button").await);
        let forced = b
            .execute_async(
                "const done = arguments[arguments.length - 1]; fetch('/-/reload', {method: 'POST'}).then(async (r) => done(r.status + ' ' + await r.text()));",
                vec![],
            )
            .await
            .unwrap();
        let forced = forced.as_str().unwrap_or_default().to_string();
        assert!(
            forced.starts_with("403") && forced.contains("operator"),
            "{forced}"
        );
        b.close().await.unwrap();
    });

    // The audit trail names who acknowledged from the browser; only admins read it.
    let audit = |user: &str, pass: &str| {
        let r = c
            .get(format!("{}/api/v1/lookout/audit?source=http", lk.base))
            .basic_auth(user, Some(pass))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(audit("alice", "a-pass").0, 403);
    let (st, trail) = audit("carol", "c-pass");
    assert_eq!(st, 200, "{trail}");
    let trail: serde_json::Value = serde_json::from_str(&trail).unwrap();
    let entries = trail["data"].as_array().expect("audit entries");
    assert!(
        entries.iter().any(|e| e["who"] == "alice"
            && e["target"].as_str().is_some_and(|t| t.ends_with("/ack"))
            && e["result"] == 200),
        "{trail}"
    );
    drop(driver);
    assert!(lk.terminate().success());
}
