//! The `tierdex` command: a thin layer of flags over the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tierdex::api::shards::GrpcShards;
use tierdex::api::{client, pb};
use tierdex::builder::{self, BuildOptions, BuildSummary, Progress};
use tierdex::config::{LogFormat, NodeConfig, Settings};
use tierdex::fleet::Fleet;
use tierdex::format::Manifest;
use tierdex::node::Node;
use tierdex::published;
use tierdex::rules::CompiledRules;
use tierdex::sample;
use tierdex::schema::IndexSchema;
use tierdex::server;
use tierdex::store::{open_serving_store, open_store};
use tierdex::tls::ServerTls;
use tierdex::units::{format_bytes, parse_bytes};

mod cli {
    pub mod rules;
}

// Per-thread heaps: every runtime worker allocates for the searches it runs (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tierdex",
    version,
    about = "A tiered search index: hot tier local, cold tier in object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Split documents by rules into a hot index and a cold tier, and publish a new version.
    Build(BuildArgs),
    /// Print the current version's manifest summary; with --verify, check every checksum.
    Inspect(InspectArgs),
    /// Serve indexes over gRPC: rehydrate from the store, hot tier first.
    Serve(Box<ServeArgs>),
    /// Run one search against a serving node.
    Query(QueryArgs),
    /// Print a serving node's status: versions, tiers, cache, storage.
    Status(StatusArgs),
    /// Remove old versions and the leftovers of interrupted builds from a store.
    Gc(GcArgs),
    /// Generate a sample corpus, build it into a local store and serve it.
    Quickstart(QuickstartArgs),
    /// Measure and choose hot-tier rules from a query log.
    #[command(subcommand)]
    Rules(cli::rules::RulesCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Settings file (TOML, the keys below with underscores); flags and TIERDEX_* variables
    /// override it.
    #[arg(long, env = "TIERDEX_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    /// Where `settings` came from, for errors: the file, once `read_config` merged it in.
    #[arg(skip)]
    source: String,
}

impl ServeArgs {
    /// Lays the flags over the settings file's keys, in place; returns the log format they ask
    /// for (logging starts after this, with it).
    fn read_config(&mut self) -> Result<LogFormat> {
        let flags = std::mem::take(&mut self.settings);
        self.settings = match &self.config {
            Some(path) => Settings::from_toml_file(path)?.overridden_by(flags),
            None => flags,
        };
        self.source = self
            .config
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "flags".into());
        Ok(LogFormat::parse(
            self.settings.log_format.as_deref(),
            &self.source,
        )?)
    }
}

#[derive(Args)]
struct GcArgs {
    /// Where the index is published: a directory, file:///dir, or s3://bucket/prefix.
    #[arg(long)]
    store: String,
    #[arg(long)]
    index: String,
    /// Complete versions to keep, newest first; the one CURRENT names is always kept.
    #[arg(long)]
    keep: usize,
    /// Keep every version younger than this, e.g. 1h: nodes still serving the previous version
    /// read its cold files until they switch, and builds in progress have no manifest yet.
    #[arg(long, default_value = "1h")]
    older_than: String,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// The node's address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Print the Status answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: client::TlsOptions,
}

#[derive(Args)]
struct QueryArgs {
    /// The node's address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// The index to search [default: the node's only index].
    #[arg(long, default_value = "")]
    index: String,
    #[arg(long, default_value_t = 10)]
    limit: u32,
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Search the hot tier only.
    #[arg(long)]
    hot_only: bool,
    /// Count every matching document (a second pass); totals are lower bounds without it.
    #[arg(long)]
    count: bool,
    /// Stored fields to return (repeat); all by default.
    #[arg(long = "field")]
    fields: Vec<String>,
    /// A rank profile of the index's schema (`[ranking.NAME]`); `bm25` for plain BM25.
    #[arg(long, default_value = "")]
    profile: String,
    /// Sort by a numeric or date fast field instead: 'field DESC' or 'field ASC'.
    #[arg(long, default_value = "")]
    order_by: String,
    /// Print exactly one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: client::TlsOptions,
    /// tantivy query syntax: terms, "phrases", AND/OR/NOT, field:value, field:[a TO b].
    query: String,
}

#[derive(Args)]
struct QuickstartArgs {
    /// Working directory for the sample, its schema and rules, and the store.
    #[arg(long, default_value = "tierdex-quickstart")]
    dir: PathBuf,
    /// Number of sample documents.
    #[arg(long, default_value_t = 20_000)]
    docs: u64,
    /// Address to serve the sample on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// Build only; do not serve.
    #[arg(long)]
    no_serve: bool,
}

