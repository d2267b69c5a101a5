//! Slack, PagerDuty and email end to end: Slack's and PagerDuty's APIs cannot run here,
//! so local HTTP receivers check the exact payloads against golden files; email goes to
//! a real SMTP server process (Python's `smtpd` DebuggingServer, and aiosmtpd with STARTTLS
//! from the virtualenv `scripts/test` makes) and the message is checked as it arrives.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lookout_model::Labels;
use lookout_notify::receivers::{deliver, http_client};
use lookout_notify::{Alert, Config, Core, Notification, Options};
use serde_json::Value;
use support::Http;

mod support;

const T0: i64 = 1_767_225_600_000;

fn notification(cfg: &str) -> Notification {
    let mut core = Core::new(Config::parse(cfg).unwrap(), Options::default()).unwrap();
    let a = |inst: &str| Alert {
        labels: Labels::from_pairs([
            ("alertname", "PostgresDown"),
            ("instance", inst),
            ("job", "postgres"),
            ("severity", "critical"),
        ]),
        annotations: [("summary".to_string(), format!("{inst} is down"))].into(),
        starts_at: T0,
        ends_at: 0,
        generator_url: "http://lookout/graph?g0.expr=pg_up+%3D%3D+0&g0.tab=1".into(),
        updated_at: 0,
    };
    core.put_alerts(vec![a("db1"), a("db2")], T0);
    core.tick(T0 + 30_000).remove(0)
}

fn send(n: &Notification) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(deliver(&http_client(), n, "http://lookout.example:9180"))
        .unwrap();
}

#[test]
fn slack_gets_alertmanagers_message() {
    let http = Http::start(200, 0);
    let n = notification(&format!(
        "global: {{slack_api_url: '{}/services/T/B/X'}}\nroute: {{receiver: chat, group_by: [alertname]}}\nreceivers:\n  - name: chat\n    slack_configs: [{{channel: '#db', text: '{{{{ range .Alerts }}}}{{{{ .Annotations.summary }}}} {{{{ end }}}}'}}]\n",
        http.base
    ));
    send(&n);
    let got = http.bodies.lock().unwrap().clone();
    assert_eq!(got[0].0, "/services/T/B/X");
    let golden: Value = serde_json::from_str(include_str!("golden/slack.json")).unwrap();
    assert_eq!(
        got[0].1,
        golden,
        "{}",
        serde_json::to_string_pretty(&got[0].1).unwrap()
    );
}

#[test]
fn pagerduty_gets_an_events_v2_trigger() {
    let http = Http::start(202, 0);
    let n = notification(&format!(
        "route: {{receiver: pd, group_by: [alertname]}}\nreceivers:\n  - name: pd\n    pagerduty_configs: [{{routing_key: 'R0UTING', url: '{}/v2/enqueue', severity: '{{{{ .CommonLabels.severity }}}}'}}]\n",
        http.base
    ));
    send(&n);
    let got = http.bodies.lock().unwrap().clone();
    assert_eq!(got[0].0, "/v2/enqueue");
    let golden: Value = serde_json::from_str(include_str!("golden/pagerduty.json")).unwrap();
    assert_eq!(
        got[0].1,
        golden,
        "{}",
        serde_json::to_string_pretty(&got[0].1).unwrap()
    );
}

/// The lines `child` prints, collected as they come.
fn collect_lines(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let out = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(l);
        }
    });
    lines
}

/// A real SMTP server: Python's smtpd DebuggingServer on a free port, printing messages.
struct Smtp {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = match Command::new("python3")
            .args([
                "-u",
                "-W",
                "ignore",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: python3 cannot start an SMTP server: {e}");
                return None;
            }
        };
        let lines = collect_lines(&mut child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, port, lines })
    }
}

