//! The fleet over gRPC: the `Shards` service a member answers for the shards it serves, and
//! `GrpcShards`, the `fleet::ShardClient` a member asks the others through (one channel per
//! member, connected lazily, with Nagle off as the server has it; over TLS when the fleet
//! uses it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::{
    deadline_of, fields_to_pb, pb, search_request, stats_from_pb, stats_to_pb, status_of,
    value_to_pb,
};
use crate::fleet::ShardClient;
use crate::node::collector::IdKey;
use crate::node::documents::{FieldValue, Fields};
use crate::node::search::{SearchRequest, TierName};
use crate::node::shard_search::{ShardDocuments, ShardHit, ShardPage};
use crate::node::{IndexStatus, Node, NodeError, NodeErrorKind, TierState};
use crate::tls::ClientTls;

pub struct ShardsService {
    node: Arc<Node>,
}

impl ShardsService {
    pub fn new(node: Arc<Node>) -> ShardsService {
        ShardsService { node }
    }
}

fn tier_to_pb(tier: TierName) -> i32 {
    match tier {
        TierName::Hot => pb::Tier::Hot as i32,
        TierName::Cold => pb::Tier::Cold as i32,
    }
}

fn tier_from_pb(tier: i32) -> Result<TierName, String> {
    match pb::Tier::try_from(tier) {
        Ok(pb::Tier::Hot) => Ok(TierName::Hot),
        Ok(pb::Tier::Cold) => Ok(TierName::Cold),
        _ => Err(format!("tier: unknown value {tier}")),
    }
}

fn id_to_pb(id: IdKey) -> pb::Value {
    value_to_pb(FieldValue::from(id))
}

fn id_from_pb(value: pb::Value) -> Result<IdKey, String> {
    use pb::value::Kind;
    match value.kind {
        Some(Kind::U64(id)) => Ok(IdKey::U64(id)),
        Some(Kind::I64(id)) => Ok(IdKey::I64(id)),
        Some(Kind::Text(id)) => Ok(IdKey::Str(id)),
        other => Err(format!("a hit's id is not an id: {other:?}")),
    }
}

/// A field value back from the wire: the inverse of `value_to_pb`.
fn value_from_pb(value: pb::Value) -> Result<FieldValue, String> {
    use pb::value::Kind;
    Ok(match value.kind {
        Some(Kind::Text(text)) => FieldValue::Text(text),
        Some(Kind::I64(value)) => FieldValue::I64(value),
        Some(Kind::U64(value)) => FieldValue::U64(value),
        Some(Kind::F64(value)) => FieldValue::F64(value),
        Some(Kind::Boolean(value)) => FieldValue::Bool(value),
        Some(Kind::Date(text)) => {
            let at =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|err| format!("date `{text}`: {err}"))?;
            FieldValue::Date((at.unix_timestamp_nanos() / 1000) as i64)
        }
        Some(Kind::Strings(list)) => FieldValue::Strings(list.values),
        None => return Err("a field without a value".into()),
    })
}

/// A shard or version this member does not serve (now) is FAILED_PRECONDITION, so that the
/// asking member tells it from a member it cannot reach (UNAVAILABLE).
fn shard_status(err: NodeError) -> Status {
    match err.kind() {
        NodeErrorKind::NotReady | NodeErrorKind::UnknownIndex => {
            Status::failed_precondition(err.to_string())
        }
        _ => status_of(err),
    }
}

#[tonic::async_trait]
impl pb::shards_server::Shards for ShardsService {
    async fn rank_shard(
        &self,
        request: Request<pb::RankShardRequest>,
    ) -> Result<Response<pb::RankShardResponse>, Status> {
        let deadline = deadline_of(request.metadata());
        let request = request.into_inner();
        let search = request
            .search
            .ok_or_else(|| Status::invalid_argument("search: missing"))?;
        let (_, mut search) = search_request(search)?;
        search.deadline = deadline;
        let span = info_span!("rank_shard", shard = %request.shard, query = %search.query);
        let page = self
            .node
            .rank_shard(&request.shard, &request.version, search)
            .instrument(span)
            .await
            .map_err(shard_status)?;
        Ok(Response::new(pb::RankShardResponse {
            hits: page
                .hits
                .into_iter()
                .map(|hit| pb::ShardHit {
                    id: hit.id.map(id_to_pb),
                    rank: hit.rank,
                    score: hit.score,
                    tier: tier_to_pb(hit.tier),
                    doc: hit.doc,
                    key: hit.key,
                })
                .collect(),
            hot_total_hits: page.hot_total,
            cold_total_hits: page.cold_total,
            total_hits_exact: page.totals_exact,
            cold_skipped: page.cold_skipped,
            degraded_reason: page.degraded.unwrap_or_default(),
            ranked_by: page.ranked_by,
            version: page.version,
            parse_ms: page.parse_ms,
            search_ms: page.search_ms,
        }))
    }

