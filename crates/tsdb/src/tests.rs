use super::*;
use lookout_model::MatchOp;
use lookout_storage::{Appendable, Queryable, SelectHints, Series};

const H: i64 = 3_600_000;

fn opts() -> Options {
    Options {
        maintenance_interval: None,
        ..Options::default()
    }
}

fn open(dir: &Path) -> Tsdb {
    Tsdb::open(dir, opts(), &mut Registry::default()).unwrap()
}

fn up(job: &str) -> Labels {
    Labels::from_pairs([("__name__", "up"), ("job", job)])
}

fn all(db: &Tsdb) -> Vec<Series> {
    db.querier(i64::MIN, i64::MAX)
        .unwrap()
        .select(
            &SelectHints::default(),
            &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
        )
        .unwrap()
}

/// `hours` of 15 s samples for a few series: a counter, a decimal gauge and a NaN-y one.
fn fill(db: &Tsdb, from_h: i64, hours: i64) {
    let mut app = db.appender();
    let mut t = from_h * H;
    while t < (from_h + hours) * H {
        let i = t / 15_000;
        app.append(&up("counter"), t, (i * 7) as f64).unwrap();
        app.append(&up("gauge"), t, ((i % 97) as f64) / 4.0)
            .unwrap();
        if i % 50 == 0 {
            app.append(&up("rare"), t, if i % 100 == 0 { f64::NAN } else { -0.0 })
                .unwrap();
        }
        t += 15_000;
    }
    app.commit().unwrap();
}

fn bits(series: &[Series]) -> Vec<(Labels, Vec<(i64, u64)>)> {
    series
        .iter()
        .map(|s| {
            (
                s.labels.clone(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 1);
    let before = bits(&all(&db));
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(before, bits(&all(&db)));
    assert_eq!(db.stats().head_samples, 240 * 2 + 5);
}

#[test]
fn out_of_order_window_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut app = db.appender();
    app.append(&up("a"), 20 * 60_000, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = db.appender();
    // 5 minutes behind: inside the 10 minute window.
    app.append(&up("a"), 15 * 60_000, 2.0).unwrap();
    // 15 minutes behind: outside.
    assert!(matches!(
        app.append(&up("a"), 5 * 60_000, 3.0),
        Err(Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        app.append(&up("a"), 20 * 60_000, 5.0),
        Err(Error::DuplicateSample { .. })
    ));
    // Identical duplicates are accepted and ignored; a stale marker is stored.
    app.append(&up("a"), 20 * 60_000, 1.0).unwrap();
    app.append(&up("a"), 21 * 60_000, lookout_model::stale_nan())
        .unwrap();
    app.commit().unwrap();
    let got = all(&db);
    let ts: Vec<i64> = got[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![15 * 60_000, 20 * 60_000, 21 * 60_000]);
    assert!(lookout_model::is_stale_nan(got[0].samples[2].v));
    // The out-of-order sample survives a restart.
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(all(&db)[0].samples.len(), 3);
}

#[test]
fn second_open_of_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = open(dir.path());
    let err = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap_err();
    assert!(err.to_string().contains("another Lookout"), "{err}");
}

#[test]
fn limits_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        limits: Limits {
            max_series: Some(2),
            max_labels: 3,
            max_label_name_len: 8,
            max_label_value_len: 10,
        },
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o, &mut Registry::default()).unwrap();
    let mut app = db.appender();
    app.append(&up("a"), 1, 1.0).unwrap();
    app.append(&up("b"), 1, 1.0).unwrap();
    let e = app.append(&up("c"), 1, 1.0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                what: "series",
                limit: 2,
                ..
            }
        ),
        "{e}"
    );
    // Existing series still take samples.
    app.append(&up("a"), 2, 1.0).unwrap();
    let e = app
        .append(
            &Labels::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2"), ("c", "3")]),
            1,
            1.0,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("labels per series limit of 3"),
        "{e}"
    );
    let e = app
        .append(
            &Labels::from_pairs([("__name__", "x"), ("very_long_name", "1")]),
            1,
            1.0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("label name length"), "{e}");
    let e = app
        .append(
            &Labels::from_pairs([("__name__", "x"), ("a", "0123456789abc")]),
            1,
            1.0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("label value length"), "{e}");
    app.commit().unwrap();
    assert_eq!(db.stats().head_series, 2);
}

