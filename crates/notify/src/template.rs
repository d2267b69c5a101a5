//! Notification templates in Alertmanager's dialect: the data (`.Receiver`, `.Status`,
//! `.Alerts`, `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations`, `.ExternalURL`),
//! the default templates receivers use unless configured otherwise, user template files
//! (`templates:` in the Alertmanager configuration), and Alertmanager's functions.
//!
//! Alertmanager's data has methods (`.Alerts.Firing`, `.Labels.SortedPairs`,
//! `.CommonLabels.Remove …`, `.Names`, `.Values`); gtmpl values cannot carry methods, so
//! template text is rewritten before parsing to call functions doing the same
//! (`(firingAlerts .Alerts)`, `(sortedPairs .Labels)`, …). Lookout's defaults are its
//! own text producing Alertmanager's output; a test renders Alertmanager's `default.tmpl`
//! (when present) through the same engine and compares.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::LazyLock;

use lookout_gotmpl::funcs::{Func, string_arg};
use lookout_gotmpl::{Context, FuncError, Template, Value};

use crate::alert::{Alert, go_time};
use crate::notification::Notification;

/// Lookout's default notification templates (Alertmanager's names and output).
pub const DEFAULTS: &str = r#"{{ define "__alertmanager" }}Alertmanager{{ end }}
{{ define "__alertmanagerURL" }}{{ .ExternalURL }}/#/alerts?receiver={{ .Receiver | urlquery }}{{ end }}
{{ define "__lookout_counted_status" }}{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}{{ end }}
{{ define "__lookout_extra_labels" }}{{ if gt (len .CommonLabels) (len .GroupLabels) }}({{ with .CommonLabels.Remove .GroupLabels.Names }}{{ .Values | join " " }}{{ end }}){{ end }}{{ end }}
{{ define "__subject" }}[{{ template "__lookout_counted_status" . }}] {{ .GroupLabels.SortedPairs.Values | join " " }} {{ template "__lookout_extra_labels" . }}{{ end }}
{{ define "__lookout_pairs" }}{{ range . }} - {{ .Name }} = {{ .Value }}
{{ end }}{{ end }}
{{ define "__text_alert_list" }}{{ range . }}Labels:
{{ template "__lookout_pairs" .Labels.SortedPairs }}Annotations:
{{ template "__lookout_pairs" .Annotations.SortedPairs }}Source: {{ .GeneratorURL }}
{{ end }}{{ end }}
{{ define "slack.default.title" }}{{ template "__subject" . }}{{ end }}
{{ define "slack.default.username" }}{{ template "__alertmanager" . }}{{ end }}
{{ define "slack.default.fallback" }}{{ template "slack.default.title" . }} | {{ template "slack.default.titlelink" . }}{{ end }}
{{ define "slack.default.callbackid" }}{{ end }}
{{ define "slack.default.pretext" }}{{ end }}
{{ define "slack.default.titlelink" }}{{ template "__alertmanagerURL" . }}{{ end }}
{{ define "slack.default.iconemoji" }}{{ end }}
{{ define "slack.default.iconurl" }}{{ end }}
{{ define "slack.default.text" }}{{ end }}
{{ define "slack.default.footer" }}{{ end }}
{{ define "slack.default.color" }}{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}{{ end }}
{{ define "pagerduty.default.description" }}{{ template "__subject" . }}{{ end }}
{{ define "pagerduty.default.client" }}{{ template "__alertmanager" . }}{{ end }}
{{ define "pagerduty.default.clientURL" }}{{ template "__alertmanagerURL" . }}{{ end }}
{{ define "pagerduty.default.instances" }}{{ template "__text_alert_list" . }}{{ end }}
{{ define "email.default.subject" }}{{ template "__subject" . }}{{ end }}
{{ define "email.default.text" }}{{ .CommonAnnotations.SortedPairs.Values | join " " }}
{{ if gt (len .Alerts.Firing) 0 }}
Alerts Firing:
{{ template "__text_alert_list" .Alerts.Firing }}{{ end }}{{ if gt (len .Alerts.Resolved) 0 }}
Alerts Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}{{ end }}
View in Lookout: {{ template "__alertmanagerURL" . }}
{{ end }}
"#;

