//! `lookout serve`: opens the store, starts the collectors and the HTTP server, and stops
//! them in reverse order on SIGINT/SIGTERM.

use lookout_remote::send::RemoteWrite;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use lookout_collect::scrape::ScrapeManager;
use lookout_collect::{
    BigKeysOptions, HostCollector, OwnMetrics, PostgresBoard, PostgresCollector, PostgresTarget,
    ProcessGroupCollector, RedisBoard, RedisCollector, RedisTarget, RegistryCell, Scheduler,
    SelfMetrics,
};
use lookout_model::{Labels, now_ms};
use lookout_promql::Engine;
use lookout_rules::{EvalContext, Manager, ManagerOptions};
use lookout_server::health::{CollectorCheck, CollectorsCheck, DiskSpaceCheck, FnCheck};
use lookout_server::{AppState, BuildInfo, CheckResult, HealthCheck, HealthStatus};
use lookout_tsdb::Tsdb;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use lookout_config::{AlertSettings, CollectorsConfig, NotifierSettings, Settings, read_password};

/// How long shutdown may wait for in-flight requests before closing the store anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Stack of the runtime's threads, which evaluate queries and rules.
const QUERY_STACK_SIZE: usize = 16 << 20;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOOKOUT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Adds the configured process groups, PostgreSQL and Redis servers to the scheduler,
/// each with `job`/`instance` labels as if scraped from its exporter. Returns where the
/// PostgreSQL and Redis diagnostics go and the collector names that get their own
/// health check.
pub(crate) fn add_database_collectors(
    c: &CollectorsConfig,
    scheduler: &mut Scheduler,
) -> anyhow::Result<(PostgresBoard, RedisBoard, Vec<String>)> {
    if !c.processes.is_empty() {
        let names = c.processes.iter().map(|p| p.name.clone()).collect();
        scheduler.add(
            Arc::new(ProcessGroupCollector::new(names)),
            Labels::from_pairs([("job", "process"), ("instance", hostname().as_str())]),
        );
    }
    let slow = PostgresBoard::default();
    let redis_board = RedisBoard::default();
    let mut checks = Vec::new();
    for p in &c.postgres {
        let what = format!("collectors.postgres {:?}", p.name);
        let password =
            read_password(&what, &p.password_file, &p.password_env).map_err(anyhow::Error::msg)?;
        let col = PostgresCollector::new(
            PostgresTarget {
                name: p.name.clone(),
                dsn: p.dsn.clone(),
                password,
                top_statements: p.top_statements,
                diagnostics: p.diagnostics,
            },
            slow.clone(),
        )
        .with_context(|| what.clone())?;
        checks.push(lookout_collect::AsyncCollector::name(&col).to_string());
        scheduler.add_async(
            Arc::new(col),
            Labels::from_pairs([("job", "postgres"), ("instance", p.name.as_str())]),
        );
    }
    for r in &c.redis {
        let what = format!("collectors.redis {:?}", r.name);
        let password =
            read_password(&what, &r.password_file, &r.password_env).map_err(anyhow::Error::msg)?;
        let col = RedisCollector::new(
            RedisTarget {
                name: r.name.clone(),
                url: r.url.clone(),
                password,
                slowlog_arguments: r.slowlog_arguments,
                big_keys: r.big_keys.as_ref().map(|b| BigKeysOptions {
                    every: b.every.0,
                    max_keys: b.max_keys,
                    batch: b.batch,
                    pause: b.pause.0,
                    top: b.top,
                }),
            },
            redis_board.clone(),
        )
        .with_context(|| what.clone())?;
        checks.push(lookout_collect::AsyncCollector::name(&col).to_string());
        scheduler.add_async(
            Arc::new(col),
            Labels::from_pairs([("job", "redis"), ("instance", r.name.as_str())]),
        );
    }
    Ok((slow, redis_board, checks))
}

/// The remediator of `remediation:` (with the PostgreSQL collectors' connection settings
/// and its audit file in the data directory); `None` without rules.
fn remediator(settings: &Settings) -> anyhow::Result<Option<Arc<lookout_remediate::Remediator>>> {
    if settings.remediation.is_empty() {
        return Ok(None);
    }
    let mut postgres = std::collections::BTreeMap::new();
    for p in &settings.collectors.postgres {
        let what = format!("collectors.postgres {:?}", p.name);
        let password =
            read_password(&what, &p.password_file, &p.password_env).map_err(anyhow::Error::msg)?;
        postgres.insert(
            p.name.clone(),
            lookout_remediate::PgTarget {
                dsn: p.dsn.clone(),
                password,
            },
        );
    }
    let r = lookout_remediate::Remediator::new(lookout_remediate::Options {
        rules: settings.remediation.clone(),
        postgres,
        audit_file: Some(settings.data_dir.join("remediations.jsonl")),
    })?;
    Ok(Some(Arc::new(r)))
}

