//! Lookout's HTTP face: the Prometheus-compatible API (`/api/v1/…`), health endpoints,
//! Lookout's own `/metrics`, and the embedded web UI.
//!
//! The server reads through the storage seam ([`lookout_storage::Queryable`]) and the
//! PromQL [`lookout_promql::Engine`]; it knows nothing of how data is stored or collected.
//! Everything it needs comes in one [`AppState`]; [`router`] builds the routes and
//! [`serve`] runs them until a shutdown future resolves.

mod am_api;
mod api;
pub mod audit;
pub mod auth;
mod dashboards_api;
mod error;
mod federate;
pub mod gate;
pub mod health;
mod json;
pub mod listen;
pub mod otlp_grpc;
mod params;
mod remote;
mod rules_api;
mod traces_api;
mod ui;
pub mod web_config;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::routing::get;
use lookout_model::status::{
    CollectorStatus, HeadStatus, PgAdvisorReport, PgSessions, RedisDiagnostics, Statement,
    TargetStatus,
};
use lookout_promql::Engine;
use lookout_storage::Queryable;
use prometheus_client::registry::Registry;

pub use auth::{Access, BearerToken, Role};
pub use error::Error;
pub use gate::QueryGate;
pub use health::{CheckResult, HealthCheck, HealthStatus};
pub use json::format_float;
pub use listen::{ServeOptions, serve_with};
pub use web_config::{WebConfig, WebSecurity};

/// Build facts reported at `/api/v1/status/buildinfo`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// Lookout's version.
    pub version: String,
    /// Source revision, if known.
    pub revision: String,
    /// Source branch, if known.
    pub branch: String,
    /// Who built it, if known.
    pub build_user: String,
    /// When it was built, if known.
    pub build_date: String,
    /// The toolchain (`goVersion` in Prometheus's JSON).
    pub toolchain: String,
}

/// Administrative storage operations, offered only when the operator enables them.
pub trait Admin: Send + Sync {
    /// Deletes samples of series matching any of the selectors (each a matcher list)
    /// in `[start, end]` (ms).
    fn delete_series(
        &self,
        selectors: &[Vec<lookout_model::Matcher>],
        start: i64,
        end: i64,
    ) -> lookout_storage::Result<()>;
}

/// Metadata of one metric family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricMetadata {
    /// Metric name.
    pub metric: String,
    /// `counter`, `gauge`, …
    pub kind: String,
    /// Help text.
    pub help: String,
    /// Unit (often empty).
    pub unit: String,
}

/// Facts about the running process the status endpoints report.
pub trait ServerInfo: Send + Sync {
    /// The configuration in effect, as YAML.
    fn config_yaml(&self) -> String;
    /// Command-line flags and their values.
    fn flags(&self) -> Vec<(String, String)>;
    /// Runtime facts (`/api/v1/status/runtimeinfo`), as a JSON object.
    fn runtime_info(&self) -> serde_json::Value;
    /// Head cardinality, `limit` entries per list.
    fn tsdb_status(&self, limit: usize) -> HeadStatus;
    /// Metric metadata known to Lookout.
    fn metadata(&self) -> Vec<MetricMetadata>;
}

/// What the server shows of collection, read as snapshots: the seam to the collectors
/// and scrapers, which the server does not know. The binary implements it over their
/// status boards.
pub trait CollectionView: Send + Sync {
    /// Every built-in collector's last run.
    fn collectors(&self) -> Vec<CollectorStatus>;
    /// Every scrape target's state.
    fn targets(&self) -> Vec<TargetStatus>;
    /// The PostgreSQL collectors' latest top statements, with their text.
    fn slow_queries(&self) -> Vec<Statement>;
    /// The PostgreSQL collectors' latest session samples (none where no collector
    /// samples sessions).
    fn postgres_sessions(&self) -> Vec<PgSessions> {
        Vec::new()
    }
    /// The PostgreSQL maintenance advisor's latest findings (none where no collector
    /// advises).
    fn postgres_advisor(&self) -> Vec<PgAdvisorReport> {
        Vec::new()
    }
    /// The Redis collectors' slow logs, doctors' reports and big-key samples (none where
    /// no collector reads them).
    fn redis_diagnostics(&self) -> Vec<RedisDiagnostics> {
        Vec::new()
    }
}

