//! What a search of the cold index reads, fetched before tantivy runs: the plan.
//!
//! From the query's terms (`Query::query_terms`, with whether each needs positions), per
//! segment of the cold index:
//! - step 1: each term's dictionary block (and, apart, its bounds: `bounds`);
//! - step 2: each term's postings (and positions for phrases), the field norms of the terms'
//!   fields, and the fast columns the ranking reads if they are not open yet.
//!
//! Run within a `Round`, each step is one round of storage requests at most, and none when
//! the cache holds its blocks.

use std::io;

use futures::future::{BoxFuture, join_all};
use tantivy::{Searcher, Term};

use super::RemoteTerms;

/// The terms a query reads, each with whether its positions are read (phrases).
pub fn query_terms(query: &dyn tantivy::query::Query) -> Vec<(Term, bool)> {
    let mut terms: Vec<(Term, bool)> = Vec::new();
    query.query_terms(
        &mut |term, positions| match terms.iter_mut().find(|(known, _)| known == term) {
            Some((_, known_positions)) => *known_positions |= positions,
            None => terms.push((term.clone(), positions)),
        },
    );
    terms
}

/// Step 1: every term's dictionary block in every segment (decoded only for terms whose
/// infos `kept` lacks).
pub async fn dictionary(
    searcher: &Searcher,
    kept: &RemoteTerms,
    terms: &[(Term, bool)],
) -> io::Result<()> {
    let mut reads: Vec<BoxFuture<'_, io::Result<()>>> = Vec::new();
    for segment in searcher.segment_readers() {
        for (term, _) in terms {
            reads.push(Box::pin(kept.warm_dictionary(segment, term)));
        }
    }
    join_all(reads).await.into_iter().collect()
}

/// Step 2: every term's postings (and positions where needed), the field norms of the terms'
/// fields, and the fast columns named in `columns` (each in every segment).
pub async fn postings(
    searcher: &Searcher,
    kept: &RemoteTerms,
    terms: &[(Term, bool)],
    columns: &[String],
) -> io::Result<()> {
    let mut reads: Vec<BoxFuture<'_, io::Result<()>>> = Vec::new();
    let mut fields: Vec<tantivy::schema::Field> =
        terms.iter().map(|(term, _)| term.field()).collect();
    fields.sort_unstable();
    fields.dedup();
    for segment in searcher.segment_readers() {
        for (term, positions) in terms {
            reads.push(Box::pin(kept.warm_postings(segment, term, *positions)));
        }
        let norms = segment.fieldnorms_readers().get_inner_file();
        for field in &fields {
            if let Some(slice) = norms.open_read(*field) {
                reads.push(Box::pin(async move {
                    slice.read_bytes_async().await?;
                    Ok(())
                }));
            }
        }
        for name in columns {
            let handles = segment
                .fast_fields()
                .dynamic_column_handles(name)
                .map_err(io::Error::other)?;
            for handle in handles {
                reads.push(Box::pin(async move {
                    handle.file_slice().read_bytes_async().await?;
                    Ok(())
                }));
            }
        }
    }
    join_all(reads).await.into_iter().collect()
}
