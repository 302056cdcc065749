//! What a node needs to search a tier set's indexes where they live, in object storage
//! (format 4): the cold terms' bounds (`cold/term_bounds.sst`), the cold index's hotcache
//! (`cold/hotcache`), the ranges of its numeric fields (into the manifest) and the hot index's
//! hotcache (`hot-lookup/hotcache`: a node searches the hot index in the store while it
//! downloads it).
//!
//! The hotcache is recorded, not described: the cold index is opened through a directory that
//! keeps every byte range tantivy reads, doing what a node does synchronously before any
//! search is planned (open every segment, every indexed field's dictionary, every fast
//! column's entry in the column dictionary). Reads that depend on a query — dictionary blocks,
//! postings, field norms, columns — are left out: a node fetches those per search.

use std::collections::BTreeMap;
use std::io::{self, BufWriter};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, FileSlice, Lock, MmapDirectory, OwnedBytes,
    WatchCallback, WatchHandle, WritePtr,
};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::Postings;
use tantivy::query::{Bm25StatisticsProvider, Bm25Weight};
use tantivy::schema::{IndexRecordOption, Term};
use tantivy::termdict::{TermMerger, TermStreamer};
use tantivy::{DocSet, HasLen, Index, ReloadPolicy, Score, TERMINATED};
use tantivy_sstable::{Dictionary, VecU32ValueSSTable};

use super::BuildError;
use super::stats::BuildStatistics;
use crate::format::hotcache::{HotFile, Hotcache};
use crate::format::layout::{
    COLD_HOTCACHE, COLD_INDEX_DIR, COLD_TERM_BOUNDS, HOT_DIR, HOT_HOTCACHE,
};
use crate::format::shard::doc_freq_key;
use crate::ranking::ValueRange;
use crate::ranking::values::TierValues;
use crate::schema::{ADDR_FIELD, IndexSchema, SORT_KEY_FIELD};

/// Writes the cold term bounds and the hotcache of the tier set at `root` (whose path in the
/// version is `prefix`, empty or `shards/<s>/`), scoring with `statistics` (the version's corpus
/// statistics, as a node scores); returns the cold tier's value ranges.
pub fn write(
    root: &Path,
    prefix: &str,
    schema: &IndexSchema,
    statistics: &BuildStatistics,
) -> Result<BTreeMap<String, ValueRange>, BuildError> {
    let cold_dir = root.join(COLD_INDEX_DIR);
    let index = Index::open_in_dir(&cold_dir)?;
    let searcher = index.reader()?.searcher();
    let bounds_path = root.join(COLD_TERM_BOUNDS);
    write_term_bounds(&searcher, statistics, &bounds_path)?;
    let ranges = TierValues::open_ranges(&searcher, schema)?.named_ranges(schema);
    let mut hotcache = record_opening(&cold_dir, &format!("{prefix}{COLD_INDEX_DIR}/"), schema)?;
    record_bounds_opening(
        &bounds_path,
        &format!("{prefix}{COLD_TERM_BOUNDS}"),
        &mut hotcache,
    )?;
    write_hotcache(&root.join(COLD_HOTCACHE), &hotcache)?;
    let hot = record_opening(&root.join(HOT_DIR), &format!("{prefix}{HOT_DIR}/"), schema)?;
    write_hotcache(&root.join(HOT_HOTCACHE), &hot)?;
    Ok(ranges)
}

fn write_hotcache(path: &Path, hotcache: &Hotcache) -> Result<(), BuildError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| BuildError::io(format!("creating {}", dir.display()), err))?;
    }
    std::fs::write(path, hotcache.encode())
        .map_err(|err| BuildError::io(format!("writing {}", path.display()), err))
}