static METHODS: LazyLock<Vec<(regex::Regex, &'static str)>> = LazyLock::new(|| {
    // A receiver: `$x`, `$x.a.b`, `.a.b`.
    let chain = r"((?:\$[A-Za-z_0-9]*)?(?:\.[A-Za-z_][A-Za-z_0-9]*)+|\$[A-Za-z_0-9]*)";
    // The same, possibly empty (the dot itself), for `.Alerts`.
    let opt = r"((?:\$[A-Za-z_0-9]*)?(?:\.[A-Za-z_][A-Za-z_0-9]*)*)";
    // A bare method on the dot: `{{ .Values }}`, `{{ range .SortedPairs }}`.
    let bare = r"(^|[\s(|{])";
    [
        (
            format!(r"{opt}\.Alerts\.Firing\b"),
            "(firingAlerts $1.Alerts)",
        ),
        (
            format!(r"{opt}\.Alerts\.Resolved\b"),
            "(resolvedAlerts $1.Alerts)",
        ),
        (
            format!(r"{chain}\.SortedPairs\.Values\b"),
            "(pairValues (sortedPairs $1))",
        ),
        (
            format!(r"{chain}\.SortedPairs\.Names\b"),
            "(pairNames (sortedPairs $1))",
        ),
        (format!(r"{chain}\.SortedPairs\b"), "(sortedPairs $1)"),
        (
            format!(r"{chain}\.Remove\s+{chain}\.Names\b"),
            "removeLabels $1 (kvNames $2)",
        ),
        (format!(r"{chain}\.Names\b"), "(kvNames $1)"),
        (format!(r"{chain}\.Values\b"), "(kvValues $1)"),
        (
            format!(r"{bare}\.SortedPairs\.Values\b"),
            "$1(pairValues (sortedPairs .))",
        ),
        (format!(r"{bare}\.SortedPairs\b"), "$1(sortedPairs .)"),
        (format!(r"{bare}\.Names\b"), "$1(kvNames .)"),
        (format!(r"{bare}\.Values\b"), "$1(kvValues .)"),
    ]
    .into_iter()
    .map(|(p, r)| (regex::Regex::new(&p).expect("valid method regex"), r))
    .collect()
});

/// Rewrites Alertmanager's data methods into function calls.
pub fn rewrite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Only inside actions ({{ … }}).
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let mut action = rest[i..i + j + 2].to_string();
        for (re, rep) in METHODS.iter() {
            action = re.replace_all(&action, *rep).into_owned();
        }
        out.push_str(&action);
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

fn kv_map(v: &Value) -> Result<&HashMap<String, Value>, FuncError> {
    match v {
        Value::Map(m) | Value::Object(m) => Ok(m),
        other => Err(FuncError::Generic(format!("expected labels, got {other}"))),
    }
}

/// Names in Alertmanager's order: `alertname` first, then sorted.
fn sorted_names(m: &HashMap<String, Value>) -> Vec<String> {
    let mut names: Vec<String> = m.keys().cloned().collect();
    names.sort();
    if let Some(i) = names.iter().position(|n| n == "alertname") {
        let a = names.remove(i);
        names.insert(0, a);
    }
    names
}

fn sorted_pairs(args: &[Value]) -> Result<Value, FuncError> {
    let m = kv_map(
        args.first()
            .ok_or(FuncError::ExactlyXArgs("sortedPairs".into(), 1))?,
    )?;
    Ok(Value::Array(
        sorted_names(m)
            .into_iter()
            .map(|n| {
                let mut p = HashMap::new();
                p.insert("Value".to_string(), m[&n].clone());
                p.insert("Name".to_string(), Value::String(n));
                Value::Object(p)
            })
            .collect(),
    ))
}

fn pair_field(args: &[Value], field: &str) -> Result<Value, FuncError> {
    match args.first() {
        Some(Value::Array(a)) => Ok(Value::Array(
            a.iter()
                .filter_map(|p| kv_map(p).ok().and_then(|m| m.get(field).cloned()))
                .collect(),
        )),
        _ => Err(FuncError::Generic("expected sorted pairs".into())),
    }
}

fn pair_values(args: &[Value]) -> Result<Value, FuncError> {
    pair_field(args, "Value")
}

fn pair_names(args: &[Value]) -> Result<Value, FuncError> {
    pair_field(args, "Name")
}

fn kv_names(args: &[Value]) -> Result<Value, FuncError> {
    let m = kv_map(
        args.first()
            .ok_or(FuncError::ExactlyXArgs("Names".into(), 1))?,
    )?;
    Ok(Value::Array(
        sorted_names(m).into_iter().map(Value::String).collect(),
    ))
}

fn kv_values(args: &[Value]) -> Result<Value, FuncError> {
    let m = kv_map(
        args.first()
            .ok_or(FuncError::ExactlyXArgs("Values".into(), 1))?,
    )?;
    Ok(Value::Array(
        sorted_names(m).into_iter().map(|n| m[&n].clone()).collect(),
    ))
}

