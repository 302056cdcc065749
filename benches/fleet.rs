//! The cost of fan-out: the PyPI catalog built with 1 shard and served by one node, against the
//! same catalog built with 4 shards and served by a fleet of 1, 2 and 3 `tierdex serve`
//! processes on this machine, all in one run.
//!
//! ```text
//! cargo bench --bench fleet -- [--queries 2000] [--load-queries 4000] [--load-clients 64]
//!     [--replicas 1] [--only 1-4]
//! ```
//!
//! Each configuration gets the same TB05 queries (file order): a warm-up pass (every query
//! once, so that caches hold what the measured passes read), one client in sequence (latency
//! p50/p99), then `--load-clients` concurrent clients (searches/s, p50/p99). Clients spread
//! requests over the members, as a Kubernetes Service would. With `--replicas 1` (default) each
//! shard lives on one member, so a search fans out over the network to every other member that
//! holds a shard; with more replicas than members every member holds every shard and answers
//! alone. All processes share this machine's cores: the figures show what fan-out costs, not
//! what more machines would gain. Pages of the fleets are checked against the single node's.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tierdex::api::pb;

struct Settings {
    queries: usize,
    load_queries: usize,
    load_clients: usize,
    replicas: usize,
    /// Run only this configuration (1-4, as printed), for a profiler.
    only: Option<usize>,
}

fn settings() -> Settings {
    let mut settings = Settings {
        queries: 2000,
        load_queries: 4000,
        load_clients: 64,
        replicas: 1,
        only: None,
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
            "--load-queries" => settings.load_queries = value(),
            "--load-clients" => settings.load_clients = value(),
            "--replicas" => settings.replicas = value(),
            "--only" => settings.only = Some(value()),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    settings
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `members` processes serving `index` from `store` (a plain node when `fleet` is false).
fn start(
    store: &str,
    index: &str,
    members: usize,
    fleet: bool,
    replicas: usize,
    data: &std::path::Path,
) -> (Vec<Process>, Vec<String>) {
    let ids: Vec<String> = (0..members)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let processes = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_tierdex"));
            command
                .args(["serve", "--store", store, "--index", index, "--listen", id])
                .args(["--cache-size", "1GiB"])
                .arg("--data-dir")
                .arg(data.join(format!("{index}-{members}-{n}")))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if fleet {
                command
                    .args(["--peers", &ids.join(",")])
                    .args(["--replicas", &replicas.to_string()])
                    .args(["--fleet-refresh", "500ms"]);
            }
            Process(command.spawn().unwrap())
        })
        .collect();
    (processes, ids)
}

type Client = pb::tierdex_client::TierdexClient<tonic::transport::Channel>;

