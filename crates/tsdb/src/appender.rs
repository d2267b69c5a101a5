//! Appending: label checks, ordering and limits per sample, then a commit that writes
//! the WAL before the head shows the batch.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use std::sync::Arc;

use lookout_model::{Exemplar, FloatHistogram, Labels, Sample, now_ms};
use lookout_storage::{Appendable, Appender, Error, HistogramSample, Result, SeriesRef};

use crate::hchunk;
use crate::head::{Head, Order, same_histogram};
use crate::wal::{self, Record};
use crate::{Inner, SyncPolicy, Tsdb, io_err, ms};

impl Appendable for Tsdb {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(TsdbAppender {
            db: &self.inner,
            max_t: now_ms().saturating_add(ms(self.inner.opts.future_tolerance)),
            pending: Vec::new(),
            new_labels: Vec::new(),
            new_index: HashMap::new(),
            newest: HashMap::new(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
            hnewest: HashMap::new(),
        })
    }
}

/// A series in a batch: an existing head series, or one the batch will create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ref(u32),
    New(u32),
}

struct TsdbAppender<'a> {
    db: &'a Inner,
    /// The latest timestamp accepted: the wall clock when the appender was made plus the
    /// future tolerance.
    max_t: i64,
    pending: Vec<(Key, Sample)>,
    /// Labels of series this batch creates, by `Key::New` index.
    new_labels: Vec<Labels>,
    new_index: HashMap<Labels, u32>,
    /// Newest timestamp per series in this batch.
    newest: HashMap<Key, i64>,
    /// Exemplars of this batch, with their series.
    exemplars: Vec<(Key, Labels, Exemplar)>,
    /// Native-histogram samples of this batch.
    histograms: Vec<(Key, HistogramSample)>,
    /// Newest histogram timestamp per series in this batch.
    hnewest: HashMap<Key, i64>,
}

impl TsdbAppender<'_> {
    fn check_labels(&self, labels: &Labels) -> Result<()> {
        let lim = &self.db.opts.limits;
        let bad = |reason: &str| {
            Err(Error::InvalidLabels {
                labels: labels.to_string(),
                reason: reason.to_string(),
            })
        };
        if labels.is_empty() {
            return bad("empty label set");
        }
        if labels.metric_name().is_none() {
            return bad("missing metric name (__name__)");
        }
        if labels.iter().any(|l| l.name.is_empty()) {
            return bad("empty label name");
        }
        let limit = |what, limit, detail: String| {
            self.db.metrics.limit_rejections.inc();
            Err(Error::LimitExceeded {
                what,
                limit,
                detail,
            })
        };
        // The configured limits, capped by what a WAL series record can hold.
        let max_labels = lim.max_labels.min(wal::MAX_LABELS);
        let max_name = lim.max_label_name_len.min(wal::MAX_LABEL_NAME);
        if labels.len() > max_labels {
            return limit(
                "labels per series",
                max_labels,
                format!("{} has {} labels", short(labels), labels.len()),
            );
        }
        let bytes: usize = labels.iter().map(|l| l.name.len() + l.value.len()).sum();
        if bytes > wal::MAX_SERIES_BYTES {
            return limit(
                "label bytes per series",
                wal::MAX_SERIES_BYTES,
                format!("{} has {bytes} bytes of labels", short(labels)),
            );
        }
        for l in labels {
            if l.name.len() > max_name {
                return limit(
                    "label name length",
                    max_name,
                    format!("label name of {} bytes in {}", l.name.len(), short(labels)),
                );
            }
            if l.value.len() > lim.max_label_value_len {
                return limit(
                    "label value length",
                    lim.max_label_value_len,
                    format!(
                        "value of label {:?} has {} bytes in {}",
                        l.name,
                        l.value.len(),
                        short(labels)
                    ),
                );
            }
        }
        Ok(())
    }
}

