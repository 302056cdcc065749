//! A fleet member run in the test's process, wired as `tierdex serve` wires one.

use std::sync::Arc;

use tierdex::config::{NodeConfig, Settings};
use tierdex::fleet::membership::Membership;
use tierdex::node::Node;
use tierdex::store::BlobStore;

/// A fleet member in this process: node, fleet and gRPC server on its listener.
pub struct Member {
    pub node: Arc<Node>,
    /// Stopped with the member; a test may add its own (a metrics listener).
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub data_dir: Option<tempfile::TempDir>,
}

impl Drop for Member {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The fleet's placement started these; they would go on polling the store and writing
        // under the data dir, which a restarted member may be using.
        self.node.stop_loading_shards();
    }
}

/// Starts a member with `settings` (which must name its peers) on `listener`: over TLS when
/// they configure it (`ServerTls` on the listener, `peer_client` for asking the others), and
/// with `membership` instead of the peers' list when given.
pub async fn start_member(
    store: Arc<dyn BlobStore>,
    listener: tokio::net::TcpListener,
    settings: Settings,
    membership: Option<Box<dyn Membership>>,
) -> Member {
    let config = NodeConfig::resolve(settings, "test").unwrap();
    let (tls, shards) = match &config.tls {
        Some(files) => {
            let tls = tierdex::tls::ServerTls::load(files).unwrap();
            let client = tls.peer_client(files).unwrap();
            (
                Some(tls),
                tierdex::api::shards::GrpcShards::with_tls(client),
            )
        }
        None => (None, tierdex::api::shards::GrpcShards::new()),
    };
    let fleet_config = config.fleet.clone().unwrap();
    let node = Node::new(config, store, None).unwrap();
    let fleet = match membership {
        Some(membership) => {
            tierdex::fleet::Fleet::with_membership(node.clone(), &fleet_config, shards, membership)
        }
        None => tierdex::fleet::Fleet::new(node.clone(), &fleet_config, shards),
    };
    let loader = node.clone();
    let serving = node.clone();
    let tasks = vec![
        tokio::spawn(async move { loader.run().await }),
        tokio::spawn(fleet.clone().run()),
        tokio::spawn(async move {
            tierdex::server::run_member(
                listener,
                serving,
                Some(fleet),
                tls,
                std::future::pending(),
            )
            .await
            .unwrap();
        }),
    ];
    Member {
        node,
        tasks,
        data_dir: None,
    }
}
