//! What the notify tests share: the local receiver (`lookout_testkit`'s), the escalation
//! policy, silences.

#![allow(dead_code, unreachable_pub, unused_imports)]

/// The local receiver the tests send to.
pub use lookout_testkit::WebhookReceiver as Http;

/// The escalation policy the tests use: `severity="page"` alerts go to `pager`, then
/// after ten minutes without an acknowledgement to `senior`.
pub fn db_oncall_policy() -> lookout_notify::EscalationPolicy {
    use lookout_notify::Level;
    lookout_notify::EscalationPolicy {
        name: "db-oncall".into(),
        matchers: lookout_notify::matchers::parse_matchers("severity=\"page\"").unwrap(),
        levels: vec![
            Level {
                receivers: vec!["pager".into()],
                timeout: std::time::Duration::from_secs(600),
            },
            Level {
                receivers: vec!["senior".into()],
                timeout: std::time::Duration::from_secs(600),
            },
        ],
    }
}