#[test]
fn blocks_compaction_and_retention_keep_query_results() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 30);
    let before = bits(&all(&db));
    // Cut blocks (the head keeps at most 1.5 block ranges); the 12 h windows the head
    // has left behind are compacted in the same pass.
    db.maintain(30 * H).unwrap();
    assert_eq!(
        before,
        bits(&all(&db)),
        "after cutting and compacting blocks"
    );
    let levels = |dir: &Path| -> Vec<(i64, i64, u32)> {
        let mut v: Vec<(i64, i64, u32)> = std::fs::read_dir(dir.join("blocks"))
            .unwrap()
            .map(|e| {
                let m: BlockMeta = serde_json::from_slice(
                    &std::fs::read(e.unwrap().path().join("meta.json")).unwrap(),
                )
                .unwrap();
                (m.min_time, m.max_time, m.level)
            })
            .collect();
        v.sort();
        v
    };
    let l = levels(dir.path());
    assert_eq!(l[0], (0, 12 * H, 2), "{l:?}");
    assert_eq!(l[1], (12 * H, 24 * H, 2), "{l:?}");
    assert!(
        l[2..].iter().all(|b| b.2 == 1 && b.1 - b.0 == 2 * H),
        "{l:?}"
    );
    // More data: the next blocks are cut and queries still merge head and blocks.
    fill(&db, 30, 2);
    let before = bits(&all(&db));
    db.maintain(32 * H).unwrap();
    let st2 = db.stats();
    assert_eq!(before, bits(&all(&db)), "after more blocks");
    assert_eq!(
        st2.samples,
        before.iter().map(|s| s.1.len() as u64).sum::<u64>()
    );
    // A restart serves the same.
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(before, bits(&all(&db)), "after restart");
    // Retention deletes whole blocks past it and nothing inside it.
    let day = 24 * H;
    db.maintain(15 * day + 12 * H).unwrap();
    let cutoff = 12 * H;
    let after = bits(&all(&db));
    let first = after
        .iter()
        .filter_map(|s| s.1.first())
        .map(|x| x.0)
        .min()
        .unwrap();
    assert!(first >= cutoff - 12 * H, "kept data from {first}");
    for (ls, samples) in &before {
        let kept: Vec<_> = samples.iter().filter(|x| x.0 >= first).copied().collect();
        let got = after
            .iter()
            .find(|s| &s.0 == ls)
            .map(|s| s.1.clone())
            .unwrap_or_default();
        assert_eq!(kept, got, "{ls}");
    }
    assert!(db.stats().samples < before.iter().map(|s| s.1.len() as u64).sum::<u64>());
}

#[test]
fn samples_before_cut_blocks_are_out_of_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 4);
    db.maintain(4 * H).unwrap();
    let mut app = db.appender();
    let e = app.append(&up("counter"), 1000, 1.0).unwrap_err();
    assert!(matches!(e, Error::OutOfBounds { .. }), "{e}");
}

#[test]
fn delete_series_removes_from_head_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 6);
    db.maintain(6 * H).unwrap();
    assert!(db.stats().blocks > 0);
    let n = db
        .delete_series(&[Matcher::equal("job", "gauge")], H, 5 * H)
        .unwrap();
    assert_eq!(n, 1);
    let check = |db: &Tsdb| {
        let got = all(db);
        let g = got.iter().find(|s| s.labels == up("gauge")).unwrap();
        assert!(g.samples.iter().all(|s| s.t < H || s.t > 5 * H));
        assert!(g.samples.iter().any(|s| s.t > 5 * H));
        let c = got.iter().find(|s| s.labels == up("counter")).unwrap();
        assert_eq!(c.samples.len(), 6 * 240);
    };
    check(&db);
    db.close().unwrap();
    drop(db);
    check(&open(dir.path()));
}

#[test]
fn label_apis_merge_head_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 4);
    db.maintain(4 * H).unwrap();
    let mut app = db.appender();
    app.append(
        &Labels::from_pairs([("__name__", "late"), ("zone", "z")]),
        4 * H,
        1.0,
    )
    .unwrap();
    app.commit().unwrap();
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(q.label_names(&[]).unwrap(), vec!["__name__", "job", "zone"]);
    assert_eq!(
        q.label_values("job", &[]).unwrap(),
        vec!["counter", "gauge", "rare"]
    );
    assert_eq!(
        q.label_values("__name__", &[Matcher::equal("zone", "z")])
            .unwrap(),
        vec!["late"]
    );
    let st = db.stats();
    assert_eq!(st.series, 4);
    assert_eq!(st.top_cardinalities[0], ("job".to_string(), 3));
}

#[test]
fn invalid_labels_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut app = db.appender();
    let err = app
        .append(&Labels::from_pairs([("job", "x")]), 1, 1.0)
        .unwrap_err();
    assert!(err.to_string().contains("missing metric name"));
}

