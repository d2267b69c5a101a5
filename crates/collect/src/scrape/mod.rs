//! Scraping Prometheus targets, as Prometheus does: `scrape_configs` with static and file
//! service discovery, target relabeling, one loop per target on its own interval and
//! timeout, content negotiation (OpenMetrics or text), `honor_labels`,
//! `honor_timestamps`, metric relabeling, sample and label limits, the report series
//! (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling`, `scrape_series_added`) and staleness markers
//! when a series, a scrape or a whole target goes away (the last three through the
//! pipeline the built-in collectors share, `crate::pipeline`). Samples go only through
//! [`Appendable`].
//!
//! A target that fails hard is noticed between scrapes: each loop holds an idle TCP
//! connection to its target (not through a proxy) and, when the target closes it,
//! connects again at once; a refused connection (the process is gone) scrapes the target
//! at once, so `up 0` is written within moments rather than at the next tick. A server
//! that merely closes idle connections is connected to again, without a scrape. When a
//! target's `up` changes, the change hook ([`ScrapeManager::on_change`]) has the rules
//! reading `up` evaluated at once.

mod config;
mod discovery;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use lookout_expfmt::{ACCEPT_HEADER, format_for_content_type};
use lookout_model::relabel::process;
pub use lookout_model::status::{Target, TargetStatus};
use lookout_model::{Exemplar, Labels, METRIC_NAME_LABEL, now_ms};
use lookout_storage::Appendable;
use tokio::sync::watch;

use crate::pipeline::{Pipeline, Run, RunMetrics};
use crate::scheduler::ChangeHook;

pub use config::{
    BasicAuth, FileSdConfig, PromDuration, Scheme, ScrapeConfig, ScrapeProtocol, StaticConfig,
    TlsConfig,
};
pub use discovery::{TargetGroup, read_file_sd};

/// Intervals that apply where a job sets none (Prometheus's `global:` section).
#[derive(Debug, Clone, Copy)]
pub struct ScrapeDefaults {
    /// `global.scrape_interval` (default 1m in Prometheus; Lookout's default 15s).
    pub interval: Duration,
    /// `global.scrape_timeout` (default 10s).
    pub timeout: Duration,
}

/// Every target's state, shared with the HTTP API.
#[derive(Debug, Clone, Default)]
pub struct TargetsBoard(Arc<RwLock<BTreeMap<(String, String), TargetStatus>>>);

