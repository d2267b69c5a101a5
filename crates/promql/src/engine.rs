//! The engine: parses a query, loads the data its selectors need once, and evaluates the
//! expression step by step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use lookout_model::{Labels, METRIC_NAME_LABEL, MatchOp, Matcher, Sample, is_stale_nan};
use lookout_storage::{Grid, HistogramSample, HistogramSeries, Queryable, SelectHints, Series};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};

use crate::error::{Error, Result, exec};
use crate::value::{RangeSeries, Value, VecSample};
use crate::{aggregate, binary, functions};

/// Limits and defaults of query evaluation.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_delta: Duration,
    /// Longest a query may run.
    pub timeout: Duration,
    /// Most samples a query may load.
    pub max_samples: usize,
    /// Most bytes of series a query may hold (selected samples and their labels, subquery
    /// and result points); 0: no limit. Past it the query fails with an execution error
    /// instead of the process running out of memory.
    pub max_memory: usize,
    /// Step of subqueries written without one (Prometheus: the global evaluation interval).
    pub default_subquery_step: Duration,
    /// Threads that evaluate one range query's steps, each a contiguous span of them
    /// (the answer is the same): 0 for one per core, at most 8.
    pub range_threads: usize,
    /// Least samples a range query loads before its steps are split between threads:
    /// below it, starting threads costs more than it saves.
    pub parallel_min_samples: usize,
    /// Whether `rate`, `increase`, `delta` and the `*_over_time` aggregations read the
    /// store's rollups (downsampled windows) when their windows line up with some
    /// ([`lookout_storage::Querier::rollup_resolutions`]); `false` reads raw samples
    /// only (the HTTP API's `resolution=raw`).
    pub rollups: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_memory: 2 << 30,
            default_subquery_step: Duration::from_secs(60),
            range_threads: 0,
            parallel_min_samples: 200_000,
            rollups: true,
        }
    }
}

/// The PromQL engine. Holds only options; storage is handed in per query.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// Parses a PromQL expression, mapping the parser's message to [`Error::Parse`]. Queries
/// over the length or nesting limits ([`crate::limits`]) are refused before parsing.
pub fn parse(query: &str) -> Result<Expr> {
    crate::limits::check(query)?;
    // The parser panics on some hostile numbers (a float duration such as `x[1e300]`
    // overflows `Duration::from_secs_f64`): that is a bad query, not a crash.
    std::panic::catch_unwind(|| parser::parse(query))
        .unwrap_or_else(|p| {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown reason".into());
            Err(format!("invalid number or duration in query: {why}"))
        })
        .map_err(Error::Parse)
}

/// Parses a series selector (`up{job="x"}`) as the `match[]` parameters of the HTTP API
/// take it; returns one matcher list per `or` alternative.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>> {
    match parse(s)? {
        Expr::VectorSelector(vs) => selector_matchers(&vs),
        _ => Err(Error::Parse(format!("{s:?} is not a series selector"))),
    }
}

/// A selector's matcher sets (one per `or` alternative).
fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![to_matchers(&vs.name, &vs.matchers.matchers)?])
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|g| to_matchers(&vs.name, g))
            .collect()
    }
}

/// The matcher sets of every series selector in `e`, in the order written (what
/// Prometheus's exemplar API selects by).
pub fn selectors(e: &Expr) -> Result<Vec<Vec<Matcher>>> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::VectorSelector(vs) => out.extend(selector_matchers(vs)?),
            Expr::MatrixSelector(ms) => out.extend(selector_matchers(&ms.vs)?),
            Expr::Subquery(sq) => stack.push(&sq.expr),
            Expr::Aggregate(a) => {
                stack.push(&a.expr);
                if let Some(p) = &a.param {
                    stack.push(p);
                }
            }
            Expr::Unary(u) => stack.push(&u.expr),
            Expr::Binary(b) => {
                stack.push(&b.rhs);
                stack.push(&b.lhs);
            }
            Expr::Paren(p) => stack.push(&p.expr),
            Expr::Call(c) => stack.extend(c.args.args.iter().rev().map(|a| &**a)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    Ok(out)
}

impl Engine {
    /// An engine with the given options.
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses a PromQL expression.
    pub fn parse(&self, query: &str) -> Result<Expr> {
        parse(query)
    }

    /// Evaluates `query` at `t` (ms).
    pub fn instant(&self, db: &dyn Queryable, query: &str, t: i64) -> Result<Value> {
        let expr = parse(query)?;
        self.instant_query(db, query, &expr, t, None)
            .map(|r| r.value)
    }

    /// Evaluates `expr` (parsed from `text`, which annotations point into) at `t` (ms),
    /// with the query's annotations; `cancel`, when set, aborts the query.
    pub fn instant_query(
        &self,
        db: &dyn Queryable,
        text: &str,
        expr: &Expr,
        t: i64,
        cancel: Option<&AtomicBool>,
    ) -> Result<crate::value::QueryResult> {
        let ev = Evaluator::prepare(&self.opts, db, text, expr, t, t, 0, cancel)?;
        let v = ev.eval(expr, t)?;
        let value = match v {
            Value::Vector(v) => {
                let mut v = cleanup(v, &mut HashMap::new());
                ev.check_unique(&v)?;
                if !functions::is_ordered(expr) {
                    v.sort_by(|a, b| a.labels.cmp(&b.labels));
                }
                Value::Vector(v)
            }
            other => other,
        };
        Ok(crate::value::QueryResult {
            value,
            annotations: ev.annotations.into_inner(),
        })
    }

    /// Evaluates `query` at every `step` from `start` to `end` (ms, inclusive); the
    /// result is a matrix.
    pub fn range(
        &self,
        db: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Value> {
        let expr = parse(query)?;
        self.range_query(db, query, &expr, start, end, step, None)
            .map(|r| r.value)
    }

    /// Range evaluation of a parsed expression, with the query's annotations.
    #[allow(clippy::too_many_arguments)] // Prometheus's NewRangeQuery takes as many
    pub fn range_query(
        &self,
        db: &dyn Queryable,
        text: &str,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        cancel: Option<&AtomicBool>,
    ) -> Result<crate::value::QueryResult> {
        if step <= 0 {
            return exec("zero or negative query resolution step widths are not accepted");
        }
        match expr.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            other => {
                return exec(format!(
                    "invalid expression type \"{other}\" for range query, must be Scalar or instant Vector"
                ));
            }
        }
        let ev = Evaluator::prepare(&self.opts, db, text, expr, start, end, step, cancel)?;
        // Every sort in a range query is ineffective: at the top the warning points at
        // the query's start, elsewhere at the argument the sort is.
        const INEFFECTIVE: &str =
            "sort is ineffective for range queries since results are always ordered by labels";
        if functions::is_sort(expr) {
            ev.warn(format!(
                "{INEFFECTIVE} ({})",
                crate::position::line_col(text, crate::position::start(text))
            ));
        }
        for inner in functions::nested_sorts(expr) {
            ev.warn_at(INEFFECTIVE, inner);
        }
        let mut ev = ev;
        let spans = split_steps(
            start,
            end,
            step,
            threads_for(&self.opts, &ev, start, end, step),
        );
        let mut series = if let [(_, first_end), rest @ ..] = spans.as_slice()
            && !rest.is_empty()
        {
            // Later spans on threads of their own, the first on this one; each span's
            // series are then appended in step order.
            let seeds: Vec<Seed<'_>> = rest.iter().map(|&(a, b)| ev.seed(a, b)).collect();
            ev.grid_end = *first_end;
            let (first, others) = std::thread::scope(|sc| {
                // A span whose thread cannot be started is evaluated here, after the
                // first: a query never fails for want of a thread.
                let spawned: Vec<_> = seeds
                    .into_iter()
                    .map(|seed| {
                        let grid = seed.grid;
                        std::thread::Builder::new()
                            .name("lookout-query".into())
                            .spawn_scoped(sc, move || eval_seed(seed, expr, step))
                            .map_err(|_| grid)
                    })
                    .collect();
                let first = eval_steps(&ev, expr, start, *first_end, step);
                let others: Vec<_> = spawned
                    .into_iter()
                    .map(|s| match s {
                        Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        Err((a, b)) => eval_seed(ev.seed(a, b), expr, step),
                    })
                    .collect();
                (first, others)
            });
            let mut series = first?;
            let mut index: HashMap<Labels, usize> = series
                .iter()
                .enumerate()
                .map(|(i, s)| (s.labels.clone(), i))
                .collect();
            for (r, annotations) in others {
                ev.annotations.borrow_mut().absorb(annotations);
                for s in r? {
                    match index.get(&s.labels) {
                        Some(&i) => {
                            series[i].samples.extend(s.samples);
                            series[i].histograms.extend(s.histograms);
                        }
                        None => {
                            index.insert(s.labels.clone(), series.len());
                            series.push(s);
                        }
                    }
                }
            }
            series
        } else {
            eval_steps(&ev, expr, start, end, step)?
        };
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(crate::value::QueryResult {
            value: Value::Matrix(series),
            annotations: ev.annotations.into_inner(),
        })
    }
}

