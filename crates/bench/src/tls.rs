//! `lookout-bench tls`: what TLS and basic authentication cost on the query path. The
//! same server build runs twice on the same kind of data (its own host collector):
//! plain HTTP, then HTTPS with a basic-auth user (certificates made here with rcgen, a
//! bcrypt hash of cost 10). Each side answers the same PromQL `--queries` times over a
//! kept-alive connection (mean latency per query), then `--handshakes` new connections
//! each asking `/-/healthy` (handshakes per second, and the server's CPU seconds per
//! thousand handshakes, read from /proc). Figures are printed side by side with the
//! ratio; the goal is at most 5% more per query.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::overhead::{Proc, cpu_seconds, spawn};
use crate::queries::free_port;

/// What one side measured.
struct Figures {
    per_query: Duration,
    handshakes_per_sec: f64,
    cpu_per_1k: f64,
}

/// Runs the benchmark and prints the table.
pub(crate) fn run(queries: usize, handshakes: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca, web) = web_config(dir.path())?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let query = "sum by (mode) (rate(node_cpu_seconds_total[1m]))";
    let plain = side(dir.path(), "plain", None, &ca, query, queries, handshakes)?;
    let tls = side(
        dir.path(),
        "tls",
        Some(&web),
        &ca,
        query,
        queries,
        handshakes,
    )?;
    println!("side          per query   handshakes/s   server CPU s per 1k connections");
    for (name, f) in [("http", &plain), ("https+auth", &tls)] {
        println!(
            "{name:<12} {:>8.3} ms   {:>12.0}   {:>8.3}",
            f.per_query.as_secs_f64() * 1e3,
            f.handshakes_per_sec,
            f.cpu_per_1k
        );
    }
    println!(
        "ratio (https+auth / http): per query {:.3}x, connections per second {:.3}x",
        tls.per_query.as_secs_f64() / plain.per_query.as_secs_f64(),
        tls.handshakes_per_sec / plain.handshakes_per_sec
    );
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1 and a web configuration using them with
/// user `bench` (password `bench`); returns the CA's PEM and the configuration's path.
fn web_config(dir: &Path) -> anyhow::Result<(Vec<u8>, std::path::PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  bench: {}\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display(),
            bcrypt::hash("bench", 10)?
        ),
    )?;
    Ok((ca.pem().into_bytes(), web))
}

fn side(
    dir: &Path,
    name: &str,
    web: Option<&Path>,
    ca: &[u8],
    query: &str,
    queries: usize,
    handshakes: usize,
) -> anyhow::Result<Figures> {
    let port = free_port()?;
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg, "global: {scrape_interval: 1s}\n")?;
    let mut cmd = Command::new(crate::lookout_exe()?);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.join(format!("{name}-data")))
        .arg("--config")
        .arg(&cfg);
    if let Some(w) = web {
        cmd.arg("--web.config.file").arg(w);
    }
    let server: Proc = spawn("lookout", &mut cmd)?;
    let scheme = if web.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://127.0.0.1:{port}");
    let client = |keep_alive: bool| -> anyhow::Result<reqwest::blocking::Client> {
        let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30));
        if web.is_some() {
            b = b.tls_certs_only([reqwest::Certificate::from_pem(ca)?]);
        }
        if !keep_alive {
            b = b.pool_max_idle_per_host(0);
        }
        Ok(b.build()?)
    };
    let auth = |r: reqwest::blocking::RequestBuilder| {
        if web.is_some() {
            r.basic_auth("bench", Some("bench"))
        } else {
            r
        }
    };
    let c = client(true)?;
    // Ready, with a few seconds of data for the rate.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = auth(
            c.get(format!("{base}/api/v1/query"))
                .query(&[("query", query)]),
        )
        .send()
        .ok()
        .filter(|r| r.status().is_success())
        .and_then(|r| r.text().ok())
        .is_some_and(|t| t.contains("\"mode\""));
        if ok {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{name}: no answer at {base}");
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("{name}: {queries} queries…");
    let t = Instant::now();
    for _ in 0..queries {
        let r = auth(
            c.get(format!("{base}/api/v1/query"))
                .query(&[("query", query)]),
        )
        .send()
        .context("query")?;
        anyhow::ensure!(r.status().is_success(), "{name}: {}", r.status());
        r.bytes()?;
    }
    let per_query = t.elapsed() / queries.max(1) as u32;
    eprintln!("{name}: {handshakes} new connections…");
    let fresh = client(false)?;
    let cpu0 = cpu_seconds(server.pid());
    let t = Instant::now();
    for _ in 0..handshakes {
        let r = fresh.get(format!("{base}/-/healthy")).send()?;
        anyhow::ensure!(r.status().is_success(), "{name}: {}", r.status());
    }
    let elapsed = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid()) - cpu0;
    Ok(Figures {
        per_query,
        handshakes_per_sec: handshakes as f64 / elapsed,
        cpu_per_1k: cpu * 1000.0 / handshakes.max(1) as f64,
    })
}