#[test]
fn size_retention_deletes_oldest_blocks_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 10);
    db.maintain(10 * H).unwrap();
    let st = db.stats();
    assert!(st.blocks >= 3, "{st:?}");
    let blocks = st.chunk_bytes + st.index_bytes;
    db.close().unwrap();
    drop(db);
    // Allow a little less than the blocks alone (the WAL counts too): the oldest block
    // must go, the newest data stay.
    let limit = blocks - 1;
    let o = Options {
        retention_size: Some(limit),
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o, &mut Registry::default()).unwrap();
    let first_before = all(&db)[0].samples[0].t;
    db.maintain(10 * H).unwrap();
    let st = db.stats();
    assert!(
        st.chunk_bytes + st.index_bytes + st.wal_bytes <= limit,
        "{st:?}"
    );
    let first_after = all(&db)[0].samples[0].t;
    assert!(
        first_after > first_before,
        "oldest data went: {first_before} → {first_after}"
    );
    // The newest data is still there.
    assert!(
        all(&db)
            .iter()
            .any(|s| s.samples.last().unwrap().t >= 10 * H - 15_000)
    );
}

/// A native histogram of scrape `i`: counts grow, the layout widens now and then, and
/// every 97th scrape is a float histogram with fractional counts.
fn hist(i: i64) -> lookout_model::FloatHistogram {
    let n = i as f64;
    let wide = (i / 500) % 3;
    let frac = if i % 97 == 0 { 0.25 } else { 0.0 };
    let buckets: Vec<String> = (0..3 + wide)
        .map(|k| format!("{}", n * (k + 1) as f64 + frac))
        .collect();
    lookout_model::FloatHistogram::parse(&format!(
        "{{{{schema:3 count:{} sum:{} z_bucket:{n} z_bucket_w:0.001 offset:-2 buckets:[{}] n_offset:1 n_buckets:[{n}]}}}}",
        n * 9.0,
        n * 0.125,
        buckets.join(" ")
    ))
    .unwrap()
}

fn hists(db: &Tsdb, mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, String)>)> {
    db.querier(mint, maxt)
        .unwrap()
        .select_histograms(
            &SelectHints::default(),
            &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
        )
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.labels,
                s.samples.iter().map(|x| (x.t, x.h.to_string())).collect(),
            )
        })
        .collect()
}

#[test]
fn native_histograms_survive_replay_checkpoints_blocks_compaction_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let lat = Labels::from_pairs([("__name__", "rpc_seconds"), ("job", "api")]);
    let mut want: Vec<(i64, String)> = Vec::new();
    // 30 hours of 15 s scrapes: the head cuts blocks and compacts them as it goes.
    for hour in 0..30 {
        let mut app = db.appender();
        for k in 0..240 {
            let t = hour * H + k * 15_000;
            let h = hist(t / 15_000);
            app.append_histogram(&lat, t, &h).unwrap();
            app.append(&up("counter"), t, t as f64).unwrap();
            want.push((t, h.to_string()));
        }
        app.commit().unwrap();
        if hour == 3 {
            // A checkpoint holds the head's histogram chunks and open samples.
            db.inner.checkpoint().unwrap();
        }
    }
    let floats = bits(&all(&db));
    assert_eq!(
        hists(&db, i64::MIN, i64::MAX),
        vec![(lat.clone(), want.clone())]
    );
    // Out of order inside the window, duplicates, and conflicts, as for floats.
    let mut app = db.appender();
    let late = 30 * H - 15_000 * 10 + 7;
    app.append_histogram(&lat, late, &hist(3)).unwrap();
    app.append_histogram(&lat, want.last().unwrap().0, &hist(30 * 240 - 1))
        .unwrap();
    let e = app
        .append_histogram(&lat, want.last().unwrap().0, &hist(1))
        .unwrap_err();
    assert!(matches!(e, Error::DuplicateSample { .. }), "{e}");
    let e = app.append_histogram(&lat, 1000, &hist(1)).unwrap_err();
    assert!(matches!(e, Error::OutOfOrder { .. }), "{e}");
    app.commit().unwrap();
    let at = want.partition_point(|x| x.0 < late);
    want.insert(at, (late, hist(3).to_string()));
    // Replay from the WAL (and checkpoint) gives them back.
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(
        hists(&db, i64::MIN, i64::MAX),
        vec![(lat.clone(), want.clone())]
    );
    // Blocks and compaction keep them, and floats as they were.
    db.maintain(30 * H).unwrap();
    assert!(db.stats().blocks >= 3);
    assert_eq!(
        hists(&db, i64::MIN, i64::MAX),
        vec![(lat.clone(), want.clone())]
    );
    assert_eq!(floats, bits(&all(&db)));
    // A range reads only its samples; a float selection never returns histograms.
    let part: Vec<(i64, String)> = want
        .iter()
        .filter(|x| x.0 >= 5 * H && x.0 <= 7 * H)
        .cloned()
        .collect();
    assert_eq!(hists(&db, 5 * H, 7 * H), vec![(lat.clone(), part)]);
    assert!(all(&db).iter().all(|s| s.labels != lat));
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(
        hists(&db, i64::MIN, i64::MAX),
        vec![(lat.clone(), want.clone())]
    );
    // Deletion and retention cut histograms as they cut floats.
    db.delete_series(&[Matcher::equal("job", "api")], 0, 2 * H)
        .unwrap();
    want.retain(|x| x.0 > 2 * H);
    assert_eq!(
        hists(&db, i64::MIN, i64::MAX),
        vec![(lat.clone(), want.clone())]
    );
    db.maintain(16 * 24 * H).unwrap();
    let left = hists(&db, i64::MIN, i64::MAX);
    assert_eq!(left.len(), 1, "the newest block is inside the retention");
    let first = left[0].1[0].0;
    assert!(first > 12 * H, "blocks past retention went: {first}");
    want.retain(|x| x.0 >= first);
    assert_eq!(left, vec![(lat, want)]);
    db.close().unwrap();
}