/// The roles and bearer tokens of `web:`, each token read from its file or variable.
pub(crate) fn access(settings: &Settings) -> anyhow::Result<lookout_server::Access> {
    let mut tokens = Vec::new();
    for t in &settings.bearer_tokens {
        let what = format!("web.bearer_tokens {:?}", t.name);
        let token = match (&t.token_file, &t.token_env) {
            (Some(f), _) => std::fs::read_to_string(f)
                .with_context(|| format!("{what}: reading token_file {}", f.display()))?,
            (None, Some(v)) => std::env::var(v)
                .with_context(|| format!("{what}: environment variable {v} is not set"))?,
            (None, None) => anyhow::bail!("{what}: no token_file or token_env"),
        };
        let token = token.trim().to_string();
        anyhow::ensure!(
            token.len() >= 16,
            "{what}: the token is shorter than 16 characters"
        );
        tokens.push(lookout_server::BearerToken {
            name: t.name.clone(),
            token,
            role: t.role,
        });
    }
    Ok(lookout_server::Access {
        roles: settings.roles.clone(),
        tokens,
        closed_probes: !settings.open_probes,
    })
}

/// The `--web.enable-*` switches of `lookout serve`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    /// `--web.enable-admin-api`.
    pub(crate) admin_api: bool,
    /// `--web.enable-remote-write-receiver`.
    pub(crate) remote_write_receiver: bool,
    /// `--web.enable-otlp-receiver`.
    pub(crate) otlp_receiver: bool,
}

/// Runs until SIGINT or SIGTERM.
/// How long an idle blocking-pool thread waits for work before it ends: longer than the
/// longest usual collection and evaluation interval.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(300);

pub(crate) fn run(
    settings: Settings,
    config_file: Option<std::path::PathBuf>,
    switches: Flags,
) -> anyhow::Result<()> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lookout")
        // Queries run on the blocking pool: the deepest one the parser accepts
        // (lookout_promql::limits) needs more than the default 2 MiB in debug builds.
        // Only what a thread touches is committed, so this costs address space only.
        .thread_stack_size(QUERY_STACK_SIZE)
        // Collectors and rule groups run on the blocking pool every interval (15 s by
        // default): with tokio's 10 s keep-alive every run started a fresh thread (clone,
        // new stack pages, a new allocator heap) and ended one, a visible share of an
        // idle Lookout's CPU. Threads kept for a few intervals are reused instead.
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let built = build(settings, config_file, switches).await?;
        let running = start(built);
        wait_for_signal().await;
        shutdown(running).await
    })
}

/// Every part, built and wired but not running yet.
struct Built {
    tsdb: Arc<Tsdb>,
    /// The store as collectors, rules and receivers write to it: the tsdb, with every
    /// commit also queued for the remote-write senders.
    store: Arc<dyn lookout_storage::Appendable>,
    remote_write: Option<Arc<RemoteWrite>>,
    scheduler: Scheduler,
    scrape: ScrapeManager,
    rules: Option<Arc<Manager>>,
    notifier: Option<Arc<lookout_notify::Notifier>>,
    reload: Reload,
    gate: Arc<lookout_server::QueryGate>,
    ready: Arc<AtomicBool>,
    listener: tokio::net::TcpListener,
    state: AppState,
    serve: lookout_server::ServeOptions,
    traces: Option<Arc<lookout_traces::TraceStore>>,
    /// OTLP/gRPC's listener and its largest request, when configured.
    grpc: Option<(tokio::net::TcpListener, usize)>,
}