/// How many threads evaluate a range query's steps: one for a query that loads fewer
/// than `parallel_min_samples`, otherwise `range_threads` (0: one per core), at most 8,
/// with at least four steps each.
fn threads_for(opts: &EngineOptions, ev: &Evaluator<'_>, start: i64, end: i64, step: i64) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = match opts.range_threads {
        0 => *CORES.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        n => n,
    };
    let steps = usize::try_from((i128::from(end) - i128::from(start)) / i128::from(step) + 1)
        .unwrap_or(usize::MAX);
    if ev.samples.load(Ordering::Relaxed) < opts.parallel_min_samples {
        return 1;
    }
    cores.min(8).min(steps / 4).max(1)
}

/// `start` to `end` (whole steps) cut into `n` contiguous spans of about as many steps.
fn split_steps(start: i64, end: i64, step: i64, n: usize) -> Vec<(i64, i64)> {
    let steps = (i128::from(end) - i128::from(start)) / i128::from(step) + 1;
    let n = (n.max(1) as i128).min(steps.max(1));
    (0..n)
        .map(|k| {
            let (a, b) = (steps * k / n, steps * (k + 1) / n - 1);
            let at = |i: i128| (i128::from(start) + i * i128::from(step)) as i64;
            (at(a), at(b))
        })
        .collect()
}

/// The steps of a [`Seed`], with the annotations they raised.
fn eval_seed(
    seed: Seed<'_>,
    expr: &Expr,
    step: i64,
) -> (Result<Vec<RangeSeries>>, crate::value::Annotations) {
    let (a, b) = seed.grid;
    let ev = Evaluator::from_seed(seed);
    let r = eval_steps(&ev, expr, a, b, step);
    (r, ev.annotations.into_inner())
}

/// The range query's steps from `from` to `to` (on its grid), evaluated in order into
/// one series per label set (unsorted).
fn eval_steps(
    ev: &Evaluator<'_>,
    expr: &Expr,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<RangeSeries>> {
    let mut series: Vec<RangeSeries> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut memo = HashMap::new();
    // The series each position of the previous step's vector went to, with that
    // sample's labels before name removal. Steps usually return the same series in
    // the same order, so most samples find their series without hashing, and a step
    // whose label sets are all those of the (checked) previous step needs no
    // duplicate check.
    let mut prev: Vec<(Labels, bool, usize)> = Vec::new();
    let mut t = from;
    while t <= to {
        ev.check_limits("expression evaluation")?;
        let v = ev.eval(expr, t)?;
        ev.count_samples(
            match &v {
                Value::Vector(vs) => vs.len(),
                _ => 1,
            },
            "expression evaluation",
        )?;
        match v {
            Value::Scalar(v) => {
                if series.is_empty() {
                    series.push(RangeSeries::new(Labels::empty(), Vec::new()));
                }
                series[0].samples.push(Sample::new(t, v));
            }
            Value::Vector(vs) => {
                let same = vs.len() == prev.len()
                    && vs
                        .iter()
                        .zip(&prev)
                        .all(|(s, p)| s.drop_name == p.1 && s.labels.ptr_eq(&p.0));
                if same {
                    for (s, p) in vs.iter().zip(&prev) {
                        series[p.2].push(t, s);
                    }
                } else {
                    let keys: Vec<(Labels, bool)> =
                        vs.iter().map(|s| (s.labels.clone(), s.drop_name)).collect();
                    let vs = cleanup(vs, &mut memo);
                    ev.check_unique(&vs)?;
                    prev.clear();
                    for (s, (key, dn)) in vs.into_iter().zip(keys) {
                        let i = *index.entry(s.labels.clone()).or_insert_with(|| {
                            // A series there from the first step is usually there at
                            // every step: it gets room for all of them (to the query's
                            // end when this is the query's first step, as the other
                            // threads' steps are appended to it), as a query holds
                            // every series at once and growing would leave up to half
                            // of that spare. Series appearing later grow.
                            let room = if t == ev.start {
                                ((ev.end - t) / step + 1) as usize
                            } else if t == from {
                                ((to - t) / step + 1) as usize
                            } else {
                                0
                            };
                            series
                                .push(RangeSeries::new(s.labels.clone(), Vec::with_capacity(room)));
                            series.len() - 1
                        });
                        series[i].push(t, &s);
                        prev.push((key, dn, i));
                    }
                }
            }
            other => return exec(format!("unexpected {} in range query", other.type_name())),
        }
        t += step;
    }
    Ok(series)
}

/// Removes the metric name where it was marked for removal (the end of Prometheus's
/// delayed name removal). `memo` keeps the name-less label set of each series, so a range
/// query builds it once rather than at every step.
fn cleanup(v: Vec<VecSample>, memo: &mut HashMap<Labels, Labels>) -> Vec<VecSample> {
    v.into_iter()
        .map(|s| {
            if s.drop_name {
                let ls = memo
                    .entry(s.labels.clone())
                    .or_insert_with(|| s.labels.without_metric_name())
                    .clone();
                VecSample {
                    labels: ls,
                    drop_name: false,
                    ..s
                }
            } else {
                s
            }
        })
        .collect()
}

/// Longest offset, range or step a query may name, in ms (about 36 million years):
/// larger ones are refused when the query is prepared, so the evaluator's time
/// arithmetic cannot overflow.
pub(crate) const MAX_DURATION_MS: i64 = i64::MAX / 8;

/// Milliseconds of a duration, saturating.
pub(crate) fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds of a parser offset (negative offsets look forward).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(*d),
        Some(Offset::Neg(d)) => -dur_ms(*d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => dur_ms(d),
        Err(e) => -dur_ms(e.duration()),
    }
}

