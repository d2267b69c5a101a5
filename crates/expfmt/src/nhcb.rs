//! Classic histograms as native histograms with custom buckets (NHCB), as Prometheus's
//! `convert_classic_histograms_to_nhcb` stores them: one series per histogram instead
//! of one per bucket, the `le` bounds kept as the custom bounds.
//!
//! A histogram family (`# TYPE x histogram` or `gaugehistogram`) is converted series by
//! series: its `x_bucket` samples give the bounds and (from their cumulative counts)
//! the counts per bucket, `x_count` the count (the highest bucket's otherwise) and
//! `x_sum` the sum. A series whose buckets cannot make a histogram (an unparsable or
//! repeated `le`, counts that decrease, more than [`MAX_BOUNDS`] bounds, samples at
//! different times) stays classic.

use std::borrow::Cow;
use std::collections::BTreeMap;

use lookout_model::histogram::CUSTOM_BUCKETS_SCHEMA;
use lookout_model::{BUCKET_LABEL, CounterResetHint, FloatHistogram};

use crate::proto::NativeLine;
use crate::{Exposition, parse_float};

/// Most bounds one converted histogram may have.
pub const MAX_BOUNDS: usize = 1 << 12;

/// One series' parts, gathered from the exposition: (bound, cumulative count) per
/// bucket, the count, the sum, the timestamp, and where its samples are.
#[derive(Default)]
struct Parts {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: Option<f64>,
    timestamp_ms: Option<Option<i64>>,
    mixed_times: bool,
    at: Vec<usize>,
}

/// A series' identity: its family and its labels without `le`, in order.
type Key<'a> = (&'a str, Vec<(&'a str, Cow<'a, str>)>);

/// Converts the classic histograms of `exp` (but those of `skip`, families that came
/// native already) into NHCB samples; their classic samples are removed unless
/// `keep_classic`.
pub fn convert<'a>(
    exp: &mut Exposition<'a>,
    skip: &[&str],
    keep_classic: bool,
) -> Vec<NativeLine<'a>> {
    let families: BTreeMap<&str, bool> = exp
        .types
        .iter()
        .filter(|(name, _)| !skip.contains(name))
        .filter_map(|(name, t)| match *t {
            "histogram" => Some((*name, false)),
            "gaugehistogram" => Some((*name, true)),
            _ => None,
        })
        .collect();
    if families.is_empty() {
        return Vec::new();
    }
    let mut series: BTreeMap<Key<'a>, Parts> = BTreeMap::new();
    for (i, s) in exp.samples.iter().enumerate() {
        let Some((family, part)) = part_of(s.name, &families) else {
            continue;
        };
        let mut labels: Vec<(&'a str, Cow<'a, str>)> = Vec::with_capacity(s.labels.len());
        let mut le = None;
        for (n, v) in &s.labels {
            if *n == BUCKET_LABEL {
                le = Some(v.clone());
            } else {
                labels.push((n, v.clone()));
            }
        }
        labels.sort();
        let p = series.entry((family, labels)).or_default();
        p.at.push(i);
        match p.timestamp_ms {
            None => p.timestamp_ms = Some(s.timestamp_ms),
            Some(t) if t != s.timestamp_ms => p.mixed_times = true,
            Some(_) => {}
        }
        match part {
            Part::Bucket => match le.as_deref().and_then(parse_float) {
                Some(b) if !b.is_nan() => p.buckets.push((b, s.value)),
                // A bucket without a readable bound: the series stays classic.
                _ => p.mixed_times = true,
            },
            Part::Count => p.count = Some(s.value),
            Part::Sum => p.sum = Some(s.value),
        }
    }
    let mut out = Vec::new();
    let mut converted = vec![false; exp.samples.len()];
    for ((family, labels), p) in series {
        let gauge = families.get(family).copied().unwrap_or(false);
        let Some(histogram) = histogram_of(&p, gauge) else {
            continue;
        };
        for &i in &p.at {
            converted[i] = true;
        }
        out.push(NativeLine {
            name: family,
            labels,
            histogram,
            timestamp_ms: p.timestamp_ms.flatten(),
        });
    }
    if !keep_classic {
        let mut k = 0;
        exp.samples.retain(|_| {
            k += 1;
            !converted[k - 1]
        });
    }
    out
}

enum Part {
    Bucket,
    Count,
    Sum,
}

/// The histogram family a sample name belongs to, and which part it is.
fn part_of<'a>(name: &'a str, families: &BTreeMap<&str, bool>) -> Option<(&'a str, Part)> {
    for (suffix, part) in [
        ("_bucket", Part::Bucket),
        ("_count", Part::Count),
        ("_sum", Part::Sum),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && families.contains_key(base)
        {
            return Some((base, part));
        }
    }
    None
}

