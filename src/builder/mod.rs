//! The offline builder: input files → rules → a hot tantivy index, cold parquet files and a
//! cold tantivy index in a local staging directory → an immutable version in the store.
//!
//! Threads: one reads and decodes input (`input`), the calling thread evaluates rules and makes
//! tantivy documents, tantivy's own threads index each tier, and one thread encodes parquet
//! (`cold`). Memory is bounded by the batch size, the channels between stages and tantivy's
//! memory budget, whatever the input size; the one structure that grows with the input is the
//! set of id hashes used to reject duplicate ids (8 bytes per document).

pub mod input;

mod cold;
mod cold_remote;
mod documents;
mod hot_doc_store;
mod progress;
mod publish;
mod stats;
pub mod term_dictionaries;

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use arrow::array::UInt32Array;
use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{filter_record_batch, not, take_record_batch};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use arrow::error::ArrowError;
use parquet::errors::ParquetError;
use tantivy::{Index, IndexWriter, TantivyDocument};
use tracing::{info, info_span};

use crate::format::addr::MAX_ROWS_PER_FILE;
use crate::format::layout::{self, COLD_INDEX_DIR, HOT_DIR};
use crate::format::manifest::{ColdTier, HotTier, InputSummary, ParquetFile};
use crate::format::shard::{
    CorpusTotals, DOC_FREQS_PATH, SHARD_HASH, ShardInfo, ShardSet, shard_dir, shard_of,
};
use crate::format::{DocAddr, FORMAT_VERSION, Manifest, version};
use crate::ranking::ValueRange;
use crate::rules::{BudgetSelector, CompiledRules, HotCut, RankPosition, RulesError};
use crate::schema::{FieldType, IndexSchema};
use crate::store::{BlobStore, StoreError};

pub use cold::ColdCompression;
pub use hot_doc_store::HotDocStore;
pub use input::{InputError, InputFormat, InputStats, ReadError};
pub use progress::Progress;
pub use publish::{Replaces, publish_version};