/// Opens the store, makes the collectors, scrapers, rules, notifier and HTTP state, and
/// binds the listener; nothing runs yet.
async fn build(
    settings: Settings,
    config_file: Option<std::path::PathBuf>,
    switches: Flags,
) -> anyhow::Result<Built> {
    let mut registry = Registry::default();
    // Lookout's own metrics are written into its store once the registry is complete.
    let own = RegistryCell::default();
    let tsdb = open_storage(&settings, &mut registry)?;
    let traces = match &settings.traces {
        Some(t) => {
            let dir = settings.data_dir.join("traces");
            // Its index is read in the background: a restart does not wait for it.
            let store = lookout_traces::TraceStore::open_in_background(&dir, t.store.clone())
                .with_context(|| format!("opening the trace store in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "Trace store opened; its index loads in the background");
            registry.register_collector(Box::new(lookout_traces::metrics::Shared(
                store.span_metrics(),
            )));
            Some(Arc::new(store))
        }
        None => None,
    };
    let remote_write = remote_write(&settings, &mut registry)?;
    let store: Arc<dyn lookout_storage::Appendable> = match &remote_write {
        Some(rw) => rw.wrap(Arc::clone(&tsdb) as Arc<dyn lookout_storage::Appendable>),
        None => Arc::clone(&tsdb) as Arc<dyn lookout_storage::Appendable>,
    };
    let queryable = queryable(&settings, &tsdb, &mut registry)?;
    let Collecting {
        mut scheduler,
        mut scrape,
        view: collection,
        database_checks,
    } = collection(&settings, &mut registry, &own)?;
    let mut checks = health_checks(&tsdb, &collection, &settings.data_dir, database_checks);
    if let Some(rw) = &remote_write {
        checks.extend(remote_write_checks(rw));
    }
    if let Some(t) = &traces {
        checks.push(Arc::new(traces_check(Arc::clone(t))));
    }
    let engine = Engine::new(settings.engine.clone());

    let addr = &settings.listen_address;
    let listener = lookout_server::listen::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let grpc = match settings
        .traces
        .as_ref()
        .and_then(|t| Some((t.grpc_listen_address.as_ref()?, t.max_request_bytes)))
    {
        Some((addr, max)) => Some((
            lookout_server::listen::bind(addr)
                .await
                .with_context(|| format!("listening for OTLP/gRPC on {addr}"))?,
            max,
        )),
        None => None,
    };
    let external_url = settings
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));

    let notifier = crate::alerting::notifier(
        settings.notifier.as_ref(),
        &external_url,
        &settings.data_dir,
    )?;
    let forwarder = crate::alerting::forwarder(&settings.forward_to)?;
    let sink: Option<Arc<dyn lookout_rules::AlertSink>> =
        (notifier.is_some() || forwarder.is_some()).then(|| {
            Arc::new(lookout_notify::rules_sink::RuleSink {
                notifier: notifier.clone(),
                forwarder: forwarder.clone(),
                external_labels: settings.alerts.external_labels.clone(),
                external_url: external_url.clone(),
                relabel: settings.alerts.relabel.clone(),
                runtime: tokio::runtime::Handle::current(),
            }) as Arc<dyn lookout_rules::AlertSink>
        });
    let snapshots = if settings.snapshots.enabled {
        let store = lookout_diagnose::snapshots::SnapshotStore::open(
            &settings.data_dir.join("snapshots"),
            lookout_diagnose::snapshots::SnapshotOptions {
                retention: settings.snapshots.retention.0,
                max_snapshots: settings.snapshots.max_snapshots,
            },
        )
        .context("snapshots")?;
        Some(Arc::new(crate::snapshots::Snapshots::new(
            store,
            Arc::clone(&collection),
            Arc::clone(&queryable),
            engine.clone(),
        )))
    } else {
        None
    };
    // Alerts of the configured severities take a snapshot when they start firing.
    let sink = match &snapshots {
        Some(s) if !settings.snapshots.on_alert_severities.is_empty() => {
            Some(Arc::new(crate::snapshots::SnapshotSink {
                inner: sink,
                snapshots: Arc::clone(s),
                severities: settings.snapshots.on_alert_severities.clone(),
                external_url: external_url.clone(),
                runtime: tokio::runtime::Handle::current(),
                taken: Default::default(),
            }) as Arc<dyn lookout_rules::AlertSink>)
        }
        _ => sink,
    };
    // Remediation runs on the rules' firing alerts, before they go on.
    let remediation = remediator(&settings)?;
    let sink = match &remediation {
        Some(r) => Some(Arc::new(lookout_remediate::Sink {
            inner: sink,
            remediator: Arc::clone(r),
            runtime: tokio::runtime::Handle::current(),
        }) as Arc<dyn lookout_rules::AlertSink>),
        None => sink,
    };
    let rules = rules_manager(
        settings.rules.clone(),
        &settings.alerts,
        &engine,
        Arc::clone(&queryable),
        Arc::clone(&store),
        external_url.clone(),
        sink,
    )?;
    // A collector or scrape target whose source fails (or returns) has the rules reading
    // its series evaluated at once.
    if let Some(m) = &rules {
        let on_scheduler = Arc::clone(m);
        scheduler.on_change(Arc::new(move |names| on_scheduler.kick(names)));
        let m = Arc::clone(m);
        scrape.on_change(Arc::new(move |names| m.kick(names)));
    }
    if let Some(n) = &notifier {
        checks.push(Arc::new(notifier_check(Arc::clone(n))));
    }
    if !settings.clusters.is_empty() {
        let clusters = Arc::new(crate::clusters::Clusters::new(
            settings.clusters.clone(),
            engine.clone(),
            Arc::clone(&queryable),
        ));
        checks.extend(clusters.checks());
        registry.register_collector(Box::new(crate::clusters::Shared(clusters)));
    }
    if let Some(m) = &rules {
        checks.push(Arc::new(rules_check(Arc::clone(m))));
    }
    registry.register_collector(Box::new(crate::alerting::AlertingMetrics {
        rules: rules.clone(),
        notifier: notifier.clone(),
    }));
    let reload = reloader(
        rules.clone(),
        notifier.clone(),
        settings.notifier.clone(),
        external_url,
        settings.data_dir.join("notifier"),
    );
    let gate = Arc::new(lookout_server::QueryGate::new(settings.max_concurrency));
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        db: Arc::clone(&queryable),
        engine,
        gate: Arc::clone(&gate),
        checks,
        collection,
        registry: Arc::clone(own.get_or_init(|| Arc::new(registry))),
        ready: Arc::clone(&ready),
        build: build_info(),
        admin: switches
            .admin_api
            .then(|| Arc::new(TsdbAdmin(Arc::clone(&tsdb))) as Arc<dyn lookout_server::Admin>),
        info: Arc::new(Info {
            config_yaml: settings.yaml.clone(),
            flags: flags(&settings, config_file, switches),
            started: SystemTime::now(),
            retention: settings.retention_text.clone(),
            tsdb: Arc::clone(&tsdb),
        }),
        rules: rules.clone(),
        notifier: notifier.clone(),
        reload: Some(reload.clone()),
        audit: Arc::clone(&settings.serve.security.audit),
        external_labels: settings
            .alerts
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        otlp_options: settings.otlp.clone(),
        otlp: switches.otlp_receiver.then(|| Arc::clone(&store)),
        remote_write: switches.remote_write_receiver.then(|| Arc::clone(&store)),
        dashboards: Arc::new(
            lookout_dashboards::Library::open(settings.dashboards.clone()).context("dashboards")?,
        ),
        traces: traces.clone(),
        traces_max_request_bytes: settings.traces.as_ref().map_or(0, |t| t.max_request_bytes),
        remediation,
        snapshots: snapshots.map(|s| {
            Arc::new(crate::snapshots::Service(s)) as Arc<dyn lookout_server::SnapshotService>
        }),
    };
    Ok(Built {
        tsdb,
        store,
        remote_write,
        scheduler,
        scrape,
        rules,
        notifier,
        reload,
        gate,
        ready,
        listener,
        state,
        serve: settings.serve,
        traces,
        grpc,
    })
}

