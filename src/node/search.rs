//! One search over a loaded version: parse, score both tiers with the statistics of the whole
//! corpus, merge by (score, id), read the page's documents — hot ones locally, cold ones from
//! parquet through the cache, in one round.
//!
//! tantivy search, document reads and parquet decoding run as `offload` places them: short
//! work on the runtime worker, work that may take long after handing the worker off; rankings
//! are bounded by a semaphore.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::collector::Count;
use tantivy::query::Query;
use tantivy::{Searcher, TantivyDocument};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug_span};

use super::NodeError;
use super::cold::{DocumentCache, fetch_documents};
pub use super::collector::TierName;
use super::collector::{
    HitColumns, IdKey, IdKind, RankedHit, SharedThreshold, TopHits, near_tie_floor,
    sort_best_first, sort_rescored_best_first,
};
use super::cost::{postings_bound, ranking_budget};
use super::documents::{FieldSelection, FieldValue, Fields, from_tantivy};
use super::exact_sum::{SummedTerms, near_tie_runs};
use super::hot_remote::{self, InStore};
use super::offload::{Size, cpu_work, sized, sized_work};
use super::remote_rank::{ColdIndexReads, RemoteRanking, rank_hits_remote};
use super::skip;
use super::stable::keep_constant_scores;
use super::statistics::CorpusStatistics;
use super::version::{ColdTier, LoadedVersion};
use crate::cache::ReadStats;
use crate::config::DegradedPolicy;
use crate::format::DocAddr;
use crate::ranking::values::TierValues;
use crate::ranking::{RankProfile, RankRule};

#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub query: String,
    /// 0 means the default, 10.
    pub limit: u32,
    pub offset: u32,
    /// Stored fields to return; empty for all.
    pub fields: Vec<String>,
    pub hot_only: bool,
    /// Count every match for the totals (a second pass); else they are lower bounds.
    pub count_total: bool,
    /// A rank profile of the schema; empty for `[ranking.default]` or BM25.
    pub profile: String,
    /// `"<field> DESC|ASC"`: overrides `profile`.
    pub order_by: String,
    /// When the caller stops waiting (the gRPC deadline); else the node's default budget.
    pub deadline: Option<Instant>,
}

pub const DEFAULT_LIMIT: u32 = 10;

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub id: FieldValue,
    /// The profile's score expression, else BM25.
    pub score: f64,
    pub tier: TierName,
    pub fields: Fields,
}

#[derive(Debug, Clone, Default)]
pub struct SearchStats {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub storage_requests: u64,
    pub storage_bytes: u64,
    pub parse_ms: f64,
    pub search_ms: f64,
    pub hot_fetch_ms: f64,
    pub cold_fetch_ms: f64,
    pub total_ms: f64,
    /// The ranking was judged long (`inline_postings`) and handed its runtime worker off.
    pub handed_off: bool,
    /// Hits given their exact scores because float rounding could have decided their order
    /// (`exact_sum`).
    pub rescored_hits: u64,
    /// Rounds of remote cold index reads that went to storage (at most two).
    pub cold_index_rounds: u32,
    /// Remote cold index reads the search's plan missed (each one searched again on the
    /// blocking pool; 0 unless the plan is incomplete for the query).
    pub cold_plan_misses: u64,
    /// The remote cold tier was decided (ranked or skipped) straight over the block cache's
    /// memory, without a warm-up (`remote_rank::from_memory`).
    pub cold_from_memory: bool,
    /// Blocks read from the block cache's disk tier.
    pub disk_cache_hits: u64,
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    pub hot_total: u64,
    pub cold_total: u64,
    /// Whether the totals count every match, or only the hits ranked (a lower bound).
    pub totals_exact: bool,
    /// Why the answer lacks cold documents it should hold, if it does.
    pub degraded: Option<String>,
    pub omitted_cold_hits: u64,
    pub omitted_ids: Vec<FieldValue>,
    pub stats: SearchStats,
    pub version: String,
    /// The cold tier was not searched: no cold document could reach the page.
    pub cold_skipped: bool,
    /// What ordered the page (`RankProfile::label`).
    pub ranked_by: String,
    /// Shards of a fleet search that no replica answered (`<index>/<shard>`): the answer is
    /// partial, missing whatever those shards hold.
    pub missing_shards: Vec<String>,
}

pub(super) fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Parses a query, locating errors: by the grammar's position, or by the field it names.
fn parse(version: &LoadedVersion, text: &str) -> Result<Box<dyn Query>, NodeError> {
    if text.trim().is_empty() {
        return Err(NodeError::InvalidQuery {
            message: "empty query".into(),
            position: None,
        });
    }
    // The lenient grammar pass only locates an error: a query that parses costs one pass.
    let query = version.query_parser().parse_query(text).map_err(|err| {
        let (_, errors) = tantivy::query_grammar::parse_query_lenient(text);
        if let Some(error) = errors.first() {
            return NodeError::InvalidQuery {
                message: error.message.clone(),
                position: Some(error.pos),
            };
        }
        use tantivy::query::QueryParserError as E;
        let field = match &err {
            E::FieldDoesNotExist(name)
            | E::FieldNotIndexed(name)
            | E::FieldDoesNotHavePositionsIndexed(name) => Some(name.clone()),
            _ => None,
        };
        let position = field.and_then(|name| text.find(&format!("{name}:")));
        NodeError::InvalidQuery {
            message: err.to_string(),
            position,
        }
    })?;
    Ok(keep_constant_scores(query, &version.schema.hot_tantivy))
}

