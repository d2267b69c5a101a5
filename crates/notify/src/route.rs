//! The routing tree: which routes (and so which receivers and timings) an alert takes.
//!
//! As in Alertmanager, an alert descends into the first child whose matchers hold (or
//! every such child with `continue: true` before the next match), deepest match wins,
//! and a route with no matching child takes the alert itself. Settings not given on a
//! route come from its parent.

use std::time::Duration;

use lookout_model::{Labels, Matcher};

use crate::Result;
use crate::config::{Config, RouteSpec};
use crate::matchers::display_list;

/// How a route groups alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// By these labels.
    Labels(Vec<String>),
    /// By every label (`...`).
    All,
}

/// A route with its inherited settings resolved.
#[derive(Debug, Clone)]
pub struct Route {
    /// Where alerts taken here go.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Wait before a new group's first notification.
    pub group_wait: Duration,
    /// Wait between notifications of a changed group.
    pub group_interval: Duration,
    /// Wait before an unchanged group is sent again.
    pub repeat_interval: Duration,
    /// Keep matching siblings.
    pub continue_: bool,
    /// This route's own matchers.
    pub matchers: Vec<Matcher>,
    /// Time intervals that mute it.
    pub mute_time_intervals: Vec<String>,
    /// Time intervals outside which it is muted.
    pub active_time_intervals: Vec<String>,
    /// Its children.
    pub routes: Vec<Route>,
    /// Alertmanager's route key: parents' keys and matcher lists joined by `/`.
    pub key: String,
}

impl Route {
    /// Builds the tree of a validated configuration.
    pub fn tree(c: &Config) -> Result<Route> {
        let root = c
            .route
            .as_ref()
            .ok_or_else(|| crate::Error::Config("no routes provided".into()))?;
        let defaults = Route {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            continue_: false,
            matchers: Vec::new(),
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            routes: Vec::new(),
            key: String::new(),
        };
        Self::build(root, &defaults, None)
    }

    fn build(s: &RouteSpec, parent: &Route, parent_key: Option<&str>) -> Result<Route> {
        let matchers = s.all_matchers()?;
        let key = match parent_key {
            Some(p) => format!("{p}/{}", display_list(&matchers)),
            None => display_list(&matchers),
        };
        let mut r = Route {
            receiver: s
                .receiver
                .clone()
                .unwrap_or_else(|| parent.receiver.clone()),
            group_by: match &s.group_by {
                Some(g) if g.iter().any(|l| l == "...") => GroupBy::All,
                Some(g) => GroupBy::Labels(g.clone()),
                None => parent.group_by.clone(),
            },
            group_wait: s.group_wait.map_or(parent.group_wait, |d| d.0),
            group_interval: s.group_interval.map_or(parent.group_interval, |d| d.0),
            repeat_interval: s.repeat_interval.map_or(parent.repeat_interval, |d| d.0),
            continue_: s.continue_,
            matchers,
            mute_time_intervals: s.mute_time_intervals.clone(),
            active_time_intervals: s.active_time_intervals.clone(),
            routes: Vec::new(),
            key: key.clone(),
        };
        // Children inherit this route's resolved settings; time intervals are not
        // inherited in Alertmanager either (each route lists its own).
        let template = Route {
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            ..r.clone()
        };
        for c in &s.routes {
            r.routes.push(Self::build(c, &template, Some(&key))?);
        }
        Ok(r)
    }

    fn matches(&self, l: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches_labels(l))
    }

    /// The routes that take an alert with labels `l`, in tree order.
    pub fn matching(&self, l: &Labels) -> Vec<&Route> {
        if !self.matches(l) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in &self.routes {
            let m = c.matching(l);
            if m.is_empty() {
                continue;
            }
            out.extend(m);
            if !c.continue_ {
                break;
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// The labels an alert is grouped by on this route.
    pub fn group_labels(&self, l: &Labels) -> Labels {
        match &self.group_by {
            GroupBy::All => l.clone(),
            GroupBy::Labels(names) => l.keep(names),
        }
    }

    /// Every route of the tree, depth first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut out = vec![self];
        for c in &self.routes {
            out.extend(c.walk());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['service="database"']
      receiver: db
      group_wait: 10s
      routes:
        - matchers: ['owner="x"']
          receiver: x
          continue: true
        - matchers: ['severity="critical"']
          receiver: pager
    - match_re: {service: "^(web|api)$"}
      receiver: web
      group_by: ['...']
receivers: [{name: default}, {name: db}, {name: x}, {name: pager}, {name: web}]
"#;

    fn names<'a>(rs: &[&'a Route]) -> Vec<&'a str> {
        rs.iter().map(|r| r.receiver.as_str()).collect()
    }

    #[test]
    fn routes_like_alertmanager() {
        let c = Config::parse(CONF).unwrap();
        let t = Route::tree(&c).unwrap();
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
        assert_eq!(names(&t.matching(&l(&[("service", "other")]))), ["default"]);
        assert_eq!(names(&t.matching(&l(&[("service", "database")]))), ["db"]);
        assert_eq!(
            names(&t.matching(&l(&[
                ("service", "database"),
                ("owner", "x"),
                ("severity", "critical")
            ]))),
            ["x", "pager"]
        );
        assert_eq!(names(&t.matching(&l(&[("service", "api")]))), ["web"]);
        let db = &t.routes[0];
        assert_eq!(db.group_wait, Duration::from_secs(10));
        assert_eq!(
            db.routes[1].group_wait,
            Duration::from_secs(10),
            "inherited"
        );
        assert_eq!(
            db.routes[1].group_by,
            GroupBy::Labels(vec!["alertname".into()])
        );
        assert_eq!(
            db.routes[1].key,
            "{}/{service=\"database\"}/{severity=\"critical\"}"
        );
        assert_eq!(t.routes[1].group_by, GroupBy::All);
    }
}
