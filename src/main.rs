//! The `tierdex` command: a thin layer of flags over the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tierdex::builder::{self, BuildOptions, BuildSummary, Progress};
use tierdex::format::Manifest;
use tierdex::published;
use tierdex::rules::CompiledRules;
use tierdex::sample;
use tierdex::schema::IndexSchema;
use tierdex::store::open_store;
use tierdex::units::{format_bytes, parse_bytes};

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
    /// Generate a sample corpus, build it into a local store and show what was built.
    Quickstart(QuickstartArgs),
}

#[derive(Args)]
struct QuickstartArgs {
    /// Working directory for the sample, its schema and rules, and the store.
    #[arg(long, default_value = "tierdex-quickstart")]
    dir: PathBuf,
    /// Number of sample documents.
    #[arg(long, default_value_t = 20_000)]
    docs: u64,
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
    /// Never show the progress bar.
    #[arg(long)]
    no_progress: bool,
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
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Build(args) => run_build(args).await,
            Command::Inspect(args) => run_inspect(args).await,
            Command::Quickstart(args) => run_quickstart(args).await,
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
        no_progress: false,
    })
    .await?;
    println!();
    println!("next:");
    println!("  tierdex inspect --store {store_arg} --index sample --verify");
    println!(
        "  tierdex build --schema {} --rules {} --input {} --store {store_arg} --index sample",
        schema_path.display(),
        rules_path.display(),
        documents.display()
    );
    Ok(ExitCode::SUCCESS)
}
