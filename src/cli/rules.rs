//! `tierdex rules`: replay a query log against a version, suggest rules.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tierdex::node::version::LoadedVersion;
use tierdex::store::open_store;
use tierdex::tuning::log::QueryLog;
use tierdex::tuning::pages::{PageOptions, RankedLog, rank_log};
use tierdex::tuning::replay::{ReplayReport, replay};
use tierdex::tuning::suggest::{Budget, Scored, SuggestOptions, SuggestReport, suggest};
use tierdex::tuning::{load_version, plot};
use tierdex::units::format_bytes;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Run a query log against the current version as the node ranks it: the share of queries
    /// answered by the hot tier alone, cold reads, and which rule brought in the hot documents.
    Replay(ReplayArgs),
    /// Propose hot-tier rules for a budget from a training log, scored on a holdout log.
    Suggest(SuggestArgs),
}

#[derive(Args)]
pub struct VersionArgs {
    /// Where the index is published: a directory, file:///dir, or s3://bucket/prefix.
    #[arg(long)]
    store: String,
    #[arg(long)]
    index: String,
    /// Where the version's index files are kept: a node's data dir is reused (verified files
    /// are not downloaded again) [default: a temporary directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Results per page.
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// A rank profile of the schema [default: `[ranking.default]`, else BM25].
    #[arg(long, default_value = "")]
    profile: String,
    /// `"<field> DESC|ASC"`, overriding --profile.
    #[arg(long, default_value = "")]
    order_by: String,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    /// No progress bar even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    version: VersionArgs,
    /// The query log: one query per line, or `count<TAB>query`.
    #[arg(long)]
    queries: PathBuf,
}

#[derive(Args)]
pub struct SuggestArgs {
    #[command(flatten)]
    version: VersionArgs,
    /// The log rules are chosen on.
    #[arg(long)]
    train: PathBuf,
    /// The log they are scored on (never used to choose).
    #[arg(long)]
    holdout: PathBuf,
    /// Hot documents allowed: a share of the corpus (`10%`) or a count.
    #[arg(long, default_value = "10%")]
    budget: String,
    /// Conditions ANDed in one clause of a rule.
    #[arg(long, default_value_t = 3)]
    max_conditions: usize,
    /// Draw hit rate against hot budget (1, 2, 5, 10, 20%) as an SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Also propose rules completed by a pin list (the training pages' documents the rule
    /// leaves out, within the budget), and write the best one's ids to this file, for the
    /// rules file's `hot_ids`.
    #[arg(long)]
    pins: Option<PathBuf>,
}

pub async fn run(command: RulesCommand) -> Result<ExitCode> {
    match command {
        RulesCommand::Replay(args) => run_replay(args).await,
        RulesCommand::Suggest(args) => run_suggest(args).await,
    }
}

/// The loaded version, and the temporary data dir that must outlive it.
async fn open(args: &VersionArgs) -> Result<(Arc<LoadedVersion>, Option<tempfile::TempDir>)> {
    let store = open_store(&args.store).await?;
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::tempdir().context("creating a temporary data dir")?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let version = load_version(store, &args.index, &data_dir).await?;
    Ok((version, temporary))
}

fn page_options(args: &VersionArgs) -> PageOptions {
    PageOptions {
        limit: args.limit,
        profile: args.profile.clone(),
        order_by: args.order_by.clone(),
    }
}

/// Ranks a log off the runtime, with a bar on a terminal.
async fn rank(
    version: &Arc<LoadedVersion>,
    log: QueryLog,
    options: PageOptions,
    args: &VersionArgs,
    label: &str,
) -> Result<RankedLog> {
    let bar = if !args.no_progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some(log.queries.len() as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} queries {per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    } else {
        ProgressBar::hidden()
    };
    let version = version.clone();
    let shown = bar.clone();
    let ranked = tokio::task::spawn_blocking(move || {
        rank_log(&version, log, &options, &|done| shown.inc(done))
    })
    .await??;
    bar.finish_and_clear();
    Ok(ranked)
}