async fn clients(ids: &[String]) -> Vec<Client> {
    let mut clients = Vec::new();
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(client) = Client::connect(format!("http://{id}")).await {
                clients.push(client);
                break;
            }
            assert!(Instant::now() < deadline, "{id} did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    clients
}

/// Waits until every member answers from every shard, both tiers loaded.
async fn wait_ready(clients: &mut [Client], index: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    for client in clients.iter_mut() {
        loop {
            let answer = client
                .search(search_request(index, "python web framework", 10))
                .await;
            if let Ok(answer) = answer {
                let answer = answer.into_inner();
                if !answer.partial && !answer.degraded {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "not ready in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

struct Figures {
    p50: f64,
    p99: f64,
    load_p50: f64,
    load_p99: f64,
    per_second: f64,
    pages: Vec<Vec<pb::Value>>,
}

async fn measure(
    clients: Vec<Client>,
    index: &str,
    queries: &[String],
    settings: &Settings,
) -> Figures {
    // Warm-up: every query once (the measured passes read only what it read).
    let mut clients = clients;
    let members = clients.len();
    let mut pages = Vec::with_capacity(queries.len());
    for (n, query) in queries.iter().enumerate() {
        let answer = clients[n % members]
            .search(search_request(index, query, 10))
            .await
            .unwrap_or_else(|status| panic!("{query}: {status}"))
            .into_inner();
        assert!(!answer.partial, "{query}: {:?}", answer.missing_shards);
        pages.push(answer.hits.into_iter().filter_map(|hit| hit.id).collect());
    }
    let mut latencies = Vec::with_capacity(queries.len());
    for (n, query) in queries.iter().enumerate() {
        let started = Instant::now();
        clients[n % members]
            .search(search_request(index, query, 10))
            .await
            .unwrap();
        latencies.push(started.elapsed());
    }
    let next = Arc::new(AtomicUsize::new(0));
    let load_queries = settings.load_queries;
    let started = Instant::now();
    let tasks: Vec<_> = (0..settings.load_clients)
        .map(|task| {
            let mut client = clients[task % members].clone();
            let next = next.clone();
            let queries = queries.to_vec();
            let index = index.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= load_queries {
                        break latencies;
                    }
                    let query = &queries[n % queries.len()];
                    let sent = Instant::now();
                    client
                        .search(search_request(&index, query, 10))
                        .await
                        .unwrap();
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut under_load = Vec::new();
    for task in tasks {
        under_load.extend(task.await.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    Figures {
        p50: percentile_ms(&latencies, 0.50),
        p99: percentile_ms(&latencies, 0.99),
        load_p50: percentile_ms(&under_load, 0.50),
        load_p99: percentile_ms(&under_load, 0.99),
        per_second: load_queries as f64 / seconds,
        pages,
    }
}

fn main() {
    let settings = settings();
    default_bench_credentials();
    let runtime = bench_runtime();
    runtime.block_on(async {
        let work = tempfile::tempdir().unwrap();
        let store_dir = work.path().join("store");
        std::fs::create_dir_all(&store_dir).unwrap();
        let store = local_store(&store_dir);
        let rules = std::fs::read_to_string(repo_root().join("benches/pypi/rules.toml")).unwrap();
        let single = builder_run(&store, &rules, "pypi1", 1).await;
        let sharded = builder_run(&store, &rules, "pypi4", 4).await;
        eprintln!(
            "built: 1 shard in {:.1} s, 4 shards in {:.1} s ({} hot, {} cold)",
            single.seconds, sharded.seconds, sharded.manifest.hot.docs, sharded.manifest.cold.docs
        );
        let store_uri = store.uri().to_string();
        let queries = web_queries(settings.queries);
        let configurations: [(&str, &str, usize, bool); 4] = [
            ("1 shard, 1 node", "pypi1", 1, false),
            ("4 shards, 1 process", "pypi4", 1, true),
            ("4 shards, 2 processes", "pypi4", 2, true),
            ("4 shards, 3 processes", "pypi4", 3, true),
        ];
        let mut rows = Vec::new();
        let mut reference: Option<Vec<Vec<pb::Value>>> = None;
        for (number, (label, index, members, fleet)) in configurations.into_iter().enumerate() {
            if settings.only.is_some_and(|only| only != number + 1) {
                continue;
            }
            let (processes, ids) =
                start(&store_uri, index, members, fleet, settings.replicas, work.path());
            let mut connected = clients(&ids).await;
            wait_ready(&mut connected, index).await;
            let figures = measure(connected, index, &queries, &settings).await;
            match &reference {
                None => reference = Some(figures.pages.clone()),
                Some(pages) => {
                    let differing: Vec<usize> = pages
                        .iter()
                        .zip(&figures.pages)
                        .enumerate()
                        .filter(|(_, (one_node, fleet))| one_node != fleet)
                        .map(|(n, _)| n)
                        .collect();
                    for n in differing.iter().take(3) {
                        eprintln!(
                            "  differs: {:?}\n    one node: {:?}\n    fleet:    {:?}",
                            queries[*n], pages[*n], figures.pages[*n]
                        );
                    }
                    let differing = differing.len();
                    eprintln!("{label}: {differing} of {} pages differ from one node's", pages.len());
                }
            }
            eprintln!(
                "{label}: p50 {:.3} ms, p99 {:.3} ms; {} clients: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                figures.p50,
                figures.p99,
                settings.load_clients,
                figures.per_second,
                figures.load_p50,
                figures.load_p99
            );
            rows.push((label, figures));
            drop(processes);
        }
        let base = &rows[0].1;
        println!(
            "\n| serving | p50 ms | p99 ms | {c} clients: searches/s | vs 1 node | p50 ms | p99 ms |",
            c = settings.load_clients
        );
        println!("|---|---|---|---|---|---|---|");
        for (label, figures) in &rows {
            println!(
                "| {label} | {:.3} | {:.3} | {:.0} | {:.2}× | {:.2} | {:.2} |",
                figures.p50,
                figures.p99,
                figures.per_second,
                figures.per_second / base.per_second,
                figures.load_p50,
                figures.load_p99
            );
        }
        println!(
            "\n{} queries (TB05, file order), replicas {}, one warm-up pass each",
            queries.len(),
            settings.replicas
        );
    });
}

async fn builder_run(
    store: &Arc<dyn tierdex::store::BlobStore>,
    rules: &str,
    index: &str,
    shards: u32,
) -> tierdex::builder::BuildSummary {
    let mut options = pypi_options(rules, index);
    options.shards = shards;
    tierdex::builder::build(options, store.clone())
        .await
        .unwrap()
}
