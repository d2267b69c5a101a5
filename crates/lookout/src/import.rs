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

/// Whether a parsed sample's `name` and label `pairs` are exactly the series `c` (what
/// `Labels::from_pairs` would build from them): samples come grouped by series, so most
/// lines repeat the previous line's series, and checking costs less than building it.
fn same_series(c: &Labels, name: &str, pairs: &[(&str, std::borrow::Cow<'_, str>)]) -> bool {
    c.len() == pairs.len() + 1
        && c.metric_name() == Some(name)
        && pairs.iter().enumerate().all(|(i, (k, v))| {
            !v.is_empty()
                && *k != METRIC_NAME_LABEL
                && c.get(k) == Some(&**v)
                && pairs[..i].iter().all(|(k2, _)| k2 != k)
        })
}

fn feed(reader: &mut impl BufRead, importer: &mut Importer) -> anyhow::Result<()> {
    let mut current: Option<Labels> = None;
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
                let labels = match &current {
                    Some(c) if same_series(c, s.name, &s.labels) => c.clone(),
                    _ => {
                        let l = Labels::from_pairs(
                            std::iter::once((METRIC_NAME_LABEL, s.name.to_string()))
                                .chain(s.labels.into_iter().map(|(k, v)| (k, v.into_owned()))),
                        );
                        current = Some(l.clone());
                        l
                    }
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn same_series_agrees_with_building_the_labels() {
        let built = |name: &str, pairs: &[(&str, Cow<'_, str>)]| {
            Labels::from_pairs(
                std::iter::once((METRIC_NAME_LABEL, name.to_string()))
                    .chain(pairs.iter().map(|(k, v)| (*k, v.to_string()))),
            )
        };
        let c = Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")]);
        type Pairs<'a> = Vec<(&'a str, Cow<'a, str>)>;
        let cases: Vec<(&str, Pairs<'_>)> = vec![
            ("m", vec![("b", "2".into()), ("a", "1".into())]),
            ("m", vec![("a", "1".into()), ("b", "3".into())]),
            ("n", vec![("a", "1".into()), ("b", "2".into())]),
            ("m", vec![("a", "1".into()), ("a", "1".into())]),
            (
                "m",
                vec![("a", "1".into()), ("b", "2".into()), ("c", "".into())],
            ),
            ("m", vec![("a", "1".into())]),
            ("m", vec![("a", "1".into()), ("__name__", "m".into())]),
        ];
        // Never a false match (an empty value may make it build instead: harmless).
        for (name, pairs) in &cases {
            if same_series(&c, name, pairs) {
                assert_eq!(built(name, pairs), c, "{name} {pairs:?}");
            }
        }
        assert!(
            same_series(&c, cases[0].0, &cases[0].1),
            "same labels, other order"
        );
    }
}
