//! The in-memory form of a block's index: symbols, each series' labels and the postings,
//! in a few flat arrays.
//!
//! Every retained block stays open for as long as it is kept, so what one series costs in
//! an open block, times the series of every block, is the server's memory floor. The head
//! needs maps it can change; a block never changes, so its index is built once into
//! sorted arrays addressed by number (no per-string or per-list allocation): about 4 bytes
//! per label of a series for its label references, 4 for its place in a postings list,
//! and the bytes of each distinct string once. Lookups are binary searches, which keeps
//! them as fast as the maps were.

use lookout_model::{Labels, MatchOp, Matcher};

use crate::postings::{RegexPlan, plan, select, union};

/// Why an index body could not be turned into a [`BlockIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexError {
    /// The symbols are not strictly ascending (the writer sorts them; lookups rely on it).
    UnsortedSymbols,
    /// A series names a symbol that does not exist.
    BadSymbol,
    /// The index is larger than 4 GiB of strings or references.
    TooLarge,
}

/// Symbols, series labels and postings of one block.
#[derive(Debug, Default)]
pub(crate) struct BlockIndex {
    /// Every symbol's bytes, concatenated in ascending order.
    text: String,
    /// Where symbol `i` starts in `text`; one more entry marks the end.
    sym_start: Vec<u32>,
    /// Series `r`'s (name, value) symbol numbers are `label_ids[series_start[r]..series_start[r + 1]]`.
    series_start: Vec<u32>,
    label_ids: Vec<u32>,
    /// Every distinct (name, value) pair, ascending.
    pairs: Vec<(u32, u32)>,
    /// Pair `i`'s series are `postings[pair_start[i]..pair_start[i + 1]]`, ascending.
    pair_start: Vec<u32>,
    postings: Vec<u32>,
}

/// Builds a [`BlockIndex`] symbol by symbol, then series by series.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    index: BlockIndex,
}

fn to_u32(n: usize) -> Result<u32, IndexError> {
    u32::try_from(n).map_err(|_| IndexError::TooLarge)
}

impl Builder {
    /// Adds the next symbol; symbols must arrive strictly ascending.
    pub(crate) fn symbol(&mut self, s: &str) -> Result<(), IndexError> {
        let ix = &mut self.index;
        if let Some(last) = ix.sym_start.last()
            && s <= &ix.text[*last as usize..]
        {
            return Err(IndexError::UnsortedSymbols);
        }
        ix.sym_start.push(to_u32(ix.text.len())?);
        ix.text.push_str(s);
        to_u32(ix.text.len())?;
        Ok(())
    }

    /// Adds the next series, as (name, value) symbol-number pairs.
    pub(crate) fn series(&mut self, ids: &[u32]) -> Result<(), IndexError> {
        let ix = &mut self.index;
        let nsym = ix.sym_start.len() as u32;
        if !ids.len().is_multiple_of(2) || ids.iter().any(|id| *id >= nsym) {
            return Err(IndexError::BadSymbol);
        }
        if ix.series_start.is_empty() {
            ix.series_start.push(0);
        }
        ix.label_ids.extend_from_slice(ids);
        let end = to_u32(ix.label_ids.len())?;
        ix.series_start.push(end);
        Ok(())
    }

    /// Builds the postings and returns the finished index.
    pub(crate) fn finish(mut self) -> Result<BlockIndex, IndexError> {
        let ix = &mut self.index;
        let end = to_u32(ix.text.len())?;
        ix.sym_start.push(end);
        if ix.series_start.is_empty() {
            ix.series_start.push(0);
        }
        // (name, value, series) for every label of every series, sorted: runs of equal
        // pairs are the postings lists, and their series come out ascending.
        let mut triples: Vec<(u32, u32, u32)> = Vec::with_capacity(ix.label_ids.len() / 2);
        for r in 0..ix.series_start.len() - 1 {
            let (a, b) = (ix.series_start[r] as usize, ix.series_start[r + 1] as usize);
            for p in ix.label_ids[a..b].chunks_exact(2) {
                triples.push((p[0], p[1], r as u32));
            }
        }
        triples.sort_unstable();
        ix.postings = Vec::with_capacity(triples.len());
        for (name, value, r) in triples {
            if ix.pairs.last() != Some(&(name, value)) {
                ix.pairs.push((name, value));
                ix.pair_start.push(ix.postings.len() as u32);
            }
            ix.postings.push(r);
        }
        ix.pair_start.push(ix.postings.len() as u32);
        ix.label_ids.shrink_to_fit();
        ix.series_start.shrink_to_fit();
        ix.sym_start.shrink_to_fit();
        ix.pairs.shrink_to_fit();
        ix.pair_start.shrink_to_fit();
        ix.text.shrink_to_fit();
        Ok(self.index)
    }
}

impl BlockIndex {
    /// Symbol number `id`'s text.
    fn sym(&self, id: u32) -> &str {
        let i = id as usize;
        &self.text[self.sym_start[i] as usize..self.sym_start[i + 1] as usize]
    }

