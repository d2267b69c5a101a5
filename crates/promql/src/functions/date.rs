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

pub(super) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}
