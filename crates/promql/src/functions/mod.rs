//! PromQL functions. Each follows the Prometheus function of the same name
//! (`promql/functions.go`): same edge cases, same dropping of the metric name.
//!
//! Every function has one [`Spec`] in [`SPECS`]: how it is evaluated, whether it keeps
//! the metric name, whether its result order matters. A call node resolves its spec once
//! (cached per node for the query); its arguments are evaluated by the types the parser
//! declares for them and handed over as [`Args`], with the argument expressions for
//! annotations, as Prometheus's `FunctionCall(vals, args, enh)` is. Window functions
//! (the rate family, `*_over_time`, `deriv`, …) are also computed for every step of a
//! range query at once ([`batched`]). Implementations live by family: `range`,
//! `histogram`, `labels`, `date`, `math`.

mod date;
mod histogram;
mod labels;
mod math;
mod native;
mod range;
pub(crate) mod rollup;

use lookout_model::Sample;
use lookout_model::gofmt::format_f;
use lookout_storage::Series;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr};

use crate::engine::{Evaluator, NodeId, offset_ms};
use crate::error::{Result, exec};
use crate::value::{RangeSeries, Value, VecSample};

pub(crate) use native::{HistogramSum, go_string, mixed_schemas};
pub(crate) use range::WindowFn;

/// How a function is evaluated.
#[derive(Clone, Copy)]
pub(crate) enum Eval {
    /// A function of one series' window ([`WindowFn`]): batched over a range query's
    /// steps when its range argument is a plain selector.
    Window(WindowFn),
    /// Element-wise over its one vector argument (`abs`, `ln`, …).
    Math(fn(f64) -> f64),
    /// Its own implementation, handed the evaluated arguments.
    Call(fn(&FnCall<'_, '_>, Args) -> Result<Value>),
    /// Reads its argument expression itself (`timestamp` needs sample times, not values).
    Raw(fn(&FnCall<'_, '_>) -> Result<Value>),
}

/// Everything known about one function.
#[derive(Clone, Copy)]
pub(crate) struct Spec {
    /// The name PromQL calls it by.
    pub(crate) name: &'static str,
    /// How it is evaluated.
    pub(crate) eval: Eval,
    /// Whether the result keeps the metric name (`last_over_time`, `first_over_time`).
    pub(crate) keeps_name: bool,
    /// Whether the result's order is meaningful (`sort` and friends).
    pub(crate) ordered: bool,
    /// Whether it takes native-histogram samples; the others never see them (as in
    /// Prometheus, element-wise functions skip them).
    pub(crate) histograms: bool,
}

const fn f(name: &'static str, eval: Eval) -> Spec {
    Spec {
        name,
        eval,
        keeps_name: false,
        ordered: false,
        histograms: false,
    }
}

/// A function that takes native histograms.
const fn hist(name: &'static str, eval: Eval) -> Spec {
    Spec {
        histograms: true,
        ..f(name, eval)
    }
}

const fn window(name: &'static str, w: WindowFn) -> Spec {
    Spec {
        keeps_name: matches!(w, WindowFn::Last | WindowFn::First),
        histograms: true,
        ..f(name, Eval::Window(w))
    }
}

const fn ordered(name: &'static str, call: fn(&FnCall<'_, '_>, Args) -> Result<Value>) -> Spec {
    Spec {
        ordered: true,
        histograms: true,
        ..f(name, Eval::Call(call))
    }
}

