//! Rule unit tests in promtool's format (`promtool test rules`).
//!
//! A test file names rule files and lists test groups: input series in the expanding
//! notation of PromQL test scripts, alerts expected to fire at given times
//! (`alert_rule_test`) and query results expected at given times (`promql_expr_test`).
//! Each group runs on its own in-memory store: the input is loaded, the rule groups are
//! evaluated every `evaluation_interval` from the start up to the latest time any test
//! looks at, firing alerts are compared after the evaluation at or just before each
//! `eval_time`, and queries run over the input plus everything the rules wrote.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lookout_model::{FloatHistogram, Labels};
use lookout_promql::promqltest::{self, Point};
use lookout_promql::{Engine, EngineOptions};
use lookout_storage::{Appendable, MemStorage};
use serde::Deserialize;

use crate::file;
use crate::group::Group;
use crate::rule::{AlertState, EvalContext, Rule};

/// A duration in a test file: Prometheus notation, or `0`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TestDuration(Duration);

impl<'de> Deserialize<'de> for TestDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = yaml_serde::Value::deserialize(d)?;
        let s = match v {
            yaml_serde::Value::String(s) => s,
            yaml_serde::Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a duration, got {other:?}"
                )));
            }
        };
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        lookout_model::parse_duration(&s)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<TestDuration>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<TestDuration>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    start_timestamp: Option<yaml_serde::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    /// Kept as written: `0x10` is 0 repeated 10 times, not hex.
    #[serde(default)]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    #[serde(default)]
    eval_time: TestDuration,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    #[serde(default)]
    eval_time: TestDuration,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    histogram: Option<String>,
}

/// Options of a test run (promtool's flags).
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Only test groups whose name matches (`--run`), anchored as Go's `regexp.MatchString` is not.
    pub run: Option<regex::Regex>,
    /// Ignore unknown fields in rule files (`--ignore-unknown-fields`).
    pub ignore_unknown_fields: bool,
}

/// The outcome of one test file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileOutcome {
    /// Test groups that ran and passed.
    pub passed: usize,
    /// Failures, each a block of text as promtool prints them.
    pub failures: Vec<String>,
}

impl FileOutcome {
    /// Whether the file passed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs one test file.
pub fn run_file(path: &Path, opts: &TestOptions) -> FileOutcome {
    let mut out = FileOutcome::default();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            out.failures.push(format!("{}: {e}", path.display()));
            return out;
        }
    };
    let tf: TestFile = match yaml_serde::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            out.failures.push(format!("{}: {e}", path.display()));
            return out;
        }
    };
    let eval_interval = tf
        .evaluation_interval
        .map_or(Duration::from_secs(60), |d| d.0);
    let base = path.parent().filter(|p| !p.as_os_str().is_empty());
    let files = match file::expand_patterns(&tf.rule_files, base) {
        Ok(f) => f,
        Err(e) => {
            out.failures.push(e.to_string());
            return out;
        }
    };
    let mut groups = Vec::new();
    for f in &files {
        match file::load_file(f, opts.ignore_unknown_fields) {
            Ok(loaded) => {
                for g in &loaded.file.groups {
                    match Group::from_spec(g, f, eval_interval) {
                        Ok(g) => groups.push(g),
                        Err(e) => out.failures.push(format!("{}: {e}", f.display())),
                    }
                }
            }
            Err(errs) => out.failures.extend(errs),
        }
    }
    if !out.failures.is_empty() {
        return out;
    }
    // Groups named in group_eval_order run first, in that order; then the rest as read.
    let rank = |g: &Group| {
        tf.group_eval_order
            .iter()
            .position(|n| *n == g.name)
            .unwrap_or(usize::MAX)
    };
    groups.sort_by_key(rank);
    for (i, tg) in tf.tests.iter().enumerate() {
        if let Some(re) = &opts.run
            && !re.is_match(&tg.name)
        {
            continue;
        }
        let errs = run_group(tg, groups.clone(), eval_interval, tf.fuzzy_compare);
        if errs.is_empty() {
            out.passed += 1;
        } else {
            let mut s = String::new();
            if !tg.name.is_empty() {
                let _ = writeln!(s, "    name: {},", tg.name);
            } else {
                let _ = writeln!(s, "    test group {},", i + 1);
            }
            for e in errs {
                let _ = writeln!(s, "    {e}");
            }
            out.failures.push(s.trim_end().to_string());
        }
    }
    out
}

