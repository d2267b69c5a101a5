//! `/api/v1/rules`, `/api/v1/alerts` and `POST /-/reload`, in Prometheus's JSON.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lookout_gotmpl::fmt::go_e;
// Times as Prometheus's JSON writes them (Go's `time.Time`); the zero time when unset.
use lookout_model::format_go_time as time;
use lookout_rules::{Alert, AlertState, Health, Rule};
use serde_json::{Value, json};

use crate::AppState;

fn map(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn alert(a: &Alert) -> Value {
    let mut v = json!({
        "labels": json!(a.labels),
        "annotations": map(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": time(a.active_at),
        "value": go_e(a.value),
    });
    if let Some(k) = a.keep_firing_since {
        v["keepFiringSince"] = Value::String(time(k));
    }
    v
}

fn active(alerts: Vec<Alert>) -> Vec<Value> {
    alerts
        .iter()
        .filter(|a| a.state != AlertState::Inactive)
        .map(alert)
        .collect()
}

fn health(h: Health) -> &'static str {
    match h {
        Health::Unknown => "unknown",
        Health::Ok => "ok",
        Health::Err => "err",
    }
}

fn no_rules() -> Response {
    crate::api::ok_value(&json!({ "groups": [] }))
}

/// Prometheus's `/api/v1/rules` (`type=alert|record` keeps one kind).
pub(crate) async fn rules(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some(m) = &st.rules else {
        return no_rules();
    };
    let kind = crate::params::Params::parse(q.as_deref(), &axum::http::HeaderMap::new(), &[])
        .ok()
        .and_then(|p| p.get("type").map(str::to_string));
    let groups: Vec<Value> = m
        .groups()
        .iter()
        .map(|g| {
            let rules: Vec<Value> = g
                .rules
                .iter()
                .filter(|e| {
                    !matches!(
                        (&e.rule, kind.as_deref()),
                        (Rule::Alerting(_), Some("record")) | (Rule::Recording(_), Some("alert"))
                    )
                })
                .map(|e| {
                    let common = json!({
                        "name": e.rule.name(),
                        "query": e.rule.expr(),
                        "labels": map(e.rule.labels()),
                        "health": health(e.health),
                        "lastError": e.last_error.clone().unwrap_or_default(),
                        "evaluationTime": e.evaluation_time.as_secs_f64(),
                        "lastEvaluation": time(e.last_evaluation),
                    });
                    let mut v = common;
                    match &e.rule {
                        Rule::Alerting(r) => {
                            v["type"] = "alerting".into();
                            v["state"] = r.state().as_str().into();
                            v["duration"] = r.hold.as_secs_f64().into();
                            v["keepFiringFor"] = r.keep_firing_for.as_secs_f64().into();
                            v["annotations"] = map(&r.annotations);
                            v["alerts"] = Value::Array(active(r.alerts()));
                        }
                        Rule::Recording(_) => v["type"] = "recording".into(),
                    }
                    v
                })
                .collect();
            json!({
                "name": g.name,
                "file": g.file.display().to_string(),
                "rules": rules,
                "interval": g.interval.as_secs_f64(),
                "limit": g.limit,
                "evaluationTime": g.evaluation_time.as_secs_f64(),
                "lastEvaluation": time(g.last_evaluation),
            })
        })
        .collect();
    crate::api::ok_value(&json!({ "groups": groups }))
}

/// Prometheus's `/api/v1/alerts`: every pending and firing alert.
pub(crate) async fn alerts(State(st): State<AppState>) -> Response {
    let list = st
        .rules
        .as_ref()
        .map(|m| active(m.alerts()))
        .unwrap_or_default();
    crate::api::ok_value(&json!({ "alerts": list }))
}

/// `POST /-/reload`: reads the rule files and the notifier configuration again; 500 with
/// the errors when any is bad (what runs is kept).
pub(crate) async fn reload(State(st): State<AppState>) -> Response {
    let Some(f) = st.reload.clone() else {
        return (StatusCode::OK, "nothing to reload\n").into_response();
    };
    match tokio::task::spawn_blocking(move || f()).await {
        Ok(errs) if errs.is_empty() => (StatusCode::OK, "reloaded\n").into_response(),
        Ok(errs) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload: {}\n", errs.join("; ")),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}
