//! The `tierdex query` side: one Search call, printed as a table or as one JSON object.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json, json};

use super::pb;

pub async fn search(addr: &str, request: pb::SearchRequest) -> Result<pb::SearchResponse, String> {
    let endpoint = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let mut client = pb::tierdex_client::TierdexClient::connect(endpoint.clone())
        .await
        .map_err(|err| format!("cannot connect to {endpoint}: {err}"))?;
    client
        .search(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
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
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:>9}  {:<4}  {:<14}  document",
        "#", "score", "tier", "id"
    );
    for (rank, hit) in response.hits.iter().enumerate() {
        let id = hit.id.as_ref().map(value_json).unwrap_or(Json::Null);
        let id = match id {
            Json::String(text) => text,
            other => other.to_string(),
        };
        let fields: Vec<String> = hit
            .fields
            .iter()
            .filter(|field| {
                field
                    .value
                    .as_ref()
                    .is_some_and(|value| value_json(value) != json!(id))
            })
            .map(|field| {
                let value = field.value.as_ref().map(value_json).unwrap_or(Json::Null);
                let value = match value {
                    Json::String(text) => text,
                    other => other.to_string(),
                };
                format!("{}: {}", field.name, shorten(&value, 60))
            })
            .collect();
        let _ = writeln!(
            out,
            "{:>4}  {:>9.4}  {:<4}  {:<14}  {}",
            offset as usize + rank + 1,
            hit.score,
            tier_name(hit.tier),
            shorten(&id, 14),
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
    out
}
