//! One dashboard's JSON: limits, the checks that make it renderable, and the migration of
//! legacy `rows` onto `panels` with `gridPos` (Grafana's schemaVersion 16 upgrade).

use serde_json::{Map, Value, json};

use crate::{Error, Result};

/// Grafana's grid: 24 columns; a legacy row's `span` is out of 12.
const GRID_COLUMNS: i64 = 24;
/// Pixels per grid row in Grafana's layout, used to turn a legacy row's height into rows.
const GRID_CELL_PX: f64 = 30.0;

/// Bounds on one dashboard.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON document, in bytes.
    pub max_bytes: usize,
    /// Most panels, rows and nested panels included.
    pub max_panels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 8 << 20,
            max_panels: 1000,
        }
    }
}

/// Reads dashboard JSON (a dashboard, or Grafana's API wrapper `{"dashboard": …}`),
/// checks it and returns the dashboard the UI renders: `uid` set (from `fallback_uid`
/// when missing or unusable), legacy `rows` turned into `panels`, every panel with an
/// `id` and a `gridPos`.
pub fn normalize(raw: &[u8], fallback_uid: &str, limits: &Limits) -> Result<Value> {
    if raw.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            size: raw.len(),
            limit: limits.max_bytes,
        });
    }
    // serde_json refuses nesting deeper than 128 with an error, never a stack overflow.
    let mut v: Value =
        serde_json::from_slice(raw).map_err(|e| Error::Invalid(format!("not JSON: {e}")))?;
    if let Some(inner) = v.get_mut("dashboard").filter(|d| d.is_object()) {
        v = inner.take();
    }
    let Value::Object(mut d) = v else {
        return Err(Error::Invalid("a dashboard is a JSON object".into()));
    };
    match d.get("title") {
        Some(Value::String(t)) if !t.trim().is_empty() => {}
        Some(Value::String(_)) | None => return Err(Error::Invalid("the title is empty".into())),
        Some(_) => return Err(Error::Invalid("the title is not a string".into())),
    }
    let uid = match d.get("uid") {
        Some(Value::String(u)) if valid_uid(u) => u.clone(),
        _ => slug(fallback_uid),
    };
    if !valid_uid(&uid) {
        return Err(Error::Invalid(format!(
            "no usable uid (at most 40 letters, digits, '-' or '_'), and none can be made from {fallback_uid:?}"
        )));
    }
    d.insert("uid".into(), Value::String(uid));
    if let Some(tags) = d.get("tags")
        && !tags
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(Error::Invalid("tags must be a list of strings".into()));
    }
    let has_panels = d
        .get("panels")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if !has_panels && let Some(rows) = d.remove("rows") {
        let rows = rows
            .as_array()
            .ok_or_else(|| Error::Invalid("rows is not a list".into()))?;
        d.insert("panels".into(), Value::Array(migrate_rows(rows)?));
    }
    let panels = match d.remove("panels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(p)) => p,
        Some(_) => return Err(Error::Invalid("panels is not a list".into())),
    };
    let mut count = 0;
    let mut next_id = max_id(&panels) + 1;
    let panels = fill(panels, &mut count, &mut next_id, limits, 0)?;
    d.insert("panels".into(), Value::Array(panels));
    Ok(Value::Object(d))
}

/// Grafana's rule for uids: 1 to 40 characters of letters, digits, `-` and `_`.
fn valid_uid(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 40
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A uid made from a file name: letters and digits kept, anything else a `-`, at most
/// 40 characters.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(40).collect()
}

fn max_id(panels: &[Value]) -> i64 {
    panels
        .iter()
        .map(|p| {
            let own = p.get("id").and_then(Value::as_i64).unwrap_or(0);
            let inner = p
                .get("panels")
                .and_then(Value::as_array)
                .map_or(0, |ps| max_id(ps));
            own.max(inner)
        })
        .max()
        .unwrap_or(0)
}