impl TsdbAppender<'_> {
    /// The checks every sample of `labels` at `t` passes whatever its kind: the series'
    /// labels and the series limit when the series is new, and the block bounds. Returns
    /// the head's reference and the batch's key for the series, if it has them.
    fn admit(&self, head: &Head, labels: &Labels, t: i64) -> Result<(Option<u32>, Option<Key>)> {
        let db = self.db;
        if db.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if t > self.max_t {
            db.metrics.rejected.inc();
            db.metrics.future_rejections.inc();
            let series = short(labels);
            db.future.record(&series, t, self.max_t, now_ms());
            return Err(Error::TooFarInFuture {
                series,
                t,
                max_t: self.max_t,
            });
        }
        let min_valid = db.min_valid.load(Ordering::Acquire);
        let r = head.get_ref(labels);
        let key = match r {
            Some(r) => Some(Key::Ref(r)),
            None => self.new_index.get(labels).map(|i| Key::New(*i)),
        };
        if key.is_none() {
            self.check_labels(labels)?;
            if let Some(max) = db.opts.limits.max_series
                && head.num_series() + self.new_labels.len() >= max
            {
                db.metrics.limit_rejections.inc();
                return Err(Error::LimitExceeded {
                    what: "series",
                    limit: max,
                    detail: format!("cannot add {}", short(labels)),
                });
            }
        }
        if t < min_valid {
            db.metrics.rejected.inc();
            return Err(Error::OutOfBounds {
                series: short(labels),
                t,
                min_t: min_valid,
            });
        }
        Ok((r, key))
    }

    /// What `order` means for a sample of `labels` at `t` (`r`: its head reference),
    /// given the newest time stored and in this batch: go on (`None`), nothing to add
    /// (a duplicate: `Some(reference)`), or the refusal (too far out of order, a
    /// different value for a stored time).
    fn settle(
        &self,
        order: Order,
        (stored_newest, batch_newest): (Option<i64>, Option<i64>),
        labels: &Labels,
        t: i64,
        r: Option<u32>,
    ) -> Result<Option<SeriesRef>> {
        let db = self.db;
        match order {
            Order::Newest => Ok(None),
            Order::Older => {
                let newest = stored_newest
                    .into_iter()
                    .chain(batch_newest)
                    .max()
                    .unwrap_or(t);
                if t < newest - ms(db.opts.ooo_window) {
                    db.metrics.rejected.inc();
                    return Err(Error::OutOfOrder {
                        series: short(labels),
                        t,
                        last_t: newest,
                    });
                }
                db.metrics.ooo_accepted.inc();
                Ok(None)
            }
            Order::Duplicate => Ok(Some(r.map_or(u64::MAX, u64::from))),
            Order::Conflict => {
                db.metrics.rejected.inc();
                Err(Error::DuplicateSample {
                    series: short(labels),
                    t,
                })
            }
        }
    }

    /// The key of series `labels` in this batch, adding it as a new series if needed.
    fn key_for(&mut self, key: Option<Key>, labels: &Labels) -> Key {
        key.unwrap_or_else(|| {
            let i = self.new_labels.len() as u32;
            self.new_labels.push(labels.clone());
            self.new_index.insert(labels.clone(), i);
            Key::New(i)
        })
    }
}

