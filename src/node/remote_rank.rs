//! Ranking a page over a version whose cold index is remote, in explicit phases:
//!
//! 1. the query parsed and the hot tier ranked (local; on the runtime worker, sized);
//! 2. the skip decided from kept bounds when it can be, reading nothing;
//! 3. round 1: the query terms' cold bounds and dictionary blocks (`remote::warm`);
//! 4. the skip decided from the bounds just read, if it was not;
//! 5. round 2: postings (positions for phrases), field norms and, the first time, the columns;
//! 6. the cold tier ranked over the warmed bytes, and both tiers merged.
//!
//! Rounds 1 and 2 are the search's only waits on storage (none when the cache holds what they
//! read). Before them, a search first tries steps 2 to 6 with no warm-up, straight over the
//! block cache's memory (`from_memory`): under a steady load most searches' terms were read
//! before, and the warm-up (working out the plan, looking up and copying every range it names)
//! would cost more than the ranking. Any read not in memory ends the attempt, and the search
//! goes through the rounds. A round that fails, or outlives the time budget, leaves the cold
//! tier unsearched: the answer is the hot tier's, flagged. A read the plan missed (step 6) is counted; the cold
//! phase then runs again on the blocking pool, where missed reads may wait — or, in strict
//! mode, the search fails naming the read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::Searcher;

use super::NodeError;
use super::offload::{cpu_work, sized};
use super::search::{
    HotRanked, MergedHits, PageSpec, Prepared, merge_tiers, prepare, rank_cold, rank_hot,
    ranking_size, skips_cold,
};
use super::skip;
use super::version::{ColdTier, LoadedVersion};
use crate::cache::ReadStats;
use crate::ranking::RankProfile;
use crate::remote::{Round, Warmed, warm};

/// What a remote cold ranking read, for the search's stats.
#[derive(Debug, Clone, Copy, Default)]
pub struct ColdIndexReads {
    /// Rounds of index reads that went to storage.
    pub rounds: u32,
    /// Reads the plan missed.
    pub plan_misses: u64,
    /// The cold phase ran straight over the block cache's memory, without a warm-up.
    pub from_memory: bool,
}

/// How the remote phases may run.
pub struct RemoteRanking<'a> {
    pub stats: &'a Arc<ReadStats>,
    /// When the rounds give up, leaving the cold tier unsearched.
    pub give_up: Instant,
    pub strict: bool,
}