/// Checks every panel is an object, counts them against the limit and gives each an
/// `id` and a `gridPos` (panels without one are stacked below the previous).
fn fill(
    panels: Vec<Value>,
    count: &mut usize,
    next_id: &mut i64,
    limits: &Limits,
    depth: usize,
) -> Result<Vec<Value>> {
    let mut below = 0i64;
    let mut out = Vec::with_capacity(panels.len());
    for p in panels {
        *count += 1;
        if *count > limits.max_panels {
            return Err(Error::Invalid(format!(
                "more than {} panels",
                limits.max_panels
            )));
        }
        let Value::Object(mut p) = p else {
            return Err(Error::Invalid(format!("panel {count} is not an object")));
        };
        if !p.get("id").is_some_and(Value::is_i64) {
            p.insert("id".into(), json!(*next_id));
            *next_id += 1;
        }
        let pos = p.get("gridPos").and_then(grid_pos);
        let (x, y, w, h) = pos.unwrap_or((0, below, 12, 8));
        p.insert("gridPos".into(), json!({"x": x, "y": y, "w": w, "h": h}));
        below = below.max(y + h);
        if let Some(inner) = p.remove("panels") {
            let Value::Array(inner) = inner else {
                return Err(Error::Invalid(format!(
                    "panel {count}: panels is not a list"
                )));
            };
            if depth > 0 {
                return Err(Error::Invalid("rows nested inside rows".into()));
            }
            p.insert(
                "panels".into(),
                Value::Array(fill(inner, count, next_id, limits, depth + 1)?),
            );
        }
        out.push(Value::Object(p));
    }
    Ok(out)
}

/// A `gridPos` clamped into the grid: (x, y, w, h).
fn grid_pos(v: &Value) -> Option<(i64, i64, i64, i64)> {
    let n = |k: &str| v.get(k).and_then(Value::as_f64).map(|f| f as i64);
    let w = n("w")?.clamp(1, GRID_COLUMNS);
    let x = n("x").unwrap_or(0).clamp(0, GRID_COLUMNS - w);
    Some((
        x,
        n("y").unwrap_or(0).clamp(0, 1 << 20),
        w,
        n("h")?.clamp(1, 200),
    ))
}

/// Grafana's upgrade of legacy rows: every row becomes a `row` panel (collapsed ones keep
/// their panels inside it) and its panels are laid left to right by `span` (12 = full
/// width), wrapping when the row is full, as high as the row's `height` in pixels.
fn migrate_rows(rows: &[Value]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut y = 0i64;
    for (i, row) in rows.iter().enumerate() {
        let row = row
            .as_object()
            .ok_or_else(|| Error::Invalid(format!("row {} is not an object", i + 1)))?;
        let h =
            ((px(row.get("height")).unwrap_or(250.0) / GRID_CELL_PX).ceil() as i64).clamp(1, 200);
        let collapsed = row
            .get("collapse")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let title = row
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("Row")
            .to_string();
        let mut header = Map::new();
        header.insert("type".into(), json!("row"));
        header.insert("title".into(), json!(title));
        header.insert("collapsed".into(), json!(collapsed));
        header.insert(
            "gridPos".into(),
            json!({"x": 0, "y": y, "w": GRID_COLUMNS, "h": 1}),
        );
        y += 1;
        let mut inner = Vec::new();
        let (mut x, mut row_y) = (0i64, y);
        let panels = row
            .get("panels")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for p in panels {
            let Value::Object(mut p) = p else {
                return Err(Error::Invalid(format!(
                    "row {}: a panel is not an object",
                    i + 1
                )));
            };
            let span = p
                .get("span")
                .and_then(Value::as_f64)
                .unwrap_or(4.0)
                .clamp(1.0, 12.0);
            let w = ((span * 2.0).round() as i64).clamp(1, GRID_COLUMNS);
            if x + w > GRID_COLUMNS {
                x = 0;
                row_y += h;
            }
            let ph =
                px(p.get("height")).map_or(h, |v| ((v / GRID_CELL_PX).ceil() as i64).clamp(1, 200));
            p.remove("span");
            p.insert(
                "gridPos".into(),
                json!({"x": x, "y": row_y, "w": w, "h": ph}),
            );
            x += w;
            inner.push(Value::Object(p));
        }
        let used = if inner.is_empty() { 0 } else { row_y - y + h };
        if collapsed {
            header.insert("panels".into(), Value::Array(inner));
            out.push(Value::Object(header));
        } else {
            header.insert("panels".into(), json!([]));
            out.push(Value::Object(header));
            out.extend(inner);
            y += used;
        }
    }
    Ok(out)
}