/// Converts parser matchers into model matchers, adding the metric name if given.
pub(crate) fn to_matchers(name: &Option<String>, ms: &[PMatcher]) -> Result<Vec<Matcher>> {
    let mut out = Vec::with_capacity(ms.len() + 1);
    if let Some(n) = name
        && !ms.iter().any(|m| m.name == METRIC_NAME_LABEL)
    {
        out.push(Matcher::equal(METRIC_NAME_LABEL, n));
    }
    for m in ms {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, &m.name, &m.value).map_err(|e| Error::Parse(e.to_string()))?);
    }
    Ok(out)
}

/// Identity of one node of the query's syntax tree, for what is kept per node during
/// one query (loaded data, caches, plans, source positions).
///
/// promql-parser's tree carries no ids; it is borrowed, unmoved, for the whole query, so
/// a node's address names it. This is the one place that takes addresses: two nodes
/// never share one, because children are boxed, not stored inside their parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct NodeId(usize);

impl NodeId {
    /// The id of `node` (an `Expr`, or a node struct inside one).
    pub(crate) fn of<T>(node: &T) -> Self {
        Self(std::ptr::from_ref(node).addr())
    }
}

/// Key of a derived label set: expression node, input labels, and a second input.
pub(crate) type LabelMemoKey = (NodeId, Labels, Option<Labels>);

/// Per-query evaluation state: the loaded data and limits.
pub(crate) struct Evaluator<'a> {
    /// The query text, and where its function and aggregation arguments start (for the
    /// `line:col` annotations end with).
    text: String,
    positions: HashMap<NodeId, usize>,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) lookback: i64,
    /// The range query's step (0 for instant queries).
    pub(crate) step: i64,
    /// The steps this evaluator evaluates, `start` to `end` unless a range query was
    /// split between threads ([`Evaluator::seed`]): range functions and subqueries
    /// precompute over these, while `@ start()` and `@ end()` stay the query's.
    pub(crate) grid_start: i64,
    pub(crate) grid_end: i64,
    sub_step: i64,
    /// The series each selector node reads: an index into `loaded`.
    data: HashMap<NodeId, usize>,
    /// The windows (and their resolution) a range function's matrix selector reads
    /// instead of samples, when they line up with the store's rollups
    /// ([`crate::functions::rollup`]).
    pub(crate) rollups: Arc<HashMap<NodeId, (i64, Vec<lookout_storage::RollupSeries>)>>,
    /// Selected series; selectors with the same matchers and window share one entry
    /// (and every thread of a split range query shares them all).
    loaded: Arc<Vec<Vec<Series>>>,
    /// The native-histogram series of each entry of `loaded` (same index).
    hists: Arc<Vec<Vec<HistogramSeries>>>,
    deadline: Instant,
    cancel: Option<&'a AtomicBool>,
    /// Most samples (loaded, computed by subqueries, or returned) the query may hold.
    max_samples: usize,
    /// Samples counted against `max_samples` so far, by every thread of the query.
    samples: Arc<AtomicUsize>,
    /// Most bytes the query may hold (0: no limit).
    max_memory: usize,
    /// Bytes counted against `max_memory` so far, by every thread of the query.
    bytes: Arc<AtomicUsize>,
    /// The earliest and latest times evaluation reaches, and whether any offset, range
    /// or step was too large (found while collecting the selectors' windows).
    extent: std::cell::Cell<(i64, i64, bool)>,
    annotations: std::cell::RefCell<crate::value::Annotations>,
    /// Evaluation grids (start, end, step) of the subqueries being evaluated, innermost last.
    pub(crate) grids: std::cell::RefCell<Vec<(i64, i64, i64)>>,
    /// What the query computes once and reuses across steps.
    pub(crate) cache: crate::cache::QueryCache,
}

/// An [`Evaluator`] in the making for another thread ([`Evaluator::seed`]): everything
/// but its caches, which hold `Rc`s and stay on their thread.
struct Seed<'a> {
    text: String,
    positions: HashMap<NodeId, usize>,
    /// The query's start, end and step.
    range: (i64, i64, i64),
    /// The steps the thread evaluates.
    grid: (i64, i64),
    lookback: i64,
    sub_step: i64,
    data: HashMap<NodeId, usize>,
    loaded: Arc<Vec<Vec<Series>>>,
    hists: Arc<Vec<Vec<HistogramSeries>>>,
    rollups: Arc<HashMap<NodeId, (i64, Vec<lookout_storage::RollupSeries>)>>,
    deadline: Instant,
    cancel: Option<&'a AtomicBool>,
    /// `max_samples`, `max_memory`.
    limits: (usize, usize),
    /// The shared counters of samples and bytes.
    counters: (Arc<AtomicUsize>, Arc<AtomicUsize>),
    extent: (i64, i64, bool),
}

/// One series of a subquery evaluated over a whole grid, with each sample's name-removal
/// mark.
pub(crate) struct GridSeries {
    labels: Labels,
    samples: Vec<Sample>,
    drops: Vec<bool>,
    histograms: Vec<HistogramSample>,
    hdrops: Vec<bool>,
}

struct Need<'e> {
    vs: &'e VectorSelector,
    mint: i64,
    maxt: i64,
    /// Where an instant selector is read, when that is known before evaluation: the
    /// store then returns one sample per series and step instead of every sample.
    grid: Option<Grid>,
    /// Set when rollups can answer the selector ([`Rollable`]).
    rollable: Option<Rollable>,
}

/// How rollups could answer a selector, with the first time it is read at (`lo -
/// offset`) and the step between reads (0: one time).
#[derive(Debug, Clone, Copy)]
enum Rollable {
    /// The matrix selector of a range function rollups answer, over `range` ms.
    Range { first: i64, range: i64, step: i64 },
    /// An instant selector: at a window's end, the newest sample at or before it is the
    /// last of the newest window (or a staleness marker).
    Instant { first: i64, step: i64 },
}

impl Rollable {
    /// The coarsest of `tiers` that lines up with every read.
    fn pick(self, tiers: &[i64]) -> Option<i64> {
        match self {
            Rollable::Range { first, range, step } => {
                functions::rollup::pick(tiers, first, range, step)
            }
            Rollable::Instant { first, step } => tiers
                .iter()
                .copied()
                .filter(|&r| r > 0 && step % r == 0 && first.rem_euclid(r) == 0)
                .max(),
        }
    }
}

fn key(vs: &VectorSelector) -> NodeId {
    NodeId::of(vs)
}