/// Everything the HTTP handlers use.
#[derive(Clone)]
pub struct AppState {
    /// The store queries read.
    pub db: Arc<dyn Queryable>,
    /// The PromQL engine.
    pub engine: Engine,
    /// Where queries, series and label lookups run: off the async workers, bounded,
    /// cancelled at shutdown.
    pub gate: Arc<QueryGate>,
    /// Health checks, in display order.
    pub checks: Vec<Arc<dyn HealthCheck>>,
    /// Collectors, scrape targets and top statements, for the UI and `/api/v1/targets`.
    pub collection: Arc<dyn CollectionView>,
    /// Lookout's own metrics, served at `/metrics`.
    pub registry: Arc<Registry>,
    /// Set once start-up (WAL replay, first wiring) has finished.
    pub ready: Arc<AtomicBool>,
    /// Build facts.
    pub build: BuildInfo,
    /// Admin operations; `None` answers 503 "admin APIs disabled".
    pub admin: Option<Arc<dyn Admin>>,
    /// Status facts.
    pub info: Arc<dyn ServerInfo>,
    /// Recording and alerting rules; `None` when no rule files are configured.
    pub rules: Option<Arc<lookout_rules::Manager>>,
    /// The notifier (Alertmanager API v2, acknowledgements); `None` when not configured.
    pub notifier: Option<Arc<lookout_notify::Notifier>>,
    /// The HTTP audit trail (authentication failures, refusals, writes).
    pub audit: Arc<audit::AuditLog>,
    /// What `POST /-/reload` runs: reloads rule files and the notifier configuration,
    /// returning the problems (the running configuration stays when there are any).
    pub reload: Option<Arc<dyn Fn() -> Vec<String> + Send + Sync>>,
    /// The dashboards the web UI renders.
    pub dashboards: Arc<lookout_dashboards::Library>,
    /// Where `POST /api/v1/write` stores what it receives; `None` (the default, as in
    /// Prometheus) answers 404.
    pub remote_write: Option<Arc<dyn lookout_storage::Appendable>>,
    /// Where `POST /api/v1/otlp/v1/metrics` stores what it receives; `None` (the
    /// default, as in Prometheus) answers 404.
    pub otlp: Option<Arc<dyn lookout_storage::Appendable>>,
    /// How OTLP metrics are translated.
    pub otlp_options: lookout_remote::otlp::Options,
    /// `global.external_labels`, added to federated series that lack them.
    pub external_labels: Vec<(String, String)>,
    /// The trace store `POST /v1/traces` and Jaeger's query API use; `None` (the default)
    /// answers 404.
    pub traces: Option<Arc<lookout_traces::TraceStore>>,
    /// Largest OTLP traces request body.
    pub traces_max_request_bytes: usize,
    /// State snapshots (taken on demand and when alerts fire); `None` answers 404.
    pub snapshots: Option<Arc<dyn SnapshotService>>,
    /// Remediation and its audit trail; `None` (no rules) answers an empty list.
    pub remediation: Option<Arc<lookout_remediate::Remediator>>,
}

/// A future a seam returns.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// State snapshots, as the server sees them: the seam to the binary, which knows what a
/// snapshot holds (processes, databases, the bottleneck report) and where they are kept.
pub trait SnapshotService: Send + Sync {
    /// Takes one now, for `reason`, and returns its header.
    fn take(
        &self,
        reason: lookout_diagnose::snapshots::Reason,
    ) -> BoxFuture<'_, Result<lookout_diagnose::snapshots::Summary, lookout_diagnose::Error>>;
    /// Every snapshot's header, the newest first, and the damaged files' errors.
    fn list(&self) -> (Vec<lookout_diagnose::snapshots::Summary>, Vec<String>);
    /// One snapshot.
    fn get(
        &self,
        id: &str,
    ) -> Result<Option<lookout_diagnose::snapshots::Snapshot>, lookout_diagnose::Error>;
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("checks", &self.checks.len())
            .field("build", &self.build)
            .finish()
    }
}