/// Every function Lookout evaluates.
pub(crate) static SPECS: &[Spec] = &[
    window("rate", WindowFn::Rate),
    window("increase", WindowFn::Increase),
    window("delta", WindowFn::Delta),
    window("irate", WindowFn::Irate),
    window("idelta", WindowFn::Idelta),
    window("avg_over_time", WindowFn::Avg),
    window("min_over_time", WindowFn::Min),
    window("max_over_time", WindowFn::Max),
    window("sum_over_time", WindowFn::Sum),
    window("count_over_time", WindowFn::Count),
    window("last_over_time", WindowFn::Last),
    window("present_over_time", WindowFn::Present),
    window("first_over_time", WindowFn::First),
    window("quantile_over_time", WindowFn::Quantile),
    window("stddev_over_time", WindowFn::Stddev),
    window("stdvar_over_time", WindowFn::Stdvar),
    window("mad_over_time", WindowFn::Mad),
    window("changes", WindowFn::Changes),
    window("resets", WindowFn::Resets),
    window("deriv", WindowFn::Deriv),
    window("predict_linear", WindowFn::PredictLinear),
    hist("absent_over_time", Eval::Call(range::absent_over_time)),
    f(
        "double_exponential_smoothing",
        Eval::Call(range::double_exponential_smoothing),
    ),
    hist("absent", Eval::Call(labels::absent)),
    hist("label_replace", Eval::Call(labels::label_replace)),
    hist("label_join", Eval::Call(labels::label_join)),
    ordered("sort_by_label", labels::sort_by_label),
    ordered("sort_by_label_desc", labels::sort_by_label_desc),
    hist("histogram_fraction", Eval::Call(histogram::fraction)),
    hist("histogram_quantiles", Eval::Call(histogram::quantiles)),
    hist("histogram_quantile", Eval::Call(histogram::quantile)),
    hist("histogram_count", Eval::Call(native::count)),
    hist("histogram_sum", Eval::Call(native::sum)),
    hist("histogram_avg", Eval::Call(native::avg)),
    hist("histogram_stddev", Eval::Call(native::stddev)),
    hist("histogram_stdvar", Eval::Call(native::stdvar)),
    f("minute", Eval::Call(|c, a| date::part(c, a, |d| d.minute))),
    f("hour", Eval::Call(|c, a| date::part(c, a, |d| d.hour))),
    f(
        "day_of_month",
        Eval::Call(|c, a| date::part(c, a, |d| d.day)),
    ),
    f(
        "day_of_week",
        Eval::Call(|c, a| date::part(c, a, |d| d.weekday)),
    ),
    f(
        "day_of_year",
        Eval::Call(|c, a| date::part(c, a, |d| d.yday)),
    ),
    f(
        "days_in_month",
        Eval::Call(|c, a| date::part(c, a, |d| lookout_model::days_in_month(d.year, d.month))),
    ),
    f("month", Eval::Call(|c, a| date::part(c, a, |d| d.month))),
    f("year", Eval::Call(|c, a| date::part(c, a, |d| d.year))),
    f("time", Eval::Call(date::time)),
    hist("timestamp", Eval::Raw(date::timestamp)),
    f("pi", Eval::Call(math::pi)),
    f("vector", Eval::Call(math::vector)),
    f("scalar", Eval::Call(math::scalar)),
    f("clamp_min", Eval::Call(math::clamp_min)),
    f("clamp_max", Eval::Call(math::clamp_max)),
    f("clamp", Eval::Call(math::clamp)),
    f("round", Eval::Call(math::round)),
    Spec {
        histograms: false,
        ..ordered("sort", math::sort)
    },
    Spec {
        histograms: false,
        ..ordered("sort_desc", math::sort_desc)
    },
    f("abs", Eval::Math(f64::abs)),
    f("ceil", Eval::Math(f64::ceil)),
    f("floor", Eval::Math(f64::floor)),
    f("exp", Eval::Math(f64::exp)),
    f("sqrt", Eval::Math(f64::sqrt)),
    f("ln", Eval::Math(f64::ln)),
    f("log2", Eval::Math(f64::log2)),
    f("log10", Eval::Math(f64::log10)),
    f("sin", Eval::Math(f64::sin)),
    f("cos", Eval::Math(f64::cos)),
    f("tan", Eval::Math(f64::tan)),
    f("asin", Eval::Math(f64::asin)),
    f("acos", Eval::Math(f64::acos)),
    f("atan", Eval::Math(f64::atan)),
    f("sinh", Eval::Math(f64::sinh)),
    f("cosh", Eval::Math(f64::cosh)),
    f("tanh", Eval::Math(f64::tanh)),
    f("asinh", Eval::Math(f64::asinh)),
    f("acosh", Eval::Math(f64::acosh)),
    f("atanh", Eval::Math(f64::atanh)),
    f("deg", Eval::Math(math::deg)),
    f("rad", Eval::Math(math::rad)),
    f("sgn", Eval::Math(math::sgn)),
];

/// The spec of function `name`, if Lookout evaluates it.
pub(crate) fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Whether the expression is a sort function at the top.
pub(crate) fn is_sort(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => is_sort(&p.expr),
        Expr::Call(c) => spec(c.func.name).is_some_and(|s| s.ordered),
        _ => false,
    }
}

