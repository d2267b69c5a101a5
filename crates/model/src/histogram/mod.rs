//! Native histograms (float flavour): the value every part of Lookout passes around
//! (scrapes, remote write, OTLP, the tsdb, PromQL), Prometheus's test notation
//! (`{{schema:1 sum:3 count:2 buckets:[1 1] offset:-1}}`), the wire form's checks,
//! bucket bounds, and (in `arith`) the arithmetic PromQL needs; exponential schemas
//! (−4 to 8) and custom buckets (schema −53, their bounds in `custom_values`).

use std::collections::BTreeMap;
use std::fmt;

mod arith;

/// What a histogram says about counter resets since the previous sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    /// Nothing is known.
    #[default]
    Unknown,
    /// A reset happened.
    Reset,
    /// No reset happened.
    NotReset,
    /// A gauge histogram.
    Gauge,
}

impl CounterResetHint {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Reset => "reset",
            Self::NotReset => "not_reset",
            Self::Gauge => "gauge",
        }
    }
}

/// The schema of native histograms with custom buckets (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// A float native histogram. Buckets are keyed by their index in the schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Resolution (bucket boundaries grow by 2^(2^-schema)), or
    /// [`CUSTOM_BUCKETS_SCHEMA`] for custom buckets.
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Observations in all.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Positive buckets by index.
    pub positive: BTreeMap<i32, f64>,
    /// Negative buckets by index.
    pub negative: BTreeMap<i32, f64>,
    /// Counter-reset hint.
    pub hint: CounterResetHint,
    /// The upper bounds of a custom-bucket histogram's buckets, ascending and finite:
    /// positive bucket `i` is `(custom_values[i-1], custom_values[i]]`, the first from
    /// −∞, the one past the last to +∞ (empty for exponential schemas).
    pub custom_values: Vec<f64>,
}

fn buckets(list: &str, offset: i32) -> Result<BTreeMap<i32, f64>, String> {
    let inner = list
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .ok_or_else(|| format!("bucket list {list:?} must be in brackets"))?;
    let mut out = BTreeMap::new();
    for (i, v) in inner.split_whitespace().enumerate() {
        let v: f64 = v.parse().map_err(|_| format!("bad bucket count {v:?}"))?;
        let index = i32::try_from(i)
            .ok()
            .and_then(|i| offset.checked_add(i))
            .ok_or_else(|| format!("bucket index past {} in {list:?}", i32::MAX))?;
        out.insert(index, v);
    }
    Ok(out)
}

/// `frac × 2^exp`, exact wherever the result is representable (as Go's `math.Ldexp`).
fn ldexp(frac: f64, exp: i32) -> f64 {
    let step = |v: f64, e: i32| v * f64::from_bits(((e + 1023) as u64) << 52);
    match exp {
        e if e > 1023 => step(step(frac, 1023), (e - 1023).min(1023)),
        e if e < -1022 => step(step(frac, -1022), (e + 1022).max(-1022)),
        e => step(frac, e),
    }
}

/// The upper bound of bucket `index` of a standard schema (−4 to 8): `2^(index ×
/// 2^−schema)`, computed as Prometheus does (a power of two times a fraction of the
/// schema's table), so bounds are bit for bit the same; past the largest float,
/// `f64::MAX`.
pub fn bucket_upper(schema: i32, index: i32) -> f64 {
    if schema <= 0 {
        let exp = i64::from(index) << (-schema).min(8);
        return if exp >= 1024 {
            f64::MAX
        } else {
            ldexp(1.0, exp.max(-1100) as i32)
        };
    }
    let schema = schema.min(8);
    let n = 1i64 << schema;
    let frac_idx = i64::from(index).rem_euclid(n);
    let frac = (frac_idx as f64 / n as f64).exp2() / 2.0;
    let exp = i64::from(index).div_euclid(n) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp.clamp(-1100, 1100) as i32)
}