    /// The number of symbol `s`, if the block has it.
    fn sym_id(&self, s: &str) -> Option<u32> {
        let n = self.sym_start.len().saturating_sub(1);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.sym(mid as u32).cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }

    /// Number of series.
    pub(crate) fn num_series(&self) -> usize {
        self.series_start.len().saturating_sub(1)
    }

    /// Series `r`'s (name, value) symbol numbers.
    fn ids(&self, r: u32) -> &[u32] {
        let r = r as usize;
        match (self.series_start.get(r), self.series_start.get(r + 1)) {
            (Some(a), Some(b)) => &self.label_ids[*a as usize..*b as usize],
            _ => &[],
        }
    }

    /// The value of label `name` of series `r`.
    pub(crate) fn value_of(&self, r: u32, name: &str) -> Option<&str> {
        self.ids(r)
            .chunks_exact(2)
            .find(|p| self.sym(p[0]) == name)
            .map(|p| self.sym(p[1]))
    }

    /// The labels of series `r`.
    pub(crate) fn labels(&self, r: u32) -> Labels {
        Labels::from_pairs(self.label_pairs(r))
    }

    /// Series `r`'s (name, value) pairs, in the order stored (by name).
    pub(crate) fn label_pairs(&self, r: u32) -> impl Iterator<Item = (&str, &str)> {
        self.ids(r)
            .chunks_exact(2)
            .map(|p| (self.sym(p[0]), self.sym(p[1])))
    }

    /// The pairs (indexes into `pairs`) whose name is `name`.
    fn name_range(&self, name: &str) -> std::ops::Range<usize> {
        let Some(id) = self.sym_id(name) else {
            return 0..0;
        };
        let lo = self.pairs.partition_point(|p| p.0 < id);
        let hi = self.pairs.partition_point(|p| p.0 <= id);
        lo..hi
    }

    fn list(&self, pair: usize) -> &[u32] {
        &self.postings[self.pair_start[pair] as usize..self.pair_start[pair + 1] as usize]
    }

    /// The pair index of `name=value` inside `range` (the pairs of `name`).
    fn find(&self, range: &std::ops::Range<usize>, value: &str) -> Option<usize> {
        let id = self.sym_id(value)?;
        self.pairs[range.clone()]
            .binary_search_by_key(&id, |p| p.1)
            .ok()
            .map(|j| range.start + j)
    }

    /// Postings of series whose `m.name` label satisfies `m` (for matchers that reject "").
    fn postings_for(&self, m: &Matcher) -> Vec<u32> {
        let range = self.name_range(&m.name);
        if range.is_empty() {
            return Vec::new();
        }
        let scan = || {
            union(
                range
                    .clone()
                    .filter(|i| m.matches(self.sym(self.pairs[*i].1)))
                    .map(|i| self.list(i))
                    .collect(),
            )
        };
        match m.op {
            MatchOp::Equal => self
                .find(&range, &m.value)
                .map(|i| self.list(i).to_vec())
                .unwrap_or_default(),
            MatchOp::Regex => match plan(&m.value) {
                RegexPlan::Literals(lits) => union(
                    lits.iter()
                        .filter_map(|l| self.find(&range, l))
                        .map(|i| self.list(i))
                        .collect(),
                ),
                RegexPlan::Prefix(p) => {
                    let start = range.start
                        + self.pairs[range.clone()].partition_point(|x| self.sym(x.1) < p.as_str());
                    union(
                        (start..range.end)
                            .take_while(|i| self.sym(self.pairs[*i].1).starts_with(p.as_str()))
                            .map(|i| self.list(i))
                            .collect(),
                    )
                }
                RegexPlan::Scan => scan(),
            },
            _ => scan(),
        }
    }