/// Opens the data directory and runs the maintenance a restart may owe.
fn open_storage(settings: &Settings, registry: &mut Registry) -> anyhow::Result<Arc<Tsdb>> {
    let data = &settings.data_dir;
    let opened = std::time::Instant::now();
    let tsdb = Arc::new(
        Tsdb::open(data, settings.storage.clone(), registry)
            .with_context(|| format!("opening the data directory {}", data.display()))?,
    );
    tracing::info!(path = %data.display(), elapsed = ?opened.elapsed(), "Storage opened");
    if let Err(e) = tsdb.maintain(now_ms()) {
        tracing::warn!(error = %e, "Storage maintenance failed");
    }
    Ok(tsdb)
}

/// The remote-write senders of `remote_write:`, their queues opened (resuming where
/// they stopped); `None` without remotes.
fn remote_write(
    settings: &Settings,
    registry: &mut Registry,
) -> anyhow::Result<Option<Arc<RemoteWrite>>> {
    if settings.remote_write.is_empty() {
        return Ok(None);
    }
    let sync_every = match settings.storage.sync {
        lookout_tsdb::SyncPolicy::Always => Duration::ZERO,
        lookout_tsdb::SyncPolicy::Interval(d) => d,
    };
    let opts = lookout_remote::send::Options {
        dir: settings.data_dir.join("remote_write"),
        external_labels: settings
            .alerts
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        remotes: settings.remote_write.clone(),
        sync_every,
        segment_bytes: 64 << 20,
        metadata: Arc::new(|| {
            lookout_collect::builtin_metadata()
                .into_iter()
                .map(|m| lookout_remote::send::MetricMeta {
                    name: m.name.to_string(),
                    kind: m.kind,
                    help: m.help.to_string(),
                    unit: String::new(),
                })
                .collect()
        }),
    };
    let rw = RemoteWrite::new(opts, registry).context("remote_write")?;
    for r in &settings.remote_write {
        tracing::info!(remote = %r.name, url = %r.url, "Remote write on");
    }
    Ok(Some(Arc::new(rw)))
}

/// What queries read: the store, with the `remote_read:` stores merged in when there
/// are any.
fn queryable(
    settings: &Settings,
    tsdb: &Arc<Tsdb>,
    registry: &mut Registry,
) -> anyhow::Result<Arc<dyn lookout_storage::Queryable>> {
    let local = Arc::clone(tsdb) as Arc<dyn lookout_storage::Queryable>;
    if settings.remote_read.is_empty() {
        return Ok(local);
    }
    let start_of = Arc::clone(tsdb);
    let merged = lookout_remote::read_client::Merged::new(
        local,
        settings.remote_read.clone(),
        settings
            .alerts
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Arc::new(move || start_of.min_time()),
        tokio::runtime::Handle::current(),
        registry,
    )
    .context("remote_read")?;
    for r in &settings.remote_read {
        tracing::info!(remote = %r.name, url = %r.url, read_recent = r.read_recent, "Remote read on");
    }
    Ok(Arc::new(merged))
}

