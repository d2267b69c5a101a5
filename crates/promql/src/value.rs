//! Query results: scalars, instant vectors, range vectors and strings.

use lookout_model::{Labels, Sample};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VecSample {
    /// The series' labels.
    pub labels: Labels,
    /// The value.
    pub v: f64,
}

/// One series of a range vector (a matrix).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its samples, ascending by time.
    pub samples: Vec<Sample>,
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