#[derive(Clone)]
pub(super) struct TierPage {
    pub hits: Vec<RankedHit>,
    pub total: u64,
}

struct TierSearch<'a> {
    searcher: &'a Searcher,
    tier: TierName,
    columns: Arc<HitColumns>,
    values: Arc<TierValues>,
}

impl<'a> TierSearch<'a> {
    fn hot(version: &LoadedVersion, searcher: &'a Searcher) -> TierSearch<'a> {
        TierSearch {
            searcher,
            tier: TierName::Hot,
            columns: version.hot_columns.clone(),
            values: version.hot_values.clone(),
        }
    }

    fn cold(cold: &ColdTier, searcher: &'a Searcher) -> TierSearch<'a> {
        TierSearch {
            searcher,
            tier: TierName::Cold,
            columns: cold.columns().clone(),
            values: cold.values().clone(),
        }
    }
}

/// The id columns of the tier a hit came from.
pub(super) fn tier_columns<'a>(
    version: &'a LoadedVersion,
    cold: Option<&'a ColdTier>,
    tier: TierName,
) -> &'a HitColumns {
    match (tier, cold) {
        (TierName::Cold, Some(cold)) => cold.columns(),
        _ => &version.hot_columns,
    }
}

/// How one tier is ranked for a page.
struct Ranking<'a> {
    query: &'a dyn Query,
    statistics: &'a CorpusStatistics,
    profile: &'a Arc<RankProfile>,
    depth: usize,
    count: bool,
    /// `TopHits::near_tie`.
    near_tie: f64,
}

fn search_tier(
    tier: TierSearch<'_>,
    ranking: &Ranking<'_>,
    threshold: Arc<SharedThreshold>,
) -> Result<TierPage, NodeError> {
    search_tier_with(tier, ranking, ranking.statistics, threshold)
}

/// `search_tier` scoring with `statistics` (a remote cold tier's: the corpus statistics with
/// the cold document frequencies its search read).
fn search_tier_with(
    tier: TierSearch<'_>,
    ranking: &Ranking<'_>,
    statistics: &dyn tantivy::query::Bm25StatisticsProvider,
    threshold: Arc<SharedThreshold>,
) -> Result<TierPage, NodeError> {
    let TierSearch {
        searcher,
        tier,
        columns,
        values,
    } = tier;
    let &Ranking {
        query,
        statistics: _,
        profile,
        depth,
        count,
        near_tie,
    } = ranking;
    let collector = TopHits {
        limit: depth,
        tier,
        columns,
        profile: profile.clone(),
        values,
        threshold,
        near_tie,
    };
    let hits = searcher
        .search_with_statistics_provider(query, &collector, statistics)
        .map_err(query_error)?;
    // Counted apart from the ranking, which prunes: counting needs no scores, and a single
    // term is counted from its document frequency. Without counting, the hits ranked are a
    // lower bound.
    let total = if count {
        searcher.search(query, &Count).map_err(query_error)? as u64
    } else {
        hits.len() as u64
    };
    Ok(TierPage { hits, total })
}

/// Some queries parse but cannot run on the schema (`field:*` on a field that is not fast):
/// tantivy says so only when the query runs. That is the query's fault, not the node's.
fn query_error(err: tantivy::TantivyError) -> NodeError {
    match err {
        tantivy::TantivyError::SchemaError(message)
        | tantivy::TantivyError::InvalidArgument(message) => NodeError::InvalidQuery {
            message,
            position: None,
        },
        tantivy::TantivyError::FieldNotFound(field) => NodeError::InvalidQuery {
            message: format!("unknown field `{field}`"),
            position: None,
        },
        other => NodeError::Index(other),
    }
}

/// One hit of the page: its id, and its fields once read (hot ones are read with the ranking).
struct PageHit {
    hit: RankedHit,
    /// `None` for a cold string id until its row is read: the id comes with the row, which
    /// costs nothing more, while the id column's dictionary costs a block decode per id.
    id: Option<IdKey>,
    fields: Option<Fields>,
}

impl PageHit {
    /// The hit's id: known, else from its fields (the id field's value), else from the tier's
    /// id column.
    fn resolve_id(&self, version: &LoadedVersion, cold: Option<&ColdTier>) -> IdKey {
        if let Some(id) = &self.id {
            return id.clone();
        }
        let id_name = &version.schema.spec.id_field;
        let from_fields = self
            .fields
            .iter()
            .flatten()
            .find(|(name, _)| name == id_name)
            .and_then(|(_, value)| value.as_id());
        from_fields.unwrap_or_else(|| tier_columns(version, cold, self.hit.tier).id(&self.hit))
    }

    fn into_search_hit(
        self,
        version: &LoadedVersion,
        cold: Option<&ColdTier>,
        profile: &RankProfile,
    ) -> SearchHit {
        SearchHit {
            id: self.resolve_id(version, cold).into(),
            score: profile.reported_score(self.hit.score, self.hit.rank),
            tier: self.hit.tier,
            fields: self.fields.unwrap_or_default(),
        }
    }
}

/// The ranked page, before cold documents are read.
struct Ranked {
    page: Vec<PageHit>,
    /// The hot hits ranked after the page's end, best first: what fills a degraded page.
    hot_after_page: Vec<RankedHit>,
    /// The cold tier was not searched: it could not reach the page.
    cold_skipped: bool,
    hot_total: u64,
    cold_total: u64,
    parse_ms: f64,
    search_ms: f64,
    hot_fetch_ms: f64,
    handed_off: bool,
    rescored_hits: u64,
    /// Why a cold tier to search was not (its remote index could not be read).
    cold_degraded: Option<String>,
    cold_index: ColdIndexReads,
}