    async fn fetch_shard(
        &self,
        request: Request<pb::FetchShardRequest>,
    ) -> Result<Response<pb::FetchShardResponse>, Status> {
        let deadline = deadline_of(request.metadata());
        let request = request.into_inner();
        let hits = request
            .hits
            .iter()
            .map(|hit| Ok((tier_from_pb(hit.tier)?, hit.doc)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(Status::invalid_argument)?;
        let span = info_span!("fetch_shard", shard = %request.shard, documents = hits.len());
        let fetched = self
            .node
            .fetch_shard(
                &request.shard,
                &request.version,
                hits,
                &request.fields,
                deadline,
            )
            .instrument(span)
            .await
            .map_err(shard_status)?;
        Ok(Response::new(pb::FetchShardResponse {
            documents: fetched
                .documents
                .into_iter()
                .zip(fetched.ids)
                .map(|(document, id)| pb::ShardDocument {
                    id: id.map(id_to_pb),
                    present: document.is_some(),
                    fields: fields_to_pb(document.unwrap_or_default()),
                })
                .collect(),
            degraded_reason: fetched.degraded.unwrap_or_default(),
            stats: Some(stats_to_pb(&fetched.stats)),
        }))
    }
}

/// Asks other members over gRPC, plaintext or TLS.
#[derive(Default)]
pub struct GrpcShards {
    channels: Mutex<HashMap<String, Channel>>,
    /// `Some`: members are asked over TLS, their certificates checked for the host of their id.
    tls: Option<ClientTls>,
}

/// Connecting to a member that is gone fails within this (a refused connection at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl GrpcShards {
    pub fn new() -> Arc<GrpcShards> {
        Arc::new(GrpcShards::default())
    }

    /// Members asked over TLS: `https://{member}`, through `tls`'s CAs and client identity.
    pub fn with_tls(tls: ClientTls) -> Arc<GrpcShards> {
        Arc::new(GrpcShards {
            channels: Mutex::default(),
            tls: Some(tls),
        })
    }

    fn channel(&self, member: &str) -> Result<Channel, NodeError> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(member) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{member}"))
            .map_err(|err| NodeError::InvalidArgument(format!("member `{member}`: {err}")))?
            // Covers the TLS handshake too: the connector is wrapped in it.
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(tls.connector()),
            None => endpoint.connect_lazy(),
        };
        channels.insert(member.to_string(), channel.clone());
        Ok(channel)
    }
}

/// A member's refusal as the node error it was (request errors stay request errors, so the
/// fan-out does not ask other replicas the same bad question).
fn error_from_status(member: &str, status: Status) -> NodeError {
    let message = format!("member {member}: {}", status.message());
    match status.code() {
        tonic::Code::InvalidArgument => NodeError::InvalidArgument(status.message().to_string()),
        // Alive, but not serving that shard or version (now).
        tonic::Code::FailedPrecondition | tonic::Code::NotFound => NodeError::Unavailable(message),
        tonic::Code::DeadlineExceeded => NodeError::DeadlineExceeded(message),
        // Unreachable (a refused or reset connection) or failing.
        _ => NodeError::Internal(message),
    }
}

fn with_deadline<T>(message: T, deadline: Option<Instant>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(deadline) = deadline {
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    }
    request
}

fn malformed(member: &str, message: String) -> NodeError {
    NodeError::Internal(format!("member {member} answered badly: {message}"))
}

