//! `lookout tsdb stats`: what a data directory holds.

use std::path::Path;

use anyhow::Context;
use lookout_tsdb::{Options, Tsdb};
use prometheus_client::registry::Registry;

pub(crate) use lookout_model::format_rfc3339 as rfc3339;

/// Human-readable bytes.
pub(crate) fn bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Prints the statistics of the data directory `dir`, opened with `opts` (their retention
/// rules are reported on; nothing is maintained).
pub(crate) fn stats(dir: &Path, opts: Options, json: bool) -> anyhow::Result<()> {
    if !dir.join("wal").exists() && !dir.join("blocks").exists() {
        anyhow::bail!(
            "{} is not a Lookout data directory (no wal/ or blocks/)",
            dir.display()
        );
    }
    let db = Tsdb::open(
        dir,
        Options {
            maintenance_interval: None,
            ..opts
        },
        &mut Registry::default(),
    )
    .with_context(|| {
        format!(
            "opening {} (stop a running `lookout serve` first)",
            dir.display()
        )
    })?;
    let st = db.stats();
    db.close()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    println!("Data directory:   {}", dir.display());
    println!("Series:           {}", st.series);
    println!(
        "Samples:          {} (head {}, blocks {})",
        st.samples, st.head_samples, st.block_samples
    );
    match (st.min_time, st.max_time) {
        (Some(a), Some(b)) => println!(
            "Time range:       {} – {} ({:.1} h)",
            rfc3339(a),
            rfc3339(b),
            (b - a) as f64 / 3.6e6
        ),
        _ => println!("Time range:       (empty)"),
    }
    println!("Blocks:           {}", st.blocks);
    println!(
        "Bytes on disk:    chunks {}, index {}, WAL {}",
        bytes(st.chunk_bytes),
        bytes(st.index_bytes),
        bytes(st.wal_bytes)
    );
    if st.block_samples > 0 {
        println!(
            "Bytes per sample: {:.3} in blocks (chunks {:.3} + index {:.3})",
            (st.chunk_bytes + st.index_bytes) as f64 / st.block_samples as f64,
            st.chunk_bytes as f64 / st.block_samples as f64,
            st.index_bytes as f64 / st.block_samples as f64
        );
    }
    println!("Top label cardinalities (distinct values):");
    for (name, n) in &st.top_cardinalities {
        println!("  {name:<24} {n}");
    }
    if !st.tiers.is_empty() {
        println!("Downsampling tiers:");
        let d = |s: u64| lookout_model::format_duration(std::time::Duration::from_secs(s));
        for t in &st.tiers {
            let span = t.range.map_or("(none yet)".to_string(), |(a, b)| {
                format!("{} – {}", rfc3339(a), rfc3339(b))
            });
            println!(
                "  {:<6} after {:<6} kept {:<6} {:>4} blocks {:>12} windows {:>10}  {span}",
                d(t.resolution_seconds),
                d(t.after_seconds),
                d(t.retention_seconds),
                t.blocks,
                t.windows,
                bytes(t.bytes),
            );
        }
    }
    if !st.retention.is_empty() {
        println!("Retention (the first rule matching a series applies):");
        for r in &st.retention {
            println!(
                "  {:<10} {:>8} series  {}",
                lookout_model::format_duration(std::time::Duration::from_secs(r.retention_seconds)),
                r.series,
                r.selector
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_sizes() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
