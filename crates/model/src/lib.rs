//! Lookout's shared vocabulary: label sets, samples, label matchers and metric metadata.
//!
//! Every other crate speaks in these types; this crate does no I/O beyond
//! [`durable::replace_file`], the shared way state files are written. It sits at the bottom
//! of the data flow (collect → storage → promql → rules → notify) and is the only thing
//! all layers agree on.
//!
//! ```
//! use lookout_model::{Labels, Matcher, MatchOp};
//!
//! let ls = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
//! let m = Matcher::new(MatchOp::Regex, "job", "no.*").unwrap();
//! assert!(m.matches_labels(&ls));
//! assert_eq!(ls.to_string(), r#"up{job="node"}"#);
//! ```

pub mod durable;
mod exemplar;
pub mod gofmt;
pub mod histogram;
mod labels;
mod matcher;
mod metadata;
pub mod relabel;
mod sample;
mod size;
pub mod status;
mod time;

pub use exemplar::{Exemplar, MAX_EXEMPLAR_LABEL_RUNES};
pub use histogram::{BucketOut, CounterResetHint, FloatHistogram, bucket_upper};
pub use labels::{Label, Labels};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use metadata::MetricType;
pub use sample::{STALE_NAN_BITS, Sample, is_stale_nan, stale_nan};
pub use size::ByteSize;
pub use time::{
    civil_from_days, days_from_civil, days_in_month, format_duration, format_go_time,
    format_rfc3339, now_ms, parse_duration, parse_rfc3339,
};

/// Whether `name` is a valid (classic) label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

/// The label that carries a series' metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// The label of a classic histogram bucket's upper bound.
pub const BUCKET_LABEL: &str = "le";
/// The label that names a scrape target's instance.
pub const INSTANCE_LABEL: &str = "instance";
/// The label that names a scrape job.
pub const JOB_LABEL: &str = "job";

/// Shortens `s` to at most `max` bytes, at a character boundary: how every reader keeps
/// a bound on text it takes from outside (statements, command lines, attribute values).
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod truncate_tests {
    #[test]
    fn truncation_keeps_whole_characters() {
        let mut s = "aé€".to_string(); // 1 + 2 + 3 bytes
        super::truncate_utf8(&mut s, 4);
        assert_eq!(s, "aé");
        let mut s = "abc".to_string();
        super::truncate_utf8(&mut s, 10);
        assert_eq!(s, "abc");
        super::truncate_utf8(&mut s, 0);
        assert_eq!(s, "");
    }
}
