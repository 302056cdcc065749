//! The gRPC server: the Tierdex and Admin services, standard health (`grpc.health.v1`: one
//! service name per index, "" for the whole node, and `tierdex.storage`) and server reflection
//! (v1 and v1alpha). Binds nothing itself: callers pass a bound listener, so tests can use
//! port 0, and, for TLS, the loaded certificates (`tls::ServerTls`).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tracing::info;

use crate::api::shards::ShardsService;
use crate::api::{AdminService, TierdexService, pb};
use crate::fleet::Fleet;
use crate::node::{Node, TierState};
use crate::store::BreakerState;
use crate::tls::ServerTls;

/// Health service name that reports storage: NOT_SERVING while the circuit breaker is open
/// (the indexes still serve, from their hot tiers).
pub const STORAGE_HEALTH: &str = "tierdex.storage";

/// Largest request accepted by the transport; bigger queries than `MAX_QUERY_BYTES` are still
/// refused, but with INVALID_ARGUMENT and a message instead of a transport error.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

pub async fn run(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    run_member(listener, node, None, None, shutdown).await
}

/// `run` for a member of a fleet (searches fan out over `fleet`, and the `Shards` service
/// answers the other members), and over TLS when `tls` is given.
pub async fn run_member(
    listener: TcpListener,
    node: Arc<Node>,
    fleet: Option<Arc<Fleet>>,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for status in node.statuses() {
        reporter
            .set_service_status(&status.name, ServingStatus::NotServing)
            .await;
    }
    let watched = node.clone();
    let storage_reporter = reporter.clone();
    let storage_task = tokio::spawn(async move {
        let mut changes = watched.storage_changes();
        loop {
            let status = if *changes.borrow_and_update() == BreakerState::Closed {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            storage_reporter
                .set_service_status(STORAGE_HEALTH, status)
                .await;
            if changes.changed().await.is_err() {
                break;
            }
        }
    });
    let watched = node.clone();
    let fleet_watched = fleet.clone();
    let health_task = tokio::spawn(async move {
        let mut changes = watched.subscribe();
        let mut fleet_changes = fleet_watched.as_ref().map(|fleet| fleet.subscribe());
        let mut reported: Vec<String> = Vec::new();
        loop {
            let statuses = watched.statuses();
            // A shard placed elsewhere now is no longer served here.
            for gone in reported
                .iter()
                .filter(|name| !statuses.iter().any(|status| &status.name == *name))
            {
                reporter
                    .set_service_status(gone, ServingStatus::NotServing)
                    .await;
            }
            reported = statuses.iter().map(|status| status.name.clone()).collect();
            // A fleet member serves once it has placed every index's shards (its own are up):
            // before that it knows no version to search.
            let placed = fleet_watched
                .as_ref()
                .is_none_or(|fleet| fleet.has_placed_every_index());
            let all_serving =
                placed && statuses.iter().all(|status| status.hot == TierState::Ready);
            for status in &statuses {
                let serving = if status.hot == TierState::Ready {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status(&status.name, serving).await;
            }
            let overall = if all_serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", overall).await;
            let changed = match fleet_changes.as_mut() {
                Some(fleet_changes) => tokio::select! {
                    changed = changes.changed() => changed,
                    changed = fleet_changes.changed() => changed,
                },
                None => changes.changed().await,
            };
            if changed.is_err() {
                break;
            }
        }
    });
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("valid descriptors");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("valid descriptors");
    let admin = pb::admin_server::AdminServer::new(AdminService::new(node.clone()));
    let shards = pb::shards_server::ShardsServer::new(ShardsService::new(node.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let service = pb::tierdex_server::TierdexServer::new(TierdexService::new(node, fleet))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    info!(
        address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        tls = tls.is_some(),
        "serving gRPC"
    );
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .add_service(shards)
        .add_service(admin);
    let result = match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(tls.incoming(listener), shutdown)
                .await
        }
        None => {
            router
                // Small gRPC messages would otherwise wait on Nagle's algorithm (~40 ms per
                // answer); the TLS acceptor turns it off too.
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
        }
    };
    health_task.abort();
    storage_task.abort();
    result
}

/// Serves `GET /metrics` (the Prometheus text format) on `listener` until `shutdown`; any other
/// path is 404. HTTP/1.1 with hyper: a scrape is one small request, no framework needed.
pub async fn run_metrics(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics");
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %err, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let node = node.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let node = node.clone();
                async move {
                    let response = if request.method() == hyper::Method::GET
                        && request.uri().path() == "/metrics"
                    {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(node.metrics_text().await)))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found: GET /metrics\n")))
                    };
                    Ok::<_, hyper::http::Error>(response.expect("static response parts"))
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "metrics connection ended");
            }
        });
    }
}
