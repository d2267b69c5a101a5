//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`) with `by`/`without`,
//! following Prometheus's `aggregation` in `promql/engine.go`.

use std::collections::HashMap;

use lookout_model::{Labels, METRIC_NAME_LABEL};
use promql_parser::parser::token::{T_AVG, T_COUNT, T_GROUP, T_MAX, T_MIN, T_SUM};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::engine::Evaluator;
use crate::error::{Result, exec};
use crate::functions::kahan_inc;
use crate::value::{Value, VecSample};

#[derive(Default)]
struct Group {
    labels: Labels,
    value: f64,
    comp: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

/// The grouping key's labels for a sample.
fn group_labels(ls: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::empty(),
        Some(LabelModifier::Include(by)) => ls.keep(&by.labels),
        Some(LabelModifier::Exclude(without)) => {
            let mut drop: Vec<&str> = without.labels.iter().map(String::as_str).collect();
            drop.push(METRIC_NAME_LABEL);
            ls.without(&drop)
        }
    }
}

/// Evaluates an aggregation at `ts`.
pub(crate) fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<Value> {
    let op = a.op.id();
    if !matches!(op, T_SUM | T_AVG | T_MIN | T_MAX | T_COUNT | T_GROUP) {
        return exec(format!("aggregation {} is not supported yet", a.op));
    }
    let input = match ev.eval(&a.expr, ts)? {
        Value::Vector(v) => v,
        other => return exec(format!("aggregation over a {}", other.type_name())),
    };
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Group> = HashMap::new();
    for s in input {
        let key = group_labels(&s.labels, &a.modifier);
        let g = match groups.get_mut(&key) {
            Some(g) => g,
            None => {
                order.push(key.clone());
                groups.insert(
                    key.clone(),
                    Group {
                        labels: key,
                        value: s.v,
                        mean: s.v,
                        count: 1.0,
                        ..Group::default()
                    },
                );
                if op == T_GROUP {
                    groups
                        .get_mut(&order[order.len() - 1])
                        .expect("just inserted")
                        .value = 1.0;
                }
                continue;
            }
        };
        g.count += 1.0;
        match op {
            T_SUM => (g.value, g.comp) = kahan_inc(s.v, g.value, g.comp),
            T_AVG => {
                if !g.incremental {
                    let (nv, nc) = kahan_inc(s.v, g.value, g.comp);
                    if !nv.is_infinite() {
                        g.value = nv;
                        g.comp = nc;
                        continue;
                    }
                    g.incremental = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.comp /= g.count - 1.0;
                }
                if g.mean.is_infinite() {
                    if s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                let current = g.mean + g.comp;
                (g.mean, g.comp) = kahan_inc(s.v / g.count - current / g.count, g.mean, g.comp);
            }
            T_MAX if g.value < s.v || g.value.is_nan() => g.value = s.v,
            T_MIN if g.value > s.v || g.value.is_nan() => g.value = s.v,
            _ => {}
        }
    }
    let out = order
        .into_iter()
        .map(|k| {
            let g = groups.remove(&k).expect("group exists");
            let v = match op {
                T_SUM => g.value + g.comp,
                T_AVG if g.incremental => g.mean + g.comp,
                T_AVG => g.value / g.count + g.comp / g.count,
                T_COUNT => g.count,
                _ => g.value,
            };
            VecSample {
                labels: g.labels,
                v,
            }
        })
        .collect();
    Ok(Value::Vector(out))
}