fn remove_labels(args: &[Value]) -> Result<Value, FuncError> {
    let [m, names] = args else {
        return Err(FuncError::ExactlyXArgs("Remove".into(), 2));
    };
    let mut m = kv_map(m)?.clone();
    if let Value::Array(ns) = names {
        for n in ns {
            if let Value::String(n) = n {
                m.remove(n);
            }
        }
    }
    Ok(Value::Map(m))
}

fn by_status(args: &[Value], status: &str) -> Result<Value, FuncError> {
    match args.first() {
        Some(Value::Array(a)) => Ok(Value::Array(
            a.iter()
                .filter(|x| {
                    kv_map(x)
                        .ok()
                        .and_then(|m| m.get("Status"))
                        .is_some_and(|s| matches!(s, Value::String(s) if s == status))
                })
                .cloned()
                .collect(),
        )),
        _ => Err(FuncError::Generic("expected alerts".into())),
    }
}

fn firing_alerts(args: &[Value]) -> Result<Value, FuncError> {
    by_status(args, "firing")
}

fn resolved_alerts(args: &[Value]) -> Result<Value, FuncError> {
    by_status(args, "resolved")
}

fn to_json(args: &[Value]) -> Result<Value, FuncError> {
    fn conv(v: &Value) -> serde_json::Value {
        match v {
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(_) => serde_json::from_str(&lookout_gotmpl::fmt::display(v))
                .unwrap_or(serde_json::Value::Null),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(conv).collect()),
            Value::Map(m) | Value::Object(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), conv(v)))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
            ),
            _ => serde_json::Value::Null,
        }
    }
    let v = args
        .first()
        .ok_or(FuncError::ExactlyXArgs("toJson".into(), 1))?;
    Ok(Value::String(conv(v).to_string()))
}

fn date(args: &[Value]) -> Result<Value, FuncError> {
    // `date "layout" time`: Go layouts are not supported; RFC 3339 is always used.
    let _layout = string_arg(args, 0, "date", 2)?;
    Ok(args[1].clone())
}

/// Alertmanager's template functions besides the common ones.
const FUNCS: &[(&str, Func)] = &[
    ("join", lookout_gotmpl::funcs::join),
    ("stringSlice", lookout_gotmpl::funcs::string_slice),
    ("trimSpace", lookout_gotmpl::funcs::trim_space),
    ("toJson", to_json),
    ("date", date),
    ("sortedPairs", sorted_pairs),
    ("pairValues", pair_values),
    ("pairNames", pair_names),
    ("kvNames", kv_names),
    ("kvValues", kv_values),
    ("removeLabels", remove_labels),
    ("firingAlerts", firing_alerts),
    ("resolvedAlerts", resolved_alerts),
];

/// Notification templates: the defaults plus the configuration's template files.
#[derive(Debug, Clone)]
pub struct Templates {
    source: String,
    /// Identifies `source` in the parse cache without hashing it per render.
    id: u64,
}

fn source_id(source: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    h.finish()
}

impl Templates {
    /// The defaults followed by `extra` template definitions (later ones win).
    pub fn new(extra: &[String]) -> crate::Result<Self> {
        let mut source = String::from(DEFAULTS);
        for e in extra {
            source.push('\n');
            source.push_str(e);
        }
        let t = Self {
            id: source_id(&source),
            source,
        };
        t.render("{{ template \"__subject\" . }}", &sample())?;
        Ok(t)
    }

    /// Templates from `source` alone, without the defaults (to check other template
    /// sets, such as Alertmanager's own defaults).
    pub fn from_source(source: &str) -> Self {
        Self {
            source: source.to_string(),
            id: source_id(source),
        }
    }

