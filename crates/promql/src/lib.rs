//! Lookout's PromQL evaluator, over the AST of the `promql-parser` crate.
//!
//! The parser is a well-kept crate; the evaluator is ours because it is the product's
//! core: it must give Prometheus's exact answers and read only through the storage seam
//! ([`lookout_storage::Queryable`]), so it runs unchanged over the tsdb, a test store or a
//! fan-out.
//!
//! How a query runs: the [`Engine`] parses the expression, walks it once to work out the
//! time window every selector needs, selects those series once through a querier, then
//! evaluates the expression at each step (one step for an instant query). Semantics follow
//! Prometheus 3: 5-minute lookback, left-open range windows, staleness markers end a
//! series, and `rate`/`increase` extrapolate exactly as Prometheus does.
//!
//! Everything in Prometheus 3's stable PromQL over float samples: every aggregation,
//! binary operator and matching mode, every stable function, subqueries, `offset`, `@`,
//! limits and cancellation, and annotations ending with the `line:col` of the argument
//! they are about (recovered from the text by the `position` module, since the parser's
//! AST has no positions). Native histograms, `info()` and experimental features are not
//! evaluated; `testdata/upstream-expected.tsv` lists the upstream evals that need them.
//!
//! ```
//! use lookout_model::Labels;
//! use lookout_promql::{Engine, Value};
//! use lookout_storage::{Appendable, MemStorage};
//!
//! let db = MemStorage::new();
//! let mut app = db.appender();
//! for i in 0..=10 {
//!     app.append(&Labels::from_pairs([("__name__", "c")]), i * 15_000, (i * 30) as f64).unwrap();
//! }
//! app.commit().unwrap();
//! let v = Engine::default().instant(&db, "rate(c[1m])", 150_000).unwrap();
//! let Value::Vector(v) = v else { panic!() };
//! assert!((v[0].v - 2.0).abs() < 1e-9);
//! ```

mod aggregate;
mod binary;
mod cache;
mod engine;
mod error;
mod functions;
pub mod limits;
mod numeric;
mod position;
pub mod promqltest;
mod value;

pub use engine::{Engine, EngineOptions, parse, parse_selector, selectors};
pub use error::{Error, Result};
pub use promql_parser::parser::Expr;
pub use value::{Annotations, QueryResult, RangeSeries, Value, VecSample};