/// Builds every route.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/query", get(api::query).post(api::query))
        .route("/query_range", get(api::query_range).post(api::query_range))
        .route("/labels", get(api::labels).post(api::labels))
        .route("/label/{name}/values", get(api::label_values))
        .route("/series", get(api::series).post(api::series))
        .route("/status/buildinfo", get(api::buildinfo))
        .route("/status/config", get(api::status_config))
        .route("/status/flags", get(api::status_flags))
        .route("/status/runtimeinfo", get(api::status_runtime))
        .route("/status/tsdb", get(api::status_tsdb))
        .route("/metadata", get(api::metadata))
        .route(
            "/query_exemplars",
            get(api::query_exemplars).post(api::query_exemplars),
        )
        .route(
            "/format_query",
            get(api::format_query).post(api::format_query),
        )
        .route("/write", axum::routing::post(remote::write))
        .route("/otlp/v1/metrics", axum::routing::post(remote::otlp))
        .route("/read", axum::routing::post(remote::read))
        .route("/lookout/collectors", get(api::collectors))
        .route("/lookout/whoami", get(api::whoami))
        .route("/lookout/slow_queries", get(api::slow_queries))
        .route("/lookout/postgres/locks", get(api::postgres_locks))
        .route(
            "/lookout/postgres/transactions",
            get(api::postgres_transactions),
        )
        .route("/lookout/postgres/advisor", get(api::postgres_advisor))
        .route("/lookout/diagnose", get(api::diagnose))
        .route("/lookout/remediations", get(api::remediations))
        .route(
            "/lookout/rules/backtest",
            axum::routing::post(api::backtest),
        )
        .route(
            "/lookout/snapshots",
            get(api::snapshots_list).post(api::snapshots_take),
        )
        .route("/lookout/snapshots/{id}", get(api::snapshot_get))
        .route("/lookout/redis/slowlog", get(api::redis_slowlog))
        .route("/lookout/redis/doctor", get(api::redis_doctor))
        .route("/lookout/redis/bigkeys", get(api::redis_big_keys))
        .route("/targets", get(api::targets))
        .route("/rules", get(rules_api::rules))
        .route("/alerts", get(rules_api::alerts))
        .route(
            "/lookout/alerts/{fingerprint}/ack",
            axum::routing::post(am_api::ack).delete(am_api::unack),
        )
        .route("/lookout/audit", get(am_api::audit))
        .route("/lookout/notifications", get(am_api::notifications))
        .route("/lookout/escalations", get(am_api::escalations))
        .route(
            "/lookout/dashboards",
            get(dashboards_api::list).post(dashboards_api::import),
        )
        .route("/lookout/dashboards/{uid}", get(dashboards_api::get))
        .route(
            "/admin/tsdb/delete_series",
            axum::routing::post(api::delete_series).put(api::delete_series),
        );
    let am = Router::new()
        .route("/alerts", get(am_api::get_alerts).post(am_api::post_alerts))
        .route("/alerts/groups", get(am_api::alert_groups))
        .route(
            "/silences",
            get(am_api::get_silences).post(am_api::post_silence),
        )
        .route(
            "/silence/{id}",
            get(am_api::get_silence).delete(am_api::delete_silence),
        )
        .route("/status", get(am_api::status))
        .route("/receivers", get(am_api::receivers));
    // Span batches get their own bound (`tracing_receiver.max_request_size`).
    let receive_traces = match &state.traces {
        Some(_) => axum::routing::post(traces_api::receive).layer(
            axum::extract::DefaultBodyLimit::max(state.traces_max_request_bytes),
        ),
        None => axum::routing::post(traces_api::receive),
    };
    Router::new()
        .nest("/api/v1", api)
        .nest("/api/v2", am)
        .route("/v1/traces", receive_traces)
        .route("/api/services", get(traces_api::services))
        .route(
            "/api/services/{service}/operations",
            get(traces_api::service_operations),
        )
        .route("/api/operations", get(traces_api::operations))
        .route("/api/traces", get(traces_api::find_traces))
        .route("/api/traces/{id}", get(traces_api::get_trace))
        .route("/metrics", get(api::metrics))
        .route("/federate", get(federate::federate))
        .route("/-/healthy", get(api::healthy_text))
        .route("/-/ready", get(api::ready_text))
        .route(
            "/-/reload",
            axum::routing::post(rules_api::reload).put(rules_api::reload),
        )
        .route("/health", get(api::health_full))
        .route("/health/live", get(api::health_live))
        .route("/health/ready", get(api::health_ready))
        .route("/", get(ui::app_page))
        .route("/status", get(ui::index))
        .route("/ui/{*path}", get(ui::asset))
        .route("/dashboards", get(ui::app_page))
        .route("/d/{uid}", get(ui::app_page))
        .route("/d/{uid}/{slug}", get(ui::app_page))
        .route("/alerts", get(ui::app_page))
        .route("/silences", get(ui::app_page))
        .route("/silences/new", get(ui::app_page))
        .route("/notifications", get(ui::app_page))
        .route("/escalations", get(ui::app_page))
        .route("/rules", get(ui::app_page))
        .route("/targets", get(ui::app_page))
        .route("/health-checks", get(ui::app_page))
        .route("/explore", get(ui::app_page))
        .route("/traces", get(ui::app_page))
        .route("/diagnose", get(ui::app_page))
        .route("/snapshots", get(ui::app_page))
        .route("/remediations", get(ui::app_page))
        .route("/snapshots/{id}", get(ui::app_page))
        .route("/trace/{id}", get(ui::app_page))
        .with_state(state)
}

/// Serves `router` on `listener` with the default [`ServeOptions`] until `shutdown`
/// resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, &ServeOptions::default()).await
}