/// One `remote_write/<name>` check per remote: degraded when behind by more than its
/// `max_lag`.
fn remote_write_checks(rw: &Arc<RemoteWrite>) -> Vec<Arc<dyn HealthCheck>> {
    rw.statuses()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let rw = Arc::clone(rw);
            Arc::new(FnCheck::new(
                &format!("remote_write/{}", s.name),
                false,
                move || {
                    let Some(s) = rw.statuses().into_iter().nth(i) else {
                        return CheckResult::new(HealthStatus::Unknown, "remote gone");
                    };
                    let behind = format!(
                        "{} samples pending ({} bytes queued), behind by {}",
                        s.pending,
                        s.backlog_bytes,
                        lookout_model::format_duration(Duration::from_secs(s.lag.as_secs()))
                    );
                    let error = s
                        .last_error
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default();
                    if s.lag > s.max_lag {
                        CheckResult::new(
                            HealthStatus::Degraded,
                            format!(
                                "{behind}, more than max_lag {}{error}",
                                lookout_model::format_duration(s.max_lag)
                            ),
                        )
                    } else {
                        CheckResult::new(
                            HealthStatus::Healthy,
                            format!("{} ok: {behind}{error}", s.url),
                        )
                    }
                },
            )) as Arc<dyn HealthCheck>
        })
        .collect()
}

/// The built-in collectors and the scrape jobs, not running yet.
struct Collecting {
    scheduler: Scheduler,
    scrape: ScrapeManager,
    /// What the server shows of them.
    view: Arc<dyn lookout_server::CollectionView>,
    /// The collectors that get a health check of their own.
    database_checks: Vec<String>,
}

/// The built-in collectors and the scrape jobs.
fn collection(
    settings: &Settings,
    registry: &mut Registry,
    own: &RegistryCell,
) -> anyhow::Result<Collecting> {
    let mut scheduler = Scheduler::new(settings.scheduler.clone(), registry);
    let host = hostname();
    if settings.collectors.host.enabled {
        scheduler.add(
            Arc::new(
                HostCollector::default()
                    .with_textfile_dir(settings.collectors.host.textfile_directory.clone()),
            ),
            Labels::from_pairs([("job", "node"), ("instance", host.as_str())]),
        );
    }
    if settings.collectors.process.enabled {
        scheduler.add(
            Arc::new(OwnMetrics::new(true, Arc::clone(own))),
            Labels::from_pairs([("job", "lookout"), ("instance", host.as_str())]),
        );
    }
    let (postgres, redis, database_checks) =
        add_database_collectors(&settings.collectors, &mut scheduler)?;
    let scrape = ScrapeManager::new(settings.scrape_configs.clone(), settings.scrape_defaults)
        .map_err(anyhow::Error::msg)?
        .with_metrics(scheduler.metrics());
    registry.register_collector(Box::new(SelfMetrics));
    let view: Arc<dyn lookout_server::CollectionView> = Arc::new(Collection {
        collectors: scheduler.board(),
        targets: scrape.board(),
        postgres,
        redis,
    });
    Ok(Collecting {
        scheduler,
        scrape,
        view,
        database_checks,
    })
}

/// The storage, collectors and disk-space checks, and one per database collector.
fn health_checks(
    tsdb: &Arc<Tsdb>,
    collection: &Arc<dyn lookout_server::CollectionView>,
    data_dir: &std::path::Path,
    database_checks: Vec<String>,
) -> Vec<Arc<dyn HealthCheck>> {
    let storage_db = Arc::clone(tsdb);
    let mut checks: Vec<Arc<dyn HealthCheck>> = vec![
        Arc::new(FnCheck::new("storage", true, move || {
            match storage_db.check() {
                Ok(()) => {
                    // Head figures only: `stats` walks every block, too much for a probe.
                    let (series, samples) = storage_db.head_counts();
                    let warnings = storage_db.warnings();
                    if warnings.is_empty() {
                        CheckResult::new(
                            HealthStatus::Healthy,
                            format!(
                                "writable, WAL ok; {series} series, {samples} samples in memory"
                            ),
                        )
                    } else {
                        CheckResult::new(HealthStatus::Degraded, warnings.join("; "))
                    }
                }
                Err(e) => CheckResult::new(HealthStatus::Unhealthy, e),
            }
        })),
        Arc::new(CollectorsCheck::new(Arc::clone(collection))),
        Arc::new(DiskSpaceCheck::new(data_dir.to_path_buf())),
    ];
    for name in database_checks {
        checks.push(Arc::new(CollectorCheck::new(Arc::clone(collection), name)));
    }
    checks
}

/// Build facts for `/api/v1/status/buildinfo`.
fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        revision: option_env!("LOOKOUT_REVISION").unwrap_or("").into(),
        branch: option_env!("LOOKOUT_BRANCH").unwrap_or("").into(),
        build_user: option_env!("LOOKOUT_BUILD_USER").unwrap_or("").into(),
        build_date: option_env!("LOOKOUT_BUILD_DATE").unwrap_or("").into(),
        toolchain: format!("rust{}", env!("CARGO_PKG_RUST_VERSION")),
    }
}

