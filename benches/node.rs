//! Query node figures on the PyPI catalog, measured side by side in one run against tantivy
//! itself on the same data.
//!
//! ```text
//! ./tools/test.sh --no-run   # once: installs s3s-fs under target/tools
//! cargo bench --bench node -- [--queries N] [--load-clients 64] [--load-queries 1000]
//!     [--with-tracing] [--cold-compression lz4|zstd] [--profile-seconds S [--profile-both-tiers [--profile-split]]]
//!     [--cold-index remote|local]
//! ```
//!
//! Starts a real S3-compatible server (s3s-fs) on 127.0.0.1, builds the PyPI catalog into it
//! with the bench rules (hot and cold tiers), builds it a second time with every document hot
//! into a local directory (one monolithic tantivy index, the limit to compare with), starts a
//! node in this process on a loopback port, and measures through gRPC with a client in this
//! process:
//! - hot-only searches, server-side and end to end, vs tantivy (`TopDocs` + reading the 10
//!   documents) on the same hot index in process;
//! - both-tier searches, server-side and end to end, vs tantivy on the monolithic index in
//!   process (+ a bare RPC round trip for the end-to-end limit);
//! - the collector alone: tantivy's `TopDocs` vs the node's `TopHits`;
//! - queries whose page holds cold documents on an empty cache (a restarted node), next to one
//!   storage round trip (a small range GET) measured in the same run;
//! - rehydration of the version vs one single-stream GET of the same files;
//! - many concurrent clients vs the monolithic index searched in process by 2 threads.
//!
//! Queries come from `../shared/data/web-queries-tb05.txt`, in file order.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{Query, QueryParser};
use tantivy::{Index, Searcher};
use tierdex::api::pb;

// The allocator of the `tierdex` binary, so that the node is measured as it runs (tantivy's
// baselines in this process use it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tierdex::store::BlobStore;

struct Settings {
    queries: usize,
    load_clients: usize,
    load_queries: usize,
    /// Only loop hot-only searches (node, then tantivy) for this long, for a profiler.
    profile_seconds: usize,
    /// With `profile_seconds`: both-tier searches against the monolithic index instead.
    profile_both_tiers: bool,
    /// With `profile_both_tiers`: against tantivy over the node's two tiers instead.
    profile_split: bool,
    /// Log as `tierdex serve` does by default (`info`, to a sink): the spans' cost included.
    with_tracing: bool,
    /// How the tiered build compresses cold pages.
    cold_compression: tierdex::builder::ColdCompression,
    /// The node's `inline_postings`; `None`: its default.
    inline_postings: Option<u64>,
    /// The node's `cold_index` (`remote` or `local`); `None`: its default.
    cold_index: Option<String>,
}

fn settings() -> Settings {
    let mut settings = Settings {
        queries: 2000,
        load_clients: 64,
        load_queries: 1000,
        profile_seconds: 0,
        profile_both_tiers: false,
        profile_split: false,
        with_tracing: false,
        cold_compression: Default::default(),
        inline_postings: None,
        cold_index: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{arg} needs a value"))
                .parse::<usize>()
                .unwrap()
        };
        match arg.as_str() {
            "--queries" => settings.queries = value(),
            "--load-clients" => settings.load_clients = value(),
            "--load-queries" => settings.load_queries = value(),
            "--profile-seconds" => settings.profile_seconds = value(),
            "--profile-both-tiers" => settings.profile_both_tiers = true,
            "--profile-split" => settings.profile_split = true,
            "--inline-postings" => settings.inline_postings = Some(value() as u64),
            "--with-tracing" => settings.with_tracing = true,
            "--cold-index" => {
                settings.cold_index = Some(args.next().expect("--cold-index needs a value"))
            }
            "--cold-compression" => {
                settings.cold_compression = args
                    .next()
                    .expect("--cold-compression needs a value")
                    .parse()
                    .unwrap()
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    settings
}

#[derive(Default, Clone)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn p50(&self) -> f64 {
        percentile_ms(&self.0, 0.5)
    }
    fn p99(&self) -> f64 {
        percentile_ms(&self.0, 0.99)
    }
    fn mean(&self) -> f64 {
        self.0.iter().sum::<Duration>().as_secs_f64() * 1000.0 / self.0.len() as f64
    }
}

/// End-to-end latencies (client clock) and server-side ones (the node's `total_ms`).
#[derive(Default)]
struct GrpcRun {
    end_to_end: Latencies,
    server: Latencies,
    responses: Vec<pb::SearchResponse>,
}

impl GrpcRun {
    fn extend(&mut self, other: GrpcRun) {
        self.end_to_end.0.extend(other.end_to_end.0);
        self.server.0.extend(other.server.0);
        self.responses.extend(other.responses);
    }
}

async fn run_grpc(
    client: &mut pb::tierdex_client::TierdexClient<tonic::transport::Channel>,
    queries: &[String],
    hot_only: bool,
) -> GrpcRun {
    let mut run = GrpcRun {
        end_to_end: Latencies::default(),
        server: Latencies::default(),
        responses: Vec::with_capacity(queries.len()),
    };
    for query in queries {
        let mut request = search_request("pypi", query, 10);
        if hot_only {
            request.tiers = pb::Tiers::HotOnly as i32;
        }
        let started = Instant::now();
        let response = client
            .search(request)
            .await
            .unwrap_or_else(|status| panic!("{query}: {status}"))
            .into_inner();
        run.end_to_end.0.push(started.elapsed());
        let server_ms = response.stats.as_ref().unwrap().total_ms;
        run.server
            .0
            .push(Duration::from_secs_f64(server_ms / 1000.0));
        run.responses.push(response);
    }
    run
}

/// The same searches sent to several servers (`sides`: a client, and whether its searches are
/// hot-only), query by query, rotating which goes first: every side sees the machine in the
/// same state (its speed drifts by 10–40% between runs a few minutes apart,
/// docs/benchmarks.md), so their ratios do not depend on when each ran.
async fn run_grpc_rotating(
    sides: &mut [(
        &mut pb::tierdex_client::TierdexClient<tonic::transport::Channel>,
        bool,
    )],
    queries: &[String],
) -> Vec<GrpcRun> {
    let mut runs: Vec<GrpcRun> = sides.iter().map(|_| GrpcRun::default()).collect();
    for (at, query) in queries.iter().enumerate() {
        let query = std::slice::from_ref(query);
        for turn in 0..sides.len() {
            let side = (at + turn) % sides.len();
            let (client, hot_only) = &mut sides[side];
            runs[side].extend(run_grpc(client, query, *hot_only).await);
        }
    }
    runs
}

/// `run_grpc_rotating` over two sides.
async fn run_grpc_side_by_side(
    first: (
        &mut pb::tierdex_client::TierdexClient<tonic::transport::Channel>,
        bool,
    ),
    second: (
        &mut pb::tierdex_client::TierdexClient<tonic::transport::Channel>,
        bool,
    ),
    queries: &[String],
) -> (GrpcRun, GrpcRun) {
    let mut runs = run_grpc_rotating(&mut [first, second], queries).await;
    let second = runs.pop().unwrap();
    (runs.pop().unwrap(), second)
}

