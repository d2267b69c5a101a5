//! Issue 12: a bad timestamp or a damaged file never stops ingestion or loses data.

use super::*;
use lookout_storage::{Appendable, Queryable, SelectHints};

fn opts() -> Options {
    Options {
        maintenance_interval: None,
        ..Options::default()
    }
}

fn m(name: &str) -> Labels {
    Labels::from_pairs([("__name__", name)])
}

fn count(db: &Tsdb, name: &str) -> usize {
    db.querier(i64::MIN, i64::MAX)
        .unwrap()
        .select(&SelectHints::default(), &[Matcher::equal("__name__", name)])
        .unwrap()
        .iter()
        .map(|s| s.samples.len())
        .sum()
}

/// One sample at now + 1 year used to make maintenance cut blocks up to it, after which
/// every sample at the present was out of bounds.
#[test]
fn issue_12_a_future_sample_is_rejected_by_name_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    let now = now_ms();
    let mut app = db.appender();
    let e = app
        .append(&m("future"), now + 365 * 86_400_000, 1.0)
        .unwrap_err();
    assert!(matches!(e, Error::TooFarInFuture { .. }), "{e}");
    // Within the tolerance is fine.
    app.append(&m("soon"), now + 60_000, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(db.inner.metrics.future_rejections.get(), 1);
    let w = db.warnings();
    assert!(
        w.iter().any(|w| w.contains("too far in the future")),
        "{w:?}"
    );
    // Ingestion at the present goes on.
    let mut app = db.appender();
    app.append(&m("now"), now, 1.0).unwrap();
    app.commit().unwrap();
    db.maintain(now).unwrap();
    let mut app = db.appender();
    app.append(&m("now"), now + 1000, 2.0).unwrap();
    app.commit().unwrap();
    assert_eq!(count(&db, "now"), 2);
}

/// With a future sample already in the head (a generous tolerance lets it in, as data
/// written before the tolerance existed would), maintenance cuts by the wall clock.
#[test]
fn issue_12_block_cuts_follow_the_wall_clock_not_the_newest_sample() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        Options {
            future_tolerance: Duration::from_secs(400 * 86_400),
            ..opts()
        },
        &mut Registry::default(),
    )
    .unwrap();
    let now = now_ms();
    let mut app = db.appender();
    app.append(&m("past"), now - 3 * 3_600_000, 1.0).unwrap();
    app.append(&m("future"), now + 365 * 86_400_000, 1.0)
        .unwrap();
    app.commit().unwrap();
    db.maintain(now).unwrap();
    // The past was cut into a block; the future sample still waits in the head...
    assert!(db.inner.min_valid.load(Ordering::Acquire) <= now);
    // ... and the present is still accepted.
    let mut app = db.appender();
    app.append(&m("present"), now, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(count(&db, "present"), 1);
    assert_eq!(count(&db, "past"), 1);
    assert_eq!(count(&db, "future"), 1);
}

/// Importing a block over the head's range used to empty the head at the next restart:
/// WAL replay dropped every sample below the newest block's end.
#[test]
fn issue_12_an_imported_block_over_the_head_loses_nothing_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    {
        let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
        let mut app = db.appender();
        for i in 0..60 {
            app.append(&m("live"), now - 3_600_000 + i * 60_000, i as f64)
                .unwrap();
        }
        app.commit().unwrap();
        db.close().unwrap();
    }
    let mut imp = Importer::new(dir.path(), Duration::from_secs(2 * 3600)).unwrap();
    imp.add(m("live"), now - 1_800_000 + 1, 99.0).unwrap();
    imp.add(m("backfill"), now - 1_800_000, 1.0).unwrap();
    imp.finish().unwrap();
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    assert_eq!(
        count(&db, "live"),
        61,
        "the head's samples survive the import"
    );
    assert_eq!(count(&db, "backfill"), 1);
    // And live ingestion continues right after the newest head sample.
    let mut app = db.appender();
    app.append(&m("live"), now, 1.0).unwrap();
    app.commit().unwrap();
}

