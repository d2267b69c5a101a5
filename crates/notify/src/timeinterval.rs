//! Alertmanager's time intervals (`time_intervals:` and `mute_time_intervals:`): times of
//! day, weekdays, days of the month (negative counts from the end), months and years,
//! each a list of ranges. Evaluated in UTC; `location` may be `UTC` (or `Local` on a host
//! that runs in UTC): other zones are refused at load time rather than misapplied.

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// An inclusive range of integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range(pub i64, pub i64);

/// One time interval: all of its present fields must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeInterval {
    /// Minutes of the day, `[start, end)`.
    pub times: Vec<Range>,
    /// 0 = Sunday … 6 = Saturday.
    pub weekdays: Vec<Range>,
    /// 1…31, or negative from the month's end.
    pub days_of_month: Vec<Range>,
    /// 1…12.
    pub months: Vec<Range>,
    /// Years.
    pub years: Vec<Range>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    times: Vec<RawTime>,
    #[serde(default)]
    weekdays: Vec<String>,
    #[serde(default)]
    days_of_month: Vec<String>,
    #[serde(default)]
    months: Vec<String>,
    #[serde(default)]
    years: Vec<String>,
    #[serde(default)]
    location: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    start_time: String,
    end_time: String,
}

const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn minutes(s: &str) -> Result<i64, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid time of day {s:?} (use HH:MM)"))?;
    let (h, m): (i64, i64) = (
        h.parse()
            .map_err(|_| format!("invalid time of day {s:?}"))?,
        m.parse()
            .map_err(|_| format!("invalid time of day {s:?}"))?,
    );
    if !(0..=24).contains(&h) || !(0..60).contains(&m) || (h == 24 && m != 0) {
        return Err(format!("invalid time of day {s:?}"));
    }
    Ok(h * 60 + m)
}

fn ranges(
    list: &[String],
    what: &str,
    parse: impl Fn(&str) -> Result<i64, String>,
) -> Result<Vec<Range>, String> {
    list.iter()
        .map(|s| {
            let (a, b) = match s.split_once(':') {
                Some((a, b)) if !a.is_empty() => (a, b),
                _ => (s.as_str(), s.as_str()),
            };
            let (a, b) = (parse(a.trim())?, parse(b.trim())?);
            if a > b && !(what == "days_of_month" && a > 0 && b < 0) {
                return Err(format!("{what}: start of range {s:?} is after its end"));
            }
            Ok(Range(a, b))
        })
        .collect()
}

fn named(names: &'static [&'static str], base: i64) -> impl Fn(&str) -> Result<i64, String> {
    move |s: &str| {
        let l = s.to_ascii_lowercase();
        names
            .iter()
            .position(|n| *n == l)
            .map(|i| i as i64 + base)
            .or_else(|| l.parse().ok())
            .ok_or_else(|| format!("{s:?} is not a valid name"))
    }
}

fn number(s: &str) -> Result<i64, String> {
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}

impl<'de> Deserialize<'de> for TimeInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = Raw::deserialize(d)?;
        if let Some(loc) = &r.location
            && loc != "UTC"
            && loc != "Local"
        {
            return Err(de::Error::custom(format!(
                "time interval location {loc:?} is not supported yet: write the times in UTC"
            )));
        }
        let times = r
            .times
            .iter()
            .map(|t| {
                let (a, b) = (minutes(&t.start_time)?, minutes(&t.end_time)?);
                if a >= b {
                    return Err(format!(
                        "start time {} is not before end time {}",
                        t.start_time, t.end_time
                    ));
                }
                Ok(Range(a, b))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(de::Error::custom)?;
        Ok(Self {
            times,
            weekdays: ranges(&r.weekdays, "weekdays", named(&DAYS, 0))
                .map_err(de::Error::custom)?,
            days_of_month: ranges(&r.days_of_month, "days_of_month", number)
                .map_err(de::Error::custom)?,
            months: ranges(&r.months, "months", named(&MONTHS, 1)).map_err(de::Error::custom)?,
            years: ranges(&r.years, "years", number).map_err(de::Error::custom)?,
        })
    }
}

use lookout_model::days_in_month;

impl TimeInterval {
    /// Whether `ms` (Unix milliseconds, UTC) falls in this interval.
    pub fn contains(&self, ms: i64) -> bool {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let minute = secs.rem_euclid(86_400) / 60;
        let (y, m, d) = lookout_model::civil_from_days(days);
        // 1970-01-01 was a Thursday.
        let weekday = (days + 4).rem_euclid(7);
        let within =
            |rs: &[Range], v: i64| rs.is_empty() || rs.iter().any(|r| r.0 <= v && v <= r.1);
        let dim = days_in_month(y, m);
        let dom_ok = self.days_of_month.is_empty()
            || self.days_of_month.iter().any(|r| {
                let f = |x: i64| if x < 0 { dim + 1 + x } else { x };
                f(r.0) <= d && d <= f(r.1)
            });
        (self.times.is_empty() || self.times.iter().any(|r| r.0 <= minute && minute < r.1))
            && within(&self.weekdays, weekday)
            && dom_ok
            && within(&self.months, m)
            && within(&self.years, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ti(yaml: &str) -> TimeInterval {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn business_hours_and_month_ends() {
        let t =
            ti("times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\n");
        // 2026-12-01 is a Tuesday.
        let tue_10 = lookout_model::days_from_civil(2026, 12, 1) * 86_400_000 + 10 * 3_600_000;
        assert!(t.contains(tue_10));
        assert!(!t.contains(tue_10 + 8 * 3_600_000));
        assert!(!t.contains(tue_10 + 4 * 86_400_000), "Saturday");
        let last = ti("days_of_month: ['-1']\nmonths: ['december']\nyears: ['2026']\n");
        assert!(last.contains(lookout_model::days_from_civil(2026, 12, 31) * 86_400_000));
        assert!(!last.contains(lookout_model::days_from_civil(2026, 12, 30) * 86_400_000));
        assert!(yaml_serde::from_str::<TimeInterval>("location: Europe/Paris\n").is_err());
    }
}
