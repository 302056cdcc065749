//! `tierdex rules` on the PyPI catalog with the TB05 web queries: how fast a log replays, and
//! what the suggested rules reach next to the version's rules and the greedy upper bound.
//!
//! ```text
//! cargo bench --bench rules -- [--plot-dir DIR] [--replay-only]
//!     [--orderings bm25,popular,quality_first,most_downloaded]
//! ```
//!
//! Builds PyPI with `benches/pypi/rules.toml` (`download_rank IS NOT NULL OR released >=
//! '2026-01'`, 34% hot) into a local directory store, and writes the TB05 file as a query log
//! (the `id:` prefix removed, nothing else): all 50,000 lines, the first 25,000 (train) and the
//! last 25,000 (holdout). Per ordering (BM25, the `popular` profile, the `most_downloaded`
//! profile): the replay of all 50,000 lines, timed; then `suggest` at a 10% budget and at the
//! version's own hot size, with pin lists, timed. Each figure comes from the library calls
//! the CLI makes (`load_version`, `rank_log`, `replay`, `suggest`). With `--plot-dir`, the
//! 10% curves are drawn there as `rules-curve-<ordering>.svg`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::*;
use tierdex::tuning::log::QueryLog;
use tierdex::tuning::pages::{PageOptions, rank_log};
use tierdex::tuning::replay::replay;
use tierdex::tuning::suggest::{Budget, Scored, SuggestOptions, suggest};
use tierdex::tuning::{load_version, plot};

struct Settings {
    plot_dir: Option<PathBuf>,
    /// Only the replays, no suggest (for a profiler).
    replay_only: bool,
    /// The orderings run: `bm25` or any profile of `benches/pypi/schema.toml` (`popular`,
    /// `quality_first`, `most_downloaded`); the first three by default.
    orderings: Vec<String>,
}

