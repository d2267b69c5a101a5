//! `lookout-bench parse`: exposition parsing throughput (lines per second) of
//! `lookout_expfmt::parse` on Prometheus's textparse test files (when
//! ../shared/upstream is there) and on a large generated payload, with `promtool check
//! metrics` reading the same payload in the same run as the baseline (it parses with
//! Prometheus's Go parser, plus lint checks and process start-up, so it is an upper bound
//! on Go's cost, not a parser-only figure).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use lookout_expfmt::{Format, parse};

/// Best of `runs` timings of `f`.
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// A node_exporter-like payload of about `lines` sample lines, with HELP/TYPE lines.
fn payload(lines: usize) -> String {
    let mut out = String::with_capacity(lines * 90);
    let families = 100;
    let per = lines / families + 1;
    for f in 0..families {
        out.push_str(&format!(
            "# HELP bench_family_{f}_total Generated family {f}.\n# TYPE bench_family_{f}_total counter\n"
        ));
        for i in 0..per {
            out.push_str(&format!(
                "bench_family_{f}_total{{instance=\"host-{:03}:9100\",job=\"node\",device=\"dev{}\",mode=\"m{}\"}} {}.{}\n",
                i % 500,
                i % 16,
                i % 7,
                i * 31 + f,
                i % 1000
            ));
        }
    }
    out
}

fn promtool_seconds(promtool: &str, body: &str) -> Option<f64> {
    let t = Instant::now();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(body.as_bytes()).ok()?;
    child.wait().ok()?;
    Some(t.elapsed().as_secs_f64())
}

/// Runs the benchmark and prints lines/s for each input.
pub(crate) fn run(lines: usize, promtool: &str, files: Vec<PathBuf>) -> anyhow::Result<()> {
    let mut inputs: Vec<(String, String, Format)> = Vec::new();
    let mut files = files;
    if files.is_empty()
        && let Some(upstream) = lookout_testkit::upstream("prometheus/textparse-testdata")
        && let Ok(rd) = std::fs::read_dir(&upstream)
    {
        files.extend(rd.flatten().map(|e| e.path()));
        files.sort();
    }
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let format = if name.contains(".om") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        };
        let body =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        inputs.push((name, body, format));
    }
    inputs.push((
        format!("generated ({lines} lines)"),
        payload(lines),
        Format::Prometheus,
    ));
    println!(
        "{:<40} {:>10} {:>14} {:>16} {:>8}",
        "input", "lines", "lookout l/s", "promtool l/s", "ratio"
    );
    for (name, body, format) in &inputs {
        let n = body.lines().count();
        // Enough repetitions for small files to be measurable.
        let reps = (2_000_000 / n.max(1)).clamp(1, 10_000);
        let ours = best(5, || {
            for _ in 0..reps {
                let e = parse(body, *format).expect("parses");
                std::hint::black_box(e.samples.len());
            }
        })
        .as_secs_f64()
            / reps as f64;
        let theirs = if *format == Format::Prometheus {
            promtool_seconds(promtool, body)
        } else {
            None
        };
        println!(
            "{:<40} {:>10} {:>14.0} {:>16} {:>8}",
            name,
            n,
            n as f64 / ours,
            theirs.map_or("-".into(), |t| format!("{:.0}", n as f64 / t)),
            theirs.map_or("-".into(), |t| format!("{:.3}×", ours / t)),
        );
    }
    println!(
        "(ratio: Lookout's time / promtool's time for the same input; promtool includes its start-up and lint checks)"
    );
    Ok(())
}