/// What a search uses of the node besides the version.
pub struct SearchContext<'a> {
    pub max_results: u32,
    /// Bounds concurrent searches: each holds a thread while it ranks.
    pub permits: &'a Arc<Semaphore>,
    pub documents: &'a DocumentCache,
    /// Budget of a search that brings no deadline of its own.
    pub default_timeout: Duration,
    /// Searches bounded to at most this many postings rank without handing off their worker.
    pub inline_postings: u64,
    pub on_degraded: DegradedPolicy,
    /// False while storage is known to be failing (the circuit breaker is open).
    pub storage_allowed: bool,
    /// A remote cold search whose plan missed a read fails (tests) rather than running again.
    pub cold_plan_strict: bool,
}

/// Time kept back from the budget for assembling the answer and sending it after the cold
/// fetch gives up: the caller's deadline runs on the caller's clock, from before it sent.
pub(super) const ANSWER_MARGIN: Duration = Duration::from_millis(25);

pub async fn search(
    version: Arc<LoadedVersion>,
    request: SearchRequest,
    context: &SearchContext<'_>,
) -> Result<SearchResult, NodeError> {
    let started = Instant::now();
    let deadline = request
        .deadline
        .unwrap_or(started + context.default_timeout);
    let limit = if request.limit == 0 {
        DEFAULT_LIMIT
    } else {
        request.limit
    };
    let depth = u64::from(limit) + u64::from(request.offset);
    if depth > u64::from(context.max_results) {
        return Err(NodeError::InvalidArgument(format!(
            "limit + offset is {depth}, above this node's maximum of {}",
            context.max_results
        )));
    }
    let selection = FieldSelection::new(
        &version.schema,
        &version.manifest.multi_valued_fields,
        &request.fields,
    )
    .map_err(NodeError::InvalidArgument)?;
    let profile = version
        .profiles
        .choose(&version.schema, &request.profile, &request.order_by)
        .map_err(|err| NodeError::InvalidArgument(err.to_string()))?;
    let cold = if request.hot_only {
        None
    } else {
        version.cold().cloned()
    };
    let mut degraded = (!request.hot_only && cold.is_none())
        .then(|| "cold tier still loading: hot results only".to_string());

    let permit = tokio::time::timeout_at(deadline.into(), context.permits.clone().acquire_owned())
        .await
        .map_err(|_| {
            NodeError::DeadlineExceeded("no search slot became free within the time budget".into())
        })?
        .map_err(|_| NodeError::Internal("search pool closed".into()))?;
    let spec = PageSpec {
        offset: request.offset as usize,
        limit: limit as usize,
        count: request.count_total,
        deadline,
        inline_postings: context.inline_postings,
        exact_every_hit: false,
    };
    let stats = Arc::new(ReadStats::default());
    let give_up = deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline);
    let ranked = if version.hot_remote.is_some() {
        let span = debug_span!("rank", ranked_by = %profile.label, hot = "remote");
        let query = parse(&version, &request.query)?;
        let rank = {
            let (version, cold) = (version.clone(), cold.clone());
            let (query_text, profile) = (request.query.clone(), profile.clone());
            move || {
                if let Some(cold) = &cold {
                    cold.open_columns(&version.schema, version.id_kind)?;
                }
                let hot_searcher = version.hot.searcher();
                rank_hits(
                    &version,
                    cold.as_deref(),
                    &hot_searcher,
                    &query_text,
                    &profile,
                    spec,
                )
            }
        };
        let how = InStore {
            stats: &stats,
            give_up,
            strict: context.cold_plan_strict,
        };
        let (merged, ranking_misses) =
            hot_remote::rank_in_store(&version, cold.as_ref(), query.as_ref(), &how, rank)
                .instrument(span)
                .await?;
        drop(permit);
        let hot_docs: Vec<tantivy::DocAddress> = merged
            .hits
            .iter()
            .skip(spec.offset)
            .filter(|hit| hit.tier == TierName::Hot)
            .map(|hit| hit.doc)
            .collect();
        let read = page_reader(&version, &cold, &selection, merged, spec);
        let (mut ranked, reading_misses) =
            hot_remote::read_in_store(&version, hot_docs, &how, read).await?;
        ranked.cold_index.plan_misses = ranking_misses + reading_misses;
        ranked
    } else {
        match cold.as_ref().filter(|cold| cold.remote.is_some()) {
            Some(remote) => {
                let how = RemoteRanking {
                    stats: &stats,
                    give_up,
                    strict: context.cold_plan_strict,
                };
                let span = debug_span!("rank", ranked_by = %profile.label, cold = "remote");
                let (merged, reads) =
                    rank_hits_remote(&version, remote, &request.query, &profile, spec, &how)
                        .instrument(span)
                        .await?;
                drop(permit);
                let mut ranked =
                    cpu_work(page_reader(&version, &cold, &selection, merged, spec)).await??;
                ranked.cold_index = reads;
                ranked
            }
            None => {
                let version = version.clone();
                let cold = cold.clone();
                let selection = selection.clone();
                let query_text = request.query.clone();
                let profile = profile.clone();
                let span = debug_span!("rank", ranked_by = %profile.label);
                cpu_work(move || {
                    let _permit = permit;
                    let _entered = span.entered();
                    rank(
                        &version,
                        cold.as_deref(),
                        &selection,
                        &query_text,
                        &profile,
                        spec,
                    )
                })
                .await??
            }
        }
    };
    // A search running on its thread cannot be interrupted: the budget is checked once it is
    // done (and between the tiers), and a late answer is not sent.
    if Instant::now() > deadline {
        return Err(NodeError::DeadlineExceeded(
            "ranking did not finish within the time budget".into(),
        ));
    }
    if let Some(reason) = &ranked.cold_degraded {
        if context.on_degraded == DegradedPolicy::Fail {
            return Err(NodeError::StorageUnavailable(reason.clone()));
        }
        degraded = Some(reason.clone());
    }

    let cold_started = Instant::now();
    let cold_hits: Vec<&PageHit> = ranked
        .page
        .iter()
        .filter(|page_hit| page_hit.hit.tier == TierName::Cold)
        .collect();
    let cold_addrs: Vec<DocAddr> = cold_hits
        .iter()
        .map(|page_hit| DocAddr::unpack(page_hit.hit.addr.unwrap_or(u64::MAX)))
        .collect();
    let cold_documents = read_cold_documents(
        &version,
        cold.as_deref(),
        &selection,
        &cold_addrs,
        &stats,
        deadline,
        context,
    )
    .await;
    // Decoding runs on this task's thread (`cpu_work`), so the timeout above cannot cut it
    // short: a decode that ends past the budget returns here late, and the answer is not sent.
    if Instant::now() > deadline {
        return Err(NodeError::DeadlineExceeded(
            "cold documents were read after the time budget".into(),
        ));
    }
    let cold_fetch_ms = if cold_addrs.is_empty() {
        0.0
    } else {
        millis(cold_started)
    };
    let mut omitted_cold_hits = 0;
    let mut omitted_ids = Vec::new();
    let hits = match cold_documents {
        Ok(documents) => {
            let mut documents = documents.into_iter();
            ranked
                .page
                .into_iter()
                .map(|mut page_hit| {
                    if page_hit.fields.is_none() {
                        page_hit.fields = Some(documents.next().unwrap_or_default());
                    }
                    page_hit.into_search_hit(&version, cold.as_deref(), &profile)
                })
                .collect()
        }
        Err(reason) => {
            if context.on_degraded == DegradedPolicy::Fail {
                return Err(NodeError::StorageUnavailable(reason));
            }
            omitted_cold_hits = cold_hits.len() as u64;
            omitted_ids = cold_hits
                .iter()
                .map(|page_hit| FieldValue::from(page_hit.resolve_id(&version, cold.as_deref())))
                .collect();
            degraded = Some(reason);
            let mut hits: Vec<SearchHit> = ranked
                .page
                .into_iter()
                .filter(|page_hit| page_hit.hit.tier == TierName::Hot)
                .map(|page_hit| page_hit.into_search_hit(&version, cold.as_deref(), &profile))
                .collect();
            let room = (limit as usize).saturating_sub(hits.len());
            if room > 0 {
                let backfill: Vec<RankedHit> =
                    ranked.hot_after_page.into_iter().take(room).collect();
                hits.extend(hot_backfill(&version, &selection, backfill, &profile, give_up).await?);
            }
            hits
        }
    };
    let counts = stats.snapshot();
    Ok(SearchResult {
        hits,
        hot_total: ranked.hot_total,
        cold_total: ranked.cold_total,
        totals_exact: request.count_total,
        degraded,
        omitted_cold_hits,
        omitted_ids,
        stats: SearchStats {
            cache_hits: counts.cache_hits,
            cache_misses: counts.cache_misses,
            storage_requests: counts.requests,
            storage_bytes: counts.bytes,
            parse_ms: ranked.parse_ms,
            search_ms: ranked.search_ms,
            hot_fetch_ms: ranked.hot_fetch_ms,
            cold_fetch_ms,
            total_ms: millis(started),
            handed_off: ranked.handed_off,
            rescored_hits: ranked.rescored_hits,
            cold_index_rounds: ranked.cold_index.rounds,
            cold_plan_misses: ranked.cold_index.plan_misses,
            cold_from_memory: ranked.cold_index.from_memory,
            disk_cache_hits: counts.disk_hits,
        },
        version: version.version().to_string(),
        cold_skipped: ranked.cold_skipped,
        ranked_by: profile.label.clone(),
        missing_shards: Vec::new(),
    })
}

