//! Alertmanager's own configuration test files (`../shared/upstream/alertmanager/
//! config-testdata`), with the verdicts Alertmanager gives them. Reference data outside
//! the repository: when absent, the test says so and checks nothing.

use std::path::PathBuf;

use lookout_notify::Config;

fn upstream() -> Option<PathBuf> {
    lookout_testkit::upstream("alertmanager/config-testdata")
}

#[test]
fn config_files_get_alertmanager_verdicts() {
    let Some(dir) = upstream() else { return };
    let good = [
        "conf.good.yml",
        "conf.empty-fields.yml",
        "conf.group-by-all.yml",
        "conf.http-config.good.yml",
        "conf.slack-default-api-url-file.yml",
        "conf.smtp-no-username-or-password.yml",
        "conf.smtp-password-global-and-local.yml",
    ];
    for f in good {
        if let Err(e) = Config::load(&dir.join(f)) {
            panic!("{f} should load: {e}");
        }
    }
    let bad = [
        ("conf.nil-match_re-route.yml", "invalid_label"),
        (
            "conf.nil-source_match_re-inhibition.yml",
            "invalid_source_label",
        ),
        (
            "conf.nil-target_match_re-inhibition.yml",
            "invalid_target_label",
        ),
        (
            "conf.slack-both-file-and-url.yml",
            "at most one of slack_api_url & slack_api_url_file must be configured",
        ),
        (
            "conf.slack-no-api-url-or-token.yml",
            "no global Slack API URL set either inline or in a file",
        ),
        (
            "conf.smtp-both-password-and-file.yml",
            "at most one of smtp_auth_password & smtp_auth_password_file must be configured",
        ),
    ];
    for (f, want) in bad {
        match Config::load(&dir.join(f)) {
            Ok(_) => panic!("{f} should be refused"),
            Err(e) => assert!(e.to_string().contains(want), "{f}: {e}"),
        }
    }
    // The good file routes as Alertmanager documents.
    let c = Config::load(&dir.join("conf.good.yml")).unwrap();
    let t = lookout_notify::route::Route::tree(&c).unwrap();
    let l = lookout_model::Labels::from_pairs([("service", "database"), ("owner", "team-Y")]);
    let r: Vec<&str> = t.matching(&l).iter().map(|r| r.receiver.as_str()).collect();
    assert_eq!(r, ["team-Y-pager"]);
    // Receivers Lookout cannot send to yet are named, not dropped.
    assert!(
        c.unsupported()
            .iter()
            .any(|u| u == "victorOps-receiver/victorops_configs"),
        "{:?}",
        c.unsupported()
    );
}