/// Hot-only searches through `Node::search` in this process, one after the other: the node's
/// own cost, without the RPC's.
async fn run_direct(
    node: &tierdex::node::Node,
    queries: &[String],
) -> (Latencies, Vec<tierdex::node::search::SearchStats>) {
    let mut latencies = Latencies::default();
    let mut stats = Vec::with_capacity(queries.len());
    for query in queries {
        let request = tierdex::node::search::SearchRequest {
            query: query.clone(),
            limit: 10,
            hot_only: true,
            ..Default::default()
        };
        let started = Instant::now();
        let result = node.search("pypi", request).await.unwrap();
        latencies.0.push(started.elapsed());
        stats.push(result.stats.clone());
        std::hint::black_box(result);
    }
    (latencies, stats)
}

/// The limit of a search server on this stack: tantivy alone behind the same gRPC server
/// (tonic, the node's service definition), every search on the worker that received it (the
/// node does so for short searches only), and reporting its own time as the node does. It
/// answers what the node answers: each hit's id and stored fields through the node's own
/// converters, scored with the same corpus statistics (those of the whole corpus).
struct BareTantivyServer {
    index: Arc<BareIndex>,
    documents: Arc<NodeDocuments>,
}

/// What a bare server searches: one index, or the node's two tiers.
enum BareIndex {
    One(Tantivy),
    Split(SplitTantivy),
}

impl BareIndex {
    fn parser(&self) -> &QueryParser {
        match self {
            BareIndex::One(tantivy) => &tantivy.parser,
            BareIndex::Split(split) => &split.tiers[0].parser,
        }
    }

    /// The top 10, and the searcher whose addresses they are.
    fn top_docs(
        &self,
        query: &dyn Query,
    ) -> (Vec<(tantivy::Score, tantivy::DocAddress)>, &Searcher) {
        match self {
            BareIndex::One(tantivy) => (tantivy.top_docs(query), &tantivy.searcher),
            BareIndex::Split(split) => (split.top_docs(query), &split.monolith),
        }
    }
}

/// The node's conversion of a stored document to the fields it returns.
struct NodeDocuments {
    schema: tierdex::schema::IndexSchema,
    selection: tierdex::node::documents::FieldSelection,
    id_field: tantivy::schema::Field,
}

impl NodeDocuments {
    /// As the node reads the version of `manifest`.
    fn new(manifest: &tierdex::format::Manifest) -> NodeDocuments {
        let schema =
            tierdex::schema::IndexSchema::new(manifest.schema.clone(), "manifest").unwrap();
        let selection = tierdex::node::documents::FieldSelection::new(
            &schema,
            &manifest.multi_valued_fields,
            &[],
        )
        .unwrap();
        NodeDocuments {
            id_field: schema.tantivy_field(schema.id_index),
            schema,
            selection,
        }
    }

    /// One document read from `searcher` and converted: its id and fields.
    fn read(
        &self,
        searcher: &Searcher,
        address: tantivy::DocAddress,
    ) -> (pb::Value, Vec<pb::Field>) {
        use tantivy::schema::Value as _;
        let document: tantivy::TantivyDocument = searcher.doc(address).unwrap();
        let id = document
            .get_first(self.id_field)
            .and_then(|value| value.as_str())
            .unwrap()
            .to_string();
        let fields =
            tierdex::node::documents::from_tantivy(&self.schema, &self.selection, &document);
        (
            tierdex::api::value_to_pb(tierdex::node::documents::FieldValue::Text(id)),
            tierdex::api::fields_to_pb(fields),
        )
    }
}

#[tonic::async_trait]
impl pb::tierdex_server::Tierdex for BareTantivyServer {
    async fn search(
        &self,
        request: tonic::Request<pb::SearchRequest>,
    ) -> Result<tonic::Response<pb::SearchResponse>, tonic::Status> {
        let started = Instant::now();
        let query = request.into_inner().query;
        let (hits, parse_ms, search_ms, hot_fetch_ms) = {
            let parsed = self.index.parser().parse_query(&query).unwrap();
            let parse_ms = started.elapsed().as_secs_f64() * 1000.0;
            let (top, documents) = self.index.top_docs(parsed.as_ref());
            let search_ms = started.elapsed().as_secs_f64() * 1000.0 - parse_ms;
            let hits = top
                .into_iter()
                .map(|(score, address)| {
                    let (id, fields) = self.documents.read(documents, address);
                    pb::Hit {
                        id: Some(id),
                        score: f64::from(score),
                        tier: pb::Tier::Hot as i32,
                        fields,
                    }
                })
                .collect();
            let hot_fetch_ms = started.elapsed().as_secs_f64() * 1000.0 - parse_ms - search_ms;
            (hits, parse_ms, search_ms, hot_fetch_ms)
        };
        // The answer is timed as the node's is: up to the documents, before encoding.
        Ok(tonic::Response::new(pb::SearchResponse {
            hits,
            stats: Some(pb::QueryStats {
                parse_ms,
                search_ms,
                hot_fetch_ms,
                total_ms: started.elapsed().as_secs_f64() * 1000.0,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_indexes(
        &self,
        _request: tonic::Request<pb::ListIndexesRequest>,
    ) -> Result<tonic::Response<pb::ListIndexesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bench baseline"))
    }

    async fn status(
        &self,
        _request: tonic::Request<pb::StatusRequest>,
    ) -> Result<tonic::Response<pb::StatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bench baseline"))
    }
}

/// Serves `index` bare on a loopback port; returns its address.
async fn serve_bare(index: BareIndex, documents: Arc<NodeDocuments>) -> String {
    serve_bare_server(BareTantivyServer {
        index: Arc::new(index),
        documents,
    })
    .await
}

async fn serve_bare_server(server: BareTantivyServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = pb::tierdex_server::TierdexServer::new(server);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    format!("http://{addr}")
}

/// What a load run measured.
struct LoadRun {
    searches_per_s: f64,
    errors: usize,
    /// CPU time per search of everything but the clients: the server, its network stack work
    /// and its threads' hand-offs.
    server_cpu_per_search: Duration,
    /// CPU time per search of the clients' threads.
    client_cpu_per_search: Duration,
    /// Each search's time as its client saw it.
    latencies: Latencies,
}

impl LoadRun {
    /// Searches per second the server's CPU time per search allows on `cores` cores that do
    /// nothing else: the clients' share of this machine's two cores removed, as if they ran
    /// elsewhere. A projection, not a measured rate.
    fn server_bound(&self, cores: f64) -> f64 {
        cores / self.server_cpu_per_search.as_secs_f64()
    }
}

/// The load clients' threads are named this, so that their CPU time can be told apart.
const CLIENT_THREADS: &str = "load-client";

/// The clients of a load run: their own 2-thread runtime, as another program would be, on the
/// same two cores as the server.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .unwrap()
}

/// CPU time (user + system) of this process, exited threads included, and of its live threads
/// named [`CLIENT_THREADS`], from /proc (clock ticks, 10 ms here).
fn cpu_times() -> (Duration, Duration) {
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15; the name (field 2) may hold spaces, so count from
    // the `)` that closes it, after which field 3 comes first.
    let cpu_of = |stat: &str| -> Duration {
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / ticks_per_s)
    };
    let process = cpu_of(&std::fs::read_to_string("/proc/self/stat").unwrap());
    let mut clients = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue; // the thread exited while being read
        };
        if name.trim_end() == CLIENT_THREADS {
            clients += cpu_of(&stat);
        }
    }
    (process, clients)
}