/// A legacy height: a number of pixels or a string such as `"250px"`.
fn px(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches("px").trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite() && *f > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<Value> {
        normalize(s.as_bytes(), "from file", &Limits::default())
    }

    #[test]
    fn modern_dashboards_keep_their_layout_and_get_ids() {
        let d = norm(r#"{"uid":"abc","title":"T","panels":[{"type":"stat","id":7,"gridPos":{"x":0,"y":0,"w":6,"h":4}},{"type":"row","title":"R","collapsed":true,"panels":[{"type":"timeseries"}]}]}"#).unwrap();
        assert_eq!(d["uid"], "abc");
        assert_eq!(d["panels"][0]["id"], 7);
        assert_eq!(d["panels"][0]["gridPos"]["w"], 6);
        // Ids continue after the highest one, nested panels included.
        assert_eq!(d["panels"][1]["id"], 8);
        assert_eq!(d["panels"][1]["panels"][0]["id"], 9);
        // A panel without a position goes below the ones before it.
        assert_eq!(d["panels"][1]["gridPos"]["y"], 4);
    }

    #[test]
    fn the_api_wrapper_is_unwrapped_and_a_missing_uid_comes_from_the_file() {
        let d = norm(r#"{"dashboard":{"title":"T"},"overwrite":true}"#).unwrap();
        assert_eq!(d["uid"], "from-file");
        assert_eq!(d["panels"], json!([]));
        let d = norm(r#"{"title":"T","uid":"has spaces"}"#).unwrap();
        assert_eq!(d["uid"], "from-file");
    }

    #[test]
    fn legacy_rows_become_row_panels_laid_out_by_span() {
        let d = norm(r#"{"title":"Old","schemaVersion":14,"rows":[
            {"title":"CPU","height":"300px","panels":[{"type":"graph","span":6},{"type":"singlestat","span":6},{"type":"graph","span":4}]},
            {"title":"Hidden","collapse":true,"panels":[{"type":"graph","span":12}]},
            {"title":"After","panels":[{"type":"table","span":12}]}]}"#).unwrap();
        let p = d["panels"].as_array().unwrap();
        let kinds: Vec<&str> = p.iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["row", "graph", "singlestat", "graph", "row", "row", "table"]
        );
        let pos = |i: usize| {
            let g = &p[i]["gridPos"];
            (
                g["x"].as_i64().unwrap(),
                g["y"].as_i64().unwrap(),
                g["w"].as_i64().unwrap(),
                g["h"].as_i64().unwrap(),
            )
        };
        assert_eq!(pos(1), (0, 1, 12, 10));
        assert_eq!(pos(2), (12, 1, 12, 10));
        // The third panel does not fit and wraps below.
        assert_eq!(pos(3), (0, 11, 8, 10));
        assert_eq!(pos(4), (0, 21, 24, 1));
        assert_eq!(p[4]["collapsed"], true);
        assert_eq!(p[4]["panels"][0]["gridPos"]["w"], 24);
        // A collapsed row takes no room below it.
        assert_eq!(pos(5), (0, 22, 24, 1));
        assert_eq!(pos(6).1, 23);
        assert!(p[1].get("span").is_none());
    }

    #[test]
    fn hostile_dashboards_get_named_errors() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let cases = [
            (deep.as_str(), "not JSON"),
            ("[1]", "JSON object"),
            ("{}", "title is empty"),
            (r#"{"title":5}"#, "not a string"),
            (r#"{"title":"t","tags":"x"}"#, "tags"),
            (r#"{"title":"t","panels":{}}"#, "panels is not a list"),
            (r#"{"title":"t","panels":[1]}"#, "not an object"),
            (
                r#"{"title":"t","panels":[{"panels":[{"panels":[]}]}]}"#,
                "nested",
            ),
            (r#"{"title":"t","rows":[3]}"#, "row 1"),
            ("{\"title\":\"t\"", "not JSON"),
        ];
        for (input, want) in cases {
            let e = norm(input).unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        let many = format!(
            r#"{{"title":"t","panels":[{}]}}"#,
            vec!["{}"; 1001].join(",")
        );
        assert!(
            norm(&many)
                .unwrap_err()
                .to_string()
                .contains("more than 1000 panels")
        );
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            normalize(br#"{"title":"long enough"}"#, "x", &small),
            Err(Error::TooLarge {
                size: 23,
                limit: 10
            })
        ));
        assert!(norm(r#"{"title":"t"}"#).is_ok());
        assert!(normalize(br#"{"title":"t"}"#, "///", &Limits::default()).is_err());
    }

    #[test]
    fn grid_positions_are_clamped_into_the_grid() {
        let d = norm(r#"{"title":"t","panels":[{"gridPos":{"x":30,"y":-4,"w":100,"h":1e9}}]}"#)
            .unwrap();
        assert_eq!(
            d["panels"][0]["gridPos"],
            json!({"x":0,"y":0,"w":24,"h":200})
        );
    }
}