/// The command-line flags `/api/v1/status/flags` reports, under Prometheus's names.
fn flags(
    settings: &Settings,
    config_file: Option<std::path::PathBuf>,
    switches: Flags,
) -> Vec<(String, String)> {
    vec![
        (
            "config.file".into(),
            config_file
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "storage.tsdb.path".into(),
            settings.data_dir.display().to_string(),
        ),
        (
            "storage.tsdb.retention.time".into(),
            settings.retention_text.clone(),
        ),
        (
            "storage.tsdb.retention.size".into(),
            settings.retention_size.to_string(),
        ),
        ("web.listen-address".into(), settings.listen_address.clone()),
        (
            "web.enable-admin-api".into(),
            switches.admin_api.to_string(),
        ),
        (
            "web.enable-remote-write-receiver".into(),
            switches.remote_write_receiver.to_string(),
        ),
        (
            "web.enable-otlp-receiver".into(),
            switches.otlp_receiver.to_string(),
        ),
    ]
}

/// Everything running, and how to stop it.
struct Running {
    tsdb: Arc<Tsdb>,
    remote_write: Option<Arc<RemoteWrite>>,
    senders: Vec<tokio::task::JoinHandle<()>>,
    gate: Arc<lookout_server::QueryGate>,
    stop: watch::Sender<bool>,
    collectors: tokio::task::JoinHandle<()>,
    scraping: tokio::task::JoinHandle<()>,
    rule_eval: Option<tokio::task::JoinHandle<()>>,
    notifying: Option<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    grpc_server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    traces: Option<(Arc<lookout_traces::TraceStore>, tokio::task::JoinHandle<()>)>,
}

/// Starts the collectors, scrapers, rules, notifier and HTTP server; marks ready.
fn start(b: Built) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let collectors = b.scheduler.spawn(Arc::clone(&b.store), stop_rx.clone());
    let scraping = b.scrape.spawn(Arc::clone(&b.store), stop_rx.clone());
    let senders = b
        .remote_write
        .as_ref()
        .map(|rw| rw.spawn(stop_rx.clone()))
        .unwrap_or_default();
    let rule_eval = b.rules.as_ref().map(|m| m.spawn(stop_rx.clone()));
    let notifying = b.notifier.as_ref().map(|n| n.spawn(stop_rx.clone()));
    let grpc_server = b
        .grpc
        .zip(b.traces.clone())
        .map(|((listener, max), store)| {
            let mut stop = stop_rx.clone();
            let serve = lookout_server::ServeOptions {
                http2: true,
                max_body_bytes: max,
                ..b.serve.clone()
            };
            if let Ok(a) = listener.local_addr() {
                tracing::info!(address = %a, "OTLP/gRPC traces receiver listening");
            }
            tokio::spawn(async move {
                lookout_server::serve_with(
                    listener,
                    lookout_server::otlp_grpc::router(store, max),
                    async move {
                        let _ = stop.changed().await;
                    },
                    &serve,
                )
                .await
            })
        });
    let traces = b.traces.map(|t| {
        (
            Arc::clone(&t),
            tokio::spawn(maintain_traces(t, stop_rx.clone())),
        )
    });
    tokio::spawn(reload_on_sighup(b.reload, Arc::clone(&b.serve.security)));
    let mut server_stop = stop_rx;
    let bound = b.listener.local_addr().ok();
    let security = Arc::clone(&b.serve.security);
    let web = security.current();
    let (listener, state, serve) = (b.listener, b.state, b.serve);
    let server = tokio::spawn(async move {
        lookout_server::serve_with(
            listener,
            lookout_server::router(state),
            async move {
                let _ = server_stop.changed().await;
            },
            &serve,
        )
        .await
    });
    b.ready.store(true, Ordering::Release);
    if let Some(bound) = bound {
        let scheme = if web.tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %bound, tls = web.tls.is_some(), "listening on {scheme}://{bound}");
    }
    if web.users.is_empty() && security.access.tokens.is_empty() {
        tracing::warn!(
            "No basic-auth users (--web.config.file) and no bearer tokens (web.bearer_tokens): anyone who reaches this port can read and change everything"
        );
    }
    Running {
        tsdb: b.tsdb,
        remote_write: b.remote_write,
        senders,
        gate: b.gate,
        stop,
        collectors,
        scraping,
        rule_eval,
        notifying,
        server,
        grpc_server,
        traces,
    }
}

/// Keeps the trace store's promises: an fsync every second, retention every minute.
async fn maintain_traces(store: Arc<lookout_traces::TraceStore>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let s = Arc::clone(&store);
        let retention = n.is_multiple_of(60);
        n += 1;
        let done = tokio::task::spawn_blocking(move || {
            s.sync()?;
            if retention {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                let dropped = s.maintain(now)?;
                if dropped > 0 {
                    tracing::info!(segments = dropped, "Trace retention dropped old segments");
                }
            }
            Ok::<_, lookout_traces::Error>(())
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "Trace store maintenance");
        }
    }
}