async fn run_replay(args: ReplayArgs) -> Result<ExitCode> {
    let log = QueryLog::read(&args.queries)?;
    let (version, _data_dir) = open(&args.version).await?;
    let ranked = rank(
        &version,
        log,
        page_options(&args.version),
        &args.version,
        "replay",
    )
    .await?;
    let report = replay(&version, &ranked, args.version.limit)?;
    if args.version.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_replay(&report, &args.queries.display().to_string());
    }
    Ok(ExitCode::SUCCESS)
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

fn print_replay(report: &ReplayReport, source: &str) {
    println!(
        "{} version {}, ranked by {}, first page of {}",
        report.index, report.version, report.ranked_by, report.limit
    );
    println!(
        "hot tier: {} documents, cold tier: {} documents ({} hot)",
        report.hot_docs,
        report.cold_docs,
        percent(report.hot_docs as f64 / (report.hot_docs + report.cold_docs).max(1) as f64)
    );
    println!(
        "{source}: {} lines, {} queries replayed ({} distinct), {} lines not used",
        report.log_lines, report.queries, report.unique_queries, report.problems.total
    );
    println!(
        "hit rate (page holds no cold document): {} of queries, {} of distinct queries",
        percent(report.hit_rate),
        percent(report.unique_hit_rate)
    );
    println!(
        "  queries without results (counted as hits): {}; cold search skipped: {}",
        report.zero_result_queries,
        percent(report.cold_skip_rate)
    );
    let cold = &report.cold_documents_per_query;
    println!(
        "cold documents per query: mean {:.2}, p50 {}, p99 {}, max {}",
        cold.mean, cold.p50, cold.p99, cold.max
    );
    let requests = &report.storage_requests_per_query;
    println!(
        "storage requests per query on an empty cache ({} blocks): mean {:.2}, p50 {}, p99 {}, max {}",
        format_bytes(report.block_size),
        requests.mean,
        requests.p50,
        requests.p99,
        requests.max
    );
    println!("hot documents on pages, by the first rule selecting them:");
    println!("  {:>12} {:>10}  rule", "page slots", "documents");
    for rule in &report.rules {
        let label = match (rule.rule.as_str(), rule.evaluable) {
            ("none", _) => {
                "none of the rules (pinned by hot_ids, or selected by a rule reading a field without a fast column)"
                    .to_string()
            }
            (entry, true) => format!("{entry} {}", rule.expression),
            (entry, false) => format!(
                "{entry} {} (not evaluable: reads a field without a fast column)",
                rule.expression
            ),
        };
        println!("  {:>12} {:>10}  {label}", rule.page_slots, rule.documents);
    }
    if report.problems.total > 0 {
        println!(
            "lines not used: {} blank, {} unreadable, {} queries that do not parse",
            report.problems.blank, report.problems.unreadable, report.problems.query
        );
        for problem in &report.problems.lines {
            println!("  {source}:{}: {}", problem.line, problem.message);
        }
        if report.problems.total as usize > report.problems.lines.len() {
            println!(
                "  ... (--json lists the first {})",
                report.problems.lines.len()
            );
        }
    }
}

