//! The gRPC API (`proto/tierdex/v1/tierdex.proto`): requests to node calls, node results to
//! messages, `NodeError` kinds to status codes. The only module that knows gRPC.

pub mod client;
pub mod shards;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span, warn};

use crate::fleet::Fleet;
use crate::node::documents::{FieldValue, Fields};
use crate::node::search::{SearchRequest, SearchResult, SearchStats, TierName};
use crate::node::{IndexStatus, Node, NodeError, NodeErrorKind, StorageStatus, TierState};
use crate::store::BreakerState;

pub mod pb {
    tonic::include_proto!("tierdex.v1");

    /// For server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("tierdex_descriptor");
}

/// Queries longer than this are refused before parsing.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

pub struct TierdexService {
    node: Arc<Node>,
    /// In a fleet, searches fan out over the fleet's shards.
    fleet: Option<Arc<Fleet>>,
}

impl TierdexService {
    pub fn new(node: Arc<Node>, fleet: Option<Arc<Fleet>>) -> TierdexService {
        TierdexService { node, fleet }
    }
}

/// The status a caller sees for a node error. Server-side failures are logged here, once.
fn status_of(err: NodeError) -> Status {
    let message = err.to_string();
    match err.kind() {
        NodeErrorKind::InvalidQuery | NodeErrorKind::InvalidArgument => {
            Status::invalid_argument(message)
        }
        NodeErrorKind::UnknownIndex => Status::not_found(message),
        NodeErrorKind::NotReady => Status::unavailable(message),
        NodeErrorKind::DeadlineExceeded => Status::deadline_exceeded(message),
        NodeErrorKind::Storage => {
            warn!("search failed: {message}");
            Status::unavailable(message)
        }
        NodeErrorKind::Corrupt => {
            warn!("search failed: {message}");
            Status::data_loss(message)
        }
        NodeErrorKind::Internal => {
            warn!("search failed: {message}");
            Status::internal(message)
        }
    }
}

/// A stored value as the API sends it.
pub fn value_to_pb(value: FieldValue) -> pb::Value {
    use pb::value::Kind;
    let kind = match value {
        FieldValue::Text(text) => Kind::Text(text),
        FieldValue::I64(value) => Kind::I64(value),
        FieldValue::U64(value) => Kind::U64(value),
        FieldValue::F64(value) => Kind::F64(value),
        FieldValue::Bool(value) => Kind::Boolean(value),
        FieldValue::Date(micros) => Kind::Date(format_micros(micros)),
        FieldValue::Strings(values) => Kind::Strings(pb::StringList { values }),
    };
    pb::Value { kind: Some(kind) }
}

/// RFC 3339 with microseconds, UTC.
fn format_micros(micros: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000) {
        Ok(at) => crate::format::version::rfc3339_micros(at),
        Err(_) => micros.to_string(),
    }
}

fn stats_to_pb(stats: &SearchStats) -> pb::QueryStats {
    pb::QueryStats {
        cache_hits: stats.cache_hits,
        cache_misses: stats.cache_misses,
        storage_requests: stats.storage_requests,
        storage_bytes: stats.storage_bytes,
        parse_ms: stats.parse_ms,
        search_ms: stats.search_ms,
        hot_fetch_ms: stats.hot_fetch_ms,
        cold_fetch_ms: stats.cold_fetch_ms,
        total_ms: stats.total_ms,
    }
}

/// `stats_to_pb` backwards, for a shard's answer.
fn stats_from_pb(stats: Option<pb::QueryStats>) -> SearchStats {
    let stats = stats.unwrap_or_default();
    SearchStats {
        cache_hits: stats.cache_hits,
        cache_misses: stats.cache_misses,
        storage_requests: stats.storage_requests,
        storage_bytes: stats.storage_bytes,
        parse_ms: stats.parse_ms,
        search_ms: stats.search_ms,
        hot_fetch_ms: stats.hot_fetch_ms,
        cold_fetch_ms: stats.cold_fetch_ms,
        total_ms: stats.total_ms,
        // Not sent: a member counts only the searches it answers itself.
        handed_off: false,
        rescored_hits: 0,
        cold_index_rounds: 0,
        cold_plan_misses: 0,
        cold_from_memory: false,
        disk_cache_hits: 0,
    }
}

/// A document's stored fields as the API sends them.
pub fn fields_to_pb(fields: Fields) -> Vec<pb::Field> {
    fields
        .into_iter()
        .map(|(name, value)| pb::Field {
            name,
            value: Some(value_to_pb(value)),
        })
        .collect()
}

fn result_to_pb(result: SearchResult) -> pb::SearchResponse {
    pb::SearchResponse {
        hits: result
            .hits
            .into_iter()
            .map(|hit| pb::Hit {
                id: Some(value_to_pb(hit.id)),
                score: hit.score,
                tier: match hit.tier {
                    TierName::Hot => pb::Tier::Hot,
                    TierName::Cold => pb::Tier::Cold,
                } as i32,
                fields: fields_to_pb(hit.fields),
            })
            .collect(),
        total_hits: result.hot_total + result.cold_total,
        hot_total_hits: result.hot_total,
        cold_total_hits: result.cold_total,
        degraded: result.degraded.is_some(),
        degraded_reason: result.degraded.unwrap_or_default(),
        omitted_cold_hits: result.omitted_cold_hits,
        omitted_ids: result.omitted_ids.into_iter().map(value_to_pb).collect(),
        stats: Some(stats_to_pb(&result.stats)),
        version: result.version,
        total_hits_exact: result.totals_exact,
        cold_skipped: result.cold_skipped,
        ranked_by: result.ranked_by,
        partial: !result.missing_shards.is_empty(),
        missing_shards: result.missing_shards,
    }
}

