//! Query results: scalars, instant vectors, range vectors and strings.

use std::sync::Arc;

use lookout_model::{FloatHistogram, Labels, Sample};
use lookout_storage::HistogramSample;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VecSample {
    /// The series' labels.
    pub labels: Labels,
    /// The value (0 for a native histogram).
    pub v: f64,
    /// The metric name is to be removed when the query's result is returned (Prometheus's
    /// delayed name removal: functions and operators mark it, `label_replace` onto
    /// `__name__` keeps it).
    pub drop_name: bool,
    /// The native histogram, when the sample is one rather than a float.
    pub h: Option<Arc<FloatHistogram>>,
}

impl VecSample {
    /// A sample that keeps its metric name.
    pub fn new(labels: Labels, v: f64) -> Self {
        Self {
            labels,
            v,
            drop_name: false,
            h: None,
        }
    }

    /// A native-histogram sample that keeps its metric name.
    pub fn histogram(labels: Labels, h: Arc<FloatHistogram>) -> Self {
        Self {
            labels,
            v: 0.0,
            drop_name: false,
            h: Some(h),
        }
    }
}

/// One series of a range vector (a matrix).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its float samples, ascending by time.
    pub samples: Vec<Sample>,
    /// The metric name is to be removed on the way out (see [`VecSample::drop_name`]).
    pub drop_name: bool,
    /// Its native-histogram samples, ascending by time (a series may hold both kinds,
    /// never at the same time).
    pub histograms: Vec<HistogramSample>,
}

impl RangeSeries {
    /// A series of float samples whose name stays.
    pub fn new(labels: Labels, samples: Vec<Sample>) -> Self {
        Self {
            labels,
            samples,
            drop_name: false,
            histograms: Vec::new(),
        }
    }

    /// Appends `s`'s value (float or histogram) at `t`.
    pub fn push(&mut self, t: i64, s: &VecSample) {
        match &s.h {
            Some(h) => self.histograms.push(HistogramSample {
                t,
                h: Arc::clone(h),
            }),
            None => self.samples.push(Sample::new(t, s.v)),
        }
    }

    /// Whether it holds no sample of either kind.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.histograms.is_empty()
    }
}

/// The value of an expression at one evaluation time, or of a whole range query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// An instant vector (timestamps are the evaluation time).
    Vector(Vec<VecSample>),
    /// A range vector (matrix); also the result of a range query.
    Matrix(Vec<RangeSeries>),
    /// A string.
    String(String),
}

impl Value {
    /// Prometheus's name of the value's type, as in the API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::String(_) => "string",
        }
    }
}

/// Warnings and infos a query produced, as Prometheus's annotations (deduplicated, in
/// the order first seen). Messages about an argument end with its `(line:col)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// Warnings: the result may be wrong or incomplete.
    pub warnings: Vec<String>,
    /// Infos: the query may not do what was meant.
    pub infos: Vec<String>,
}

impl Annotations {
    /// Adds a warning (`PromQL warning: …`) once.
    pub fn warn(&mut self, msg: impl Into<String>) {
        let m = format!("PromQL warning: {}", msg.into());
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    /// Adds another evaluation's annotations, each once (a range query split between
    /// threads: the later steps' after the earlier ones').
    pub(crate) fn absorb(&mut self, other: Annotations) {
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in other.infos {
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }

    /// Adds an info (`PromQL info: …`) once.
    pub fn info(&mut self, msg: impl Into<String>) {
        let m = format!("PromQL info: {}", msg.into());
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }
}

/// A query's value with its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The result.
    pub value: Value,
    /// Warnings and infos.
    pub annotations: Annotations,
}