#[test]
fn email_reaches_a_real_smtp_server() {
    let Some(smtp) = Smtp::start() else { return };
    let n = notification(&format!(
        "global: {{smtp_smarthost: '127.0.0.1:{}', smtp_from: 'lookout@example.org', smtp_require_tls: false}}\nroute: {{receiver: mail, group_by: [alertname]}}\nreceivers:\n  - name: mail\n    email_configs: [{{to: 'oncall@example.org, dba@example.org', headers: {{X-Team: dba}}}}]\n",
        smtp.port
    ));
    send(&n);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = smtp.lines.lock().unwrap().join("\n");
        if t.contains("END MESSAGE") {
            break t;
        }
        assert!(Instant::now() < deadline, "no message arrived: {t}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains("b'Subject: [FIRING:2] PostgresDown (postgres critical)'"),
        "{text}"
    );
    assert!(text.contains("b'From: lookout@example.org'"), "{text}");
    assert!(
        text.contains("oncall@example.org") && text.contains("dba@example.org"),
        "{text}"
    );
    assert!(text.contains("b'X-Team: dba'"), "{text}");
    assert!(text.contains("b'Alerts Firing:'"), "{text}");
    assert!(
        text.contains("b' - instance = db1'") && text.contains("b' - summary = db2 is down'"),
        "{text}"
    );
    assert!(
        text.contains("b'View in Lookout: http://lookout.example:9180/#/alerts?receiver=mail'"),
        "{text}"
    );
}