fn tier_state(state: TierState) -> i32 {
    let state = match state {
        TierState::Loading => pb::TierState::Loading,
        TierState::Ready => pb::TierState::Ready,
        TierState::Failed => pb::TierState::Failed,
    };
    state as i32
}

fn index_status_to_pb(status: IndexStatus) -> pb::IndexStatus {
    pb::IndexStatus {
        name: status.name,
        version: status.version.unwrap_or_default(),
        hot: tier_state(status.hot),
        cold: tier_state(status.cold),
        hot_docs: status.hot_docs,
        cold_docs: status.cold_docs,
        error: status.error.unwrap_or_default(),
        hot_in_store: status.hot_in_store,
    }
}

/// When the caller stops waiting: its `grpc-timeout` header, read as the request arrives.
fn deadline_of(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let timeout = parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)?;
    Instant::now().checked_add(timeout)
}

/// `<digits><H|M|S|m|u|n>`, as the gRPC protocol writes `grpc-timeout`.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn search_request(request: pb::SearchRequest) -> Result<(String, SearchRequest), Status> {
    if request.query.len() > MAX_QUERY_BYTES {
        return Err(Status::invalid_argument(format!(
            "query is {} bytes, more than the {MAX_QUERY_BYTES} allowed",
            request.query.len()
        )));
    }
    let hot_only = match pb::Tiers::try_from(request.tiers) {
        Ok(pb::Tiers::Unspecified | pb::Tiers::All) => false,
        Ok(pb::Tiers::HotOnly) => true,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "tiers: unknown value {} (use TIERS_ALL or TIERS_HOT_ONLY)",
                request.tiers
            )));
        }
    };
    Ok((
        request.index,
        SearchRequest {
            query: request.query,
            limit: request.limit,
            offset: request.offset,
            fields: request.fields,
            hot_only,
            count_total: request.count_total_hits,
            profile: request.profile,
            order_by: request.order_by,
            deadline: None,
        },
    ))
}

#[tonic::async_trait]
impl pb::tierdex_server::Tierdex for TierdexService {
    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let deadline = deadline_of(request.metadata());
        let (index, mut request) = search_request(request.into_inner())?;
        request.deadline = deadline;
        let span = info_span!("search", %index, query = %request.query, limit = request.limit, offset = request.offset);
        let result = match &self.fleet {
            Some(fleet) => {
                let outcome = fleet.search(&index, request).instrument(span).await;
                self.node.record_search(&index, &outcome);
                outcome
            }
            None => self.node.search(&index, request).instrument(span).await,
        }
        .map_err(status_of)?;
        Ok(Response::new(result_to_pb(result)))
    }

    async fn list_indexes(
        &self,
        _request: Request<pb::ListIndexesRequest>,
    ) -> Result<Response<pb::ListIndexesResponse>, Status> {
        Ok(Response::new(pb::ListIndexesResponse {
            indexes: self
                .node
                .statuses()
                .into_iter()
                .map(index_status_to_pb)
                .collect(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let cache = self.node.cache_status().await;
        Ok(Response::new(pb::StatusResponse {
            indexes: self
                .node
                .statuses()
                .into_iter()
                .map(index_status_to_pb)
                .collect(),
            cache: Some(pb::CacheStatus {
                capacity_bytes: cache.capacity_bytes,
                used_bytes: cache.used_bytes,
                hits: cache.hits,
                misses: cache.misses,
                hit_rate: cache.hit_rate(),
            }),
            node_version: env!("CARGO_PKG_VERSION").to_string(),
            storage: Some(storage_status_to_pb(self.node.storage_status())),
        }))
    }
}

fn storage_status_to_pb(status: StorageStatus) -> pb::StorageStatus {
    let breaker = match status.breaker {
        BreakerState::Closed => pb::BreakerState::Closed,
        BreakerState::Open => pb::BreakerState::Open,
        BreakerState::HalfOpen => pb::BreakerState::HalfOpen,
    };
    pb::StorageStatus {
        breaker: breaker as i32,
        replicas: status.replicas as u32,
        hedged_requests: status.hedged_requests,
    }
}

/// The admin service: every call must carry `authorization: Bearer <admin_token>`.
pub struct AdminService {
    node: Arc<Node>,
}

impl AdminService {
    pub fn new(node: Arc<Node>) -> AdminService {
        AdminService { node }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.node.config().admin_token else {
            return Err(Status::permission_denied(
                "admin RPCs are disabled: the node has no admin_token",
            ));
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        // Compared in full whatever the input, so timing does not reveal a prefix.
        let matches = given.is_some_and(|given| {
            given.len() == expected.len()
                && given
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if matches {
            Ok(())
        } else {
            Err(Status::unauthenticated("missing or wrong admin token"))
        }
    }
}

/// How long a reload may take before the call gives up (the load goes on).
const RELOAD_WAIT: Duration = Duration::from_secs(600);

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        self.authorize(&request)?;
        let index = request.into_inner().index;
        let version = self
            .node
            .reload(&index, RELOAD_WAIT)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::ReloadResponse { version }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_with_microseconds() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_micros(86_400_000_001), "1970-01-02T00:00:00.000001Z");
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("400m"), Some(Duration::from_millis(400)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("99999u"),
            Some(Duration::from_micros(99999))
        );
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[test]
    fn unknown_tiers_and_huge_queries_are_invalid() {
        let request = pb::SearchRequest {
            tiers: 7,
            ..Default::default()
        };
        assert_eq!(
            search_request(request).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let request = pb::SearchRequest {
            query: "a".repeat(MAX_QUERY_BYTES + 1),
            ..Default::default()
        };
        assert_eq!(
            search_request(request).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