#[tonic::async_trait]
impl ShardClient for GrpcShards {
    async fn rank(
        &self,
        member: &str,
        shard: &str,
        version: &str,
        request: &SearchRequest,
    ) -> Result<ShardPage, NodeError> {
        let mut client = pb::shards_client::ShardsClient::new(self.channel(member)?);
        let message = pb::RankShardRequest {
            shard: shard.to_string(),
            version: version.to_string(),
            search: Some(pb::SearchRequest {
                index: String::new(),
                query: request.query.clone(),
                limit: request.limit,
                offset: request.offset,
                fields: Vec::new(),
                tiers: if request.hot_only {
                    pb::Tiers::HotOnly
                } else {
                    pb::Tiers::All
                } as i32,
                count_total_hits: request.count_total,
                profile: request.profile.clone(),
                order_by: request.order_by.clone(),
            }),
        };
        let answer = client
            .rank_shard(with_deadline(message, request.deadline))
            .await
            .map_err(|status| error_from_status(member, status))?
            .into_inner();
        let hits = answer
            .hits
            .into_iter()
            .map(|hit| {
                Ok(ShardHit {
                    rank: hit.rank,
                    score: hit.score,
                    key: hit.key,
                    id: hit.id.map(id_from_pb).transpose()?,
                    tier: tier_from_pb(hit.tier)?,
                    doc: hit.doc,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| malformed(member, message))?;
        Ok(ShardPage {
            hits,
            hot_total: answer.hot_total_hits,
            cold_total: answer.cold_total_hits,
            totals_exact: answer.total_hits_exact,
            cold_skipped: answer.cold_skipped,
            degraded: Some(answer.degraded_reason).filter(|reason| !reason.is_empty()),
            ranked_by: answer.ranked_by,
            version: answer.version,
            parse_ms: answer.parse_ms,
            search_ms: answer.search_ms,
        })
    }

    async fn fetch(
        &self,
        member: &str,
        shard: &str,
        version: &str,
        hits: Vec<(TierName, u64)>,
        fields: &[String],
        deadline: Option<Instant>,
    ) -> Result<ShardDocuments, NodeError> {
        let mut client = pb::shards_client::ShardsClient::new(self.channel(member)?);
        let message = pb::FetchShardRequest {
            shard: shard.to_string(),
            version: version.to_string(),
            hits: hits
                .iter()
                .map(|(tier, doc)| pb::ShardDocRef {
                    tier: tier_to_pb(*tier),
                    doc: *doc,
                })
                .collect(),
            fields: fields.to_vec(),
        };
        let answer = client
            .fetch_shard(with_deadline(message, deadline))
            .await
            .map_err(|status| error_from_status(member, status))?
            .into_inner();
        let (ids, documents): (Vec<Option<IdKey>>, Vec<Option<Fields>>) = answer
            .documents
            .into_iter()
            .map(|document| {
                let id = document.id.map(id_from_pb).transpose()?;
                if !document.present {
                    return Ok((id, None));
                }
                let fields = document
                    .fields
                    .into_iter()
                    .map(|field| {
                        let value = field.value.ok_or("a field without a value")?;
                        Ok((field.name, value_from_pb(value)?))
                    })
                    .collect::<Result<Fields, String>>()?;
                Ok((id, Some(fields)))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| malformed(member, message))?
            .into_iter()
            .unzip();
        Ok(ShardDocuments {
            documents,
            ids,
            degraded: Some(answer.degraded_reason).filter(|reason| !reason.is_empty()),
            stats: stats_from_pb(answer.stats),
        })
    }

    async fn statuses(&self, member: &str) -> Result<Vec<IndexStatus>, NodeError> {
        let mut client = pb::tierdex_client::TierdexClient::new(self.channel(member)?);
        let request = with_deadline(
            pb::ListIndexesRequest {},
            Some(Instant::now() + CONNECT_TIMEOUT),
        );
        let answer = client
            .list_indexes(request)
            .await
            .map_err(|status| error_from_status(member, status))?
            .into_inner();
        Ok(answer
            .indexes
            .into_iter()
            .map(|status| {
                let state = |state: i32| match pb::TierState::try_from(state) {
                    Ok(pb::TierState::Ready) => TierState::Ready,
                    Ok(pb::TierState::Failed) => TierState::Failed,
                    _ => TierState::Loading,
                };
                IndexStatus {
                    name: status.name,
                    version: Some(status.version).filter(|version| !version.is_empty()),
                    hot: state(status.hot),
                    cold: state(status.cold),
                    hot_docs: status.hot_docs,
                    cold_docs: status.cold_docs,
                    error: Some(status.error).filter(|error| !error.is_empty()),
                    cold_memory_bytes: (0, 0),
                    hot_in_store: status.hot_in_store,
                }
            })
            .collect())
    }
}
