//! A shard's part of a fleet's search: its best hits through a page's end ranked without
//! documents (`rank_shards`), then the documents of the hits that made the merged page
//! (`fetch_shard`). The ranking is `search`'s own, over one shard's version.

use std::sync::Arc;
use std::time::Instant;

use tantivy::TantivyDocument;
use tracing::{Instrument, debug_span};

use super::NodeError;
use super::collector::{IdKey, IdKind, RankedHit};
use super::documents::{FieldSelection, Fields, from_tantivy};
use super::offload::cpu_work;
use super::remote_rank::{RemoteRanking, rank_hits_remote};
use super::search::{
    ANSWER_MARGIN, DEFAULT_LIMIT, MergedHits, PageSpec, SearchContext, SearchRequest, SearchStats,
    TierName, millis, rank_hits, read_cold_documents, read_hot_documents, tier_columns,
};
use super::version::{ColdTier, LoadedVersion};
use crate::cache::ReadStats;
use crate::config::DegradedPolicy;
use crate::format::DocAddr;
use crate::ranking::RankProfile;

/// Where a shard's hit is, for reading its document later: `(segment << 32) | doc` in the hot
/// tier, the packed `_addr` in the cold tier. Valid for the version that ranked it, on any
/// node serving that version (the files are the same).
pub fn doc_ref(hit: &RankedHit) -> u64 {
    match (hit.tier, hit.addr) {
        (TierName::Cold, Some(addr)) => addr,
        _ => (u64::from(hit.doc.segment_ord) << 32) | u64::from(hit.doc.doc_id),
    }
}

/// One hit of a shard's ranking: enough to merge it with other shards' by (rank, id).
#[derive(Debug, Clone)]
pub struct ShardHit {
    pub rank: f64,
    /// What a page reports (`RankProfile::reported_score`).
    pub score: f64,
    /// The id's sort key (`format::sort_key`): orders like the id.
    pub key: u64,
    /// The id, for numeric ids (the key is the id); `None` for string ids, whose key is only
    /// their first 8 bytes: reading the whole id here would cost a dictionary block decode per
    /// hit, and the merge needs it only for hits whose rank and key tie (`fetch_shard` returns
    /// it with the document).
    pub id: Option<IdKey>,
    pub tier: TierName,
    /// `doc_ref`.
    pub doc: u64,
}

/// A shard's best hits through a page's end, without documents.
#[derive(Debug, Clone)]
pub struct ShardPage {
    pub hits: Vec<ShardHit>,
    pub hot_total: u64,
    pub cold_total: u64,
    pub totals_exact: bool,
    pub cold_skipped: bool,
    /// Why the ranking lacks cold hits it should have (the cold tier still loading).
    pub degraded: Option<String>,
    pub ranked_by: String,
    pub version: String,
    pub parse_ms: f64,
    pub search_ms: f64,
}

/// Ranks shards for a fan-out: each one's best `request.limit` hits (the caller asks for the
/// page's whole depth, offset 0) with corpus-wide scores, and their sort keys. Reads no
/// document. The shards (this node's, of one version) are ranked one after another on one
/// thread, under one search slot: a search holds a thread while it ranks whatever the number of
/// shards, and a slot and a thread hop per shard cost more than these rankings.
pub async fn rank_shards(
    versions: Vec<Arc<LoadedVersion>>,
    request: SearchRequest,
    context: &SearchContext<'_>,
) -> Result<Vec<Result<ShardPage, NodeError>>, NodeError> {
    let deadline = request
        .deadline
        .unwrap_or_else(|| Instant::now() + context.default_timeout);
    let depth = if request.limit == 0 {
        DEFAULT_LIMIT
    } else {
        request.limit
    };
    if u64::from(depth) + u64::from(request.offset) > u64::from(context.max_results) {
        return Err(NodeError::InvalidArgument(format!(
            "limit + offset is {}, above this node's maximum of {}",
            u64::from(depth) + u64::from(request.offset),
            context.max_results
        )));
    }
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let permit = tokio::time::timeout_at(deadline.into(), context.permits.clone().acquire_owned())
        .await
        .map_err(|_| {
            NodeError::DeadlineExceeded("no search slot became free within the time budget".into())
        })?
        .map_err(|_| NodeError::Internal("search pool closed".into()))?;
    let spec = PageSpec {
        offset: 0,
        limit: depth as usize,
        count: request.count_total,
        deadline,
        inline_postings: context.inline_postings,
        exact_every_hit: true,
    };
    let remote = versions.iter().any(|version| {
        !request.hot_only && version.cold().is_some_and(|cold| cold.remote.is_some())
    });
    let span = debug_span!("rank_shards", shards = versions.len());
    let pages = if remote {
        // Each shard's cold index is warmed before it is ranked: one after another, awaiting.
        let _permit = permit;
        let stats = Arc::new(ReadStats::default());
        let how = RemoteRanking {
            stats: &stats,
            give_up: deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline),
            strict: context.cold_plan_strict,
        };
        let mut pages = Vec::with_capacity(versions.len());
        for version in &versions {
            pages.push(
                rank_one_remote_shard(version, &request, spec, &how)
                    .instrument(span.clone())
                    .await,
            );
        }
        pages
    } else {
        cpu_work(move || {
            let _permit = permit;
            let _entered = span.entered();
            versions
                .iter()
                .map(|version| rank_one_shard(version, &request, spec))
                .collect::<Vec<_>>()
        })
        .await?
    };
    if Instant::now() > deadline {
        return Err(NodeError::DeadlineExceeded(
            "ranking did not finish within the time budget".into(),
        ));
    }
    Ok(pages)
}