/// The sort calls inside `e` (not `e` itself when it is one).
pub(crate) fn nested_sorts(e: &Expr) -> Vec<&Expr> {
    fn walk<'a>(e: &'a Expr, top: bool, out: &mut Vec<&'a Expr>) {
        if !top && is_sort(e) && !matches!(e, Expr::Paren(_)) {
            out.push(e);
        }
        match e {
            Expr::Paren(p) => walk(&p.expr, top, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, false, out)),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, false, out);
                }
                walk(&a.expr, false, out);
            }
            Expr::Binary(b) => {
                walk(&b.lhs, false, out);
                walk(&b.rhs, false, out);
            }
            Expr::Unary(u) => walk(&u.expr, false, out),
            Expr::Subquery(s) => walk(&s.expr, false, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(e, true, &mut out);
    out
}

/// Whether a query's result order is meaningful (a sort function or `topk`/`bottomk` at
/// the top).
pub(crate) fn is_ordered(e: &Expr) -> bool {
    match e {
        Expr::Aggregate(a) => matches!(
            a.op.id(),
            promql_parser::parser::token::T_TOPK | promql_parser::parser::token::T_BOTTOMK
        ),
        _ => is_sort(e),
    }
}

/// Warns when a quantile is outside [0, 1] (as Prometheus's `NewInvalidQuantileWarning`).
pub(crate) fn check_quantile(ev: &Evaluator<'_>, q: f64, about: &Expr) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.warn_at(
            format!(
                "quantile value should be between 0 and 1, got {}",
                format_f(q)
            ),
            about,
        );
    }
}

/// A range-vector argument with the window it was taken over.
pub(crate) struct Window {
    series: Vec<RangeSeries>,
    start: i64,
    end: i64,
    range: i64,
}

/// One evaluated argument.
pub(crate) enum Arg {
    /// An instant vector.
    Vector(Vec<VecSample>),
    /// A range vector.
    Matrix(Window),
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(String),
}

/// A call's evaluated arguments, in order, each taken once by its type.
pub(crate) struct Args(Vec<Option<Arg>>);

impl Args {
    fn take(&mut self, i: usize) -> Option<Arg> {
        self.0.get_mut(i).and_then(Option::take)
    }

    /// How many arguments there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Argument `i`, an instant vector.
    pub(crate) fn vector(&mut self, i: usize) -> Result<Vec<VecSample>> {
        match self.take(i) {
            Some(Arg::Vector(v)) => Ok(v),
            _ => exec(format!("argument {} is not an instant vector", i + 1)),
        }
    }

    /// Argument `i`, a range vector.
    pub(crate) fn matrix(&mut self, i: usize) -> Result<Window> {
        match self.take(i) {
            Some(Arg::Matrix(w)) => Ok(w),
            _ => exec(format!("argument {} is not a range vector", i + 1)),
        }
    }

    /// Argument `i`, a scalar.
    pub(crate) fn scalar(&self, i: usize) -> Result<f64> {
        match self.0.get(i) {
            Some(Some(Arg::Scalar(v))) => Ok(*v),
            _ => exec(format!("argument {} is not a scalar", i + 1)),
        }
    }

    /// Argument `i`, a string.
    pub(crate) fn string(&mut self, i: usize) -> Result<String> {
        match self.take(i) {
            Some(Arg::String(s)) => Ok(s),
            _ => exec(format!("argument {} is not a string", i + 1)),
        }
    }
}

/// What a function sees besides its evaluated arguments: the evaluator (annotations,
/// caches), the call node, its argument expressions and the evaluation time.
pub(crate) struct FnCall<'a, 'e> {
    /// The evaluator.
    pub(crate) ev: &'a Evaluator<'e>,
    /// The call node.
    pub(crate) node: NodeId,
    /// The argument expressions (annotation positions, `absent`'s labels).
    pub(crate) exprs: &'a [Box<Expr>],
    /// The evaluation time (ms).
    pub(crate) ts: i64,
}

