//! What one query computes once and reuses across its steps: a range query sees the same
//! series at every step, so derived label sets, groupings, vector matches, subquery and
//! range-function results are kept here, per node of the query ([`NodeId`]), for the
//! query's lifetime and no longer.
//!
//! Each map has its own cell: evaluation is recursive, and a node may fill one map while
//! a node above it holds another.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use lookout_model::Labels;

use crate::engine::{GridSeries, LabelMemoKey, NodeId};
use crate::value::Value;

/// Where an instant selector's last evaluation stopped in each of its series.
pub(crate) struct Cursors {
    /// The time of that evaluation.
    pub(crate) last_t: i64,
    /// Per series, the index of the first sample after it.
    pub(crate) pos: Vec<usize>,
    /// Per series, its first and last sample times, side by side: a step skips the series
    /// it cannot draw a sample from (not started yet, or ended more than the lookback
    /// ago) without touching their samples, which under churn are most of them.
    pub(crate) spans: Vec<(i64, i64)>,
}

/// A range function's value at one step: the series' position among its selector's
/// series, and the value.
pub(crate) type StepValue = (u32, f64);

/// The per-query caches of an evaluation.
#[derive(Default)]
pub(crate) struct QueryCache {
    /// Inner results of subqueries by (expression, time): consecutive steps of a range
    /// query share most of their inner steps.
    pub(crate) subquery_steps: RefCell<HashMap<(NodeId, i64), Value>>,
    /// Outermost subqueries evaluated over their whole grid, by expression.
    pub(crate) subquery_grids: RefCell<HashMap<NodeId, Rc<Vec<GridSeries>>>>,
    /// Label sets derived per expression node (see `binary::Memo`).
    pub(crate) labels: RefCell<HashMap<LabelMemoKey, Labels>>,
    /// Results of range-vector functions computed for every step at once, by (call,
    /// time).
    pub(crate) range_steps: RefCell<HashMap<(NodeId, i64), Vec<StepValue>>>,
    /// Per instant selector: where its last evaluation stopped in each series.
    pub(crate) cursors: RefCell<HashMap<NodeId, Cursors>>,
    /// Vector matches of binary operators, by node, reused while both sides keep their
    /// series (see `binary::MatchPlan`).
    pub(crate) match_plans: RefCell<HashMap<NodeId, crate::binary::MatchPlan>>,
    /// Groupings of aggregations, by node, reused while the input keeps its series.
    pub(crate) group_plans: RefCell<HashMap<NodeId, Rc<crate::aggregate::GroupPlan>>>,
    /// Function specs, resolved once per call node.
    pub(crate) specs: RefCell<HashMap<NodeId, Option<&'static crate::functions::Spec>>>,
    /// Compiled regular expressions of `label_replace`, by pattern.
    pub(crate) regexes: RefCell<HashMap<String, Option<Rc<regex::Regex>>>>,
}