impl TargetsBoard {
    /// Every target, by job and URL.
    pub fn snapshot(&self) -> Vec<TargetStatus> {
        self.0
            .read()
            .expect("lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    fn key(job: &str, t: &Target) -> (String, String) {
        (job.to_string(), format!("{} {}", t.url, t.labels))
    }

    fn set(&self, job: &str, s: TargetStatus) {
        self.0
            .write()
            .expect("lock poisoned")
            .insert(Self::key(job, &s.target), s);
    }

    fn remove(&self, job: &str, t: &Target) {
        self.0
            .write()
            .expect("lock poisoned")
            .remove(&Self::key(job, t));
    }
}

/// Applies a job's target relabeling to the groups discovery found.
pub fn targets(
    cfg: &ScrapeConfig,
    groups: &[TargetGroup],
    defaults: ScrapeDefaults,
) -> Vec<Target> {
    let (interval, timeout) = cfg.timing(defaults.interval, defaults.timeout);
    let mut out = Vec::new();
    for g in groups {
        for addr in &g.targets {
            let mut pairs: BTreeMap<String, String> = g.labels.clone();
            pairs.insert("__address__".into(), addr.clone());
            let mut set_default = |k: &str, v: String| {
                pairs.entry(k.to_string()).or_insert(v);
            };
            set_default("job", cfg.job_name.clone());
            set_default("__scheme__", cfg.scheme.as_str().to_string());
            set_default("__metrics_path__", cfg.metrics_path.clone());
            set_default(
                "__scrape_interval__",
                lookout_model::format_duration(interval),
            );
            set_default(
                "__scrape_timeout__",
                lookout_model::format_duration(timeout),
            );
            for (k, v) in &cfg.params {
                if let Some(first) = v.first() {
                    set_default(&format!("__param_{k}"), first.clone());
                }
            }
            let discovered = Labels::from_pairs(pairs);
            let Some(ls) = process(&discovered, &cfg.relabel_configs) else {
                continue;
            };
            let Some(address) = ls.get("__address__").filter(|a| !a.is_empty()) else {
                continue;
            };
            let scheme = ls.get("__scheme__").unwrap_or("http");
            let path = ls.get("__metrics_path__").unwrap_or("/metrics");
            let mut query: Vec<(String, String)> = Vec::new();
            for (k, v) in &cfg.params {
                let over = ls.get(&format!("__param_{k}"));
                match over {
                    Some(o) => query.push((k.clone(), o.to_string())),
                    None => query.extend(v.iter().map(|x| (k.clone(), x.clone()))),
                }
            }
            for l in ls.iter() {
                if let Some(k) = l.name.strip_prefix("__param_")
                    && !cfg.params.contains_key(k)
                {
                    query.push((k.to_string(), l.value.clone()));
                }
            }
            let mut url = format!("{scheme}://{address}{path}");
            if !query.is_empty() {
                let q: Vec<String> = query
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&q.join("&"));
            }
            let iv = ls
                .get("__scrape_interval__")
                .and_then(|v| lookout_model::parse_duration(v).ok())
                .unwrap_or(interval);
            let to = ls
                .get("__scrape_timeout__")
                .and_then(|v| lookout_model::parse_duration(v).ok())
                .unwrap_or(timeout);
            let instance = ls.get("instance").unwrap_or(address).to_string();
            let mut final_pairs: Vec<(String, String)> = ls
                .iter()
                .filter(|l| !l.name.starts_with("__"))
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            final_pairs.push(("instance".into(), instance));
            out.push(Target {
                labels: Labels::from_pairs(final_pairs),
                discovered,
                url,
                interval: iv,
                timeout: to,
            });
        }
    }
    out
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Makes rustls's `ring` provider the process default (Lookout builds rustls without
/// aws-lc). Every HTTP client in the process needs it; calling it again is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a job's HTTP client: authentication is added per request; TLS (`tls`),
/// `proxy_url` and compressed responses here.
fn client(cfg: &ScrapeConfig) -> Result<reqwest::Client, String> {
    install_tls_provider();
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("Lookout/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(10))
        .gzip(cfg.enable_compression);
    if let Some(p) = &cfg.proxy_url {
        b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy_url {p:?}: {e}"))?);
    }
    if let Some(tls) = &cfg.tls_config {
        b = b.use_preconfigured_tls(lookout_http::client_config(tls)?);
    }
    b.build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// What one job needs at scrape time.
struct Job {
    cfg: ScrapeConfig,
    client: reqwest::Client,
}

/// Runs every job's discovery and target loops.
pub struct ScrapeManager {
    jobs: Vec<Arc<Job>>,
    defaults: ScrapeDefaults,
    board: TargetsBoard,
    metrics: RunMetrics,
    hook: Option<ChangeHook>,
}

impl std::fmt::Debug for ScrapeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeManager")
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

impl ScrapeManager {
    /// Checks every job and builds its HTTP client; errors name the job.
    pub fn new(configs: Vec<ScrapeConfig>, defaults: ScrapeDefaults) -> Result<Self, String> {
        let mut names = HashSet::new();
        let mut jobs = Vec::new();
        for cfg in configs {
            cfg.validate(defaults.interval, defaults.timeout)?;
            if !names.insert(cfg.job_name.clone()) {
                return Err(format!(
                    "scrape_configs: found multiple scrape configs with job name {:?}",
                    cfg.job_name
                ));
            }
            let client =
                client(&cfg).map_err(|e| format!("scrape_configs {:?}: {e}", cfg.job_name))?;
            jobs.push(Arc::new(Job { cfg, client }));
        }
        Ok(Self {
            jobs,
            defaults,
            board: TargetsBoard::default(),
            metrics: RunMetrics::default(),
            hook: None,
        })
    }

    /// Calls `hook` with `["up"]` when a target goes down or comes back, so the rules
    /// reading `up` are evaluated at once.
    pub fn on_change(&mut self, hook: ChangeHook) {
        self.hook = Some(hook);
    }

    /// Records every scrape in `metrics` (labelled `job/instance`), the collectors'
    /// figures; without it the figures are kept but not exposed.
    pub fn with_metrics(mut self, metrics: RunMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The targets board the loops update.
    pub fn board(&self) -> TargetsBoard {
        self.board.clone()
    }

    /// Starts discovery for every job; runs until `shutdown` turns true, then marks every
    /// target's series stale.
    pub fn spawn(
        self,
        db: Arc<dyn Appendable>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut handles = Vec::new();
        for job in self.jobs {
            handles.push(tokio::spawn(run_job(
                job,
                self.defaults,
                Arc::clone(&db),
                (self.board.clone(), self.metrics.clone(), self.hook.clone()),
                shutdown.clone(),
            )));
        }
        tokio::spawn(async move {
            for h in handles {
                let _ = h.await;
            }
        })
    }
}

/// How often file_sd files are checked for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

/// What every target loop reports to: the targets board, the run metrics and the change
/// hook.
type Reporting = (TargetsBoard, RunMetrics, Option<ChangeHook>);

async fn run_job(
    job: Arc<Job>,
    defaults: ScrapeDefaults,
    db: Arc<dyn Appendable>,
    reporting: Reporting,
    mut shutdown: watch::Receiver<bool>,
) {
    let board = reporting.0.clone();
    let name = job.cfg.job_name.clone();
    let mut running: HashMap<String, (Target, watch::Sender<bool>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut last_fingerprint = None;
    let mut last_read = Instant::now();
    let mut last_good = HashMap::new();
    let refresh = job
        .cfg
        .file_sd_configs
        .iter()
        .filter_map(|f| f.refresh_interval.map(|d| d.0))
        .min()
        .unwrap_or(Duration::from_secs(300));
    loop {
        let fingerprint = discovery::fingerprint(&job.cfg.file_sd_configs);
        if last_fingerprint.as_ref() != Some(&fingerprint) || last_read.elapsed() >= refresh {
            last_fingerprint = Some(fingerprint);
            last_read = Instant::now();
            let groups = discovery::groups(&job.cfg, &mut last_good);
            let wanted: Vec<Target> = targets(&job.cfg, &groups, defaults);
            let keys: HashSet<String> = wanted
                .iter()
                .map(|t| format!("{} {}", t.url, t.labels))
                .collect();
            // Stop targets that went away (their loops write staleness markers).
            let gone: Vec<String> = running
                .keys()
                .filter(|k| !keys.contains(*k))
                .cloned()
                .collect();
            for k in gone {
                if let Some((t, stop, h)) = running.remove(&k) {
                    let _ = stop.send(true);
                    let _ = h.await;
                    board.remove(&name, &t);
                }
            }
            for t in wanted {
                let k = format!("{} {}", t.url, t.labels);
                if running.contains_key(&k) {
                    continue;
                }
                tracing::info!(job = %name, url = %t.url, "Scrape target added");
                let (tx, rx) = watch::channel(false);
                let h = tokio::spawn(scrape_loop(
                    Arc::clone(&job),
                    t.clone(),
                    Arc::clone(&db),
                    reporting.clone(),
                    rx,
                ));
                running.insert(k, (t, tx, h));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FILE_POLL) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for (_, (_, stop, h)) in running {
        let _ = stop.send(true);
        let _ = h.await;
    }
}

async fn scrape_loop(
    job: Arc<Job>,
    target: Target,
    db: Arc<dyn Appendable>,
    (board, metrics, hook): Reporting,
    mut stop: watch::Receiver<bool>,
) {
    let name = job.cfg.job_name.clone();
    let refused = Arc::new(tokio::sync::Notify::new());
    let watcher = match (&job.cfg.proxy_url, host_port(&target.url)) {
        (None, Some(addr)) => Some(tokio::spawn(watch_connection(
            addr,
            Arc::clone(&refused),
            stop.clone(),
        ))),
        _ => None,
    };
    let mut was_up: Option<bool> = None;
    board.set(
        &name,
        TargetStatus {
            job: name.clone(),
            target: target.clone(),
            health: "unknown",
            last_error: String::new(),
            last_scrape: None,
            last_duration: None,
        },
    );
    // Spread targets over the interval as Prometheus does, by a hash of the target, but
    // start within two seconds so a new target shows up quickly.
    let spread = target
        .interval
        .min(Duration::from_secs(2))
        .as_millis()
        .max(1) as u64;
    let offset = Duration::from_millis(
        std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            &target.url,
        ) % spread,
    );
    tokio::select! {
        _ = tokio::time::sleep(offset) => {}
        _ = stop.changed() => {}
    }
    let mut ticker = tokio::time::interval(target.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pipeline = Pipeline::new(target.labels.clone());
    let source = format!("{name}/{}", target.labels.get("instance").unwrap_or(""));
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = refused.notified() => {
                tracing::debug!(job = %name, url = %target.url, "Target refused connections between scrapes; scraping now");
            }
            _ = stop.changed() => break,
        }
        let started = Instant::now();
        let started_at = SystemTime::now();
        let t = now_ms();
        let result = scrape_once(&job, &target, t).await;
        let elapsed = started.elapsed();
        let (samples, exemplars, created, histograms, scraped, error) = match result {
            Ok(s) => (
                s.samples,
                s.exemplars,
                s.created,
                s.histograms,
                s.exposed,
                None,
            ),
            Err(e) => (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0, Some(e)),
        };
        let run = Run {
            samples,
            exemplars,
            created,
            histograms,
            scraped,
            up: error.is_none(),
            duration: elapsed,
        };
        let written = pipeline.write(&*db, t, &run);
        if let Some(e) = &written.commit_error {
            tracing::warn!(job = %name, url = %target.url, error = %e, "Storing scraped samples failed");
        }
        if written.rejected > 0 {
            tracing::debug!(job = %name, url = %target.url, rejected = written.rejected, "Samples rejected by the store");
        }
        if let Some(e) = &error {
            tracing::debug!(job = %name, url = %target.url, error = %e, "Scrape failed");
        }
        metrics.record(&source, elapsed, error.is_some(), written.rejected);
        let up = error.is_none();
        if let (Some(h), Some(before)) = (&hook, was_up)
            && before != up
        {
            h(vec!["up".to_string()]);
        }
        was_up = Some(up);
        board.set(
            &name,
            TargetStatus {
                job: name.clone(),
                target: target.clone(),
                health: if error.is_some() { "down" } else { "up" },
                last_error: error.unwrap_or_default(),
                last_scrape: Some(started_at),
                last_duration: Some(elapsed),
            },
        );
    }
    // The target went away (or Lookout stops): end its series, report series included.
    pipeline.end(&*db, now_ms());
    if let Some(w) = watcher {
        w.abort();
    }
}

/// The `host:port` a target URL connects to.
fn host_port(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    // An IPv6 literal is written in brackets in a URL, and connects without them.
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), u.port_or_known_default()?))
}

/// Least time between two connections of the watch: a server that closes connections at
/// once costs a connection a second, not a busy loop.
const WATCH_GAP: Duration = Duration::from_secs(1);

/// Holds an idle connection to `addr`; when the peer closes it (or it fails), connects
/// again at once, and a refused or failed connection after a held one notifies
/// `refused`. While the target cannot be reached, tries again every few seconds, quietly:
/// the scrape loop reports the target down.
async fn watch_connection(
    addr: (String, u16),
    refused: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    let mut held = false;
    loop {
        let began = Instant::now();
        let conn = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((addr.0.as_str(), addr.1)),
        )
        .await;
        match conn {
            Ok(Ok(mut s)) => {
                held = true;
                // Anything the peer sends is read and dropped; the end of the stream (or
                // an error) ends the hold.
                let mut buf = [0u8; 512];
                loop {
                    tokio::select! {
                        r = s.read(&mut buf) => match r {
                            Ok(n) if n > 0 => continue,
                            _ => break,
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            _ => {
                if held {
                    refused.notify_one();
                }
                held = false;
            }
        }
        let pause = if held {
            WATCH_GAP.saturating_sub(began.elapsed())
        } else {
            WATCH_GAP * 5
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// What one scrape gave.
struct Scraped {
    /// Samples to store (labels, timestamp, value).
    samples: Vec<(Labels, i64, f64)>,
    /// Exemplars, by the index of their sample.
    exemplars: Vec<(usize, Exemplar)>,
    /// Created timestamps (ms, OpenMetrics `_created`), by the index of their sample.
    created: Vec<(usize, i64)>,
    /// Native histograms to store (labels, timestamp, histogram).
    histograms: Vec<(Labels, i64, lookout_model::FloatHistogram)>,
    /// Samples the target exposed.
    exposed: usize,
}

/// The labels a scraped series is stored with: its own, the target's (renamed
/// `exported_*` on a clash unless `honor_labels`), then `metric_relabel_configs`
/// (`None`: dropped), within the label limits.
fn series_labels<'a>(
    cfg: &ScrapeConfig,
    target: &Target,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, std::borrow::Cow<'a, str>)>,
) -> Result<Option<Labels>, String> {
    let mut pairs: BTreeMap<String, String> = BTreeMap::new();
    pairs.insert(METRIC_NAME_LABEL.into(), name.to_string());
    for (k, v) in labels {
        pairs.insert(k.to_string(), v.into_owned());
    }
    for l in target.labels.iter() {
        match pairs.get(&l.name) {
            Some(_) if cfg.honor_labels => {}
            Some(exposed) => {
                // Prometheus keeps the target's value and renames the scraped one.
                let exposed = exposed.clone();
                let mut name = format!("exported_{}", l.name);
                while pairs.contains_key(&name) {
                    name = format!("exported_{name}");
                }
                pairs.insert(name, exposed);
                pairs.insert(l.name.clone(), l.value.clone());
            }
            None => {
                pairs.insert(l.name.clone(), l.value.clone());
            }
        }
    }
    let ls = Labels::from_pairs(pairs);
    let Some(ls) = process(&ls, &cfg.metric_relabel_configs) else {
        return Ok(None);
    };
    check_label_limits(cfg, &ls)?;
    Ok(Some(ls))
}

/// One scrape: the samples to store and how many the target exposed; an error names
/// what failed.
async fn scrape_once(job: &Job, target: &Target, t: i64) -> Result<Scraped, String> {
    let cfg = &job.cfg;
    let mut req = job
        .client
        .get(&target.url)
        .timeout(target.timeout)
        .header(
            reqwest::header::ACCEPT,
            cfg.accept_header().as_deref().unwrap_or(ACCEPT_HEADER),
        )
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", target.timeout.as_secs_f64()),
        );
    if let Some(b) = &cfg.basic_auth {
        let pw = match (&b.password, &b.password_file) {
            (_, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("reading basic_auth password_file {}: {e}", f.display()))?
                .trim_end()
                .to_string(),
            (Some(p), None) => p.clone(),
            (None, None) => String::new(),
        };
        req = req.basic_auth(&b.username, Some(pw));
    }
    if let Some(tok) = &cfg.bearer_token {
        req = req.bearer_auth(tok);
    }
    if let Some(f) = &cfg.bearer_token_file {
        let tok = std::fs::read_to_string(f)
            .map_err(|e| format!("reading bearer_token_file {}: {e}", f.display()))?;
        req = req.bearer_auth(tok.trim());
    }
    let resp = req.send().await.map_err(|e| describe(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("server returned HTTP status {status}"));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = read_body(resp, cfg.body_size_limit.0).await?;
    // The body, kept here while the parsed exposition borrows from it.
    let (text, decoded);
    let (mut exp, mut native) = if lookout_expfmt::proto::is_protobuf(&content_type) {
        decoded = lookout_expfmt::proto::decode(&bytes)
            .map_err(|e| format!("parsing the response: {e}"))?;
        decoded
            .exposition(lookout_expfmt::proto::Options {
                native: cfg.scrape_native_histograms,
                classic_too: cfg.always_scrape_classic_histograms,
            })
            .map_err(|e| format!("parsing the response: {e}"))?
    } else {
        text = String::from_utf8_lossy(&bytes);
        let format = format_for_content_type(&content_type);
        let exp = lookout_expfmt::parse(&text, format)
            .map_err(|e| format!("parsing the response: {e}"))?;
        (exp, Vec::new())
    };
    if cfg.convert_classic_histograms_to_nhcb {
        // Families that came native already are not converted again.
        let native_names: Vec<&str> = native.iter().map(|h| h.name).collect();
        let converted = lookout_expfmt::nhcb::convert(
            &mut exp,
            &native_names,
            cfg.always_scrape_classic_histograms,
        );
        native.extend(converted);
    }
    let scraped = exp.samples.len() + native.len();
    let mut out = Vec::with_capacity(scraped);
    let mut exemplars = Vec::new();
    let created_of = CreatedTimes::new(&exp.created);
    let mut created = Vec::new();
    let over_limit = |n: usize| cfg.sample_limit > 0 && n > cfg.sample_limit;
    let mut histograms = Vec::new();
    for h in native {
        let Some(ls) = series_labels(cfg, target, h.name, h.labels)? else {
            continue;
        };
        let ts = match h.timestamp_ms {
            Some(ts) if cfg.honor_timestamps => ts,
            _ => t,
        };
        histograms.push((ls, ts, h.histogram));
    }
    for s in exp.samples {
        let ct = created_of.of(&s);
        let Some(ls) = series_labels(cfg, target, s.name, s.labels)? else {
            continue;
        };
        let ts = match s.timestamp_ms {
            Some(ts) if cfg.honor_timestamps => ts,
            _ => t,
        };
        if let Some(e) = s.exemplar {
            // Without its own timestamp, an exemplar is taken at the scrape's.
            exemplars.push((
                out.len(),
                Exemplar {
                    labels: Labels::from_pairs(e.labels),
                    value: e.value,
                    t: e.timestamp_ms.unwrap_or(t),
                },
            ));
        }
        if let Some(ct) = ct {
            created.push((out.len(), ct));
        }
        out.push((ls, ts, s.value));
        if over_limit(out.len() + histograms.len()) {
            return Err(format!(
                "sample_limit exceeded (limit {})",
                cfg.sample_limit
            ));
        }
    }
    if over_limit(out.len() + histograms.len()) {
        return Err(format!(
            "sample_limit exceeded (limit {})",
            cfg.sample_limit
        ));
    }
    Ok(Scraped {
        samples: out,
        exemplars,
        created,
        histograms,
        exposed: scraped,
    })
}

/// The OpenMetrics `_created` times of an exposition, found for its samples: a
/// counter's `foo_total`, a histogram's `foo_bucket`/`foo_count`/`foo_sum` and a
/// summary's quantiles, `foo_count` and `foo_sum` share `foo_created` of the same labels
/// (without `le` and `quantile`).
struct CreatedTimes<'a> {
    /// Created time (ms) by series.
    by_series: HashMap<CreatedKey<'a>, i64>,
}

/// A family and its series' labels without `le` and `quantile`, sorted.
type CreatedKey<'a> = (&'a str, Vec<(&'a str, &'a str)>);

impl<'a> CreatedTimes<'a> {
    fn key(family: &'a str, labels: &'a [(&'a str, std::borrow::Cow<'a, str>)]) -> CreatedKey<'a> {
        let mut l: Vec<(&str, &str)> = labels
            .iter()
            .filter(|(n, _)| *n != "le" && *n != "quantile")
            .map(|(n, v)| (*n, v.as_ref()))
            .collect();
        l.sort_unstable();
        (family, l)
    }

    fn new(created: &'a [(&'a str, lookout_expfmt::SampleLine<'a>)]) -> Self {
        let by_series = created
            .iter()
            .filter(|(_, s)| s.value.is_finite() && s.value > 0.0)
            .map(|(f, s)| (Self::key(f, &s.labels), (s.value * 1000.0).round() as i64))
            .collect();
        Self { by_series }
    }

    /// The created time of sample `s`, if its family exposed one.
    fn of(&self, s: &'a lookout_expfmt::SampleLine<'a>) -> Option<i64> {
        if self.by_series.is_empty() {
            return None;
        }
        ["_total", "_bucket", "_count", "_sum", ""]
            .iter()
            .filter_map(|suffix| s.name.strip_suffix(suffix))
            .find_map(|family| self.by_series.get(&Self::key(family, &s.labels)).copied())
    }
}

fn check_label_limits(cfg: &ScrapeConfig, ls: &Labels) -> Result<(), String> {
    let name = ls.metric_name().unwrap_or("");
    if cfg.label_limit > 0 && ls.len() > cfg.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {name}, number of labels: {}, limit: {})",
            ls.len(),
            cfg.label_limit
        ));
    }
    for l in ls.iter() {
        if cfg.label_name_length_limit > 0 && l.name.len() > cfg.label_name_length_limit {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {name}, label name: {}, length: {}, limit: {})",
                l.name,
                l.name.len(),
                cfg.label_name_length_limit
            ));
        }
        if cfg.label_value_length_limit > 0 && l.value.len() > cfg.label_value_length_limit {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {name}, label name: {}, value length: {}, limit: {})",
                l.name,
                l.value.len(),
                cfg.label_value_length_limit
            ));
        }
    }
    Ok(())
}

