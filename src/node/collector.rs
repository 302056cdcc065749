//! A top-k collector ordered by score, then id: the same order whichever tier or segment a
//! document is in, so per-tier pages merge into exactly the page one index would return.
//! (tantivy's `TopDocs` breaks ties by document address, which differs between tiers.)
//!
//! A candidate costs what it costs in `TopDocs`: its score decides, and only a candidate that
//! reaches the current threshold reads one `u64` fast column to break ties (the id's value for
//! numeric ids, its term ordinal for string ids — both order like the id within a segment).
//! The hits a segment keeps read `_key`, the id's sort key, which orders across segments and
//! tiers; string ids whose keys are equal (a shared 8-byte prefix) are compared in full, and
//! only those. Block-max pruning is kept: the threshold handed back to tantivy is just below
//! the k-th score, so documents tying it still arrive and compete on id.
//!
//! The k-th score is also shared, through [`SharedThreshold`], with the tier's later segments
//! and with the other tier searched at the same time: a document scoring below a score that k
//! documents elsewhere reach cannot be on the page, so each search prunes with the best bound
//! any of them has found.
//!
//! A score expression prunes too: from the k-th rank and the segment's value ranges of the
//! fields it reads, `RankProfile::skippable_score` gives the BM25 score below which no document
//! of the segment can reach the page, and that is tantivy's threshold, recomputed only when the
//! k-th rank rises. An `order_by` segment whose value range cannot reach the k-th rank is not
//! searched at all.

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

use crate::format::sort_key::{self, KeyExactness};
use crate::ranking::values::{SuffixRanges, TierValues, ValueColumn};
use crate::ranking::{RankProfile, RankRule, ValueRange};
use crate::schema::{ADDR_FIELD, SORT_KEY_FIELD};

/// A document id as the schema types it; ordered like the values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdKey {
    U64(u64),
    I64(i64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    U64,
    I64,
    Str,
}