/// Issue 14: a receiver's `http_config` is honoured: its credentials are sent (the
/// password read from its file), a broken one fails the delivery naming it.
#[test]
fn a_receivers_http_config_is_honoured() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(String::new()));
    let s2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = vec![0u8; 65536];
            let n = s.read(&mut buf).unwrap_or(0);
            s2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hook-secret\n").unwrap();
    let n = notification(&format!(
        "route: {{receiver: hook, group_by: [alertname]}}\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: 'http://127.0.0.1:{port}/hook'\n        http_config: {{basic_auth: {{username: lookout, password_file: {}}}}}\n",
        pw.display()
    ));
    send(&n);
    let req = seen.lock().unwrap().to_ascii_lowercase();
    // base64("lookout:hook-secret")
    assert!(
        req.contains("authorization: basic bg9va291ddpob29rlxnly3jlda=="),
        "{req}"
    );
    let n = notification(&format!(
        "route: {{receiver: hook, group_by: [alertname]}}\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: 'http://127.0.0.1:{port}/hook'\n        http_config: {{tls_config: {{ca_file: /no/such/ca.pem}}}}\n"
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(deliver(&http_client(), &n, "http://lookout.example:9180"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ca_file"), "{e}");
}

/// The Python with aiosmtpd: `LOOKOUT_TEST_PYTHON` (set by `scripts/test`, which installs
/// it into a virtualenv; then it must work), else `python3` if it has aiosmtpd.
fn aiosmtpd_python() -> Option<String> {
    let (py, required) = match std::env::var("LOOKOUT_TEST_PYTHON") {
        Ok(p) => (p, true),
        Err(_) => ("python3".to_string(), false),
    };
    let ok = Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    assert!(!required, "{py} cannot import aiosmtpd");
    eprintln!("SKIPPED: no Python with aiosmtpd (./scripts/test installs one)");
    None
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files.
fn smtp_pki(dir: &std::path::Path) -> [std::path::PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Lookout SMTP test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let sk = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&sk, &issuer)
        .unwrap();
    let ck = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec!["lookout".to_string()]).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "lookout");
    let client = client.signed_by(&ck, &issuer).unwrap();
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    [
        w("ca.pem", ca_cert.pem()),
        w("server.pem", server.pem()),
        w("server-key.pem", sk.serialize_pem()),
        w("client.pem", client.pem()),
        w("client-key.pem", ck.serialize_pem()),
    ]
}

/// aiosmtpd requiring STARTTLS with the server certificate (and, if `client_ca`, a client
/// certificate signed by it); prints each message's envelope and whether it came over TLS.
fn start_tls_smtp(
    py: &str,
    pki: &[std::path::PathBuf; 5],
    client_ca: bool,
) -> (Child, u16, Arc<Mutex<Vec<String>>>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = r#"
import ssl, sys, threading
from aiosmtpd.controller import Controller
cert, key, ca, port, mtls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
class Handler:
    async def handle_DATA(self, server, session, envelope):
        print("MESSAGE from=%s to=%s tls=%s" % (envelope.mail_from, ",".join(envelope.rcpt_tos), session.ssl is not None), flush=True)
        print(envelope.content.decode("utf-8", "replace"), flush=True)
        print("END MESSAGE", flush=True)
        return "250 OK"
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
if mtls:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
c = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
c.start()
print("READY", flush=True)
sys.stdin.read()
"#;
    let mut child = Command::new(py)
        .args(["-u", "-c", script])
        .arg(&pki[1])
        .arg(&pki[2])
        .arg(&pki[0])
        .arg(port.to_string())
        .arg(if client_ca { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = collect_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.lock().unwrap().iter().any(|l| l == "READY") {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port, lines)
}

fn try_send(n: &Notification) -> Result<(), String> {
    // One attempt's worth: a failure here should say why, not retry for minutes.
    let mut n = n.clone();
    n.retry_for = Duration::from_secs(2);
    let n = &n;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(deliver(&http_client(), n, "http://lookout.example:9180"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn wait_message(lines: &Arc<Mutex<Vec<String>>>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = lines.lock().unwrap().join("\n");
        if t.contains("END MESSAGE") {
            return t;
        }
        assert!(Instant::now() < deadline, "no message arrived: {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 14: an email receiver's `tls_config` is honoured over STARTTLS against a real SMTP
/// server: its CA and `server_name` verify the server, its client certificate satisfies
/// a server that requires one; without the CA the certificate is refused and nothing is sent.
#[test]
fn email_tls_config_verifies_the_server_and_presents_a_client_certificate() {
    let Some(py) = aiosmtpd_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = smtp_pki(dir.path());
    let cfg = |port: u16, tls: &str| {
        format!(
            "global: {{smtp_smarthost: '127.0.0.1:{port}', smtp_from: 'lookout@example.org'}}\nroute: {{receiver: mail, group_by: [alertname]}}\nreceivers:\n  - name: mail\n    email_configs: [{{to: 'oncall@example.org', tls_config: {tls}}}]\n"
        )
    };
    let ca = pki[0].display().to_string();

    // The server's certificate names localhost, not 127.0.0.1: server_name makes it match.
    let (mut child, port, lines) = start_tls_smtp(&py, &pki, false);
    try_send(&notification(&cfg(
        port,
        &format!("{{ca_file: '{ca}', server_name: localhost, min_version: TLS12}}"),
    )))
    .unwrap();
    let text = wait_message(&lines);
    assert!(
        text.contains("MESSAGE from=lookout@example.org to=oncall@example.org tls=True"),
        "{text}"
    );
    assert!(text.contains("Subject: [FIRING:2] PostgresDown"), "{text}");

    // Without the CA, the public roots do not know the test CA: refused, nothing sent.
    lines.lock().unwrap().clear();
    let err = try_send(&notification(&cfg(port, "{server_name: localhost}"))).unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Without server_name the name 127.0.0.1 is not in the certificate.
    let err = try_send(&notification(&cfg(port, &format!("{{ca_file: '{ca}'}}")))).unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("MESSAGE")),
        "a message went through an unverified connection"
    );
    let _ = child.kill();
    let _ = child.wait();

    // A server that requires a client certificate gets the configured one.
    let (mut child, port, lines) = start_tls_smtp(&py, &pki, true);
    let with_cert = format!(
        "{{ca_file: '{ca}', server_name: localhost, cert_file: '{}', key_file: '{}'}}",
        pki[3].display(),
        pki[4].display()
    );
    try_send(&notification(&cfg(port, &with_cert))).unwrap();
    assert!(wait_message(&lines).contains("tls=True"));
    lines.lock().unwrap().clear();
    assert!(
        try_send(&notification(&cfg(
            port,
            &format!("{{ca_file: '{ca}', server_name: localhost}}")
        )))
        .is_err(),
        "a server requiring a client certificate accepted none"
    );
    let _ = child.kill();
    let _ = child.wait();

    // Unreadable certificates and unsupported versions are named when the file is loaded.
    let bad = Config::parse(&cfg(25, "{ca_file: /no/such/ca.pem}")).unwrap_err();
    assert!(bad.to_string().contains("/no/such/ca.pem"), "{bad}");
    let bad = Config::parse(&cfg(25, "{max_version: TLS11}")).unwrap_err();
    assert!(bad.to_string().contains("max_version"), "{bad}");
}