/// The cold documents at `addrs` (none without a cold tier or addresses), read in one round
/// through the cache and given up `ANSWER_MARGIN` before `deadline`: `Err` says why they are
/// missing.
pub(super) async fn read_cold_documents(
    version: &LoadedVersion,
    cold: Option<&ColdTier>,
    selection: &FieldSelection,
    addrs: &[DocAddr],
    stats: &Arc<ReadStats>,
    deadline: Instant,
    context: &SearchContext<'_>,
) -> Result<Vec<Fields>, String> {
    let Some(cold) = cold.filter(|_| !addrs.is_empty()) else {
        return Ok(Vec::new());
    };
    let fetch = fetch_documents(
        &cold.files,
        &version.schema,
        selection,
        addrs,
        stats,
        (context.documents, &version.version_key),
        context.storage_allowed,
    )
    .instrument(debug_span!("cold_fetch", documents = addrs.len()));
    let give_up = deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline);
    match tokio::time::timeout_at(give_up.into(), fetch).await {
        Ok(Ok(documents)) => Ok(documents),
        Ok(Err(err)) => Err(format!("cold documents could not be read: {err}")),
        Err(_) => Err("cold documents were not read within the time budget".to_string()),
    }
}

/// Reads the stored fields of the hot hits that fill a degraded page, off the runtime. The hot
/// tier ranked them already (each tier ranks the whole page's depth), so nothing is ranked
/// again.
async fn hot_backfill(
    version: &Arc<LoadedVersion>,
    selection: &FieldSelection,
    hits: Vec<RankedHit>,
    profile: &Arc<RankProfile>,
    give_up: Instant,
) -> Result<Vec<SearchHit>, NodeError> {
    if hits.is_empty() {
        return Ok(Vec::new());
    }
    let docs: Vec<tantivy::DocAddress> = hits.iter().map(|hit| hit.doc).collect();
    let count = hits.len();
    let read = {
        let version = version.clone();
        let selection = selection.clone();
        let profile = profile.clone();
        move || {
            let searcher = version.hot.searcher();
            hits.into_iter()
                .map(|hit| {
                    let (id, fields) = hot_document(&version, &searcher, &selection, &hit)?;
                    Ok(SearchHit {
                        fields,
                        id: id.into(),
                        score: profile.reported_score(hit.score, hit.rank),
                        tier: TierName::Hot,
                    })
                })
                .collect()
        }
    };
    if version.hot_remote.is_some() {
        let how = InStore {
            stats: &Arc::new(ReadStats::default()),
            give_up,
            strict: false,
        };
        return Ok(hot_remote::read_in_store(version, docs, &how, read)
            .await?
            .0);
    }
    read_hot_documents(count, read).await?
}