/// What one load round measured, before it is turned into rates.
#[derive(Default)]
struct LoadParts {
    searches: usize,
    errors: usize,
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
    /// Each search's time as its client saw it, queueing behind the others included.
    latencies: Latencies,
}

impl LoadParts {
    fn add(&mut self, other: LoadParts) {
        self.searches += other.searches;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.server_cpu += other.server_cpu;
        self.client_cpu += other.client_cpu;
        self.latencies.0.extend(other.latencies.0);
    }

    fn run(&self) -> LoadRun {
        LoadRun {
            searches_per_s: self.searches as f64 / self.elapsed.as_secs_f64(),
            errors: self.errors,
            server_cpu_per_search: self.server_cpu / self.searches as u32,
            client_cpu_per_search: self.client_cpu / self.searches as u32,
            latencies: self.latencies.clone(),
        }
    }
}

/// `clients` concurrent clients on `addr`, each on its own connection (opened before the clock
/// starts), sending `per_client` searches one after the other from `first_round` of its
/// sequence of queries; how many failed; and the CPU time of everything but the clients.
async fn load_round(
    clients_runtime: &tokio::runtime::Runtime,
    addr: &str,
    queries: &Arc<Vec<String>>,
    clients: usize,
    (first_round, per_client): (usize, usize),
) -> LoadParts {
    let connected = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let clients_done = (0..clients)
        .map(|client_index| {
            let addr = addr.to_string();
            let queries = queries.clone();
            let connected = connected.clone();
            clients_runtime.spawn(async move {
                let mut client = pb::tierdex_client::TierdexClient::connect(addr)
                    .await
                    .unwrap();
                connected.wait().await;
                let mut errors = 0usize;
                let mut latencies = Vec::with_capacity(per_client);
                for round in first_round..first_round + per_client {
                    let query = &queries[(client_index * 131 + round) % queries.len()];
                    let started = Instant::now();
                    if client
                        .search(search_request("pypi", query, 10))
                        .await
                        .is_err()
                    {
                        errors += 1;
                    }
                    latencies.push(started.elapsed());
                }
                (errors, latencies)
            })
        })
        .collect::<Vec<_>>();
    connected.wait().await;
    let (process_before, clients_before) = cpu_times();
    let started = Instant::now();
    let mut errors = 0;
    let mut latencies = Latencies::default();
    for done in futures::future::join_all(clients_done).await {
        let (client_errors, client_latencies) = done.unwrap();
        errors += client_errors;
        latencies.0.extend(client_latencies);
    }
    let elapsed = started.elapsed();
    let (process_after, clients_after) = cpu_times();
    let client_cpu = clients_after.saturating_sub(clients_before);
    LoadParts {
        searches: clients * per_client,
        errors,
        elapsed,
        server_cpu: process_after
            .saturating_sub(process_before)
            .saturating_sub(client_cpu),
        client_cpu,
        latencies,
    }
}

/// Load rounds on several servers taking turns (`LOAD_ROUNDS` each, rotating which goes
/// first), so that all see the machine in the same state; each client sends `per_client`
/// searches to each server in all.
async fn load_side_by_side<const SIDES: usize>(
    clients_runtime: &tokio::runtime::Runtime,
    addrs: [&str; SIDES],
    queries: &Arc<Vec<String>>,
    clients: usize,
    per_client: usize,
) -> [LoadRun; SIDES] {
    let mut parts: [LoadParts; SIDES] = std::array::from_fn(|_| LoadParts::default());
    let per_round = per_client.div_ceil(LOAD_ROUNDS);
    for round in 0..LOAD_ROUNDS {
        let first_round = round * per_round;
        let count = per_round.min(per_client.saturating_sub(first_round));
        for turn in 0..SIDES {
            let side = (round + turn) % SIDES;
            let measured = load_round(
                clients_runtime,
                addrs[side],
                queries,
                clients,
                (first_round, count),
            )
            .await;
            parts[side].add(measured);
        }
    }
    parts.map(|parts| parts.run())
}

/// Turns each server takes in a load run.
const LOAD_ROUNDS: usize = 4;

/// One tantivy index opened in process, searched as a user of tantivy alone would.
struct Tantivy {
    parser: QueryParser,
    searcher: Searcher,
    /// Scores with these statistics instead of the index's own.
    statistics: Option<Arc<tierdex::node::statistics::CorpusStatistics>>,
}

impl Tantivy {
    fn open(dir: &Path) -> Tantivy {
        let index = Index::open_in_dir(dir).unwrap();
        let schema = index.schema();
        let fields = ["summary", "name"].map(|name| schema.get_field(name).unwrap());
        Tantivy {
            parser: QueryParser::for_index(&index, fields.to_vec()),
            searcher: index.reader().unwrap().searcher(),
            statistics: None,
        }
    }

    /// The index at `dir` (a tier), scored with the statistics of the index at `corpus` (every
    /// document of the version), as the node scores a tier.
    fn open_scored_as(dir: &Path, corpus: &Path) -> Tantivy {
        let mut tantivy = Tantivy::open(dir);
        let corpus = Index::open_in_dir(corpus)
            .unwrap()
            .reader()
            .unwrap()
            .searcher();
        tantivy.statistics = Some(Arc::new(
            tierdex::node::statistics::CorpusStatistics::new(vec![corpus]).unwrap(),
        ));
        tantivy
    }

    fn top_docs(&self, query: &dyn Query) -> Vec<(tantivy::Score, tantivy::DocAddress)> {
        let collector = TopDocs::with_limit(10).order_by_score();
        match &self.statistics {
            Some(statistics) => self
                .searcher
                .search_with_statistics_provider(query, &collector, statistics.as_ref())
                .unwrap(),
            None => self.searcher.search(query, &collector).unwrap(),
        }
    }

    /// Parse, `TopDocs` 10, read the 10 stored documents; with `count`, also count all hits.
    fn search(&self, query: &str, count: bool) {
        let parsed = self.parser.parse_query(query).unwrap();
        let top = self.top_docs(parsed.as_ref());
        if count {
            std::hint::black_box(self.searcher.search(&parsed, &Count).unwrap());
        }
        for (_, address) in top {
            let document: tantivy::TantivyDocument = self.searcher.doc(address).unwrap();
            std::hint::black_box(document);
        }
    }

    /// Mean ms of each step over `queries`: parse, `TopDocs`, reading the 10 documents.
    fn phase_means(&self, queries: &[String]) -> [f64; 3] {
        let mut sums = [Duration::ZERO; 3];
        for query in queries {
            let started = Instant::now();
            let parsed = self.parser.parse_query(query).unwrap();
            let parsed_at = Instant::now();
            let top = self.top_docs(parsed.as_ref());
            let searched_at = Instant::now();
            for (_, address) in top {
                let document: tantivy::TantivyDocument = self.searcher.doc(address).unwrap();
                std::hint::black_box(document);
            }
            sums[0] += parsed_at - started;
            sums[1] += searched_at - parsed_at;
            sums[2] += searched_at.elapsed();
        }
        sums.map(|sum| sum.as_secs_f64() * 1000.0 / queries.len() as f64)
    }