#[test]
fn histograms_too_wide_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut h = lookout_model::FloatHistogram::default();
    for i in 0..=crate::hchunk::MAX_BUCKETS as i32 {
        h.positive.insert(i, 1.0);
    }
    let mut app = db.appender();
    let e = app
        .append_histogram(&Labels::from_pairs([("__name__", "h")]), 1000, &h)
        .unwrap_err();
    assert!(
        e.to_string().contains("native histogram buckets per side"),
        "{e}"
    );
    app.rollback();
}

fn exemplar(t: i64, trace: &str) -> lookout_model::Exemplar {
    lookout_model::Exemplar {
        labels: Labels::from_pairs([("trace_id", trace)]),
        value: 0.25,
        t,
    }
}

fn exemplars_of(db: &Tsdb, mint: i64, maxt: i64) -> Vec<(Labels, Vec<i64>)> {
    db.querier(mint, maxt)
        .unwrap()
        .select_exemplars(&[Matcher::equal("__name__", "up")])
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.exemplars.iter().map(|e| e.t).collect()))
        .collect()
}

#[test]
fn exemplars_are_kept_checked_and_survive_replay_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut app = db.appender();
    // A series new in this batch takes an exemplar; one with no sample does not.
    app.append(&up("a"), 1000, 1.0).unwrap();
    app.append_exemplar(&up("a"), &exemplar(900, "x")).unwrap();
    // The same again is nothing; an older one is refused by name.
    app.append_exemplar(&up("a"), &exemplar(900, "x")).unwrap();
    let e = app
        .append_exemplar(&up("a"), &exemplar(800, "y"))
        .unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
    let e = app
        .append_exemplar(&up("b"), &exemplar(900, "x"))
        .unwrap_err();
    assert!(e.to_string().contains("no sample"), "{e}");
    let long = lookout_model::Exemplar {
        labels: Labels::from_pairs([("trace_id", "x".repeat(200))]),
        ..exemplar(950, "z")
    };
    assert!(app.append_exemplar(&up("a"), &long).is_err());
    let future = exemplar(lookout_model::now_ms() + 3_600_000, "f");
    let e = app.append_exemplar(&up("a"), &future).unwrap_err();
    assert!(e.to_string().contains("too far in the future"), "{e}");
    app.commit().unwrap();
    // Later batches: against the stored newest.
    let mut app = db.appender();
    app.append(&up("b"), 2000, 1.0).unwrap();
    app.append_exemplar(&up("b"), &exemplar(2000, "w")).unwrap();
    assert!(app.append_exemplar(&up("a"), &exemplar(900, "q")).is_err());
    app.append_exemplar(&up("a"), &exemplar(1500, "v")).unwrap();
    app.commit().unwrap();
    let want = vec![(up("a"), vec![900, 1500]), (up("b"), vec![2000])];
    assert_eq!(exemplars_of(&db, 0, 3000), want);
    assert_eq!(exemplars_of(&db, 1000, 1999), vec![(up("a"), vec![1500])]);
    // Replayed from the WAL.
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(exemplars_of(&db, 0, 3000), want);
    // Kept through a checkpoint (older segments deleted), then replayed from it.
    db.inner.checkpoint().unwrap();
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(exemplars_of(&db, 0, 3000), want);
    // A repeat after the replay is still a repeat.
    let mut app = db.appender();
    app.append_exemplar(&up("a"), &exemplar(1500, "v")).unwrap();
    assert!(app.append_exemplar(&up("a"), &exemplar(1400, "v")).is_err());
    app.commit().unwrap();
    assert_eq!(exemplars_of(&db, 0, 3000), want);
    db.close().unwrap();
}