fn matrix_arg(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> Result<Window> {
    match e {
        Expr::Paren(p) => matrix_arg(ev, &p.expr, ts),
        Expr::MatrixSelector(ms) => {
            let end = ev.at_time(&ms.vs.at).unwrap_or(ts) - offset_ms(&ms.vs.offset);
            let range = ms.range.as_millis() as i64;
            Ok(Window {
                series: ev.select_range(&ms.vs, end, range),
                start: end - range,
                end,
                range,
            })
        }
        Expr::Subquery(sq) => {
            let end = ev.at_time(&sq.at).unwrap_or(ts) - offset_ms(&sq.offset);
            let range = sq.range.as_millis() as i64;
            Ok(Window {
                series: ev.subquery(sq, ts)?,
                start: end - range,
                end,
                range,
            })
        }
        _ => exec("expected a range vector argument"),
    }
}

/// Evaluates argument `e` as the parser typed it.
fn eval_arg(ev: &Evaluator<'_>, e: &Expr, ty: ValueType, ts: i64) -> Result<Arg> {
    if ty == ValueType::Matrix {
        return matrix_arg(ev, e, ts).map(Arg::Matrix);
    }
    match (ty, ev.eval(e, ts)?) {
        (ValueType::Vector, Value::Vector(v)) => Ok(Arg::Vector(v)),
        (ValueType::Scalar, Value::Scalar(v)) => Ok(Arg::Scalar(v)),
        (ValueType::String, Value::String(s)) => Ok(Arg::String(s)),
        (ValueType::Vector, other) => exec(format!(
            "expected an instant vector, got {}",
            other.type_name()
        )),
        (ValueType::Scalar, other) => exec(format!("expected a scalar, got {}", other.type_name())),
        (_, other) => exec(format!("expected a string, got {}", other.type_name())),
    }
}

/// Evaluates every argument of `c` by the types the parser declares for it (the last type
/// repeats for variadic arguments).
fn eval_args(ev: &Evaluator<'_>, c: &Call, ts: i64, histograms: bool) -> Result<Args> {
    let types = &c.func.arg_types;
    let mut out = Vec::with_capacity(c.args.args.len());
    for (i, e) in c.args.args.iter().enumerate() {
        let ty = types
            .get(i)
            .or(types.last())
            .copied()
            .unwrap_or(ValueType::Vector);
        let mut arg = eval_arg(ev, e, ty, ts)?;
        if !histograms {
            match &mut arg {
                Arg::Vector(v) => v.retain(|s| s.h.is_none()),
                Arg::Matrix(w) => {
                    for s in &mut w.series {
                        if !s.samples.is_empty() && !s.histograms.is_empty() {
                            ev.info_at(
                                format!(
                                    "ignored histograms in a range containing both floats and histograms for metric name {:?}",
                                    s.labels.metric_name().unwrap_or("")
                                ),
                                e,
                            );
                        }
                        s.histograms.clear();
                    }
                    w.series.retain(|s| !s.is_empty());
                }
                _ => {}
            }
        }
        out.push(Some(arg));
    }
    Ok(Args(out))
}

fn map_vector(v: Vec<VecSample>, f: impl Fn(f64) -> f64) -> Vec<VecSample> {
    v.into_iter()
        .map(|s| VecSample {
            labels: s.labels.clone(),
            drop_name: true,
            v: f(s.v),
            h: None,
        })
        .collect()
}

/// Whether an expression has the same value at every step (numbers and arithmetic on
/// them), so a batched evaluation may compute it once.
fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => is_constant(&p.expr),
        Expr::Unary(u) => is_constant(&u.expr),
        Expr::Binary(b) => is_constant(&b.lhs) && is_constant(&b.rhs),
        _ => false,
    }
}

/// The spec of call `c`, resolved once per node for the query.
fn resolve(ev: &Evaluator<'_>, c: &Call) -> Option<&'static Spec> {
    *ev.cache
        .specs
        .borrow_mut()
        .entry(NodeId::of(c))
        .or_insert_with(|| spec(c.func.name))
}

/// Evaluates a function call at `ts`.
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, ts: i64) -> Result<Value> {
    let Some(spec) = resolve(ev, c) else {
        return exec(format!("function {}() is not supported yet", c.func.name));
    };
    let fc = FnCall {
        ev,
        node: NodeId::of(c),
        exprs: &c.args.args,
        ts,
    };
    match spec.eval {
        Eval::Window(w) => {
            if let Some(v) = rollup::call(ev, c, spec.keeps_name, ts) {
                return v.map(Value::Vector);
            }
            if let Some(v) = batched(ev, c, w, spec.keeps_name, ts) {
                return Ok(Value::Vector(v));
            }
            let args = eval_args(ev, c, ts, true)?;
            range::window_call(&fc, w, spec.keeps_name, args)
        }
        Eval::Math(f) => {
            let mut args = eval_args(ev, c, ts, false)?;
            Ok(Value::Vector(map_vector(args.vector(0)?, f)))
        }
        Eval::Call(f) => f(&fc, eval_args(ev, c, ts, spec.histograms)?),
        Eval::Raw(f) => f(&fc),
    }
}