    fn run(&self, queries: &[String], count: bool) -> Latencies {
        let mut latencies = Latencies::default();
        for query in queries {
            let started = Instant::now();
            self.search(query, count);
            latencies.0.push(started.elapsed());
        }
        latencies
    }
}

/// The node's split searched by tantivy as a user of tantivy would: the hot and the cold index
/// (both local), each ranked with `TopDocs` and the whole corpus's statistics, their top 10s
/// merged by score. The page's documents are read from the monolithic index's doc store, as the
/// monolithic baseline reads them, so that only the ranking differs from that baseline: what
/// splitting the index costs tantivy itself.
struct SplitTantivy {
    /// Hot, then cold, each scored with the monolithic index's statistics.
    tiers: [Tantivy; 2],
    monolith: Searcher,
    /// Per tier, segment and document: the same document's address in the monolithic index.
    in_monolith: [Vec<Vec<tantivy::DocAddress>>; 2],
}

impl SplitTantivy {
    /// The tiers at `hot` and `cold`; the monolithic index at `monolith`. Documents are matched
    /// across indexes by their id (`name`).
    fn open(hot: &Path, cold: &Path, monolith: &Path) -> SplitTantivy {
        let tiers = [hot, cold].map(|tier| Tantivy::open_scored_as(tier, monolith));
        // One query parsed with the hot tier's parser serves both tiers: their searched fields
        // must be the same fields.
        for name in ["summary", "name"] {
            assert_eq!(
                tiers[0].searcher.schema().get_field(name).unwrap(),
                tiers[1].searcher.schema().get_field(name).unwrap(),
                "{name}: another field id in the cold index"
            );
        }
        let monolith = Index::open_in_dir(monolith)
            .unwrap()
            .reader()
            .unwrap()
            .searcher();
        let by_id: std::collections::HashMap<String, tantivy::DocAddress> =
            addresses(&monolith).into_iter().flatten().collect();
        let in_monolith = tiers.each_ref().map(|tier| {
            addresses(&tier.searcher)
                .into_iter()
                .map(|segment| segment.into_iter().map(|(id, _)| by_id[&id]).collect())
                .collect()
        });
        SplitTantivy {
            tiers,
            monolith,
            in_monolith,
        }
    }

    /// The top 10 of both tiers, best first, as addresses in the monolithic index.
    fn top_docs(&self, query: &dyn Query) -> Vec<(tantivy::Score, tantivy::DocAddress)> {
        let mut top: Vec<(tantivy::Score, tantivy::DocAddress)> = self
            .tiers
            .iter()
            .zip(&self.in_monolith)
            .flat_map(|(tier, in_monolith)| {
                tier.top_docs(query).into_iter().map(|(score, doc)| {
                    (
                        score,
                        in_monolith[doc.segment_ord as usize][doc.doc_id as usize],
                    )
                })
            })
            .collect();
        top.sort_by(|a, b| b.0.total_cmp(&a.0));
        top.truncate(10);
        top
    }
}

/// Each document of `searcher`'s index, per segment: its id (`name`, as the node reads it) and
/// its address.
fn addresses(searcher: &Searcher) -> Vec<Vec<(String, tantivy::DocAddress)>> {
    use tierdex::node::collector::{HitColumns, IdKind, TierName};
    let columns = HitColumns::open(searcher, "name", IdKind::Str, TierName::Hot).unwrap();
    searcher
        .segment_readers()
        .iter()
        .enumerate()
        .map(|(segment, reader)| {
            (0..reader.max_doc())
                .map(|doc| {
                    let address = tantivy::DocAddress::new(segment as u32, doc);
                    (columns.id_string(address), address)
                })
                .collect()
        })
        .collect()
}

/// The search step alone on the hot index, queries parsed beforehand: tantivy's `TopDocs` vs
/// the node's `TopHits` (ties broken by id), both top 10; and, for flat term queries, the
/// exact sums of the hits `TopHits` returned (what a fleet shard adds to every search).
fn run_collectors(hot_dir: &Path, queries: &[String]) -> (Latencies, Latencies, Latencies) {
    use tierdex::node::collector::{HitColumns, IdKind, TierName, TopHits};
    use tierdex::node::exact_sum::SummedTerms;
    let tantivy = Tantivy::open(hot_dir);
    let parsed: Vec<Box<dyn Query>> = queries
        .iter()
        .map(|query| tantivy.parser.parse_query(query).unwrap())
        .collect();
    let columns =
        Arc::new(HitColumns::open(&tantivy.searcher, "name", IdKind::Str, TierName::Hot).unwrap());
    let top_docs = TopDocs::with_limit(10).order_by_score();
    let (mut docs_latencies, mut hits_latencies) = (Latencies::default(), Latencies::default());
    let mut exact_latencies = Latencies::default();
    for query in &parsed {
        let started = Instant::now();
        std::hint::black_box(tantivy.searcher.search(query.as_ref(), &top_docs).unwrap());
        docs_latencies.0.push(started.elapsed());
        let summed = SummedTerms::of(query.as_ref());
        let top_hits = TopHits {
            limit: 10,
            tier: TierName::Hot,
            columns: columns.clone(),
            threshold: Arc::default(),
            profile: Arc::new(tierdex::ranking::RankProfile::bm25()),
            values: Arc::new(tierdex::ranking::values::TierValues::none()),
            // As the node ranks: near ties of the k-th kept for their exact sums.
            near_tie: summed.as_ref().map_or(0.0, SummedTerms::near_tie),
        };
        let started = Instant::now();
        let hits = tantivy.searcher.search(query.as_ref(), &top_hits).unwrap();
        hits_latencies.0.push(started.elapsed());
        if let Some(summed) = summed {
            let docs: Vec<tantivy::DocAddress> = hits.iter().map(|hit| hit.doc).collect();
            let started = Instant::now();
            std::hint::black_box(
                summed
                    .exact_scores(&tantivy.searcher, &docs, &tantivy.searcher)
                    .unwrap(),
            );
            exact_latencies.0.push(started.elapsed());
        }
    }
    (docs_latencies, hits_latencies, exact_latencies)
}

/// Each query's page of 10 documents read and converted as the node does, from `point` and
/// from `compact` (the same documents, another doc store layout), one query after the other,
/// which layout goes first alternating. Each searcher is fresh: its block cache holds only
/// what these queries read.
fn document_reads(
    point: &Tantivy,
    compact: &Tantivy,
    documents: &NodeDocuments,
    queries: &[String],
) -> (Latencies, Latencies) {
    let (mut point_latencies, mut compact_latencies) = (Latencies::default(), Latencies::default());
    let read_page = |tantivy: &Tantivy, query: &str| {
        let parsed = tantivy.parser.parse_query(query).unwrap();
        let top = tantivy.top_docs(parsed.as_ref());
        let started = Instant::now();
        for (_, address) in top {
            std::hint::black_box(documents.read(&tantivy.searcher, address));
        }
        started.elapsed()
    };
    for (at, query) in queries.iter().enumerate() {
        if at % 2 == 0 {
            point_latencies.0.push(read_page(point, query));
            compact_latencies.0.push(read_page(compact, query));
        } else {
            compact_latencies.0.push(read_page(compact, query));
            point_latencies.0.push(read_page(point, query));
        }
    }
    (point_latencies, compact_latencies)
}