#[derive(Args)]
struct BuildArgs {
    /// Schema file (TOML).
    #[arg(long)]
    schema: PathBuf,
    /// Rules file (TOML): `hot = ["<sql expression>", ...]`.
    #[arg(long)]
    rules: PathBuf,
    /// Input files: .jsonl/.ndjson/.json or .csv (optionally .gz), or .parquet.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Where to publish: a directory, file:///dir, or s3://bucket/prefix.
    #[arg(long)]
    store: String,
    /// Index name.
    #[arg(long)]
    index: String,
    /// Count and skip bad input records instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
    /// Checksum block size, also the node's cache block size.
    #[arg(long, default_value = "64KiB", value_parser = parse_bytes)]
    block_size: u64,
    /// Indexing threads per tier.
    #[arg(long, default_value_t = 1)]
    indexing_threads: usize,
    /// tantivy indexing memory per tier.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    indexing_memory: u64,
    /// Parent directory for the local staging directory (default: the system temp dir).
    #[arg(long)]
    staging_dir: Option<PathBuf>,
    /// Compression of cold pages: `lz4` (fastest to read) or `zstd` (smallest files).
    #[arg(long, default_value = "lz4")]
    cold_compression: tierdex::builder::ColdCompression,
    /// How the hot tier stores its documents: `point-reads` (uncompressed 4 KiB blocks: a
    /// page's documents read without decompressing) or `compact` (tantivy's LZ4 16 KiB
    /// blocks: smaller, slower to read).
    #[arg(long, default_value = "point-reads")]
    hot_doc_store: tierdex::builder::HotDocStore,
    /// Never show the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Write CURRENT even if another build published since this one started (for stores
    /// without conditional writes, when only one builder ever runs).
    #[arg(long)]
    unconditional_publish: bool,
    /// Split the documents into this many shards by a fixed hash of their id, each a complete
    /// hot/cold split, to be served by a fleet (`serve --peers`). 1: not sharded.
    #[arg(long, default_value_t = 1)]
    shards: u32,
}