/// A native histogram as the wire formats carry it (remote write, the protobuf
/// exposition): buckets as spans (`(offset, length)`: the first offset from index 0, the
/// others from the end of the previous span) and either integer counts as deltas from the
/// previous bucket's or float counts.
#[derive(Debug, Clone, Copy)]
pub struct Wire<'a> {
    /// The schema (−4 to 8).
    pub schema: i32,
    /// The zero bucket's width.
    pub zero_threshold: f64,
    /// Whether counts are integers (deltas) rather than floats.
    pub integer: bool,
    /// Observations.
    pub count: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Their sum.
    pub sum: f64,
    /// Positive spans, integer deltas, float counts.
    pub positive: (&'a [(i32, u32)], &'a [i64], &'a [f64]),
    /// Negative spans, integer deltas, float counts.
    pub negative: (&'a [(i32, u32)], &'a [i64], &'a [f64]),
    /// The counter-reset hint.
    pub hint: CounterResetHint,
    /// Custom bucket bounds, for schema −53.
    pub custom_values: &'a [f64],
}

impl Wire<'_> {
    /// The histogram, or what is wrong with it: a schema out of range, spans that do not
    /// match their counts, integer and float counts mixed, negative or overflowing
    /// counts, more than `max_buckets` on a side, or a count below what the buckets hold
    /// (as Prometheus checks).
    pub fn resolve(&self, max_buckets: usize) -> Result<FloatHistogram, String> {
        let custom = self.schema == CUSTOM_BUCKETS_SCHEMA;
        if !custom && !(-4..=8).contains(&self.schema) {
            return Err(format!(
                "native histogram schema {} is not between -4 and 8 (or -53, custom buckets)",
                self.schema
            ));
        }
        if custom {
            let cv = self.custom_values;
            if cv.len() > max_buckets {
                return Err(format!(
                    "{} custom bounds, more than {max_buckets}",
                    cv.len()
                ));
            }
            if cv.iter().any(|v| !v.is_finite()) || cv.windows(2).any(|w| w[0] >= w[1]) {
                return Err("custom bucket bounds must be finite and ascending".into());
            }
            if !self.negative.0.is_empty() || self.zero_count != 0.0 || self.zero_threshold != 0.0 {
                return Err("a custom-bucket histogram has no negative or zero buckets".into());
            }
        } else if !self.custom_values.is_empty() {
            return Err("custom bucket bounds on an exponential histogram".into());
        }
        let integer = self.integer;
        let side = |(spans, deltas, counts): (&[(i32, u32)], &[i64], &[f64]), name: &str| {
            let n: u64 = spans.iter().map(|s| u64::from(s.1)).sum();
            if n > max_buckets as u64 {
                return Err(format!("{n} {name} buckets, more than {max_buckets}"));
            }
            if (integer && !counts.is_empty()) || (!integer && !deltas.is_empty()) {
                return Err(format!("{name} buckets mix integer and float counts"));
            }
            let have = if integer { deltas.len() } else { counts.len() };
            if have as u64 != n {
                return Err(format!(
                    "{name} spans hold {n} buckets but {have} counts were sent"
                ));
            }
            let mut out = BTreeMap::new();
            let mut idx: i64 = 0;
            let mut k = 0usize;
            let mut count: i64 = 0;
            for (j, &(offset, length)) in spans.iter().enumerate() {
                idx = if j == 0 {
                    i64::from(offset)
                } else {
                    idx.checked_add(i64::from(offset))
                        .ok_or_else(|| format!("{name} bucket index overflows"))?
                };
                for _ in 0..length {
                    let i = i32::try_from(idx)
                        .map_err(|_| format!("{name} bucket index {idx} out of range"))?;
                    let v = if integer {
                        count = count
                            .checked_add(deltas[k])
                            .ok_or_else(|| format!("{name} bucket count overflows"))?;
                        if count < 0 {
                            return Err(format!("negative count in {name} bucket {i}"));
                        }
                        count as f64
                    } else {
                        let v = counts[k];
                        if v < 0.0 || v.is_nan() {
                            return Err(format!("count {v} in {name} bucket {i}"));
                        }
                        v
                    };
                    out.insert(i, v);
                    k += 1;
                    idx += 1;
                }
            }
            Ok(out)
        };
        let positive = side(self.positive, "positive")?;
        let negative = side(self.negative, "negative")?;
        if custom
            && positive
                .keys()
                .any(|&i| i < 0 || i as usize > self.custom_values.len())
        {
            return Err("a bucket past the custom bounds".into());
        }
        let held: f64 =
            self.zero_count + positive.values().sum::<f64>() + negative.values().sum::<f64>();
        if self.count < held {
            return Err(format!(
                "{held} observations found in buckets, but the count is {}",
                self.count
            ));
        }
        Ok(FloatHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            positive,
            negative,
            hint: self.hint,
            custom_values: self.custom_values.to_vec(),
        })
    }
}