/// One shard's ranking when its cold index is remote.
async fn rank_one_remote_shard(
    version: &Arc<LoadedVersion>,
    request: &SearchRequest,
    spec: PageSpec,
    how: &RemoteRanking<'_>,
) -> Result<ShardPage, NodeError> {
    let profile = version
        .profiles
        .choose(&version.schema, &request.profile, &request.order_by)
        .map_err(|err| NodeError::InvalidArgument(err.to_string()))?;
    let Some(cold) = version.cold().cloned().filter(|cold| cold.remote.is_some()) else {
        return rank_one_shard(version, request, spec);
    };
    let (merged, _) = rank_hits_remote(version, &cold, &request.query, &profile, spec, how).await?;
    let degraded = merged.cold_degraded.clone();
    let searched = (!merged.cold_skipped && degraded.is_none()).then_some(cold.as_ref());
    let mut page = shard_page(version, searched, request, &profile, merged);
    page.degraded = degraded;
    Ok(page)
}

/// A shard's page from its merged hits.
fn shard_page(
    version: &Arc<LoadedVersion>,
    cold: Option<&ColdTier>,
    request: &SearchRequest,
    profile: &Arc<RankProfile>,
    merged: MergedHits,
) -> ShardPage {
    let hits: Vec<ShardHit> = merged
        .hits
        .iter()
        .map(|hit| ShardHit {
            rank: hit.rank,
            score: profile.reported_score(hit.score, hit.rank),
            key: hit.key,
            id: (version.id_kind != IdKind::Str)
                .then(|| tier_columns(version, cold, hit.tier).id(hit)),
            tier: hit.tier,
            doc: doc_ref(hit),
        })
        .collect();
    ShardPage {
        hits,
        hot_total: merged.hot_total,
        cold_total: merged.cold_total,
        totals_exact: request.count_total,
        cold_skipped: merged.cold_skipped,
        degraded: None,
        ranked_by: profile.label.clone(),
        version: version.version().to_string(),
        parse_ms: merged.parse_ms,
        search_ms: merged.search_ms,
    }
}

/// One shard's ranking, on the calling thread.
fn rank_one_shard(
    version: &Arc<LoadedVersion>,
    request: &SearchRequest,
    spec: PageSpec,
) -> Result<ShardPage, NodeError> {
    let profile = version
        .profiles
        .choose(&version.schema, &request.profile, &request.order_by)
        .map_err(|err| NodeError::InvalidArgument(err.to_string()))?;
    let cold = if request.hot_only {
        None
    } else {
        version.cold().cloned()
    };
    let degraded = (!request.hot_only && cold.is_none())
        .then(|| "cold tier still loading: hot results only".to_string());
    let hot_searcher = version.hot.searcher();
    let merged = rank_hits(
        version,
        cold.as_deref(),
        &hot_searcher,
        &request.query,
        &profile,
        spec,
    )?;
    let mut page = shard_page(version, cold.as_deref(), request, &profile, merged);
    page.degraded = degraded;
    Ok(page)
}

/// The documents of hits a shard ranked, in the order asked.
#[derive(Debug, Clone, Default)]
pub struct ShardDocuments {
    /// `None` for a cold document that could not be read (`degraded` says why).
    pub documents: Vec<Option<Fields>>,
    /// Each document's id, read with it (`None` where the document is).
    pub ids: Vec<Option<IdKey>>,
    pub degraded: Option<String>,
    pub stats: SearchStats,
}