/// Every cold term, keyed as the document-frequency tables are (`format::shard::doc_freq_key`),
/// with `[document frequency in the cold tier, f32 bits of its highest BM25 contribution]`: the
/// score a `TermQuery` for it alone gives its best cold document under `statistics`.
///
/// One pass over the merged term streams of both tiers (the hot ones give the corpus document
/// frequency of an unsharded version without a lookup per term). A term's score is its weight
/// (from its document frequency) times a factor of the document's term frequency and norm, the
/// same for every term of a field: the best cold posting is found with one weight per field,
/// and scored once with the term's own. Float multiplication by a positive weight keeps order,
/// so that is the exact maximum `Bm25Weight::score` gives.
fn write_term_bounds(
    cold: &tantivy::Searcher,
    statistics: &BuildStatistics,
    path: &Path,
) -> Result<(), BuildError> {
    let file = std::fs::File::create(path)
        .map_err(|err| BuildError::io(format!("creating {}", path.display()), err))?;
    let mut writer = Dictionary::<VecU32ValueSSTable>::builder(BufWriter::new(file))
        .map_err(|err| BuildError::io("starting the term bounds", err))?;
    // Small blocks stay uncompressed: a lookup then costs no zstd decompression
    // (`term_dictionaries`).
    writer.set_block_len(super::term_dictionaries::BLOCK_LEN);
    let schema = cold.schema();
    let hot = statistics.tier_searchers();
    let total_num_docs = statistics.total_num_docs()?;
    // Field ids ascend and each field's terms come sorted: keys in the order the table needs.
    for (field, entry) in schema.fields() {
        if !entry.is_indexed() {
            continue;
        }
        let average_fieldnorm =
            statistics.total_num_tokens(field)? as Score / total_num_docs as Score;
        let field_weight =
            Bm25Weight::for_one_term_without_explain(1, total_num_docs, average_fieldnorm);
        let segments = cold.segment_readers();
        let mut inverted = Vec::with_capacity(segments.len());
        let mut norms = Vec::with_capacity(segments.len());
        for reader in segments {
            inverted.push(reader.inverted_index(field)?);
            norms.push(
                reader
                    .fieldnorms_readers()
                    .get_field(field)?
                    .unwrap_or_else(|| FieldNormReader::constant(reader.max_doc(), 1)),
            );
        }
        let cold_streams = inverted.len();
        // The other tiers' segments after the cold ones, for their document frequencies.
        let mut others = Vec::new();
        for searcher in hot {
            for reader in searcher.segment_readers() {
                others.push(reader.inverted_index(field)?);
            }
        }
        let streams = inverted
            .iter()
            .chain(&others)
            .map(|index| index.terms().stream())
            .collect::<io::Result<Vec<TermStreamer<'_>>>>()
            .map_err(|err| BuildError::io("reading a term dictionary", err))?;
        let mut merger = TermMerger::new(streams);
        while merger.advance() {
            let mut cold_freq = 0u64;
            let mut all_freq = 0u64;
            // The best (norm, term frequency) of the cold postings, by the field's weight.
            let mut best: Option<(Score, u8, u32)> = None;
            for (stream, info) in merger.current_segment_ords_and_term_infos() {
                all_freq += u64::from(info.doc_freq);
                if stream >= cold_streams {
                    continue;
                }
                cold_freq += u64::from(info.doc_freq);
                let mut postings = inverted[stream]
                    .read_postings_from_terminfo(&info, IndexRecordOption::WithFreqs)
                    .map_err(|err| BuildError::io("reading cold postings", err))?;
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    let norm = norms[stream].fieldnorm_id(doc);
                    let frequency = postings.term_freq();
                    let score = field_weight.score(norm, frequency);
                    if best.is_none_or(|(kept, _, _)| score > kept) {
                        best = Some((score, norm, frequency));
                    }
                    doc = postings.advance();
                }
            }
            if cold_freq == 0 {
                continue;
            }
            let doc_freq = match statistics {
                BuildStatistics::Tiers(_) => all_freq,
                BuildStatistics::Corpus { .. } => {
                    statistics.doc_freq(&Term::from_field_bytes(field, merger.key()))?
                }
            };
            let max = best.map_or(0.0, |(_, norm, frequency)| {
                Bm25Weight::for_one_term_without_explain(
                    doc_freq,
                    total_num_docs,
                    average_fieldnorm,
                )
                .score(norm, frequency)
            });
            let cold_freq = u32::try_from(cold_freq)
                .map_err(|_| BuildError::internal("a cold term in more than 2^32 documents"))?;
            writer
                .insert(
                    doc_freq_key(field.field_id(), merger.key()),
                    &vec![cold_freq, max.to_bits()],
                )
                .map_err(|err| BuildError::io("writing the term bounds", err))?;
        }
    }
    writer
        .finish()
        .map_err(|err| BuildError::io("finishing the term bounds", err))?;
    Ok(())
}