/// A hot hit's id and requested stored fields, from its stored document (string ids are read
/// from there rather than from the id column's dictionary).
fn hot_document(
    version: &LoadedVersion,
    searcher: &Searcher,
    selection: &FieldSelection,
    hit: &RankedHit,
) -> Result<(IdKey, Fields), NodeError> {
    let document: TantivyDocument = searcher.doc(hit.doc)?;
    let id = match version.id_kind {
        IdKind::Str => {
            use tantivy::schema::Value as _;
            let id_field = version.schema.tantivy_field(version.schema.id_index);
            match document
                .get_first(id_field)
                .and_then(|value| value.as_str())
            {
                Some(text) => IdKey::Str(text.to_string()),
                None => version.hot_columns.id(hit),
            }
        }
        IdKind::U64 | IdKind::I64 => version.hot_columns.id(hit),
    };
    Ok((id, from_tantivy(&version.schema, selection, &document)))
}

/// Which hits a search asks for, and whether it counts every match.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageSpec {
    pub offset: usize,
    pub limit: usize,
    pub count: bool,
    /// The cold tier is not ranked after this.
    pub deadline: Instant,
    /// A ranking bounded to at most this many postings keeps its worker (`offload`).
    pub inline_postings: u64,
    /// Every hit gets its exact score (`exact_sum`), not only near ties: a shard's hits are
    /// merged with other shards' near ties that it cannot see.
    pub exact_every_hit: bool,
}

impl PageSpec {
    /// Hits each tier must rank: the page and every hit before it.
    fn depth(self) -> usize {
        self.offset + self.limit
    }
}

/// The merged hits of both tiers through the page's end, before any document is read.
pub(super) struct MergedHits {
    /// Best first, `depth` at most.
    pub hits: Vec<RankedHit>,
    /// The hot hits ranked after those, best first.
    pub hot_after_page: Vec<RankedHit>,
    pub cold_skipped: bool,
    pub hot_total: u64,
    pub cold_total: u64,
    pub parse_ms: f64,
    pub search_ms: f64,
    /// The ranking was judged long and handed its worker off.
    pub handed_off: bool,
    /// `SearchStats::rescored_hits`.
    pub rescored_hits: u64,
    /// Why a cold tier that should have been ranked was not (a remote one whose reads failed).
    pub cold_degraded: Option<String>,
}

/// A ranking's query, parsed, with what every phase of it uses.
pub(super) struct Prepared {
    pub query: Arc<dyn Query>,
    /// Statistics of the whole loaded corpus even when only the hot tier is searched, so that
    /// a document scores the same whichever tiers were asked for.
    pub statistics: Arc<CorpusStatistics>,
    pub profile: Arc<RankProfile>,
    pub spec: PageSpec,
    /// `TopHits::near_tie`.
    pub near_tie: f64,
    /// The ranking's size (`offload`), from its postings (`ranking_size`).
    pub size: Size,
    pub parse_ms: f64,
}

impl Prepared {
    fn ranking(&self) -> Ranking<'_> {
        Ranking {
            query: self.query.as_ref(),
            statistics: &self.statistics,
            profile: &self.profile,
            depth: self.spec.depth(),
            count: self.spec.count,
            near_tie: self.near_tie,
        }
    }
}

/// Parses the query and sizes its ranking.
pub(super) fn prepare(
    version: &LoadedVersion,
    query_text: &str,
    profile: &Arc<RankProfile>,
    spec: PageSpec,
) -> Result<Prepared, NodeError> {
    let parse_started = Instant::now();
    let query: Arc<dyn Query> = Arc::from(parse(version, query_text)?);
    let parse_ms = millis(parse_started);
    // Only BM25 ranks by the sum alone; a profile's rank is left as the profile computes it.
    let near_tie = SummedTerms::of(query.as_ref())
        .filter(|_| profile.rule == RankRule::Bm25)
        .map_or(0.0, |summed| summed.near_tie());
    let statistics = version.statistics().clone();
    let size = ranking_size(query.as_ref(), &statistics, profile, spec);
    Ok(Prepared {
        query,
        statistics,
        profile: profile.clone(),
        spec,
        near_tie,
        size,
        parse_ms,
    })
}

