//! Builder throughput next to plain tantivy indexing of the same documents, in one run.
//!
//! ```text
//! cargo bench --bench build_vs_tantivy -- [--input F] [--schema F] [--rules F] [--runs N]
//! ```
//! (defaults: the PyPI catalog with `benches/pypi/{schema,rules}.toml`, 2 runs each.)
//!
//! Each measurement runs in a child process of this binary so that its peak RSS is its own
//! (read with `wait4`). Roles alternate (plain, tierdex, plain, tierdex, ...) so that machine
//! noise hits both. The plain run is what a user would write with tantivy alone: parse each JSON
//! line into a document of the same tantivy schema (all fields stored) and index it with the
//! same number of indexing threads and the same total memory budget as the builder's two tiers.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tierdex::builder::{self, BuildOptions};
use tierdex::rules::CompiledRules;
use tierdex::schema::IndexSchema;
use tierdex::store::LocalStore;

const ROLE_ENV: &str = "TIERDEX_BENCH_ROLE";
/// Per tier for the builder; the plain run gets both tiers' share.
const MEMORY_PER_TIER: usize = 256 * 1024 * 1024;
const THREADS_PER_TIER: usize = 1;

struct Settings {
    input: PathBuf,
    schema: PathBuf,
    rules: PathBuf,
    runs: usize,
}

fn settings() -> Settings {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut settings = Settings {
        input: root.join("../shared/data/pypi-packages.jsonl.gz"),
        schema: root.join("benches/pypi/schema.toml"),
        rules: root.join("benches/pypi/rules.toml"),
        runs: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--input" => settings.input = value().into(),
            "--schema" => settings.schema = value().into(),
            "--rules" => settings.rules = value().into(),
            "--runs" => settings.runs = value().parse().expect("--runs N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    settings
}

fn main() {
    let settings = settings();
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("plain") => println!("{}", plain_tantivy(&settings)),
        Ok("tierdex") => println!("{}", tierdex_build(&settings)),
        _ => compare(&settings),
    }
}

struct Measurement {
    docs: u64,
    seconds: f64,
    max_rss_bytes: u64,
}

// The child is reaped by `wait4` below, which also yields its resource usage.
#[allow(clippy::zombie_processes)]
fn measure(role: &str) -> Measurement {
    let started = Instant::now();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env(ROLE_ENV, role)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 reports the child's own resource usage, including its peak resident set.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{role} run failed"
    );
    let mut stdout = String::new();
    use std::io::Read;
    child.stdout.unwrap().read_to_string(&mut stdout).unwrap();
    Measurement {
        docs: stdout
            .trim()
            .parse()
            .expect("the child prints its document count"),
        seconds,
        max_rss_bytes: usage.ru_maxrss as u64 * 1024,
    }
}

fn compare(settings: &Settings) {
    println!(
        "input {} ({} runs each, {} indexing threads in all)",
        settings.input.display(),
        settings.runs,
        2 * THREADS_PER_TIER
    );
    let mut plain = Vec::new();
    let mut ours = Vec::new();
    for run in 0..settings.runs {
        let p = measure("plain");
        println!(
            "run {run} plain tantivy: {} docs {:.2} s {:.0} docs/s peak RSS {:.0} MiB",
            p.docs,
            p.seconds,
            p.docs as f64 / p.seconds,
            p.max_rss_bytes as f64 / 1048576.0
        );
        let t = measure("tierdex");
        println!(
            "run {run} tierdex build: {} docs {:.2} s {:.0} docs/s peak RSS {:.0} MiB",
            t.docs,
            t.seconds,
            t.docs as f64 / t.seconds,
            t.max_rss_bytes as f64 / 1048576.0
        );
        assert_eq!(p.docs, t.docs, "both index the same documents");
        plain.push(p);
        ours.push(t);
    }
    let best = |runs: &[Measurement]| {
        runs.iter()
            .map(|m| m.docs as f64 / m.seconds)
            .fold(0.0, f64::max)
    };
    let peak = |runs: &[Measurement]| runs.iter().map(|m| m.max_rss_bytes).max().unwrap_or(0);
    let (plain_rate, our_rate) = (best(&plain), best(&ours));
    println!();
    println!("| | docs/s (best of {}) | peak RSS |", settings.runs);
    println!("|---|---|---|");
    println!(
        "| plain tantivy | {plain_rate:.0} | {:.0} MiB |",
        peak(&plain) as f64 / 1048576.0
    );
    println!(
        "| tierdex build | {our_rate:.0} | {:.0} MiB |",
        peak(&ours) as f64 / 1048576.0
    );
    println!("| ratio | {:.2}× | |", our_rate / plain_rate);
}

fn load_schema(settings: &Settings) -> Arc<IndexSchema> {
    Arc::new(IndexSchema::from_toml_file(&settings.schema).unwrap())
}

/// tantivy alone: JSON line → document → index; commit and wait for merges.
fn plain_tantivy(settings: &Settings) -> u64 {
    let schema = load_schema(settings);
    let dir = tempfile::tempdir().unwrap();
    let index = tantivy::Index::create_in_dir(dir.path(), schema.hot_tantivy.clone()).unwrap();
    let mut writer: tantivy::IndexWriter = index
        .writer_with_num_threads(2 * THREADS_PER_TIER, 2 * MEMORY_PER_TIER)
        .unwrap();
    let reader: Box<dyn BufRead> = open_lines(&settings.input);
    let mut docs = 0u64;
    for line in reader.lines() {
        let line = line.unwrap();
        if line.trim().is_empty() {
            continue;
        }
        // tantivy rejects `null` for typed fields: drop them, as any user of it must.
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line).unwrap();
        object.retain(|_, value| !value.is_null());
        let document =
            tantivy::TantivyDocument::from_json_object(&schema.hot_tantivy, object).unwrap();
        writer.add_document(document).unwrap();
        docs += 1;
    }
    writer.commit().unwrap();
    writer.wait_merging_threads().unwrap();
    docs
}

fn open_lines(path: &Path) -> Box<dyn BufRead> {
    let file = std::fs::File::open(path).unwrap();
    if path.extension().is_some_and(|ext| ext == "gz") {
        Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(256 * 1024, file)),
        ))
    } else {
        Box::new(std::io::BufReader::with_capacity(256 * 1024, file))
    }
}

/// The builder, publishing into a local directory store.
fn tierdex_build(settings: &Settings) -> u64 {
    let schema = load_schema(settings);
    let rules_text = std::fs::read_to_string(&settings.rules).unwrap();
    let rules = Arc::new(CompiledRules::from_toml_str(&rules_text, "rules", &schema).unwrap());
    let store_dir = tempfile::tempdir().unwrap();
    let mut options = BuildOptions::new(
        schema,
        rules,
        rules_text,
        vec![settings.input.clone()],
        "bench".into(),
    );
    options.indexing_threads = THREADS_PER_TIER;
    options.indexing_memory = MEMORY_PER_TIER;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime
        .block_on(builder::build(
            options,
            Arc::new(LocalStore::new(store_dir.path()).unwrap()),
        ))
        .unwrap();
    eprintln!(
        "tierdex: hot {} cold {} ({:.1} s inside the builder)",
        summary.manifest.hot.docs, summary.manifest.cold.docs, summary.seconds
    );
    summary.manifest.input.docs
}