    /// Reads the template files matching the configuration's `templates:` globs.
    pub fn load(patterns: &[String], base: Option<&std::path::Path>) -> crate::Result<Self> {
        let mut extra = Vec::new();
        for p in patterns {
            let full = match base {
                Some(b) if std::path::Path::new(p).is_relative() => b.join(p),
                _ => std::path::PathBuf::from(p),
            };
            let dir = full.parent().unwrap_or(std::path::Path::new("."));
            let name = full
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let re = regex::Regex::new(&format!(
                "^{}$",
                regex::escape(&name)
                    .replace("\\*", ".*")
                    .replace("\\?", ".")
            ))
            .map_err(|e| crate::Error::Config(format!("template pattern {p:?}: {e}")))?;
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|f| {
                            re.is_match(&f.file_name().unwrap_or_default().to_string_lossy())
                        })
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            for f in files {
                extra.push(
                    std::fs::read_to_string(&f)
                        .map_err(|e| crate::Error::Config(format!("{}: {e}", f.display())))?,
                );
            }
        }
        Self::new(&extra)
    }

    /// Renders `text` (which may call the defined templates) with `data`.
    pub fn render(&self, text: &str, data: &Value) -> crate::Result<String> {
        let key = (self.id, text.to_string());
        let t = match PARSED.with(|c| c.borrow().get(&key).cloned()) {
            Some(t) => t,
            None => {
                let t = Rc::new(lookout_gotmpl::parse_with_definitions(
                    "notification",
                    &rewrite(&self.source),
                    &rewrite(text),
                    FUNCS,
                )?);
                PARSED.with(|c| {
                    let mut c = c.borrow_mut();
                    if c.len() >= 256 {
                        c.clear();
                    }
                    c.insert(key, Rc::clone(&t));
                });
                t
            }
        };
        t.render(&Context::from(data.clone()))
            .map_err(|e| lookout_gotmpl::Error::execute("notification", &e.to_string()).into())
    }
}

thread_local! {
    /// Parsed templates by (definitions, text): every message renders the same few
    /// fields, and parsing the definitions dominates a render.
    static PARSED: RefCell<HashMap<(u64, String), Rc<Template>>> = RefCell::new(HashMap::new());
}

fn kv(m: impl IntoIterator<Item = (String, String)>) -> Value {
    Value::Map(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn alert_value(a: &Alert, now: i64) -> Value {
    let mut m = HashMap::new();
    m.insert("Status".into(), Value::String(a.status(now).into()));
    m.insert(
        "Labels".into(),
        kv(a.labels.iter().map(|l| (l.name.clone(), l.value.clone()))),
    );
    m.insert("Annotations".into(), kv(a.annotations.clone()));
    m.insert("StartsAt".into(), Value::String(go_time(a.starts_at)));
    m.insert(
        "EndsAt".into(),
        Value::String(go_time(if a.resolved_at(now) { a.ends_at } else { 0 })),
    );
    m.insert(
        "GeneratorURL".into(),
        Value::String(a.generator_url.clone()),
    );
    m.insert(
        "Fingerprint".into(),
        Value::String(crate::alert::fingerprint_hex(a.fingerprint())),
    );
    Value::Object(m)
}

/// The template data of a notification.
pub fn data(n: &Notification, external_url: &str) -> Value {
    let j = n.data(external_url);
    let map_of = |v: &serde_json::Value| {
        kv(v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default())
    };
    let mut m = HashMap::new();
    m.insert("Receiver".into(), Value::String(n.receiver.clone()));
    m.insert(
        "Status".into(),
        Value::String(j["status"].as_str().unwrap_or("").into()),
    );
    m.insert(
        "Alerts".into(),
        Value::Array(n.alerts.iter().map(|a| alert_value(a, n.now)).collect()),
    );
    m.insert("GroupLabels".into(), map_of(&j["groupLabels"]));
    m.insert("CommonLabels".into(), map_of(&j["commonLabels"]));
    m.insert("CommonAnnotations".into(), map_of(&j["commonAnnotations"]));
    m.insert("ExternalURL".into(), Value::String(external_url.into()));
    Value::Object(m)
}

/// A small data set to check templates with.
pub fn sample() -> Value {
    let mut m = HashMap::new();
    m.insert("Receiver".into(), Value::String("team".into()));
    m.insert("Status".into(), Value::String("firing".into()));
    m.insert("Alerts".into(), Value::Array(Vec::new()));
    for k in ["GroupLabels", "CommonLabels", "CommonAnnotations"] {
        m.insert(k.into(), Value::Map(HashMap::new()));
    }
    m.insert("ExternalURL".into(), Value::String("http://lookout".into()));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_become_functions() {
        assert_eq!(
            rewrite("{{ .Alerts.Firing | len }}"),
            "{{ (firingAlerts .Alerts) | len }}"
        );
        assert_eq!(
            rewrite("{{ .GroupLabels.SortedPairs.Values | join \" \" }}"),
            "{{ (pairValues (sortedPairs .GroupLabels)) | join \" \" }}"
        );
        assert_eq!(
            rewrite("{{ with .CommonLabels.Remove .GroupLabels.Names }}{{ .Values }}{{ end }}"),
            "{{ with removeLabels .CommonLabels (kvNames .GroupLabels) }}{{ (kvValues .) }}{{ end }}"
        );
        assert_eq!(
            rewrite("text .Alerts.Firing {{ range .Labels.SortedPairs }}"),
            "text .Alerts.Firing {{ range (sortedPairs .Labels) }}"
        );
    }
}
