//! The `tierdex query` side: one Search call, printed as a table or as one JSON object.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{Map, Value as Json, json};
use tonic::transport::Endpoint;

use super::pb;
use crate::tls::{ClientTls, Trust};

type Client = pb::tierdex_client::TierdexClient<tonic::transport::Channel>;

/// How a client reaches an `https://` address (`tierdex query` and `status` take these as
/// flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsOptions {
    /// CA certificates (PEM) the node's certificate is checked against, for an https://
    /// address (an address without a scheme is then https://) [default: the system's CAs].
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) to present, for a node that requires one (mutual TLS).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    fn any(&self) -> bool {
        self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// An error with every cause it wraps: tonic's own says only "transport error".
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            let _ = write!(text, ": {next_text}");
        }
        cause = next.source();
    }
    text
}

/// `addr` without a scheme is `http://`, or `https://` when TLS options are given.
async fn connect(addr: &str, tls: &TlsOptions) -> Result<Client, String> {
    let endpoint = if addr.contains("://") {
        addr.to_string()
    } else if tls.any() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let https = endpoint.starts_with("https://");
    if !https && tls.any() {
        return Err(format!(
            "--ca-cert, --client-cert and --client-key are for https:// addresses, not {endpoint}"
        ));
    }
    let identity = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => return Err("--client-cert and --client-key go together".into()),
    };
    let channel = Endpoint::from_shared(endpoint.clone())
        .map_err(|err| format!("{endpoint}: not an address: {err}"))?;
    let connected = if https {
        let trust = match &tls.ca_cert {
            Some(path) => Trust::CaFile(path),
            None => Trust::System,
        };
        let tls = ClientTls::load(trust, identity).map_err(|err| err.to_string())?;
        channel.connect_with_connector(tls.connector()).await
    } else {
        channel.connect().await
    };
    connected
        .map(Client::new)
        .map_err(|err| format!("cannot connect to {endpoint}: {}", with_causes(&err)))
}

