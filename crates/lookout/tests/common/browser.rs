//! A real browser for the UI tests: Debian's chromium driven over WebDriver
//! (chromium-driver) with fantoccini.

use std::path::Path;
use std::time::Duration;

use super::{http, wait_until};

/// chromedriver (Debian's chromium-driver) on a free port, stopped by PID when dropped.
pub struct ChromeDriver {
    child: std::process::Child,
    pub url: String,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chromedriver() -> ChromeDriver {
    let exe = "/usr/bin/chromedriver";
    assert!(
        Path::new(exe).exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and chromium-driver (./scripts/test installs them)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let d = ChromeDriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    wait_until("chromedriver is ready", Duration::from_secs(30), || {
        http()
            .get(format!("{}/status", d.url))
            .send()
            .and_then(|r| r.json::<serde_json::Value>())
            .is_ok_and(|v| v["value"]["ready"] == true)
    });
    d
}

/// A headless Chromium session with its own profile in `profile`; the test's CA is not
/// installed in it, so it accepts the test certificate.
pub async fn browser(driver: &ChromeDriver, profile: &Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), serde_json::json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Runs `f` with a fresh headless Chromium session (its own driver, profile in
/// `profile`, and runtime), then closes the session: for tests that visit a page or two.
/// `f` hands the client back so it can be closed.
#[allow(dead_code)]
pub fn with_browser<F, Fut>(profile: &Path, f: F)
where
    F: FnOnce(fantoccini::Client) -> Fut,
    Fut: std::future::Future<Output = fantoccini::Client>,
{
    let driver = chromedriver();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = browser(&driver, profile).await;
        let b = f(b).await;
        b.close().await.unwrap();
    });
}

/// Signs in with basic auth (credentials in the first URL, as a user typing them into the
/// browser's prompt would give them once) and opens the UI's status page at `base`.
pub async fn sign_in(b: &fantoccini::Client, base: &str, user: &str, pass: &str) {
    let with_credentials = base.replacen("https://", &format!("https://{user}:{pass}@"), 1);
    b.goto(&format!("{with_credentials}/status")).await.unwrap();
    b.goto(&format!("{base}/status")).await.unwrap();
}

/// Polls the text of the element `css` until `want` accepts it.
pub async fn wait_text(b: &fantoccini::Client, css: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = match b.find(fantoccini::Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if want(&t) {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} still reads {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clicks the element `css`, failing the test with the selector when it is missing.
pub async fn click(b: &fantoccini::Client, css: &str) {
    b.find(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

pub async fn displayed(b: &fantoccini::Client, css: &str) -> bool {
    let mut any = false;
    for e in b.find_all(fantoccini::Locator::Css(css)).await.unwrap() {
        any |= e.is_displayed().await.unwrap();
    }
    any
}