#[test]
fn the_exemplar_ring_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        Options {
            max_exemplars: 2,
            ..opts()
        },
        &mut Registry::default(),
    )
    .unwrap();
    let mut app = db.appender();
    for t in 1..=5 {
        app.append(&up("a"), t * 1000, 1.0).unwrap();
        app.append_exemplar(&up("a"), &exemplar(t * 1000, "x"))
            .unwrap();
    }
    app.commit().unwrap();
    assert_eq!(
        exemplars_of(&db, 0, 9000),
        vec![(up("a"), vec![4000, 5000])]
    );
    db.close().unwrap();
}

#[test]
fn retention_rules_keep_each_series_for_its_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let day = 24 * H;
    let rule = |job: &str, days: i64| RetentionRule {
        selector: format!("{{job=\"{job}\"}}"),
        matchers: vec![Matcher::equal("job", job)],
        retention: std::time::Duration::from_millis((days * day) as u64),
    };
    let o = Options {
        retention: std::time::Duration::from_millis((10 * day) as u64),
        retention_rules: vec![rule("gauge", 1), rule("counter", 20)],
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o.clone(), &mut Registry::default()).unwrap();
    fill(&db, 0, 72);
    db.maintain(72 * H).unwrap();
    let before = bits(&all(&db));
    let of = |s: &[(Labels, Vec<(i64, u64)>)], job: &str| -> Vec<(i64, u64)> {
        s.iter()
            .find(|x| x.0 == up(job))
            .map(|x| x.1.clone())
            .unwrap_or_default()
    };
    let block_ids = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("blocks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };

    // At 3.5 days the gauge (1 day, rounded down to the 2 h block range: from 60 h) has
    // lost its older samples; the counter (20 days) and the rest (10 days) keep all.
    db.maintain(84 * H).unwrap();
    let after = bits(&all(&db));
    let kept: Vec<_> = of(&before, "gauge")
        .into_iter()
        .filter(|x| x.0 >= 60 * H)
        .collect();
    assert!(!kept.is_empty());
    let gauge = of(&after, "gauge");
    assert_eq!(
        gauge
            .iter()
            .filter(|x| x.0 < 72 * H)
            .copied()
            .collect::<Vec<_>>(),
        kept
    );
    assert_eq!(of(&after, "counter"), of(&before, "counter"));
    assert_eq!(of(&after, "rare"), of(&before, "rare"));
    // A second pass at the same time rewrites nothing.
    let ids = block_ids(dir.path());
    db.maintain(84 * H).unwrap();
    assert_eq!(block_ids(dir.path()), ids, "no block rewritten twice");

    // At 12 days, with new data since (so the old head is cut into blocks), the global
    // retention (10 days: blocks ending by 48 h) would delete the oldest blocks whole;
    // the counter's rule keeps its part of them.
    fill(&db, 11 * 24, 4);
    db.maintain(12 * day).unwrap();
    let after = bits(&all(&db));
    let old = |v: Vec<(i64, u64)>| v.into_iter().filter(|x| x.0 < 72 * H).collect::<Vec<_>>();
    assert_eq!(
        old(of(&after, "counter")),
        of(&before, "counter"),
        "kept 20 days"
    );
    assert!(
        of(&after, "gauge").iter().all(|x| x.0 >= 11 * day),
        "only its last day"
    );
    let rare = old(of(&after, "rare"));
    assert!(
        rare.first().is_some_and(|x| x.0 >= 36 * H),
        "the rest follow the global retention: {:?}",
        rare.first()
    );
    assert_eq!(
        rare,
        of(&before, "rare")
            .into_iter()
            .filter(|x| x.0 >= rare[0].0)
            .collect::<Vec<_>>()
    );
    let st = db.stats();
    let counts: Vec<(String, u64)> = st
        .retention
        .iter()
        .map(|r| (r.selector.clone(), r.series))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("{job=\"gauge\"}".to_string(), 1),
            ("{job=\"counter\"}".to_string(), 1),
            ("(the rest)".to_string(), 1),
        ]
    );
    // What was rewritten survives a restart.
    db.close().unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), o, &mut Registry::default()).unwrap();
    assert_eq!(bits(&all(&db)), after);
    assert_eq!(db.stats().retention.len(), 3);
}

