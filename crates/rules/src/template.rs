//! Go text/template expansion of alert labels and annotations, as Prometheus does it.
//!
//! Templates run on the `gtmpl` crate (Go's text/template for Rust) with Prometheus's
//! variables (`$labels`, `$externalLabels`, `$externalURL`, `$value`, also as `.Labels`,
//! `.ExternalLabels`, `.ExternalURL`, `.Value`) and functions: `query`, `first`, `label`,
//! `value`, `strvalue`, `sortByLabel`, `args`, `humanize`, `humanize1024`,
//! `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`, `toTime`, `toDuration`,
//! `parseDuration`, `now`, `title`, `toUpper`, `toLower`, `match`, `reReplaceAll`,
//! `safeHtml`, `stripPort`, `stripDomain`, `externalURL`, `pathPrefix`, `graphLink`,
//! `tableLink`, plus Go's built-ins (`printf`, `index`, `len`, `eq`, `and`, …).
//!
//! Prometheus renders a missing label as an empty string (`missingkey=zero`); gtmpl would
//! print `<no value>`, so the label names a template mentions are filled in with empty
//! values before it runs. `query` needs the engine and the store: gtmpl functions are plain
//! function pointers, so the query function for the template being rendered sits in a
//! thread-local for the duration of the render.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, LazyLock};

use lookout_gotmpl::fmt as gofmt;
use lookout_gotmpl::funcs::*;
use lookout_gotmpl::{Context, FuncError, Template, Value};
use lookout_model::Labels;

/// Runs a PromQL query for a template's `query` function: the result's labels and values.
pub type QueryFn = Arc<dyn Fn(&str) -> crate::Result<Vec<(Labels, f64)>> + Send + Sync>;

/// What a template sees.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    /// `$labels`: the labels of the series that triggered the alert.
    pub labels: BTreeMap<String, String>,
    /// `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL`.
    pub external_url: String,
    /// `$value`.
    pub value: f64,
}

/// A parsed template with the label names it mentions.
struct Parsed {
    template: Template,
    labels: Vec<String>,
    external_labels: Vec<String>,
}

thread_local! {
    static QUERY: RefCell<Option<QueryFn>> = const { RefCell::new(None) };
    static EXTERNAL_URL: RefCell<String> = const { RefCell::new(String::new()) };
    /// Parsed templates by (name, text): rules expand the same few templates for every
    /// alert of every evaluation, and parsing dominates a render.
    static CACHE: RefCell<HashMap<(String, String), Rc<Parsed>>> = RefCell::new(HashMap::new());
}

const CACHE_LIMIT: usize = 4096;

fn parsed(name: &str, text: &str) -> Result<Rc<Parsed>, lookout_gotmpl::Error> {
    let key = (name.to_string(), text.to_string());
    if let Some(p) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(p);
    }
    let template = template(name, text)?;
    let mut labels = Vec::new();
    let mut external_labels = Vec::new();
    for c in LABEL_REF.captures_iter(text) {
        let list = if c[1].contains("xternal") {
            &mut external_labels
        } else {
            &mut labels
        };
        list.push(c[2].to_string());
    }
    let p = Rc::new(Parsed {
        template,
        labels,
        external_labels,
    });
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_LIMIT {
            c.clear();
        }
        c.insert(key, Rc::clone(&p));
    });
    Ok(p)
}

const PREFIX: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

static LABEL_REF: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(\$labels|\.Labels|\$externalLabels|\.ExternalLabels)\.([A-Za-z_][A-Za-z0-9_]*)",
    )
    .expect("valid regex")
});

fn template(name: &str, text: &str) -> Result<Template, lookout_gotmpl::Error> {
    lookout_gotmpl::parse(name, &format!("{PREFIX}{text}"), FUNCS)
}

/// Parses a template without running it (for `check rules`).
pub fn check(name: &str, text: &str) -> Result<(), lookout_gotmpl::Error> {
    template(name, text).map(|_| ())
}

fn string_map(m: &BTreeMap<String, String>, mentioned: &[String]) -> Value {
    let mut out: HashMap<String, Value> = m
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for name in mentioned {
        out.entry(name.clone())
            .or_insert_with(|| Value::String(String::new()));
    }
    Value::Map(out)
}

/// Expands `text` with `data`; `query` backs the template's `query` function.
pub fn expand(
    name: &str,
    text: &str,
    data: &TemplateData,
    query: Option<QueryFn>,
) -> Result<String, lookout_gotmpl::Error> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let p = parsed(name, text)?;
    let mut ctx = HashMap::new();
    ctx.insert("Labels".to_string(), string_map(&data.labels, &p.labels));
    ctx.insert(
        "ExternalLabels".to_string(),
        string_map(&data.external_labels, &p.external_labels),
    );
    ctx.insert(
        "ExternalURL".to_string(),
        Value::String(data.external_url.clone()),
    );
    ctx.insert(
        "Value".to_string(),
        Value::String(gofmt::go_float(data.value)),
    );
    QUERY.with(|q| *q.borrow_mut() = query);
    EXTERNAL_URL.with(|u| u.borrow_mut().clone_from(&data.external_url));
    let out = p.template.render(&Context::from(Value::Object(ctx)));
    QUERY.with(|q| *q.borrow_mut() = None);
    out.map_err(|e| lookout_gotmpl::Error::execute(name, &e.to_string()))
}

