//! Where each term's postings are in a remote index, kept across searches.
//!
//! A term's `TermInfo` (its document frequency and the byte ranges of its postings and
//! positions) comes from its SSTable dictionary block: a read and the decoding of every term
//! info of the block (with tantivy's zstd-compressed blocks, before the builder rewrote them
//! uncompressed, about a third of a warm cold search's CPU when done twice per term: tantivy's
//! `warm_postings` looks the term up again after `get_async`). A version's index never
//! changes, so each (segment, term)'s `TermInfo` is kept here once read (absent terms too),
//! and the warm-up reads postings and positions from it directly. The dictionary block is still fetched into the search's warmed ranges —
//! tantivy's synchronous search looks the term up once more itself — but a term seen before is
//! not decoded by the warm-up.

use std::io;
use std::ops::Bound;

use tantivy::directory::{CompositeFile, FileSlice};
use tantivy::index::{SegmentComponent, SegmentId};
use tantivy::postings::TermInfo;
use tantivy::schema::Field;
use tantivy::{Index, SegmentReader, Term};

/// Terms' infos kept per index: about 100 bytes each.
const KEPT_TERM_INFOS: usize = 200_000;

/// A segment's postings and positions files, opened once (their footers are pinned).
struct SegmentFiles {
    id: SegmentId,
    postings: CompositeFile,
    positions: CompositeFile,
}

/// Looked up on every term of every warm cold search: quick_cache, as the cold documents'
/// cache (`node::cold`), for its cheap synchronous reads.
pub struct RemoteTerms {
    segments: Vec<SegmentFiles>,
    infos: quick_cache::sync::Cache<(SegmentId, Term), Option<TermInfo>>,
}

impl RemoteTerms {
    /// Opens the postings and positions files of `index`'s segments. Reads only their footers,
    /// which opening the index read too (so the hotcache holds them): synchronous, cheap.
    pub fn open(index: &Index) -> io::Result<RemoteTerms> {
        let segments = index
            .searchable_segments()
            .map_err(io::Error::other)?
            .into_iter()
            .map(|segment| {
                let open = |component| -> io::Result<CompositeFile> {
                    match segment.open_read(component) {
                        Ok(file) => CompositeFile::open(&file),
                        Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => {
                            Ok(CompositeFile::empty())
                        }
                        Err(err) => Err(io::Error::other(err)),
                    }
                };
                Ok(SegmentFiles {
                    id: segment.id(),
                    postings: open(SegmentComponent::Postings)?,
                    positions: open(SegmentComponent::Positions)?,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(RemoteTerms {
            segments,
            infos: quick_cache::sync::Cache::new(KEPT_TERM_INFOS),
        })
    }

    fn files(&self, id: SegmentId) -> io::Result<&SegmentFiles> {
        self.segments
            .iter()
            .find(|files| files.id == id)
            .ok_or_else(|| io::Error::other(format!("segment {id:?} is not in the remote index")))
    }

    /// `term`'s info in `segment` read from its dictionary (fetching the block), and kept.
    async fn look_up(&self, segment: &SegmentReader, term: &Term) -> io::Result<Option<TermInfo>> {
        let info = segment
            .inverted_index(term.field())
            .map_err(io::Error::other)?
            .terms()
            .get_async(term.serialized_value_bytes())
            .await?;
        self.infos
            .insert((segment.segment_id(), term.clone()), info.clone());
        Ok(info)
    }

    /// Step 1 of a warm-up for `term` in `segment`: fetches its dictionary block (the
    /// synchronous search reads it), and decodes it only if the term's info is not kept.
    pub async fn warm_dictionary(&self, segment: &SegmentReader, term: &Term) -> io::Result<()> {
        if !self
            .infos
            .contains_key(&(segment.segment_id(), term.clone()))
        {
            return self.look_up(segment, term).await.map(drop);
        }
        let bytes = term.serialized_value_bytes();
        segment
            .inverted_index(term.field())
            .map_err(io::Error::other)?
            .terms()
            .file_slice_for_range((Bound::Included(bytes), Bound::Included(bytes)), None)
            .read_bytes_async()
            .await?;
        Ok(())
    }

    /// Step 2 for `term` in `segment`: fetches its postings (and positions) by its kept info
    /// (looked up again if it was evicted since step 1).
    pub async fn warm_postings(
        &self,
        segment: &SegmentReader,
        term: &Term,
        with_positions: bool,
    ) -> io::Result<()> {
        let info = match self.infos.get(&(segment.segment_id(), term.clone())) {
            Some(info) => info,
            None => self.look_up(segment, term).await?,
        };
        let Some(info) = info else {
            return Ok(());
        };
        let files = self.files(segment.segment_id())?;
        let postings =
            field_postings(&files.postings, term.field())?.slice(info.postings_range.clone());
        if with_positions && !info.positions_range.is_empty() {
            let positions = files
                .positions
                .open_read(term.field())
                .unwrap_or_else(FileSlice::empty)
                .slice(info.positions_range.clone());
            futures::try_join!(postings.read_bytes_async(), positions.read_bytes_async())?;
        } else {
            postings.read_bytes_async().await?;
        }
        Ok(())
    }
}

/// The body of `field`'s postings in a segment's postings file: tantivy's `TermInfo` ranges
/// start after the field's 8-byte count of tokens.
fn field_postings(postings: &CompositeFile, field: Field) -> io::Result<FileSlice> {
    let slice = postings.open_read(field).ok_or_else(|| {
        io::Error::other(format!(
            "no postings for field {} in the segment",
            field.field_id()
        ))
    })?;
    Ok(slice.split(8).1)
}