fn status_message(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// One search. Without an index in the request, the node's only index (an error naming them
/// when it serves several).
pub async fn search(
    addr: &str,
    tls: &TlsOptions,
    mut request: pb::SearchRequest,
) -> Result<pb::SearchResponse, String> {
    let mut client = connect(addr, tls).await?;
    if request.index.is_empty() {
        let served = client
            .list_indexes(pb::ListIndexesRequest {})
            .await
            .map_err(status_message)?
            .into_inner()
            .indexes;
        let names: Vec<String> = served.into_iter().map(|index| index.name).collect();
        request.index = match names.as_slice() {
            [only] => only.clone(),
            [] => return Err("the node serves no index".into()),
            several => {
                return Err(format!(
                    "the node serves {} indexes ({}): choose one with --index",
                    several.len(),
                    several.join(", ")
                ));
            }
        };
    }
    client
        .search(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(status_message)
}

pub async fn status(addr: &str, tls: &TlsOptions) -> Result<pb::StatusResponse, String> {
    connect(addr, tls)
        .await?
        .status(pb::StatusRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(status_message)
}

fn tier_state(state: i32) -> &'static str {
    match pb::TierState::try_from(state) {
        Ok(pb::TierState::Loading) => "loading",
        Ok(pb::TierState::Ready) => "ready",
        Ok(pb::TierState::Failed) => "failed",
        _ => "unknown",
    }
}

/// What `Status` says, as one JSON object.
pub fn status_json(status: &pb::StatusResponse) -> Json {
    json!({
        "node_version": status.node_version,
        "indexes": status.indexes.iter().map(|index| json!({
            "name": index.name,
            "version": index.version,
            "hot": tier_state(index.hot),
            "cold": tier_state(index.cold),
            "hot_docs": index.hot_docs,
            "cold_docs": index.cold_docs,
            "hot_in_store": index.hot_in_store,
            "error": index.error,
        })).collect::<Vec<_>>(),
        "cache": status.cache.as_ref().map(|cache| json!({
            "capacity_bytes": cache.capacity_bytes,
            "used_bytes": cache.used_bytes,
            "hits": cache.hits,
            "misses": cache.misses,
            "hit_rate": cache.hit_rate,
        })),
        "storage": status.storage.as_ref().map(|storage| json!({
            "breaker": match pb::BreakerState::try_from(storage.breaker) {
                Ok(pb::BreakerState::Closed) => "closed",
                Ok(pb::BreakerState::Open) => "open",
                Ok(pb::BreakerState::HalfOpen) => "half_open",
                _ => "unknown",
            },
            "replicas": storage.replicas,
            "hedged_requests": storage.hedged_requests,
        })),
    })
}

/// What `Status` says, for people.
pub fn status_text(status: &pb::StatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "tierdex {}", status.node_version);
    for index in &status.indexes {
        let version = if index.version.is_empty() {
            "(none yet)"
        } else {
            index.version.as_str()
        };
        let _ = writeln!(
            out,
            "index {}: version {version}; hot {} ({} docs), cold {} ({} docs)",
            index.name,
            tier_state(index.hot),
            index.hot_docs,
            tier_state(index.cold),
            index.cold_docs
        );
        if index.hot_in_store {
            let _ = writeln!(
                out,
                "  hot tier searched in the store while it downloads (needs storage until then)"
            );
        }
        if !index.error.is_empty() {
            let _ = writeln!(out, "  error: {}", index.error);
        }
    }
    if let Some(cache) = &status.cache {
        let _ = writeln!(
            out,
            "block cache: {} of {} bytes used, {} hits, {} misses ({:.1}% hit rate)",
            cache.used_bytes,
            cache.capacity_bytes,
            cache.hits,
            cache.misses,
            100.0 * cache.hit_rate
        );
    }
    if let Some(storage) = &status.storage {
        let breaker = match pb::BreakerState::try_from(storage.breaker) {
            Ok(pb::BreakerState::Closed) => "closed (storage answering)",
            Ok(pb::BreakerState::Open) => "open (storage failing: cold documents left out)",
            Ok(pb::BreakerState::HalfOpen) => "half-open (a probe is deciding)",
            _ => "unknown",
        };
        let _ = write!(
            out,
            "storage: breaker {breaker}; {} replica(s), {} hedged reads",
            storage.replicas, storage.hedged_requests
        );
    }
    out
}

pub fn value_json(value: &pb::Value) -> Json {
    use pb::value::Kind;
    match &value.kind {
        Some(Kind::Text(text)) | Some(Kind::Date(text)) => json!(text),
        Some(Kind::I64(value)) => json!(value),
        Some(Kind::U64(value)) => json!(value),
        Some(Kind::F64(value)) => json!(value),
        Some(Kind::Boolean(value)) => json!(value),
        Some(Kind::Strings(list)) => json!(list.values),
        None => Json::Null,
    }
}

fn tier_name(tier: i32) -> &'static str {
    match pb::Tier::try_from(tier) {
        Ok(pb::Tier::Hot) => "hot",
        Ok(pb::Tier::Cold) => "cold",
        _ => "unknown",
    }
}

/// `{"hits":[{"id":…,"score":…,"tier":"hot"|"cold","doc":{…}}],"total_hits":…,"total_hits_exact":…,"degraded":…}`
pub fn response_json(response: &pb::SearchResponse) -> Json {
    let hits: Vec<Json> = response
        .hits
        .iter()
        .map(|hit| {
            let doc: Map<String, Json> = hit
                .fields
                .iter()
                .map(|field| {
                    (
                        field.name.clone(),
                        field.value.as_ref().map(value_json).unwrap_or(Json::Null),
                    )
                })
                .collect();
            json!({
                "id": hit.id.as_ref().map(value_json).unwrap_or(Json::Null),
                "score": hit.score,
                "tier": tier_name(hit.tier),
                "doc": doc,
            })
        })
        .collect();
    json!({
        "hits": hits,
        "total_hits": response.total_hits,
        "total_hits_exact": response.total_hits_exact,
        "degraded": response.degraded,
        "ranked_by": response.ranked_by,
        "cold_skipped": response.cold_skipped,
        "partial": response.partial,
        "missing_shards": response.missing_shards,
    })
}