fn settings() -> Settings {
    let mut args = std::env::args().skip(1);
    let mut settings = Settings {
        plot_dir: None,
        replay_only: false,
        orderings: ["bm25", "popular", "most_downloaded"]
            .map(String::from)
            .to_vec(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plot-dir" => {
                settings.plot_dir = Some(PathBuf::from(args.next().expect("--plot-dir DIR")))
            }
            "--replay-only" => settings.replay_only = true,
            "--orderings" => {
                settings.orderings = args
                    .next()
                    .expect("--orderings bm25,popular,...")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    settings
}

fn main() {
    default_bench_credentials();
    bench_runtime().block_on(run(settings()));
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

fn describe(scored: &Scored) -> String {
    let mut rule = scored.hot.join(" OR ");
    if rule.is_empty() {
        rule = "(no rule)".into();
    }
    if scored.pins > 0 {
        rule = format!("{rule} + {} pinned", scored.pins);
    }
    format!(
        "{} docs: train {} / validation {} / holdout {} — {rule}",
        scored.hot_docs,
        percent(scored.train_hit_rate),
        percent(scored.validation_hit_rate),
        percent(scored.holdout_hit_rate)
    )
}

async fn run(settings: Settings) {
    let plot_dir = settings.plot_dir.clone();
    let store_dir = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path());
    let started = Instant::now();
    let manifest = build_pypi(store.clone()).await.manifest;
    println!(
        "built pypi in {:.1} s: hot {} docs, cold {} docs (rules {:?})",
        started.elapsed().as_secs_f64(),
        manifest.hot.docs,
        manifest.cold.docs,
        manifest.rules.hot
    );
    let logs = tempfile::tempdir().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(shared_data("web-queries-tb05.txt"))
        .unwrap()
        .lines()
        .map(|line| {
            line.split_once(':')
                .map_or(line, |(_, query)| query)
                .to_string()
        })
        .collect();
    let write = |name: &str, lines: &[String]| {
        let path = logs.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let all = write("tb05.log", &lines);
    let train = write("train.log", &lines[..lines.len() / 2]);
    let holdout = write("holdout.log", &lines[lines.len() / 2..]);

    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let version = load_version(store.clone(), "pypi", data.path())
        .await
        .unwrap();
    println!(
        "loaded the version (both tiers, rehydrated) in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    let corpus = manifest.hot.docs + manifest.cold.docs;
    for ordering in &settings.orderings {
        let profile = if ordering == "bm25" { "" } else { ordering };
        let options = PageOptions {
            limit: 10,
            profile: profile.to_string(),
            order_by: String::new(),
        };
        let started = Instant::now();
        let report = tokio::task::block_in_place(|| {
            let log = QueryLog::read(&all).unwrap();
            let ranked = rank_log(&version, log, &options, &|_| {}).unwrap();
            replay(&version, &ranked, 10).unwrap()
        });
        println!(
            "## {}: replay of {} lines in {:.1} s: hit rate {} (distinct {}), {} zero-result, cold docs/query {:.2}, requests/query on an empty cache {:.2} (p99 {}), {} lines not used",
            report.ranked_by,
            report.log_lines,
            started.elapsed().as_secs_f64(),
            percent(report.hit_rate),
            percent(report.unique_hit_rate),
            report.zero_result_queries,
            report.cold_documents_per_query.mean,
            report.storage_requests_per_query.mean,
            report.storage_requests_per_query.p99,
            report.problems.total
        );
        if settings.replay_only {
            continue;
        }
        let started = Instant::now();
        let (train_ranked, holdout_ranked) = tokio::task::block_in_place(|| {
            (
                rank_log(&version, QueryLog::read(&train).unwrap(), &options, &|_| {}).unwrap(),
                rank_log(
                    &version,
                    QueryLog::read(&holdout).unwrap(),
                    &options,
                    &|_| {},
                )
                .unwrap(),
            )
        });
        println!(
            "ranked train and holdout in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for budget in [Budget::Share(0.1), Budget::Docs(manifest.hot.docs)] {
            let started = Instant::now();
            let options = SuggestOptions {
                budget,
                pins: true,
                ..SuggestOptions::default()
            };
            let suggested = tokio::task::block_in_place(|| {
                suggest(&version, &train_ranked, &holdout_ranked, &options).unwrap()
            });
            println!(
                "suggest at {} docs ({}) in {:.1} s",
                suggested.budget_docs,
                percent(suggested.budget_docs as f64 / corpus as f64),
                started.elapsed().as_secs_f64()
            );
            let best_rule = suggested.candidates.iter().find(|c| c.pins == 0);
            let best_pinned = suggested.candidates.iter().find(|c| c.pins > 0);
            let pins_only = suggested
                .candidates
                .iter()
                .find(|c| c.pins > 0 && c.hot.is_empty());
            for (label, scored) in [
                ("best rule", best_rule),
                ("best rule + pins", best_pinned),
                ("pins alone", pins_only),
            ] {
                if let Some(scored) = scored {
                    println!("  {label}: {}", describe(scored));
                }
            }
            println!("  current rules: {}", describe(&suggested.current));
            let bound = &suggested.upper_bound;
            println!(
                "  upper bound (greedy on training pages): {} docs, train {} / holdout {}; ceiling (greedy on the holdout itself) {} ({} docs); holdout queries seen in train {}",
                bound.hot_docs,
                percent(bound.train_hit_rate),
                percent(bound.holdout_hit_rate),
                percent(bound.holdout_ceiling),
                bound.holdout_ceiling_docs,
                percent(suggested.holdout_seen_share)
            );
            if let (Budget::Share(_), Some(dir)) = (budget, &plot_dir) {
                let name = if profile.is_empty() { "bm25" } else { profile };
                let path = dir.join(format!("rules-curve-{name}.svg"));
                plot::draw(&suggested, &path).unwrap();
                println!("  curve: {}", path.display());
                for point in &suggested.curve {
                    println!(
                        "    budget {}: rule train {} holdout {}; rule + pins holdout {}; upper bound holdout {}; ceiling {}",
                        percent(point.budget_share),
                        percent(point.suggested.train_hit_rate),
                        percent(point.suggested.holdout_hit_rate),
                        point
                            .with_pins
                            .as_ref()
                            .map_or("-".into(), |scored| percent(scored.holdout_hit_rate)),
                        percent(point.upper_bound.holdout_hit_rate),
                        percent(point.upper_bound.holdout_ceiling)
                    );
                }
            }
        }
        println!();
    }
}