#[test]
fn a_series_read_across_blocks_and_head_is_sized_once_and_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 30);
    // A series that lives for one hour only: its list must not be sized for the range.
    let mut app = db.appender();
    for k in 0..240 {
        app.append(&up("gone"), 3 * H + k * 15_000, 1.0).unwrap();
    }
    app.commit().unwrap();
    let whole = bits(&all(&db));
    db.maintain(30 * H).unwrap();
    assert_eq!(whole, bits(&all(&db)));
    for (lo, hi) in [
        (0, 30 * H),
        (5 * H + 7_000, 29 * H + 3_000),
        (2 * H + 1, 4 * H - 1),
        (27 * H + 500, 30 * H),
        (13 * H, 13 * H + 45_000),
    ] {
        let got = db
            .querier(lo, hi)
            .unwrap()
            .select(
                &SelectHints::default(),
                &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
            )
            .unwrap();
        let want: Vec<(Labels, Vec<(i64, u64)>)> = whole
            .iter()
            .map(|(ls, s)| {
                let s: Vec<_> = s
                    .iter()
                    .filter(|x| x.0 >= lo && x.0 <= hi)
                    .copied()
                    .collect();
                (ls.clone(), s)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect();
        assert_eq!(bits(&got), want, "[{lo}, {hi}]");
        for s in &got {
            assert!(
                s.samples.capacity() <= s.samples.len() + s.samples.len() / 8 + 8,
                "{} in [{lo}, {hi}]: {} samples in room for {}",
                s.labels,
                s.samples.len(),
                s.samples.capacity()
            );
        }
    }
}

/// Every series' windows of `resolution` over `(lo, hi]` from the store.
fn rollups(db: &Tsdb, lo: i64, hi: i64, resolution: i64) -> Vec<lookout_storage::RollupSeries> {
    db.querier(lo + 1, hi)
        .unwrap()
        .select_rollups(
            &SelectHints {
                start: lo,
                end: hi,
                ..SelectHints::default()
            },
            &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
            resolution,
        )
        .unwrap()
}

/// The windows made straight from `samples`.
fn expected(
    series: &[Series],
    lo: i64,
    hi: i64,
    resolution: i64,
) -> Vec<lookout_storage::RollupSeries> {
    series
        .iter()
        .map(|s| {
            let inside: Vec<lookout_model::Sample> = s
                .samples
                .iter()
                .filter(|x| x.t > lo && x.t <= hi)
                .copied()
                .collect();
            lookout_storage::RollupSeries {
                labels: s.labels.clone(),
                windows: lookout_storage::rollup::rollup(&inside, resolution),
            }
        })
        .filter(|s| !s.windows.is_empty())
        .collect()
}

fn same_windows(a: &[lookout_storage::RollupSeries], b: &[lookout_storage::RollupSeries]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.labels, y.labels);
        assert_eq!(x.windows.len(), y.windows.len(), "{}", x.labels);
        for (v, w) in x.windows.iter().zip(&y.windows) {
            let close = |p: f64, q: f64| {
                p.to_bits() == q.to_bits() || (p - q).abs() <= 1e-9 * p.abs().max(q.abs())
            };
            assert!(
                v.end == w.end
                    && v.count == w.count
                    && v.first.t == w.first.t
                    && v.last.t == w.last.t
                    && v.first.v.to_bits() == w.first.v.to_bits()
                    && v.last.v.to_bits() == w.last.v.to_bits()
                    && close(v.min, w.min)
                    && close(v.max, w.max)
                    && close(v.sum, w.sum)
                    && close(v.increase, w.increase),
                "{}: {v:?} vs {w:?}",
                x.labels
            );
        }
    }
}