#[test]
fn issue_12_import_refuses_samples_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let mut imp = Importer::new(dir.path(), Duration::from_secs(2 * 3600)).unwrap();
    let e = imp
        .add(m("x"), now_ms() + 3_600_000, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("too far in the future"), "{e}");
    imp.abort();
}

/// A crash between writing a compacted block and removing its sources left overlapping
/// blocks; the new block names its parents, and open removes them.
#[test]
fn issue_12_sources_left_by_a_crash_mid_compaction_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let h = 3_600_000;
    let before = {
        let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
        let mut app = db.appender();
        for t in (0..14 * h).step_by(60_000) {
            app.append(&m("c"), t, t as f64).unwrap();
        }
        app.commit().unwrap();
        db.maintain(14 * h).unwrap();
        let blocks = db.inner.blocks.read().unwrap().len();
        assert!(blocks >= 1);
        let n = count(&db, "c");
        db.close().unwrap();
        n
    };
    // Simulate the crash: put a copy of a source back next to the compacted block.
    let bdir = dir.path().join("blocks");
    let compacted = std::fs::read_dir(&bdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let meta: BlockMeta =
                serde_json::from_slice(&std::fs::read(p.join("meta.json")).unwrap()).unwrap();
            !meta.parents.is_empty()
        })
        .expect("a compacted block naming its parents");
    let meta: BlockMeta =
        serde_json::from_slice(&std::fs::read(compacted.join("meta.json")).unwrap()).unwrap();
    let ghost = bdir.join(&meta.parents[0]);
    std::fs::create_dir_all(&ghost).unwrap();
    for f in ["chunks", "index"] {
        std::fs::copy(compacted.join(f), ghost.join(f)).unwrap();
    }
    let mut gm = meta.clone();
    gm.id = meta.parents[0].clone();
    gm.parents.clear();
    gm.level = 1;
    std::fs::write(ghost.join("meta.json"), serde_json::to_vec(&gm).unwrap()).unwrap();
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    assert!(!ghost.exists(), "the superseded source is removed");
    assert_eq!(count(&db, "c"), before);
}

/// A damaged block used to stop start-up; now it is skipped, reported, left on disk,
/// and the rest is served.
#[test]
fn issue_12_a_damaged_block_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let h = 3_600_000;
    {
        let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
        let mut app = db.appender();
        for t in (0..5 * h).step_by(60_000) {
            app.append(&m("c"), t, 1.0).unwrap();
        }
        app.commit().unwrap();
        db.flush_head().unwrap();
        db.close().unwrap();
    }
    let mut blocks: Vec<_> = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blocks.sort();
    assert!(blocks.len() >= 2);
    let index = blocks[0].join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&index, &bytes).unwrap();
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    let w = db.warnings();
    assert!(w.iter().any(|w| w.contains("block skipped")), "{w:?}");
    assert!(index.exists(), "damaged files are left for the operator");
    assert!(count(&db, "c") > 0, "the other blocks are served");
}

/// Item 11: commit wrote (and with `wal_sync: always` fsynced) the WAL while holding the
/// head's write lock, so every query waited for the disk. With the WAL held up (as by a
/// slow fsync) and a commit waiting on it, queries must still run.
#[test]
fn issue_12_queries_do_not_wait_for_a_commit_stuck_on_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap());
    let mut app = db.appender();
    app.append(&m("x"), 1000, 1.0).unwrap();
    app.commit().unwrap();

    let wal = db.inner.wal.lock().unwrap(); // a long fsync in progress
    let committer = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            let mut app = db.appender();
            app.append(&m("x"), 2000, 2.0).unwrap();
            app.append(&m("new"), 2000, 2.0).unwrap();
            app.commit().unwrap();
        })
    };
    // Let the committer reach the WAL lock.
    std::thread::sleep(Duration::from_millis(200));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            let _ = tx.send(count(&db, "x"));
        });
    }
    // A deadlock detector, not a speed target: the query needs no time at all.
    let seen = rx.recv_timeout(Duration::from_secs(10));
    drop(wal);
    committer.join().unwrap();
    assert_eq!(seen, Ok(1), "the query waited for the WAL");
    assert_eq!(count(&db, "x"), 2);
    assert_eq!(count(&db, "new"), 1);
}

