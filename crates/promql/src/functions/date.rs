//! Calendar arithmetic for the date functions (`day_of_month`, `days_in_month`, …).

/// Civil date of a Unix time in seconds: (year, month 1–12, day 1–31, day of year 1–366,
/// weekday 0 = Sunday, hour, minute).
pub(super) fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = lookout_model::civil_from_days(days);
    let yday = days - lookout_model::days_from_civil(y, 1, 1) + 1;
    let wday = (days + 4).rem_euclid(7);
    (y, m, d, yday, wday, rem / 3600, rem % 3600 / 60)
}

pub(super) use lookout_model::days_in_month;