/// A label set shortened for error messages.
fn short(ls: &Labels) -> String {
    let s = ls.to_string();
    if s.len() > 200 {
        let cut = s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len());
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Classifies `s` for a series whose head holds samples (via `head`) and which already has
/// `batch` samples in this appender.
fn classify(head: &Head, r: Option<u32>, batch: &[Sample], s: Sample) -> Order {
    if let Some(b) = batch.iter().find(|b| b.t == s.t) {
        return if b.v.to_bits() == s.v.to_bits() {
            Order::Duplicate
        } else {
            Order::Conflict
        };
    }
    let head_order = r.map_or(Order::Newest, |r| head.order(r, s.t, s.v));
    match head_order {
        Order::Newest if batch.iter().any(|b| b.t > s.t) => Order::Older,
        other => other,
    }
}

impl Appender for TsdbAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef> {
        let db = self.db;
        let s = Sample::new(t, v);
        let head = db.head.read().expect("lock poisoned");
        let (r, key) = self.admit(&head, labels, t)?;
        let batch_newest = key.and_then(|k| self.newest.get(&k).copied());
        // Only a sample not after this batch's newest needs the batch's other samples.
        let batch: Vec<Sample> = match (key, batch_newest) {
            (Some(k), Some(n)) if t <= n => self
                .pending
                .iter()
                .filter(|(pk, _)| *pk == k)
                .map(|(_, x)| *x)
                .collect(),
            _ => Vec::new(),
        };
        let order = match classify(&head, r, &batch, s) {
            Order::Newest if batch_newest.is_some_and(|n| t <= n) => Order::Older,
            o => o,
        };
        let stored_newest = r.and_then(|r| head.get(r)).and_then(|m| m.max_t());
        if let Some(done) = self.settle(order, (stored_newest, batch_newest), labels, t, r)? {
            return Ok(done);
        }
        drop(head);
        let key = self.key_for(key, labels);
        let e = self.newest.entry(key).or_insert(t);
        *e = (*e).max(t);
        self.pending.push((key, s));
        Ok(r.map_or(u64::MAX, u64::from))
    }

    fn append_histogram(
        &mut self,
        labels: &Labels,
        t: i64,
        h: &FloatHistogram,
    ) -> Result<SeriesRef> {
        let db = self.db;
        for (side, n) in [
            ("positive buckets", h.positive.len()),
            ("negative buckets", h.negative.len()),
            ("custom bounds", h.custom_values.len()),
        ] {
            if n > hchunk::MAX_BUCKETS {
                db.metrics.limit_rejections.inc();
                return Err(Error::LimitExceeded {
                    what: "native histogram buckets per side",
                    limit: hchunk::MAX_BUCKETS,
                    detail: format!("{} has {n} {side}", short(labels)),
                });
            }
        }
        let head = db.head.read().expect("lock poisoned");
        let (r, key) = self.admit(&head, labels, t)?;
        let batch_newest = key.and_then(|k| self.hnewest.get(&k).copied());
        let in_batch = key.and_then(|k| {
            self.histograms
                .iter()
                .find(|(pk, x)| *pk == k && x.t == t)
                .map(|(_, x)| &x.h)
        });
        let order = match in_batch {
            Some(x) if same_histogram(x, h) => Order::Duplicate,
            Some(_) => Order::Conflict,
            None => match r.map_or(Order::Newest, |r| head.order_histogram(r, t, h)) {
                Order::Newest if batch_newest.is_some_and(|n| n > t) => Order::Older,
                other => other,
            },
        };
        let stored_newest = r
            .and_then(|r| head.get(r))
            .and_then(|m| m.hist.as_deref())
            .and_then(|h| h.max_t());
        if let Some(done) = self.settle(order, (stored_newest, batch_newest), labels, t, r)? {
            return Ok(done);
        }
        drop(head);
        let key = self.key_for(key, labels);
        let e = self.hnewest.entry(key).or_insert(t);
        *e = (*e).max(t);
        self.histograms.push((
            key,
            HistogramSample {
                t,
                h: Arc::new(h.clone()),
            },
        ));
        Ok(r.map_or(u64::MAX, u64::from))
    }

    fn append_exemplar(&mut self, labels: &Labels, e: &Exemplar) -> Result<()> {
        let db = self.db;
        if db.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let refuse = |reason: String| {
            db.metrics.exemplars_rejected.inc();
            Err(Error::InvalidExemplar {
                series: short(labels),
                reason,
            })
        };
        if let Some(p) = e.problem() {
            return refuse(p);
        }
        // As for samples: one far-future exemplar would make every later one of its
        // series "out of order" until the ring dropped it.
        if e.t > self.max_t {
            return refuse(format!(
                "too far in the future: timestamp {} is after the latest accepted {}",
                e.t, self.max_t
            ));
        }
        let key = match db.head.read().expect("lock poisoned").get_ref(labels) {
            Some(r) => Key::Ref(r),
            None => match self.new_index.get(labels) {
                Some(i) => Key::New(*i),
                None => return refuse("the series has no sample".into()),
            },
        };
        // Against this batch's newest exemplar of the series, then the stored one.
        if let Some((_, _, last)) = self.exemplars.iter().rev().find(|(k, _, _)| *k == key) {
            if last == e {
                return Ok(());
            }
            if e.t <= last.t {
                return refuse(format!(
                    "out of order: timestamp {} is not after the newest exemplar's {}",
                    e.t, last.t
                ));
            }
        } else {
            match db.exemplars.lock().expect("lock poisoned").check(labels, e) {
                Ok(crate::exemplars::Added::Duplicate) => return Ok(()),
                Ok(crate::exemplars::Added::Kept) => {}
                Err(reason) => return refuse(reason),
            }
        }
        self.exemplars.push((key, labels.clone(), e.clone()));
        Ok(())
    }

    /// Committers take the WAL first, so they commit one at a time in log order. The
    /// head's write lock is held twice, briefly: to create the batch's series and check
    /// its samples against the head, then to apply them; the WAL write and its fsync
    /// happen in between with the head unlocked, so queries never wait for the disk. No
    /// other commit can run between the check and the apply (the WAL lock is held), so the
    /// check still holds; a block cut in between only raises `min_valid`, re-checked.
    fn commit(self: Box<Self>) -> Result<()> {
        if self.pending.is_empty() && self.exemplars.is_empty() && self.histograms.is_empty() {
            return Ok(());
        }
        let db = self.db;
        let mut wal = db.wal.lock().expect("lock poisoned");
        let mut unlogged = db.unlogged.lock().expect("lock poisoned");
        let mut recs = Vec::new();
        let mut created: Vec<u32> = Vec::new();
        let mut relogged: Vec<u32> = Vec::new();
        let mut hbatch: Vec<(u64, HistogramSample)> = Vec::new();
        {
            let mut head = db.head.write().expect("lock poisoned");
            let min_valid = db.min_valid.load(Ordering::Acquire);
            if !unlogged.is_empty() {
                let keys = self.pending.iter().map(|(k, _)| k);
                for key in keys.chain(self.histograms.iter().map(|(k, _)| k)) {
                    if let Key::Ref(r) = key
                        && unlogged.contains(r)
                        && !relogged.contains(r)
                        && let Some(labels) = head.labels_of(*r)
                    {
                        relogged.push(*r);
                        recs.push(Record::Series {
                            sref: u64::from(*r),
                            labels,
                        });
                    }
                }
            }
            // Resolve the series this batch creates (another appender may have created them).
            let mut new_refs = Vec::with_capacity(self.new_labels.len());
            for ls in &self.new_labels {
                let r = match head.get_ref(ls) {
                    Some(r) => r,
                    None => {
                        let r = head.next_ref();
                        head.create(r, ls);
                        created.push(r);
                        recs.push(Record::Series {
                            sref: r as u64,
                            labels: ls.clone(),
                        });
                        r
                    }
                };
                new_refs.push(r);
            }
            let mut batch = Vec::with_capacity(self.pending.len());
            for (key, s) in &self.pending {
                let r = match key {
                    Key::Ref(r) => *r,
                    Key::New(i) => new_refs[*i as usize],
                };
                if s.t < min_valid {
                    db.metrics.rejected.inc();
                    continue;
                }
                // Re-check against the head: another appender may have committed since.
                // Samples of this batch were already checked against each other.
                match head.order(r, s.t, s.v) {
                    Order::Newest | Order::Older => batch.push((r as u64, s.t, s.v)),
                    Order::Duplicate => {}
                    Order::Conflict => {
                        db.metrics.rejected.inc();
                    }
                }
            }
            for (key, x) in &self.histograms {
                let r = match key {
                    Key::Ref(r) => *r,
                    Key::New(i) => new_refs[*i as usize],
                };
                if x.t < min_valid {
                    db.metrics.rejected.inc();
                    continue;
                }
                match head.order_histogram(r, x.t, &x.h) {
                    Order::Newest | Order::Older => hbatch.push((u64::from(r), x.clone())),
                    Order::Duplicate => {}
                    Order::Conflict => {
                        db.metrics.rejected.inc();
                    }
                }
            }
            if !hbatch.is_empty() {
                recs.push(Record::Histograms(hbatch.clone()));
            }
            if !self.exemplars.is_empty() {
                recs.push(Record::Exemplars(
                    self.exemplars
                        .iter()
                        .map(|(key, _, e)| {
                            let r = match key {
                                Key::Ref(r) => *r,
                                Key::New(i) => new_refs[*i as usize],
                            };
                            (u64::from(r), e.clone())
                        })
                        .collect(),
                ));
            }
            recs.push(Record::Samples(batch));
        }
        let mut res = wal.append(&recs);
        if res.is_ok() && db.opts.sync == SyncPolicy::Always {
            res = wal.sync();
        }
        db.record_io(res.as_ref().err());
        if let Err(e) = res {
            // The series stay (another appender may already refer to them) and are
            // logged by the next commit that uses them.
            unlogged.extend(created);
            return Err(io_err("writing WAL")(e));
        }
        for r in relogged {
            unlogged.remove(&r);
        }
        drop(unlogged);
        db.metrics.wal_bytes.set(wal.size() as i64);
        let Some(Record::Samples(batch)) = recs.pop() else {
            unreachable!("pushed above")
        };
        if !self.exemplars.is_empty() {
            // Under the WAL lock, so a checkpoint sees them exactly when it sees the
            // segment that logged them.
            let mut ring = db.exemplars.lock().expect("lock poisoned");
            for (_, series, e) in &self.exemplars {
                match ring.add(series, e.clone()) {
                    Ok(_) => db.metrics.exemplars_appended.inc(),
                    Err(_) => db.metrics.exemplars_rejected.inc(),
                };
            }
            db.metrics.exemplars.set(ring.len() as i64);
        }
        let mut head = db.head.write().expect("lock poisoned");
        drop(wal);
        let min_valid = db.min_valid.load(Ordering::Acquire);
        let mut applied = 0u64;
        for (r, t, v) in &batch {
            if *t >= min_valid {
                head.append(*r as u32, *t, *v);
                applied += 1;
            }
        }
        for (r, x) in hbatch {
            if x.t >= min_valid {
                head.append_histogram(r as u32, x.t, x.h);
                applied += 1;
            }
        }
        db.metrics.appended.inc_by(applied);
        db.metrics.head_series.set(head.num_series() as i64);
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}
