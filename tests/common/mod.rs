//! Shared test helpers: a real S3-compatible server process, the shared data sets, building
//! fixtures through the library and reading them back.
#![allow(dead_code)]

pub mod certs;
pub mod copies;
pub mod fleet;
pub mod oracle;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierdex::builder::{self, BuildOptions, BuildSummary};
use tierdex::rules::CompiledRules;
use tierdex::schema::IndexSchema;
use tierdex::store::{BlobStore, LocalStore, S3Options, S3Store};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sum of the samples named `name` in a Prometheus text scrape whose labels include
/// `labels` (0 when there are none).
pub fn metric_sum(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

/// `../shared/data/<name>` beside the repository.
pub fn shared_data(name: &str) -> PathBuf {
    let path = repo_root().join("../shared/data").join(name);
    assert!(path.is_file(), "missing shared data set {}", path.display());
    path
}

pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(path)
}

/// An s3s-fs server on a free loopback port, stopped when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub data_dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server installed by `tools/test.sh` (`TIERDEX_S3S_FS`).
    pub fn start() -> S3Server {
        let binary = std::env::var("TIERDEX_S3S_FS").unwrap_or_else(|_| {
            let local = repo_root().join("target/tools/bin/s3s-fs");
            assert!(
                local.is_file(),
                "no S3-compatible server: run the tests with ./tools/test.sh, which installs s3s-fs"
            );
            local.display().to_string()
        });
        let access_key = std::env::var("AWS_ACCESS_KEY_ID")
            .expect("AWS_ACCESS_KEY_ID is set by ./tools/test.sh for the local S3 server");
        let secret_key = std::env::var("AWS_SECRET_ACCESS_KEY")
            .expect("AWS_SECRET_ACCESS_KEY is set by ./tools/test.sh for the local S3 server");
        let data_dir = tempfile::tempdir().unwrap();
        // The port is free when asked; another process could take it before s3s-fs binds, in
        // which case the readiness check below fails loudly rather than talking to a stranger.
        let port = free_port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(data_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {binary}: {err}"));
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            data_dir,
        };
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not start listening on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn uri(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&path_style=true",
            self.endpoint
        )
    }

    /// Creates the bucket and returns a store on `bucket/prefix`.
    pub async fn store(&self, bucket: &str, prefix: &str) -> Arc<S3Store> {
        let options =
            S3Options::parse(self.uri(bucket, prefix).strip_prefix("s3://").unwrap()).unwrap();
        let store = S3Store::connect(options).await.unwrap();
        let created = store.client().create_bucket().bucket(bucket).send().await;
        if let Err(err) = created {
            let text = format!("{err:?}");
            assert!(
                text.contains("BucketAlready"),
                "creating bucket {bucket}: {text}"
            );
        }
        Arc::new(store)
    }

    /// Where s3s-fs keeps an object on disk.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data_dir.path().join(bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free when asked (another process may take it before the caller binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn local_store(dir: &Path) -> Arc<dyn BlobStore> {
    Arc::new(LocalStore::new(dir).unwrap())
}

pub fn cacm_schema() -> Arc<IndexSchema> {
    Arc::new(IndexSchema::from_toml_file(&fixture("cacm/schema.toml")).unwrap())
}

pub fn compile_rules(schema: &IndexSchema, text: &str) -> Arc<CompiledRules> {
    Arc::new(CompiledRules::from_toml_str(text, "rules.toml", schema).unwrap())
}

pub fn build_options(
    schema: Arc<IndexSchema>,
    rules_text: &str,
    inputs: Vec<PathBuf>,
    index: &str,
) -> BuildOptions {
    let rules = compile_rules(&schema, rules_text);
    BuildOptions::new(
        schema,
        rules,
        rules_text.to_string(),
        inputs,
        index.to_string(),
    )
}

pub async fn build_cacm(store: Arc<dyn BlobStore>, rules_text: &str, index: &str) -> BuildSummary {
    let options = build_options(
        cacm_schema(),
        rules_text,
        vec![shared_data("cacm.jsonl")],
        index,
    );
    builder::build(options, store).await.unwrap()
}

/// The CACM documents as JSON values, by id.
pub fn cacm_documents() -> std::collections::BTreeMap<u64, serde_json::Value> {
    std::fs::read_to_string(shared_data("cacm.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            (value["id"].as_u64().unwrap(), value)
        })
        .collect()
}