/// Opens the index in `dir` (whose files' paths in the version start with `prefix`) as a node
/// does before planning any search — every segment with its doc store, every indexed field's
/// dictionary, every fast column's entry in the column dictionary — and keeps every range that
/// read.
fn record_opening(dir: &Path, prefix: &str, schema: &IndexSchema) -> Result<Hotcache, BuildError> {
    let recorded = Arc::new(Mutex::new(Hotcache::default()));
    let directory = RecordingDirectory {
        inner: Arc::new(
            MmapDirectory::open(dir)
                .map_err(|err| BuildError::internal(format!("opening {}: {err}", dir.display())))?,
        ),
        prefix: prefix.to_string(),
        recorded: recorded.clone(),
    };
    let index = Index::open(directory)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let searcher = reader.searcher();
    let tantivy_schema = searcher.schema().clone();
    let fast_names: Vec<String> = schema
        .spec
        .fields
        .iter()
        .filter(|field| field.fast)
        .map(|field| field.name.clone())
        .chain([SORT_KEY_FIELD.to_string(), ADDR_FIELD.to_string()])
        .collect();
    searcher.total_num_docs()?;
    for segment in searcher.segment_readers() {
        for (field, entry) in tantivy_schema.fields() {
            if entry.is_indexed() {
                segment.inverted_index(field)?;
            }
        }
        for name in &fast_names {
            segment.fast_fields().dynamic_column_handles(name)?;
        }
    }
    drop(searcher);
    drop(reader);
    drop(index);
    let recorded = std::mem::take(&mut *recorded.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(recorded)
}

/// Adds to `hotcache` what opening the term bounds at `path` (`in_version`) reads.
fn record_bounds_opening(
    path: &Path,
    in_version: &str,
    hotcache: &mut Hotcache,
) -> Result<(), BuildError> {
    let recorded = Arc::new(Mutex::new(std::mem::take(hotcache)));
    let bounds = std::fs::read(path)
        .map_err(|err| BuildError::io(format!("reading {}", path.display()), err))?;
    let handle = RecordingHandle {
        path: in_version.to_string(),
        inner: Arc::new(OwnedBytes::new(bounds)),
        recorded: recorded.clone(),
    };
    Dictionary::<VecU32ValueSSTable>::open(FileSlice::new(Arc::new(handle)))
        .map_err(|err| BuildError::io("opening the term bounds", err))?;
    *hotcache = std::mem::take(&mut *recorded.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(())
}

/// A directory that keeps a copy of every range read through it.
#[derive(Clone)]
struct RecordingDirectory {
    inner: Arc<MmapDirectory>,
    /// Prepended to tantivy's file names: the file's path in the version.
    prefix: String,
    recorded: Arc<Mutex<Hotcache>>,
}

impl std::fmt::Debug for RecordingDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingDirectory")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn record(recorded: &Mutex<Hotcache>, path: &str, len: u64, start: u64, bytes: &[u8]) {
    let mut recorded = recorded.lock().unwrap_or_else(PoisonError::into_inner);
    let file = recorded
        .files
        .entry(path.to_string())
        .or_insert_with(|| HotFile {
            len,
            ranges: Vec::new(),
        });
    file.add(start, bytes);
}

impl Directory for RecordingDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(RecordingHandle {
            path: format!("{}{}", self.prefix, path.display()),
            inner: self.inner.get_file_handle(path)?,
            recorded: self.recorded.clone(),
        }))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let bytes = self.inner.atomic_read(path)?;
        let name = format!("{}{}", self.prefix, path.display());
        record(&self.recorded, &name, bytes.len() as u64, 0, &bytes);
        Ok(bytes)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only()),
            filepath: PathBuf::from(path),
        })
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError {
            io_error: Arc::new(read_only()),
            filepath: PathBuf::from(path),
        })
    }

    fn atomic_write(&self, _path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only())
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn watch(&self, _callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }

    /// Nothing writes here: a reader's meta lock needs no file.
    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        Ok(DirectoryLock::from(Box::new(())))
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the hotcache is recorded over a read-only view",
    )
}

struct RecordingHandle {
    path: String,
    inner: Arc<dyn FileHandle>,
    recorded: Arc<Mutex<Hotcache>>,
}

impl std::fmt::Debug for RecordingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHandle")
            .field("path", &self.path)
            .finish()
    }
}

impl HasLen for RecordingHandle {
    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[async_trait::async_trait]
impl FileHandle for RecordingHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        let bytes = self.inner.read_bytes(range.clone())?;
        record(
            &self.recorded,
            &self.path,
            self.inner.len() as u64,
            range.start as u64,
            bytes.as_slice(),
        );
        Ok(bytes)
    }
}
