//! Alertmanager's API v2 over Lookout's notifier, so `amtool` and Alertmanager clients
//! work against Lookout: `/api/v2/alerts` (GET, POST), `/api/v2/alerts/groups`,
//! `/api/v2/silences` (GET, POST), `/api/v2/silence/{id}` (GET, DELETE),
//! `/api/v2/status`, `/api/v2/receivers`; plus Lookout's acknowledgement endpoint
//! `POST|DELETE /api/v1/lookout/alerts/{fingerprint}/ack` and `GET /api/v1/lookout/audit`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lookout_model::{Labels, Matcher};
use lookout_notify::alert::{fingerprint_hex, go_time};
use lookout_notify::matchers::parse_matchers;
use lookout_notify::silence::{Change, Silence, SilenceMatcher};
use lookout_notify::{Alert, Notifier};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::params::Params;

/// An API error: a status and a message, answered as a JSON string as Alertmanager does.
#[derive(Debug)]
pub(crate) struct AmError(StatusCode, String);

impl IntoResponse for AmError {
    fn into_response(self) -> Response {
        (self.0, Json(Value::String(self.1))).into_response()
    }
}

type AmResult = Result<Response, AmError>;

fn err(status: StatusCode, msg: impl Into<String>) -> AmError {
    AmError(status, msg.into())
}

/// The one place notifier errors become statuses: what the request names is missing
/// (404), a change could not be saved and nothing changed (500), the notifier's
/// configuration cannot serve it (500), anything else is a bad request (400).
impl From<lookout_notify::Error> for AmError {
    fn from(e: lookout_notify::Error) -> Self {
        use lookout_notify::Error as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Save { .. } | E::StateFile { .. } | E::Secret { .. } | E::Config(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            E::Matcher { .. } | E::Invalid(_) | E::Template(_) => StatusCode::BAD_REQUEST,
        };
        err(status, e.to_string())
    }
}

/// Who did something: the authenticated user when the request authenticated (what a
/// client claims cannot then be trusted), else what it claims.
fn actor(auth: &Option<Extension<AuthUser>>, claimed: &str) -> String {
    match auth {
        Some(Extension(AuthUser(user))) => user.clone(),
        None => claimed.to_string(),
    }
}

fn notifier(st: &AppState) -> Result<Arc<Notifier>, AmError> {
    st.notifier.clone().ok_or_else(|| {
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the notifier is not configured (set notifier.config_file)",
        )
    })
}

/// The URL query, read as every other API handler reads it.
fn params(q: Option<String>) -> Result<Params, AmError> {
    Params::parse(q.as_deref(), &HeaderMap::new(), &[])
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.0))
}

/// A boolean filter: true unless given as `false`.
fn flag(p: &Params, name: &str) -> bool {
    p.get(name) != Some("false")
}

fn filters(p: &Params) -> Result<Vec<Matcher>, AmError> {
    let mut out = Vec::new();
    for v in p.all("filter") {
        out.extend(parse_matchers(v)?);
    }
    Ok(out)
}

fn gettable_alert(n: &Notifier, a: &Alert, now: i64) -> (Value, &'static str) {
    let (sup, receivers, acked) = n.with(|c| {
        let fp = a.fingerprint();
        (
            c.suppression(a, now),
            c.receivers_of(&a.labels),
            c.acked(fp, now).cloned(),
        )
    });
    let state = if sup.silenced_by.is_empty() && sup.inhibited_by.is_empty() {
        "active"
    } else {
        "suppressed"
    };
    let mut v = json!({
        "annotations": a.annotations,
        "endsAt": go_time(a.ends_at),
        "fingerprint": fingerprint_hex(a.fingerprint()),
        "receivers": receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "startsAt": go_time(a.starts_at),
        "status": {
            "inhibitedBy": sup.inhibited_by,
            "silencedBy": sup.silenced_by,
            "mutedBy": [],
            "state": state,
        },
        "updatedAt": go_time(a.updated_at),
        "generatorURL": a.generator_url,
        "labels": json!(a.labels),
    });
    if let Some(ack) = acked {
        v["acknowledged"] = json!({
            "by": ack.who,
            "comment": ack.comment,
            "at": go_time(ack.at),
            "expiresAt": ack.expires_at.map(go_time),
        });
    }
    (v, state)
}

