//! One loaded version of an index: its manifest, the open hot index and, once loaded, the cold
//! tier (cold index + cold parquet metadata). Immutable once built, shared by every search.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tantivy::query::QueryParser;
use tantivy::schema::Field;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher};

use super::NodeError;
use super::cold::ColdFile;
use super::collector::{HitColumns, IdKind, TierName};
use super::statistics::{CorpusStatistics, DocFreqTable};
use crate::format::Manifest;
use crate::ranking::RankProfiles;
use crate::ranking::values::TierValues;
use crate::remote::{ColdTermBounds, RemoteSearch};
use crate::schema::{ADDR_FIELD, FieldType, IndexSchema, SORT_KEY_FIELD};

/// An open, read-only tantivy index.
pub struct Tier {
    pub index: Index,
    reader: IndexReader,
}

impl Tier {
    pub fn open(dir: &Path) -> Result<Tier, NodeError> {
        Tier::of(Index::open_in_dir(dir)?)
    }

    pub fn of(index: Index) -> Result<Tier, NodeError> {
        // The index never changes under a version: no reloading.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Tier { index, reader })
    }

    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }
}

pub struct ColdTier {
    pub tier: Tier,
    pub files: Arc<Vec<ColdFile>>,
    /// Opened with the tier when it is local; when it is remote, by the first search that
    /// ranks it (they are read whole: `remote::warm`).
    columns: OnceLock<Arc<HitColumns>>,
    values: OnceLock<Arc<TierValues>>,
    /// The value ranges the manifest records (no column read): what bounds the skip.
    pub ranges: TierValues,
    /// Over both tiers.
    pub statistics: Arc<CorpusStatistics>,
    /// Each cold term's document frequency and highest BM25 contribution (the cold skip).
    pub bounds: Arc<ColdTermBounds>,
    /// `Some` when the cold index is searched in the store.
    pub remote: Option<RemoteSearch>,
}

impl ColdTier {
    /// The id columns; opened before the tier is first ranked.
    pub fn columns(&self) -> &Arc<HitColumns> {
        self.columns
            .get()
            .expect("the cold tier's columns are opened before it is ranked")
    }

    pub fn values(&self) -> &Arc<TierValues> {
        self.values
            .get()
            .expect("the cold tier's columns are opened before it is ranked")
    }

    /// Whether the columns are open (always, for a local tier).
    pub fn columns_open(&self) -> bool {
        self.columns.get().is_some() && self.values.get().is_some()
    }

    /// Opens the columns the ranking and the hit reading use: for a remote tier, within the
    /// scope of a search that warmed them.
    pub fn open_columns(&self, schema: &IndexSchema, id_kind: IdKind) -> Result<(), NodeError> {
        if self.columns_open() {
            return Ok(());
        }
        let searcher = self.tier.searcher();
        let columns = HitColumns::open(&searcher, &schema.spec.id_field, id_kind, TierName::Cold)?;
        let values = TierValues::open(&searcher, schema)?;
        let _ = self.columns.set(Arc::new(columns));
        let _ = self.values.set(Arc::new(values));
        Ok(())
    }

    /// The fast columns `open_columns` reads, by name.
    pub fn column_names(schema: &IndexSchema) -> Vec<String> {
        schema
            .spec
            .fields
            .iter()
            .filter(|field| field.fast)
            .map(|field| field.name.clone())
            .chain([SORT_KEY_FIELD.to_string(), ADDR_FIELD.to_string()])
            .collect()
    }
}

/// How a cold tier was opened: its index, and what a remote one adds.
pub struct OpenedCold {
    pub tier: Tier,
    pub bounds: Arc<ColdTermBounds>,
    pub remote: Option<RemoteSearch>,
    /// An unsharded version's hot terms' document frequencies (a remote tier needs them).
    pub hot_terms: Option<Arc<DocFreqTable>>,
}

pub struct LoadedVersion {
    pub manifest: Manifest,
    pub schema: Arc<IndexSchema>,
    pub hot: Tier,
    pub hot_columns: Arc<HitColumns>,
    pub hot_values: Arc<TierValues>,
    /// The schema's rank profiles, checked when the version is loaded.
    pub profiles: RankProfiles,
    /// Over the hot tier alone, while the cold tier is not loaded.
    hot_statistics: Arc<CorpusStatistics>,
    cold: OnceLock<Arc<ColdTier>>,
    /// Over the schema's default search fields; built once, shared by every search.
    query_parser: QueryParser,
    pub id_kind: IdKind,
    /// `<index>/<version>` (`<index>/<shard>/<version>` for a shard), shared by cache keys.
    pub version_key: Arc<str>,
    /// The version's copy in the data dir.
    pub local_dir: PathBuf,
    /// A shard's statistics of the whole corpus; `None` when the version is not sharded and
    /// the loaded tiers are the corpus.
    corpus_statistics: Option<Arc<CorpusStatistics>>,
    /// `Some` while the hot index is searched in the store, its download not complete
    /// (`hot_remote`).
    pub hot_remote: Option<RemoteSearch>,
}

