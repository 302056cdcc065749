//! One loaded version of an index: its manifest, the open hot index and, once loaded, the cold
//! tier (cold index + cold parquet metadata). Immutable once built, shared by every search.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tantivy::query::QueryParser;
use tantivy::schema::Field;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher};

use super::NodeError;
use super::cold::ColdFile;
use super::collector::{HitColumns, IdKind};
use super::skip::TermMaxima;
use super::statistics::{CorpusStatistics, DocFreqTable};
use crate::format::Manifest;
use crate::ranking::RankProfiles;
use crate::ranking::values::TierValues;
use crate::schema::{FieldType, IndexSchema};

/// An open, read-only tantivy index.
pub struct Tier {
    pub index: Index,
    reader: IndexReader,
}

impl Tier {
    pub fn open(dir: &Path) -> Result<Tier, NodeError> {
        let index = Index::open_in_dir(dir)?;
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
    pub columns: Arc<HitColumns>,
    pub values: Arc<TierValues>,
    /// Over both tiers.
    pub statistics: Arc<CorpusStatistics>,
    /// Each query term's highest BM25 contribution here, for the cold skip.
    pub term_maxima: TermMaxima,
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
            false,
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
        })
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    pub fn cold(&self) -> Option<&Arc<ColdTier>> {
        self.cold.get()
    }

    pub fn set_cold(&self, tier: Tier, files: Vec<ColdFile>) -> Result<(), NodeError> {
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
        let columns = Arc::new(HitColumns::open(
            &searcher,
            &self.schema.spec.id_field,
            self.id_kind,
            true,
        )?);
        let values = Arc::new(TierValues::open(&searcher, &self.schema)?);
        let statistics = match &self.corpus_statistics {
            Some(corpus) => corpus.clone(),
            None => Arc::new(CorpusStatistics::new(vec![self.hot.searcher(), searcher])?),
        };
        let cold = ColdTier {
            tier,
            files: Arc::new(files),
            columns,
            values,
            statistics,
            term_maxima: TermMaxima::default(),
        };
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