fn keep(
    p: &Params,
    fs: &[Matcher],
    a: &Alert,
    state: &str,
    silenced: bool,
    inhibited: bool,
) -> bool {
    fs.iter().all(|m| m.matches_labels(&a.labels))
        && match state {
            "active" => flag(p, "active"),
            _ => (silenced && flag(p, "silenced")) || (inhibited && flag(p, "inhibited")),
        }
}

/// `GET /api/v2/alerts` (`active`, `silenced`, `inhibited`, `filter`, `receiver`).
pub(crate) async fn get_alerts(State(st): State<AppState>, RawQuery(q): RawQuery) -> AmResult {
    let n = notifier(&st)?;
    let p = params(q)?;
    let fs = filters(&p)?;
    let receiver = p
        .get("receiver")
        .and_then(|v| regex::Regex::new(&format!("^(?:{v})$")).ok());
    let now = lookout_model::now_ms();
    let alerts = n.with(|c| c.alerts());
    let mut out = Vec::new();
    for a in alerts.iter().filter(|a| !a.resolved_at(now)) {
        let (v, state) = gettable_alert(&n, a, now);
        let silenced = !v["status"]["silencedBy"]
            .as_array()
            .is_none_or(Vec::is_empty);
        let inhibited = !v["status"]["inhibitedBy"]
            .as_array()
            .is_none_or(Vec::is_empty);
        let rec_ok = receiver.as_ref().is_none_or(|re| {
            v["receivers"].as_array().is_some_and(|rs| {
                rs.iter()
                    .any(|r| re.is_match(r["name"].as_str().unwrap_or("")))
            })
        });
        if rec_ok && keep(&p, &fs, a, state, silenced, inhibited) {
            out.push(v);
        }
    }
    Ok(Json(Value::Array(out)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
}

fn time_param(s: &Option<String>, what: &str) -> Result<i64, AmError> {
    match s.as_deref() {
        None | Some("") | Some("0001-01-01T00:00:00Z") => Ok(0),
        Some(t) => lookout_model::parse_rfc3339(t)
            .ok_or_else(|| err(StatusCode::BAD_REQUEST, format!("invalid {what} {t:?}"))),
    }
}

/// `POST /api/v2/alerts`.
pub(crate) async fn post_alerts(State(st): State<AppState>, body: String) -> AmResult {
    let n = notifier(&st)?;
    let list: Vec<PostableAlert> = match serde_json::from_str(&body) {
        Ok(l) => l,
        Err(e) => return Err(err(StatusCode::BAD_REQUEST, format!("invalid alerts: {e}"))),
    };
    let mut alerts = Vec::with_capacity(list.len());
    for a in list {
        if a.labels.is_empty() {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "invalid alert: at least one label pair required",
            ));
        }
        for k in a.labels.keys() {
            if !lookout_model::is_valid_label_name(k) {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    format!("invalid label name {k:?}"),
                ));
            }
        }
        let starts_at = time_param(&a.starts_at, "startsAt")?;
        let ends_at = time_param(&a.ends_at, "endsAt")?;
        alerts.push(Alert {
            labels: Labels::from_pairs(a.labels),
            annotations: a.annotations,
            starts_at,
            ends_at,
            generator_url: a.generator_url,
            updated_at: 0,
        });
    }
    let refused = n.put_alerts(alerts);
    if refused > 0 {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!(
                "{refused} new alert(s) refused: the notifier holds the most alerts it may ({})",
                lookout_notify::dispatch::MAX_ALERTS
            ),
        ));
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET /api/v2/alerts/groups`.
pub(crate) async fn alert_groups(State(st): State<AppState>, RawQuery(q): RawQuery) -> AmResult {
    let n = notifier(&st)?;
    let p = params(q)?;
    let fs = filters(&p)?;
    let now = lookout_model::now_ms();
    let groups = n.with(|c| c.groups());
    let out: Vec<Value> = groups
        .iter()
        .filter_map(|(receiver, labels, alerts)| {
            let list: Vec<Value> = alerts
                .iter()
                .filter(|a| !a.resolved_at(now) && fs.iter().all(|m| m.matches_labels(&a.labels)))
                .map(|a| gettable_alert(&n, a, now).0)
                .collect();
            (!list.is_empty()).then(|| {
                json!({ "alerts": list, "labels": json!(labels), "receiver": { "name": receiver } })
            })
        })
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

fn gettable_silence(s: &Silence, now: i64) -> Value {
    json!({
        "id": s.id,
        "status": { "state": s.state(now).as_str() },
        "updatedAt": go_time(s.updated_at),
        "comment": s.comment,
        "createdBy": s.created_by,
        "endsAt": go_time(s.ends_at),
        "startsAt": go_time(s.starts_at),
        "matchers": s.matchers,
        "expireOnResolve": s.expire_on_resolve,
    })
}

/// `GET /api/v2/silences` (`filter`).
pub(crate) async fn get_silences(State(st): State<AppState>, RawQuery(q): RawQuery) -> AmResult {
    let n = notifier(&st)?;
    let p = params(q)?;
    let fs = filters(&p)?;
    let now = lookout_model::now_ms();
    let list = n.with(|c| c.silences.list());
    let out: Vec<Value> = list
        .iter()
        .filter(|s| {
            // A filter keeps silences that have a matcher equal to it, as Alertmanager does.
            fs.iter().all(|f| {
                s.matchers.iter().any(|m| {
                    m.name == f.name
                        && m.value == f.value
                        && m.is_regex
                            == matches!(
                                f.op,
                                lookout_model::MatchOp::Regex | lookout_model::MatchOp::NotRegex
                            )
                })
            })
        })
        .map(|s| gettable_silence(s, now))
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: String,
    matchers: Vec<SilenceMatcher>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    expire_on_resolve: bool,
}

/// `POST /api/v2/silences`: creates or updates; answers `{"silenceID": …}`.
pub(crate) async fn post_silence(
    State(st): State<AppState>,
    auth: Option<Extension<AuthUser>>,
    body: String,
) -> AmResult {
    let n = notifier(&st)?;
    let p: PostableSilence = match serde_json::from_str(&body) {
        Ok(p) => p,
        Err(e) => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("invalid silence: {e}"),
            ));
        }
    };
    let (starts, ends) = match (
        lookout_model::parse_rfc3339(&p.starts_at),
        lookout_model::parse_rfc3339(&p.ends_at),
    ) {
        (Some(s), Some(e)) => (s, e),
        _ => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "invalid silence: startsAt and endsAt must be RFC 3339 times",
            ));
        }
    };
    if p.created_by.trim().is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "silence invalid: createdBy must not be empty",
        ));
    }
    let now = lookout_model::now_ms();
    let who = actor(&auth, &p.created_by);
    let s = Silence {
        id: p.id,
        matchers: p.matchers,
        starts_at: starts,
        ends_at: ends,
        updated_at: now,
        created_by: p.created_by,
        comment: p.comment,
        expire_on_resolve: p.expire_on_resolve,
        silenced: Vec::new(),
    };
    let matchers = json!(s.matchers);
    let res = n.with(|c| {
        let r = c.silences.set(s, now);
        if let Ok(ch) = &r {
            let (action, id, old) = match ch {
                Change::Created(id) => ("silence_create", id.clone(), None),
                Change::Updated(id) => ("silence_update", id.clone(), None),
                Change::Replaced { old, new } => ("silence_update", new.clone(), Some(old.clone())),
            };
            c.audit.record(
                now,
                action,
                &who,
                json!({ "id": id, "replaces": old, "matchers": matchers, "endsAt": go_time(ends) }),
            );
        }
        r
    });
    match res {
        Ok(Change::Created(id) | Change::Updated(id) | Change::Replaced { new: id, .. }) => {
            Ok(Json(json!({ "silenceID": id })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v2/silence/{id}`.