/// How long ranking `query` by `profile` may take (`offload`): its postings bound against its
/// budget. A ranking by a profile, or one that counts every match, reads all of its postings;
/// BM25 alone skips most of them (`cost::ranking_budget`).
pub(super) fn ranking_size(
    query: &dyn Query,
    statistics: &CorpusStatistics,
    profile: &RankProfile,
    spec: PageSpec,
) -> Size {
    let pruned = profile.rule == RankRule::Bm25 && !spec.count;
    Size::of(
        postings_bound(query, statistics, spec.count),
        ranking_budget(spec.inline_postings, pruned),
    )
}

/// The hot tier ranked: the first phase of every ranking.
#[derive(Clone)]
pub(super) struct HotRanked {
    pub hot: TierPage,
    /// Shared by both tiers: the cold tier skips what cannot beat the hot tier's k-th.
    pub threshold: Arc<SharedThreshold>,
    pub started: Instant,
}

pub(super) fn rank_hot(
    version: &LoadedVersion,
    hot_searcher: &Searcher,
    prepared: &Prepared,
) -> Result<HotRanked, NodeError> {
    let started = Instant::now();
    let threshold = Arc::new(SharedThreshold::default());
    let hot = search_tier(
        TierSearch::hot(version, hot_searcher),
        &prepared.ranking(),
        threshold.clone(),
    )?;
    Ok(HotRanked {
        hot,
        threshold,
        started,
    })
}

/// Whether the cold tier can be skipped: never when every match is counted.
pub(super) fn skips_cold(
    prepared: &Prepared,
    hot: &HotRanked,
    cold: &ColdTier,
) -> Result<bool, NodeError> {
    if prepared.spec.count {
        return Ok(false);
    }
    // Nothing to find there (every document hot): no read needed to know.
    if cold.tier.searcher().num_docs() == 0 {
        return Ok(true);
    }
    cold_cannot_reach(&hot.hot.hits, &prepared.ranking(), cold)
}

/// The cold tier ranked, from the hot tier's k-th rank.
pub(super) fn rank_cold(
    prepared: &Prepared,
    hot: &HotRanked,
    cold: &ColdTier,
    statistics: &dyn tantivy::query::Bm25StatisticsProvider,
) -> Result<TierPage, NodeError> {
    if Instant::now() > prepared.spec.deadline {
        return Err(NodeError::DeadlineExceeded(
            "ranking did not finish within the time budget".into(),
        ));
    }
    // From the hot tier's k-th as it stood: a cold ranking run again starts where the first did.
    let threshold = Arc::new(SharedThreshold::default());
    threshold.raise(hot.threshold.get());
    let searcher = cold.tier.searcher();
    let ranking = prepared.ranking();
    search_tier_with(
        TierSearch::cold(cold, &searcher),
        &ranking,
        statistics,
        threshold,
    )
}

/// The last phase: both tiers' hits merged by (rank, id), near ties rescored exactly.
pub(super) fn merge_tiers(
    version: &Arc<LoadedVersion>,
    cold: Option<&ColdTier>,
    hot_searcher: &Searcher,
    prepared: &Prepared,
    hot: HotRanked,
    cold_page: Option<TierPage>,
    cold_skipped: bool,
) -> Result<MergedHits, NodeError> {
    let spec = prepared.spec;
    let depth = spec.depth();
    let search_ms = millis(hot.started);
    let hot_total = hot.hot.total;
    let cold_total = cold_page.as_ref().map_or(0, |page| page.total);
    // The cold tier's hits can only be merged with its columns (which ranking it opened).
    let cold = cold.filter(|_| cold_page.is_some());
    let mut hits: Vec<RankedHit> = hot.hot.hits;
    hits.extend(cold_page.into_iter().flat_map(|page| page.hits));
    sort_best_first(&mut hits, version.hot_columns.exactness(), |hit| {
        tier_columns(version, cold, hit.tier).id_string(hit.doc)
    });
    let mut rescored_hits = 0;
    let summed = SummedTerms::of(prepared.query.as_ref())
        .filter(|_| prepared.profile.rule == RankRule::Bm25);
    if let Some(summed) = &summed {
        let runs: Vec<std::ops::Range<usize>> = if spec.exact_every_hit {
            std::iter::once(0..hits.len()).collect()
        } else {
            near_tie_runs(&hits, depth, |rank| summed.rounding(rank))
        };
        let tiers = TierSearchers {
            version,
            cold,
            hot: hot_searcher,
        };
        rescored_hits = runs.iter().map(|run| run.len() as u64).sum();
        rescore_exactly(&mut hits, runs, summed, &tiers, &prepared.statistics)?;
    }
    let hot_after_page: Vec<RankedHit> = hits
        .split_off(depth.min(hits.len()))
        .into_iter()
        .filter(|hit| hit.tier == TierName::Hot)
        .collect();
    Ok(MergedHits {
        hits,
        hot_after_page,
        cold_skipped,
        hot_total,
        cold_total,
        parse_ms: prepared.parse_ms,
        search_ms,
        handed_off: prepared.size == Size::Long,
        rescored_hits,
        cold_degraded: None,
    })
}