/// Reads the documents of hits `rank_shard` returned (`(tier, doc_ref)`), hot ones locally and
/// cold ones through the cache in one round. Cold documents that cannot be read in time are
/// left out and the answer flagged, as a search's are.
pub async fn fetch_shard(
    version: Arc<LoadedVersion>,
    hits: Vec<(TierName, u64)>,
    fields: &[String],
    deadline: Option<Instant>,
    context: &SearchContext<'_>,
) -> Result<ShardDocuments, NodeError> {
    let started = Instant::now();
    let deadline = deadline.unwrap_or(started + context.default_timeout);
    let selection = FieldSelection::new(
        &version.schema,
        &version.manifest.multi_valued_fields,
        fields,
    )
    .map_err(NodeError::InvalidArgument)?;
    // The id comes with each document (stored, and a parquet column), so it is read along;
    // it is left out of the fields unless they asked for it.
    let id_index = version.schema.id_index;
    let id_name = version.schema.spec.id_field.clone();
    let id_asked = selection.columns.contains(&id_index);
    let mut selection = selection;
    if !id_asked {
        selection.columns.push(id_index);
        selection.columns.sort_unstable();
    }
    let cold_addrs: Vec<DocAddr> = hits
        .iter()
        .filter(|(tier, _)| *tier == TierName::Cold)
        .map(|(_, addr)| DocAddr::unpack(*addr))
        .collect();
    let cold = version.cold().cloned();
    if !cold_addrs.is_empty() && cold.is_none() {
        return Err(NodeError::NotReady(format!(
            "{}: cold tier not loaded",
            version.version_key
        )));
    }
    let hot_refs: Vec<u64> = hits
        .iter()
        .filter(|(tier, _)| *tier == TierName::Hot)
        .map(|(_, doc)| *doc)
        .collect();
    let hot_version = version.clone();
    let hot_selection = selection.clone();
    let hot_documents = read_hot_documents(hot_refs.len(), move || {
        let searcher = hot_version.hot.searcher();
        hot_refs
            .into_iter()
            .map(|doc| {
                let address = tantivy::DocAddress::new((doc >> 32) as u32, doc as u32);
                if address.segment_ord as usize >= searcher.segment_readers().len()
                    || address.doc_id >= searcher.segment_reader(address.segment_ord).max_doc()
                {
                    return Err(NodeError::InvalidArgument(format!(
                        "no hot document {doc:#x} in {}",
                        hot_version.version_key
                    )));
                }
                let document: TantivyDocument = searcher.doc(address)?;
                Ok(from_tantivy(&hot_version.schema, &hot_selection, &document))
            })
            .collect::<Result<Vec<Fields>, NodeError>>()
    })
    .await??;
    let hot_fetch_ms = millis(started);
    let stats = Arc::new(ReadStats::default());
    let cold_started = Instant::now();
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
    let cold_fetch_ms = if cold_addrs.is_empty() {
        0.0
    } else {
        millis(cold_started)
    };
    let (mut cold_documents, degraded) = match cold_documents {
        Ok(documents) => (documents.into_iter().map(Some).collect::<Vec<_>>(), None),
        Err(reason) => {
            if context.on_degraded == DegradedPolicy::Fail {
                return Err(NodeError::StorageUnavailable(reason));
            }
            (vec![None; cold_addrs.len()], Some(reason))
        }
    };
    cold_documents.reverse();
    let mut hot_documents = hot_documents.into_iter();
    let mut documents: Vec<Option<Fields>> = hits
        .iter()
        .map(|(tier, _)| match tier {
            TierName::Hot => hot_documents.next(),
            TierName::Cold => cold_documents.pop().flatten(),
        })
        .collect();
    let ids = documents
        .iter_mut()
        .map(|document| {
            let fields = document.as_mut()?;
            let at = fields.iter().position(|(name, _)| *name == id_name)?;
            let id = fields[at].1.as_id()?;
            if !id_asked {
                fields.remove(at);
            }
            Some(id)
        })
        .collect();
    let counts = stats.snapshot();
    Ok(ShardDocuments {
        documents,
        ids,
        degraded,
        stats: SearchStats {
            cache_hits: counts.cache_hits,
            cache_misses: counts.cache_misses,
            storage_requests: counts.requests,
            storage_bytes: counts.bytes,
            hot_fetch_ms,
            cold_fetch_ms,
            total_ms: millis(started),
            ..SearchStats::default()
        },
    })
}