/// Item 11: a WAL write that fails after the batch created series leaves them usable:
/// the next commit that uses them logs them, so they survive a restart.
#[test]
fn issue_12_series_created_by_a_failed_commit_are_logged_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
        let mut a1 = db.appender();
        a1.append(&m("fresh"), 1000, 1.0).unwrap();
        // Simulate the failure path: the series is created but its record not written.
        {
            let _w = db.inner.wal.lock().unwrap();
            let mut head = db.inner.head.write().unwrap();
            let r = head.next_ref();
            head.create(r, &m("fresh"));
            db.inner.unlogged.lock().unwrap().insert(r);
        }
        drop(a1);
        let mut a2 = db.appender();
        a2.append(&m("fresh"), 2000, 2.0).unwrap();
        a2.commit().unwrap();
        assert!(db.inner.unlogged.lock().unwrap().is_empty());
        db.close().unwrap();
    }
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    assert_eq!(count(&db, "fresh"), 1);
}

/// Item 10: the head never freed symbols or series slots, so memory grew with every
/// label value and every series ever seen under series churn.
#[test]
fn issue_12_series_churn_frees_symbols_and_series_slots() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    let h = 3_600_000;
    let mut peak_symbols = 0;
    for round in 0..10i64 {
        let t0 = round * 2 * h;
        let mut app = db.appender();
        for i in 0..2000 {
            let id = format!("pod-{round}-{i}");
            let ls = Labels::from_pairs([("__name__", "churn"), ("pod", id.as_str())]);
            for k in 0..4 {
                app.append(&ls, t0 + k * 60_000, 1.0).unwrap();
            }
        }
        app.commit().unwrap();
        // Two hours on, the round's series are cut into a block and leave the head.
        db.maintain(t0 + 2 * h + h / 2).unwrap();
        let head = db.inner.head.read().unwrap();
        peak_symbols = peak_symbols.max(head.num_symbols());
        // At most the rounds the head still spans (three) are held, not all seen so far.
        assert!(
            head.num_symbols() <= 3 * 2000 + 3,
            "round {round}: {} symbols",
            head.num_symbols()
        );
        // Slots too: the pages of departed series are freed (a page is 1024 slots, so
        // three rounds' 6000 series span at most eight pages), not one per series ever.
        assert!(
            head.series.slots_held() <= 8 * 1024,
            "round {round}: {} slots for {} series",
            head.series.slots_held(),
            head.num_series()
        );
    }
    assert!(peak_symbols > 0);
    // Everything is still queryable from the blocks.
    assert_eq!(count(&db, "churn"), 10 * 2000 * 4);
}

/// A damaged page of a block's chunks used to fail every query touching it; now the
/// samples it held are skipped, the rest answered, and the storage check says why.
#[test]
fn issue_12_a_damaged_chunk_page_costs_its_samples_not_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let h = 3_600_000;
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    let mut app = db.appender();
    for t in (0..5 * h).step_by(60_000) {
        app.append(&m("c"), t, (t / 60_000) as f64).unwrap();
    }
    app.commit().unwrap();
    db.flush_head().unwrap();
    let before = count(&db, "c");
    db.close().unwrap();
    drop(db);
    let mut blocks: Vec<_> = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blocks.sort();
    let chunks = blocks[0].join("chunks");
    let mut bytes = std::fs::read(&chunks).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&chunks, &bytes).unwrap();
    let db = Tsdb::open(dir.path(), opts(), &mut Registry::default()).unwrap();
    let after = count(&db, "c");
    assert!(
        after > 0 && after < before,
        "before {before}, after {after}"
    );
    let w = db.warnings();
    assert!(w.iter().any(|w| w.contains("damaged chunk data")), "{w:?}");
}