impl<'a> Evaluator<'a> {
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        opts: &EngineOptions,
        db: &dyn Queryable,
        text: &str,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        cancel: Option<&'a AtomicBool>,
    ) -> Result<Self> {
        let mut ev = Evaluator::from_seed(Seed {
            text: text.to_string(),
            positions: crate::position::locate(text, expr),
            range: (start, end, step),
            grid: (start, end),
            lookback: opts.lookback_delta.as_millis() as i64,
            sub_step: opts.default_subquery_step.as_millis().max(1) as i64,
            data: HashMap::new(),
            loaded: Arc::default(),
            hists: Arc::default(),
            rollups: Arc::default(),
            deadline: Instant::now() + opts.timeout,
            cancel,
            limits: (opts.max_samples, opts.max_memory),
            counters: Default::default(),
            extent: (start, end, false),
        });
        // A binary expression at the top: its annotations point at the query's start.
        let mut top = expr;
        while let Expr::Paren(p) = top {
            top = &p.expr;
        }
        if let Expr::Binary(b) = top {
            ev.positions
                .insert(NodeId::of(b), crate::position::start(text));
        }
        let mut needs = Vec::new();
        ev.collect(expr, start, end, Some(step), &mut needs);
        let mut stats = std::collections::HashSet::new();
        stats_only(expr, false, &mut stats);
        let (lo, hi, too_long) = ev.extent.get();
        if too_long {
            return Err(Error::Parse(format!(
                "an offset, range or step is longer than the limit of {}",
                lookout_model::format_duration(Duration::from_millis(MAX_DURATION_MS as u64))
            )));
        }
        if lo < -crate::limits::MAX_TIME_MS || hi > crate::limits::MAX_TIME_MS {
            return Err(Error::Parse(
                "the query reaches times out of range (more than 73 million years from 1970)"
                    .into(),
            ));
        }
        if needs.is_empty() {
            return Ok(ev);
        }
        let mint = needs.iter().map(|n| n.mint).min().unwrap_or(start);
        let maxt = needs.iter().map(|n| n.maxt).max().unwrap_or(end);
        let q = db.querier(mint, maxt)?;
        let tiers = if opts.rollups && needs.iter().any(|n| n.rollable.is_some()) {
            q.rollup_resolutions()
        } else {
            Vec::new()
        };
        let mut loaded = 0usize;
        let mut sets = Vec::new();
        let mut hsets = Vec::new();
        let mut rollups = HashMap::new();
        let mut by_selection: HashMap<(String, i64, i64), usize> = HashMap::new();
        for n in needs {
            if ev.data.contains_key(&key(n.vs)) || rollups.contains_key(&key(n.vs)) {
                continue;
            }
            // Rollups hold floats only: a selector that finds histograms reads samples.
            let mut hs = None;
            if let Some((how, r)) = n.rollable.and_then(|how| Some((how, how.pick(&tiers)?)))
                && hs
                    .insert(select_histograms(
                        q.as_ref(),
                        &n,
                        stats.contains(&key(n.vs)),
                    )?)
                    .is_empty()
            {
                // An instant selector reads the window holding its earliest time too.
                let start = match how {
                    Rollable::Range { .. } => n.mint,
                    Rollable::Instant { .. } => n.mint.saturating_sub(1).div_euclid(r) * r,
                };
                // An instant selector reads only the windows' last samples: the store
                // may read its samples thinned to the windows' ends.
                let grid = matches!(how, Rollable::Instant { .. }).then_some(Grid {
                    first: start + r,
                    last: n.maxt,
                    step: r,
                });
                let hints = SelectHints {
                    start,
                    end: n.maxt,
                    func: None,
                    grid,
                };
                let mut got = Vec::new();
                for group in selector_matchers(n.vs)? {
                    got.extend(q.select_rollups(&hints, &group, r)?);
                }
                got.sort_by(|a, b| a.labels.cmp(&b.labels));
                got.dedup_by(|a, b| a.labels == b.labels);
                if let Rollable::Instant { .. } = how {
                    // Read as samples: each window's last (and its staleness marker).
                    let series: Vec<Series> = got
                        .into_iter()
                        .map(|s| Series {
                            samples: lookout_storage::rollup::latest_samples(&s.windows),
                            labels: s.labels,
                        })
                        .collect();
                    ev.count_loaded(
                        &mut loaded,
                        series.iter().map(|s| s.samples.len()).sum(),
                        series.iter().map(series_bytes).sum(),
                        opts.max_samples,
                    )?;
                    ev.data.insert(key(n.vs), sets.len());
                    sets.push(series);
                    hsets.push(Vec::new());
                    continue;
                }
                ev.count_loaded(
                    &mut loaded,
                    got.iter().map(|s| s.windows.len()).sum(),
                    got.iter()
                        .map(|s| {
                            labels_bytes(&s.labels)
                                + s.windows.len() * std::mem::size_of::<lookout_storage::Rollup>()
                        })
                        .sum(),
                    opts.max_samples,
                )?;
                rollups.insert(key(n.vs), (r, got));
                continue;
            }
            let skey = (
                format!(
                    "{:?}|{:?}|{:?}|{}",
                    n.vs.name,
                    n.vs.matchers,
                    n.grid,
                    stats.contains(&key(n.vs))
                ),
                n.mint,
                n.maxt,
            );
            if let Some(&i) = by_selection.get(&skey) {
                ev.data.insert(key(n.vs), i);
                continue;
            }
            let hints = SelectHints {
                start: n.mint,
                end: n.maxt,
                func: None,
                grid: n.grid,
            };
            let mut series = if n.vs.matchers.or_matchers.is_empty() {
                q.select(&hints, &to_matchers(&n.vs.name, &n.vs.matchers.matchers)?)?
            } else {
                let mut all: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
                for group in &n.vs.matchers.or_matchers {
                    for s in q.select(&hints, &to_matchers(&n.vs.name, group)?)? {
                        all.insert(s.labels, s.samples);
                    }
                }
                all.into_iter()
                    .map(|(labels, samples)| Series { labels, samples })
                    .collect()
            };
            let hs = match hs {
                Some(hs) => hs,
                None => select_histograms(q.as_ref(), &n, stats.contains(&key(n.vs)))?,
            };
            ev.count_loaded(
                &mut loaded,
                series.iter().map(|s| s.samples.len()).sum::<usize>()
                    + hs.iter().map(|s| s.samples.len()).sum::<usize>(),
                series.iter().map(series_bytes).sum::<usize>()
                    + hs.iter().map(histogram_series_bytes).sum::<usize>(),
                opts.max_samples,
            )?;
            let i = sets.len();
            sets.push(std::mem::take(&mut series));
            hsets.push(hs);
            ev.data.insert(key(n.vs), i);
            by_selection.insert(skey, i);
        }
        ev.loaded = Arc::new(sets);
        ev.hists = Arc::new(hsets);
        ev.rollups = Arc::new(rollups);
        Ok(ev)
    }

    /// What another thread needs to evaluate the steps from `grid_start` to `grid_end`
    /// of this range query: the loaded data and the limit counters shared, caches of its
    /// own ([`Evaluator::from_seed`]).
    fn seed(&self, grid_start: i64, grid_end: i64) -> Seed<'a> {
        Seed {
            text: self.text.clone(),
            positions: self.positions.clone(),
            range: (self.start, self.end, self.step),
            grid: (grid_start, grid_end),
            lookback: self.lookback,
            sub_step: self.sub_step,
            data: self.data.clone(),
            loaded: Arc::clone(&self.loaded),
            hists: Arc::clone(&self.hists),
            rollups: Arc::clone(&self.rollups),
            deadline: self.deadline,
            cancel: self.cancel,
            limits: (self.max_samples, self.max_memory),
            counters: (Arc::clone(&self.samples), Arc::clone(&self.bytes)),
            extent: self.extent.get(),
        }
    }

    /// The evaluator of a [`Seed`]: a new query's, or one on the thread that evaluates
    /// some of its steps.
    fn from_seed(s: Seed<'a>) -> Self {
        Evaluator {
            text: s.text,
            positions: s.positions,
            start: s.range.0,
            end: s.range.1,
            step: s.range.2,
            grid_start: s.grid.0,
            grid_end: s.grid.1,
            lookback: s.lookback,
            sub_step: s.sub_step,
            data: s.data,
            loaded: s.loaded,
            hists: s.hists,
            rollups: s.rollups,
            deadline: s.deadline,
            cancel: s.cancel,
            max_samples: s.limits.0,
            samples: s.counters.0,
            max_memory: s.limits.1,
            bytes: s.counters.1,
            extent: std::cell::Cell::new(s.extent),
            annotations: Default::default(),
            grids: Default::default(),
            cache: Default::default(),
        }
    }

    /// A label set derived from `key` (expression node and inputs), computed by `derive`
    /// once per query: a range query sees the same series at every step.
    pub(crate) fn memo_labels(&self, key: LabelMemoKey, derive: impl FnOnce() -> Labels) -> Labels {
        if let Some(v) = self.cache.labels.borrow().get(&key) {
            return v.clone();
        }
        let v = derive();
        self.cache.labels.borrow_mut().insert(key, v.clone());
        v
    }

    /// `pattern` compiled, once per query; `None` when it is not a valid expression.
    pub(crate) fn regex(&self, pattern: &str) -> Option<std::rc::Rc<regex::Regex>> {
        self.cache
            .regexes
            .borrow_mut()
            .entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(pattern).ok().map(std::rc::Rc::new))
            .clone()
    }

    /// Records a warning annotation.
    pub(crate) fn warn(&self, msg: impl Into<String>) {
        self.annotations.borrow_mut().warn(msg);
    }

    /// Records an info annotation.
    pub(crate) fn info(&self, msg: impl Into<String>) {
        self.annotations.borrow_mut().info(msg);
    }

    /// `msg` with the position of `about` in the query, as Prometheus ends annotations.
    fn at(&self, msg: String, about: &Expr) -> String {
        match self.positions.get(&NodeId::of(about)) {
            Some(p) => format!("{msg} ({})", crate::position::line_col(&self.text, *p)),
            None => msg,
        }
    }

    /// Records an annotation about node `node` (a binary expression): a warning, or an
    /// info when `info`, with the node's position when it is known.
    pub(crate) fn note_at_node(&self, msg: String, node: NodeId, info: bool) {
        let msg = match self.positions.get(&node) {
            Some(p) => format!("{msg} ({})", crate::position::line_col(&self.text, *p)),
            None => msg,
        };
        if info {
            self.info(msg);
        } else {
            self.warn(msg);
        }
    }

    /// The query's text from where argument `about` starts, when that is known.
    pub(crate) fn source_of(&self, about: &Expr) -> Option<&str> {
        self.positions
            .get(&NodeId::of(about))
            .and_then(|&p| self.text.get(p..))
    }

    /// Records a warning about the argument `about`.
    pub(crate) fn warn_at(&self, msg: impl Into<String>, about: &Expr) {
        self.warn(self.at(msg.into(), about));
    }

    /// Records an info about the argument `about`.
    pub(crate) fn info_at(&self, msg: impl Into<String>, about: &Expr) {
        self.info(self.at(msg.into(), about));
    }

    /// The time `at` pins a selector to, if any.
    pub(crate) fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// Records the data window each selector needs when `e` is evaluated in `[lo, hi]`,
    /// every `step` from `lo` (`None` inside a subquery, whose steps are its own).
    fn collect<'e>(
        &self,
        e: &'e Expr,
        lo: i64,
        hi: i64,
        step: Option<i64>,
        out: &mut Vec<Need<'e>>,
    ) {
        match e {
            Expr::VectorSelector(vs) => {
                let pinned = self.at_time(&vs.at).is_some();
                let (lo, hi) = self.pin(&vs.at, lo, hi);
                let off = self.checked(offset_ms(&vs.offset));
                let (mint, maxt) = self.reach(lo, hi, off, self.lookback);
                // Read only at the steps (or the one time `@` pins it to), each step
                // taking the newest sample at or before it.
                let grid = match (pinned, step) {
                    (true, _) => Some(0),
                    (false, s) => s,
                }
                .map(|step| Grid {
                    first: lo.saturating_sub(off),
                    last: hi.saturating_sub(off),
                    step,
                });
                let rollable = match (pinned, step) {
                    (false, Some(step)) => Some(Rollable::Instant {
                        first: lo.saturating_sub(off),
                        step,
                    }),
                    _ => None,
                };
                out.push(Need {
                    vs,
                    mint,
                    maxt,
                    grid,
                    rollable,
                });
            }
            Expr::MatrixSelector(ms) => {
                let (lo, hi) = self.pin(&ms.vs.at, lo, hi);
                let off = self.checked(offset_ms(&ms.vs.offset));
                let range = self.checked(dur_ms(ms.range));
                let (mint, maxt) = self.reach(lo, hi, off, range);
                out.push(Need {
                    vs: &ms.vs,
                    mint,
                    maxt,
                    grid: None,
                    rollable: None,
                });
            }
            Expr::Subquery(sq) => {
                let (lo, hi) = self.pin(&sq.at, lo, hi);
                let off = self.checked(offset_ms(&sq.offset));
                let range = self.checked(dur_ms(sq.range));
                if let Some(step) = sq.step {
                    self.checked(dur_ms(step));
                }
                let (mint, maxt) = self.reach(lo, hi, off, range);
                self.collect(&sq.expr, mint, maxt, None, out);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.collect(p, lo, hi, step, out);
                }
                self.collect(&a.expr, lo, hi, step, out);
            }
            Expr::Unary(u) => self.collect(&u.expr, lo, hi, step, out),
            Expr::Binary(b) => {
                self.collect(&b.lhs, lo, hi, step, out);
                self.collect(&b.rhs, lo, hi, step, out);
            }
            Expr::Paren(p) => self.collect(&p.expr, lo, hi, step, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.collect(a, lo, hi, step, out);
                }
                if let (Some(step), Some(ms)) = (step, functions::rollup::rollable(c)) {
                    // The selector's need was the last pushed.
                    if let Some(n) = out.last_mut().filter(|n| std::ptr::eq(n.vs, &ms.vs)) {
                        let off = offset_ms(&ms.vs.offset);
                        n.rollable = Some(Rollable::Range {
                            first: lo.saturating_sub(off),
                            range: dur_ms(ms.range),
                            step,
                        });
                    }
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn pin(&self, at: &Option<AtModifier>, lo: i64, hi: i64) -> (i64, i64) {
        match self.at_time(at) {
            Some(t) => (t, t),
            None => (lo, hi),
        }
    }

    /// `d` (an offset, range or step in ms), noting when it is over [`MAX_DURATION_MS`];
    /// such a query is refused after collection, so evaluation never sees it.
    fn checked(&self, d: i64) -> i64 {
        if d.unsigned_abs() > MAX_DURATION_MS as u64 {
            let (lo, hi, _) = self.extent.get();
            self.extent.set((lo, hi, true));
            return 0;
        }
        d
    }

    /// The window `[lo - off - back, hi - off]`, saturating, widening the query's extent.
    fn reach(&self, lo: i64, hi: i64, off: i64, back: i64) -> (i64, i64) {
        let mint = lo.saturating_sub(off).saturating_sub(back);
        let maxt = hi.saturating_sub(off);
        let (a, b, bad) = self.extent.get();
        self.extent
            .set((a.min(mint).min(lo), b.max(maxt).max(hi), bad));
        (mint, maxt)
    }

    /// Fails at once when a subquery's grid from `t` to `end` has more steps than
    /// `max_samples` leaves room for: each step costs at least one, so it would fail
    /// anyway, after evaluating millions of steps.
    fn room_for_steps(&self, t: i64, end: i64, step: i64) -> Result<()> {
        let steps = if end < t {
            0
        } else {
            (i128::from(end) - i128::from(t)) / i128::from(step) + 1
        };
        if steps
            > (self
                .max_samples
                .saturating_sub(self.samples.load(Ordering::Relaxed))) as i128
        {
            return Err(Error::TooManySamples("subquery evaluation"));
        }
        Ok(())
    }

    /// Counts `n` more samples held by the query, failing past `max_samples` (and their
    /// bytes past `max_memory`).
    pub(crate) fn count_samples(&self, n: usize, stage: &'static str) -> Result<()> {
        let total = self
            .samples
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        if total > self.max_samples {
            return Err(Error::TooManySamples(stage));
        }
        self.count_bytes(n.saturating_mul(std::mem::size_of::<Sample>()), stage)
    }

    /// Counts a selection of `points` points (samples or windows) and `bytes` bytes into
    /// what the query has loaded so far (`loaded` points), failing past `max_samples`,
    /// the byte limit, the deadline or a cancellation.
    fn count_loaded(
        &self,
        loaded: &mut usize,
        points: usize,
        bytes: usize,
        max_samples: usize,
    ) -> Result<()> {
        *loaded = loaded.saturating_add(points);
        if *loaded > max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        self.count_bytes(bytes, "query execution")?;
        self.samples.store(*loaded, Ordering::Relaxed);
        self.check_limits("query preparation")
    }

    /// Counts `n` more bytes held by the query, failing past `max_memory`.
    fn count_bytes(&self, n: usize, stage: &'static str) -> Result<()> {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if self.max_memory > 0 && total > self.max_memory {
            return Err(Error::TooMuchMemory {
                stage,
                limit: self.max_memory,
            });
        }
        Ok(())
    }

    /// Fails when the query is past its deadline or was cancelled.
    pub(crate) fn check_limits(&self, stage: &'static str) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Canceled(stage));
        }
        if Instant::now() > self.deadline {
            return Err(Error::Timeout(stage));
        }
        Ok(())
    }

    /// Fails when a vector holds two samples with the same labels.
    pub(crate) fn check_unique(&self, v: &[VecSample]) -> Result<()> {
        if v.len() < 2 {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::with_capacity(v.len());
        for s in v {
            if !seen.insert(&s.labels) {
                return exec("vector cannot contain metrics with the same labelset");
            }
        }
        Ok(())
    }

    /// Evaluates `e` at time `ts`.
    pub(crate) fn eval(&self, e: &Expr, ts: i64) -> Result<Value> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(vs) => {
                    let out: Vec<VecSample> = vs
                        .into_iter()
                        .map(|s| VecSample {
                            labels: s.labels,
                            v: -s.v,
                            drop_name: true,
                            h: s.h.map(|h| Arc::new(h.scaled(-1.0))),
                        })
                        .collect();
                    Ok(Value::Vector(out))
                }
                other => exec(format!("unary minus on a {}", other.type_name())),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.select_instant(vs, ts, false).0)),
            Expr::MatrixSelector(ms) => {
                let t = self.at_time(&ms.vs.at).unwrap_or(ts) - offset_ms(&ms.vs.offset);
                Ok(Value::Matrix(self.select_range(
                    &ms.vs,
                    t,
                    ms.range.as_millis() as i64,
                )))
            }
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq, ts)?)),
            Expr::Call(c) => functions::call(self, c, ts),
            Expr::Aggregate(a) => aggregate::eval(self, a, ts),
            Expr::Binary(b) => binary::eval(self, b, ts),
            Expr::Extension(_) => exec("extension expressions are not supported"),
        }
    }

    /// The instant vector of a selector at `ts`; with `with_t`, also each sample's time.
    pub(crate) fn select_instant(
        &self,
        vs: &VectorSelector,
        ts: i64,
        with_t: bool,
    ) -> (Vec<VecSample>, Vec<i64>) {
        let t = self.at_time(&vs.at).unwrap_or(ts) - offset_ms(&vs.offset);
        let mut out = Vec::new();
        let mut times = Vec::new();
        let series = self.series_of(vs);
        let has_hists = !self.hists_of(vs).is_empty();
        // Steps mostly move forward a little: continue from where the previous one
        // stopped in each series instead of searching it again.
        let mut cursors = self.cache.cursors.borrow_mut();
        let c = cursors
            .entry(key(vs))
            .or_insert_with(|| crate::cache::Cursors {
                last_t: i64::MIN,
                pos: vec![0; series.len()],
                spans: series
                    .iter()
                    .map(|s| match (s.samples.first(), s.samples.last()) {
                        (Some(a), Some(b)) => (a.t, b.t),
                        _ => (i64::MAX, i64::MIN),
                    })
                    .collect(),
            });
        let forward = t >= c.last_t;
        c.last_t = t;
        for ((s, p), &(first, last)) in series.iter().zip(c.pos.iter_mut()).zip(&c.spans) {
            // Nothing at or before t, or the newest sample is out of the lookback: the
            // series gives nothing (its cursor may stay behind; later steps catch up).
            if first > t || last <= t - self.lookback {
                continue;
            }
            let x = &s.samples;
            let mut i = if forward { *p } else { 0 };
            let mut hops = 0;
            while i < x.len() && x[i].t <= t && hops < 16 {
                i += 1;
                hops += 1;
            }
            if hops == 16 || !forward {
                i += x[i..].partition_point(|y| y.t <= t);
            }
            *p = i;
            if i == 0 {
                continue;
            }
            let smp = x[i - 1];
            if smp.t <= t - self.lookback || is_stale_nan(smp.v) {
                continue;
            }
            out.push(VecSample::new(s.labels.clone(), smp.v));
            if with_t || has_hists {
                times.push(smp.t);
            }
        }
        drop(cursors);
        if has_hists {
            self.add_instant_histograms(vs, t, &mut out, &mut times);
            if !with_t {
                times.clear();
            }
        }
        (out, times)
    }

    /// Adds the native-histogram samples of a selector at `t` to its float samples
    /// `out` (taken at `times`): a series holding both kinds gives its newer sample.
    fn add_instant_histograms(
        &self,
        vs: &VectorSelector,
        t: i64,
        out: &mut Vec<VecSample>,
        times: &mut Vec<i64>,
    ) {
        // Both lists are in label order: a series holding both kinds is found by
        // walking them side by side (this runs at every step).
        let floats = out.len();
        let mut f = 0;
        let mut dropped: Vec<bool> = Vec::new();
        for s in self.hists_of(vs) {
            let i = s.samples.partition_point(|x| x.t <= t);
            if i == 0 {
                continue;
            }
            let smp = &s.samples[i - 1];
            // Past the lookback, or ended by a staleness marker (a stale NaN sum).
            if smp.t <= t - self.lookback || is_stale_nan(smp.h.sum) {
                continue;
            }
            while f < floats && out[f].labels < s.labels {
                f += 1;
            }
            if f < floats && out[f].labels == s.labels {
                if times[f] > smp.t {
                    continue;
                }
                dropped.resize(floats, false);
                dropped[f] = true;
            }
            out.push(VecSample::histogram(s.labels.clone(), Arc::clone(&smp.h)));
            times.push(smp.t);
        }
        if !dropped.is_empty() {
            dropped.resize(out.len(), false);
            let mut k = 0;
            out.retain(|_| {
                k += 1;
                !dropped[k - 1]
            });
            let mut k = 0;
            times.retain(|_| {
                k += 1;
                !dropped[k - 1]
            });
        }
    }

    /// Every native-histogram series a selector loaded.
    pub(crate) fn hists_of(&self, vs: &VectorSelector) -> &[HistogramSeries] {
        self.data
            .get(&key(vs))
            .and_then(|&i| self.hists.get(i))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every series a selector loaded, with all its samples.
    pub(crate) fn series_of(&self, vs: &VectorSelector) -> &[Series] {
        self.data
            .get(&key(vs))
            .map(|&i| self.loaded[i].as_slice())
            .unwrap_or(&[])
    }

    /// Samples of a selector in `(t - range, t]`, without staleness markers.
    pub(crate) fn select_range(&self, vs: &VectorSelector, t: i64, range: i64) -> Vec<RangeSeries> {
        let mut out = Vec::new();
        for s in self.series_of(vs) {
            let a = s.samples.partition_point(|x| x.t <= t - range);
            let b = s.samples.partition_point(|x| x.t <= t);
            let samples: Vec<Sample> = s.samples[a..b]
                .iter()
                .filter(|x| !is_stale_nan(x.v))
                .copied()
                .collect();
            if !samples.is_empty() {
                out.push(RangeSeries::new(s.labels.clone(), samples));
            }
        }
        let hists = self.hists_of(vs);
        if hists.is_empty() {
            return out;
        }
        // Both lists are in label order: walked side by side.
        let floats = out.len();
        let mut f = 0;
        for s in hists {
            let a = s.samples.partition_point(|x| x.t <= t - range);
            let b = s.samples.partition_point(|x| x.t <= t);
            let window: Vec<HistogramSample> = s.samples[a..b]
                .iter()
                .filter(|x| !is_stale_nan(x.h.sum))
                .cloned()
                .collect();
            if window.is_empty() {
                continue;
            }
            while f < floats && out[f].labels < s.labels {
                f += 1;
            }
            if f < floats && out[f].labels == s.labels {
                out[f].histograms = window;
            } else {
                let mut only = RangeSeries::new(s.labels.clone(), Vec::new());
                only.histograms = window;
                out.push(only);
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Evaluates a subquery ending at `ts`: the inner expression at every step aligned to
    /// multiples of the step, in `(ts - offset - range, ts - offset]`.
    pub(crate) fn subquery(&self, sq: &parser::SubqueryExpr, ts: i64) -> Result<Vec<RangeSeries>> {
        let end = self.at_time(&sq.at).unwrap_or(ts) - offset_ms(&sq.offset);
        let step = sq
            .step
            .map(|d| d.as_millis() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(self.sub_step);
        let start = end - sq.range.as_millis() as i64;
        let mut t = step * start.div_euclid(step);
        if t <= start {
            t += step;
        }
        let key = NodeId::of(&*sq.expr);
        // In a range query, the inner steps of every outer step lie on one grid: let
        // range-vector functions inside compute it in one pass.
        // In an instant query, the outermost subquery's own steps are that grid.
        let grid = if sq.at.is_some() {
            None
        } else if self.step > 0 {
            let first = self.grid_start - offset_ms(&sq.offset) - sq.range.as_millis() as i64;
            let mut g = step * first.div_euclid(step);
            if g <= first {
                g += step;
            }
            Some((g, self.grid_end - offset_ms(&sq.offset), step))
        } else {
            self.grids.borrow().is_empty().then_some((t, end, step))
        };
        // The outermost subquery of a range query whose windows touch or overlap: its
        // inner steps are evaluated once over the whole grid, and each outer step takes
        // its window from that.
        let whole = grid.filter(|g| {
            self.step > 0
                && self.grids.borrow().is_empty()
                && sq.range.as_millis() as i64 >= self.step
                && t >= g.0
                && end <= g.1
                && (t - g.0) % step == 0
        });
        if let Some(g) = whole {
            let cached = self.cache.subquery_grids.borrow().get(&key).cloned();
            let all = match cached {
                Some(all) => all,
                None => {
                    self.grids.borrow_mut().push(g);
                    let all = self.subquery_grid(sq, g);
                    self.grids.borrow_mut().pop();
                    let all = std::rc::Rc::new(all?);
                    self.cache
                        .subquery_grids
                        .borrow_mut()
                        .insert(key, all.clone());
                    all
                }
            };
            return Ok(all
                .iter()
                .filter_map(|s| {
                    let a = s.samples.partition_point(|x| x.t < t);
                    let b = s.samples.partition_point(|x| x.t <= end);
                    let ha = s.histograms.partition_point(|x| x.t < t);
                    let hb = s.histograms.partition_point(|x| x.t <= end);
                    (a < b || ha < hb).then(|| RangeSeries {
                        labels: s.labels.clone(),
                        samples: s.samples[a..b].to_vec(),
                        drop_name: s.drops[a..b].iter().chain(&s.hdrops[ha..hb]).any(|d| *d),
                        histograms: s.histograms[ha..hb].to_vec(),
                    })
                })
                .collect());
        }
        if let Some(g) = grid {
            self.grids.borrow_mut().push(g);
        }
        let result = self.subquery_steps(sq, key, t, end);
        if grid.is_some() {
            self.grids.borrow_mut().pop();
        }
        result
    }

    /// Evaluates a subquery's expression at every point of grid `g`, series by series.
    fn subquery_grid(
        &self,
        sq: &parser::SubqueryExpr,
        g: (i64, i64, i64),
    ) -> Result<Vec<GridSeries>> {
        let (mut t, end, step) = g;
        self.room_for_steps(t, end, step)?;
        let mut out: Vec<GridSeries> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        // As in `range_query`: the series of the previous step by position.
        let mut prev: Vec<usize> = Vec::new();
        while t <= end {
            self.check_limits("subquery evaluation")?;
            let vs = match self.eval(&sq.expr, t)? {
                Value::Vector(vs) => vs,
                Value::Scalar(v) => vec![VecSample::new(Labels::empty(), v)],
                other => return exec(format!("subquery over a {}", other.type_name())),
            };
            // Every step costs at least one, so a huge grid of empty steps is bounded too.
            self.count_samples(vs.len().max(1), "subquery evaluation")?;
            let same = vs.len() == prev.len()
                && vs
                    .iter()
                    .zip(&prev)
                    .all(|(s, &i)| s.labels.ptr_eq(&out[i].labels));
            if !same {
                prev.clear();
            }
            for (k, s) in vs.into_iter().enumerate() {
                let i = if same {
                    prev[k]
                } else {
                    let i = *index.entry(s.labels.clone()).or_insert_with(|| {
                        out.push(GridSeries {
                            labels: s.labels.clone(),
                            samples: Vec::new(),
                            drops: Vec::new(),
                            histograms: Vec::new(),
                            hdrops: Vec::new(),
                        });
                        out.len() - 1
                    });
                    prev.push(i);
                    i
                };
                let g = &mut out[i];
                match s.h {
                    Some(h) => {
                        g.histograms.push(HistogramSample {
                            t,
                            h: subquery_point(h),
                        });
                        g.hdrops.push(s.drop_name);
                    }
                    None => {
                        g.samples.push(Sample::new(t, s.v));
                        g.drops.push(s.drop_name);
                    }
                }
            }
            t += step;
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn subquery_steps(
        &self,
        sq: &parser::SubqueryExpr,
        key: NodeId,
        mut t: i64,
        end: i64,
    ) -> Result<Vec<RangeSeries>> {
        let step = sq
            .step
            .map(|d| d.as_millis() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(self.sub_step);
        self.room_for_steps(t, end, step)?;
        let mut out: HashMap<Labels, RangeSeries> = HashMap::new();
        while t <= end {
            self.check_limits("subquery evaluation")?;
            let cached = self.cache.subquery_steps.borrow().get(&(key, t)).cloned();
            let value = match cached {
                Some(v) => v,
                None => {
                    let v = self.eval(&sq.expr, t)?;
                    let n = match &v {
                        Value::Vector(vs) => vs.len(),
                        _ => 1,
                    };
                    self.count_samples(n.max(1), "subquery evaluation")?;
                    self.cache
                        .subquery_steps
                        .borrow_mut()
                        .insert((key, t), v.clone());
                    v
                }
            };
            match value {
                Value::Vector(vs) => {
                    for mut s in vs {
                        s.h = s.h.map(subquery_point);
                        let e = out
                            .entry(s.labels.clone())
                            .or_insert_with(|| RangeSeries::new(s.labels.clone(), Vec::new()));
                        e.push(t, &s);
                        e.drop_name |= s.drop_name;
                    }
                }
                Value::Scalar(v) => out
                    .entry(Labels::empty())
                    .or_insert_with(|| RangeSeries::new(Labels::empty(), Vec::new()))
                    .samples
                    .push(Sample::new(t, v)),
                other => return exec(format!("subquery over a {}", other.type_name())),
            }
            t += step;
        }
        let mut out: Vec<RangeSeries> = out.into_values().collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}
/// The bytes a selected series holds: its samples, its label strings and their
/// bookkeeping (an estimate; the limit it is checked against is a guard, not an
/// allocator).
fn series_bytes(s: &Series) -> usize {
    s.samples.len() * std::mem::size_of::<Sample>() + labels_bytes(&s.labels)
}

/// The bytes a selected native-histogram series holds (an estimate, as
/// [`series_bytes`]).
fn histogram_series_bytes(s: &HistogramSeries) -> usize {
    s.samples
        .iter()
        .map(|x| {
            std::mem::size_of::<lookout_model::FloatHistogram>()
                + 40 * (x.h.positive.len() + x.h.negative.len())
                + 24
        })
        .sum::<usize>()
        + labels_bytes(&s.labels)
}

/// The native-histogram series a selector reads over its whole window, sorted by
/// labels (one per label set when `or` groups overlap).
fn select_histograms(
    q: &dyn lookout_storage::Querier,
    n: &Need<'_>,
    stats: bool,
) -> Result<Vec<HistogramSeries>> {
    let hints = SelectHints {
        start: n.mint,
        end: n.maxt,
        func: None,
        grid: n.grid,
    };
    let groups: Vec<&Vec<PMatcher>> = if n.vs.matchers.or_matchers.is_empty() {
        vec![&n.vs.matchers.matchers]
    } else {
        n.vs.matchers.or_matchers.iter().collect()
    };
    let mut hs = Vec::new();
    for g in groups {
        hs.extend(q.select_histograms(&hints, &to_matchers(&n.vs.name, g)?)?);
    }
    hs.sort_by(|a, b| a.labels.cmp(&b.labels));
    hs.dedup_by(|a, b| a.labels == b.labels);
    for s in &mut hs {
        read_hints(&mut s.samples, stats);
    }
    Ok(hs)
}

/// The selectors whose histograms only feed `histogram_count`, `histogram_sum` or
/// `histogram_avg` (the innermost such call decides; a subquery or a binary operator in
/// between ends it): Prometheus reads those through its statistics iterator, which marks
/// the counter resets it finds as resets (see [`read_hints`]), and its annotations follow.
fn stats_only(e: &Expr, under: bool, out: &mut std::collections::HashSet<NodeId>) {
    match e {
        Expr::VectorSelector(vs) if under => {
            out.insert(key(vs));
        }
        Expr::MatrixSelector(ms) if under => {
            out.insert(key(&ms.vs));
        }
        Expr::Subquery(sq) => stats_only(&sq.expr, false, out),
        Expr::Binary(b) => {
            stats_only(&b.lhs, false, out);
            stats_only(&b.rhs, false, out);
        }
        Expr::Paren(p) => stats_only(&p.expr, under, out),
        Expr::Unary(u) => stats_only(&u.expr, under, out),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                stats_only(p, under, out);
            }
            stats_only(&a.expr, under, out);
        }
        Expr::Call(c) => {
            let under = match c.func.name {
                "histogram_count" | "histogram_sum" | "histogram_avg" => true,
                "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => false,
                _ => under,
            };
            for a in &c.args.args {
                stats_only(a, under, out);
            }
        }
        _ => {}
    }
}

/// Gives samples with no counter-reset hint the one Prometheus's storage gives on read:
/// "no reset" where a sample follows its predecessor in the same chunk, none where it
/// resets it (the sample starts a new chunk, whose hint Prometheus reads back as
/// unknown: prometheus/prometheus#15346) and none on the first. Aggregations then see
/// the same hints, and warn of the same conflicts. With `stats` (a selector read only for
/// counts and sums, [`stats_only`]) a reset is marked as one, as Prometheus's statistics
/// iterator does.
fn read_hints(samples: &mut [HistogramSample], stats: bool) {
    use lookout_model::CounterResetHint as Hint;
    for i in 1..samples.len() {
        let (before, rest) = samples.split_at_mut(i);
        let cur = &mut rest[0].h;
        if cur.hint == Hint::Unknown {
            if !cur.detect_reset(&before[i - 1].h) {
                Arc::make_mut(cur).hint = Hint::NotReset;
            } else if stats {
                Arc::make_mut(cur).hint = Hint::Reset;
            }
        }
    }
}

/// A histogram a subquery took: the samples between its steps are skipped, so what the
/// stored hint says about the previous sample no longer holds (a gauge stays a gauge).
fn subquery_point(h: Arc<lookout_model::FloatHistogram>) -> Arc<lookout_model::FloatHistogram> {
    use lookout_model::CounterResetHint as Hint;
    if matches!(h.hint, Hint::Reset | Hint::NotReset) {
        let mut h = h;
        Arc::make_mut(&mut h).hint = Hint::Unknown;
        return h;
    }
    h
}

/// About what a label set costs in memory, as the byte limit counts it.
fn labels_bytes(labels: &Labels) -> usize {
    labels
        .iter()
        .map(|l| l.name.len() + l.value.len() + 48)
        .sum::<usize>()
        + 64
}

#[cfg(test)]
mod selector_tests {
    use super::*;

    #[test]
    fn selectors_are_found_everywhere_in_order() {
        let e = parse(
            r#"histogram_quantile(0.9, sum by (le) (rate(lat_bucket{job="a"}[5m]))) / on() group_left -b offset 1m + max_over_time(c[1h:1m]) > bool topk(2, d or e{x=~"y"})"#,
        )
        .unwrap();
        let names: Vec<String> = selectors(&e)
            .unwrap()
            .iter()
            .map(|ms| {
                ms.iter()
                    .map(|m| format!("{}{}{}", m.name, m.op, m.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(
            names,
            [
                "__name__=lat_bucket,job=a",
                "__name__=b",
                "__name__=c",
                "__name__=d",
                "__name__=e,x=~y"
            ]
        );
        assert!(selectors(&parse("1 + 2").unwrap()).unwrap().is_empty());
    }
}