impl LoadedVersion {
    /// `doc_freqs` is the version's document-frequency table, which a shard's manifest needs.
    pub fn new(
        manifest: Manifest,
        hot: Tier,
        local_dir: PathBuf,
        doc_freqs: Option<Arc<DocFreqTable>>,
    ) -> Result<LoadedVersion, NodeError> {
        let schema = IndexSchema::new(manifest.schema.clone(), "manifest")
            .map_err(|err| NodeError::Corrupt(err.to_string()))?;
        if hot.index.schema() != schema.hot_tantivy {
            return Err(NodeError::Corrupt(format!(
                "{}/{}: the hot index's schema differs from the manifest's",
                manifest.index, manifest.version
            )));
        }
        let default_fields: Vec<Field> = schema
            .spec
            .default_search_fields
            .iter()
            .filter_map(|name| schema.field_index(name))
            .map(|index| schema.tantivy_field(index))
            .collect();
        let id_kind = match schema.id_spec().field_type {
            FieldType::U64 => IdKind::U64,
            FieldType::I64 => IdKind::I64,
            _ => IdKind::Str,
        };
        let version_key: Arc<str> =
            format!("{}/{}", manifest.served_name(), manifest.version).into();
        let corpus_statistics = match (&manifest.shard, doc_freqs) {
            (None, _) => None,
            (Some(shard), Some(table)) => Some(Arc::new(CorpusStatistics::of_corpus(
                &schema.hot_tantivy,
                &shard.corpus,
                table,
            ))),
            (Some(_), None) => {
                return Err(NodeError::Internal(
                    "a shard was opened without its document-frequency table".into(),
                ));
            }
        };
        let hot_columns = Arc::new(HitColumns::open(
            &hot.searcher(),
            &schema.spec.id_field,
            id_kind,
            TierName::Hot,
        )?);
        let profiles = RankProfiles::compile(
            &schema,
            &format!("{}/{} manifest", manifest.index, manifest.version),
        )
        .map_err(|err| NodeError::Corrupt(err.to_string()))?;
        let hot_values = Arc::new(TierValues::open(&hot.searcher(), &schema)?);
        let query_parser = QueryParser::for_index(&hot.index, default_fields);
        let hot_statistics = Arc::new(CorpusStatistics::new(vec![hot.searcher()])?);
        Ok(LoadedVersion {
            hot_columns,
            hot_values,
            profiles,
            hot_statistics,
            query_parser,
            version_key,
            local_dir,
            corpus_statistics,
            manifest,
            schema: Arc::new(schema),
            hot,
            cold: OnceLock::new(),
            id_kind,
            hot_remote: None,
        })
    }

    /// This version with its hot index searched in the store (`hot_remote`).
    pub fn with_hot_remote(self, remote: RemoteSearch) -> LoadedVersion {
        LoadedVersion {
            hot_remote: Some(remote),
            ..self
        }
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    pub fn cold(&self) -> Option<&Arc<ColdTier>> {
        self.cold.get()
    }

    pub fn set_cold(&self, opened: OpenedCold, files: Vec<ColdFile>) -> Result<(), NodeError> {
        let OpenedCold {
            tier,
            bounds,
            remote,
            hot_terms,
        } = opened;
        let searcher = tier.searcher();
        if tier.index.schema() != self.schema.cold_tantivy {
            return Err(NodeError::Corrupt(
                "the cold index's schema differs from the manifest's".into(),
            ));
        }
        if searcher.num_docs() != self.manifest.cold.docs {
            return Err(NodeError::Corrupt(format!(
                "the cold index holds {} documents, the manifest says {}",
                searcher.num_docs(),
                self.manifest.cold.docs
            )));
        }
        let statistics = match (&self.corpus_statistics, &remote, hot_terms) {
            (Some(corpus), _, _) => corpus.clone(),
            (None, None, _) => {
                Arc::new(CorpusStatistics::new(vec![self.hot.searcher(), searcher])?)
            }
            (None, Some(_), Some(hot_terms)) => Arc::new(CorpusStatistics::remote(
                self.hot.searcher(),
                searcher,
                hot_terms,
                bounds.clone(),
            )?),
            (None, Some(_), None) => {
                return Err(NodeError::Internal(
                    "a remote cold tier was opened without the hot terms' table".into(),
                ));
            }
        };
        let cold = ColdTier {
            tier,
            files: Arc::new(files),
            columns: OnceLock::new(),
            values: OnceLock::new(),
            ranges: TierValues::from_named_ranges(&self.schema, &self.manifest.cold.value_ranges),
            statistics,
            bounds,
            remote,
        };
        if cold.remote.is_none() {
            cold.open_columns(&self.schema, self.id_kind)?;
        }
        self.cold
            .set(Arc::new(cold))
            .map_err(|_| NodeError::Internal("cold tier loaded twice".into()))
    }

    /// BM25 statistics of every tier loaded: a document scores the same whichever tiers a
    /// search covers.
    pub fn statistics(&self) -> &Arc<CorpusStatistics> {
        if let Some(corpus) = &self.corpus_statistics {
            return corpus;
        }
        self.cold()
            .map_or(&self.hot_statistics, |cold| &cold.statistics)
    }

    pub fn query_parser(&self) -> &QueryParser {
        &self.query_parser
    }
}
