//! A fleet of nodes answering as one index over a sharded version.
//!
//! Every member computes the same placement from the member list (`placement`), serves the
//! shards placed on it (`Node::add_shard`), and answers any search by fanning out: one live
//! replica per shard ranks its best `offset + limit` hits with corpus-wide statistics (every
//! shard has the version's statistics, so scores are exact with no extra round), the hits
//! are merged by (rank, id), and documents are read only for the final page, from the replicas
//! that ranked them. A shard none of whose replicas answers makes the answer partial, naming
//! the shard. Searches pin one version across all shards; a member switches its searches to a
//! new version only once every shard has a replica serving it (replicas keep the version they
//! replaced meanwhile).
//!
//! Talking to other members goes through `ShardClient` (gRPC in the API layer, the local node
//! for shards served here), so this module knows nothing of the transport.

pub mod membership;
pub mod placement;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::config::{FleetConfig, PeerSource};
use crate::node::collector::IdKey;
use crate::node::documents::{FieldValue, Fields};
use crate::node::metrics::FleetMetrics;
use crate::node::search::{
    DEFAULT_LIMIT, SearchHit, SearchRequest, SearchResult, SearchStats, TierName,
};
use crate::node::shard_search::{ShardDocuments, ShardHit, ShardPage};
use crate::node::{IndexStatus, Node, NodeError, NodeErrorKind, TierState};
use membership::{DnsMembers, Membership, StaticMembers};

/// Asks a member to rank or read one of its shards.
///
/// Contract: `shard` is `<index>/<shard>`; `version` is the version to search, which the
/// member serves as its current or its previous version or refuses (`NotReady`). Errors of
/// kind `InvalidQuery` / `InvalidArgument` are the request's fault and the same on every
/// replica; any other error means this member could not answer now.
#[async_trait]
pub trait ShardClient: Send + Sync {
    async fn rank(
        &self,
        member: &str,
        shard: &str,
        version: &str,
        request: &SearchRequest,
    ) -> Result<ShardPage, NodeError>;

    async fn fetch(
        &self,
        member: &str,
        shard: &str,
        version: &str,
        hits: Vec<(TierName, u64)>,
        fields: &[String],
        deadline: Option<Instant>,
    ) -> Result<ShardDocuments, NodeError>;

    /// What the member serves: one status per index or shard.
    async fn statuses(&self, member: &str) -> Result<Vec<IndexStatus>, NodeError>;
}

/// What searches of one index use: the pinned version and who serves its shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetView {
    pub version: String,
    pub shards: u32,
    /// Whom to ask for each shard, most preferred first: its owners, then members still
    /// serving it while placement moves it.
    pub routes: Vec<Vec<String>>,
}

pub struct Fleet {
    node: Arc<Node>,
    client: Arc<dyn ShardClient>,
    membership: Box<dyn Membership>,
    me: String,
    replicas: usize,
    refresh: Duration,
    replica_timeout: Duration,
    indexes: Vec<String>,
    views: RwLock<HashMap<String, Arc<FleetView>>>,
    /// Members that failed to answer, and when: tried last for a while.
    failed: Mutex<HashMap<String, Instant>>,
    /// Bumped whenever a view changes.
    changes: watch::Sender<u64>,
    metrics: FleetMetrics,
    /// Shards served here that are placed elsewhere and served there, since when.
    leaving: Mutex<HashMap<String, Instant>>,
    /// Per index: the version CURRENT named last and its shard count.
    published: Mutex<HashMap<String, (String, u32)>>,
}

/// How long a member that failed is tried after the others.
const FAILED_FOR: Duration = Duration::from_secs(5);

/// A replica that has not answered within this share of `replica_timeout` gets a second one
/// asked beside it (hedging): slow is not failed, and the first answer wins.
const HEDGE_FRACTION: u32 = 4;

impl Fleet {
    pub fn new(node: Arc<Node>, config: &FleetConfig, client: Arc<dyn ShardClient>) -> Arc<Fleet> {
        let membership: Box<dyn Membership> = match &config.peers {
            PeerSource::Static(list) => Box::new(StaticMembers::new(list.clone())),
            PeerSource::Dns { name, port } => Box::new(DnsMembers {
                name: name.clone(),
                port: *port,
            }),
        };
        Fleet::with_membership(node, config, client, membership)
    }