#[test]
fn tiers_keep_exact_windows_past_the_raw_retention_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let d = |h: i64| std::time::Duration::from_millis((h * H) as u64);
    let (m1, m5) = (60_000, 300_000);
    let o = Options {
        block_range: std::time::Duration::from_secs(1800),
        retention: d(100),
        downsampling: vec![
            Tier {
                after: d(20),
                resolution: std::time::Duration::from_millis(m1 as u64),
                retention: d(200),
            },
            Tier {
                after: d(40),
                resolution: std::time::Duration::from_millis(m5 as u64),
                retention: d(1000),
            },
        ],
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o.clone(), &mut Registry::default()).unwrap();
    fill(&db, 0, 80);
    db.maintain(80 * H).unwrap();
    // Spans of the 1 m tier are 18 h (36 blocks of 30 m): four have ended 20 h ago, the
    // first (-18 h, 0] holding the samples at 0 (windows are left-open). The 5 m tier's
    // spans are 36 h (288 windows, rounded up to 18 h): two have ended 40 h ago.
    let st = db.stats();
    assert_eq!(st.tiers[0].blocks, 4, "{:?}", st.tiers);
    assert_eq!(st.tiers[0].range, Some((-18 * H, 54 * H)));
    assert_eq!(st.tiers[1].range, Some((-36 * H, 36 * H)));
    let raw = all(&db);
    let lo = -72 * H;
    let want1 = expected(&raw, lo, 72 * H, m1);
    let want5 = expected(&raw, lo, 72 * H, m5);
    same_windows(&rollups(&db, lo, 72 * H, m1), &want1);
    // The widest querier possible neither overflows nor loses windows.
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(q.rollup_resolutions(), [m1, m5]);
    let everything = q
        .select_rollups(
            &SelectHints::default(),
            &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
            m1,
        )
        .unwrap();
    same_windows(&everything, &expected(&raw, i64::MIN, i64::MAX, m1));
    drop(q);
    assert_eq!(
        db.querier(37 * H, 50 * H).unwrap().rollup_resolutions(),
        [m1]
    );

    // Later, with no new data: the fifth 1 m span, the third 5 m span (made from the
    // 1 m tier) and the raw retention (100 h) has taken the blocks before 36 h.
    db.maintain(150 * H).unwrap();
    let st = db.stats();
    assert_eq!(
        (st.tiers[0].blocks, st.tiers[1].blocks),
        (5, 3),
        "{:?}",
        st.tiers
    );
    assert!(st.min_time.unwrap() >= 36 * H, "{:?}", st.min_time);
    assert_eq!(
        db.querier(0, 10 * H).unwrap().rollup_resolutions(),
        [m1, m5]
    );
    same_windows(&rollups(&db, lo, 72 * H, m1), &want1);
    same_windows(&rollups(&db, lo, 72 * H, m5), &want5);
    // A coarser resolution is made from the tiers' windows.
    same_windows(
        &rollups(&db, lo, 72 * H, 4 * m5),
        &expected(&raw, lo, 72 * H, 4 * m5),
    );
    db.close().unwrap();
    drop(db);

    let db = Tsdb::open(dir.path(), o.clone(), &mut Registry::default()).unwrap();
    same_windows(&rollups(&db, lo, 72 * H, m5), &want5);
    // Past the 1 m tier's retention (200 h) its blocks go; the 5 m tier keeps answering.
    db.maintain(280 * H).unwrap();
    let st = db.stats();
    assert_eq!(st.tiers[0].blocks, 0, "{:?}", st.tiers);
    same_windows(&rollups(&db, lo, 72 * H, m5), &want5);
    db.close().unwrap();
}

#[test]
fn a_late_import_or_a_deletion_makes_a_rolled_up_span_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = |h: i64| std::time::Duration::from_millis((h * H) as u64);
    let m1 = 60_000;
    let o = Options {
        block_range: std::time::Duration::from_secs(1800),
        retention: d(100),
        downsampling: vec![Tier {
            after: d(20),
            resolution: std::time::Duration::from_millis(m1 as u64),
            retention: d(200),
        }],
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o.clone(), &mut Registry::default()).unwrap();
    fill(&db, 0, 40);
    db.maintain(40 * H).unwrap();
    let made = db.stats().tiers[0].blocks;
    assert!(made >= 2, "{:?}", db.stats().tiers);
    // Compaction alone (another maintenance) does not make spans again.
    db.maintain(40 * H + 60_000).unwrap();
    db.close().unwrap();
    drop(db);
    // Samples of a new series imported into the span (0, 18 h], already rolled up.
    let mut imp = crate::Importer::new(dir.path(), d(1) / 2).unwrap();
    let late = up("late");
    for k in 0..240i64 {
        imp.add(late.clone(), H + k * 15_000, k as f64).unwrap();
    }
    imp.finish().unwrap();
    let db = Tsdb::open(dir.path(), o.clone(), &mut Registry::default()).unwrap();
    db.maintain(41 * H).unwrap();
    let raw = all(&db);
    assert!(raw.iter().any(|s| s.labels == late));
    let (lo, hi) = (-18 * H, 36 * H);
    let got = rollups(&db, lo, hi, m1);
    assert!(
        got.iter().any(|s| s.labels == late),
        "the import is rolled up"
    );
    same_windows(&got, &expected(&raw, lo, hi, m1));
    // A deletion too: the span is made again without the deleted samples.
    db.delete_series(&[Matcher::equal("job", "late")], 0, 10 * H)
        .unwrap();
    db.maintain(41 * H + 60_000).unwrap();
    let raw = all(&db);
    let got = rollups(&db, lo, hi, m1);
    assert!(!got.iter().any(|s| s.labels == late), "deleted");
    same_windows(&got, &expected(&raw, lo, hi, m1));
    assert_eq!(db.stats().tiers[0].blocks, made, "replaced, not added");
    db.close().unwrap();
}