/// Each shard holds writers and a parquet thread while the build runs.
pub const MAX_SHARDS: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildErrorKind {
    /// A bad input record (strict mode) or an unreadable input file.
    Input,
    Rules,
    /// A rank profile of the schema that does not check.
    Ranking,
    Store,
    /// tantivy failed while indexing.
    Index,
    /// Encoding the cold parquet files failed.
    Parquet,
    /// Local I/O: the staging directory.
    Io,
    /// Options that cannot work (bad index name, a version that exists).
    Invalid,
    /// Another build published first; or the store cannot publish conditionally.
    Conflict,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("bad input: {0}")]
    Input(InputError),
    #[error("cannot read input {0}")]
    Read(String),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Ranking(#[from] crate::ranking::RankingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("indexing failed: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("writing cold parquet failed: {0}")]
    Parquet(#[from] ParquetError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// CURRENT changed while the build ran (another builder), or cannot be written safely.
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl BuildError {
    pub fn kind(&self) -> BuildErrorKind {
        match self {
            BuildError::Input(_) | BuildError::Read(_) => BuildErrorKind::Input,
            BuildError::Rules(_) => BuildErrorKind::Rules,
            BuildError::Ranking(_) => BuildErrorKind::Ranking,
            BuildError::Store(_) => BuildErrorKind::Store,
            BuildError::Index(_) => BuildErrorKind::Index,
            BuildError::Parquet(_) => BuildErrorKind::Parquet,
            BuildError::Io { .. } => BuildErrorKind::Io,
            BuildError::Invalid(_) => BuildErrorKind::Invalid,
            BuildError::Conflict(_) => BuildErrorKind::Conflict,
            BuildError::Internal(_) => BuildErrorKind::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> BuildError {
        BuildError::Invalid(message.into())
    }

    pub(crate) fn internal(message: impl Into<String>) -> BuildError {
        BuildError::Internal(message.into())
    }
}

impl From<ReadError> for BuildError {
    fn from(err: ReadError) -> BuildError {
        match err {
            ReadError::Invalid(input) => BuildError::Input(input),
            ReadError::Io { file, message } => BuildError::Read(format!("{file}: {message}")),
        }
    }
}

impl From<ArrowError> for BuildError {
    fn from(err: ArrowError) -> BuildError {
        BuildError::Internal(format!("arrow: {err}"))
    }
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub schema: Arc<IndexSchema>,
    pub rules: Arc<CompiledRules>,
    /// The rules file's text, kept in the manifest.
    pub rules_text: String,
    pub inputs: Vec<PathBuf>,
    pub index: String,
    pub skip_invalid: bool,
    pub block_size: u64,
    /// Indexing threads per tier.
    pub indexing_threads: usize,
    /// tantivy memory budget per tier, in bytes.
    pub indexing_memory: usize,
    /// Where the staging directory goes (default: the system temp directory).
    pub staging_parent: Option<PathBuf>,
    pub cold_compression: cold::ColdCompression,
    /// How the hot tier stores its documents.
    pub hot_doc_store: HotDocStore,
    pub progress: Progress,
    /// Write CURRENT without checking that it still names what it named when the build
    /// started: for stores without conditional writes, with one builder at a time.
    pub unconditional_publish: bool,
    /// Shards of the version (1: not sharded, today's layout).
    pub shards: u32,
}

impl BuildOptions {
    pub fn new(
        schema: Arc<IndexSchema>,
        rules: Arc<CompiledRules>,
        rules_text: String,
        inputs: Vec<PathBuf>,
        index: String,
    ) -> BuildOptions {
        BuildOptions {
            schema,
            rules,
            rules_text,
            inputs,
            index,
            skip_invalid: false,
            block_size: crate::format::DEFAULT_BLOCK_SIZE,
            indexing_threads: 1,
            indexing_memory: 256 * 1024 * 1024,
            staging_parent: None,
            cold_compression: cold::ColdCompression::default(),
            hot_doc_store: HotDocStore::default(),
            progress: Progress::hidden(),
            unconditional_publish: false,
            shards: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildSummary {
    pub store_uri: String,
    pub manifest: Manifest,
    pub invalid_examples: Vec<InputError>,
    pub seconds: f64,
}

impl BuildSummary {
    pub fn docs_per_second(&self) -> f64 {
        self.manifest.input.docs as f64 / self.seconds.max(1e-9)
    }
}

/// Builds and publishes a new version of `options.index` into `store`.
pub async fn build(
    options: BuildOptions,
    store: Arc<dyn BlobStore>,
) -> Result<BuildSummary, BuildError> {
    let started = Instant::now();
    layout::check_index_name(&options.index).map_err(BuildError::Invalid)?;
    if options.block_size == 0 {
        return Err(BuildError::invalid("block size must be positive"));
    }
    if options.inputs.is_empty() {
        return Err(BuildError::invalid("no input files"));
    }
    if options.shards == 0 || options.shards > MAX_SHARDS {
        return Err(BuildError::invalid(format!(
            "--shards {} is out of range: use 1 to {MAX_SHARDS}",
            options.shards
        )));
    }
    // A version whose profiles do not check would not load on a node: refuse it before any
    // input is read.
    crate::ranking::RankProfiles::compile(&options.schema, &options.schema.source_name)?;
    for path in &options.inputs {
        InputFormat::detect(path).map_err(BuildError::Read)?;
        if !path.is_file() {
            return Err(BuildError::Read(format!(
                "{}: no such file",
                path.display()
            )));
        }
    }
    // What CURRENT names now is what this build replaces: if another build publishes first,
    // this one must not overwrite it.
    let replaces = if options.unconditional_publish {
        publish::Replaces::unconditionally()
    } else {
        publish::Replaces::read(store.as_ref(), &options.index).await?
    };
    let staging_parent = options
        .staging_parent
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let staging = tempfile::Builder::new()
        .prefix("tierdex-build-")
        .tempdir_in(&staging_parent)
        .map_err(|err| {
            BuildError::io(
                format!(
                    "creating a staging directory in {}",
                    staging_parent.display()
                ),
                err,
            )
        })?;
    let staging_path = staging.path().to_path_buf();
    let split_options = options.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _span = info_span!("split", index = %split_options.index).entered();
        split(&split_options, &staging_path)
    })
    .await
    .map_err(|err| BuildError::internal(format!("split task: {err}")))??;

    let sharded = outcome.shards.len() > 1;
    options.progress.set_stage("statistics");
    let stats_started = Instant::now();
    let (corpus, value_ranges) = {
        let roots: Vec<PathBuf> = outcome
            .shards
            .iter()
            .map(|shard| shard.root.clone())
            .collect();
        let staging_path = staging.path().to_path_buf();
        let schema = options.schema.clone();
        tokio::task::spawn_blocking(move || lookup_artifacts(&roots, &staging_path, &schema))
            .await
            .map_err(|err| BuildError::internal(format!("statistics task: {err}")))??
    };
    info!(
        seconds = stats_started.elapsed().as_secs_f64(),
        "statistics, term bounds and hotcaches written"
    );
    let staged = publish::staged_files(staging.path())
        .map_err(|err| BuildError::io("listing the staging directory", err))?;
    let size_under = |dir: &str| -> u64 {
        staged
            .iter()
            .filter(|(relative, _)| relative.starts_with(&format!("{dir}/")))
            .filter_map(|(_, path)| std::fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum()
    };
    let now = time::OffsetDateTime::now_utc();
    let schema = &options.schema;
    let multi_valued_fields = schema
        .spec
        .fields
        .iter()
        .enumerate()
        .filter(|(index, field)| {
            field.field_type == FieldType::Keyword
                && *index != schema.id_index
                && outcome.stats.saw_array[*index]
        })
        .map(|(_, field)| field.name.clone())
        .collect();
    // A shard's tiers as its manifest describes them; paths relative to the version.
    let tiers_of = |shard: usize, outcome: &ShardOutcome| -> (HotTier, ColdTier) {
        let prefix = if sharded {
            format!("{}/", shard_dir(shard as u32))
        } else {
            String::new()
        };
        let parquet_files: Vec<ParquetFile> = outcome
            .parquet
            .iter()
            .map(|file| ParquetFile {
                path: format!("{prefix}{}", file.path),
                rows: file.rows,
                row_groups: file.row_groups,
            })
            .collect();
        let parquet_bytes = outcome
            .parquet
            .iter()
            .filter_map(|file| std::fs::metadata(outcome.root.join(&file.path)).ok())
            .map(|meta| meta.len())
            .sum();
        (
            HotTier {
                docs: outcome.hot_docs,
                index_bytes: size_under(&format!("{prefix}{HOT_DIR}")),
            },
            ColdTier {
                docs: outcome.cold_docs,
                index_bytes: size_under(&format!("{prefix}{COLD_INDEX_DIR}")),
                parquet_bytes,
                parquet_files,
                parquet_layout: cold::layout_description(options.cold_compression),
                value_ranges: value_ranges[shard].clone(),
            },
        )
    };
    let per_shard: Vec<(HotTier, ColdTier)> = outcome
        .shards
        .iter()
        .enumerate()
        .map(|(shard, outcome)| tiers_of(shard, outcome))
        .collect();
    let hot = HotTier {
        docs: per_shard.iter().map(|(hot, _)| hot.docs).sum(),
        index_bytes: per_shard.iter().map(|(hot, _)| hot.index_bytes).sum(),
    };
    let cold = ColdTier {
        docs: per_shard.iter().map(|(_, cold)| cold.docs).sum(),
        index_bytes: per_shard.iter().map(|(_, cold)| cold.index_bytes).sum(),
        parquet_bytes: per_shard.iter().map(|(_, cold)| cold.parquet_bytes).sum(),
        parquet_files: per_shard
            .iter()
            .flat_map(|(_, cold)| cold.parquet_files.clone())
            .collect(),
        parquet_layout: cold::layout_description(options.cold_compression),
        // Each shard's manifest has its own; the version's covers every shard.
        value_ranges: merged_ranges(&value_ranges),
    };
    let shard_set = corpus.map(|corpus| ShardSet {
        count: outcome.shards.len() as u32,
        hash: SHARD_HASH.to_string(),
        corpus,
        doc_freqs: DOC_FREQS_PATH.to_string(),
    });
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        index: options.index.clone(),
        version: version::new_version_id(),
        created_at: version::rfc3339(now),
        builder_version: env!("CARGO_PKG_VERSION").to_string(),
        schema: schema.spec.clone(),
        multi_valued_fields,
        rules: options.rules.spec.clone(),
        rules_text: options.rules_text.clone(),
        block_size: options.block_size,
        hot,
        cold,
        input: InputSummary {
            files: options
                .inputs
                .iter()
                .map(|path| path.display().to_string())
                .collect(),
            docs: per_shard
                .iter()
                .map(|(hot, cold)| hot.docs + cold.docs)
                .sum(),
            invalid_skipped: outcome.stats.invalid,
            ignored_fields: outcome.stats.ignored_fields.clone(),
        },
        files: Vec::new(),
        shards: shard_set.clone(),
        shard: None,
    };
    let shard_manifests: Vec<Manifest> = match &shard_set {
        Some(set) => per_shard
            .into_iter()
            .enumerate()
            .map(|(shard, (hot, cold))| Manifest {
                hot,
                cold,
                shards: None,
                shard: Some(ShardInfo {
                    shard: shard as u32,
                    count: set.count,
                    corpus: set.corpus.clone(),
                    doc_freqs: set.doc_freqs.clone(),
                }),
                ..manifest.clone()
            })
            .collect(),
        None => Vec::new(),
    };
    options.progress.set_stage("uploading");
    let manifest = publish::publish_version(
        store.clone(),
        staging.path(),
        manifest,
        shard_manifests,
        &replaces,
    )
    .await?;
    options.progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    info!(
        index = %manifest.index,
        version = %manifest.version,
        hot = manifest.hot.docs,
        cold = manifest.cold.docs,
        seconds,
        "build done"
    );
    Ok(BuildSummary {
        store_uri: store.uri().to_string(),
        manifest,
        invalid_examples: outcome.stats.invalid_examples,
        seconds,
    })
}

struct SplitOutcome {
    /// One per shard, in shard order.
    shards: Vec<ShardOutcome>,
    stats: InputStats,
}

struct ShardOutcome {
    root: PathBuf,
    hot_docs: u64,
    cold_docs: u64,
    parquet: Vec<cold::WrittenParquet>,
}

/// Reads every input on its own thread; batches arrive through the returned channel.
fn read_inputs(
    options: &BuildOptions,
    bytes_read: Arc<AtomicU64>,
) -> (
    Receiver<input::InputBatch>,
    JoinHandle<Result<InputStats, ReadError>>,
) {
    let (sender, receiver) = sync_channel(2);
    let context = input::ReadContext {
        schema: options.schema.clone(),
        skip_invalid: options.skip_invalid,
        bytes_read,
    };
    let inputs = options.inputs.clone();
    let fields = options.schema.spec.fields.len();
    let thread = std::thread::Builder::new()
        .name("input".into())
        .spawn(move || {
            let mut stats = InputStats::new(fields);
            for (file_index, path) in inputs.iter().enumerate() {
                let mut reader = input::open(path, file_index as u32, &context)?;
                while let Some(batch) = reader.next_batch(&mut stats)? {
                    if batch.batch.num_rows() > 0 && sender.send(batch).is_err() {
                        // The consumer stopped; its error is what gets reported.
                        return Ok(stats);
                    }
                }
            }
            Ok(stats)
        })
        .expect("spawn the input thread");
    (receiver, thread)
}

fn join_reader(
    thread: JoinHandle<Result<InputStats, ReadError>>,
) -> Result<InputStats, BuildError> {
    thread
        .join()
        .map_err(|_| BuildError::internal("the input thread panicked"))?
        .map_err(BuildError::from)
}

/// Rejects documents whose id was seen before (by 64-bit hash of the id).
struct IdSet {
    seen: HashSet<u64>,
    file_names: Vec<String>,
}

impl IdSet {
    fn new(options: &BuildOptions) -> IdSet {
        IdSet {
            seen: HashSet::new(),
            file_names: options
                .inputs
                .iter()
                .map(|path| path.display().to_string())
                .collect(),
        }
    }

    fn dedupe(
        &mut self,
        mut input: input::InputBatch,
        id_column: usize,
        skip_invalid: bool,
        stats: &mut InputStats,
    ) -> Result<input::InputBatch, BuildError> {
        let ids = input.batch.column(id_column).clone();
        let mut duplicates = Vec::new();
        for row in 0..ids.len() {
            let mut hasher = DefaultHasher::new();
            let shown = match ids.data_type() {
                DataType::UInt64 => {
                    let value = ids.as_primitive::<UInt64Type>().value(row);
                    value.hash(&mut hasher);
                    value.to_string()
                }
                DataType::Int64 => {
                    let value = ids.as_primitive::<Int64Type>().value(row);
                    value.hash(&mut hasher);
                    value.to_string()
                }
                _ => {
                    let value = ids.as_string::<i32>().value(row);
                    value.hash(&mut hasher);
                    String::new()
                }
            };
            if !self.seen.insert(hasher.finish()) {
                let shown = if shown.is_empty() {
                    format!("\"{}\"", ids.as_string::<i32>().value(row))
                } else {
                    shown
                };
                stats
                    .invalid(
                        skip_invalid,
                        InputError {
                            file: self.file_names[input.file as usize].clone(),
                            line: input.lines[row],
                            column: None,
                            message: format!(
                                "duplicate id {shown}: an earlier document has the same id"
                            ),
                        },
                    )
                    .map_err(BuildError::from)?;
                duplicates.push(row);
            }
        }
        if duplicates.is_empty() {
            return Ok(input);
        }
        let mut keep = vec![true; input.batch.num_rows()];
        for row in &duplicates {
            keep[*row] = false;
        }
        input.batch = filter_record_batch(&input.batch, &BooleanArray::from(keep.clone()))?;
        let mut row = 0;
        input.lines.retain(|_| {
            row += 1;
            keep[row - 1]
        });
        Ok(input)
    }
}

/// First pass when a budget is set: which of the selected documents rank within it.
fn rank_pass(options: &BuildOptions, bytes_read: Arc<AtomicU64>) -> Result<HotCut, BuildError> {
    let Some((budget, rank)) = options.rules.budget() else {
        return Ok(HotCut::All);
    };
    options.progress.set_stage("ranking");
    let (receiver, reader) = read_inputs(options, bytes_read);
    let mut ids = IdSet::new(options);
    // Bad records are reported by the second pass, which meets them again.
    let mut scratch = InputStats::new(options.schema.spec.fields.len());
    let mut selector = BudgetSelector::new(budget.max_hot_docs);
    for input in receiver {
        let input = ids.dedupe(
            input,
            options.schema.id_index,
            options.skip_invalid,
            &mut scratch,
        )?;
        let selected = options.rules.select_hot(&input.batch)?;
        let keys = rank.keys(&input.batch)?;
        for row in 0..input.batch.num_rows() {
            if selected.value(row) {
                let key = keys
                    .as_ref()
                    .map(|keys| keys.row(row))
                    .map(|row| row.as_ref().to_vec())
                    .unwrap_or_default();
                selector.offer(
                    &key,
                    RankPosition {
                        file: input.file,
                        row: input.lines[row],
                    },
                );
            }
        }
        options.progress.advance(0, 0);
    }
    join_reader(reader)?;
    info!(
        selected = selector.offered(),
        limit = budget.max_hot_docs,
        "ranked the hot selection"
    );
    Ok(selector.finish())
}

fn apply_cut(
    cut: &HotCut,
    options: &BuildOptions,
    input: &input::InputBatch,
    selected: BooleanArray,
) -> Result<BooleanArray, BuildError> {
    if matches!(cut, HotCut::All) {
        return Ok(selected);
    }
    let (_, rank) = options.rules.budget().expect("a cut comes from a budget");
    let keys = rank.keys(&input.batch)?;
    Ok((0..input.batch.num_rows())
        .map(|row| {
            let admitted = selected.value(row)
                && cut.admits(
                    keys.as_ref()
                        .map(|keys| keys.row(row))
                        .as_ref()
                        .map(|row| row.as_ref())
                        .unwrap_or(&[]),
                    RankPosition {
                        file: input.file,
                        row: input.lines[row],
                    },
                );
            Some(admitted)
        })
        .collect())
}

/// A sharded version's corpus totals, and each tier set's cold value ranges.
type LookupArtifacts = (Option<CorpusTotals>, Vec<BTreeMap<String, ValueRange>>);

/// The version's statistics tables (sharded: every term's document frequency over the corpus;
/// unsharded: the hot terms'), then each tier set's cold term bounds and hotcache, scored with
/// the version's corpus statistics. Returns the corpus totals of a sharded version and each
/// tier set's cold value ranges.
fn lookup_artifacts(
    roots: &[PathBuf],
    staging: &Path,
    schema: &IndexSchema,
) -> Result<LookupArtifacts, BuildError> {
    let sharded = roots.len() > 1;
    let (corpus, statistics) = if sharded {
        let dirs: Vec<PathBuf> = roots
            .iter()
            .flat_map(|root| [root.join(HOT_DIR), root.join(COLD_INDEX_DIR)])
            .collect();
        let table = staging.join(DOC_FREQS_PATH);
        let corpus = stats::write_doc_freqs(&dirs, &table, None)?;
        let statistics =
            stats::BuildStatistics::of_corpus(&schema.cold_tantivy, corpus.clone(), &table)?;
        (Some(corpus), statistics)
    } else {
        let dirs = [staging.join(HOT_DIR), staging.join(COLD_INDEX_DIR)];
        stats::write_doc_freqs(&dirs, &staging.join(layout::HOT_DOC_FREQS), Some(1))?;
        (None, stats::BuildStatistics::of_tiers(&dirs)?)
    };
    let ranges = roots
        .iter()
        .enumerate()
        .map(|(shard, root)| {
            let prefix = if sharded {
                format!("{}/", shard_dir(shard as u32))
            } else {
                String::new()
            };
            cold_remote::write(root, &prefix, schema, &statistics)
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    Ok((corpus, ranges))
}

/// The value ranges of several tier sets, over all of them.
fn merged_ranges(sets: &[BTreeMap<String, ValueRange>]) -> BTreeMap<String, ValueRange> {
    let mut merged: BTreeMap<String, ValueRange> = BTreeMap::new();
    for set in sets {
        for (name, range) in set {
            merged
                .entry(name.clone())
                .and_modify(|kept| *kept = kept.union(*range))
                .or_insert(*range);
        }
    }
    merged
}

/// tantivy refuses less than 15 MB per indexing thread.
const MIN_INDEXING_MEMORY: usize = 16 * 1024 * 1024;

fn create_index(
    dir: &Path,
    schema: tantivy::schema::Schema,
    options: &BuildOptions,
    doc_store: HotDocStore,
    memory: usize,
) -> Result<IndexWriter<TantivyDocument>, BuildError> {
    std::fs::create_dir_all(dir)
        .map_err(|err| BuildError::io(format!("creating {}", dir.display()), err))?;
    let mut settings = tantivy::IndexSettings::default();
    if options.schema.order_field.is_some() {
        // `_order` holds the schema's order, direction and missing values included.
        settings.sort_by_field = Some(tantivy::IndexSortByField {
            field: crate::schema::ORDER_FIELD.to_string(),
            order: tantivy::Order::Asc,
        });
    }
    doc_store.apply(&mut settings);
    let index = Index::builder()
        .schema(schema)
        .settings(settings)
        .create_in_dir(dir)?;
    let threads = options.indexing_threads.max(1);
    Ok(index.writer_with_num_threads(threads, memory.max(MIN_INDEXING_MEMORY * threads))?)
}

/// One shard's writers and counts during the second pass.
struct ShardWriter {
    /// The shard's directory in the staging directory (the staging directory itself when the
    /// version is not sharded).
    root: PathBuf,
    hot: IndexWriter<TantivyDocument>,
    cold: IndexWriter<TantivyDocument>,
    parquet: cold::ColdWriter,
    hot_docs: u64,
    cold_docs: u64,
    cold_file: u32,
    rows_in_file: u64,
    bytes_in_file: u64,
}

impl ShardWriter {
    fn start(root: PathBuf, options: &BuildOptions, memory: usize) -> Result<Self, BuildError> {
        let schema = &options.schema;
        Ok(ShardWriter {
            hot: create_index(
                &root.join(HOT_DIR),
                schema.hot_tantivy.clone(),
                options,
                options.hot_doc_store,
                memory,
            )?,
            cold: create_index(
                &root.join(COLD_INDEX_DIR),
                schema.cold_tantivy.clone(),
                options,
                // The cold index stores no documents.
                HotDocStore::Compact,
                memory,
            )?,
            parquet: cold::ColdWriter::start(
                &root,
                schema.cold_arrow.clone(),
                options.cold_compression,
            ),
            root,
            hot_docs: 0,
            cold_docs: 0,
            cold_file: 0,
            rows_in_file: 0,
            bytes_in_file: 0,
        })
    }

    fn add(
        &mut self,
        maker: &documents::DocumentMaker,
        schema: &IndexSchema,
        hot: &arrow::record_batch::RecordBatch,
        cold: &arrow::record_batch::RecordBatch,
    ) -> Result<(), BuildError> {
        for document in maker.hot_documents(hot) {
            self.hot.add_document(document)?;
        }
        self.hot_docs += hot.num_rows() as u64;
        let rows = cold.num_rows() as u64;
        if rows > 0 {
            let size = cold.get_array_memory_size() as u64;
            if self.rows_in_file > 0
                && (self.rows_in_file + rows > MAX_ROWS_PER_FILE
                    || self.bytes_in_file + size > cold::MAX_FILE_ARROW_BYTES)
            {
                self.cold_file += 1;
                self.rows_in_file = 0;
                self.bytes_in_file = 0;
            }
            let addrs: Vec<u64> = (0..rows)
                .map(|row| DocAddr::new(self.cold_file, self.rows_in_file + row).pack())
                .collect();
            self.parquet
                .write(self.cold_file, cold.project(&schema.cold_columns)?)?;
            for document in maker.cold_documents(cold, &addrs) {
                self.cold.add_document(document)?;
            }
            self.rows_in_file += rows;
            self.bytes_in_file += size;
            self.cold_docs += rows;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ShardOutcome, BuildError> {
        self.hot.commit()?;
        self.cold.commit()?;
        let (hot, cold) = (self.hot, self.cold);
        let (hot_done, cold_done) = std::thread::scope(|scope| {
            let hot = scope.spawn(|| hot.wait_merging_threads());
            let cold = scope.spawn(|| cold.wait_merging_threads());
            (hot.join(), cold.join())
        });
        hot_done.map_err(|_| BuildError::internal("hot merge thread panicked"))??;
        cold_done.map_err(|_| BuildError::internal("cold merge thread panicked"))??;
        for tier in [HOT_DIR, COLD_INDEX_DIR] {
            term_dictionaries::rewrite_for_point_lookups(&self.root.join(tier))?;
        }
        Ok(ShardOutcome {
            root: self.root,
            hot_docs: self.hot_docs,
            cold_docs: self.cold_docs,
            parquet: self.parquet.finish()?,
        })
    }
}

/// Which shard each row of `batch` goes to (`format::shard`).
fn shard_rows(batch: &arrow::record_batch::RecordBatch, id_column: usize, shards: u32) -> Vec<u32> {
    use std::fmt::Write as _;
    let ids = batch.column(id_column);
    // Integer ids are hashed as their decimal text, written into one reused buffer.
    let mut text = String::new();
    let mut decimal = |value: &dyn std::fmt::Display| {
        text.clear();
        let _ = write!(text, "{value}");
        shard_of(text.as_bytes(), shards)
    };
    (0..batch.num_rows())
        .map(|row| match ids.data_type() {
            DataType::UInt64 => decimal(&ids.as_primitive::<UInt64Type>().value(row)),
            DataType::Int64 => decimal(&ids.as_primitive::<Int64Type>().value(row)),
            _ => shard_of(ids.as_string::<i32>().value(row).as_bytes(), shards),
        })
        .collect()
}

/// The second (or only) pass: every document to its shard and tier.
fn split(options: &BuildOptions, staging: &Path) -> Result<SplitOutcome, BuildError> {
    let schema = options.schema.clone();
    let bytes_read = Arc::new(AtomicU64::new(0));
    options.progress.watch_bytes(bytes_read.clone());
    let input_bytes: u64 = options
        .inputs
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    let passes = if options.rules.budget().is_some() {
        2
    } else {
        1
    };
    options.progress.set_total(input_bytes * passes);
    let cut = rank_pass(options, bytes_read.clone())?;

    options.progress.set_stage("building");
    let shards = options.shards.max(1);
    // The memory budget is the build's, not each shard's.
    let memory = (options.indexing_memory / shards as usize).max(MIN_INDEXING_MEMORY);
    let mut writers = (0..shards)
        .map(|shard| {
            let root = if shards == 1 {
                staging.to_path_buf()
            } else {
                staging.join(shard_dir(shard))
            };
            ShardWriter::start(root, options, memory)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let maker = documents::DocumentMaker::new(&schema);

    let (receiver, reader) = read_inputs(options, bytes_read);
    let mut ids = IdSet::new(options);
    let mut dedupe_stats = InputStats::new(schema.spec.fields.len());
    for input in receiver {
        let input = ids.dedupe(
            input,
            schema.id_index,
            options.skip_invalid,
            &mut dedupe_stats,
        )?;
        let selected = options.rules.select_hot(&input.batch)?;
        let hot_mask = apply_cut(&cut, options, &input, selected)?;
        let (mut hot_rows, mut cold_rows) = (0, 0);
        if shards == 1 {
            let hot = filter_record_batch(&input.batch, &hot_mask)?;
            let cold = filter_record_batch(&input.batch, &not(&hot_mask)?)?;
            writers[0].add(&maker, &schema, &hot, &cold)?;
            hot_rows += hot.num_rows();
            cold_rows += cold.num_rows();
        } else {
            // Each row's shard and tier in one pass, then one take per shard and tier (not a
            // pass over the batch per shard). A null in the mask is in neither tier, as
            // `filter_record_batch` has it in the unsharded case.
            let placed = shard_rows(&input.batch, schema.id_index, shards);
            let mut rows_of = vec![(Vec::<u32>::new(), Vec::<u32>::new()); shards as usize];
            for (row, shard) in placed.iter().enumerate() {
                if hot_mask.is_valid(row) {
                    let (hot, cold) = &mut rows_of[*shard as usize];
                    if hot_mask.value(row) { hot } else { cold }.push(row as u32);
                }
            }
            for (writer, (hot, cold)) in writers.iter_mut().zip(rows_of) {
                if hot.is_empty() && cold.is_empty() {
                    continue;
                }
                let hot = take_record_batch(&input.batch, &UInt32Array::from(hot))?;
                let cold = take_record_batch(&input.batch, &UInt32Array::from(cold))?;
                writer.add(&maker, &schema, &hot, &cold)?;
                hot_rows += hot.num_rows();
                cold_rows += cold.num_rows();
            }
        }
        options.progress.advance(hot_rows as u64, cold_rows as u64);
    }
    let mut stats = join_reader(reader)?;
    stats.invalid += dedupe_stats.invalid;
    for example in dedupe_stats.invalid_examples {
        if stats.invalid_examples.len() < input::REPORTED_INVALID {
            stats.invalid_examples.push(example);
        }
    }

    options.progress.set_stage("committing");
    let shards = writers
        .into_iter()
        .map(ShardWriter::finish)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SplitOutcome { shards, stats })
}