/// Stops everything in reverse order, each part given [`SHUTDOWN_GRACE`], and closes
/// the store.
async fn shutdown(r: Running) -> anyhow::Result<()> {
    tracing::info!(running_queries = r.gate.running(), "Shutting down");
    r.gate.cancel_all();
    let _ = r.stop.send(true);
    let _ = r.collectors.await;
    // Target loops write their staleness markers on the way out; a scrape in flight may
    // hold one up to its timeout, so do not wait longer than the grace period.
    if tokio::time::timeout(SHUTDOWN_GRACE, r.scraping)
        .await
        .is_err()
    {
        tracing::warn!("Scrapes did not finish in time; closing anyway");
    }
    if let Some(t) = r.rule_eval {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, t).await;
    }
    if let Some(t) = r.notifying {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, t).await;
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, r.server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("In-flight requests did not finish in time; closing anyway"),
    }
    if let Some(g) = r.grpc_server
        && tokio::time::timeout(SHUTDOWN_GRACE, g).await.is_err()
    {
        tracing::warn!("OTLP/gRPC requests did not finish in time; closing anyway");
    }
    // A sender finishes the request in flight so the receiver and the queue's position
    // agree; what is left waits in the queue for the next start.
    for t in r.senders {
        if tokio::time::timeout(SHUTDOWN_GRACE, t).await.is_err() {
            tracing::warn!(
                "A remote-write request did not finish in time; it is sent again at the next start"
            );
        }
    }
    if let Some(rw) = &r.remote_write {
        rw.sync();
    }
    if let Some((store, task)) = r.traces {
        let _ = task.await;
        if let Err(e) = store.sync() {
            tracing::warn!(error = %e, "Syncing the trace store");
        }
    }
    r.tsdb.close().context("closing storage")?;
    tracing::info!("Stopped");
    Ok(())
}

/// The rule manager for the rule packs and `rule_files`, loaded (bad files stop
/// start-up), or `None` when there are neither.
fn rules_manager(
    opts: Option<ManagerOptions>,
    alerts: &AlertSettings,
    engine: &Engine,
    db: Arc<dyn lookout_storage::Queryable>,
    out: Arc<dyn lookout_storage::Appendable>,
    external_url: String,
    sink: Option<Arc<dyn lookout_rules::AlertSink>>,
) -> anyhow::Result<Option<Arc<Manager>>> {
    let Some(opts) = opts else {
        return Ok(None);
    };
    let m = Manager::new(
        opts,
        EvalContext {
            engine: engine.clone(),
            db,
            external_labels: alerts.external_labels.clone(),
            external_url,
        },
        out,
        sink,
    );
    m.reload(now_ms())
        .map_err(|errs| anyhow::anyhow!("loading rule files:\n{}", errs.join("\n")))?;
    Ok(Some(Arc::new(m)))
}

/// The `traces` health check, gating readiness while the trace index loads (appends are
/// taken meanwhile; searches would miss what is not read yet).
fn traces_check(store: Arc<lookout_traces::TraceStore>) -> impl HealthCheck {
    FnCheck::new("traces", true, move || {
        let s = store.stats();
        let mut figures = format!(
            "{} spans in {} segment files, {} bytes",
            s.spans, s.segments, s.bytes
        );
        if s.damaged > 0 {
            // Logged when found; what was readable is served.
            figures += &format!("; {} damaged records skipped", s.damaged);
        }
        if s.loading {
            CheckResult::new(
                HealthStatus::Unhealthy,
                format!("loading the trace index: {figures} read so far"),
            )
        } else {
            CheckResult::new(HealthStatus::Healthy, figures)
        }
    })
}

/// The `rules` health check: a failed reload or failing rules degrade it.
fn rules_check(m: Arc<Manager>) -> impl HealthCheck {
    FnCheck::new("rules", false, move || {
        let st = m.reload_status();
        if !st.success {
            return CheckResult::new(
                HealthStatus::Degraded,
                format!(
                    "the last reload failed, the previous rules keep running: {}",
                    st.errors.join("; ")
                ),
            );
        }
        let failing = m.failing_rules();
        if !failing.is_empty() {
            let list: Vec<String> = failing.iter().map(|(n, e)| format!("{n}: {e}")).collect();
            return CheckResult::new(
                HealthStatus::Degraded,
                format!("{} rule(s) failing: {}", failing.len(), list.join("; ")),
            );
        }
        let sizes = m.map_groups(|g| g.rules.len());
        let rules: usize = sizes.iter().sum();
        let firing = m
            .alerts()
            .iter()
            .filter(|a| a.state == lookout_rules::AlertState::Firing)
            .count();
        CheckResult::new(
            HealthStatus::Healthy,
            format!(
                "{} groups, {rules} rules, {firing} alerts firing",
                sizes.len()
            ),
        )
    })
}

/// The `notifier` health check: a delivery that failed after all retries in the last
/// ten minutes degrades it.
fn notifier_check(n: Arc<lookout_notify::Notifier>) -> impl HealthCheck {
    use std::sync::atomic::Ordering::Relaxed;
    FnCheck::new("notifier", false, move || {
        let now = now_ms();
        if let Some((at, e)) = n.last_error.lock().expect("lock").clone()
            && now - at < 600_000
        {
            return CheckResult::new(
                HealthStatus::Degraded,
                format!("a notification failed: {e}"),
            );
        }
        let (alerts, silences, damaged) = n.with(|c| {
            let silences = c
                .silences
                .list()
                .iter()
                .filter(|s| s.state(now) == lookout_notify::silence::SilenceState::Active)
                .count();
            (c.alert_count(), silences, c.damaged_state().to_vec())
        });
        if !damaged.is_empty() {
            return CheckResult::new(
                HealthStatus::Degraded,
                format!("state file(s) damaged at start: {}", damaged.join("; ")),
            );
        }
        CheckResult::new(
            HealthStatus::Healthy,
            format!(
                "{alerts} alerts, {silences} active silences; {} notifications sent, {} failed",
                n.sent.load(Relaxed),
                n.failed.load(Relaxed)
            ),
        )
    })
}