    /// A fleet whose member list comes from `membership` rather than the configured peers.
    pub fn with_membership(
        node: Arc<Node>,
        config: &FleetConfig,
        client: Arc<dyn ShardClient>,
        membership: Box<dyn Membership>,
    ) -> Arc<Fleet> {
        Arc::new(Fleet {
            indexes: node.config().indexes.clone(),
            metrics: node.fleet_metrics(),
            node,
            client,
            membership,
            me: config.advertise.clone(),
            replicas: config.replicas,
            refresh: config.refresh,
            replica_timeout: config.replica_timeout,
            views: RwLock::default(),
            failed: Mutex::default(),
            changes: watch::channel(0).0,
            leaving: Mutex::default(),
            published: Mutex::default(),
        })
    }

    /// This member's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn view(&self, index: &str) -> Option<Arc<FleetView>> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .cloned()
    }

    /// Whether every index has a pinned version and placement: before that no search can be
    /// answered.
    pub fn has_placed_every_index(&self) -> bool {
        let views = self.views.read().unwrap_or_else(PoisonError::into_inner);
        self.indexes.iter().all(|index| views.contains_key(index))
    }

    /// Fires whenever a view changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Places shards and follows versions until dropped: every `refresh`, reads the member
    /// list and CURRENT, serves the shards placed here, and pins a new version once every
    /// shard has a replica serving it.
    pub async fn run(self: Arc<Self>) {
        let mut members: Vec<String> = Vec::new();
        let mut last_error = String::new();
        loop {
            match self.membership.members().await {
                Ok(found) => {
                    if found != members {
                        info!(members = ?found, "fleet members");
                    }
                    members = found;
                }
                Err(err) if err != last_error => {
                    warn!(source = %self.membership.describe(), "member list unavailable, keeping the last: {err}");
                    last_error = err;
                }
                Err(_) => {}
            }
            if !members.is_empty() {
                for index in &self.indexes {
                    if let Err(err) = self.refresh_index(index, &members).await {
                        debug!(%index, "fleet refresh: {err}");
                    }
                }
            }
            tokio::time::sleep(self.refresh).await;
        }
    }

    async fn refresh_index(&self, index: &str, members: &[String]) -> Result<(), NodeError> {
        let (version, shards) = match self.published(index).await {
            Ok(published) => published,
            // Storage down before this member has placed anything (a restart): the shards kept
            // in the data dir say which version to serve, as a plain node serves its copy.
            Err(err) if err.kind() == NodeErrorKind::Storage && self.view(index).is_none() => {
                match self.node.kept_shards(index).await {
                    Some(kept) => {
                        warn!(%index, version = %kept.0, "storage unreachable ({err}): placing the version kept in the data dir");
                        kept
                    }
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let owners: Vec<Vec<String>> = (0..shards)
            .map(|shard| {
                placement::owners(members, index, shard, self.replicas)
                    .into_iter()
                    .map(str::to_string)
                    .collect()
            })
            .collect();
        let mine: Vec<u32> = (0..shards)
            .filter(|shard| owners[*shard as usize].contains(&self.me))
            .collect();
        for shard in &mine {
            self.node.add_shard(index, *shard);
        }
        let serving = self.serving(members).await;
        // A shard placed elsewhere goes once one of its owners serves the published version,
        // so that a placement change never leaves it unserved, and only after a grace period
        // for the searches that were routed here before (they read documents here too).
        for shard in self.node.served_shards(index) {
            let slot = format!("{index}/{shard}");
            let elsewhere = !mine.contains(&shard);
            let taken_over = owners.get(shard as usize).is_none_or(|owners| {
                owners
                    .iter()
                    .any(|owner| serves(&serving, owner, &slot, &version))
            });
            let mut leaving = self.leaving.lock().unwrap_or_else(PoisonError::into_inner);
            if !(elsewhere && taken_over) {
                leaving.remove(&slot);
                continue;
            }
            let since = *leaving.entry(slot.clone()).or_insert_with(Instant::now);
            if since.elapsed() >= self.refresh.max(self.replica_timeout) {
                leaving.remove(&slot);
                drop(leaving);
                self.node.remove_shard(index, shard);
            }
        }
        let complete = (0..shards).all(|shard| {
            owners[shard as usize]
                .iter()
                .any(|owner| serves(&serving, owner, &format!("{index}/{shard}"), &version))
        });
        // Searches ask the owners first, then members still serving a shard placed elsewhere
        // (until its new owners have loaded it, which they keep it for).
        let mut routes = owners;
        for (shard, route) in routes.iter_mut().enumerate() {
            let slot = format!("{index}/{shard}");
            let mut former: Vec<&String> = members
                .iter()
                .filter(|member| !route.contains(member))
                .filter(|member| serves(&serving, member, &slot, &version))
                .collect();
            former.sort();
            route.extend(former.into_iter().cloned());
        }
        let view = FleetView {
            version,
            shards,
            routes,
        };
        let current = self.view(index);
        let switch = match &current {
            None => true,
            Some(current) if current.version == view.version => **current != view,
            Some(_) => complete,
        };
        if switch {
            if current
                .as_ref()
                .is_some_and(|current| current.version != view.version)
            {
                info!(%index, version = %view.version, "every shard has a replica serving the new version: switching to it");
            }
            self.views
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(index.to_string(), Arc::new(view));
            self.changes.send_modify(|generation| *generation += 1);
        }
        Ok(())
    }

    /// The version CURRENT names for `index` and its shard count. CURRENT is read every time;
    /// the version's manifest only when CURRENT names a version not seen before.
    async fn published(&self, index: &str) -> Result<(String, u32), NodeError> {
        let version = self.node.published_version(index).await?;
        let known = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .filter(|(known, _)| *known == version)
            .cloned();
        if let Some(known) = known {
            return Ok(known);
        }
        let shards = self
            .node
            .published_manifest(index, &version)
            .await?
            .shard_count();
        let found = (version, shards);
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index.to_string(), found.clone());
        Ok(found)
    }

    /// What every reachable member serves: member → slot name → version with both tiers up (a
    /// replica whose cold tier is still loading would answer degraded).
    async fn serving(&self, members: &[String]) -> HashMap<String, HashMap<String, String>> {
        let asked = members.iter().map(|member| async move {
            let statuses = if *member == self.me {
                Ok(self.node.statuses())
            } else {
                self.client.statuses(member).await
            };
            let served = statuses
                .map(|statuses| {
                    statuses
                        .into_iter()
                        .filter(|status| {
                            status.hot == TierState::Ready && status.cold == TierState::Ready
                        })
                        .filter_map(|status| Some((status.name, status.version?)))
                        .collect()
                })
                .unwrap_or_default();
            (member.clone(), served)
        });
        futures::future::join_all(asked).await.into_iter().collect()
    }

    /// Ranks `shard` on `member`: this node itself, or another over the client.
    async fn rank_on(
        &self,
        member: &str,
        shard: &str,
        version: &str,
        request: &SearchRequest,
    ) -> Result<ShardPage, NodeError> {
        if member == self.me {
            self.node.rank_shard(shard, version, request.clone()).await
        } else {
            self.client.rank(member, shard, version, request).await
        }
    }

    /// Reads documents of hits of `shard` on `member`: this node itself, or another.
    async fn fetch_on(
        &self,
        member: &str,
        shard: &str,
        version: &str,
        hits: Vec<(TierName, u64)>,
        fields: &[String],
        deadline: Instant,
    ) -> Result<ShardDocuments, NodeError> {
        if member == self.me {
            self.node
                .fetch_shard(shard, version, hits, fields, Some(deadline))
                .await
        } else {
            self.client
                .fetch(member, shard, version, hits, fields, Some(deadline))
                .await
        }
    }

    fn count_replica_request(&self, operation: &str, outcome: &str) {
        self.metrics
            .replica_requests
            .with_label_values(&[operation, outcome])
            .inc();
    }

    /// Remembers that `member` failed; logged once per failure spell, not per search.
    fn mark_failed(&self, member: &str, err: &NodeError) {
        let before = self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(member.to_string(), Instant::now());
        if before.is_none_or(|at| at.elapsed() >= FAILED_FOR) {
            warn!(%member, "fleet member failed, asking other replicas: {err}");
        }
    }

    fn recently_failed(&self, member: &str) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(member)
            .is_some_and(|at| at.elapsed() < FAILED_FOR)
    }

    /// The owners of a shard in the order to ask them: this member first when it is one
    /// (no network), members that failed lately last.
    fn candidates(&self, owners: &[String]) -> Vec<String> {
        let mut ordered: Vec<String> = owners.to_vec();
        ordered.sort_by_key(|member| (*member != self.me, self.recently_failed(member)));
        ordered
    }

    /// Runs `attempt` on the shard's owners until one succeeds: the next one is asked when
    /// one fails, or beside it when it is slow (hedging); the first success wins. A request
    /// error (the same everywhere) ends it at once.
    async fn on_some_replica<T, F, Fut>(
        &self,
        operation: &str,
        owners: &[String],
        attempt: F,
    ) -> Result<(String, T), Unanswered>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, NodeError>>,
    {
        let mut waiting = self.candidates(owners).into_iter();
        let mut running = FuturesUnordered::new();
        let mut errors = Vec::new();
        let hedge_after = self.replica_timeout / HEDGE_FRACTION;
        let count = |outcome: &str| self.count_replica_request(operation, outcome);
        let launch = |member: String| {
            let call = attempt(member.clone());
            let limit = self.replica_timeout;
            async move {
                let outcome = match tokio::time::timeout(limit, call).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(NodeError::DeadlineExceeded(format!(
                        "no answer within {} ms",
                        limit.as_millis()
                    ))),
                };
                (member, outcome)
            }
        };
        // Members asked and not answered yet, in the order asked.
        let mut pending: Vec<String> = Vec::new();
        if let Some(first) = waiting.next() {
            pending.push(first.clone());
            running.push(launch(first));
        }
        while !running.is_empty() {
            let next = tokio::time::timeout(hedge_after, running.next()).await;
            if let Ok(Some((member, _))) = &next {
                pending.retain(|asked| asked != member);
            }
            match next {
                Err(_) => {
                    if let Some(member) = waiting.next() {
                        count("hedged");
                        pending.push(member.clone());
                        running.push(launch(member));
                    }
                }
                Ok(None) => break,
                Ok(Some((member, Ok(value)))) => {
                    count("ok");
                    // Those asked earlier that are still silent are tried last for a while:
                    // a hung member costs the hedging delay once, not on every search.
                    for slow in pending {
                        self.mark_failed(
                            &slow,
                            &NodeError::Unavailable(format!(
                                "no answer within {} ms while {member} answered",
                                hedge_after.as_millis()
                            )),
                        );
                    }
                    return Ok((member, value));
                }
                Ok(Some((member, Err(err)))) => {
                    if err.is_request_error() {
                        return Err(Unanswered::Request(err));
                    }
                    count("failed");
                    if err.kind() != NodeErrorKind::NotReady {
                        self.mark_failed(&member, &err);
                    }
                    errors.push(format!("{member}: {err}"));
                    if let Some(member) = waiting.next() {
                        pending.push(member.clone());
                        running.push(launch(member));
                    }
                }
            }
        }
        Err(Unanswered::Unavailable(errors))
    }

    /// Searches `index` across the fleet.
    pub async fn search(
        &self,
        index: &str,
        request: SearchRequest,
    ) -> Result<SearchResult, NodeError> {
        let started = Instant::now();
        if !self.indexes.iter().any(|served| served == index) {
            return Err(NodeError::UnknownIndex(index.to_string()));
        }
        let view = self
            .view(index)
            .ok_or_else(|| NodeError::NotReady(index.to_string()))?;
        let limit = if request.limit == 0 {
            DEFAULT_LIMIT
        } else {
            request.limit
        };
        let depth = u64::from(limit) + u64::from(request.offset);
        let max_results = self.node.config().max_results;
        if depth > u64::from(max_results) {
            return Err(NodeError::InvalidArgument(format!(
                "limit + offset is {depth}, above this node's maximum of {max_results}"
            )));
        }
        let deadline = request
            .deadline
            .unwrap_or(started + self.node.config().default_timeout);
        let shard_request = SearchRequest {
            limit: depth as u32,
            offset: 0,
            fields: Vec::new(),
            deadline: Some(deadline),
            ..request.clone()
        };
        // This member's own shards are ranked together on one thread; the others are asked of
        // their replicas, at the same time.
        let served_here = self.node.served_shards(index);
        let me_failed = self.recently_failed(&self.me);
        let local: Vec<u32> = (0..view.shards)
            .filter(|shard| {
                !me_failed
                    && served_here.contains(shard)
                    && view.routes[*shard as usize].contains(&self.me)
            })
            .collect();
        let rank_elsewhere = |shard: u32, skip_me: bool| {
            let name = format!("{index}/{shard}");
            let request = &shard_request;
            let version = view.version.as_str();
            let owners: Vec<String> = view.routes[shard as usize]
                .iter()
                .filter(|owner| !(skip_me && **owner == self.me))
                .cloned()
                .collect();
            async move {
                let outcome = self
                    .on_some_replica("rank", &owners, |member| {
                        let name = name.clone();
                        async move { self.rank_on(&member, &name, version, request).await }
                    })
                    .await;
                (shard, outcome)
            }
        };
        let local_names: Vec<String> = local
            .iter()
            .map(|shard| format!("{index}/{shard}"))
            .collect();
        let rank_here = async {
            if local.is_empty() {
                return Ok(Vec::new());
            }
            self.node
                .rank_shards(&local_names, &view.version, shard_request.clone())
                .await
        };
        let elsewhere = futures::future::join_all(
            (0..view.shards)
                .filter(|shard| !local.contains(shard))
                .map(|shard| rank_elsewhere(shard, false)),
        );
        let (here, mut ranked) = futures::future::join(rank_here, elsewhere)
            .instrument(debug_span!("rank_shards", shards = view.shards))
            .await;
        // What this member could not rank itself goes to the shards' other replicas.
        let here: Vec<Result<ShardPage, NodeError>> = match here {
            Ok(pages) => pages,
            Err(err) if err.is_request_error() => return Err(err),
            Err(err) => {
                let reason = err.to_string();
                local
                    .iter()
                    .map(|_| Err(NodeError::Unavailable(reason.clone())))
                    .collect()
            }
        };
        let mut retry = Vec::new();
        for (shard, outcome) in local.iter().zip(here) {
            match outcome {
                Ok(page) => {
                    self.count_replica_request("rank", "ok");
                    ranked.push((*shard, Ok((self.me.clone(), page))));
                }
                Err(err) if err.is_request_error() => return Err(err),
                Err(_) => {
                    self.count_replica_request("rank", "failed");
                    retry.push(*shard);
                }
            }
        }
        if !retry.is_empty() {
            ranked.extend(
                futures::future::join_all(
                    retry.into_iter().map(|shard| rank_elsewhere(shard, true)),
                )
                .await,
            );
        }

        let mut missing = Vec::new();
        let mut pages: BTreeMap<u32, (String, ShardPage)> = BTreeMap::new();
        for (shard, outcome) in ranked {
            match outcome {
                Ok(answer) => {
                    pages.insert(shard, answer);
                }
                Err(Unanswered::Request(err)) => return Err(err),
                Err(Unanswered::Unavailable(errors)) => {
                    debug!(%index, shard, "no replica answered: {}", errors.join("; "));
                    missing.push(shard);
                }
            }
        }
        let search_ms = started.elapsed().as_secs_f64() * 1000.0;

        // Every shard ranked its best `depth`: the corpus's best `depth` are among them. They
        // are merged by (rank, key); hits whose rank and key tie (string ids sharing their first
        // 8 bytes) are ordered by their whole ids, which come with their documents: the
        // documents read are the page's, widened to whole tie groups at its two ends.
        let mut merged: Vec<(u32, &ShardHit)> = pages
            .iter()
            .flat_map(|(shard, (_, page))| page.hits.iter().map(move |hit| (*shard, hit)))
            .collect();
        merged.sort_by(|a, b| by_rank_and_key(a.1, b.1));
        let page_start = (request.offset as usize).min(merged.len());
        let page_end = (page_start + limit as usize).min(merged.len());
        let tied = |a: usize, b: usize| by_rank_and_key(merged[a].1, merged[b].1).is_eq();
        let mut read_start = page_start;
        while read_start > 0 && read_start < page_end && tied(read_start - 1, read_start) {
            read_start -= 1;
        }
        let mut read_end = page_end;
        while read_end > page_start && read_end < merged.len() && tied(read_end - 1, read_end) {
            read_end += 1;
        }
        let to_read = &merged[read_start..read_end];

        // Documents, from the replica that ranked each shard's hits (another replica of the
        // same version if that one is gone).
        let fetch_started = Instant::now();
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (slot, (shard, _)) in to_read.iter().enumerate() {
            by_shard.entry(*shard).or_default().push(slot);
        }
        // The view now, for routes placement may have moved to since the search began.
        let fresh = self.view(index);
        let fetched = futures::future::join_all(by_shard.iter().map(|(shard, slots)| {
            let ranked_by = &pages[shard].0;
            let hits: Vec<(TierName, u64)> = slots
                .iter()
                .map(|slot| (to_read[*slot].1.tier, to_read[*slot].1.doc))
                .collect();
            let name = format!("{index}/{shard}");
            // The member that ranked first, then the routes of this search's view, then those
            // of the view now.
            let mut owners = vec![ranked_by.clone()];
            for route in view.routes[*shard as usize].iter().chain(
                fresh
                    .iter()
                    .filter(|fresh| fresh.shards == view.shards)
                    .flat_map(|fresh| fresh.routes[*shard as usize].iter()),
            ) {
                if !owners.contains(route) {
                    owners.push(route.clone());
                }
            }
            let version = view.version.as_str();
            let fields = &request.fields;
            async move {
                let outcome = self
                    .on_some_replica_in_order(&owners, |member| {
                        let (name, hits) = (name.clone(), hits.clone());
                        async move {
                            self.fetch_on(&member, &name, version, hits, fields, deadline)
                                .await
                        }
                    })
                    .await;
                (*shard, outcome)
            }
        }))
        .instrument(debug_span!("fetch_documents", shards = by_shard.len()))
        .await;
        let fetch_ms = fetch_started.elapsed().as_secs_f64() * 1000.0;

        // Per hit read: its whole id (known, or read with it) and its document.
        let mut read: Vec<(Option<IdKey>, Option<Option<Fields>>)> = to_read
            .iter()
            .map(|(_, hit)| (hit.id.clone(), None))
            .collect();
        let mut degraded: Option<String> = None;
        let mut stats = SearchStats::default();
        for (shard, outcome) in fetched {
            let slots = &by_shard[&shard];
            match outcome {
                Ok((_, answer)) => {
                    if let Some(reason) = answer.degraded {
                        degraded.get_or_insert(format!("shard {index}/{shard}: {reason}"));
                    }
                    add_stats(&mut stats, &answer.stats);
                    for ((slot, document), id) in slots.iter().zip(answer.documents).zip(answer.ids)
                    {
                        let entry = &mut read[*slot];
                        if entry.0.is_none() {
                            entry.0 = id;
                        }
                        entry.1 = Some(document);
                    }
                }
                Err(errors) => {
                    debug!(%index, shard, "no replica read the page's documents: {}", errors.join("; "));
                    if !missing.contains(&shard) {
                        missing.push(shard);
                    }
                }
            }
        }
        missing.sort_unstable();
        let mut order: Vec<usize> = (0..to_read.len()).collect();
        // Ties on rank and key go by whole id; hits whose id is unknown (their shard is gone,
        // so they are left out of the page anyway) come after those of their tie. A total
        // order: treating an unknown id as equal to every other would not be one, and `sort_by`
        // may then order anything, or panic.
        order.sort_by(|a, b| {
            by_rank_and_key(to_read[*a].1, to_read[*b].1).then_with(|| {
                let (a, b) = (&read[*a].0, &read[*b].0);
                (a.is_none(), a).cmp(&(b.is_none(), b))
            })
        });
        let mut hits = Vec::with_capacity(limit as usize);
        let mut omitted_ids = Vec::new();
        let mut omitted = 0;
        for slot in order
            .into_iter()
            .skip(page_start - read_start)
            .take(page_end - page_start)
        {
            let hit = to_read[slot].1;
            let (id, document) = std::mem::take(&mut read[slot]);
            match (id, document) {
                (Some(id), Some(Some(fields))) => hits.push(SearchHit {
                    id: FieldValue::from(id),
                    score: hit.score,
                    tier: hit.tier,
                    fields,
                }),
                // A cold document its shard could not read, or one whose replicas are gone
                // since they ranked it: left out, as a search leaves out what it cannot read.
                (id, _) => {
                    omitted += 1;
                    omitted_ids.extend(id.map(FieldValue::from));
                }
            }
        }
        for (_, page) in pages.values() {
            if let Some(reason) = &page.degraded {
                degraded.get_or_insert(reason.clone());
            }
        }
        let answered: Vec<&ShardPage> = pages.values().map(|(_, page)| page).collect();
        stats.search_ms = search_ms;
        stats.parse_ms = answered
            .iter()
            .map(|page| page.parse_ms)
            .fold(0.0, f64::max);
        stats.cold_fetch_ms = stats.cold_fetch_ms.max(fetch_ms);
        stats.total_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(SearchResult {
            hits,
            hot_total: answered.iter().map(|page| page.hot_total).sum(),
            cold_total: answered.iter().map(|page| page.cold_total).sum(),
            totals_exact: request.count_total && missing.is_empty(),
            degraded,
            omitted_cold_hits: omitted,
            omitted_ids,
            stats,
            version: view.version.clone(),
            cold_skipped: !answered.is_empty() && answered.iter().all(|page| page.cold_skipped),
            ranked_by: answered
                .first()
                .map(|page| page.ranked_by.clone())
                .unwrap_or_default(),
            missing_shards: missing
                .into_iter()
                .map(|shard| format!("{index}/{shard}"))
                .collect(),
        })
    }

    /// `on_some_replica` with the owners asked in the order given.
    async fn on_some_replica_in_order<T, F, Fut>(
        &self,
        owners: &[String],
        attempt: F,
    ) -> Result<(String, T), Vec<String>>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, NodeError>>,
    {
        let mut errors = Vec::new();
        let count = |outcome: &str| self.count_replica_request("fetch", outcome);
        for member in owners {
            let outcome = tokio::time::timeout(self.replica_timeout, attempt(member.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(NodeError::DeadlineExceeded(format!(
                        "no answer within {} ms",
                        self.replica_timeout.as_millis()
                    )))
                });
            match outcome {
                Ok(value) => {
                    count("ok");
                    return Ok((member.clone(), value));
                }
                Err(err) => {
                    count("failed");
                    if err.kind() != NodeErrorKind::NotReady {
                        self.mark_failed(member, &err);
                    }
                    errors.push(format!("{member}: {err}"));
                }
            }
        }
        Err(errors)
    }
}

/// Page order before whole string ids are known: rank (higher first), then the id's sort key.
fn by_rank_and_key(a: &ShardHit, b: &ShardHit) -> std::cmp::Ordering {
    b.rank.total_cmp(&a.rank).then(a.key.cmp(&b.key))
}

fn serves(
    serving: &HashMap<String, HashMap<String, String>>,
    member: &str,
    slot: &str,
    version: &str,
) -> bool {
    serving
        .get(member)
        .and_then(|served| served.get(slot))
        .is_some_and(|served| served == version)
}

/// Why no replica of a shard answered.
enum Unanswered {
    /// The request's own fault, the same on every replica: the search fails with it.
    Request(NodeError),
    /// Each replica asked failed or did not answer in time (`member: error` each).
    Unavailable(Vec<String>),
}

fn add_stats(total: &mut SearchStats, shard: &SearchStats) {
    total.cache_hits += shard.cache_hits;
    total.cache_misses += shard.cache_misses;
    total.storage_requests += shard.storage_requests;
    total.storage_bytes += shard.storage_bytes;
    total.hot_fetch_ms = total.hot_fetch_ms.max(shard.hot_fetch_ms);
    total.cold_fetch_ms = total.cold_fetch_ms.max(shard.cold_fetch_ms);
}