fn sample_value(labels: &Labels, v: f64) -> Value {
    let mut l: HashMap<String, Value> = labels
        .iter()
        .map(|l| (l.name.clone(), Value::String(l.value.clone())))
        .collect();
    l.entry("__value__".into())
        .or_insert_with(|| Value::String(String::new()));
    let mut s = HashMap::new();
    s.insert("Labels".to_string(), Value::Map(l));
    s.insert("Value".to_string(), Value::String(gofmt::go_float(v)));
    Value::Object(s)
}

fn query(args: &[Value]) -> Result<Value, FuncError> {
    let q = string_arg(args, 0, "query", 1)?;
    let f = QUERY
        .with(|f| f.borrow().clone())
        .ok_or_else(|| FuncError::Generic(crate::Error::NoQuery.to_string()))?;
    let res = f(&q).map_err(|e| FuncError::Generic(e.to_string()))?;
    Ok(Value::Array(
        res.iter().map(|(l, v)| sample_value(l, *v)).collect(),
    ))
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) | Value::Map(m) => m.get(name),
        _ => None,
    }
}

fn first(args: &[Value]) -> Result<Value, FuncError> {
    match arg(args, 0, "first", 1)? {
        Value::Array(a) => a
            .first()
            .cloned()
            .ok_or_else(|| FuncError::Generic("first() called on vector with no elements".into())),
        _ => Err(FuncError::Generic("first() needs a query result".into())),
    }
}

fn label(args: &[Value]) -> Result<Value, FuncError> {
    let name = string_arg(args, 0, "label", 2)?;
    Ok(field(&args[1], "Labels")
        .and_then(|l| field(l, &name))
        .cloned()
        .unwrap_or_else(|| Value::String(String::new())))
}

fn value(args: &[Value]) -> Result<Value, FuncError> {
    field(arg(args, 0, "value", 1)?, "Value")
        .cloned()
        .ok_or_else(|| FuncError::Generic("value() needs a sample".into()))
}

fn strvalue(args: &[Value]) -> Result<Value, FuncError> {
    Ok(field(arg(args, 0, "strvalue", 1)?, "Labels")
        .and_then(|l| field(l, "__value__"))
        .cloned()
        .unwrap_or_else(|| Value::String(String::new())))
}

fn sort_by_label(args: &[Value]) -> Result<Value, FuncError> {
    let name = string_arg(args, 0, "sortByLabel", 2)?;
    let Value::Array(a) = &args[1] else {
        return Err(FuncError::Generic(
            "sortByLabel needs a query result".into(),
        ));
    };
    let mut a = a.clone();
    let key = |v: &Value| {
        field(v, "Labels")
            .and_then(|l| field(l, &name))
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    a.sort_by_key(key);
    Ok(Value::Array(a))
}

fn args_fn(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Map(
        args.iter()
            .enumerate()
            .map(|(i, v)| (format!("arg{i}"), v.clone()))
            .collect(),
    ))
}

fn strip_port(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "stripPort", 1)?;
    let host = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once(']').map_or(s.as_str(), |(h, _)| h)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => s.as_str(),
        }
    };
    Ok(Value::from(host.to_string()))
}

fn strip_domain(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "stripDomain", 1)?;
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (s.as_str(), None),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(Value::from(s.clone()));
    }
    let short = host.split('.').next().unwrap_or(host);
    Ok(Value::from(match port {
        Some(p) => format!("{short}:{p}"),
        None => short.to_string(),
    }))
}

fn external_url(args: &[Value]) -> Result<Value, FuncError> {
    if !args.is_empty() {
        return Err(FuncError::ExactlyXArgs("externalURL".into(), 0));
    }
    Ok(Value::from(EXTERNAL_URL.with(|u| u.borrow().clone())))
}

fn path_prefix(args: &[Value]) -> Result<Value, FuncError> {
    if !args.is_empty() {
        return Err(FuncError::ExactlyXArgs("pathPrefix".into(), 0));
    }
    let url = EXTERNAL_URL.with(|u| u.borrow().clone());
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    Ok(Value::from(path.trim_end_matches('/').to_string()))
}

fn link(args: &[Value], name: &str, tab: u8) -> Result<Value, FuncError> {
    let expr = string_arg(args, 0, name, 1)?;
    let base = EXTERNAL_URL.with(|u| u.borrow().clone());
    Ok(Value::from(format!(
        "{}/graph?g0.expr={}&g0.tab={tab}",
        base.trim_end_matches('/'),
        query_escape(&expr)
    )))
}

fn graph_link(args: &[Value]) -> Result<Value, FuncError> {
    link(args, "graphLink", 0)
}