async fn run_suggest(args: SuggestArgs) -> Result<ExitCode> {
    let options = SuggestOptions {
        budget: Budget::parse(&args.budget)?,
        max_conditions: args.max_conditions,
        pins: args.pins.is_some(),
        ..SuggestOptions::default()
    };
    let train_log = QueryLog::read(&args.train)?;
    let holdout_log = QueryLog::read(&args.holdout)?;
    let (version, _data_dir) = open(&args.version).await?;
    let pages = page_options(&args.version);
    let train = rank(&version, train_log, pages.clone(), &args.version, "train").await?;
    let holdout = rank(&version, holdout_log, pages, &args.version, "holdout").await?;
    let mut report = {
        let version = version.clone();
        tokio::task::spawn_blocking(move || suggest(&version, &train, &holdout, &options)).await??
    };
    let best_pinned = report
        .candidates
        .iter_mut()
        .find(|candidate| candidate.pins > 0);
    if let (Some(path), Some(pinned)) = (&args.pins, best_pinned) {
        let mut text = pinned.pinned_ids.join("\n");
        text.push('\n');
        std::fs::write(path, text)
            .with_context(|| format!("writing the pin list {}", path.display()))?;
        pinned.hot_ids = Some(path.display().to_string());
    }
    if let Some(path) = &args.plot {
        plot::draw(&report, path)?;
    }
    if args.version.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_suggest(&report);
        if let Some(path) = &args.plot {
            println!("curve drawn in {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_scored(label: &str, scored: &Scored) {
    println!(
        "{label}: {} hot documents, hit rate train {} validation {} holdout {}",
        scored.hot_docs,
        percent(scored.train_hit_rate),
        percent(scored.validation_hit_rate),
        percent(scored.holdout_hit_rate)
    );
    if !scored.hot.is_empty() {
        println!("  hot = [");
        for expression in &scored.hot {
            println!(
                "    {},",
                serde_json::to_string(expression).unwrap_or_default()
            );
        }
        println!("  ]");
    }
}

fn print_suggest(report: &SuggestReport) {
    println!(
        "{} version {}, ranked by {}: {} documents, budget {} ({})",
        report.index,
        report.version,
        report.ranked_by,
        report.corpus_docs,
        report.budget_docs,
        percent(report.budget_docs as f64 / report.corpus_docs.max(1) as f64)
    );
    for (name, log) in [("train", &report.train), ("holdout", &report.holdout)] {
        println!(
            "{name} {}: {} queries ({} distinct), {} lines not used",
            log.source, log.queries, log.unique_queries, log.lines_not_used
        );
    }
    println!(
        "holdout queries also in the training log: {}",
        percent(report.holdout_seen_share)
    );
    if report.candidates.is_empty() {
        println!("no rule within the budget makes any training query a hit");
    }
    for (at, candidate) in report.candidates.iter().enumerate() {
        print_scored(
            &format!("candidate {} ({})", at + 1, candidate.chosen_by),
            candidate,
        );
    }
    if !report.candidates.is_empty() {
        println!(
            "  best candidate on holdout queries seen in training: {}, unseen: {}",
            percent(report.holdout_hit_rate_seen),
            percent(report.holdout_hit_rate_unseen)
        );
    }
    print_scored("current rules", &report.current);
    let bound = &report.upper_bound;
    println!(
        "upper bound (no rule: the greedy choice of whole training pages): {} documents, hit rate train {} holdout {}",
        bound.hot_docs,
        percent(bound.train_hit_rate),
        percent(bound.holdout_hit_rate),
    );
    println!(
        "  ceiling (the same greedy on the holdout log itself, knowing its queries): {} with {} documents",
        percent(bound.holdout_ceiling),
        bound.holdout_ceiling_docs
    );
    println!("budget curve, holdout hit rates (best rule; with a pin list; upper bound; ceiling):");
    for point in &report.curve {
        println!(
            "  {:>6} {:>9} docs: rule {:>6}; with pins {:>6}; bound {:>6}; ceiling {:>6}",
            percent(point.budget_share),
            point.budget_docs,
            percent(point.suggested.holdout_hit_rate),
            point
                .with_pins
                .as_ref()
                .map_or("-".to_string(), |scored| percent(scored.holdout_hit_rate)),
            percent(point.upper_bound.holdout_hit_rate),
            percent(point.upper_bound.holdout_ceiling)
        );
    }
    if !report.fields_not_used.is_empty() {
        println!(
            "fields without conditions (text, or not fast): {}",
            report.fields_not_used.join(", ")
        );
    }
}
