//! Alertmanager's matcher syntax: `severity="critical"`, `team=~"db|ops"`, unquoted
//! values (`env!=dev`), and lists in braces (`{a="b", c!~"d"}`) as amtool and the API
//! filters write them. Matching itself is `lookout_model::Matcher` (anchored regexes, a
//! missing label matches as empty), shared with PromQL.

use lookout_model::{MatchOp, Matcher};

use crate::{Error, Result};

/// Parses one matcher.
pub fn parse_matcher(s: &str) -> Result<Matcher> {
    let t = s.trim();
    let bad = |why: &str| Error::Matcher {
        what: "matcher",
        text: s.to_string(),
        problem: why.to_string(),
    };
    let op_at = t
        .find(['=', '!'])
        .ok_or_else(|| bad("expected name=value, name!=value, name=~regex or name!~regex"))?;
    let name = t[..op_at].trim();
    let rest = &t[op_at..];
    let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
        (MatchOp::Regex, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (MatchOp::NotRegex, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (MatchOp::Equal, v)
    } else {
        return Err(bad("unknown operator"));
    };
    let name = name.trim_matches('"');
    if name.is_empty() {
        return Err(bad("empty label name"));
    }
    let value = unquote(value.trim()).map_err(|e| bad(&e))?;
    Matcher::new(op, name, &value).map_err(|e| bad(&e.to_string()))
}

fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "unterminated quoted value".to_string())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c) => out.push(c),
                None => return Err("dangling escape".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Splits a matcher list (`{a="b", c=~"d,e"}` or `a=b,c=d`) at commas outside quotes.
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>> {
    let t = s.trim();
    let t = t
        .strip_prefix('{')
        .map(|r| {
            r.strip_suffix('}').ok_or_else(|| Error::Matcher {
                what: "matchers",
                text: s.to_string(),
                problem: "missing '}'".to_string(),
            })
        })
        .transpose()?
        .unwrap_or(t);
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut esc = false;
    for c in t.chars() {
        match c {
            _ if esc => {
                esc = false;
                cur.push(c);
            }
            '\\' if in_q => {
                esc = true;
                cur.push(c);
            }
            '"' => {
                in_q = !in_q;
                cur.push(c);
            }
            ',' if !in_q => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse_matcher(p))
        .collect()
}

/// A matcher as Alertmanager prints it: `name="value"` with the operator.
pub fn display(m: &Matcher) -> String {
    format!("{}{}{:?}", m.name, m.op, m.value)
}

/// A matcher list as Alertmanager prints it in route keys: `{a="b",c=~"d"}`.
pub fn display_list(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms.iter().map(display).collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_model::Labels;

    #[test]
    fn parses_alertmanager_matchers() {
        let m = parse_matcher("severity = \"critical\"").unwrap();
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("severity", MatchOp::Equal, "critical")
        );
        let m = parse_matcher("team=~db|ops").unwrap();
        assert!(m.matches("db") && !m.matches("dbx"));
        let ms = parse_matchers("{alertname=\"A\", msg=~\"a,b\", env!=dev}").unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[1].value, "a,b");
        let l = Labels::from_pairs([("alertname", "A"), ("msg", "a,b")]);
        assert!(ms.iter().all(|m| m.matches_labels(&l)));
        assert!(parse_matcher("nope").is_err());
        assert!(
            parse_matcher("a=~\"(\"")
                .unwrap_err()
                .to_string()
                .contains("bad matcher")
        );
        assert_eq!(display_list(&ms[..1]), "{alertname=\"A\"}");
    }
}