/// Bytes of an index directory's doc store files (`*.store`) and of all its files.
fn doc_store_bytes(dir: &Path) -> (u64, u64) {
    let (mut store, mut all) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let size = entry.metadata().unwrap().len();
        all += size;
        if entry
            .path()
            .extension()
            .is_some_and(|extension| extension == "store")
        {
            store += size;
        }
    }
    (store, all)
}

/// Searches per second of `threads` threads sharing one searcher, each taking the next query.
/// Also the CPU time per search.
fn in_process_throughput(
    dir: &Path,
    queries: &[String],
    total: usize,
    threads: usize,
) -> (f64, Duration) {
    let tantivy = Tantivy::open(dir);
    let next = AtomicUsize::new(0);
    let (process_before, _) = cpu_times();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        break;
                    }
                    tantivy.search(&queries[index % queries.len()], false);
                }
            });
        }
    });
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let (process_after, _) = cpu_times();
    (
        rate,
        process_after.saturating_sub(process_before) / total as u32,
    )
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1048576.0 / elapsed.as_secs_f64()
}

fn row(name: &str, latencies: &Latencies) {
    println!(
        "| {name} | {:.3} | {:.3} |",
        latencies.p50(),
        latencies.p99()
    );
}

/// A run's server-side and end-to-end rows.
fn grpc_rows(name: &str, run: &GrpcRun) {
    row(&format!("{name}, server-side"), &run.server);
    row(&format!("{name}, through gRPC"), &run.end_to_end);
}

fn ratio_row(name: &str, p50: f64, p99: f64, goal: &str) {
    println!("| {name} | **{p50:.2}x** {goal} | {p99:.2}x |");
}

fn main() {
    let settings = settings();
    if settings.with_tracing {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .init();
    }
    default_bench_credentials();
    bench_runtime().block_on(run(settings));
}