fn table_link(args: &[Value]) -> Result<Value, FuncError> {
    link(args, "tableLink", 1)
}

/// Prometheus's alert-template functions besides the common ones.
const FUNCS: &[(&str, Func)] = &[
    ("query", query),
    ("first", first),
    ("label", label),
    ("value", value),
    ("strvalue", strvalue),
    ("sortByLabel", sort_by_label),
    ("args", args_fn),
    ("humanize", humanize),
    ("humanize1024", humanize1024),
    ("humanizePercentage", humanize_percentage),
    ("humanizeTimestamp", humanize_timestamp),
    ("toTime", to_time),
    ("toDuration", to_duration),
    ("parseDuration", parse_duration_fn),
    ("now", now),
    ("stripPort", strip_port),
    ("stripDomain", strip_domain),
    ("externalURL", external_url),
    ("pathPrefix", path_prefix),
    ("graphLink", graph_link),
    ("tableLink", table_link),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData {
        TemplateData {
            labels: [("instance", "db1:9187"), ("job", "postgres")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            external_labels: [("cluster".to_string(), "eu".to_string())].into(),
            external_url: "http://lookout:9180/prefix".into(),
            value: 1234567.0,
        }
    }

    fn x(t: &str) -> String {
        expand("t", t, &data(), None).unwrap()
    }

    #[test]
    fn variables_and_missing_labels() {
        assert_eq!(
            x("{{ $labels.instance }} of {{ .Labels.job }} in {{ $externalLabels.cluster }}"),
            "db1:9187 of postgres in eu"
        );
        assert_eq!(x("[{{ $labels.nope }}]"), "[]");
        assert_eq!(x("{{ $value | humanize }}"), "1.235M");
        assert_eq!(
            x("{{ printf \"%.1f\" $value }} {{ $value }}"),
            "1234567.0 1.234567e+06"
        );
        assert_eq!(x("{{ if gt $value 1000.0 }}big{{ end }}"), "big");
        assert_eq!(
            x("{{ externalURL }} {{ pathPrefix }}"),
            "http://lookout:9180/prefix /prefix"
        );
        assert_eq!(
            x("{{ $labels.instance | stripPort }} {{ \"db1.example.com:80\" | stripDomain }}"),
            "db1 db1:80"
        );
        assert_eq!(
            x(
                "{{ if match \"^db\" $labels.instance }}yes{{ end }} {{ reReplaceAll \":.*\" \"\" $labels.instance }}"
            ),
            "yes db1"
        );
        assert_eq!(
            x("{{ \"hello world\" | title }} {{ toUpper \"a\" }}{{ toLower \"B\" }}"),
            "Hello World Ab"
        );
        assert_eq!(x("{{ with args 1 \"x\" }}{{ .arg1 }}{{ end }}"), "x");
    }

    #[test]
    fn humanize_family_matches_prometheus() {
        let h = |f: Func, v: f64| match f(&[Value::from(v)]).unwrap() {
            Value::String(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(h(humanize, 0.0), "0");
        assert_eq!(h(humanize, 1234.5678), "1.235k");
        assert_eq!(h(humanize, 0.0012345), "1.234m");
        assert_eq!(h(humanize, 12.0), "12");
        assert_eq!(h(humanize1024, 1048576.0), "1Mi");
        assert_eq!(h(humanize1024, 1.0), "1");
        assert_eq!(h(humanize_duration_fn, 0.0), "0s");
        assert_eq!(h(humanize_duration_fn, 90061.0), "1d 1h 1m 1s");
        assert_eq!(h(humanize_duration_fn, 3725.0), "1h 2m 5s");
        assert_eq!(h(humanize_duration_fn, 1.5), "1.5s");
        assert_eq!(h(humanize_duration_fn, 0.001234), "1.234ms");
        assert_eq!(h(humanize_percentage, 0.12345), "12.35%");
        assert_eq!(
            h(humanize_timestamp, 1435065584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(format_g(1e21, 4), "1e+21");
        assert_eq!(format_g(0.0001, 4), "0.0001");
        assert_eq!(format_g(0.00001, 4), "1e-05");
    }

    #[test]
    fn query_runs_through_the_given_function() {
        let q: QueryFn = Arc::new(|e: &str| {
            assert_eq!(e, "up");
            Ok(vec![
                (Labels::from_pairs([("instance", "b")]), 2.0),
                (Labels::from_pairs([("instance", "a")]), 1.0),
            ])
        });
        let out = expand(
            "t",
            "{{ range query \"up\" | sortByLabel \"instance\" }}{{ .Labels.instance }}={{ .Value }} {{ end }}{{ with query \"up\" }}{{ . | first | value }}{{ end }}",
            &data(),
            Some(q),
        )
        .unwrap();
        assert_eq!(out, "a=1 b=2 2");
        let e = expand("t", "{{ query \"up\" }}", &data(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("query is not available"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_template() {
        let e = check("__alert_A", "{{ $label.foo }}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("template: __alert_A:"), "{e}");
        assert!(e.contains("$label"), "{e}");
    }
}
