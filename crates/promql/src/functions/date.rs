//! Date and time functions (`minute`, `hour`, `day_of_month`, `day_of_week`,
//! `day_of_year`, `days_in_month`, `month`, `year`, `time`, `timestamp`) and their
//! calendar arithmetic.

use promql_parser::parser::Expr;

use super::{Args, FnCall, map_vector};
use crate::error::Result;
use crate::value::{Value, VecSample};

/// The civil date and time of a Unix time, UTC.
pub(super) struct Civil {
    /// Year.
    pub(super) year: i64,
    /// Month, 1–12.
    pub(super) month: i64,
    /// Day of the month, 1–31.
    pub(super) day: i64,
    /// Day of the year, 1–366.
    pub(super) yday: i64,
    /// Weekday, 0 = Sunday.
    pub(super) weekday: i64,
    /// Hour, 0–23.
    pub(super) hour: i64,
    /// Minute, 0–59.
    pub(super) minute: i64,
}

/// The civil date of a Unix time in seconds.
pub(super) fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = lookout_model::civil_from_days(days);
    Civil {
        year,
        month,
        day,
        yday: days - lookout_model::days_from_civil(year, 1, 1) + 1,
        weekday: (days + 4).rem_euclid(7),
        hour: rem / 3600,
        minute: rem % 3600 / 60,
    }
}

/// A date function: `part` of each sample's value read as a Unix time, or of the
/// evaluation time without an argument.
pub(super) fn part(c: &FnCall<'_, '_>, mut args: Args, part: fn(&Civil) -> i64) -> Result<Value> {
    let v = if args.len() > 0 {
        args.vector(0)?
    } else {
        vec![VecSample::new(
            lookout_model::Labels::empty(),
            c.ts as f64 / 1000.0,
        )]
    };
    Ok(Value::Vector(map_vector(v, |x| {
        if x.is_finite() {
            part(&civil(x as i64)) as f64
        } else {
            f64::NAN
        }
    })))
}

/// `time()`.
pub(super) fn time(c: &FnCall<'_, '_>, _: Args) -> Result<Value> {
    Ok(Value::Scalar(c.ts as f64 / 1000.0))
}

/// `timestamp(v)`: the time of each sample; of a plain selector, its samples' own times.
pub(super) fn timestamp(c: &FnCall<'_, '_>) -> Result<Value> {
    let mut inner = &*c.exprs[0];
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    let ts = c.ts;
    Ok(Value::Vector(if let Expr::VectorSelector(vs) = inner {
        let (v, times) = c.ev.select_instant(vs, ts, true);
        v.into_iter()
            .zip(times)
            .map(|(s, t)| VecSample {
                labels: s.labels.clone(),
                drop_name: true,
                v: t as f64 / 1000.0,
                h: None,
            })
            .collect()
    } else {
        match c.ev.eval(inner, ts)? {
            Value::Vector(v) => map_vector(v, |_| ts as f64 / 1000.0),
            other => {
                return crate::error::exec(format!(
                    "expected an instant vector, got {}",
                    other.type_name()
                ));
            }
        }
    }))
}
