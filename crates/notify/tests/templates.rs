//! Lookout's default notification templates against Alertmanager's `default.tmpl`
//! (`../shared/upstream/alertmanager/template/`, reference data outside the repository:
//! skipped, saying so, when absent): the same engine renders both over the same
//! notification, and every template receivers use must give the same text.

use lookout_model::Labels;
use lookout_notify::template::{Templates, data};
use lookout_notify::{Alert, Config, Core, Options};

const T0: i64 = 1_767_225_600_000;

fn notification() -> lookout_notify::Notification {
    let cfg = Config::parse("route: {receiver: team, group_by: [alertname], group_wait: 1s}\nreceivers: [{name: team, webhook_configs: [{url: 'http://x'}]}]\n").unwrap();
    let mut core = Core::new(cfg, Options::default()).unwrap();
    let a = |inst: &str, ends: i64| Alert {
        labels: Labels::from_pairs([
            ("alertname", "PostgresDown"),
            ("instance", inst),
            ("job", "postgres"),
            ("severity", "page"),
        ]),
        annotations: [
            ("summary".to_string(), format!("{inst} is down")),
            ("runbook_url".to_string(), "https://x/r".to_string()),
        ]
        .into(),
        starts_at: T0,
        ends_at: ends,
        generator_url: format!("http://lookout/graph?g0.expr=pg_up{{instance=\"{inst}\"}}"),
        updated_at: 0,
    };
    core.put_alerts(
        vec![a("db1", 0), a("db2", 0), a("db3", T0 + 500)],
        T0 + 1000,
    );
    core.tick(T0 + 5000).remove(0)
}

#[test]
fn defaults_render_as_alertmanager_does() {
    let n = notification();
    let d = data(&n, "http://lookout.example");
    let ours = Templates::new(&[]).unwrap();
    // Lookout's own expectations, independent of the upstream file.
    let subject = ours.render("{{ template \"__subject\" . }}", &d).unwrap();
    assert_eq!(subject, "[FIRING:2] PostgresDown (postgres page)");
    let link = ours
        .render("{{ template \"slack.default.titlelink\" . }}", &d)
        .unwrap();
    assert_eq!(link, "http://lookout.example/#/alerts?receiver=team");
    let list = ours
        .render("{{ template \"__text_alert_list\" .Alerts.Firing }}", &d)
        .unwrap();
    assert!(
        list.starts_with("Labels:\n - alertname = PostgresDown\n - instance = db1\n"),
        "{list:?}"
    );
    assert!(list.contains("Annotations:\n - runbook_url = https://x/r\n - summary = db1 is down\nSource: http://lookout/graph"), "{list}");

    let Some(up) = lookout_testkit::upstream("alertmanager/template/default.tmpl") else {
        return;
    };
    // gtmpl parses all of default.tmpl but `jira.default.priority`, which reassigns a
    // variable (`$x = …`, Go 1.11): that one definition is cut out, and it must be the
    // only thing gtmpl refuses.
    let text = std::fs::read_to_string(&up).unwrap();
    let start = text
        .find("{{- define \"jira.default.priority\" -}}")
        .expect("the jira priority template");
    let tail = "{{- $priority -}}\n{{- end -}}";
    let end = start
        + text[start..]
            .find(tail)
            .expect("the end of the jira priority template")
        + tail.len();
    let cut = format!("{}{}", &text[..start], &text[end..]);
    let theirs = Templates::from_source(&cut);
    theirs
        .render("", &d)
        .expect("the rest of default.tmpl parses");
    for t in [
        "{{ template \"__subject\" . }}",
        "{{ template \"slack.default.title\" . }}",
        "{{ template \"slack.default.username\" . }}",
        "{{ template \"slack.default.fallback\" . }}",
        "{{ template \"slack.default.titlelink\" . }}",
        "{{ template \"slack.default.color\" . }}",
        "{{ template \"slack.default.text\" . }}",
        "{{ template \"pagerduty.default.description\" . }}",
        "{{ template \"pagerduty.default.client\" . }}",
        "{{ template \"pagerduty.default.clientURL\" . }}",
        "{{ template \"pagerduty.default.instances\" .Alerts.Firing }}",
        "{{ template \"pagerduty.default.instances\" .Alerts.Resolved }}",
    ] {
        let a = ours.render(t, &d).unwrap();
        let b = theirs
            .render(t, &d)
            .unwrap_or_else(|e| panic!("upstream {t}: {e}"));
        assert_eq!(a, b, "{t}");
    }
}