fn shorten(text: &str, width: usize) -> String {
    let text = text.replace(['\n', '\t'], " ");
    if text.chars().count() <= width {
        text
    } else {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A readable table: rank, score, tier, id and the first stored fields.
pub fn response_table(response: &pb::SearchResponse, offset: u32) -> String {
    let text_of = |value: &Json| match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    };
    let ids: Vec<Json> = response
        .hits
        .iter()
        .map(|hit| hit.id.as_ref().map(value_json).unwrap_or(Json::Null))
        .collect();
    // Wide enough for the page's ids (a u64 has 20 digits), within reason.
    let id_width = ids
        .iter()
        .map(|id| text_of(id).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(2, 40);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:>9}  {:<4}  {:<id_width$}  document",
        "#", "score", "tier", "id"
    );
    for (rank, (hit, id_value)) in response.hits.iter().zip(&ids).enumerate() {
        let id = text_of(id_value);
        // The id is its own column: the field holding it is not printed again.
        let fields: Vec<String> = hit
            .fields
            .iter()
            .filter(|field| {
                field
                    .value
                    .as_ref()
                    .is_some_and(|value| value_json(value) != *id_value)
            })
            .map(|field| {
                let value = field.value.as_ref().map(value_json).unwrap_or(Json::Null);
                format!("{}: {}", field.name, shorten(&text_of(&value), 60))
            })
            .collect();
        let _ = writeln!(
            out,
            "{:>4}  {:>9.4}  {:<4}  {:<id_width$}  {}",
            offset as usize + rank + 1,
            hit.score,
            tier_name(hit.tier),
            shorten(&id, id_width),
            shorten(&fields.join(" | "), 100)
        );
    }
    let _ = write!(
        out,
        "{}{} hits ({} hot, {} cold)",
        if response.total_hits_exact {
            ""
        } else {
            "at least "
        },
        response.total_hits,
        response.hot_total_hits,
        response.cold_total_hits
    );
    if let Some(stats) = &response.stats {
        let _ = write!(
            out,
            " in {:.1} ms; storage: {} requests, {} bytes; cache: {} hits, {} misses",
            stats.total_ms,
            stats.storage_requests,
            stats.storage_bytes,
            stats.cache_hits,
            stats.cache_misses
        );
    }
    if response.degraded {
        let _ = write!(out, "\nDEGRADED: {}", response.degraded_reason);
    }
    if response.partial {
        let _ = write!(
            out,
            "\nPARTIAL: no replica answered for {}",
            response.missing_shards.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(kind: pb::value::Kind) -> Option<pb::Value> {
        Some(pb::Value { kind: Some(kind) })
    }

    #[test]
    fn the_table_prints_a_numeric_id_once_and_whole() {
        let id = u64::MAX;
        let response = pb::SearchResponse {
            hits: vec![pb::Hit {
                id: value(pb::value::Kind::U64(id)),
                score: 1.5,
                tier: pb::Tier::Cold as i32,
                fields: vec![
                    pb::Field {
                        name: "id".into(),
                        value: value(pb::value::Kind::U64(id)),
                    },
                    pb::Field {
                        name: "title".into(),
                        value: value(pb::value::Kind::Text("Go To Statement".into())),
                    },
                ],
            }],
            ..Default::default()
        };
        let table = response_table(&response, 0);
        let line = table.lines().nth(1).unwrap();
        assert_eq!(line.matches(&id.to_string()).count(), 1, "{table}");
        assert!(
            line.contains("title: Go To Statement") && !line.contains("id: "),
            "{table}"
        );
    }
}
