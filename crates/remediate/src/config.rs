//! `remediation:` as the configuration file writes it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// One remediation rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its name (unique).
    pub name: String,
    /// Alertmanager matchers an alert must all match (`alertname="…"`, `severity=~"…"`).
    pub matchers: Vec<String>,
    /// What to do: a map with one key, the action's name (`{ webhook: { url: … } }`).
    #[serde(deserialize_with = "action")]
    pub action: ActionConfig,
    /// Only record what would be done (default true).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Least time between two runs (default 5m).
    #[serde(default = "five_minutes", deserialize_with = "duration")]
    pub cooldown: Duration,
    /// Most runs in any hour (default 6).
    #[serde(default = "six")]
    pub max_per_hour: u32,
}

fn yes() -> bool {
    true
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn six() -> u32 {
    6
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn thousand() -> usize {
    1000
}

/// The action map: exactly one key, the action's name, over its settings.
fn action<'de, D: Deserializer<'de>>(d: D) -> Result<ActionConfig, D::Error> {
    let m: serde_json::Map<String, serde_json::Value> = Deserialize::deserialize(d)?;
    if m.len() != 1 {
        return Err(de::Error::custom(format!(
            "action: expected exactly one of {}, got {} keys",
            ActionConfig::KINDS.join(", "),
            m.len()
        )));
    }
    serde_json::from_value(serde_json::Value::Object(m)).map_err(de::Error::custom)
}

/// A Prometheus duration (`30s`, `5m`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    lookout_model::parse_duration(&s).map_err(de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| lookout_model::parse_duration(&s).map_err(de::Error::custom))
        .transpose()
}

/// The allow-listed actions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// Cancel (`pg_cancel_backend`) the queries running longer than a bound, then
    /// terminate those still running the same query `terminate_after` later.
    PostgresCancelQueries {
        /// The PostgreSQL collector's name.
        instance: String,
        /// Queries running longer than this.
        #[serde(deserialize_with = "duration")]
        running_longer_than: Duration,
        /// Terminate the sessions still running the query this long after the cancel.
        #[serde(default, deserialize_with = "opt_duration")]
        terminate_after: Option<Duration>,
        /// Only sessions of this database.
        #[serde(default)]
        database: Option<String>,
        /// Only sessions of this role.
        #[serde(default)]
        user: Option<String>,
    },
    /// Terminate (`pg_terminate_backend`) sessions idle in a transaction longer than a
    /// bound.
    PostgresTerminateIdleInTransaction {
        /// The PostgreSQL collector's name.
        instance: String,
        /// Idle in transaction longer than this.
        #[serde(deserialize_with = "duration")]
        idle_longer_than: Duration,
        /// Only sessions of this database.
        #[serde(default)]
        database: Option<String>,
        /// Only sessions of this role.
        #[serde(default)]
        user: Option<String>,
    },
    /// `ANALYZE` one table.
    PostgresAnalyze {
        /// The PostgreSQL collector's name.
        instance: String,
        /// `table` or `schema.table` (plain identifiers).
        table: String,
    },
    /// Delete the regular files older than a bound directly in one directory (no
    /// recursion; symbolic links are left alone).
    DeleteOldFiles {
        /// The directory (absolute; this is the allow-list: nothing else is touched).
        directory: PathBuf,
        /// Files last modified longer ago than this.
        #[serde(deserialize_with = "duration")]
        older_than: Duration,
        /// Most files deleted per run (default 1000).
        #[serde(default = "thousand")]
        max_files: usize,
    },
    /// Run one executable (no shell) with the alert as JSON on its standard input.
    RunExecutable {
        /// The executable (absolute path).
        path: PathBuf,
        /// Its arguments, as given.
        #[serde(default)]
        args: Vec<String>,
        /// Killed after this long (default 30s).
        #[serde(default = "thirty_seconds", deserialize_with = "duration")]
        timeout: Duration,
    },
    /// POST the alert as JSON to a URL.
    Webhook {
        /// The URL.
        url: String,
        /// Given up after this long (default 10s).
        #[serde(default = "ten_seconds", deserialize_with = "duration")]
        timeout: Duration,
    },
}

impl ActionConfig {
    /// Every action's name.
    pub const KINDS: [&'static str; 6] = [
        "postgres_cancel_queries",
        "postgres_terminate_idle_in_transaction",
        "postgres_analyze",
        "delete_old_files",
        "run_executable",
        "webhook",
    ];

    /// The action's name as configured.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PostgresCancelQueries { .. } => "postgres_cancel_queries",
            Self::PostgresTerminateIdleInTransaction { .. } => {
                "postgres_terminate_idle_in_transaction"
            }
            Self::PostgresAnalyze { .. } => "postgres_analyze",
            Self::DeleteOldFiles { .. } => "delete_old_files",
            Self::RunExecutable { .. } => "run_executable",
            Self::Webhook { .. } => "webhook",
        }
    }
}

/// How to reach one PostgreSQL instance (the collector's connection settings).
#[derive(Debug, Clone, PartialEq)]
pub struct PgTarget {
    /// The DSN.
    pub dsn: String,
    /// The password, when not in the DSN.
    pub password: Option<String>,
}