/// What SIGHUP and `POST /-/reload` run: the rule files and the notifier configuration
/// are read again; a bad file keeps what runs and is reported.
type Reload = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

fn reloader(
    rules: Option<Arc<Manager>>,
    notifier: Option<Arc<lookout_notify::Notifier>>,
    settings: Option<NotifierSettings>,
    external_url: String,
    state_dir: std::path::PathBuf,
) -> Reload {
    Arc::new(move || {
        let mut errs = Vec::new();
        if let Some(m) = &rules
            && let Err(e) = m.reload(now_ms())
        {
            errs.extend(e);
        }
        if let (Some(n), Some(s)) = (&notifier, &settings) {
            match crate::alerting::core(s, &external_url, Some(state_dir.clone())) {
                Ok((core, text)) => {
                    n.replace(core, text);
                    tracing::info!("Notifier configuration reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "Notifier configuration not reloaded; the previous one keeps running");
                    errs.push(format!("{e:#}"));
                }
            }
        }
        errs
    })
}

/// Reloads on every SIGHUP.
async fn reload_on_sighup(reload: Reload, web: Arc<lookout_server::WebSecurity>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("Cannot listen for SIGHUP; reload with POST /-/reload");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading rules, the notifier and web configurations");
        web.reload();
        let r = Arc::clone(&reload);
        let _ = tokio::task::spawn_blocking(move || r()).await;
    }
}

/// Status facts for the HTTP API.
struct Info {
    config_yaml: String,
    flags: Vec<(String, String)>,
    started: SystemTime,
    retention: String,
    tsdb: Arc<Tsdb>,
}

impl lookout_server::ServerInfo for Info {
    fn config_yaml(&self) -> String {
        self.config_yaml.clone()
    }

    fn flags(&self) -> Vec<(String, String)> {
        self.flags.clone()
    }

    fn runtime_info(&self) -> serde_json::Value {
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let threads = std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0);
        serde_json::json!({
            "startTime": crate::tsdb_cmd::rfc3339(started),
            "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
            "reloadConfigSuccess": true,
            "lastConfigTime": crate::tsdb_cmd::rfc3339(started),
            "corruptionCount": self.tsdb.wal_corruptions(),
            "goroutineCount": threads,
            "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "GOMEMLIMIT": i64::MAX,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": self.retention,
        })
    }

    fn tsdb_status(&self, limit: usize) -> lookout_tsdb::HeadStatus {
        self.tsdb.head_status(limit)
    }

    fn metadata(&self) -> Vec<lookout_server::MetricMetadata> {
        lookout_collect::builtin_metadata()
            .into_iter()
            .map(|m| lookout_server::MetricMetadata {
                metric: m.name.to_string(),
                kind: m.kind.as_str().to_string(),
                help: m.help.to_string(),
                unit: String::new(),
            })
            .collect()
    }
}

/// What the server shows of collection, over the scheduler's and scrapers' boards.
struct Collection {
    collectors: lookout_collect::StatusBoard,
    targets: lookout_collect::scrape::TargetsBoard,
    postgres: PostgresBoard,
    redis: RedisBoard,
}

impl lookout_server::CollectionView for Collection {
    fn collectors(&self) -> Vec<lookout_collect::CollectorStatus> {
        self.collectors.snapshot()
    }

    fn targets(&self) -> Vec<lookout_collect::scrape::TargetStatus> {
        self.targets.snapshot()
    }

    fn slow_queries(&self) -> Vec<lookout_collect::Statement> {
        self.postgres.statements()
    }

    fn postgres_sessions(&self) -> Vec<lookout_collect::PgSessions> {
        self.postgres.sessions()
    }

    fn postgres_advisor(&self) -> Vec<lookout_collect::PgAdvisorReport> {
        self.postgres.advisor()
    }

    fn redis_diagnostics(&self) -> Vec<lookout_model::status::RedisDiagnostics> {
        self.redis.diagnostics()
    }
}

/// The admin API over the tsdb.
struct TsdbAdmin(Arc<Tsdb>);

impl lookout_server::Admin for TsdbAdmin {
    fn delete_series(
        &self,
        selectors: &[Vec<lookout_model::Matcher>],
        start: i64,
        end: i64,
    ) -> lookout_storage::Result<()> {
        for m in selectors {
            let n = self.0.delete_series(m, start, end)?;
            tracing::info!(
                series = n,
                start,
                end,
                "Series deleted through the admin API"
            );
        }
        Ok(())
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
