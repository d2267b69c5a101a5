use super::*;
use lookout_model::MatchOp;

fn open(dir: &Path) -> Tsdb {
    Tsdb::open(dir, Options::default(), &mut Registry::default()).unwrap()
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

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut app = db.appender();
    for t in 0..100 {
        app.append(&up("a"), t * 1000, t as f64).unwrap();
        app.append(&up("b"), t * 1000, f64::NAN).unwrap();
    }
    app.commit().unwrap();
    let before = all(&db);
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    let after = all(&db);
    assert_eq!(before.len(), 2);
    assert_eq!(before[0], after[0]);
    assert!(after[1].samples.iter().all(|s| s.v.is_nan()));
    assert_eq!(db.stats().samples, 200);
}

#[test]
fn out_of_order_and_duplicates_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut app = db.appender();
    app.append(&up("a"), 2000, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = db.appender();
    assert!(matches!(
        app.append(&up("a"), 1000, 1.0),
        Err(Error::OutOfOrder {
            t: 1000,
            last_t: 2000,
            ..
        })
    ));
    assert!(matches!(
        app.append(&up("a"), 2000, 5.0),
        Err(Error::DuplicateSample { t: 2000, .. })
    ));
    // An identical duplicate is accepted and ignored.
    app.append(&up("a"), 2000, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(db.stats().samples, 1);
}

#[test]
fn second_open_of_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = open(dir.path());
    let err = Tsdb::open(dir.path(), Options::default(), &mut Registry::default()).unwrap_err();
    assert!(err.to_string().contains("another Lookout"), "{err}");
}

#[test]
fn retention_drops_old_samples_and_checkpoint_replays() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut app = db.appender();
    let day = 24 * 3600 * 1000;
    app.append(&up("old"), 0, 1.0).unwrap();
    app.append(&up("new"), 20 * day, 2.0).unwrap();
    app.commit().unwrap();
    assert_eq!(db.apply_retention(20 * day).unwrap(), 1);
    let mut app = db.appender();
    app.append(&up("new"), 20 * day + 1, 3.0).unwrap();
    app.commit().unwrap();
    db.close().unwrap();
    drop(db);
    let db = open(dir.path());
    let got = all(&db);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels, up("new"));
    assert_eq!(got[0].samples.len(), 2);
}

#[test]
fn label_names_and_values_respect_matchers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut app = db.appender();
    app.append(&up("a"), 1, 1.0).unwrap();
    app.append(
        &Labels::from_pairs([("__name__", "x"), ("zone", "z")]),
        1,
        1.0,
    )
    .unwrap();
    app.commit().unwrap();
    let q = db.querier(0, 10).unwrap();
    assert_eq!(q.label_names(&[]).unwrap(), vec!["__name__", "job", "zone"]);
    assert_eq!(
        q.label_values("__name__", &[Matcher::equal("job", "a")])
            .unwrap(),
        vec!["up"]
    );
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