/// A response body read piece by piece, failing once it passes `limit` bytes (0: no
/// limit) rather than after holding it all, as Prometheus's `body_size_limit` does.
async fn read_body(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(piece) = resp.chunk().await.map_err(|e| describe(&e))? {
        if limit > 0 && (body.len() + piece.len()) as u64 > limit {
            return Err(format!("body size limit exceeded (limit {limit} bytes)"));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watch_tells_a_refusing_target_from_one_closing_idle_connections() {
        // A server that closes every connection at once (an idle timeout of zero): the
        // watch connects again each second, and never reports it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
                let _ = accepted_tx.send(());
            }
        });
        let refused = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, stop) = watch::channel(false);
        let w = tokio::spawn(watch_connection(
            ("127.0.0.1".into(), port),
            Arc::clone(&refused),
            stop,
        ));
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(3), accepted.recv())
                .await
                .expect("the watch connects again")
                .unwrap();
        }
        let quiet = tokio::time::timeout(Duration::from_millis(500), refused.notified()).await;
        assert!(quiet.is_err(), "closed idle connections are not a failure");
        // The server goes away: the next connection is refused, and that is reported.
        server.abort();
        let _ = server.await;
        tokio::time::timeout(Duration::from_secs(5), refused.notified())
            .await
            .expect("a refused connection after a held one is reported");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(7), w)
            .await
            .expect("the watch stops when told")
            .unwrap();
    }

    #[test]
    fn target_urls_give_their_address() {
        assert_eq!(
            host_port("http://127.0.0.1:9100/metrics"),
            Some(("127.0.0.1".into(), 9100))
        );
        assert_eq!(
            host_port("https://db1.example/metrics"),
            Some(("db1.example".into(), 443))
        );
        assert_eq!(
            host_port("http://[::1]:9100/metrics"),
            Some(("::1".into(), 9100))
        );
        assert_eq!(host_port("not a url"), None);
    }

    #[test]
    fn created_times_reach_every_series_of_their_family() {
        let body = "# TYPE req counter\nreq_total{code=\"200\"} 5\nreq_total{code=\"500\"} 1\nreq_created{code=\"200\"} 1700000000.5\n# TYPE lat histogram\nlat_bucket{le=\"1\",db=\"a\"} 2\nlat_bucket{le=\"+Inf\",db=\"a\"} 3\nlat_count{db=\"a\"} 3\nlat_sum{db=\"a\"} 1.5\nlat_created{db=\"a\"} 1700000001\n# TYPE q summary\nq{quantile=\"0.5\"} 1\nq_count 2\nq_created 1700000002\n# TYPE g gauge\ng 1\n# EOF\n";
        let e = lookout_expfmt::parse(body, lookout_expfmt::Format::OpenMetrics).unwrap();
        let ct = CreatedTimes::new(&e.created);
        let got: Vec<(String, Option<i64>)> = e
            .samples
            .iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
                (format!("{}{{{}}}", s.name, labels.join(",")), ct.of(s))
            })
            .collect();
        let want = [
            ("req_total{code=200}", Some(1_700_000_000_500)),
            ("req_total{code=500}", None),
            ("lat_bucket{le=1,db=a}", Some(1_700_000_001_000)),
            ("lat_bucket{le=+Inf,db=a}", Some(1_700_000_001_000)),
            ("lat_count{db=a}", Some(1_700_000_001_000)),
            ("lat_sum{db=a}", Some(1_700_000_001_000)),
            ("q{quantile=0.5}", Some(1_700_000_002_000)),
            ("q_count{}", Some(1_700_000_002_000)),
            ("g{}", None),
        ];
        let want: Vec<(String, Option<i64>)> =
            want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        assert_eq!(got, want);
    }
}
