//! `lookout import openmetrics FILE`: backfills an OpenMetrics file into blocks, in one
//! pass, showing progress; a malformed line stops it with the line number and leaves the
//! data directory as it was.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use lookout_expfmt::{Format, Line, parse_line};
use lookout_model::{Labels, METRIC_NAME_LABEL};
use lookout_tsdb::{ImportSummary, Importer};

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Imports `file` into `data`.
pub(crate) fn openmetrics(
    file: &Path,
    data: &Path,
    block_range: Duration,
) -> anyhow::Result<ImportSummary> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} importing [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut reader = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: f,
            bar: bar.clone(),
        },
    );
    let mut importer = Importer::new(data, block_range)?;
    let started = Instant::now();
    let result = feed(&mut reader, &mut importer);
    bar.finish_and_clear();
    match result {
        Ok(()) => {
            let summary = importer.finish()?;
            eprintln!(
                "imported {} samples of {} series into {} blocks in {:.2?}",
                summary.samples,
                summary.series,
                summary.blocks,
                started.elapsed()
            );
            Ok(summary)
        }
        Err(e) => {
            importer.abort();
            Err(e.context(format!(
                "{} was not imported; {} is unchanged",
                file.display(),
                data.display()
            )))
        }
    }
}

fn feed(reader: &mut impl BufRead, importer: &mut Importer) -> anyhow::Result<()> {
    let mut line = String::new();
    let mut n = 0usize;
    let mut saw_eof = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).context("reading input")? == 0 {
            break;
        }
        n += 1;
        let text = line.strip_suffix('\n').unwrap_or(&line);
        if saw_eof {
            if text.is_empty() {
                continue;
            }
            anyhow::bail!("line {n}: content after # EOF");
        }
        match parse_line(text, Format::OpenMetrics).map_err(|e| anyhow::anyhow!("line {n}: {e}"))? {
            Line::Eof => saw_eof = true,
            Line::Sample(s) => {
                let t = s
                    .timestamp_ms
                    .ok_or_else(|| anyhow::anyhow!("line {n}: sample without a timestamp"))?;
                let labels = Labels::from_pairs(
                    std::iter::once((METRIC_NAME_LABEL, s.name.to_string()))
                        .chain(s.labels.into_iter().map(|(k, v)| (k, v.into_owned()))),
                );
                importer
                    .add(labels, t, s.value)
                    .map_err(|e| anyhow::anyhow!("line {n}: {e}"))?;
            }
            _ => {}
        }
    }
    if !saw_eof {
        anyhow::bail!("line {n}: missing `# EOF` at the end (is the file truncated?)");
    }
    Ok(())
}