fn start_time(v: &Option<yaml_serde::Value>) -> crate::Result<i64> {
    match v {
        None | Some(yaml_serde::Value::Null) => Ok(0),
        Some(yaml_serde::Value::Number(n)) => n
            .as_f64()
            .map(|s| (s * 1000.0) as i64)
            .ok_or_else(|| crate::Error::StartTimestamp(n.to_string())),
        Some(yaml_serde::Value::String(s)) => {
            if let Ok(n) = s.parse::<f64>() {
                return Ok((n * 1000.0) as i64);
            }
            lookout_model::parse_rfc3339(s)
                .ok_or_else(|| crate::Error::StartTimestamp(format!("{s:?}")))
        }
        Some(other) => Err(crate::Error::StartTimestamp(format!("{other:?}"))),
    }
}

fn fmt_labels(l: &Labels) -> String {
    l.to_string()
}

fn ms_text(ms: i64) -> String {
    lookout_model::format_duration(Duration::from_millis(ms.max(0) as u64))
}

/// Runs one test group; returns its failures.
fn run_group(
    tg: &TestGroup,
    mut groups: Vec<Group>,
    eval_interval: Duration,
    fuzzy: bool,
) -> Vec<String> {
    let mut errs = Vec::new();
    let start = match start_time(&tg.start_timestamp) {
        Ok(s) => s,
        Err(e) => return vec![e.to_string()],
    };
    let interval = tg.interval.map_or(eval_interval, |d| d.0).as_millis() as i64;
    let db = Arc::new(MemStorage::new());
    {
        let mut app = db.appender();
        for s in &tg.input_series {
            let labels = match promqltest::parse_labels(&s.series) {
                Ok(l) => l,
                Err(e) => return vec![format!("bad input series {:?}: {e}", s.series)],
            };
            let vals = match promqltest::expand_points(&s.values) {
                Ok(v) => v,
                Err(e) => return vec![format!("bad values for {:?}: {e}", s.series)],
            };
            for (i, v) in vals.into_iter().enumerate() {
                let t = start + i as i64 * interval;
                let res = match v {
                    Point::Absent => Ok(0),
                    Point::Float(v) => app.append(&labels, t, v),
                    Point::Histogram(h) => app.append_histogram(&labels, t, &h),
                };
                if let Err(e) = res {
                    return vec![format!("loading {:?}: {e}", s.series)];
                }
            }
        }
        if let Err(e) = app.commit() {
            return vec![format!("loading input series: {e}")];
        }
    }
    let ctx = EvalContext {
        engine: Engine::new(EngineOptions {
            default_subquery_step: eval_interval,
            ..EngineOptions::default()
        }),
        db: db.clone(),
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone(),
    };
    let ei = eval_interval.as_millis() as i64;
    let mut alert_tests: Vec<&AlertTest> = tg.alert_rule_test.iter().collect();
    alert_tests.sort_by_key(|a| a.eval_time.0);
    let max_eval = alert_tests
        .iter()
        .map(|a| a.eval_time.0)
        .chain(tg.promql_expr_test.iter().map(|e| e.eval_time.0))
        .max()
        .unwrap_or_default()
        .as_millis() as i64;
    let mut next_alert = 0;
    let mut ts = start;
    while ts <= start + max_eval {
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            g.eval(&ctx, db.as_ref(), ts);
            for e in &g.rules {
                if let Some(err) = &e.last_error {
                    eval_errs.push(format!(
                        "rule: {}, time: {}, err: {err}",
                        e.rule.name(),
                        ms_text(ts - start)
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        // Alert tests whose time falls in [ts, ts + evaluation_interval).
        while next_alert < alert_tests.len() {
            let at = alert_tests[next_alert].eval_time.0.as_millis() as i64;
            if !(ts - start <= at && at < ts - start + ei) {
                break;
            }
            if let Some(e) = check_alerts(alert_tests[next_alert], &groups) {
                errs.push(e);
            }
            next_alert += 1;
        }
        ts += ei;
    }
    for et in &tg.promql_expr_test {
        if let Some(e) = check_expr(et, &ctx, start, fuzzy) {
            errs.push(e);
        }
    }
    errs
}

type AlertView = (Labels, BTreeMap<String, String>);

fn fmt_alerts(v: &[AlertView]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|(l, a)| {
            let ann: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!(
                "{{Labels:{} Annotations:{{{}}}}}",
                fmt_labels(l),
                ann.join(", ")
            )
        })
        .collect();
    format!("[{}]", items.join(" "))
}

fn check_alerts(t: &AlertTest, groups: &[Group]) -> Option<String> {
    let mut got: Vec<AlertView> = Vec::new();
    for g in groups {
        for e in &g.rules {
            if let Rule::Alerting(r) = &e.rule
                && r.name == t.alertname
            {
                for a in r.alerts() {
                    if a.state == AlertState::Firing {
                        got.push((a.labels.clone(), a.annotations.clone()));
                    }
                }
            }
        }
    }
    let mut exp: Vec<AlertView> = t
        .exp_alerts
        .iter()
        .map(|a| {
            let l = Labels::from_pairs(a.exp_labels.clone()).with("alertname", &t.alertname);
            (l, a.exp_annotations.clone())
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    if got == exp {
        return None;
    }
    Some(format!(
        "alertname: {}, time: {},\n        exp:{},\n        got:{}",
        t.alertname,
        ms_text(t.eval_time.0.as_millis() as i64),
        fmt_alerts(&exp),
        fmt_alerts(&got)
    ))
}

fn floats_equal(a: f64, b: f64, fuzzy: bool) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if fuzzy {
        // Allows the last-bit differences of float arithmetic, no more.
        promqltest::almost_equal_eps(a, b, 1e-16)
    } else {
        a == b
    }
}

/// A sample's value: a float or a native histogram.
#[derive(Debug, Clone)]
enum Got {
    Float(f64),
    Histogram(FloatHistogram),
}

impl Got {
    fn same(&self, other: &Got, fuzzy: bool) -> bool {
        match (self, other) {
            (Got::Float(a), Got::Float(b)) => floats_equal(*a, *b, fuzzy),
            (Got::Histogram(a), Got::Histogram(b)) => promqltest::histograms_close(a, b),
            _ => false,
        }
    }
}

fn fmt_got(v: &[(Labels, Got)]) -> String {
    if v.is_empty() {
        return "(empty)".into();
    }
    let items: Vec<String> = v
        .iter()
        .map(|(l, g)| match g {
            Got::Float(f) => format!("{} {}", fmt_labels(l), lookout_gotmpl::fmt::go_e(*f)),
            Got::Histogram(h) => format!("{} {h}", fmt_labels(l)),
        })
        .collect();
    items.join(", ")
}

fn check_expr(t: &ExprTest, ctx: &EvalContext, start: i64, fuzzy: bool) -> Option<String> {
    let at = start + t.eval_time.0.as_millis() as i64;
    let head = format!(
        "expr: {:?}, time: {}",
        t.expr,
        ms_text(t.eval_time.0.as_millis() as i64)
    );
    let mut got: Vec<(Labels, Got)> = match lookout_promql::parse(&t.expr).and_then(|expr| {
        ctx.engine
            .instant_query(ctx.db.as_ref(), &t.expr, &expr, at, None)
    }) {
        Ok(r) => {
            let got: Vec<(Labels, Got)> = match r.value {
                lookout_promql::Value::Vector(v) => v
                    .into_iter()
                    .map(|s| match s.h {
                        Some(h) => (s.labels, Got::Histogram((*h).clone())),
                        None => (s.labels, Got::Float(s.v)),
                    })
                    .collect(),
                lookout_promql::Value::Scalar(v) => vec![(Labels::empty(), Got::Float(v))],
                other => {
                    return Some(format!(
                        "{head}, err: unexpected result type {}",
                        other.type_name()
                    ));
                }
            };
            got
        }
        Err(e) => return Some(format!("{head}, err: {e}")),
    };
    let mut exp = Vec::new();
    for s in &t.exp_samples {
        let labels = if s.labels.trim().is_empty() {
            Labels::empty()
        } else {
            match promqltest::parse_labels(&s.labels) {
                Ok(l) => l,
                Err(e) => return Some(format!("{head}, err: {e}")),
            }
        };
        let v = match &s.histogram {
            Some(h) => match FloatHistogram::parse(h) {
                Ok(h) => Got::Histogram(h),
                Err(e) => return Some(format!("{head}, err: expected histogram: {e}")),
            },
            None => Got::Float(s.value.unwrap_or(0.0)),
        };
        exp.push((labels, v));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    let same = got.len() == exp.len()
        && got
            .iter()
            .zip(&exp)
            .all(|(g, e)| g.0 == e.0 && g.1.same(&e.1, fuzzy));
    if same {
        return None;
    }
    Some(format!(
        "{head},\n        exp: {}\n        got: {}",
        fmt_got(&exp),
        fmt_got(&got)
    ))
}
