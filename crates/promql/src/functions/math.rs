//! Numeric functions: element-wise math (`abs`, `ln`, trigonometry are `f64` methods in
//! the spec table; `deg`, `rad`, `sgn` here), `clamp*`, `round`, `sort(_desc)`,
//! `vector`, `scalar`, `pi`.

use super::{Args, FnCall, map_vector};
use crate::error::Result;
use crate::numeric::{go_max, go_min};
use crate::value::{Value, VecSample};

/// `deg(v)`: radians to degrees.
pub(super) fn deg(v: f64) -> f64 {
    v * 180.0 / std::f64::consts::PI
}

/// `rad(v)`: degrees to radians.
pub(super) fn rad(v: f64) -> f64 {
    v * std::f64::consts::PI / 180.0
}

/// `sgn(v)`: 1, -1, or the value itself (zeros, NaN).
pub(super) fn sgn(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        v
    }
}

/// `pi()`.
pub(super) fn pi(_: &FnCall<'_, '_>, _: Args) -> Result<Value> {
    Ok(Value::Scalar(std::f64::consts::PI))
}

/// `vector(s)`.
pub(super) fn vector(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    Ok(Value::Vector(vec![VecSample::new(
        lookout_model::Labels::empty(),
        args.scalar(0)?,
    )]))
}

/// `scalar(v)`: the one sample's value, NaN unless there is exactly one.
pub(super) fn scalar(_: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
}

/// `clamp_min(v, min)`.
pub(super) fn clamp_min(_: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    let b = args.scalar(1)?;
    Ok(Value::Vector(map_vector(v, |x| go_max(b, x))))
}

/// `clamp_max(v, max)`.
pub(super) fn clamp_max(_: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    let b = args.scalar(1)?;
    Ok(Value::Vector(map_vector(v, |x| go_min(b, x))))
}

/// `clamp(v, min, max)`: nothing when max < min.
pub(super) fn clamp(_: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    let lo = args.scalar(1)?;
    let hi = args.scalar(2)?;
    Ok(Value::Vector(if hi < lo {
        Vec::new()
    } else {
        map_vector(v, |x| go_max(lo, go_min(hi, x)))
    }))
}

/// `round(v, to_nearest=1)`.
pub(super) fn round(_: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    let to = if args.len() > 1 { args.scalar(1)? } else { 1.0 };
    let inv = 1.0 / to;
    Ok(Value::Vector(map_vector(v, |x| {
        (x * inv + 0.5).floor() / inv
    })))
}

/// `sort(v)`: ascending, NaN last.
pub(super) fn sort(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    by_value(args, false)
}

/// `sort_desc(v)`: descending, NaN last.
pub(super) fn sort_desc(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    by_value(args, true)
}

fn by_value(mut args: Args, desc: bool) -> Result<Value> {
    let mut v = args.vector(0)?;
    // NaN sorts last in both directions, as in Prometheus.
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if desc => b.v.total_cmp(&a.v),
        _ => a.v.total_cmp(&b.v),
    });
    Ok(Value::Vector(v))
}