/// The NHCB of one series' parts, or `None` when they do not make one.
fn histogram_of(p: &Parts, gauge: bool) -> Option<FloatHistogram> {
    if p.mixed_times || p.buckets.is_empty() || p.buckets.len() > MAX_BOUNDS + 1 {
        return None;
    }
    let mut buckets = p.buckets.clone();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.windows(2).any(|w| w[0].0 == w[1].0)
        || buckets.iter().any(|b| b.0 == f64::NEG_INFINITY)
    {
        return None;
    }
    let mut positive = BTreeMap::new();
    let mut below = 0.0;
    for (i, (_, c)) in buckets.iter().enumerate() {
        if *c < below || c.is_nan() {
            return None;
        }
        let n = c - below;
        if n != 0.0 {
            positive.insert(i as i32, n);
        }
        below = *c;
    }
    Some(FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: p.count.unwrap_or(below),
        sum: p.sum.unwrap_or(0.0),
        positive,
        hint: if gauge {
            CounterResetHint::Gauge
        } else {
            CounterResetHint::Unknown
        },
        custom_values: buckets
            .iter()
            .map(|b| b.0)
            .filter(|b| b.is_finite())
            .collect(),
        ..FloatHistogram::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, parse};

    const BODY: &str = "# TYPE rpc_seconds histogram
rpc_seconds_bucket{job=\"a\",le=\"0.1\"} 2
rpc_seconds_bucket{job=\"a\",le=\"1\"} 5
rpc_seconds_bucket{job=\"a\",le=\"+Inf\"} 6
rpc_seconds_sum{job=\"a\"} 3.5
rpc_seconds_count{job=\"a\"} 6
rpc_seconds_bucket{job=\"b\",le=\"1\"} 3
rpc_seconds_bucket{job=\"b\",le=\"0.5\"} 4
rpc_seconds_bucket{job=\"b\",le=\"+Inf\"} 4
# TYPE up gauge
up 1
";

    #[test]
    fn classic_histograms_become_custom_buckets() {
        let mut exp = parse(BODY, Format::Prometheus).unwrap();
        let out = convert(&mut exp, &[], false);
        assert_eq!(out.len(), 1, "b's counts decrease: it stays classic");
        let h = &out[0].histogram;
        assert_eq!(out[0].name, "rpc_seconds");
        assert_eq!(out[0].labels, vec![("job", Cow::Borrowed("a"))]);
        assert_eq!(h.custom_values, vec![0.1, 1.0]);
        assert_eq!(
            h.positive.iter().map(|(i, c)| (*i, *c)).collect::<Vec<_>>(),
            vec![(0, 2.0), (1, 3.0), (2, 1.0)]
        );
        assert_eq!((h.count, h.sum), (6.0, 3.5));
        // a's classic samples are gone; b's and up stay.
        let names: Vec<&str> = exp.samples.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            vec![
                "rpc_seconds_bucket",
                "rpc_seconds_bucket",
                "rpc_seconds_bucket",
                "up"
            ]
        );
        let mut exp = parse(BODY, Format::Prometheus).unwrap();
        assert_eq!(convert(&mut exp, &[], true).len(), 1);
        assert_eq!(exp.samples.len(), 9, "classic kept too");
        let mut exp = parse(BODY, Format::Prometheus).unwrap();
        assert!(convert(&mut exp, &["rpc_seconds"], false).is_empty());
    }

    #[test]
    fn buckets_that_make_no_histogram_stay_classic() {
        for body in [
            // A bound that is not a number, NaN, a repeated bound, -Inf.
            "# TYPE h histogram\nh_bucket{le=\"x\"} 1\nh_bucket{le=\"+Inf\"} 1\n",
            "# TYPE h histogram\nh_bucket{le=\"NaN\"} 1\nh_bucket{le=\"+Inf\"} 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 1\n",
            "# TYPE h histogram\nh_bucket{le=\"-Inf\"} 0\nh_bucket{le=\"+Inf\"} 1\n",
            // Samples of one series at different times.
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1 1000\nh_bucket{le=\"+Inf\"} 1 2000\n",
        ] {
            let mut exp = parse(body, Format::Prometheus).unwrap();
            let n = exp.samples.len();
            assert!(convert(&mut exp, &[], false).is_empty(), "{body}");
            assert_eq!(exp.samples.len(), n, "kept classic: {body}");
        }
        // Too many bounds.
        let mut body = String::from("# TYPE h histogram\n");
        for i in 0..=MAX_BOUNDS + 1 {
            body.push_str(&format!("h_bucket{{le=\"{i}\"}} {i}\n"));
        }
        let mut exp = parse(&body, Format::Prometheus).unwrap();
        assert!(convert(&mut exp, &[], false).is_empty());
    }
}
