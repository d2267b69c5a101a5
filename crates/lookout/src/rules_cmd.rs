//! `lookout check rules` and `lookout test rules`: promtool's rule commands, with its
//! output shape (`Checking FILE` / `SUCCESS: N rules found`, `Unit Testing: FILE` /
//! `SUCCESS` or `FAILED:` with expected and got), and exit status 1 on any failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use lookout_rules::file;
use lookout_rules::unittest::{TestOptions, run_file};

/// Recording rules that write the same series twice (same name and labels).
fn duplicates(f: &file::RuleFile) -> Vec<(String, BTreeMap<String, String>)> {
    let mut seen: BTreeMap<(String, BTreeMap<String, String>), usize> = BTreeMap::new();
    for g in &f.groups {
        for r in &g.rules {
            if let Some(rec) = &r.record {
                *seen.entry((rec.clone(), r.labels.clone())).or_default() += 1;
            }
        }
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

/// Checks rule files; returns failure when any is invalid.
pub(crate) fn check(files: &[PathBuf], ignore_unknown_fields: bool) -> ExitCode {
    let mut failed = false;
    for f in files {
        println!("Checking {}", f.display());
        match file::load_file(f, ignore_unknown_fields) {
            Ok(loaded) => {
                let dups = duplicates(&loaded.file);
                if !dups.is_empty() {
                    println!("{} duplicate rule(s) found.", dups.len());
                    for (name, labels) in dups {
                        println!("Metric: {name}");
                        let l: Vec<String> =
                            labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                        println!("Label(s):");
                        if !l.is_empty() {
                            println!("\t{}", l.join(", "));
                        }
                    }
                    println!("Might cause inconsistency while recording expressions.");
                }
                let n: usize = loaded.file.groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {n} rules found");
            }
            Err(errs) => {
                failed = true;
                eprintln!("  FAILED:");
                for e in errs {
                    eprintln!("{e}");
                }
            }
        }
        println!();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs rule unit-test files; returns failure when any test fails.
pub(crate) fn test(
    files: &[PathBuf],
    run: Option<&str>,
    ignore_unknown_fields: bool,
) -> anyhow::Result<ExitCode> {
    let opts = TestOptions {
        run: run
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--run: {e}"))?,
        ignore_unknown_fields,
    };
    let mut failed = false;
    for f in files {
        println!("Unit Testing:  {}", f.display());
        let out = run_file(f, &opts);
        if out.ok() {
            println!("  SUCCESS");
        } else {
            failed = true;
            println!("  FAILED:");
            for e in &out.failures {
                println!("{e}");
            }
        }
        println!();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A time argument: RFC 3339, Unix seconds, `now` or `now-<duration>` (ms).
fn time_arg(s: &str, now: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(d) = s.strip_prefix("now-") {
        let d = lookout_model::parse_duration(d)
            .map_err(|e| anyhow::anyhow!("invalid time {s:?}: {e}"))?;
        return Ok(now - d.as_millis() as i64);
    }
    if let Some(t) = lookout_model::parse_rfc3339(s) {
        return Ok(t);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() < 1e13 => Ok((v * 1000.0) as i64),
        _ => anyhow::bail!("invalid time {s:?}: RFC 3339, Unix seconds, now or now-<duration>"),
    }
}

/// `lookout rules backtest`: evaluates the files' alerting rules over history (a data
/// directory, or a running Lookout) and prints how often each would have fired.
pub(crate) fn backtest(a: &crate::cli::BacktestArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let now = lookout_model::now_ms();
    let from = time_arg(&a.from, now).context("--from")?;
    let to = time_arg(&a.to, now).context("--to")?;
    anyhow::ensure!(to > from, "--to must be after --from");
    let step = a
        .step
        .as_deref()
        .map(lookout_model::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--step: {e}"))?;
    let mut reports = Vec::new();
    if let Some(url) = &a.url {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = lookout_http::client(&lookout_http::HttpConfig::default())?;
        for f in &a.files {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let mut q = vec![
                ("from", (from as f64 / 1000.0).to_string()),
                ("to", (to as f64 / 1000.0).to_string()),
            ];
            if let Some(s) = &a.step {
                q.push(("step", s.clone()));
            }
            let req = client
                .post(format!(
                    "{}/api/v1/lookout/rules/backtest",
                    url.trim_end_matches('/')
                ))
                .query(&q)
                .timeout(std::time::Duration::from_secs(600))
                .body(text);
            let (status, body) = rt
                .block_on(async {
                    let r = req.send().await?;
                    let status = r.status();
                    Ok::<_, reqwest::Error>((status, r.json::<serde_json::Value>().await?))
                })
                .with_context(|| format!("asking {url}"))?;
            anyhow::ensure!(
                status.is_success(),
                "{}: {}",
                f.display(),
                body["error"].as_str().unwrap_or("failed")
            );
            reports.extend(body["data"].as_array().cloned().unwrap_or_default());
        }
    } else {
        let dir = &a.data;
        anyhow::ensure!(
            dir.join("wal").exists() || dir.join("blocks").exists(),
            "{} is not a Lookout data directory (no wal/ or blocks/)",
            dir.display()
        );
        let db = lookout_tsdb::Tsdb::open(
            dir,
            lookout_tsdb::Options {
                maintenance_interval: None,
                ..lookout_tsdb::Options::default()
            },
            &mut prometheus_client::registry::Registry::default(),
        )
        .with_context(|| {
            format!(
                "opening {} (stop a running `lookout serve` first)",
                dir.display()
            )
        })?;
        let db = std::sync::Arc::new(db);
        let ctx = lookout_rules::EvalContext {
            engine: lookout_promql::Engine::default(),
            db: db.clone(),
            external_labels: Default::default(),
            external_url: String::new(),
        };
        for f in &a.files {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let groups = lookout_rules::backtest::groups_from_text(
                &text,
                f,
                std::time::Duration::from_secs(60),
            )
            .map_err(|e| anyhow::anyhow!("{}: {}", f.display(), e.join("; ")))?;
            let r = lookout_rules::backtest::run(
                groups,
                &ctx,
                &lookout_rules::backtest::BacktestOptions { from, to, step },
                None,
            )?;
            reports.extend(
                r.iter()
                    .map(|x| serde_json::to_value(x).unwrap_or_default()),
            );
        }
        drop(ctx);
        if let Ok(db) = std::sync::Arc::try_unwrap(db) {
            db.close()?;
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>10} {:>8} {:>7}",
        "ALERT", "FIRINGS", "FIRING TIME", "LONGEST", "SHARE", "SERIES", "PENDING"
    );
    for r in &reports {
        let dur = |s: f64| lookout_model::format_duration(std::time::Duration::from_secs(s as u64));
        println!(
            "{:<28} {:>8} {:>12} {:>12} {:>9.2}% {:>8} {:>7}",
            format!(
                "{}/{}",
                r["group"].as_str().unwrap_or(""),
                r["alert"].as_str().unwrap_or("")
            ),
            r["firings"],
            dur(r["firing_seconds"].as_f64().unwrap_or(0.0)),
            dur(r["longest_firing_seconds"].as_f64().unwrap_or(0.0)),
            r["firing_share"].as_f64().unwrap_or(0.0) * 100.0,
            r["series"],
            r["pending_only"],
        );
        if let Some(e) = r["last_error"].as_str() {
            println!("  {} evaluation(s) failed: {e}", r["errors"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}