/// In a range query, evaluates `f(selector[range])` for every step of the grid from `ts`
/// in one pass per series (sliding the window instead of searching it at each step, as
/// Prometheus's `rangeEval` does for matrix selectors), caches the steps and returns the
/// one at `ts`. The cache holds every series' value at every later step at once, beside
/// the query's loaded samples and its result, so it keeps each as the series' position
/// and the value (16 bytes), and the step's samples get their labels when it is
/// evaluated. `None` when the call does not qualify (instant query, `@`, subquery
/// argument, time off the grid).
fn batched(
    ev: &Evaluator<'_>,
    c: &Call,
    wf: WindowFn,
    keeps_name: bool,
    ts: i64,
) -> Option<Vec<VecSample>> {
    // The grid of the innermost subquery being evaluated, or the range query's own.
    let grid = ev.grids.borrow().last().copied();
    let (g_start, g_end, g_step) = match grid {
        Some(g) => g,
        None if ev.step > 0 => (ev.grid_start, ev.grid_end, ev.step),
        None => return None,
    };
    if ts < g_start || ts > g_end || (ts - g_start) % g_step != 0 {
        return None;
    }
    let args = &c.args.args;
    let mut arg = &**args.get(wf.range_arg())?;
    while let Expr::Paren(p) = arg {
        arg = &p.expr;
    }
    let Expr::MatrixSelector(ms) = arg else {
        return None;
    };
    if ms.vs.at.is_some() || !ev.hists_of(&ms.vs).is_empty() {
        return None;
    }
    let node = NodeId::of(c);
    let series = ev.series_of(&ms.vs);
    let sample = |(i, v): (u32, f64)| VecSample {
        labels: series[i as usize].labels.clone(),
        v,
        drop_name: !keeps_name,
        h: None,
    };
    if let Some(v) = ev.cache.range_steps.borrow_mut().remove(&(node, ts)) {
        return Some(v.into_iter().map(sample).collect());
    }
    if u32::try_from(series.len()).is_err() {
        return None;
    }
    let param = match wf.param().filter(|i| *i < args.len()) {
        Some(i) if !is_constant(&args[i]) => return None,
        Some(i) => match ev.eval(&args[i], ts) {
            Ok(Value::Scalar(v)) => v,
            _ => return None,
        },
        None => 0.0,
    };
    if wf == WindowFn::Quantile {
        check_quantile(ev, param, &args[0]);
    }
    let off = offset_ms(&ms.vs.offset);
    let range = ms.range.as_millis() as i64;
    let steps: Vec<i64> = (0..)
        .map(|k: i64| ts.saturating_add(k.saturating_mul(g_step)))
        .take_while(|t| *t <= g_end)
        .collect();
    let last = steps.last().copied().unwrap_or(ts);
    let (first_start, last_end) = (
        ts.saturating_sub(off).saturating_sub(range),
        last.saturating_sub(off),
    );
    let mut per_step: Vec<Vec<(u32, f64)>> = step_capacities(series, &steps, off, range)
        .into_iter()
        .map(Vec::with_capacity)
        .collect();
    let mut buf: Vec<Sample> = Vec::new();
    let counter = wf.is_counter();
    let mut drops: Vec<u32> = Vec::new();
    for (k, s) in series.iter().enumerate() {
        range::note_non_counter(ev, wf, &s.labels, &args[wf.range_arg()]);
        // The samples the windows reach.
        let smp = {
            let all = &s.samples;
            let from = all.partition_point(|x| x.t <= first_start);
            let to = all.partition_point(|x| x.t <= last_end);
            &all[from..to.max(from)]
        };
        let has_stale = smp.iter().any(|x| lookout_model::is_stale_nan(x.v));
        // drops[i]: counter resets among samples 1..=i, so a window's count is one
        // subtraction and reset-free windows skip the scan.
        drops.clear();
        if counter && !has_stale {
            let mut n = 0u32;
            drops.push(0);
            for p in smp.windows(2) {
                n += u32::from(p[1].v < p[0].v);
                drops.push(n);
            }
        }
        let (mut a, mut b) = (0usize, 0usize);
        for (i, &t) in steps.iter().enumerate() {
            let end = t - off;
            let start = end - range;
            while b < smp.len() && smp[b].t <= end {
                b += 1;
            }
            while a < b && smp[a].t <= start {
                a += 1;
            }
            let window: &[Sample] = if has_stale {
                buf.clear();
                buf.extend(
                    smp[a..b]
                        .iter()
                        .filter(|x| !lookout_model::is_stale_nan(x.v)),
                );
                &buf
            } else {
                &smp[a..b]
            };
            if window.is_empty() {
                continue;
            }
            let w = Window {
                series: Vec::new(),
                start,
                end,
                range,
            };
            let no_resets = !drops.is_empty() && drops[b - 1] == drops[a];
            if let Some(v) = range::window_fn(wf, &w, window, t, param, no_resets) {
                // k fits: the series' count was checked above.
                per_step[i].push((k as u32, v));
            }
        }
    }
    let mut current = Vec::new();
    let mut cache = ev.cache.range_steps.borrow_mut();
    for (t, v) in steps.into_iter().zip(per_step) {
        if t == ts {
            current = v;
        } else {
            cache.insert((node, t), v);
        }
    }
    Some(current.into_iter().map(sample).collect())
}

