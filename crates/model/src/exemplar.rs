//! Exemplars: one traced event attached to a series, such as the request (by its trace
//! id) behind a latency histogram's bucket.

use crate::Labels;

/// Most characters (runes) an exemplar's label names and values may have together, as
/// OpenMetrics and Prometheus bound them.
pub const MAX_EXEMPLAR_LABEL_RUNES: usize = 128;

/// One exemplar: its own labels (usually `trace_id`, `span_id`), the observed value and
/// when it was observed (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The exemplar's labels (not the series'); may be empty.
    pub labels: Labels,
    /// The observed value.
    pub value: f64,
    /// When it was observed, in milliseconds since the Unix epoch.
    pub t: i64,
}

impl Exemplar {
    /// Why this exemplar cannot be stored, if it cannot: its labels are longer than
    /// [`MAX_EXEMPLAR_LABEL_RUNES`] together, or a label name is invalid.
    pub fn problem(&self) -> Option<String> {
        let mut runes = 0;
        for l in &self.labels {
            if !crate::is_valid_label_name(&l.name) {
                return Some(format!("invalid exemplar label name {:?}", l.name));
            }
            runes += l.name.chars().count() + l.value.chars().count();
        }
        (runes > MAX_EXEMPLAR_LABEL_RUNES).then(|| {
            format!("exemplar labels have {runes} characters, more than {MAX_EXEMPLAR_LABEL_RUNES}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_length_and_names_are_bounded() {
        let ok = Exemplar {
            labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
            value: 0.5,
            t: 1,
        };
        assert_eq!(ok.problem(), None);
        let long = Exemplar {
            labels: Labels::from_pairs([("trace_id", "x".repeat(121))]),
            ..ok.clone()
        };
        assert!(long.problem().unwrap().contains("129 characters"));
        // Runes, not bytes: 128 runes (255 bytes) fit.
        let wide = Exemplar {
            labels: Labels::from_pairs([("t", "é".repeat(127))]),
            ..ok.clone()
        };
        assert_eq!(wide.problem(), None);
        let bad = Exemplar {
            labels: Labels::from_pairs([("1x", "y")]),
            ..ok
        };
        assert!(
            bad.problem()
                .unwrap()
                .contains("invalid exemplar label name")
        );
    }
}