    /// Series references matching every matcher, ascending; no matchers match nothing.
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        select(
            matchers,
            |m| self.postings_for(m),
            || (0..self.num_series() as u32).collect(),
            |r, n| self.value_of(r, n),
        )
    }

    /// Label names (of every series, or of those in `refs`), sorted.
    pub(crate) fn label_names(&self, refs: Option<&[u32]>) -> Vec<String> {
        let mut ids: Vec<u32> = match refs {
            None => self.pairs.iter().map(|p| p.0).collect(),
            Some(refs) => refs
                .iter()
                .flat_map(|r| self.ids(*r).iter().step_by(2).copied())
                .collect(),
        };
        // Symbol numbers sort as their text does.
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|id| self.sym(id).to_string()).collect()
    }

    /// Values of label `name` (of every series, or of those in `refs`), sorted.
    pub(crate) fn label_values(&self, name: &str, refs: Option<&[u32]>) -> Vec<String> {
        match refs {
            None => self
                .name_range(name)
                .map(|i| self.sym(self.pairs[i].1).to_string())
                .collect(),
            Some(refs) => {
                let mut v: Vec<&str> = refs
                    .iter()
                    .filter_map(|r| self.value_of(*r, name))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v.into_iter().map(str::to_string).collect()
            }
        }
    }

    /// Heap bytes held (what an open block costs beyond its chunk references).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + 4 * (self.sym_start.capacity()
                + self.series_start.capacity()
                + self.label_ids.capacity()
                + self.pair_start.capacity()
                + self.postings.capacity())
            + 8 * self.pairs.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(series: &[&[(&str, &str)]]) -> BlockIndex {
        let mut syms: Vec<&str> = series
            .iter()
            .flat_map(|s| s.iter().flat_map(|(n, v)| [*n, *v]))
            .collect();
        syms.sort_unstable();
        syms.dedup();
        let mut b = Builder::default();
        for s in &syms {
            b.symbol(s).unwrap();
        }
        for s in series {
            let ids: Vec<u32> = s
                .iter()
                .flat_map(|(n, v)| [*n, *v])
                .map(|x| syms.binary_search(&x).unwrap() as u32)
                .collect();
            b.series(&ids).unwrap();
        }
        b.finish().unwrap()
    }

    fn sample() -> BlockIndex {
        build(&[
            &[("__name__", "up"), ("instance", "a:1"), ("job", "node")],
            &[("__name__", "up"), ("instance", "b:1"), ("job", "pg")],
            &[("__name__", "x"), ("instance", "a:1")],
            &[("__name__", "x_total"), ("job", "node")],
        ])
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    #[test]
    fn selects_like_the_maps_did() {
        let ix = sample();
        assert_eq!(ix.num_series(), 4);
        assert_eq!(
            ix.select(&[m(MatchOp::Equal, "__name__", "up")]),
            vec![0, 1]
        );
        assert_eq!(
            ix.select(&[
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::NotEqual, "job", "pg")
            ]),
            vec![0]
        );
        assert_eq!(
            ix.select(&[m(MatchOp::Regex, "__name__", "x.*")]),
            vec![2, 3]
        );
        assert_eq!(
            ix.select(&[m(MatchOp::Regex, "__name__", "up|x")]),
            vec![0, 1, 2]
        );
        assert_eq!(
            ix.select(&[m(MatchOp::Regex, "instance", ".:1")]),
            vec![0, 1, 2]
        );
        assert_eq!(ix.select(&[m(MatchOp::Equal, "job", "")]), vec![2]);
        assert_eq!(
            ix.select(&[m(MatchOp::Equal, "nope", "x")]),
            Vec::<u32>::new()
        );
        assert_eq!(
            ix.select(&[m(MatchOp::Equal, "job", "zzz")]),
            Vec::<u32>::new()
        );
        assert_eq!(ix.select(&[]), Vec::<u32>::new());
    }

    #[test]
    fn names_values_and_labels() {
        let ix = sample();
        assert_eq!(ix.label_names(None), vec!["__name__", "instance", "job"]);
        assert_eq!(ix.label_names(Some(&[2])), vec!["__name__", "instance"]);
        assert_eq!(
            ix.label_values("__name__", None),
            vec!["up", "x", "x_total"]
        );
        assert_eq!(ix.label_values("job", Some(&[1, 3])), vec!["node", "pg"]);
        assert_eq!(ix.label_values("nope", None), Vec::<String>::new());
        assert_eq!(ix.value_of(1, "job"), Some("pg"));
        assert_eq!(ix.value_of(9, "job"), None);
        assert_eq!(
            ix.labels(3),
            Labels::from_pairs([("__name__", "x_total"), ("job", "node")])
        );
    }

    #[test]
    fn rejects_what_would_break_lookups() {
        let mut b = Builder::default();
        b.symbol("b").unwrap();
        assert_eq!(b.symbol("a"), Err(IndexError::UnsortedSymbols));
        assert_eq!(b.symbol("b"), Err(IndexError::UnsortedSymbols));
        assert_eq!(b.series(&[0, 1]), Err(IndexError::BadSymbol));
        assert_eq!(b.series(&[0]), Err(IndexError::BadSymbol));
        let ix = Builder::default().finish().unwrap();
        assert_eq!(ix.num_series(), 0);
        assert_eq!(
            ix.select(&[m(MatchOp::Regex, "a", ".+")]),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn costs_a_few_bytes_per_label() {
        let names: Vec<String> = (0..10_000).map(|i| format!("{i:05}")).collect();
        let mut syms: Vec<&str> = vec!["__name__", "id", "job", "m", "node"];
        syms.extend(names.iter().map(String::as_str));
        syms.sort_unstable();
        let id = |s: &str| syms.binary_search(&s).unwrap() as u32;
        let mut b = Builder::default();
        for s in &syms {
            b.symbol(s).unwrap();
        }
        for n in &names {
            b.series(&[
                id("__name__"),
                id("m"),
                id("id"),
                id(n),
                id("job"),
                id("node"),
            ])
            .unwrap();
        }
        let ix = b.finish().unwrap();
        let per_series = ix.heap_bytes() as f64 / names.len() as f64;
        // 24 bytes of label references, 12 of postings, 4 to find them, and a 5-byte
        // string with its symbol number, pair and postings start (the maps took ~300).
        assert!(per_series < 72.0, "{per_series} bytes per series");
        assert_eq!(ix.select(&[m(MatchOp::Equal, "id", "04242")]), vec![4242]);
    }
}