/// For each step of `steps` (ascending, evenly spaced), how many of `series` have
/// samples in some window `(t - off - range, t - off]` around it: an upper bound of the
/// values the step gets (gaps within a series are not looked at). The query holds every
/// step's values at once, so each step's list is sized by this rather than grown (with
/// up to half of it spare) or sized for every series (when most come and go).
fn step_capacities(series: &[Series], steps: &[i64], off: i64, range: i64) -> Vec<usize> {
    let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else {
        return Vec::new();
    };
    let step = if steps.len() > 1 { steps[1] - first } else { 1 };
    // Steps with index in [a, b) see the series: first sample <= t - off and last
    // sample > t - off - range.
    let mut diff = vec![0isize; steps.len() + 1];
    for s in series {
        let (Some(lo), Some(hi)) = (s.samples.first(), s.samples.last()) else {
            continue;
        };
        let from = lo.t.saturating_add(off);
        let until = hi.t.saturating_add(off).saturating_add(range); // exclusive
        if from > last || until <= first {
            continue;
        }
        let a = if from <= first {
            0
        } else {
            ((from - first + step - 1) / step) as usize
        };
        let b = (((until - 1).min(last) - first) / step + 1) as usize;
        if a < b {
            diff[a] += 1;
            diff[b.min(steps.len())] -= 1;
        }
    }
    let mut n = 0isize;
    diff[..steps.len()]
        .iter()
        .map(|d| {
            n += d;
            n.max(0) as usize
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use range::instant_value;

    #[test]
    fn step_capacities_bound_the_values_of_every_step() {
        let mk = |ts: &[i64]| Series {
            labels: lookout_model::Labels::empty(),
            samples: ts.iter().map(|t| Sample::new(*t, 1.0)).collect(),
        };
        // Steps at 0, 10, …, 100; windows of 15 ending at the step.
        let steps: Vec<i64> = (0..=10).map(|k| k * 10).collect();
        let series = [
            mk(&[0, 5, 100]),
            mk(&[32, 41]),
            mk(&[]),
            mk(&[500]),
            mk(&[-40]),
        ];
        let caps = step_capacities(&series, &steps, 0, 15);
        // The first series covers every step; the second steps 40 and 50 (its last
        // sample, 41, is in (t - 15, t] for t = 50 but not t = 60) and 40 (32 ≤ 40).
        assert_eq!(caps, vec![1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 1]);
        // An offset moves the windows back: t - 20.
        let caps = step_capacities(&series[1..2], &steps, 20, 15);
        assert_eq!(caps, vec![0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0]);
        assert!(step_capacities(&series, &[], 0, 15).is_empty());
    }

    #[test]
    fn irate_handles_counter_reset() {
        let s = [Sample::new(0, 10.0), Sample::new(10_000, 4.0)];
        assert_eq!(instant_value(&s, true), Some(0.4));
        assert_eq!(instant_value(&s, false), Some(-6.0));
    }
}