#[test]
fn a_damaged_tier_block_is_skipped_and_the_rest_answers() {
    let dir = tempfile::tempdir().unwrap();
    let d = |h: i64| std::time::Duration::from_millis((h * H) as u64);
    let o = Options {
        block_range: std::time::Duration::from_secs(1800),
        downsampling: vec![Tier {
            after: d(20),
            resolution: std::time::Duration::from_secs(60),
            retention: d(1000),
        }],
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o.clone(), &mut Registry::default()).unwrap();
    fill(&db, 0, 80);
    db.maintain(80 * H).unwrap();
    db.close().unwrap();
    drop(db);
    let tier_dir = dir.path().join("tiers").join("60000ms");
    let mut ids: Vec<_> = std::fs::read_dir(&tier_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 4);
    std::fs::write(ids[1].join("index"), b"not an index").unwrap();
    let db = Tsdb::open(dir.path(), o.clone(), &mut Registry::default()).unwrap();
    assert_eq!(db.stats().tiers[0].blocks, 3);
    assert!(
        db.warnings().iter().any(|w| w.contains("tiers/60000ms")),
        "{:?}",
        db.warnings()
    );
    // The damaged block's span is read from the samples, which are still there.
    let raw = all(&db);
    let lo = -18 * H;
    same_windows(
        &rollups(&db, lo, 54 * H, 60_000),
        &expected(&raw, lo, 54 * H, 60_000),
    );
    db.close().unwrap();
    drop(db);

    // Damaged pages in another tier block cost the windows they held, not the query.
    let chunks = ids[2].join("chunks");
    let mut bytes = std::fs::read(&chunks).unwrap();
    for b in bytes.iter_mut().skip(20) {
        *b ^= 0x5a;
    }
    std::fs::write(&chunks, bytes).unwrap();
    let db = Tsdb::open(dir.path(), o, &mut Registry::default()).unwrap();
    let want = expected(&raw, lo, 54 * H, 60_000);
    let got = rollups(&db, lo, 54 * H, 60_000);
    let count =
        |s: &[lookout_storage::RollupSeries]| -> usize { s.iter().map(|x| x.windows.len()).sum() };
    assert!(count(&got) > 0 && count(&got) < count(&want));
    let id = ids[2].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        db.warnings().iter().any(|w| w.contains(&id)),
        "{:?}",
        db.warnings()
    );
    db.close().unwrap();
}

#[test]
fn spans_are_rolled_up_before_retention_deletes_their_samples() {
    // The first maintenance pass comes late (a server that was down): the raw retention
    // (100 h) takes the blocks before 36 h in the same pass that makes the 1 m tier's
    // blocks for them, which are made first.
    let dir = tempfile::tempdir().unwrap();
    let d = |h: i64| std::time::Duration::from_millis((h * H) as u64);
    let o = Options {
        block_range: std::time::Duration::from_secs(1800),
        retention: d(100),
        downsampling: vec![Tier {
            after: d(20),
            resolution: std::time::Duration::from_secs(60),
            retention: d(1000),
        }],
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o, &mut Registry::default()).unwrap();
    fill(&db, 0, 80);
    let raw = all(&db);
    db.maintain(150 * H).unwrap();
    let st = db.stats();
    assert!(st.min_time.unwrap() >= 36 * H, "{:?}", st.min_time);
    assert_eq!(st.tiers[0].range, Some((-18 * H, 72 * H)), "{:?}", st.tiers);
    let lo = -18 * H;
    same_windows(
        &rollups(&db, lo, 72 * H, 60_000),
        &expected(&raw, lo, 72 * H, 60_000),
    );
    db.close().unwrap();
}