/// Parses and scores both tiers with corpus-wide statistics, and merges, on this thread: the
/// tiers must be local (or absent), or remote within a scope that warmed what they read
/// (`hot_remote`). Runs within `cpu_work`; the ranking itself is sized by
/// its postings.
pub(super) fn rank_hits(
    version: &Arc<LoadedVersion>,
    cold: Option<&ColdTier>,
    hot_searcher: &Searcher,
    query_text: &str,
    profile: &Arc<RankProfile>,
    spec: PageSpec,
) -> Result<MergedHits, NodeError> {
    let prepared = prepare(version, query_text, profile, spec)?;
    // The cold tier after the hot one, from the hot tier's k-th score: on one thread, two tiers
    // cost about what one index over both would (measured: a second thread costs more in
    // wake-ups than it saves on these searches; docs/benchmarks.md).
    let (hot, cold_skipped, cold_page) = sized(prepared.size, || {
        let hot = rank_hot(version, hot_searcher, &prepared)?;
        let Some(cold) = cold else {
            return Ok::<_, NodeError>((hot, false, None));
        };
        if skips_cold(&prepared, &hot, cold)? {
            return Ok((hot, true, None));
        }
        let page = rank_cold(&prepared, &hot, cold, prepared.statistics.as_ref())?;
        Ok((hot, false, Some(page)))
    })?;
    merge_tiers(
        version,
        cold,
        hot_searcher,
        &prepared,
        hot,
        cold_page,
        cold_skipped,
    )
}

/// The tiers a search ranked.
struct TierSearchers<'a> {
    version: &'a LoadedVersion,
    cold: Option<&'a ColdTier>,
    hot: &'a Searcher,
}

/// Gives the hits of each run their exact scores (`exact_sum`) and puts each run in its exact
/// order. `hits` are sorted best first; a run stays where it is, since it holds every hit within
/// rounding of its members (`near_tie_runs`) or all of them.
fn rescore_exactly(
    hits: &mut [RankedHit],
    runs: Vec<std::ops::Range<usize>>,
    summed: &SummedTerms<'_>,
    tiers: &TierSearchers<'_>,
    statistics: &CorpusStatistics,
) -> Result<(), NodeError> {
    let TierSearchers {
        version,
        cold,
        hot: hot_searcher,
    } = *tiers;
    let cold_searcher = cold.map(|cold| cold.tier.searcher());
    for run in runs {
        let run = &mut hits[run];
        for tier in [TierName::Hot, TierName::Cold] {
            let searcher = match tier {
                TierName::Hot => Some(hot_searcher),
                TierName::Cold => cold_searcher.as_ref(),
            };
            let slots: Vec<usize> = (0..run.len()).filter(|&at| run[at].tier == tier).collect();
            let Some(searcher) = searcher.filter(|_| !slots.is_empty()) else {
                continue;
            };
            let docs: Vec<tantivy::DocAddress> = slots.iter().map(|&at| run[at].doc).collect();
            let scores = summed
                .exact_scores(searcher, &docs, statistics)
                .map_err(query_error)?;
            for (&at, score) in slots.iter().zip(scores) {
                run[at].score = score;
                run[at].rank = f64::from(score);
            }
        }
        sort_rescored_best_first(run, version.hot_columns.exactness(), |hit| {
            tier_columns(version, cold, hit.tier).id_string(hit.doc)
        });
    }
    Ok(())
}

/// Parses, scores both tiers with corpus-wide statistics, merges, and reads the page's hot
/// documents. Runs within `cpu_work`.
fn rank(
    version: &Arc<LoadedVersion>,
    cold: Option<&ColdTier>,
    selection: &FieldSelection,
    query_text: &str,
    profile: &Arc<RankProfile>,
    spec: PageSpec,
) -> Result<Ranked, NodeError> {
    let hot_searcher = version.hot.searcher();
    let merged = rank_hits(version, cold, &hot_searcher, query_text, profile, spec)?;
    page_documents(version, cold, &hot_searcher, selection, merged, spec)
}

/// `page_documents` over the version's hot searcher, for the caller to run where it should.
fn page_reader(
    version: &Arc<LoadedVersion>,
    cold: &Option<Arc<ColdTier>>,
    selection: &FieldSelection,
    merged: MergedHits,
    spec: PageSpec,
) -> impl FnOnce() -> Result<Ranked, NodeError> + Send + 'static {
    let (version, cold, selection) = (version.clone(), cold.clone(), selection.clone());
    move || {
        let hot_searcher = version.hot.searcher();
        page_documents(
            &version,
            cold.as_deref(),
            &hot_searcher,
            &selection,
            merged,
            spec,
        )
    }
}

