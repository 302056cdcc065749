//! Ranks every distinct query of a log once against a loaded version, on all cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::TuningError;
use super::log::{LineProblem, ProblemKind, QueryLog};
use crate::node::NodeError;
use crate::node::search::{PagePlan, PageQuery, plan_page};
use crate::node::version::LoadedVersion;

/// How pages are ranked: what a search request would say.
#[derive(Debug, Clone, Default)]
pub struct PageOptions {
    /// 0 means the default, 10.
    pub limit: u32,
    pub profile: String,
    pub order_by: String,
}

/// A log with the page of each of its distinct queries.
pub struct RankedLog {
    pub log: QueryLog,
    /// Parallel to `log.queries`; `None` where the query does not parse (a problem of the log).
    pub pages: Vec<Option<PagePlan>>,
    /// What ordered the pages (the profile's label).
    pub ranked_by: String,
}

impl RankedLog {
    /// The queries that ranked, with their pages.
    pub fn ranked(&self) -> impl Iterator<Item = (&super::log::LoggedQuery, &PagePlan)> {
        self.log
            .queries
            .iter()
            .zip(&self.pages)
            .filter_map(|(query, page)| Some((query, page.as_ref()?)))
    }
}

/// Ranks each distinct query of `log` once. A query that does not parse becomes a located
/// problem of the log; a log with no query that parses, and any other failure, stops the run. `progress` is told of each query done.
pub fn rank_log(
    version: &Arc<LoadedVersion>,
    mut log: QueryLog,
    options: &PageOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RankedLog, TuningError> {
    let profile = version
        .profiles
        .choose(&version.schema, &options.profile, &options.order_by)
        .map_err(|err| TuningError::argument(err.to_string()))?;
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let queries = &log.queries;
    let mut outcomes: Vec<Option<Result<PagePlan, NodeError>>> =
        (0..queries.len()).map(|_| None).collect();
    let finished: Vec<Vec<(usize, Result<PagePlan, NodeError>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        let Some(query) = queries.get(at) else {
                            break;
                        };
                        let page = plan_page(
                            version,
                            &PageQuery {
                                query: &query.text,
                                limit: options.limit,
                                offset: 0,
                                profile: &options.profile,
                                order_by: &options.order_by,
                            },
                        );
                        let failed_hard = matches!(&page, Err(err) if !is_query_problem(err));
                        done.push((at, page));
                        progress(1);
                        if failed_hard {
                            // Stop everyone: the run fails anyway.
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                            break;
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("ranking thread panicked"))
            .collect()
    });
    for (at, page) in finished.into_iter().flatten() {
        outcomes[at] = Some(page);
    }
    let mut pages = Vec::with_capacity(queries.len());
    let mut problems = Vec::new();
    for (query, outcome) in log.queries.iter().zip(outcomes) {
        match outcome {
            Some(Ok(page)) => pages.push(Some(page)),
            Some(Err(err)) if is_query_problem(&err) => {
                let message = match &err {
                    NodeError::InvalidQuery {
                        message,
                        position: Some(position),
                    } => format!("`{}`: {message} (byte {position})", query.text),
                    other => format!("`{}`: {other}", query.text),
                };
                problems.push(LineProblem {
                    line: query.first_line,
                    kind: ProblemKind::Query,
                    message,
                });
                pages.push(None);
            }
            Some(Err(err)) => {
                return Err(TuningError::node(format!(
                    "{} line {}: `{}`: {err}",
                    log.source, query.first_line, query.text
                )));
            }
            None => pages.push(None),
        }
    }
    log.problems.extend(problems);
    log.problems.sort_by_key(|problem| problem.line);
    // Zero candidates or a 0% hit rate from a log the tool could not read says nothing.
    if pages.iter().all(Option::is_none) {
        return Err(log.nothing_usable());
    }
    Ok(RankedLog {
        log,
        pages,
        ranked_by: profile.label.clone(),
    })
}

fn is_query_problem(err: &NodeError) -> bool {
    matches!(err, NodeError::InvalidQuery { .. })
}