#[derive(Args)]
struct InspectArgs {
    #[arg(long)]
    store: String,
    #[arg(long)]
    index: String,
    /// Re-read every file and check its checksums; exit non-zero on any mismatch.
    #[arg(long)]
    verify: bool,
    /// Print the whole manifest as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // `serve` reads its settings file before logging starts: the log format is a setting. The
    // other commands follow TIERDEX_LOG_FORMAT, the variable `serve` reads too.
    let log_format = match &mut cli.command {
        Command::Serve(args) => args.read_config(),
        _ => LogFormat::parse(
            std::env::var("TIERDEX_LOG_FORMAT").ok().as_deref(),
            "TIERDEX_LOG_FORMAT",
        )
        .map_err(anyhow::Error::from),
    };
    let log_format = match log_format {
        Ok(format) => format,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let default_log = match cli.command {
        Command::Serve(_) | Command::Quickstart(_) => "info",
        _ => "warn",
    };
    init_logging(default_log, log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Build(args) => run_build(args).await,
            Command::Inspect(args) => run_inspect(args).await,
            Command::Serve(args) => run_serve(*args).await,
            Command::Query(args) => run_query(args).await,
            Command::Status(args) => run_status(args).await,
            Command::Gc(args) => run_gc(args).await,
            Command::Quickstart(args) => run_quickstart(args).await,
            Command::Rules(command) => cli::rules::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (else `default_filter`). Colour codes only on a
/// terminal: in a file or a pipe they are noise a log shipper stores.
fn init_logging(default_filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields (message included) at the top level, as shippers index them.
        LogFormat::Json => builder.with_ansi(false).json().flatten_event(true).init(),
    }
}

async fn run_build(args: BuildArgs) -> Result<ExitCode> {
    let schema = Arc::new(IndexSchema::from_toml_file(&args.schema)?);
    let rules_text = std::fs::read_to_string(&args.rules)
        .with_context(|| format!("reading rules {}", args.rules.display()))?;
    // Rules are checked against the schema before any input is read.
    let rules = Arc::new(CompiledRules::from_toml_str(
        &rules_text,
        &args.rules.display().to_string(),
        &schema,
    )?);
    let store = open_store(&args.store).await?;
    let mut options = BuildOptions::new(schema, rules, rules_text, args.input, args.index);
    options.skip_invalid = args.skip_invalid;
    options.block_size = args.block_size;
    options.indexing_threads = args.indexing_threads;
    options.indexing_memory =
        usize::try_from(args.indexing_memory).context("--indexing-memory is too large")?;
    options.staging_parent = args.staging_dir;
    options.cold_compression = args.cold_compression;
    options.hot_doc_store = args.hot_doc_store;
    options.unconditional_publish = args.unconditional_publish;
    options.shards = args.shards;
    if !args.no_progress && std::io::stderr().is_terminal() {
        options.progress = Progress::stderr();
    }
    let summary = builder::build(options, store).await?;
    print_build_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

fn print_build_summary(summary: &BuildSummary) {
    let manifest = &summary.manifest;
    println!(
        "built {} version {} in {}",
        manifest.index, manifest.version, summary.store_uri
    );
    print_tiers(manifest);
    if summary.invalid_examples.is_empty() {
        println!("  invalid records  none");
    } else {
        println!(
            "  invalid records  {} skipped; the first:",
            manifest.input.invalid_skipped
        );
        for example in &summary.invalid_examples {
            println!("    {example}");
        }
    }
    println!(
        "  time             {:.2} s ({:.0} docs/s)",
        summary.seconds,
        summary.docs_per_second()
    );
}

fn print_tiers(manifest: &Manifest) {
    println!(
        "  documents        {} (hot {}, cold {})",
        manifest.input.docs, manifest.hot.docs, manifest.cold.docs
    );
    println!(
        "  hot tier         {} docs, index {}",
        manifest.hot.docs,
        format_bytes(manifest.hot.index_bytes)
    );
    println!(
        "  cold tier        {} docs, index {} + parquet {} in {} file(s)",
        manifest.cold.docs,
        format_bytes(manifest.cold.index_bytes),
        format_bytes(manifest.cold.parquet_bytes),
        manifest.cold.parquet_files.len()
    );
    if manifest.input.ignored_fields.is_empty() {
        println!("  ignored fields   none");
    } else {
        let ignored: Vec<String> = manifest
            .input
            .ignored_fields
            .iter()
            .map(|(name, docs)| format!("{name} ({docs} docs)"))
            .collect();
        println!("  ignored fields   {}", ignored.join(", "));
    }
}

async fn run_inspect(args: InspectArgs) -> Result<ExitCode> {
    let store = open_store(&args.store).await?;
    let manifest = published::read_current_manifest(store.as_ref(), &args.index).await?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&manifest.encode()).trim_end());
    } else {
        println!(
            "index {} version {} (format {}, built {} by tierdex {})",
            manifest.index,
            manifest.version,
            manifest.format_version,
            manifest.created_at,
            manifest.builder_version
        );
        print_tiers(&manifest);
        if let Some(shards) = &manifest.shards {
            println!(
                "  shards           {} ({}), statistics in {}",
                shards.count, shards.hash, shards.doc_freqs
            );
        }
        println!("  rules            {}", manifest.rules.hot.join(" | "));
        println!(
            "  files            {} ({}), block size {}",
            manifest.files.len(),
            format_bytes(manifest.files.iter().map(|file| file.size).sum()),
            format_bytes(manifest.block_size)
        );
    }
    if !args.verify {
        return Ok(ExitCode::SUCCESS);
    }
    let report = published::verify(store, &manifest).await;
    if report.problems.is_empty() {
        println!(
            "verified {} files, {}: all checksums match",
            report.files,
            format_bytes(report.bytes)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &report.problems {
            println!("MISMATCH {problem}");
        }
        println!(
            "verification failed: {} problem(s) in {} files",
            report.problems.len(),
            report.files
        );
        Ok(ExitCode::FAILURE)
    }
}

async fn run_quickstart(args: QuickstartArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let documents = dir.join("sample.jsonl");
    let schema_path = dir.join("schema.toml");
    let rules_path = dir.join("rules.toml");
    sample::write_documents(&documents, args.docs).context("writing the sample documents")?;
    std::fs::write(&schema_path, sample::SCHEMA)?;
    std::fs::write(&rules_path, sample::RULES)?;
    println!(
        "wrote {} sample documents, a schema and rules to {}",
        args.docs,
        dir.display()
    );
    let store_dir = dir.join("store");
    let store_arg = store_dir.display().to_string();
    run_build(BuildArgs {
        schema: schema_path.clone(),
        rules: rules_path.clone(),
        input: vec![documents.clone()],
        store: store_arg.clone(),
        index: "sample".into(),
        skip_invalid: false,
        block_size: tierdex::format::DEFAULT_BLOCK_SIZE,
        indexing_threads: 1,
        indexing_memory: 128 * 1024 * 1024,
        staging_dir: None,
        cold_compression: Default::default(),
        hot_doc_store: Default::default(),
        no_progress: false,
        unconditional_publish: false,
        shards: 1,
    })
    .await?;
    if args.no_serve {
        println!("  tierdex inspect --store {store_arg} --index sample --verify");
        return Ok(ExitCode::SUCCESS);
    }
    let addr = format!("http://{}", args.listen);
    println!();
    println!("serving index `sample` on {addr} (Ctrl-C to stop). Try, in another terminal:");
    println!("  tierdex query --addr {addr} --index sample \"compression index\"");
    println!(
        "  tierdex query --addr {addr} --index sample --json --limit 3 'title:cache AND citations:[10 TO 40]'"
    );
    println!("  tierdex query --addr {addr} --index sample --hot-only 'tags:search'");
    println!("  tierdex inspect --store {store_arg} --index sample --verify");
    println!();
    run_serve(ServeArgs {
        config: None,
        source: "quickstart".into(),
        settings: Settings {
            store: Some(store_arg),
            indexes: Some(vec!["sample".into()]),
            listen: Some(args.listen),
            data_dir: Some(dir.join("data")),
            cache_size: Some("256MiB".into()),
            ..Settings::default()
        },
    })
    .await
}

/// `args` as `read_config` left them: the file's settings and the flags merged.
async fn run_serve(args: ServeArgs) -> Result<ExitCode> {
    let config = NodeConfig::resolve(args.settings, &args.source)?;
    // Every certificate, key and CA file is read now: a bad one stops the node here, named.
    let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
    let peer_tls = match (&tls, &config.tls) {
        (Some(server), Some(files)) if config.fleet.is_some() => Some(server.peer_client(files)?),
        _ => None,
    };
    let store = open_serving_store(&config.store).await?;
    let replica = match &config.replica_store {
        Some(uri) => Some(open_serving_store(uri).await?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening for metrics on {address}"))?,
        ),
        None => None,
    };
    let node = Node::new(config, store, replica)?;
    let loader = node.clone();
    tokio::spawn(async move { loader.run().await });
    if let Some(listener) = metrics_listener {
        // Ends with the process, after the gRPC server has drained.
        tokio::spawn(server::run_metrics(
            listener,
            node.clone(),
            std::future::pending(),
        ));
    }
    let fleet = node.config().fleet.clone().map(|config| {
        let shards = match peer_tls {
            Some(tls) => GrpcShards::with_tls(tls),
            None => GrpcShards::new(),
        };
        let fleet = Fleet::new(node.clone(), &config, shards);
        tokio::spawn(fleet.clone().run());
        fleet
    });
    server::run_member(listener, node, fleet, tls, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

async fn run_gc(args: GcArgs) -> Result<ExitCode> {
    let older_than = tierdex::units::parse_duration(&args.older_than)
        .map_err(|err| anyhow::anyhow!("--older-than: {err}"))?;
    let store = open_store(&args.store).await?;
    let options = tierdex::lifecycle::GcOptions {
        keep: args.keep,
        older_than,
        dry_run: args.dry_run,
    };
    let report = tierdex::lifecycle::gc(
        store.as_ref(),
        &args.index,
        options,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!("{}: CURRENT names {}", report.index, report.current);
    let print = |label: &str, version: &tierdex::lifecycle::VersionFiles, incomplete: &str| {
        println!(
            "  {label} {} ({} objects, {}){}",
            version.version,
            version.objects,
            format_bytes(version.bytes),
            if version.complete { "" } else { incomplete }
        );
    };
    for version in &report.kept {
        print("kept    ", version, ", incomplete: too young to remove");
    }
    for version in &report.removed {
        print(verb, version, ", leftover of an unfinished build");
    }
    for name in &report.unrecognized {
        println!("  left alone {}/{name}/ (not a version id)", report.index);
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_status(args: StatusArgs) -> Result<ExitCode> {
    let status = client::status(&args.addr, &args.tls)
        .await
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", client::status_json(&status));
    } else {
        println!("{}", client::status_text(&status));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_query(args: QueryArgs) -> Result<ExitCode> {
    let request = pb::SearchRequest {
        index: args.index,
        query: args.query,
        limit: args.limit,
        offset: args.offset,
        fields: args.fields,
        tiers: if args.hot_only {
            pb::Tiers::HotOnly as i32
        } else {
            pb::Tiers::All as i32
        },
        count_total_hits: args.count,
        profile: args.profile,
        order_by: args.order_by,
    };
    let response = client::search(&args.addr, &args.tls, request)
        .await
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", client::response_json(&response));
    } else {
        println!("{}", client::response_table(&response, args.offset));
    }
    Ok(ExitCode::SUCCESS)
}