/// `rank_hits` for a remote cold tier (see the module's phases).
pub(super) async fn rank_hits_remote(
    version: &Arc<LoadedVersion>,
    cold: &Arc<ColdTier>,
    query_text: &str,
    profile: &Arc<RankProfile>,
    spec: PageSpec,
    how: &RemoteRanking<'_>,
) -> Result<(MergedHits, ColdIndexReads), NodeError> {
    let hot_searcher = version.hot.searcher();
    let (prepared, hot) = {
        let (version, hot_searcher) = (version.clone(), hot_searcher.clone());
        let (query_text, profile) = (query_text.to_string(), profile.clone());
        cpu_work(move || {
            let prepared = prepare(&version, &query_text, &profile, spec)?;
            let hot = sized(prepared.size, || {
                rank_hot(&version, &hot_searcher, &prepared)
            })?;
            Ok::<_, NodeError>((prepared, hot))
        })
        .await??
    };
    let mut reads = ColdIndexReads::default();
    let unsearched = |prepared: &Prepared, hot: HotRanked, skipped: bool, why: Option<String>| {
        let mut merged = merge_tiers(version, None, &hot_searcher, prepared, hot, None, skipped)?;
        merged.cold_degraded = why;
        Ok::<_, NodeError>(merged)
    };
    let bounded = skip::bounded_terms(prepared.query.as_ref());
    let reads_bounds = !spec.count
        && prepared.profile.reads_bm25()
        && bounded.iter().any(|term| !cold.bounds.is_kept(term));
    // Decided without reading: every bound it needs is kept (or it needs none, or the cold
    // tier is empty).
    let mut skipped = None;
    if !reads_bounds || (!spec.count && cold.tier.searcher().num_docs() == 0) {
        skipped = Some(skips_cold(&prepared, &hot, cold)?);
    }
    if skipped == Some(true) {
        return Ok((unsearched(&prepared, hot, true, None)?, reads));
    }
    let prepared = Arc::new(prepared);
    // Strict mode checks every search's plan, so it always warms up.
    if !how.strict && cold.columns_open() {
        let attempt = {
            let (version, cold, hot_searcher) =
                (version.clone(), cold.clone(), hot_searcher.clone());
            let (prepared, hot, stats) = (prepared.clone(), hot.clone(), how.stats.clone());
            cpu_work(move || {
                let warmed = Warmed::from_memory(stats);
                from_memory(
                    &version,
                    &cold,
                    &hot_searcher,
                    &prepared,
                    hot,
                    skipped,
                    &warmed,
                )
            })
            .await?
        };
        if let Some(ranked) = attempt {
            reads.from_memory = true;
            return match ranked? {
                Some(merged) => Ok((merged, reads)),
                None => Ok((unsearched(&prepared, hot, true, None)?, reads)),
            };
        }
    }
    let terms = warm::query_terms(prepared.query.as_ref());
    let all_terms: Vec<tantivy::Term> = terms.iter().map(|(term, _)| term.clone()).collect();
    let cold_searcher = cold.tier.searcher();
    let Some(remote) = cold.remote.as_ref() else {
        return Err(NodeError::Internal(
            "a remote ranking of a cold tier searched locally".into(),
        ));
    };
    let kept_terms = &remote.terms;
    let warmed = Warmed::new();
    let round = Round::new(warmed.clone(), how.stats.clone());
    let first = round.run(async {
        let (bounds, dictionary) = futures::join!(
            cold.bounds.warm(&all_terms),
            warm::dictionary(&cold_searcher, kept_terms, &terms)
        );
        bounds.and(dictionary)
    });
    if let Err(why) = within(how.give_up, first, &round).await {
        reads.rounds = round.storage_rounds();
        return Ok((unsearched(&prepared, hot, false, Some(why))?, reads));
    }
    if skipped.is_none() && warmed.scope(|| skips_cold(&prepared, &hot, cold))? {
        reads.rounds = round.storage_rounds();
        return Ok((unsearched(&prepared, hot, true, None)?, reads));
    }
    let columns = if cold.columns_open() {
        Vec::new()
    } else {
        ColdTier::column_names(&version.schema)
    };
    let second = round.run(warm::postings(&cold_searcher, kept_terms, &terms, &columns));
    let second = within(how.give_up, second, &round).await;
    reads.rounds = round.storage_rounds();
    if let Err(why) = second {
        return Ok((unsearched(&prepared, hot, false, Some(why))?, reads));
    }
    let cold_phase = {
        let (version, cold, hot_searcher) = (version.clone(), cold.clone(), hot_searcher.clone());
        let (prepared, hot, warmed) = (prepared.clone(), hot.clone(), warmed.clone());
        cpu_work(move || {
            warmed.scope(|| rank_cold_and_merge(&version, &cold, &hot_searcher, &prepared, hot))
        })
        .await?
    };
    let misses = warmed.take_misses();
    if misses.is_empty() {
        return Ok((cold_phase?, reads));
    }
    reads.plan_misses = misses.len() as u64;
    let missed: Vec<String> = misses.iter().map(ToString::to_string).collect();
    if how.strict {
        return Err(NodeError::Internal(format!(
            "the cold search read what its plan missed: {}",
            missed.join(", ")
        )));
    }
    tracing::debug!(missed = %missed.join(", "), "cold plan missed reads; searching again on the blocking pool");
    let runtime = tokio::runtime::Handle::current();
    let (version, cold, hot_searcher) = (version.clone(), cold.clone(), hot_searcher.clone());
    let merged = tokio::task::spawn_blocking(move || {
        Warmed::blocking(runtime)
            .scope(|| rank_cold_and_merge(&version, &cold, &hot_searcher, &prepared, hot))
    })
    .await
    .map_err(|err| NodeError::Internal(format!("cold search task: {err}")))??;
    Ok((merged, reads))
}

/// Steps 2 to 6 with no warm-up, for a search whose cold reads are all in the block cache's
/// memory (its terms searched before, as most are under a steady load): within a scope served
/// from memory. `None` when a read was not there: the search warms up and runs again. Else
/// the cold phase's result: the merged hits, or `None` when the cold tier is skipped.
fn from_memory(
    version: &Arc<LoadedVersion>,
    cold: &ColdTier,
    hot_searcher: &Searcher,
    prepared: &Prepared,
    hot: HotRanked,
    skipped: Option<bool>,
    warmed: &Arc<Warmed>,
) -> Option<Result<Option<MergedHits>, NodeError>> {
    let ranked = warmed.scope(|| {
        if skipped.is_none() && skips_cold(prepared, &hot, cold)? {
            return Ok(None);
        }
        rank_cold_and_merge(version, cold, hot_searcher, prepared, hot).map(Some)
    });
    warmed.take_misses().is_empty().then_some(ranked)
}

/// Steps 6: within a warmed scope.
fn rank_cold_and_merge(
    version: &Arc<LoadedVersion>,
    cold: &ColdTier,
    hot_searcher: &Searcher,
    prepared: &Prepared,
    hot: HotRanked,
) -> Result<MergedHits, NodeError> {
    cold.open_columns(&version.schema, version.id_kind)?;
    // Sized again now that the cold terms' document frequencies are known.
    let size = ranking_size(
        prepared.query.as_ref(),
        &prepared.statistics,
        &prepared.profile,
        prepared.spec,
    );
    let page = sized(size, || {
        rank_cold(prepared, &hot, cold, prepared.statistics.as_ref())
    })?;
    merge_tiers(
        version,
        Some(cold),
        hot_searcher,
        prepared,
        hot,
        Some(page),
        false,
    )
}

/// Runs a round until `give_up`: `Err` says why the cold tier is not searched.
async fn within(
    give_up: Instant,
    work: impl std::future::Future<Output = std::io::Result<()>>,
    round: &Round,
) -> Result<(), String> {
    let wait = give_up
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    match tokio::time::timeout(wait, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!(
            "cold tier not searched: its index could not be read: {}",
            round
                .error()
                .map_or_else(|| err.to_string(), |cause| cause.to_string())
        )),
        Err(_) => {
            Err("cold tier not searched: its index was not read within the time budget".into())
        }
    }
}