/// One side's buckets as the wire formats carry them: spans (`(offset, length)`, the
/// first offset from index 0, the others from the end of the previous span) and the
/// counts in index order.
pub fn spans_of(side: &BTreeMap<i32, f64>) -> (Vec<(i32, u32)>, Vec<f64>) {
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut counts = Vec::with_capacity(side.len());
    let mut next: Option<i32> = None;
    for (&i, &c) in side {
        match (next, spans.last_mut()) {
            (Some(n), Some(last)) if n == i => last.1 += 1,
            _ => spans.push((next.map_or(i, |n| i - n), 1)),
        }
        counts.push(c);
        next = Some(i.saturating_add(1));
    }
    (spans, counts)
}

/// What Prometheus's API says of one bucket: its boundary rule (0: upper bound
/// inclusive, 1: lower bound inclusive, 3: both, the zero bucket), lower and upper bound,
/// and count.
pub type BucketOut = (u8, f64, f64, f64);

impl FloatHistogram {
    /// Whether its buckets are custom (schema −53).
    pub fn is_custom(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Lower and upper bound of positive bucket `index` (for custom buckets from the
    /// custom values, −∞ and +∞ at the ends).
    pub fn bucket_bounds(&self, index: i32) -> (f64, f64) {
        if self.is_custom() {
            let cv = &self.custom_values;
            let at = |i: i64| match i {
                i if i < 0 => f64::NEG_INFINITY,
                i if i as usize >= cv.len() => f64::INFINITY,
                i => cv[i as usize],
            };
            return (at(i64::from(index) - 1), at(i64::from(index)));
        }
        (
            bucket_upper(self.schema, index.saturating_sub(1)),
            bucket_upper(self.schema, index),
        )
    }

    /// The buckets with a non-zero count as Prometheus's API lists them: the negative
    /// ones from the most negative, the zero bucket, then the positive ones. As in
    /// Prometheus, a bucket's bound nearest zero is moved out to the zero bucket's edge
    /// when it lies inside it.
    pub fn api_buckets(&self) -> Vec<BucketOut> {
        if self.is_custom() {
            return self
                .positive
                .iter()
                .filter(|(_, c)| **c != 0.0)
                .map(|(i, c)| {
                    let (lo, hi) = self.bucket_bounds(*i);
                    (0, lo, hi, *c)
                })
                .collect();
        }
        let zt = self.zero_threshold;
        let mut out = Vec::new();
        for (i, c) in self.negative.iter().rev() {
            if *c != 0.0 {
                out.push((
                    1,
                    -bucket_upper(self.schema, *i),
                    (-bucket_upper(self.schema, i - 1)).min(-zt),
                    *c,
                ));
            }
        }
        if self.zero_count != 0.0 {
            out.push((
                3,
                -self.zero_threshold,
                self.zero_threshold,
                self.zero_count,
            ));
        }
        for (i, c) in &self.positive {
            if *c != 0.0 {
                out.push((
                    0,
                    bucket_upper(self.schema, i - 1).max(zt),
                    bucket_upper(self.schema, *i),
                    *c,
                ));
            }
        }
        out
    }

    /// A native histogram's staleness marker, as Prometheus writes it: the sum is the
    /// staleness NaN.
    pub fn stale() -> Self {
        Self {
            sum: crate::stale_nan(),
            ..Self::default()
        }
    }

    /// Parses the inside of `{{…}}` in Prometheus's test notation.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let t = t
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .unwrap_or(t);
        // Split `key:value` pairs; bracketed lists hold spaces.
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut rest = t.trim();
        while !rest.is_empty() {
            let (k, after) = rest
                .split_once(':')
                .ok_or_else(|| format!("expected key:value in histogram {text:?}"))?;
            let after = after.trim_start();
            let (v, next) = if after.starts_with('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("unterminated bucket list in {text:?}"))?;
                (&after[..=end], &after[end + 1..])
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            pairs.push((k.trim().to_string(), v.to_string()));
            rest = next.trim_start();
        }
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let num = |k: &str| -> Result<f64, String> {
            get(k).map_or(Ok(0.0), |v| {
                v.parse().map_err(|_| format!("bad {k} {v:?} in histogram"))
            })
        };
        let int = |k: &str| -> Result<i32, String> {
            get(k).map_or(Ok(0), |v| {
                v.parse().map_err(|_| format!("bad {k} {v:?} in histogram"))
            })
        };
        for (k, _) in &pairs {
            if ![
                "schema",
                "sum",
                "count",
                "z_bucket",
                "z_bucket_w",
                "buckets",
                "offset",
                "n_buckets",
                "n_offset",
                "counter_reset_hint",
                "custom_values",
            ]
            .contains(&k.as_str())
            {
                return Err(format!("unknown histogram field {k:?}"));
            }
        }
        let hint = match get("counter_reset_hint") {
            None | Some("unknown") => CounterResetHint::Unknown,
            Some("reset") => CounterResetHint::Reset,
            Some("not_reset") => CounterResetHint::NotReset,
            Some("gauge") => CounterResetHint::Gauge,
            Some(o) => return Err(format!("unknown counter_reset_hint {o:?}")),
        };
        Ok(Self {
            schema: int("schema")?,
            zero_threshold: num("z_bucket_w")?,
            zero_count: num("z_bucket")?,
            count: num("count")?,
            sum: num("sum")?,
            positive: get("buckets").map_or(Ok(BTreeMap::new()), |b| buckets(b, int("offset")?))?,
            negative: get("n_buckets")
                .map_or(Ok(BTreeMap::new()), |b| buckets(b, int("n_offset")?))?,
            hint,
            custom_values: get("custom_values").map_or(Ok(Vec::new()), |b| {
                let b = buckets(b, 0)?;
                let v: Vec<f64> = b.into_values().collect();
                if v.windows(2).any(|w| w[0] >= w[1]) || v.iter().any(|x| !x.is_finite()) {
                    return Err(format!("custom_values {v:?} must be finite and ascending"));
                }
                Ok(v)
            })?,
        })
    }

    /// Equal in every field, empty buckets counting as absent.
    pub fn same_as(&self, other: &Self) -> bool {
        let nz = |m: &BTreeMap<i32, f64>| -> Vec<(i32, f64)> {
            m.iter()
                .filter(|(_, v)| **v != 0.0)
                .map(|(k, v)| (*k, *v))
                .collect()
        };
        self.schema == other.schema
            && self.zero_threshold == other.zero_threshold
            && self.zero_count == other.zero_count
            && self.count == other.count
            && self.sum == other.sum
            && self.hint == other.hint
            && self.custom_values == other.custom_values
            && nz(&self.positive) == nz(&other.positive)
            && nz(&self.negative) == nz(&other.negative)
    }
}

impl fmt::Display for FloatHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{{{schema:{} count:{} sum:{}",
            self.schema, self.count, self.sum
        )?;
        if self.zero_threshold != 0.0 || self.zero_count != 0.0 {
            write!(
                f,
                " z_bucket:{} z_bucket_w:{}",
                self.zero_count, self.zero_threshold
            )?;
        }
        for (name, off, m) in [
            ("buckets", "offset", &self.positive),
            ("n_buckets", "n_offset", &self.negative),
        ] {
            if let (Some(first), Some(last)) = (m.keys().next(), m.keys().last()) {
                let vals: Vec<String> = (*first..=*last)
                    .map(|i| m.get(&i).copied().unwrap_or(0.0).to_string())
                    .collect();
                write!(f, " {off}:{first} {name}:[{}]", vals.join(" "))?;
            }
        }
        if self.hint != CounterResetHint::Unknown {
            write!(f, " counter_reset_hint:{}", self.hint.as_str())?;
        }
        if !self.custom_values.is_empty() {
            let vals: Vec<String> = self.custom_values.iter().map(f64::to_string).collect();
            write!(f, " custom_values:[{}]", vals.join(" "))?;
        }
        write!(f, "}}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_follow_the_schema() {
        assert_eq!(bucket_upper(0, 0), 1.0);
        assert_eq!(bucket_upper(0, 3), 8.0);
        assert_eq!(bucket_upper(0, -2), 0.25);
        assert_eq!(bucket_upper(-2, 1), 16.0);
        assert_eq!(bucket_upper(1, 1), std::f64::consts::SQRT_2);
        assert_eq!(bucket_upper(1, 2), 2.0);
        assert_eq!(bucket_upper(1, -1), std::f64::consts::FRAC_1_SQRT_2);
        assert_eq!(bucket_upper(3, 8), 2.0);
        assert!((bucket_upper(3, 1) - 2f64.powf(0.125)).abs() < 1e-15);
        assert_eq!(bucket_upper(0, 1024), f64::MAX);
        assert_eq!(bucket_upper(-4, 200), f64::MAX);
        assert_eq!(
            bucket_upper(0, -1074),
            f64::from_bits(1),
            "the smallest subnormal"
        );
        assert_eq!(bucket_upper(8, i32::MIN), 0.0);
        let h = FloatHistogram::parse(
            "{{schema:0 count:6 sum:1 z_bucket:1 z_bucket_w:0.001 offset:1 buckets:[2 0 1] n_offset:0 n_buckets:[1 1]}}",
        )
        .unwrap();
        assert_eq!(
            h.api_buckets(),
            vec![
                (1, -2.0, -1.0, 1.0),
                (1, -1.0, -0.5, 1.0),
                (3, -0.001, 0.001, 1.0),
                (0, 1.0, 2.0, 2.0),
                (0, 4.0, 8.0, 1.0),
            ]
        );
        // Buckets inside the zero bucket's width start at its edge, as Prometheus lists
        // them (Debian's Prometheus 2.42 answered with these bounds for this histogram).
        let h = FloatHistogram::parse(
            "{{schema:-2 count:11 sum:3.25 z_bucket:1 z_bucket_w:0.001 offset:-3 buckets:[1 2 0 0 1 3 1] n_offset:-1 n_buckets:[1 1]}}",
        )
        .unwrap();
        let b = h.api_buckets();
        assert_eq!(b[1], (1, -0.0625, -0.00390625, 1.0));
        assert_eq!(b[3], (0, 0.001, 0.000244140625, 1.0));
        assert_eq!(b[4], (0, 0.001, 0.00390625, 2.0));
        assert_eq!(b[7], (0, 256.0, 4096.0, 1.0));
    }

    #[test]
    fn notation_round_trips_and_adds() {
        let h = FloatHistogram::parse("{{schema:1 sum:-0.3 count:32.1 z_bucket:7.1 z_bucket_w:0.05 buckets:[5.1 10 7] offset:-3 n_buckets:[4.1 5] n_offset:-5}}").unwrap();
        assert_eq!(h.positive.get(&-3), Some(&5.1));
        assert_eq!(h.negative.get(&-4), Some(&5.0));
        assert!(FloatHistogram::parse(&h.to_string()).unwrap().same_as(&h));
        let a = FloatHistogram::parse("{{sum:3 count:2 buckets:[2]}}").unwrap();
        let b = FloatHistogram::parse("{{sum:1.3 count:1 buckets:[1]}}").unwrap();
        let mut sum = a.add(&b).add(&b);
        sum.hint = CounterResetHint::NotReset;
        let want =
            FloatHistogram::parse("{{count:4 sum:5.6 counter_reset_hint:not_reset buckets:[4]}}")
                .unwrap();
        assert!(sum.same_as(&want), "{sum} vs {want}");
        assert!(FloatHistogram::parse("{{nope:1}}").is_err());
    }
}
