//! Request parameters as Prometheus reads them: the URL query merged with a form body,
//! timestamps as RFC 3339 or Unix seconds, durations as Prometheus durations or seconds.

use axum::http::{HeaderMap, header};

/// Parameters of one request, in order; keys may repeat (`match[]`).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

/// A parameter could not be parsed; maps to `bad_data`.
#[derive(Debug)]
pub(crate) struct BadParam(pub(crate) String);

impl Params {
    /// Every pair, in order.
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Merges the URL query with an `application/x-www-form-urlencoded` body.
    pub(crate) fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Self, BadParam> {
        let mut v: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|e| BadParam(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            // Prometheus's FormValue prefers body values over query values.
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| BadParam(format!("invalid form body: {e}")))?;
            let mut merged = form;
            merged.extend(v);
            v = merged;
        }
        Ok(Self(v))
    }

    /// The first value of `key`, if given and not empty.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A timestamp parameter in ms, or `default` when absent.
    pub(crate) fn time(&self, key: &str, default: i64) -> Result<i64, BadParam> {
        match self.get(key) {
            None => Ok(default),
            Some(s) => parse_time(s).ok_or_else(|| {
                BadParam(format!(
                    "invalid parameter \"{key}\": cannot parse \"{s}\" to a valid timestamp"
                ))
            }),
        }
    }

    /// A duration parameter in ms, if given.
    pub(crate) fn duration(&self, key: &str) -> Result<Option<i64>, BadParam> {
        match self.get(key) {
            None => Ok(None),
            Some(s) => parse_duration(s).map(Some).ok_or_else(|| {
                BadParam(format!(
                    "invalid parameter \"{key}\": cannot parse \"{s}\" to a valid duration"
                ))
            }),
        }
    }
}

/// Prometheus's `parseTime`: Unix seconds (with fraction) or RFC 3339, within
/// ±[`lookout_promql::limits::MAX_TIME_MS`] (about 73 million years from 1970), so no
/// later time arithmetic can overflow.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    const LIMIT: i64 = lookout_promql::limits::MAX_TIME_MS;
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f.abs() > (LIMIT / 1000) as f64 {
            return None;
        }
        let secs = f.trunc();
        let ms = ((f - secs) * 1000.0).round();
        return Some(secs as i64 * 1000 + ms as i64);
    }
    lookout_model::parse_rfc3339(s).filter(|t| t.abs() <= LIMIT)
}

/// Prometheus's `parseDuration`: float seconds or a Prometheus duration (`1h30m`).
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !f.is_finite() || ms.abs() > i64::MAX as f64 {
            return None;
        }
        return Some(ms as i64);
    }
    lookout_model::parse_duration(s)
        .ok()
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(parse_time("yesterday"), None);
        // Issue 12: `time=1e300` was evaluated as -1 (and panicked in debug builds).
        assert_eq!(parse_time("1e300"), None);
        assert_eq!(parse_time("-9e15"), None);
        assert_eq!(parse_time("NaN"), None);
        assert_eq!(parse_time("2e12"), Some(2_000_000_000_000_000));
    }

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("15"), Some(15_000));
        assert_eq!(parse_duration("0.5"), Some(500));
        assert_eq!(parse_duration("1m30s"), Some(90_000));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("1e300"), None);
    }
}