async fn run(settings: Settings) {
    let server = S3Server::start();
    let s3 = server.store("bench", "").await;
    let started = Instant::now();
    let rules = std::fs::read_to_string(repo_root().join("benches/pypi/rules.toml")).unwrap();
    let mut options = pypi_options(&rules, "pypi");
    options.cold_compression = settings.cold_compression;
    let manifest = tierdex::builder::build(options, s3.clone())
        .await
        .unwrap()
        .manifest;
    println!(
        "built pypi into s3s-fs in {:.1} s: hot {} docs, cold {} docs",
        started.elapsed().as_secs_f64(),
        manifest.hot.docs,
        manifest.cold.docs
    );
    let monolith_store = tempfile::tempdir().unwrap();
    let (monolith_dir, monolith_docs) = build_pypi_monolith(monolith_store.path()).await;
    println!("built the monolithic index (every document hot): {monolith_docs} docs");
    // The same tiers once more, the hot one with tantivy's default doc store: what the
    // documents phase is compared with.
    let compact_store = tempfile::tempdir().unwrap();
    let mut compact_options = pypi_options(&rules, "pypi-compact");
    compact_options.hot_doc_store = tierdex::builder::HotDocStore::Compact;
    let compact_manifest =
        tierdex::builder::build(compact_options, local_store(compact_store.path()))
            .await
            .unwrap()
            .manifest;
    let compact_version = compact_store
        .path()
        .join("pypi-compact")
        .join(&compact_manifest.version);
    let compact_hot_dir = compact_version.join("hot");
    // The same split's cold index, local: what `SplitTantivy` searches beside the hot tier.
    let split_cold_dir = compact_version.join("cold/index");

    // Rehydration vs one single-stream GET of the same files.
    let index_files = index_file_keys(&manifest);
    let total_bytes: u64 = index_files.iter().map(|(_, size)| size).sum();
    let single = Instant::now();
    for (key, _) in &index_files {
        let data = s3.get(key).await.unwrap();
        std::hint::black_box(data.len());
    }
    let single_elapsed = single.elapsed();
    let data = tempfile::tempdir().unwrap();
    let rehydrating = Instant::now();
    // The node as deployed: its default block cache (not the tests' 64 MiB) and no plan checks.
    let node_settings = |node: &mut tierdex::config::Settings| {
        node.inline_postings = settings.inline_postings;
        node.cold_index = settings.cold_index.clone();
        node.cache_size = None;
        node.cold_plan_strict = None;
    };
    let node = TestNode::start_with(s3.clone(), &["pypi"], data.path(), node_settings).await;
    node.wait_ready().await;
    let rehydrate_elapsed = rehydrating.elapsed();
    println!(
        "rehydration: {} files, {:.1} MiB in {:.2} s = {:.0} MiB/s (both tiers ready, footers loaded); single-stream GET of the same files: {:.2} s = {:.0} MiB/s; ratio {:.2}x",
        index_files.len(),
        total_bytes as f64 / 1048576.0,
        rehydrate_elapsed.as_secs_f64(),
        mib_per_s(total_bytes, rehydrate_elapsed),
        single_elapsed.as_secs_f64(),
        mib_per_s(total_bytes, single_elapsed),
        single_elapsed.as_secs_f64() / rehydrate_elapsed.as_secs_f64()
    );

    let queries = web_queries(settings.queries);
    let mut client = node.client().await;
    let hot_dir = data.path().join("pypi").join(&manifest.version).join("hot");
    let hot_tantivy = Tantivy::open(&hot_dir);
    let hot_tantivy_corpus = Tantivy::open_scored_as(&hot_dir, &monolith_dir);
    let node_documents = Arc::new(NodeDocuments::new(&manifest));
    let monolith_tantivy = Tantivy::open(&monolith_dir);
    // Warm up every path once (page cache, allocator, block cache), then measure side by side.
    let warm_up = &queries[..queries.len().min(200)];
    hot_tantivy.run(warm_up, true);
    monolith_tantivy.run(warm_up, true);
    run_grpc(&mut client, warm_up, true).await;
    run_grpc(&mut client, &queries, false).await;
    let hot_bare_addr = serve_bare(
        BareIndex::One(Tantivy::open_scored_as(&hot_dir, &monolith_dir)),
        node_documents.clone(),
    )
    .await;
    let mut bare_client = pb::tierdex_client::TierdexClient::connect(hot_bare_addr)
        .await
        .unwrap();
    if settings.profile_seconds > 0 {
        // For a profiler: the node and tantivy behind the same gRPC server take turns on the
        // same searches: hot-only ones, or both tiers against the monolithic index.
        let both_tiers = settings.profile_both_tiers;
        if both_tiers {
            let index = if settings.profile_split {
                BareIndex::Split(SplitTantivy::open(&hot_dir, &split_cold_dir, &monolith_dir))
            } else {
                BareIndex::One(Tantivy::open(&monolith_dir))
            };
            let addr = serve_bare(index, node_documents.clone()).await;
            bare_client = pb::tierdex_client::TierdexClient::connect(addr)
                .await
                .unwrap();
        }
        println!(
            "profiling: {} searches, the node's then tantivy's behind gRPC",
            if both_tiers { "both-tier" } else { "hot-only" }
        );
        let until = Instant::now() + Duration::from_secs(settings.profile_seconds as u64);
        let some = &queries[..queries.len().min(100)];
        while Instant::now() < until {
            run_grpc(&mut client, some, !both_tiers).await;
            run_grpc(&mut bare_client, some, false).await;
        }
        return;
    }

    let hot_in_process = hot_tantivy.run(&queries, false);
    hot_tantivy_corpus.run(warm_up, false);
    let hot_in_process_corpus = hot_tantivy_corpus.run(&queries, false);
    let hot_in_process_counting = hot_tantivy.run(&queries, true);
    run_grpc(&mut bare_client, warm_up, false).await;
    let (hot, hot_bare) =
        run_grpc_side_by_side((&mut client, true), (&mut bare_client, false), &queries).await;
    let (hot_direct, hot_direct_stats) = run_direct(&node.node, &queries).await;
    let monolith_in_process = monolith_tantivy.run(&queries, false);
    let monolith_in_process_counting = monolith_tantivy.run(&queries, true);
    let monolith_bare_addr = serve_bare(
        BareIndex::One(Tantivy::open(&monolith_dir)),
        node_documents.clone(),
    )
    .await;
    let mut monolith_bare_client =
        pb::tierdex_client::TierdexClient::connect(monolith_bare_addr.clone())
            .await
            .unwrap();
    run_grpc(&mut monolith_bare_client, warm_up, false).await;
    // Tantivy over the node's own split (`SplitTantivy`): what the split costs tantivy itself,
    // apart from what the node adds. The three take turns on each query.
    let split = SplitTantivy::open(&hot_dir, &split_cold_dir, &monolith_dir);
    // The same work as the monolithic baseline: the same scores for every query, within the
    // rounding of tantivy's `f32` sums (its union adds a document's terms in an order that
    // depends on the index, which is why the node rescores near ties: `exact_sum`).
    let scores = |top: Vec<(tantivy::Score, tantivy::DocAddress)>| -> Vec<tantivy::Score> {
        top.into_iter().map(|(score, _)| score).collect()
    };
    let (mut same_scores, mut within_rounding) = (0, 0);
    for query in &queries {
        let split_scores =
            scores(split.top_docs(split.tiers[0].parser.parse_query(query).unwrap().as_ref()));
        let monolith_scores = scores(
            monolith_tantivy.top_docs(monolith_tantivy.parser.parse_query(query).unwrap().as_ref()),
        );
        if split_scores == monolith_scores {
            same_scores += 1;
        } else if split_scores.len() == monolith_scores.len()
            && split_scores
                .iter()
                .zip(&monolith_scores)
                .all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(b.abs()))
        {
            within_rounding += 1;
        }
    }
    println!(
        "tantivy over the two tiers: the monolithic index's top 10 scores for {same_scores} of {} queries, within f32 rounding for {within_rounding} more",
        queries.len()
    );
    let split_bare_addr = serve_bare(BareIndex::Split(split), node_documents.clone()).await;
    let mut split_bare_client = pb::tierdex_client::TierdexClient::connect(split_bare_addr.clone())
        .await
        .unwrap();
    run_grpc(&mut split_bare_client, warm_up, false).await;
    let [both, monolith_bare, split_bare]: [GrpcRun; 3] = run_grpc_rotating(
        &mut [
            (&mut client, false),
            (&mut monolith_bare_client, false),
            (&mut split_bare_client, false),
        ],
        &queries,
    )
    .await
    .try_into()
    .unwrap_or_else(|_| unreachable!("three sides"));
    let mut round_trip = Latencies::default();
    for _ in 0..queries.len() {
        let started = Instant::now();
        client.status(pb::StatusRequest {}).await.unwrap();
        round_trip.0.push(started.elapsed());
    }
    // The same in-process searches, each after an RPC round trip, as a node's searches come.
    let mut hot_paced = Latencies::default();
    for query in &queries {
        client.status(pb::StatusRequest {}).await.unwrap();
        let started = Instant::now();
        hot_tantivy.search(query, false);
        hot_paced.0.push(started.elapsed());
    }

    println!();
    println!(
        "| {} web queries, top 10, warm | p50 ms | p99 ms |",
        queries.len()
    );
    println!("|---|---|---|");
    row(
        "hot index in process (tantivy: parse, `TopDocs`, read 10 documents)",
        &hot_in_process,
    );
    row(
        "hot index in process, also counting all hits",
        &hot_in_process_counting,
    );
    row(
        "hot index in process, each search right after an RPC round trip",
        &hot_paced,
    );
    row(
        "hot index in process, scored with both tiers' statistics (as the node scores)",
        &hot_in_process_corpus,
    );
    grpc_rows("node, hot tier only", &hot);
    grpc_rows(
        "tantivy alone behind the same gRPC server, hot index",
        &hot_bare,
    );
    row(
        "node, hot tier only, `Node::search` called in process (no gRPC)",
        &hot_direct,
    );
    row(
        "monolithic index in process (tantivy: parse, `TopDocs`, read 10 documents)",
        &monolith_in_process,
    );
    row(
        "monolithic index in process, also counting all hits",
        &monolith_in_process_counting,
    );
    grpc_rows("node, both tiers", &both);
    grpc_rows(
        "tantivy alone behind the same gRPC server, monolithic index",
        &monolith_bare,
    );
    grpc_rows(
        "tantivy alone behind the same gRPC server, the node's two tiers (both local, `TopDocs` each, merged)",
        &split_bare,
    );
    row("gRPC round trip alone (Status RPC)", &round_trip);
    ratio_row(
        "hot only server-side / hot index in process",
        hot.server.p50() / hot_in_process.p50(),
        hot.server.p99() / hot_in_process.p99(),
        "(goal ≤ 1.1x)",
    );
    ratio_row(
        "both tiers server-side / monolithic in process",
        both.server.p50() / monolith_in_process.p50(),
        both.server.p99() / monolith_in_process.p99(),
        "(goal ≤ 1.2x)",
    );
    ratio_row(
        "both tiers through gRPC / (monolithic in process + round trip)",
        both.end_to_end.p50() / (monolith_in_process.p50() + round_trip.p50()),
        both.end_to_end.p99() / (monolith_in_process.p99() + round_trip.p99()),
        "(goal ≤ 1.2x)",
    );
    ratio_row(
        "hot only through gRPC / (hot index in process + round trip)",
        hot.end_to_end.p50() / (hot_in_process.p50() + round_trip.p50()),
        hot.end_to_end.p99() / (hot_in_process.p99() + round_trip.p99()),
        "",
    );
    println!();
    println!("| the same ratios against tantivy behind the same gRPC server | p50 | p99 |");
    println!("|---|---|---|");
    for (name, node_side, bare_side) in [
        ("hot only, server-side", &hot.server, &hot_bare.server),
        (
            "hot only, through gRPC",
            &hot.end_to_end,
            &hot_bare.end_to_end,
        ),
        (
            "both tiers, server-side",
            &both.server,
            &monolith_bare.server,
        ),
        (
            "both tiers, through gRPC",
            &both.end_to_end,
            &monolith_bare.end_to_end,
        ),
        (
            "both tiers, server-side, against tantivy over the same two tiers",
            &both.server,
            &split_bare.server,
        ),
        (
            "both tiers, through gRPC, against tantivy over the same two tiers",
            &both.end_to_end,
            &split_bare.end_to_end,
        ),
    ] {
        ratio_row(
            name,
            node_side.p50() / bare_side.p50(),
            node_side.p99() / bare_side.p99(),
            "",
        );
    }
    ratio_row(
        "tantivy over the two tiers / tantivy over the monolithic index, both behind the server, server-side (what the split costs tantivy)",
        split_bare.server.p50() / monolith_bare.server.p50(),
        split_bare.server.p99() / monolith_bare.server.p99(),
        "",
    );
    ratio_row(
        "hot only, `Node::search` in process / hot index in process",
        hot_direct.p50() / hot_in_process.p50(),
        hot_direct.p99() / hot_in_process.p99(),
        "",
    );
    ratio_row(
        "hot only, `Node::search` in process / hot index in process with both tiers' statistics",
        hot_direct.p50() / hot_in_process_corpus.p50(),
        hot_direct.p99() / hot_in_process_corpus.p99(),
        "",
    );
    let mean = |pick: fn(&pb::QueryStats) -> f64, responses: &[pb::SearchResponse]| {
        responses
            .iter()
            .map(|r| pick(r.stats.as_ref().unwrap()))
            .sum::<f64>()
            / responses.len() as f64
    };
    for (name, run) in [
        ("hot only", &hot),
        ("both tiers", &both),
        ("tantivy behind the same gRPC server, hot index", &hot_bare),
        (
            "tantivy behind the same gRPC server, monolithic index",
            &monolith_bare,
        ),
        (
            "tantivy behind the same gRPC server, the node's two tiers",
            &split_bare,
        ),
    ] {
        println!(
            "server-side means, {name}: parse {:.3} ms, search {:.3} ms, hot documents {:.3} ms, cold documents {:.3} ms, total {:.3} ms",
            mean(|s| s.parse_ms, &run.responses),
            mean(|s| s.search_ms, &run.responses),
            mean(|s| s.hot_fetch_ms, &run.responses),
            mean(|s| s.cold_fetch_ms, &run.responses),
            mean(|s| s.total_ms, &run.responses)
        );
    }
    let direct_mean = |pick: fn(&tierdex::node::search::SearchStats) -> f64| {
        hot_direct_stats.iter().map(pick).sum::<f64>() / hot_direct_stats.len() as f64
    };
    println!(
        "`Node::search` in process means, hot only: parse {:.3} ms, search {:.3} ms, hot documents {:.3} ms, total {:.3} ms",
        direct_mean(|s| s.parse_ms),
        direct_mean(|s| s.search_ms),
        direct_mean(|s| s.hot_fetch_ms),
        direct_mean(|s| s.total_ms)
    );
    for (name, tantivy) in [
        ("hot index", &hot_tantivy),
        ("hot index, both tiers' statistics", &hot_tantivy_corpus),
        ("monolithic index", &monolith_tantivy),
    ] {
        let [parse, search, documents] = tantivy.phase_means(&queries);
        println!(
            "tantivy in process means, {name}: parse {parse:.3} ms, search {search:.3} ms, documents {documents:.3} ms, total {:.3} ms",
            parse + search + documents
        );
    }
    let pages_with_cold = both
        .responses
        .iter()
        .filter(|response| {
            response
                .hits
                .iter()
                .any(|hit| hit.tier == pb::Tier::Cold as i32)
        })
        .count();
    println!(
        "{pages_with_cold} of {} pages hold cold documents",
        queries.len()
    );
    let metrics = node.node.metrics_text().await;
    let counted = |name: &str| metric_sum(&metrics, name, &[]);
    println!(
        "searches handed off their runtime worker (`inline_postings` {}): {} of {}",
        node.node.config().inline_postings,
        counted("tierdex_searches_handed_off_total"),
        counted("tierdex_searches_total")
    );
    println!(
        "hits rescored exactly (near ties of a flat term query): {} in {} searches",
        counted("tierdex_hits_rescored_exactly_total"),
        counted("tierdex_searches_total")
    );
    println!(
        "remote cold tier ranked or skipped straight from the cache's memory: {} searches; storage rounds of index reads: {}; cold skipped: {}",
        counted("tierdex_cold_searches_from_memory_total"),
        counted("tierdex_cold_index_rounds_total"),
        counted("tierdex_cold_searches_skipped_total")
    );

    let (top_docs, top_hits, exact_sums) = run_collectors(&hot_dir, &queries);
    println!();
    println!(
        "| the collector alone, in process, top 10 over the hot index | p50 ms | p99 ms | mean ms |"
    );
    println!("|---|---|---|---|");
    for (name, latencies) in [
        ("tantivy `TopDocs` (ties by address)", &top_docs),
        ("tierdex `TopHits` (ties by id)", &top_hits),
        (
            "exact sums of `TopHits`' hits, flat term queries only (a fleet shard's extra)",
            &exact_sums,
        ),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            latencies.p50(),
            latencies.p99(),
            latencies.mean()
        );
    }
    println!(
        "| ratio TopHits / TopDocs | {:.2}x | {:.2}x | {:.2}x |",
        top_hits.p50() / top_docs.p50(),
        top_hits.p99() / top_docs.p99(),
        top_hits.mean() / top_docs.mean()
    );

    // The documents phase alone, on queries this run has not searched before.
    let fresh = web_queries(settings.queries * 2).split_off(settings.queries);
    let (point_reads, compact_reads) = document_reads(
        &Tantivy::open(&hot_dir),
        &Tantivy::open(&compact_hot_dir),
        &node_documents,
        &fresh,
    );
    let (point_store, point_index) = doc_store_bytes(&hot_dir);
    let (compact_store_bytes, compact_index) = doc_store_bytes(&compact_hot_dir);
    println!();
    println!(
        "| the documents phase alone: a page's 10 hot documents read and converted as the node does, {} queries not searched before | p50 ms | p99 ms | mean ms | doc store MiB | hot index MiB |",
        fresh.len()
    );
    println!("|---|---|---|---|---|---|");
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    for (name, latencies, store, index) in [
        (
            "hot tier's doc store (uncompressed 4 KiB blocks, `point-reads`)",
            &point_reads,
            point_store,
            point_index,
        ),
        (
            "tantivy's default doc store (LZ4 16 KiB blocks, `compact`)",
            &compact_reads,
            compact_store_bytes,
            compact_index,
        ),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} |",
            latencies.p50(),
            latencies.p99(),
            latencies.mean(),
            mib(store),
            mib(index)
        );
    }
    println!(
        "| ratio point-reads / default | **{:.2}x** (goal ≤ 0.5x) | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
        point_reads.p50() / compact_reads.p50(),
        point_reads.p99() / compact_reads.p99(),
        point_reads.mean() / compact_reads.mean(),
        point_store as f64 / compact_store_bytes as f64,
        point_index as f64 / compact_index as f64
    );

    // Queries whose first page holds cold documents, on an empty cache.
    let cold_queries: Vec<String> = queries
        .iter()
        .zip(&both.responses)
        .filter(|(_, response)| {
            response
                .hits
                .iter()
                .any(|hit| hit.tier == pb::Tier::Cold as i32)
        })
        .map(|(query, _)| query.clone())
        .collect();
    node.stop().await;
    // The memory cache goes with the process; the disk tier's blocks would survive a restart.
    match std::fs::remove_dir_all(data.path().join(tierdex::node::DISK_CACHE_DIR)) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => panic!("{err}"),
        _ => {}
    }
    let node = TestNode::start_with(s3.clone(), &["pypi"], data.path(), node_settings).await;
    node.wait_ready().await;
    let mut client = node.client().await;
    let cold_start = run_grpc(&mut client, &cold_queries, false).await;
    // One storage round trip: a 16 KiB range GET of a cold parquet file through the same
    // client stack, at a different offset each time, one after another.
    let parquet_key = tierdex::format::layout::version_key(
        &manifest.index,
        &manifest.version,
        &manifest.cold.parquet_files[0].path,
    );
    let parquet_size = s3.size(&parquet_key).await.unwrap();
    let mut storage = Latencies::default();
    for attempt in 0..cold_queries.len().clamp(100, 1000) as u64 {
        let start = (attempt * 65_536 * 7) % (parquet_size - 16_384);
        let started = Instant::now();
        let bytes = s3
            .get_range(&parquet_key, start..start + 16_384)
            .await
            .unwrap();
        storage.0.push(started.elapsed());
        std::hint::black_box(bytes);
    }
    let requests: Vec<u64> = cold_start
        .responses
        .iter()
        .map(|r| r.stats.as_ref().unwrap().storage_requests)
        .collect();
    let bytes: Vec<u64> = cold_start
        .responses
        .iter()
        .map(|r| r.stats.as_ref().unwrap().storage_bytes)
        .collect();
    let cold_docs: usize = cold_start
        .responses
        .iter()
        .map(|r| {
            r.hits
                .iter()
                .filter(|hit| hit.tier == pb::Tier::Cold as i32)
                .count()
        })
        .sum();
    println!();
    println!(
        "| {} queries with cold documents on the page, empty cache | p50 ms | p99 ms |",
        cold_queries.len()
    );
    println!("|---|---|---|");
    row("one storage round trip (16 KiB range GET)", &storage);
    grpc_rows("node, both tiers", &cold_start);
    println!(
        "storage per cold query on the empty cache: {:.2} requests, {:.1} KiB on average ({} cold documents over {} queries = {:.1} per query; max {} requests)",
        requests.iter().sum::<u64>() as f64 / requests.len() as f64,
        bytes.iter().sum::<u64>() as f64 / bytes.len() as f64 / 1024.0,
        cold_docs,
        cold_start.responses.len(),
        cold_docs as f64 / cold_start.responses.len() as f64,
        requests.iter().max().unwrap()
    );

    if settings.load_clients == 0 {
        return;
    }
    // Load: concurrent clients, each its own connection, against the monolithic index searched
    // in process by 2 threads.
    let total = settings.load_clients * settings.load_queries;
    let (in_process, in_process_cpu) = in_process_throughput(&monolith_dir, &queries, total, 2);
    let queries = Arc::new(queries);
    let clients_runtime = client_runtime();
    let [node_load, bare_load, split_load] = load_side_by_side(
        &clients_runtime,
        [&node.addr, &monolith_bare_addr, &split_bare_addr],
        &queries,
        settings.load_clients,
        settings.load_queries,
    )
    .await;
    clients_runtime.shutdown_background();
    let micros = |cpu: Duration| cpu.as_secs_f64() * 1e6;
    // The rate the in-process CPU time per search allows on 2 cores (`LoadRun::server_bound`).
    let in_process_bound = 2.0 / in_process_cpu.as_secs_f64();
    println!();
    println!(
        "| throughput, {total} searches | searches/s | server CPU µs/search | client CPU µs/search | 2 cores / server CPU per search | latency under load, p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| monolithic index in process, 2 threads | {in_process:.0} | {:.1} | — | {:.0} | — |",
        micros(in_process_cpu),
        in_process_bound
    );
    for (name, run) in [
        ("node, both tiers", &node_load),
        (
            "tantivy alone behind the same gRPC server, monolithic index",
            &bare_load,
        ),
        (
            "tantivy alone behind the same gRPC server, the node's two tiers",
            &split_load,
        ),
    ] {
        println!(
            "| {name}, {} gRPC clients ({} errors) | {:.0} | {:.1} | {:.1} | {:.0} | {:.2} / {:.2} |",
            settings.load_clients,
            run.errors,
            run.searches_per_s,
            micros(run.server_cpu_per_search),
            micros(run.client_cpu_per_search),
            run.server_bound(2.0),
            run.latencies.p50(),
            run.latencies.p99()
        );
    }
    println!(
        "| ratio node / in process | **{:.2}x** (goal ≥ 0.7x) | | | **{:.2}x** (clients' CPU removed) |",
        node_load.searches_per_s / in_process,
        node_load.server_bound(2.0) / in_process_bound
    );
    let load_ratio = |name: &str, side: &LoadRun, baseline: &LoadRun| {
        println!(
            "| ratio {name} | **{:.2}x** | | | **{:.2}x** | {:.2}x / {:.2}x |",
            side.searches_per_s / baseline.searches_per_s,
            side.server_bound(2.0) / baseline.server_bound(2.0),
            side.latencies.p50() / baseline.latencies.p50(),
            side.latencies.p99() / baseline.latencies.p99()
        );
    };
    load_ratio(
        "node / tantivy behind the same gRPC server",
        &node_load,
        &bare_load,
    );
    load_ratio(
        "node / tantivy over the same two tiers behind the same gRPC server",
        &node_load,
        &split_load,
    );
    load_ratio(
        "tantivy over the two tiers / tantivy over the monolithic index (what the split costs tantivy)",
        &split_load,
        &bare_load,
    );
    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let cache = status.cache.unwrap();
    println!(
        "cache after load: {:.1} MiB used of {:.0} MiB, hit rate {:.3}",
        cache.used_bytes as f64 / 1048576.0,
        cache.capacity_bytes as f64 / 1048576.0,
        cache.hit_rate
    );
    for status in node.node.statuses() {
        let (pinned, resident) = status.cold_memory_bytes;
        println!(
            "remote cold index held in memory for good after load: {:.1} MiB pinned (hotcache), {:.1} MiB resident (norms, columns, dictionary blocks read)",
            pinned as f64 / 1048576.0,
            resident as f64 / 1048576.0
        );
    }
    node.stop().await;
}