impl IdKind {
    fn exactness(self) -> KeyExactness {
        match self {
            IdKind::U64 | IdKind::I64 => KeyExactness::Exact,
            IdKind::Str => KeyExactness::Prefix,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierName {
    Hot,
    Cold,
}

/// One hit of one tier.
#[derive(Debug, Clone, Copy)]
pub struct RankedHit {
    /// What the page is ordered by (higher first): BM25, a profile's score, or a field's value.
    pub rank: f64,
    /// BM25.
    pub score: Score,
    /// The id's sort key (`format::sort_key`).
    pub key: u64,
    pub tier: TierName,
    pub doc: DocAddress,
    /// The cold document's packed `_addr`; `None` in the hot tier.
    pub addr: Option<u64>,
}

/// The best `k`-th rank known so far, shared by every segment of the tiers searched for one
/// page. Only ever raised. Stored as the `f64`'s bits mapped so that unsigned order is float
/// order (negative ranks included).
#[derive(Debug)]
pub struct SharedThreshold(AtomicU64);

impl Default for SharedThreshold {
    fn default() -> Self {
        SharedThreshold(AtomicU64::new(ordered_bits(f64::NEG_INFINITY)))
    }
}

const SIGN: u64 = 1 << 63;

fn ordered_bits(rank: f64) -> u64 {
    let bits = rank.to_bits();
    if bits & SIGN != 0 { !bits } else { bits | SIGN }
}

fn from_ordered_bits(bits: u64) -> f64 {
    if bits & SIGN != 0 {
        f64::from_bits(bits & !SIGN)
    } else {
        f64::from_bits(!bits)
    }
}

impl SharedThreshold {
    /// Some `k` documents rank at least this.
    pub fn get(&self) -> f64 {
        from_ordered_bits(self.0.load(AtomicOrdering::Relaxed))
    }

    /// `k` documents were found ranking at least `rank`.
    pub fn raise(&self, rank: f64) {
        self.0
            .fetch_max(ordered_bits(rank), AtomicOrdering::Relaxed);
    }
}

/// The fast columns `TopHits` reads, per segment of one tier, opened once when the tier is
/// loaded: opening a string column parses its dictionary, which costs several times what a
/// whole top-k search does.
pub struct HitColumns {
    kind: IdKind,
    /// In the searcher's segment order: a hit's `segment_ord` indexes it.
    segments: Vec<(SegmentId, SegmentColumns)>,
}

#[derive(Clone)]
struct SegmentColumns {
    /// `_key` of each document.
    sort_keys: Column<u64>,
    /// Orders like the id within the segment.
    local_order: LocalOrder,
    /// The string id column, to compare ids whose keys are equal.
    strings: Option<StrColumn>,
    /// `_addr` of each document (the cold tier).
    addr: Option<Column<u64>>,
}

/// Orders a segment's documents like their ids: the id's term ordinals for string ids, `_key`
/// for numeric ones. Read for every candidate a ranking collects (ties are ordered by it).
#[derive(Clone)]
enum LocalOrder {
    /// Decoded from the column for each candidate.
    Column(Column<u64>),
    /// Each document's rank in id order, read once when the tier is loaded: a candidate's then
    /// costs an array index, where decoding the column cost 3% of a hot-only search's CPU
    /// (profiled behind gRPC, docs/benchmarks.md). 4 bytes a document: for the hot tier,
    /// small by design.
    Ranks(Arc<[u32]>),
}

impl LocalOrder {
    fn of(&self, doc: DocId) -> u64 {
        match self {
            LocalOrder::Column(column) => column.first(doc).unwrap_or(u64::MAX),
            LocalOrder::Ranks(ranks) => ranks
                .get(doc as usize)
                .map_or(u64::MAX, |&rank| rank.into()),
        }
    }

    /// The ranks of `column`'s values over `max_doc` documents, equal values ranked equal and
    /// a document without a value last, as `Column` orders them (`u64::MAX`). A rank is below
    /// `max_doc`, so it fits a `DocId`'s `u32`.
    fn ranks(column: &Column<u64>, max_doc: DocId) -> LocalOrder {
        let mut by_value: Vec<(u64, DocId)> = (0..max_doc)
            .map(|doc| (column.first(doc).unwrap_or(u64::MAX), doc))
            .collect();
        by_value.sort_unstable();
        let mut ranks = vec![0u32; max_doc as usize];
        let mut rank = 0u32;
        for (at, &(value, doc)) in by_value.iter().enumerate() {
            if at > 0 && value != by_value[at - 1].0 {
                rank += 1;
            }
            ranks[doc as usize] = rank;
        }
        LocalOrder::Ranks(ranks.into())
    }
}

impl HitColumns {
    /// The columns `tier`'s rankings read: the cold tier's with each document's `_addr`; the
    /// hot tier's with the id order read into memory (`LocalOrder::Ranks`).
    pub fn open(
        searcher: &Searcher,
        id_field: &str,
        kind: IdKind,
        tier: TierName,
    ) -> tantivy::Result<HitColumns> {
        let with_addr = tier == TierName::Cold;
        let segments = searcher
            .segment_readers()
            .iter()
            .map(|reader| {
                let fast = reader.fast_fields();
                let sort_keys = fast.u64(SORT_KEY_FIELD)?;
                let strings = match kind {
                    IdKind::Str => Some(fast.str(id_field)?.ok_or_else(|| {
                        tantivy::TantivyError::SchemaError(format!(
                            "id field `{id_field}` has no fast column"
                        ))
                    })?),
                    IdKind::U64 | IdKind::I64 => None,
                };
                let order_column = match &strings {
                    Some(column) => column.ords().clone(),
                    None => sort_keys.clone(),
                };
                let local_order = match tier {
                    TierName::Hot => LocalOrder::ranks(&order_column, reader.max_doc()),
                    TierName::Cold => LocalOrder::Column(order_column),
                };
                let addr = if with_addr {
                    Some(fast.u64(ADDR_FIELD)?)
                } else {
                    None
                };
                Ok((
                    reader.segment_id(),
                    SegmentColumns {
                        sort_keys,
                        local_order,
                        strings,
                        addr,
                    },
                ))
            })
            .collect::<tantivy::Result<_>>()?;
        Ok(HitColumns { kind, segments })
    }

    fn segment(&self, segment: SegmentId) -> tantivy::Result<&SegmentColumns> {
        self.segments
            .iter()
            .find(|(id, _)| *id == segment)
            .map(|(_, columns)| columns)
            .ok_or_else(|| {
                tantivy::TantivyError::InternalError(format!(
                    "segment {} is not among the tier's opened segments",
                    segment.short_uuid_string()
                ))
            })
    }

    /// The full id of a hit of this tier.
    pub fn id(&self, hit: &RankedHit) -> IdKey {
        match self.kind {
            IdKind::U64 => IdKey::U64(hit.key),
            IdKind::I64 => IdKey::I64(sort_key::i64_from_key(hit.key)),
            IdKind::Str => IdKey::Str(self.id_string(hit.doc)),
        }
    }

    /// The id of a string-id document (empty for numeric ids).
    pub fn id_string(&self, doc: DocAddress) -> String {
        let mut text = String::new();
        let columns = &self.segments[doc.segment_ord as usize].1;
        if let Some(strings) = &columns.strings {
            // Every document has an id, and an ordinal read from the column is in its
            // dictionary.
            let ord = strings.ords().first(doc.doc_id).unwrap_or(0);
            let _ = strings.ord_to_str(ord, &mut text);
        }
        text
    }

    pub fn exactness(&self) -> KeyExactness {
        self.kind.exactness()
    }
}

/// Top `limit` hits of one tier by (rank, id).
pub struct TopHits {
    pub limit: usize,
    pub tier: TierName,
    /// The tier's columns, opened once.
    pub columns: Arc<HitColumns>,
    pub profile: Arc<RankProfile>,
    /// The tier's value columns, read by profiles other than BM25.
    pub values: Arc<TierValues>,
    /// Shared with the other searches for the same page; a fresh one prunes alone.
    pub threshold: Arc<SharedThreshold>,
    /// How close below the `limit`-th rank, relative to it, a hit is kept too: one whose score
    /// an exact sum could lift onto the page (`exact_sum`). 0 keeps exactly `limit`, and is
    /// what ranking by anything but BM25 alone must pass.
    pub near_tie: f64,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    rank: f64,
    score: Score,
    local: u64,
    doc: DocId,
}

/// Better first: higher rank, then smaller id.
fn better_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.rank
        .total_cmp(&a.rank)
        .then_with(|| a.local.cmp(&b.local))
}

pub struct SegmentTopHits {
    limit: usize,
    tier: TierName,
    segment: SegmentOrdinal,
    columns: SegmentColumns,
    threshold: Arc<SharedThreshold>,
    profile: Arc<RankProfile>,
    /// The profile is plain BM25: the rank is the score (kept apart to keep the per-candidate
    /// test off the profile).
    bm25_only: bool,
    /// The profile's inputs in this segment, their ranges over it, and a buffer for one
    /// document's values (NaN for none).
    inputs: Vec<ValueColumn>,
    ranges: Vec<ValueRange>,
    /// The inputs' ranges from each checkpoint of the segment on, and the checkpoint `ranges`
    /// hold from: as the search passes checkpoints, `ranges` narrow to what is left.
    suffixes: Option<Vec<Arc<SuffixRanges>>>,
    checkpoint: usize,
    values: Vec<f64>,
    /// A score expression's pruning threshold, and the rank floor it was computed for.
    profile_threshold: (f64, Score),
    /// Candidates, cut to the best `limit` (and their near ties) when `cut_at` are held (as
    /// tantivy's `TopNComputer` does): amortised O(1) per candidate, no heap.
    buffer: Vec<Candidate>,
    cut_at: usize,
    /// The worst kept candidate after the last cut: a newcomer must beat it, or come within
    /// `near_tie` of it.
    worst: Option<Candidate>,
    near_tie: f64,
}

impl SegmentTopHits {
    fn rank_of(&mut self, doc: DocId, score: Score) -> f64 {
        if self.bm25_only {
            return f64::from(score);
        }
        for (value, column) in self.values.iter_mut().zip(&self.inputs) {
            *value = column.value(doc);
        }
        self.profile.rank_flat(score, &self.values)
    }

    fn near_tie_floor(&self, rank: f64) -> f64 {
        near_tie_floor(rank, self.near_tie)
    }

    fn collect_candidate(&mut self, doc: DocId, score: Score) {
        let rank = self.rank_of(doc, score);
        if let Some(worst) = self.worst
            && rank < self.near_tie_floor(worst.rank)
        {
            return;
        }
        let local = self.columns.local_order.of(doc);
        let candidate = Candidate {
            rank,
            score,
            local,
            doc,
        };
        if self.near_tie == 0.0
            && let Some(worst) = self.worst
            && better_first(&candidate, &worst) != Ordering::Less
        {
            return;
        }
        // Cut a limit past what the last cut kept, not at the buffer's capacity: the capacity
        // is capped, so with a deep page it can be below the limit and a cut there would keep
        // nothing.
        if self.buffer.len() >= self.cut_at {
            self.cut();
        }
        self.buffer.push(candidate);
    }

    /// Keeps the best `limit` candidates, and up to `limit` more ranked below the last of
    /// them by less than its near-tie margin: the smallest ids among those, since among equal
    /// exact scores the smallest ids win.
    fn cut(&mut self) {
        let limit = self.limit;
        self.buffer.select_nth_unstable_by(limit - 1, better_first);
        let worst = self.buffer[limit - 1];
        if self.near_tie > 0.0 {
            let floor = self.near_tie_floor(worst.rank);
            let mut below: Vec<Candidate> = self.buffer[limit..]
                .iter()
                .filter(|candidate| candidate.rank >= floor && candidate.rank < worst.rank)
                .copied()
                .collect();
            if below.len() > limit {
                below.select_nth_unstable_by_key(limit - 1, |candidate| candidate.local);
                below.truncate(limit);
            }
            self.buffer.truncate(limit);
            self.buffer.extend(below);
        } else {
            self.buffer.truncate(limit);
        }
        self.cut_at = self.buffer.len() + limit;
        self.worst = Some(worst);
        self.threshold.raise(worst.rank);
    }

    /// What tantivy may skip when ranking by BM25: documents scoring below the best known k-th
    /// score, less the near-tie margin. Just below that, so that documents tying it still
    /// arrive and compete on id. (The rank is the `f32` score widened, so with no margin
    /// narrowing it back is exact.)
    fn pruning_threshold(&self) -> Score {
        let kth = self.kth_rank();
        if kth == f64::NEG_INFINITY {
            return Score::NEG_INFINITY;
        }
        (self.near_tie_floor(kth) as Score).next_down()
    }

    /// The best known k-th rank: this segment's or another search's.
    fn kth_rank(&self) -> f64 {
        let own = self.worst.map_or(f64::NEG_INFINITY, |worst| worst.rank);
        own.max(self.threshold.get())
    }

    /// Narrows `ranges` to the documents after `doc` once the search has passed a checkpoint
    /// (tantivy gives documents in order), and forgets the score threshold computed from the
    /// wider ones.
    fn pass(&mut self, doc: DocId) {
        let Some(suffixes) = &self.suffixes else {
            return;
        };
        let Some(first) = suffixes.first() else {
            return;
        };
        let at = first.checkpoint(doc.saturating_add(1));
        if at <= self.checkpoint {
            return;
        }
        self.checkpoint = at;
        let mut changed = false;
        for (range, suffix) in self.ranges.iter_mut().zip(suffixes) {
            let narrower = suffix.from_checkpoint(at);
            changed |= narrower != *range;
            *range = narrower;
        }
        if changed {
            self.profile_threshold.0 = f64::NAN;
        }
    }

    /// What tantivy may skip when ranking by a score expression: documents whose BM25 score
    /// keeps them below the k-th rank whatever their values in what is left of this segment
    /// (`ranges`, as `pass` narrowed them).
    fn profile_pruning_threshold(&mut self) -> Score {
        let kth = self.kth_rank();
        if kth == f64::NEG_INFINITY {
            return Score::NEG_INFINITY;
        }
        let floor = self.near_tie_floor(kth);
        if floor != self.profile_threshold.0 {
            let threshold = self
                .profile
                .skippable_score(floor, &self.ranges)
                .unwrap_or(Score::NEG_INFINITY);
            self.profile_threshold = (floor, threshold);
        }
        self.profile_threshold.1
    }

    /// Whether no document of this segment can reach the k-th rank, whatever its score: an
    /// `order_by` whose segment range is below it.
    fn segment_out_of_reach(&self) -> bool {
        let RankRule::OrderBy(order) = &self.profile.rule else {
            return false;
        };
        let kth = self.kth_rank();
        kth != f64::NEG_INFINITY && order.upper_bound(self.ranges[0]) < self.near_tie_floor(kth)
    }
}

impl SegmentCollector for SegmentTopHits {
    type Fruit = Vec<RankedHit>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.limit > 0 {
            self.collect_candidate(doc, score);
        }
    }

    /// The segment's hits in their exact order: within a segment the local order is the id's.
    fn harvest(mut self) -> Vec<RankedHit> {
        if self.buffer.len() > self.limit {
            self.cut();
        }
        self.buffer.sort_unstable_by(better_first);
        if let Some(worst) = self
            .limit
            .checked_sub(1)
            .and_then(|last| self.buffer.get(last))
        {
            self.threshold.raise(worst.rank);
        }
        self.buffer
            .iter()
            .map(|candidate| RankedHit {
                rank: candidate.rank,
                score: candidate.score,
                key: self
                    .columns
                    .sort_keys
                    .first(candidate.doc)
                    .unwrap_or(u64::MAX),
                tier: self.tier,
                doc: DocAddress::new(self.segment, candidate.doc),
                addr: self
                    .columns
                    .addr
                    .as_ref()
                    .and_then(|column| column.first(candidate.doc)),
            })
            .collect()
    }
}

impl Collector for TopHits {
    type Fruit = Vec<RankedHit>;
    type Child = SegmentTopHits;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTopHits> {
        let columns = self.columns.segment(reader.segment_id())?.clone();
        let inputs = self
            .values
            .segment_inputs(segment as usize, self.profile.inputs());
        let ranges = inputs.iter().map(ValueColumn::range).collect();
        let suffixes = self
            .values
            .segment_suffixes(segment as usize, self.profile.inputs());
        Ok(SegmentTopHits {
            limit: self.limit,
            tier: self.tier,
            segment,
            columns,
            threshold: self.threshold.clone(),
            profile: self.profile.clone(),
            bm25_only: self.profile.rule == RankRule::Bm25,
            values: vec![f64::NAN; inputs.len()],
            inputs,
            ranges,
            suffixes,
            checkpoint: 0,
            profile_threshold: (f64::NAN, Score::NEG_INFINITY),
            buffer: Vec::with_capacity(2 * self.limit.min(4096)),
            cut_at: 2 * self.limit,
            worst: None,
            near_tie: self.near_tie,
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn collect_segment(
        &self,
        weight: &dyn tantivy::query::Weight,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<RankedHit>> {
        let mut collector = self.for_segment(segment, reader)?;
        if self.limit == 0 {
            return Ok(Vec::new());
        }
        let alive = reader.alive_bitset().cloned();
        match &self.profile.rule {
            RankRule::Bm25 => {
                let start = collector.pruning_threshold();
                weight.for_each_pruning(start, reader, &mut |doc, score| {
                    if alive.as_ref().is_none_or(|alive| alive.is_alive(doc)) {
                        collector.collect_candidate(doc, score);
                    }
                    collector.pruning_threshold()
                })?;
            }
            RankRule::Score(_) => {
                let start = collector.profile_pruning_threshold();
                weight.for_each_pruning(start, reader, &mut |doc, score| {
                    if alive.as_ref().is_none_or(|alive| alive.is_alive(doc)) {
                        collector.collect_candidate(doc, score);
                    }
                    collector.pass(doc);
                    collector.profile_pruning_threshold()
                })?;
            }
            RankRule::OrderBy(_) => {
                if collector.segment_out_of_reach() {
                    return Ok(Vec::new());
                }
                // The rank is the field's value: the score bounds nothing, every match ranks
                // until what is left of the segment cannot reach the k-th rank (in a segment
                // sorted by the field, once the page is full); then an infinite threshold
                // skips the rest.
                weight.for_each_pruning(Score::NEG_INFINITY, reader, &mut |doc, score| {
                    if alive.as_ref().is_none_or(|alive| alive.is_alive(doc)) {
                        collector.collect_candidate(doc, score);
                    }
                    collector.pass(doc);
                    if collector.segment_out_of_reach() {
                        Score::INFINITY
                    } else {
                        Score::NEG_INFINITY
                    }
                })?;
            }
        }
        Ok(collector.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<Vec<RankedHit>>) -> tantivy::Result<Vec<RankedHit>> {
        let mut hits: Vec<RankedHit> = fruits.into_iter().flatten().collect();
        sort_best_first(&mut hits, self.columns.exactness(), |hit| {
            self.columns.id_string(hit.doc)
        });
        let kept = through_near_ties(&hits, self.limit, self.near_tie);
        hits.truncate(kept);
        Ok(hits)
    }
}

/// The lowest rank a near tie of `rank` reaches: `near_tie` times the rank below it.
pub fn near_tie_floor(rank: f64, near_tie: f64) -> f64 {
    rank - rank.abs() * near_tie
}

/// How many of `hits` (best first) to keep for a page of `limit`: the page, and the hits
/// after it whose rank is within the near-tie margin of its last.
pub fn through_near_ties(hits: &[RankedHit], limit: usize, near_tie: f64) -> usize {
    let Some(last) = limit.checked_sub(1).and_then(|last| hits.get(last)) else {
        return hits.len().min(limit);
    };
    let floor = near_tie_floor(last.rank, near_tie);
    limit
        + hits[limit..]
            .iter()
            .take_while(|hit| near_tie > 0.0 && hit.rank >= floor)
            .count()
}

/// Sorts hits by (rank, id), best first.
///
/// Contract: the hits of each segment of each tier arrive in their exact order among
/// themselves (as `TopHits` returns them), so keys decide alone unless hits of different
/// segments tie on rank and key with `Prefix` exactness; only for such runs is `full_id` asked
/// for ids, and only for the hits in them.
pub fn sort_best_first(
    hits: &mut [RankedHit],
    exactness: KeyExactness,
    full_id: impl FnMut(&RankedHit) -> String,
) {
    sort_by_rank_and_id(hits, exactness, true, full_id);
}

/// Sorts hits by (rank, id), best first, whatever order they arrive in: as `sort_best_first`,
/// but `full_id` is asked for every run of hits tying on rank and key, also within a segment
/// (hits whose ranks were changed after their segment ordered them, `exact_sum`).
pub fn sort_rescored_best_first(
    hits: &mut [RankedHit],
    exactness: KeyExactness,
    full_id: impl FnMut(&RankedHit) -> String,
) {
    sort_by_rank_and_id(hits, exactness, false, full_id);
}

fn sort_by_rank_and_id(
    hits: &mut [RankedHit],
    exactness: KeyExactness,
    segments_in_order: bool,
    mut full_id: impl FnMut(&RankedHit) -> String,
) {
    let same_rank = |a: &RankedHit, b: &RankedHit| {
        a.rank.total_cmp(&b.rank) == Ordering::Equal && a.key == b.key
    };
    // Stable: ties keep each segment's exact order.
    hits.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(a.key.cmp(&b.key)));
    if exactness == KeyExactness::Exact {
        return;
    }
    let source = |hit: &RankedHit| (hit.tier, hit.doc.segment_ord);
    let mut start = 0;
    while start < hits.len() {
        let mut end = start + 1;
        while end < hits.len() && same_rank(&hits[start], &hits[end]) {
            end += 1;
        }
        let run = &mut hits[start..end];
        if run.len() > 1
            && (!segments_in_order || run.iter().any(|hit| source(hit) != source(&run[0])))
        {
            let mut with_ids: Vec<(String, RankedHit)> =
                run.iter().map(|hit| (full_id(hit), *hit)).collect();
            with_ids.sort_by(|a, b| a.0.cmp(&b.0));
            for (slot, (_, hit)) in run.iter_mut().zip(with_ids) {
                *slot = hit;
            }
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_threshold_orders_like_floats() {
        let scores = [
            f64::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            1e-300,
            0.5,
            7.25,
            f64::INFINITY,
        ];
        for pair in scores.windows(2) {
            assert!(ordered_bits(pair[0]) <= ordered_bits(pair[1]), "{pair:?}");
        }
        for score in scores {
            assert_eq!(
                from_ordered_bits(ordered_bits(score)).to_bits(),
                score.to_bits()
            );
        }
        let threshold = SharedThreshold::default();
        assert_eq!(threshold.get(), f64::NEG_INFINITY);
        threshold.raise(-2.0);
        threshold.raise(3.0);
        threshold.raise(1.0);
        assert_eq!(threshold.get(), 3.0);
    }

    fn hit(score: Score, key: u64, segment: u32, doc: DocId) -> RankedHit {
        RankedHit {
            rank: f64::from(score),
            score,
            key,
            tier: TierName::Hot,
            doc: DocAddress::new(segment, doc),
            addr: None,
        }
    }

    #[test]
    fn equal_prefix_keys_of_different_segments_are_ordered_by_full_id() {
        let ids = ["abcdefgh-z", "abcdefgh-a", "b", "abcdefgh-m"];
        // One document per segment: their order among equal keys is unknown until ids are read.
        let mut hits: Vec<RankedHit> = ids
            .iter()
            .enumerate()
            .map(|(doc, id)| hit(1.0, sort_key::str_key(id), doc as u32, doc as DocId))
            .collect();
        hits.push(hit(2.0, sort_key::str_key("zz"), 0, 9));
        let mut asked = Vec::new();
        sort_best_first(&mut hits, KeyExactness::Prefix, |hit| {
            asked.push(hit.doc.doc_id);
            ids[hit.doc.doc_id as usize].to_string()
        });
        let order: Vec<DocId> = hits.iter().map(|hit| hit.doc.doc_id).collect();
        assert_eq!(order, vec![9, 1, 3, 0, 2]);
        // Only the three hits sharing a key were looked up.
        asked.sort();
        assert_eq!(asked, vec![0, 1, 3]);
    }

    #[test]
    fn equal_prefix_keys_of_one_segment_keep_the_segment_order() {
        let prefix = sort_key::str_key("abcdefgh");
        // As a segment returns them: in id order, which the prefix alone cannot tell.
        let mut hits = vec![
            hit(1.0, prefix, 0, 4),
            hit(1.0, prefix, 0, 2),
            hit(3.0, prefix, 0, 7),
            hit(1.0, prefix, 0, 3),
        ];
        sort_best_first(&mut hits, KeyExactness::Prefix, |hit| {
            panic!("id of {:?} asked for", hit.doc)
        });
        let order: Vec<DocId> = hits.iter().map(|hit| hit.doc.doc_id).collect();
        assert_eq!(order, vec![7, 4, 2, 3]);
    }
}

#[cfg(test)]
mod local_order_tests {
    use super::*;
    use tantivy::schema::{FAST, Schema};
    use tantivy::{Index, IndexWriter, doc};

    /// Ranks read once order every pair of documents as the column does, ties and documents
    /// without a value included.
    #[test]
    fn ranks_order_documents_as_their_column_does() {
        let mut builder = Schema::builder();
        let key = builder.add_u64_field(SORT_KEY_FIELD, FAST);
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let values = [40u64, 7, 7, u64::MAX, 0, 1 << 40, 3];
        for value in values {
            writer.add_document(doc!(key => value)).unwrap();
        }
        writer.add_document(doc!()).unwrap();
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let column = reader.fast_fields().u64(SORT_KEY_FIELD).unwrap();
        let read = LocalOrder::Column(column.clone());
        let ranks = LocalOrder::ranks(&column, reader.max_doc());
        assert!(matches!(ranks, LocalOrder::Ranks(_)));
        for a in 0..reader.max_doc() {
            for b in 0..reader.max_doc() {
                assert_eq!(
                    read.of(a).cmp(&read.of(b)),
                    ranks.of(a).cmp(&ranks.of(b)),
                    "documents {a} and {b}"
                );
            }
        }
    }
}

#[cfg(test)]
mod deep_page_tests {
    use super::*;
    use tantivy::query::AllQuery;
    use tantivy::schema::{FAST, STRING, Schema};
    use tantivy::{Index, IndexWriter, doc};

    #[test]
    fn a_page_deeper_than_the_capped_buffer_keeps_every_hit() {
        let mut builder = Schema::builder();
        let key = builder.add_u64_field(SORT_KEY_FIELD, FAST);
        let id = builder.add_text_field("id", STRING | FAST);
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 30_000_000).unwrap();
        let documents = 9_000u64;
        for n in 0..documents {
            let name = format!("doc-{n:05}");
            writer
                .add_document(doc!(key => sort_key::str_key(&name), id => name))
                .unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        assert_eq!(
            searcher.segment_readers().len(),
            1,
            "one segment holds them all"
        );
        let columns =
            Arc::new(HitColumns::open(&searcher, "id", IdKind::Str, TierName::Hot).unwrap());
        let top = TopHits {
            limit: 10_000,
            tier: TierName::Hot,
            columns: columns.clone(),
            threshold: Arc::default(),
            profile: Arc::new(RankProfile::bm25()),
            values: Arc::new(TierValues::none()),
            near_tie: 0.0,
        };
        assert!(top.requires_scoring());
        let hits = searcher.search(&AllQuery, &top).unwrap();
        assert_eq!(hits.len() as u64, documents);
        let ids: Vec<String> = hits.iter().map(|hit| columns.id_string(hit.doc)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "equal scores in id order");
    }
}

#[cfg(test)]
mod near_tie_tests {
    use super::*;
    use tantivy::schema::{FAST, STRING, Schema};
    use tantivy::{Index, IndexWriter, doc};

    /// A segment collector for the top 3 of 60 documents whose ids order like their doc ids.
    fn collector(near_tie: f64) -> (Searcher, TopHits) {
        let mut builder = Schema::builder();
        let key = builder.add_u64_field(SORT_KEY_FIELD, FAST);
        let id = builder.add_text_field("id", STRING | FAST);
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for n in 0..60 {
            let name = format!("doc-{n:03}");
            writer
                .add_document(doc!(key => sort_key::str_key(&name), id => name))
                .unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let top = TopHits {
            limit: 3,
            tier: TierName::Hot,
            columns: Arc::new(
                HitColumns::open(&searcher, "id", IdKind::Str, TierName::Hot).unwrap(),
            ),
            threshold: Arc::default(),
            profile: Arc::new(RankProfile::bm25()),
            values: Arc::new(TierValues::none()),
            near_tie,
        };
        (searcher, top)
    }

    /// The k-th scores 3.0; one ULP below it is within rounding, 2.9 is not.
    fn collect(near_tie: f64) -> (Vec<(DocId, Score)>, Score) {
        let (searcher, top) = collector(near_tie);
        let mut segment = top.for_segment(0, searcher.segment_reader(0)).unwrap();
        let just_below = 3.0f32.next_down();
        // Near ties arrive before and after the page fills, with ids above and below the
        // page's, and more of them than the page holds.
        for doc in (20..40).rev() {
            segment.collect(doc, just_below);
        }
        segment.collect(50, 5.0);
        segment.collect(51, 2.9);
        segment.collect(52, 3.0);
        segment.collect(53, 4.0);
        for doc in 0..20 {
            segment.collect(doc, just_below);
        }
        let threshold = segment.pruning_threshold();
        let hits = segment
            .harvest()
            .iter()
            .map(|hit| (hit.doc.doc_id, hit.score))
            .collect();
        (hits, threshold)
    }

    #[test]
    fn hits_within_rounding_below_the_page_are_kept_smallest_ids_first() {
        let just_below = 3.0f32.next_down();
        let (hits, threshold) = collect(1e-6);
        assert_eq!(
            hits,
            vec![
                (50, 5.0),
                (53, 4.0),
                (52, 3.0),
                (0, just_below),
                (1, just_below),
                (2, just_below),
            ]
        );
        assert!(threshold < just_below && f64::from(threshold) >= 3.0 - 4e-6);

        let (hits, threshold) = collect(0.0);
        assert_eq!(hits, vec![(50, 5.0), (53, 4.0), (52, 3.0)]);
        assert_eq!(threshold, just_below, "ties of the k-th still arrive");
    }

    #[test]
    fn a_merged_page_keeps_its_near_ties() {
        let hit = |rank: f64| RankedHit {
            rank,
            score: rank as Score,
            key: 0,
            tier: TierName::Hot,
            doc: DocAddress::new(0, 0),
            addr: None,
        };
        let hits = [
            hit(5.0),
            hit(3.0),
            hit(3.0 - 1e-7),
            hit(3.0 - 1e-3),
            hit(1.0),
        ];
        assert_eq!(through_near_ties(&hits, 2, 1e-6), 3);
        assert_eq!(through_near_ties(&hits, 2, 0.0), 2);
        assert_eq!(through_near_ties(&hits, 9, 1e-6), 9.min(hits.len()));
        assert_eq!(through_near_ties(&hits, 0, 1e-6), 0);
    }
}

#[cfg(test)]
mod pruning_tests;