pub(crate) async fn get_silence(State(st): State<AppState>, Path(id): Path<String>) -> AmResult {
    let n = notifier(&st)?;
    let now = lookout_model::now_ms();
    match n.with(|c| c.silences.get(&id).cloned()) {
        Some(s) => Ok(Json(gettable_silence(&s, now)).into_response()),
        None => Err(err(
            StatusCode::NOT_FOUND,
            format!("silence {id} not found"),
        )),
    }
}

/// `DELETE /api/v2/silence/{id}`: expires it.
pub(crate) async fn delete_silence(
    State(st): State<AppState>,
    Path(id): Path<String>,
    auth: Option<Extension<AuthUser>>,
    headers: axum::http::HeaderMap,
) -> AmResult {
    let n = notifier(&st)?;
    let now = lookout_model::now_ms();
    let claimed = headers
        .get("x-lookout-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("api");
    let who = actor(&auth, claimed);
    match n.with(|c| {
        let r = c.silences.expire(&id, now);
        if r.is_ok() {
            c.audit
                .record(now, "silence_expire", &who, json!({ "id": id }));
        }
        r
    }) {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v2/status`.
pub(crate) async fn status(State(st): State<AppState>) -> AmResult {
    let n = notifier(&st)?;
    let b = &st.build;
    Ok(Json(json!({
        "cluster": { "name": "", "peers": [], "status": "disabled" },
        "config": { "original": *n.config_text.lock().expect("lock") },
        "uptime": go_time(n.started()),
        "versionInfo": {
            "branch": b.branch,
            "buildDate": b.build_date,
            "buildUser": b.build_user,
            "goVersion": b.toolchain,
            "revision": b.revision,
            "version": b.version,
        },
    }))
    .into_response())
}

/// `GET /api/v2/receivers`.
pub(crate) async fn receivers(State(st): State<AppState>) -> AmResult {
    let n = notifier(&st)?;
    let names = n.with(|c| c.receiver_names());
    Ok(Json(Value::Array(
        names.into_iter().map(|r| json!({ "name": r })).collect(),
    ))
    .into_response())
}

#[derive(Deserialize)]
struct AckBody {
    #[serde(default)]
    who: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    expires: Option<String>,
}

fn parse_fp(s: &str) -> Result<u64, AmError> {
    u64::from_str_radix(s, 16).map_err(|_| {
        err(
            StatusCode::BAD_REQUEST,
            format!("invalid fingerprint {s:?}"),
        )
    })
}

/// `POST /api/v1/lookout/alerts/{fingerprint}/ack` (`who`, `comment`, `expires`: an RFC
/// 3339 time or a duration such as `2h`).
pub(crate) async fn ack(
    State(st): State<AppState>,
    Path(fp): Path<String>,
    auth: Option<Extension<AuthUser>>,
    body: String,
) -> AmResult {
    let n = notifier(&st)?;
    let fp = parse_fp(&fp)?;
    let b: AckBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("invalid acknowledgement: {e}"),
            ));
        }
    };
    let now = lookout_model::now_ms();
    let expires = match b.expires.as_deref() {
        None | Some("") => None,
        Some(e) => match lookout_model::parse_rfc3339(e).or_else(|| {
            lookout_model::parse_duration(e)
                .ok()
                .map(|d| now + d.as_millis() as i64)
        }) {
            Some(t) => Some(t),
            None => {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    format!("invalid expires {e:?}: use an RFC 3339 time or a duration such as 2h"),
                ));
            }
        },
    };
    let who = actor(&auth, &b.who);
    match n.with(|c| c.ack(fp, &who, &b.comment, expires, now)) {
        Ok(()) => Ok(
            Json(json!({ "status": "success", "fingerprint": fingerprint_hex(fp) }))
                .into_response(),
        ),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /api/v1/lookout/alerts/{fingerprint}/ack`.
pub(crate) async fn unack(
    State(st): State<AppState>,
    Path(fp): Path<String>,
    auth: Option<Extension<AuthUser>>,
    RawQuery(q): RawQuery,
) -> AmResult {
    let n = notifier(&st)?;
    let fp = parse_fp(&fp)?;
    let who = actor(&auth, params(q)?.get("who").unwrap_or("api"));
    match n.with(|c| c.unack(fp, &who, lookout_model::now_ms())) {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v1/lookout/audit`: the newest audit records (`limit`, default 100): the
/// notifier's (acknowledgements, silences), or with `source=http` the HTTP trail
/// (authentication failures, refusals, every write).
pub(crate) async fn audit(State(st): State<AppState>, RawQuery(q): RawQuery) -> AmResult {
    let p = params(q)?;
    let limit = p
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100);
    if p.get("source") == Some("http") {
        return Ok(crate::api::ok_value(&Value::Array(st.audit.recent(limit))));
    }
    let n = notifier(&st)?;
    let recent = n.with(|c| {
        let r = &c.audit.recent;
        r[r.len().saturating_sub(limit)..].to_vec()
    });
    Ok(crate::api::ok_value(&Value::Array(recent)))
}

/// A history time parameter: Prometheus's (Unix seconds or RFC 3339), in ms.
fn history_time(p: &Params, name: &str) -> Result<Option<i64>, AmError> {
    p.get(name)
        .map(|v| {
            crate::params::parse_time(v).ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("invalid {name} {v:?}: use an RFC 3339 time or Unix seconds"),
                )
            })
        })
        .transpose()
}

/// `GET /api/v1/lookout/notifications`: the notification history, newest first;
/// `alert` (a name, fingerprint or label value it contains), `receiver`, `result`
/// (`sent`, `failed`), `start`, `end`, `limit` (default 100).
pub(crate) async fn notifications(State(st): State<AppState>, RawQuery(q): RawQuery) -> AmResult {
    let p = params(q)?;
    let n = notifier(&st)?;
    let limit = match p.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| err(StatusCode::BAD_REQUEST, format!("invalid limit {v:?}")))?,
    };
    let result = p.get("result").map(str::to_string);
    if let Some(r) = &result
        && r != "sent"
        && r != "failed"
    {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("invalid result {r:?}: sent or failed"),
        ));
    }
    let search = lookout_notify::history::Search {
        alert: p.get("alert").filter(|s| !s.is_empty()).map(str::to_string),
        receiver: p
            .get("receiver")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        result,
        since: history_time(&p, "start")?,
        until: history_time(&p, "end")?,
        limit: limit.clamp(1, lookout_notify::history::KEPT_IN_MEMORY),
    };
    let found = n.with(|c| c.history.search(&search));
    Ok(crate::api::ok_value(
        &serde_json::to_value(found).expect("deliveries serialize"),
    ))
}

/// `GET /api/v1/lookout/escalations`: each escalation policy, its levels, and the alerts
/// going through it with their level, since when and when the next level is due.
pub(crate) async fn escalations(State(st): State<AppState>) -> AmResult {
    let n = notifier(&st)?;
    let now = lookout_model::now_ms();
    let views = n.with(|c| c.escalations(now));
    let out: Vec<Value> = views
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name,
                "levels": p.levels.iter().map(|l| json!({
                    "receivers": l.receivers,
                    "timeout": lookout_model::format_duration(l.timeout),
                })).collect::<Vec<_>>(),
                "alerts": p.alerts.iter().map(|a| json!({
                    "fingerprint": a.fingerprint,
                    "labels": json!(a.labels),
                    "level": a.level,
                    "since": go_time(a.since),
                    "nextDue": a.next_due.map(go_time),
                    "acknowledged": a.acknowledged,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(crate::api::ok_value(&Value::Array(out)))
}
