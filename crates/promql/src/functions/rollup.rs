//! Range functions answered from the store's rollups ([`lookout_storage::rollup`]): when
//! every window `(t - offset - range, t - offset]` a call reads is a run of whole rollup
//! windows — the range, the step and the first window's end are multiples of the
//! resolution — `rate`, `increase`, `delta` and `sum`/`count`/`avg`/`min`/`max`/`last`/
//! `first`/`present_over_time` follow exactly from the windows' counts, sums, extremes,
//! first and last samples and counter increases. The engine then loads the windows
//! instead of the samples (one per resolution instead of one per scrape) and, past a
//! store's raw retention, still answers from its downsampled tiers.

use lookout_storage::{Rollup, RollupSeries};
use promql_parser::parser::{Call, Expr, MatrixSelector};

use super::range::{self, WindowFn};
use super::{Eval, spec};
use crate::engine::{Evaluator, NodeId, dur_ms, offset_ms};
use crate::error::{Result, exec};
use crate::value::VecSample;

/// The window functions rollups answer exactly.
fn answers(f: WindowFn) -> bool {
    use WindowFn as W;
    matches!(
        f,
        W::Rate
            | W::Increase
            | W::Delta
            | W::Avg
            | W::Min
            | W::Max
            | W::Sum
            | W::Count
            | W::Last
            | W::First
            | W::Present
    )
}

/// The window function of `c`, when rollups can answer it.
fn window_fn(c: &Call) -> Option<WindowFn> {
    match spec(c.func.name)?.eval {
        Eval::Window(f) if answers(f) => Some(f),
        _ => None,
    }
}

/// The matrix selector of `c` when rollups could answer the call: a function they
/// answer over a plain selector (in parentheses or not) without `@`.
pub(crate) fn rollable(c: &Call) -> Option<&MatrixSelector> {
    window_fn(c)?;
    let mut arg = &**c.args.args.first()?;
    while let Expr::Paren(p) = arg {
        arg = &p.expr;
    }
    match arg {
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => Some(ms),
        _ => None,
    }
}

/// The coarsest of the store's resolutions `tiers` whose windows line up with a call
/// reading `range` ms at every `step` (0: once) with its first window ending at `first`.
pub(crate) fn pick(tiers: &[i64], first: i64, range: i64, step: i64) -> Option<i64> {
    tiers
        .iter()
        .copied()
        .filter(|&r| {
            r > 0 && range >= r && range % r == 0 && step % r == 0 && first.rem_euclid(r) == 0
        })
        .max()
}

/// `c` at `ts` from the windows its selector loaded, or `None` when it loaded samples.
pub(super) fn call(
    ev: &Evaluator<'_>,
    c: &Call,
    keeps_name: bool,
    ts: i64,
) -> Option<Result<Vec<VecSample>>> {
    let ms = rollable(c)?;
    let (r, series) = ev.rollups.get(&NodeId::of(&ms.vs))?;
    let r = *r;
    let f = window_fn(c)?;
    let range = dur_ms(ms.range);
    let end = ts - offset_ms(&ms.vs.offset);
    let start = end - range;
    if end.rem_euclid(r) != 0 {
        // The windows were picked for the query's steps; any other time needs samples.
        return Some(exec(format!(
            "internal error: rollups of {r} ms read at {ts}, off their windows"
        )));
    }
    let mut out = Vec::new();
    for s in series {
        range::note_non_counter(ev, f, &s.labels, &c.args.args[0]);
        if let Some(v) = value(f, s, (start, end, range)) {
            out.push(VecSample {
                labels: s.labels.clone(),
                v,
                drop_name: !keeps_name,
                h: None,
            });
        }
    }
    Some(Ok(out))
}

/// `f` over the windows of `s` that make up `(start, end]`.
fn value(f: WindowFn, s: &RollupSeries, (start, end, range): (i64, i64, i64)) -> Option<f64> {
    let a = s.windows.partition_point(|w| w.end <= start);
    let b = s.windows.partition_point(|w| w.end <= end);
    // Windows holding only a staleness marker hold nothing a range function reads.
    let mut held = s.windows.get(a..b)?.iter().filter(|w| w.count > 0);
    let mut all: Rollup = *held.next()?;
    for w in held {
        all.merge(w);
    }
    let n = usize::try_from(all.count).unwrap_or(usize::MAX);
    use WindowFn as W;
    Some(match f {
        W::Rate | W::Increase | W::Delta if n < 2 => return None,
        W::Rate | W::Increase => range::extrapolate(
            (start, end, range),
            (all.first, all.last, n),
            all.increase,
            true,
            f == W::Rate,
        ),
        W::Delta => range::extrapolate(
            (start, end, range),
            (all.first, all.last, n),
            all.last.v - all.first.v,
            false,
            false,
        ),
        W::Sum => all.sum,
        W::Count => all.count as f64,
        W::Avg => all.sum / all.count as f64,
        W::Min => all.min,
        W::Max => all.max,
        W::Last => all.last.v,
        W::First => all.first.v,
        W::Present => 1.0,
        _ => return None,
    })
}