/// The Python with pyarrow installed by `tools/test.sh`.
pub fn python() -> String {
    std::env::var("TIERDEX_PYTHON").unwrap_or_else(|_| {
        let local = repo_root().join("target/tools/pyenv/bin/python");
        assert!(
            local.is_file(),
            "no Python test environment: run the tests with ./tools/test.sh"
        );
        local.display().to_string()
    })
}

/// Runs the gRPC client `tests/python/<script>` with the proto directory and `args` (off the
/// runtime), and reads the one JSON object it prints.
pub async fn python_grpc_client(script: &str, args: Vec<String>) -> serde_json::Value {
    let script = repo_root().join("tests/python").join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(repo_root().join("proto"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The `tierdex` binary built for this test run.
pub fn tierdex_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tierdex"))
}

/// Copies one tantivy directory of a version (`hot` or `cold/index`) out of the store.
pub async fn download_index(
    store: &dyn BlobStore,
    manifest: &tierdex::format::Manifest,
    dir: &str,
) -> tempfile::TempDir {
    let local = tempfile::tempdir().unwrap();
    for (name, _) in manifest.index_files(dir) {
        let key = tierdex::format::layout::version_key(
            &manifest.index,
            &manifest.version,
            &format!("{dir}/{name}"),
        );
        let data = store.get(&key).await.unwrap();
        std::fs::write(local.path().join(name), &data).unwrap();
    }
    local
}

/// Every live document of a tantivy index: its u64 id and, when the index has it, `_addr`.
pub fn index_ids(dir: &Path) -> std::collections::BTreeMap<u64, Option<u64>> {
    let index = tantivy::Index::open_in_dir(dir).unwrap();
    let searcher = index.reader().unwrap().searcher();
    let mut ids = std::collections::BTreeMap::new();
    for segment in searcher.segment_readers() {
        let id_column = segment.fast_fields().u64("id").unwrap();
        let addr_column = segment.fast_fields().u64("_addr").ok();
        for doc in segment.doc_ids_alive() {
            let id = id_column.first(doc).expect("every document has an id");
            let addr = addr_column.as_ref().and_then(|column| column.first(doc));
            assert!(
                ids.insert(id, addr).is_none(),
                "id {id} twice in {}",
                dir.display()
            );
        }
    }
    ids
}

/// The CACM ids the rule `citations >= 1` selects.
pub fn cacm_cited_ids() -> std::collections::BTreeSet<u64> {
    cacm_documents()
        .iter()
        .filter(|(_, doc)| doc["citations"].as_u64().unwrap() >= 1)
        .map(|(id, _)| *id)
        .collect()
}

/// A read of the store, as a test sees it.
#[derive(Debug, Clone)]
pub struct RecordedRead {
    pub key: String,
    pub range: Option<std::ops::Range<u64>>,
    pub started: Instant,
    pub finished: Instant,
}

/// What a test store does around the requests it passes on; every hook does nothing unless a
/// test says otherwise.
#[async_trait::async_trait]
pub trait StoreHooks: Send + Sync + std::fmt::Debug + 'static {
    /// Before a read (`op` is `get_range` or `get`) reaches the store.
    async fn before_read(&self, _op: &'static str, _key: &str) {}
    /// After a read, with when it started.
    async fn after_read(
        &self,
        _key: &str,
        _range: Option<std::ops::Range<u64>>,
        _started: Instant,
    ) {
    }
    /// Before an upload (`put` or `put_file`); an error fails it.
    async fn before_upload(
        &self,
        _op: &'static str,
        _key: &str,
    ) -> tierdex::store::StoreResult<()> {
        Ok(())
    }
    /// Before a conditional write.
    async fn before_put_if(&self, _key: &str) {}
}

/// A store passing every request on to `inner`, with `hooks` around them.
#[derive(Debug)]
pub struct HookedStore<H> {
    pub inner: Arc<dyn BlobStore>,
    pub hooks: H,
}

#[async_trait::async_trait]
impl<H: StoreHooks> BlobStore for HookedStore<H> {
    fn uri(&self) -> &str {
        self.inner.uri()
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> tierdex::store::StoreResult<bytes::Bytes> {
        self.hooks.before_read("get_range", key).await;
        let started = Instant::now();
        let result = self.inner.get_range(key, range.clone()).await;
        self.hooks.after_read(key, Some(range), started).await;
        result
    }
    async fn get(&self, key: &str) -> tierdex::store::StoreResult<bytes::Bytes> {
        self.hooks.before_read("get", key).await;
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.hooks.after_read(key, None, started).await;
        result
    }
    async fn size(&self, key: &str) -> tierdex::store::StoreResult<u64> {
        self.inner.size(key).await
    }
    async fn put(&self, key: &str, data: bytes::Bytes) -> tierdex::store::StoreResult<()> {
        self.hooks.before_upload("put", key).await?;
        self.inner.put(key, data).await
    }
    async fn put_file(&self, key: &str, local: &Path) -> tierdex::store::StoreResult<()> {
        self.hooks.before_upload("put_file", key).await?;
        self.inner.put_file(key, local).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> tierdex::store::StoreResult<Vec<tierdex::store::ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> tierdex::store::StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn get_tagged(
        &self,
        key: &str,
    ) -> tierdex::store::StoreResult<Option<(bytes::Bytes, String)>> {
        self.inner.get_tagged(key).await
    }
    async fn put_if(
        &self,
        key: &str,
        data: bytes::Bytes,
        expected: &tierdex::store::Expected,
    ) -> tierdex::store::StoreResult<()> {
        self.hooks.before_put_if(key).await;
        self.inner.put_if(key, data, expected).await
    }
}

/// Holds every read of a key containing `holds` until opened.
#[derive(Debug)]
pub struct Gate {
    holds: String,
    open: tokio::sync::watch::Sender<bool>,
}

#[async_trait::async_trait]
impl StoreHooks for Gate {
    async fn before_read(&self, _op: &'static str, key: &str) {
        if key.contains(&self.holds) {
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
    }
}

pub type GatedStore = HookedStore<Gate>;

impl HookedStore<Gate> {
    /// A store whose reads of keys containing `holds` wait until `open` is called.
    pub fn closed(inner: Arc<dyn BlobStore>, holds: &str) -> Arc<GatedStore> {
        Arc::new(HookedStore {
            inner,
            hooks: Gate {
                holds: holds.to_string(),
                open: tokio::sync::watch::channel(false).0,
            },
        })
    }

    pub fn open(&self) {
        self.hooks.open.send_replace(true);
    }
}

/// Records every read (`get`, `get_range`) with its start and end time.
#[derive(Debug, Default)]
pub struct Recorder {
    reads: std::sync::Mutex<Vec<RecordedRead>>,
    /// Added to every read: a round trip long enough that requests sent together overlap
    /// whatever the scheduling of a loaded machine.
    delay: Duration,
}

#[async_trait::async_trait]
impl StoreHooks for Recorder {
    async fn after_read(&self, key: &str, range: Option<std::ops::Range<u64>>, started: Instant) {
        tokio::time::sleep(self.delay).await;
        self.reads.lock().unwrap().push(RecordedRead {
            key: key.to_string(),
            range,
            started,
            finished: Instant::now(),
        });
    }
}

pub type RecordingStore = HookedStore<Recorder>;

impl HookedStore<Recorder> {
    pub fn new(inner: Arc<dyn BlobStore>) -> Arc<RecordingStore> {
        Self::with_delay(inner, Duration::ZERO)
    }

    pub fn with_delay(inner: Arc<dyn BlobStore>, delay: Duration) -> Arc<RecordingStore> {
        Arc::new(HookedStore {
            inner,
            hooks: Recorder {
                reads: std::sync::Mutex::new(Vec::new()),
                delay,
            },
        })
    }

    pub fn reads(&self) -> Vec<RecordedRead> {
        self.hooks.reads.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.hooks.reads.lock().unwrap().clear();
    }

    /// The reads recorded so far, cleared.
    pub fn take(&self) -> Vec<RecordedRead> {
        std::mem::take(&mut self.hooks.reads.lock().unwrap())
    }
}

/// Reads grouped into sequential rounds, in time order: reads that overlap in time are one
/// round; a read that starts after every read of the current round has finished starts the next.
pub fn rounds(reads: &[RecordedRead]) -> Vec<Vec<RecordedRead>> {
    let mut sorted = reads.to_vec();
    sorted.sort_by_key(|read| read.started);
    let mut rounds: Vec<Vec<RecordedRead>> = Vec::new();
    let mut round_end: Option<Instant> = None;
    for read in sorted {
        match round_end {
            Some(end) if read.started < end => {
                round_end = Some(end.max(read.finished));
                rounds.last_mut().unwrap().push(read);
            }
            _ => {
                round_end = Some(read.finished);
                rounds.push(vec![read]);
            }
        }
    }
    rounds
}

/// The longest chain of reads each of which started after the one before it had finished: how
/// many round trips the reads cost one after another, whatever the overlap of reads that do not
/// depend on each other. Unlike [`rounds`], a read that waited for another is never merged into
/// its round because a third, slower read of that round was still in flight.
pub fn longest_chain(reads: &[RecordedRead]) -> Vec<RecordedRead> {
    let mut sorted = reads.to_vec();
    sorted.sort_by_key(|read| read.started);
    // For each read, the longest chain ending with it: (length, the read before it).
    let mut ends: Vec<(usize, Option<usize>)> = Vec::with_capacity(sorted.len());
    for (index, read) in sorted.iter().enumerate() {
        let before = (0..index)
            .filter(|&earlier| sorted[earlier].finished <= read.started)
            .max_by_key(|&earlier| ends[earlier].0);
        ends.push((before.map_or(1, |earlier| ends[earlier].0 + 1), before));
    }
    let mut last = (0..sorted.len()).max_by_key(|&index| ends[index].0);
    let mut chain = Vec::new();
    while let Some(index) = last {
        chain.push(sorted[index].clone());
        last = ends[index].1;
    }
    chain.reverse();
    chain
}

/// A node serving `indexes` from `store`, on a free loopback port, stopped when dropped.
pub struct TestNode {
    pub addr: String,
    pub node: Arc<tierdex::node::Node>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    loading: Option<tokio::task::JoinHandle<()>>,
}

impl TestNode {
    pub async fn start(store: Arc<dyn BlobStore>, indexes: &[&str], data_dir: &Path) -> TestNode {
        Self::start_with(store, indexes, data_dir, |_| {}).await
    }

    pub async fn start_with(
        store: Arc<dyn BlobStore>,
        indexes: &[&str],
        data_dir: &Path,
        adjust: impl FnOnce(&mut tierdex::config::Settings),
    ) -> TestNode {
        Self::start_with_replica(store, None, indexes, data_dir, adjust).await
    }

    /// `start_with`, reading from `replica` too (rehydration spreads its chunks over both).
    pub async fn start_with_replica(
        store: Arc<dyn BlobStore>,
        replica: Option<Arc<dyn BlobStore>>,
        indexes: &[&str],
        data_dir: &Path,
        adjust: impl FnOnce(&mut tierdex::config::Settings),
    ) -> TestNode {
        let mut settings = tierdex::config::Settings {
            store: Some(store.uri().to_string()),
            indexes: Some(indexes.iter().map(|name| name.to_string()).collect()),
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_path_buf()),
            cache_size: Some("64MiB".into()),
            // Every remote cold search's reads must have been planned: a miss fails the test.
            cold_plan_strict: Some(true),
            ..Default::default()
        };
        adjust(&mut settings);
        let config = tierdex::config::NodeConfig::resolve(settings, "test").unwrap();
        // As `tierdex serve` does: certificate files are read before anything listens.
        let tls = config
            .tls
            .as_ref()
            .map(|files| tierdex::tls::ServerTls::load(files).unwrap());
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let addr = format!("{scheme}://{}", listener.local_addr().unwrap());
        let node = tierdex::node::Node::new(config, store, replica).unwrap();
        let loader = node.clone();
        let loading = tokio::spawn(async move { loader.run().await });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = node.clone();
        let server = tokio::spawn(async move {
            tierdex::server::run_member(listener, serving, None, tls, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestNode {
            addr,
            node,
            shutdown: Some(shutdown),
            server: Some(server),
            loading: Some(loading),
        }
    }

    /// The address without its scheme: `127.0.0.1:port`.
    pub fn host_port(&self) -> &str {
        self.addr
            .split_once("://")
            .map_or(&self.addr, |(_, rest)| rest)
    }

    /// Waits (up to 60 s) until every index has both tiers ready, hot tiers downloaded.
    pub async fn wait_ready(&self) {
        wait_node_ready(&self.node).await;
    }

    /// Waits (up to 60 s) until every index serves both tiers, hot tiers downloaded or not.
    pub async fn wait_serving(&self) {
        wait_node_serving(&self.node).await;
    }

    pub async fn client(
        &self,
    ) -> tierdex::api::pb::tierdex_client::TierdexClient<tonic::transport::Channel> {
        tierdex::api::pb::tierdex_client::TierdexClient::connect(self.addr.clone())
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(loading) = self.loading.take() {
            loading.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(loading) = self.loading.take() {
            loading.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A search request with the defaults tests use.
pub fn search_request(index: &str, query: &str, limit: u32) -> tierdex::api::pb::SearchRequest {
    tierdex::api::pb::SearchRequest {
        index: index.to_string(),
        query: query.to_string(),
        limit,
        ..Default::default()
    }
}

/// A store on an existing bucket through another endpoint (e.g. a fault proxy).
pub async fn s3_store_at(endpoint: &str, bucket: &str, prefix: &str) -> Arc<S3Store> {
    // As `tierdex serve` opens it: a refused connection is not retried.
    let rest = format!("{bucket}/{prefix}?endpoint={endpoint}&path_style=true&fail_fast=true");
    Arc::new(
        S3Store::connect(S3Options::parse(&rest).unwrap())
            .await
            .unwrap(),
    )
}

impl S3Server {
    pub fn address(&self) -> SocketAddr {
        self.endpoint.trim_start_matches("http://").parse().unwrap()
    }
}

/// A TestNode with the settings fault tests use: tiny caches (so cold reads reach storage),
/// short storage timeouts and a quick breaker.
pub async fn fault_node(
    store: Arc<dyn BlobStore>,
    index: &str,
    data: &Path,
    adjust: impl FnOnce(&mut tierdex::config::Settings),
) -> TestNode {
    TestNode::start_with(store, &[index], data, |settings| {
        settings.cache_size = Some("64KiB".into());
        settings.document_cache_size = Some("0".into());
        settings.storage_timeout = Some("300ms".into());
        settings.breaker_failures = Some(3);
        settings.breaker_cool_down = Some("500ms".into());
        settings.default_timeout = Some("2s".into());
        settings.poll_interval = Some("0s".into());
        adjust(settings);
    })
    .await
}

/// A hit's id as u64 (CACM).
pub fn hit_u64(hit: &tierdex::api::pb::Hit) -> u64 {
    match hit.id.as_ref().and_then(|id| id.kind.as_ref()) {
        Some(tierdex::api::pb::value::Kind::U64(id)) => *id,
        other => panic!("expected a u64 id, got {other:?}"),
    }
}

/// The 64 CACM queries, punctuation stripped.
pub fn cacm_query_texts() -> Vec<String> {
    std::fs::read_to_string(shared_data("cacm.queries.tsv"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(_, text)| {
            text.chars()
                .map(|c| if c.is_alphanumeric() { c } else { ' ' })
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Runs `node` in the background and waits until it serves every index's both tiers, its hot
/// tiers downloaded.
pub async fn run_until_ready(node: &Arc<tierdex::node::Node>) {
    let runner = node.clone();
    tokio::spawn(async move { runner.run().await });
    wait_node_ready(node).await;
}

/// Waits until `node` serves every index's both tiers with its hot tiers downloaded (not
/// searched in the store: a test of storage trouble needs its hot tiers local); fails on a
/// load error or after 60 s.
pub async fn wait_node_ready(node: &tierdex::node::Node) {
    wait_node_until(node, |status| {
        status.cold == tierdex::node::TierState::Ready && !status.hot_in_store
    })
    .await;
}

/// Waits until `node` serves every index's both tiers, its hot tiers downloaded or not.
pub async fn wait_node_serving(node: &tierdex::node::Node) {
    wait_node_until(node, |status| {
        status.cold == tierdex::node::TierState::Ready
    })
    .await;
}

async fn wait_node_until(
    node: &tierdex::node::Node,
    done: impl Fn(&tierdex::node::IndexStatus) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let statuses = node.statuses();
        if statuses.iter().all(&done) {
            return;
        }
        for status in &statuses {
            assert!(
                status.error.is_none(),
                "loading {} failed: {:?}",
                status.name,
                status.error
            );
        }
        assert!(Instant::now() < deadline, "node not ready: {statuses:?}");
        // Finely: benches time start-ups of a tenth of a second with it.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The PyPI catalog built with `benches/pypi`'s schema and rules into `store` as `pypi`.
pub async fn build_pypi(store: Arc<dyn BlobStore>) -> BuildSummary {
    let rules = std::fs::read_to_string(repo_root().join("benches/pypi/rules.toml")).unwrap();
    build_pypi_with(store, &rules, "pypi").await
}

/// The PyPI catalog built with other rules (`hot = ["true"]`: one monolithic index).
pub async fn build_pypi_with(store: Arc<dyn BlobStore>, rules: &str, index: &str) -> BuildSummary {
    builder::build(pypi_options(rules, index), store)
        .await
        .unwrap()
}

/// The PyPI catalog built with every document hot into a local-directory store at `store_dir`:
/// one monolithic tantivy index, the limit benchmarks compare with. Returns the index's
/// directory and its document count.
pub async fn build_pypi_monolith(store_dir: &Path) -> (PathBuf, u64) {
    let manifest = build_pypi_with(local_store(store_dir), "hot = [\"true\"]", "pypi-all")
        .await
        .manifest;
    let dir = store_dir
        .join("pypi-all")
        .join(&manifest.version)
        .join("hot");
    (dir, manifest.hot.docs)
}

/// Build options for the PyPI catalog with `benches/pypi`'s schema and these rules.
pub fn pypi_options(rules: &str, index: &str) -> builder::BuildOptions {
    let schema = Arc::new(
        IndexSchema::from_toml_file(&repo_root().join("benches/pypi/schema.toml")).unwrap(),
    );
    build_options(
        schema,
        rules,
        vec![shared_data("pypi-packages.jsonl.gz")],
        index,
    )
}

/// Store keys and sizes of a version's index files (hot and cold index): what rehydration
/// downloads.
pub fn index_file_keys(manifest: &tierdex::format::Manifest) -> Vec<(String, u64)> {
    manifest
        .hot_files()
        .chain(manifest.cold_index_files())
        .map(|(_, entry)| {
            (
                tierdex::format::layout::version_key(
                    &manifest.index,
                    &manifest.version,
                    &entry.path,
                ),
                entry.size,
            )
        })
        .collect()
}

/// Benchmarks run without `tools/test.sh`: the local servers' credentials, unless set. Call
/// before the runtime starts, while this is the only thread.
pub fn default_bench_credentials() {
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        // SAFETY: no other thread exists yet to read the environment.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "tierdex-bench");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "tierdex-bench-secret");
            std::env::set_var("AWS_REGION", "us-east-1");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    }
}

/// The `p` quantile of `samples` (nearest rank), in milliseconds.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Copies every object of `from` into `to`: two replicas with the same content.
pub async fn replicate(from: &dyn BlobStore, to: &dyn BlobStore) {
    for object in from.list("").await.unwrap() {
        to.put(&object.key, from.get(&object.key).await.unwrap())
            .await
            .unwrap();
    }
}

/// The benchmarks' runtime: two workers, as on the 2-core machine the figures come from.
pub fn bench_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// TB05 web queries (`../shared/data/web-queries-tb05.txt`) as plain words (tantivy syntax characters removed), in file order.
pub fn web_queries(limit: usize) -> Vec<String> {
    std::fs::read_to_string(shared_data("web-queries-tb05.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(':').map(|(_, query)| query))
        .map(|query| {
            query
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        ' '
                    }
                })
                .collect::<String>()
                .split_whitespace()
                .filter(|word| !matches!(*word, "and" | "or" | "not" | "to"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|query| !query.is_empty())
        .take(limit)
        .collect()
}

/// The words of a text worth querying: alphabetic, longer than 3 letters, lowercased.
pub fn title_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.len() > 3 && word.chars().all(|c| c.is_ascii_alphabetic()))
        .map(str::to_lowercase)
        .collect()
}

/// Phrases, boolean queries, field filters and ranges, drawn from the documents.
pub fn cacm_structured_queries() -> Vec<String> {
    let documents = cacm_documents();
    let docs: Vec<&serde_json::Value> = documents.values().collect();
    let mut queries = Vec::new();
    for (i, doc) in docs.iter().step_by(97).enumerate() {
        let title = title_words(doc["title"].as_str().unwrap());
        if title.len() >= 2 {
            queries.push(format!("\"{} {}\"", title[0], title[1]));
        }
        if title.len() >= 3 {
            queries.push(match i % 4 {
                0 => format!("+{} +{}", title[0], title[2]),
                1 => format!("{} -{}", title[1], title[0]),
                2 => format!("({} OR {}) AND {}", title[0], title[1], title[2]),
                _ => format!("title:{} AND abstract:{}", title[0], title[2]),
            });
        }
        if let Some(author) = doc["authors"]
            .as_array()
            .and_then(|authors| authors.first())
        {
            let author = author.as_str().unwrap().replace('"', "");
            queries.push(format!("authors:\"{author}\""));
        }
        let date = doc["date"].as_str().unwrap();
        if let Some(word) = title.first() {
            queries.push(format!("{word} AND citations:[{} TO {}]", i % 3, 5 + i % 7));
            queries.push(format!("date:\"{date}\" OR title:{word}"));
        }
    }
    queries.push("citations:[10 TO 40]".into());
    queries.push("citations:[0 TO 0]".into());
    queries.push("date:\"1975-03\"".into());
    queries
}

/// One tantivy index in RAM over `documents` (JSON objects) with the hot schema of `schema`,
/// and a parser over CACM's default fields: the monolithic oracle the CACM tests compare with.
/// Every match of `query` in `searcher` with the score the node must give it: tantivy's, but
/// for a flat disjunction or conjunction of two or more term clauses, whose score here is each
/// term's own score (its `TermQuery` searched alone) summed in `f64` and rounded once. That is
/// the exact sum, whatever order tantivy meets the terms in (`tierdex::node::exact_sum`).
pub fn oracle_scores(
    searcher: &tantivy::Searcher,
    query: &dyn tantivy::query::Query,
) -> Vec<(f32, tantivy::DocAddress)> {
    use tantivy::collector::TopDocs;
    use tantivy::query::{BooleanQuery, Occur, TermQuery};
    let everything = TopDocs::with_limit(searcher.num_docs().max(1) as usize).order_by_score();
    let all = searcher.search(query, &everything).unwrap();
    let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
        return all;
    };
    let clauses = boolean.clauses();
    let flat = clauses.len() >= 2
        && matches!(clauses[0].0, Occur::Should | Occur::Must)
        && boolean.get_minimum_number_should_match() <= 1
        && clauses
            .iter()
            .all(|(occur, clause)| *occur == clauses[0].0 && clause.is::<TermQuery>());
    if !flat {
        return all;
    }
    let mut sums: std::collections::HashMap<tantivy::DocAddress, f64> = Default::default();
    for (_, clause) in clauses {
        for (score, address) in searcher.search(clause.as_ref(), &everything).unwrap() {
            *sums.entry(address).or_default() += f64::from(score);
        }
    }
    all.into_iter()
        .map(|(_, address)| (sums[&address] as f32, address))
        .collect()
}

pub fn oracle_index(
    schema: &IndexSchema,
    documents: impl IntoIterator<Item = serde_json::Value>,
) -> (tantivy::Index, tantivy::query::QueryParser) {
    let index = tantivy::Index::create_in_ram(schema.hot_tantivy.clone());
    let mut writer: tantivy::IndexWriter = index.writer(50_000_000).unwrap();
    for doc in documents {
        let mut object = doc.as_object().unwrap().clone();
        object.retain(|name, value| schema.field_index(name).is_some() && !value.is_null());
        writer
            .add_document(
                tantivy::TantivyDocument::from_json_object(&schema.hot_tantivy, object).unwrap(),
            )
            .unwrap();
    }
    writer.commit().unwrap();
    let fields = ["title", "abstract"].map(|name| schema.hot_tantivy.get_field(name).unwrap());
    let parser = tantivy::query::QueryParser::for_index(&index, fields.to_vec());
    (index, parser)
}
