//! A top-k collector ordered by score, then id: the same order whichever tier or segment a
//! document is in, so per-tier pages merge into exactly the page one index would return.
//! (tantivy's `TopDocs` breaks ties by document address, which differs between tiers.)

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};

use tantivy::index::SegmentId;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

use crate::schema::ADDR_FIELD;

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

/// One hit of one tier.
#[derive(Debug, Clone)]
pub struct RankedHit {
    pub score: Score,
    pub id: IdKey,
    pub doc: DocAddress,
    /// The cold document's packed `_addr`; `None` in the hot tier.
    pub addr: Option<u64>,
}

/// Best first: higher score, then smaller id.
pub fn rank_order(a_score: Score, a_id: &IdKey, b_score: Score, b_id: &IdKey) -> Ordering {
    b_score.total_cmp(&a_score).then_with(|| a_id.cmp(b_id))
}

pub struct TopHits {
    pub limit: usize,
    /// The tier's columns, opened once.
    pub columns: Arc<HitColumns>,
}

/// The fast columns `TopHits` reads, per segment of one tier, opened once when the tier is
/// loaded: opening a string column parses its dictionary, which costs several times what a
/// whole top-k search does.
pub struct HitColumns {
    segments: Vec<(SegmentId, SegmentColumns)>,
}

#[derive(Clone)]
struct SegmentColumns {
    ids: IdColumn,
    /// `_addr` of each document (the cold tier).
    addr: Option<Column<u64>>,
}

impl HitColumns {
    pub fn open(
        searcher: &Searcher,
        id_field: &str,
        id_kind: IdKind,
        with_addr: bool,
    ) -> tantivy::Result<HitColumns> {
        let segments = searcher
            .segment_readers()
            .iter()
            .map(|reader| {
                let fast = reader.fast_fields();
                let ids = match id_kind {
                    IdKind::U64 => IdColumn::U64(fast.u64(id_field)?),
                    IdKind::I64 => IdColumn::I64(fast.i64(id_field)?),
                    IdKind::Str => IdColumn::Str(fast.str(id_field)?.ok_or_else(|| {
                        tantivy::TantivyError::SchemaError(format!(
                            "id field `{id_field}` has no fast column"
                        ))
                    })?),
                };
                let addr = if with_addr {
                    Some(fast.u64(ADDR_FIELD)?)
                } else {
                    None
                };
                Ok((reader.segment_id(), SegmentColumns { ids, addr }))
            })
            .collect::<tantivy::Result<_>>()?;
        Ok(HitColumns { segments })
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
}

#[derive(Clone)]
enum IdColumn {
    U64(Column<u64>),
    I64(Column<i64>),
    /// Term ordinals sort like the strings within a segment.
    Str(StrColumn),
}

/// Within a segment, ids compare by value (numbers) or by term ordinal (strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LocalId {
    U64(u64),
    I64(i64),
    Ord(u64),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    score: Score,
    id: LocalId,
    doc: DocId,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
/// Greater = better ranked, so the heap's minimum (via `Reverse`) is the worst kept hit.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

pub struct SegmentTopHits {
    limit: usize,
    segment: SegmentOrdinal,
    ids: IdColumn,
    addr: Option<Column<u64>>,
    heap: BinaryHeap<std::cmp::Reverse<Entry>>,
}

impl SegmentTopHits {
    fn local_id(&self, doc: DocId) -> LocalId {
        match &self.ids {
            IdColumn::U64(column) => LocalId::U64(column.first(doc).unwrap_or(0)),
            IdColumn::I64(column) => LocalId::I64(column.first(doc).unwrap_or(0)),
            IdColumn::Str(column) => LocalId::Ord(column.ords().first(doc).unwrap_or(0)),
        }
    }
}

impl SegmentCollector for SegmentTopHits {
    type Fruit = Vec<RankedHit>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.limit == 0 {
            return;
        }
        if self.heap.len() == self.limit {
            let worst = self.heap.peek().expect("full heap").0;
            if score < worst.score {
                return;
            }
            let entry = Entry {
                score,
                id: self.local_id(doc),
                doc,
            };
            if entry > worst {
                self.heap.pop();
                self.heap.push(std::cmp::Reverse(entry));
            }
            return;
        }
        let id = self.local_id(doc);
        self.heap.push(std::cmp::Reverse(Entry { score, id, doc }));
    }

    fn harvest(self) -> Vec<RankedHit> {
        let mut text = String::new();
        self.heap
            .into_iter()
            .map(|std::cmp::Reverse(entry)| {
                let id = match (&self.ids, entry.id) {
                    (_, LocalId::U64(value)) => IdKey::U64(value),
                    (_, LocalId::I64(value)) => IdKey::I64(value),
                    (IdColumn::Str(column), LocalId::Ord(ord)) => {
                        text.clear();
                        // An ordinal read from the column is always in its dictionary.
                        let _ = column.ord_to_str(ord, &mut text);
                        IdKey::Str(text.clone())
                    }
                    (_, LocalId::Ord(_)) => unreachable!("ordinals come from string columns"),
                };
                RankedHit {
                    score: entry.score,
                    id,
                    doc: DocAddress::new(self.segment, entry.doc),
                    addr: self
                        .addr
                        .as_ref()
                        .and_then(|column| column.first(entry.doc)),
                }
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
        let SegmentColumns { ids, addr } = self.columns.segment(reader.segment_id())?.clone();
        Ok(SegmentTopHits {
            limit: self.limit,
            segment,
            ids,
            addr,
            heap: BinaryHeap::with_capacity(self.limit.min(1024) + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    /// Block-max pruning: once the heap is full, tantivy may skip documents that cannot beat
    /// its worst score. The threshold handed back is just below that score, so documents that
    /// tie it still arrive and compete on id.
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
        weight.for_each_pruning(Score::NEG_INFINITY, reader, &mut |doc, score| {
            if alive.as_ref().is_none_or(|alive| alive.is_alive(doc)) {
                collector.collect(doc, score);
            }
            if collector.heap.len() == collector.limit {
                collector
                    .heap
                    .peek()
                    .expect("full heap")
                    .0
                    .score
                    .next_down()
            } else {
                Score::NEG_INFINITY
            }
        })?;
        Ok(collector.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<Vec<RankedHit>>) -> tantivy::Result<Vec<RankedHit>> {
        Ok(best_of(fruits.into_iter().flatten(), self.limit))
    }
}

/// The best `limit` hits, best first.
fn best_of(hits: impl Iterator<Item = RankedHit>, limit: usize) -> Vec<RankedHit> {
    let mut hits: Vec<RankedHit> = hits.collect();
    hits.sort_by(|a, b| rank_order(a.score, &a.id, b.score, &b.id));
    hits.truncate(limit);
    hits
}