/// The page of merged hits, with its hot documents read (cold ones are read apart).
fn page_documents(
    version: &Arc<LoadedVersion>,
    cold: Option<&ColdTier>,
    hot_searcher: &Searcher,
    selection: &FieldSelection,
    merged: MergedHits,
    spec: PageSpec,
) -> Result<Ranked, NodeError> {
    let hot_fetch_started = Instant::now();
    let page: Vec<RankedHit> = merged.hits.into_iter().skip(spec.offset).collect();
    let with_documents = sized(documents_size(page.len()), || {
        page.into_iter()
            .map(|hit| {
                Ok(match (hit.tier, cold) {
                    (TierName::Cold, Some(cold)) => PageHit {
                        id: (version.id_kind != IdKind::Str).then(|| cold.columns().id(&hit)),
                        hit,
                        fields: None,
                    },
                    _ => {
                        let (id, fields) = hot_document(version, hot_searcher, selection, &hit)?;
                        PageHit {
                            id: Some(id),
                            hit,
                            fields: Some(fields),
                        }
                    }
                })
            })
            .collect::<Result<Vec<PageHit>, NodeError>>()
    })?;
    Ok(Ranked {
        page: with_documents,
        hot_after_page: merged.hot_after_page,
        cold_skipped: merged.cold_skipped,
        hot_total: merged.hot_total,
        cold_total: merged.cold_total,
        parse_ms: merged.parse_ms,
        search_ms: merged.search_ms,
        hot_fetch_ms: millis(hot_fetch_started),
        handed_off: merged.handed_off,
        rescored_hits: merged.rescored_hits,
        cold_degraded: merged.cold_degraded,
        cold_index: ColdIndexReads::default(),
    })
}

/// Reading this many stored documents (a doc-store block each at worst) is short work.
const SHORT_DOCUMENT_READS: u64 = 32;

fn documents_size(documents: usize) -> Size {
    Size::of(Some(documents as u64), SHORT_DOCUMENT_READS)
}

/// Runs `read`, which reads `documents` stored documents, as CPU work sized by their number.
pub(super) async fn read_hot_documents<T: Send + 'static>(
    documents: usize,
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    sized_work(documents_size(documents), read).await
}

/// One hit of a planned page: where it is, not what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedHit {
    pub tier: TierName,
    /// The document within its tier's searcher (`LoadedVersion::hot` or the cold tier's).
    pub doc: tantivy::DocAddress,
    /// Where a cold document's row is.
    pub addr: Option<DocAddr>,
}

/// A page as `search` would rank it, without reading any document.
#[derive(Debug, Clone)]
pub struct PagePlan {
    pub hits: Vec<PlannedHit>,
    pub cold_skipped: bool,
}

/// What `plan_page` ranks.
#[derive(Debug, Clone, Default)]
pub struct PageQuery<'a> {
    pub query: &'a str,
    /// 0 means the default, 10.
    pub limit: u32,
    pub offset: u32,
    pub profile: &'a str,
    pub order_by: &'a str,
}

/// Ranks a page of a version with both tiers exactly as `search` does, and says where its hits
/// are; reads no document. The cold tier must be loaded. Synchronous: the caller chooses the
/// thread (tools replaying a query log run it on their own threads).
pub fn plan_page(
    version: &Arc<LoadedVersion>,
    request: &PageQuery<'_>,
) -> Result<PagePlan, NodeError> {
    let cold = version.cold().ok_or_else(|| {
        NodeError::NotReady(format!("{}: cold tier not loaded", version.version_key))
    })?;
    if cold.remote.is_some() {
        return Err(NodeError::InvalidArgument(format!(
            "{}: planning pages synchronously needs the cold index local (cold_index = \"local\")",
            version.version_key
        )));
    }
    if version.hot_remote.is_some() {
        return Err(NodeError::NotReady(format!(
            "{}: hot tier still downloading",
            version.version_key
        )));
    }
    let profile = version
        .profiles
        .choose(&version.schema, request.profile, request.order_by)
        .map_err(|err| NodeError::InvalidArgument(err.to_string()))?;
    let limit = if request.limit == 0 {
        DEFAULT_LIMIT
    } else {
        request.limit
    };
    let spec = PageSpec {
        offset: request.offset as usize,
        limit: limit as usize,
        count: false,
        // A tool ranking a log has no caller waiting: no time budget to speak of.
        deadline: Instant::now() + Duration::from_secs(3600),
        // Nor a runtime to share: no worker to hand off.
        inline_postings: u64::MAX,
        exact_every_hit: false,
    };
    let hot_searcher = version.hot.searcher();
    let merged = rank_hits(
        version,
        Some(cold),
        &hot_searcher,
        request.query,
        &profile,
        spec,
    )?;
    Ok(PagePlan {
        hits: merged
            .hits
            .into_iter()
            .skip(spec.offset)
            .map(|hit| PlannedHit {
                tier: hit.tier,
                doc: hit.doc,
                addr: hit.addr.map(DocAddr::unpack),
            })
            .collect(),
        cold_skipped: merged.cold_skipped,
    })
}

/// Whether no cold document can reach the page: the hot tier filled it (`depth` hits) and its
/// last rank is above the highest rank any cold document could have for this query. Strictly
/// above: a cold document tying it could still win on id.
fn cold_cannot_reach(
    hot_hits: &[RankedHit],
    ranking: &Ranking<'_>,
    cold: &ColdTier,
) -> Result<bool, NodeError> {
    let Some(kth) = hot_hits.get(ranking.depth.wrapping_sub(1)) else {
        return Ok(false);
    };
    let profile = ranking.profile;
    // A hit of the cold tier within rounding of the k-th may rank above it once summed exactly.
    let kth_rank = near_tie_floor(kth.rank, ranking.near_tie);
    let bm25_max = if profile.reads_bm25() {
        match skip::bm25_bound(ranking.query, &cold.bounds)
            .map_err(|err| NodeError::io("reading the cold term bounds", err))?
        {
            Some(bound) => bound,
            None => return Ok(false),
        }
    } else {
        f64::INFINITY
    };
    let ranges = cold.ranges.ranges(profile.inputs());
    Ok(kth_rank > profile.upper_bound(bm25_max, &ranges))
}
