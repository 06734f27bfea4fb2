//! Term-at-a-time scoring of weighted term clauses: each clause's postings are read in one pass
//! into a dense per-segment accumulator, instead of tantivy's union of boxed term scorers (which
//! keeps a window of per-document combiners and advances every clause through it).
//!
//! Owns: the BM25 of one boosted term clause, computed exactly as tantivy's `TermScorer` does
//! (same formula, same float operations in the same order), and the sum of a document's
//! clauses in clause order, which is the order tantivy's union sums them in: scores, and so
//! rankings and ties, are bit for bit those of a `BooleanQuery` of the same boosted
//! `TermQuery`s. Each term is looked up once per segment; its document frequency comes from
//! that lookup. Must never: report a document no clause matches, or skip the deleted-document
//! check (the callers' job, as with tantivy's scoring loops).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::SegmentId;
use tantivy::postings::{Postings, TermInfo};
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{
    DocId, DocSet, InvertedIndexReader, Score, Searcher, SegmentReader, TERMINATED, Term,
};

use super::rank::KindStatistics;

/// tantivy's BM25 constants (`tantivy::query::bm25`).
const K1: Score = 1.2;
const B: Score = 0.75;

/// Boosted term clauses, ready to score any segment of one searcher.
pub struct TermClauses {
    clauses: Vec<Clause>,
    fields: Vec<FieldInfo>,
}

struct FieldInfo {
    field: Field,
    /// `K1 * (1 - B + B * length / average length)` by fieldnorm id (tantivy's tf cache).
    norms: Box<[Score; 256]>,
    /// The field's inverted index in each segment.
    inverted: Vec<Arc<InvertedIndexReader>>,
}

struct Clause {
    /// Index into `TermClauses::fields`.
    field: usize,
    /// idf × (1 + K1) × boost.
    weight: Score,
    /// The term in each segment, if there.
    infos: Vec<Option<TermInfo>>,
}

/// The idf part of a clause's BM25, times its boost, as `Bm25Weight::for_one_term(..).boost_by(..)`.
fn clause_weight(doc_freq: u64, doc_count: u64, boost: Score) -> Score {
    let x = ((doc_count - doc_freq) as Score + 0.5) / (doc_freq as Score + 0.5);
    let idf = (1.0 + x).ln();
    let weight = idf * (1.0 + K1);
    if boost == 1.0 { weight } else { weight * boost }
}

/// tantivy's tf cache of a field of this average length.
fn norms(average_fieldnorm: Score) -> Box<[Score; 256]> {
    let mut cache = Box::new([0.0; 256]);
    for (id, norm) in cache.iter_mut().enumerate() {
        let fieldnorm = FieldNormReader::id_to_fieldnorm(id as u8);
        *norm = K1 * (1.0 - B + B * fieldnorm as Score / average_fieldnorm);
    }
    cache
}

/// One clause's score of a document: `Bm25Weight::score`.
#[inline]
fn score(weight: Score, norm: Score, term_freq: u32) -> Score {
    let term_freq = term_freq as Score;
    weight * (term_freq / (term_freq + norm))
}

/// Term dictionary lookups of the searched segments, kept across queries: the terms of one
/// query are looked up in several passes (document frequencies, the term clauses, the best
/// sections) and queries share most of their words, while a lookup walks the dictionary's FST
/// and decodes a block of term infos (a tenth of a search's time). Segments never change, so an
/// entry stays right as long as its segment is searched; those no longer searched are dropped.
#[derive(Default)]
pub struct TermInfoCache {
    by_segment: Mutex<HashMap<SegmentId, HashMap<Term, Option<TermInfo>>>>,
}

/// Entries kept per segment (about 120 bytes each); past it, further terms are looked up each
/// time (the words met first, the common ones, stay: dropping the map at once would stall the
/// query that does it by a millisecond or more).
const MAX_CACHED_TERMS: usize = 50_000;

impl TermInfoCache {
    /// `term` in each segment of `readers` (`inverted`: the term's field there).
    pub fn lookup(
        &self,
        readers: &[SegmentReader],
        inverted: &[Arc<InvertedIndexReader>],
        term: &Term,
    ) -> std::io::Result<Vec<Option<TermInfo>>> {
        let mut infos: Vec<Option<Option<TermInfo>>> = {
            let cache = self.lock();
            readers
                .iter()
                .map(|r| {
                    cache
                        .get(&r.segment_id())
                        .and_then(|m| m.get(term))
                        .cloned()
                })
                .collect()
        };
        if infos.iter().all(Option::is_some) {
            return Ok(infos.into_iter().flatten().collect());
        }
        for (info, inverted) in infos.iter_mut().zip(inverted) {
            if info.is_none() {
                *info = Some(inverted.get_term_info(term)?);
            }
        }
        let infos: Vec<Option<TermInfo>> = infos.into_iter().flatten().collect();
        let mut cache = self.lock();
        if readers.iter().any(|r| !cache.contains_key(&r.segment_id())) {
            cache.retain(|id, _| readers.iter().any(|r| r.segment_id() == *id));
        }
        for (reader, info) in readers.iter().zip(&infos) {
            let terms = cache.entry(reader.segment_id()).or_default();
            if terms.len() < MAX_CACHED_TERMS {
                terms.insert(term.clone(), info.clone());
            }
        }
        Ok(infos)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SegmentId, HashMap<Term, Option<TermInfo>>>> {
        self.by_segment.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reusable accumulator (scores and a bitset of the documents scored), per thread.
#[derive(Default)]
struct Scratch {
    scores: Vec<Score>,
    seen: Vec<u64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl TermClauses {
    /// The clauses `(term, boost)` with the statistics of `stats` (document frequencies are
    /// counted from the term lookups and remembered by `stats`).
    pub fn new(
        searcher: &Searcher,
        stats: &KindStatistics,
        terms: &[(Term, f32)],
    ) -> tantivy::Result<TermClauses> {
        let readers = searcher.segment_readers();
        let doc_count = stats.total_num_docs()?;
        let mut fields: Vec<FieldInfo> = Vec::new();
        let mut clauses = Vec::with_capacity(terms.len());
        for (term, boost) in terms {
            let field = term.field();
            let at = match fields.iter().position(|f| f.field == field) {
                Some(at) => at,
                None => {
                    let average = stats.total_num_tokens(field)? as Score / doc_count as Score;
                    let inverted = readers
                        .iter()
                        .map(|r| r.inverted_index(field))
                        .collect::<tantivy::Result<_>>()?;
                    fields.push(FieldInfo {
                        field,
                        norms: norms(average),
                        inverted,
                    });
                    fields.len() - 1
                }
            };
            let infos = stats.term_infos(readers, &fields[at].inverted, term)?;
            let raw: u64 = infos.iter().flatten().map(|i| u64::from(i.doc_freq)).sum();
            let doc_freq = stats.doc_freq_counted(term, raw);
            clauses.push(Clause {
                field: at,
                weight: clause_weight(doc_freq, doc_count, *boost),
                infos,
            });
        }
        Ok(TermClauses { clauses, fields })
    }

    fn fieldnorms(&self, reader: &SegmentReader) -> tantivy::Result<Vec<FieldNormReader>> {
        self.fields
            .iter()
            .map(|f| reader.get_fieldnorms_reader(f.field))
            .collect()
    }

    /// Calls `found(doc, score)` for every document of segment `ord` that a clause matches, in
    /// document order, with the sum of its clauses' scores (deleted documents included).
    pub fn for_each(
        &self,
        ord: usize,
        reader: &SegmentReader,
        found: &mut dyn FnMut(DocId, Score),
    ) -> tantivy::Result<()> {
        if self.clauses.iter().all(|c| c.infos[ord].is_none()) {
            return Ok(());
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.accumulate(ord, reader, &mut scratch, found),
            // Called again from inside `found`: a scratch of its own.
            Err(_) => self.accumulate(ord, reader, &mut Scratch::default(), found),
        })
    }

    fn accumulate(
        &self,
        ord: usize,
        reader: &SegmentReader,
        scratch: &mut Scratch,
        found: &mut dyn FnMut(DocId, Score),
    ) -> tantivy::Result<()> {
        let max_doc = reader.max_doc() as usize;
        let Scratch { scores, seen } = scratch;
        // Kept all zero between calls: only the documents scored are reset.
        if scores.len() < max_doc {
            scores.resize(max_doc, 0.0);
        }
        let words = max_doc.div_ceil(64);
        if seen.len() < words {
            seen.resize(words, 0);
        }
        let fieldnorms = self.fieldnorms(reader)?;
        let result = (|| -> tantivy::Result<()> {
            for clause in &self.clauses {
                let Some(info) = &clause.infos[ord] else {
                    continue;
                };
                let field = &self.fields[clause.field];
                let fieldnorms = &fieldnorms[clause.field];
                let mut block = field.inverted[ord]
                    .read_block_postings_from_terminfo(info, IndexRecordOption::WithFreqs)?;
                loop {
                    let docs = block.docs();
                    if docs.is_empty() {
                        break;
                    }
                    let freqs = block.freqs();
                    for (i, &doc) in docs.iter().enumerate() {
                        // A field indexed without frequencies counts each match once.
                        let tf = freqs.get(i).copied().unwrap_or(1);
                        let norm = field.norms[fieldnorms.fieldnorm_id(doc) as usize];
                        let d = doc as usize;
                        scores[d] += score(clause.weight, norm, tf);
                        seen[d / 64] |= 1 << (d % 64);
                    }
                    block.advance();
                }
            }
            Ok(())
        })();
        // Report (unless failed) and reset every document scored, in document order.
        for (w, word) in seen.iter_mut().enumerate().take(words) {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let d = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if result.is_ok() {
                    found(d as DocId, scores[d]);
                }
                scores[d] = 0.0;
            }
        }
        result
    }

    /// Adds each clause's score to the documents `docs` (segment `ord`, increasing order) it
    /// matches, in clause order: `scores[i]` becomes `Some` at its first matching clause.
    pub fn add_scores_at(
        &self,
        ord: usize,
        reader: &SegmentReader,
        docs: &[DocId],
        scores: &mut [Option<Score>],
    ) -> tantivy::Result<()> {
        if docs.is_empty() || self.clauses.iter().all(|c| c.infos[ord].is_none()) {
            return Ok(());
        }
        let fieldnorms = self.fieldnorms(reader)?;
        for clause in &self.clauses {
            let Some(info) = &clause.infos[ord] else {
                continue;
            };
            let field = &self.fields[clause.field];
            let mut postings = field.inverted[ord]
                .read_postings_from_terminfo(info, IndexRecordOption::WithFreqs)?;
            for (i, &doc) in docs.iter().enumerate() {
                let at = postings.doc();
                if at == TERMINATED {
                    break;
                }
                if at > doc || postings.seek(doc) != doc {
                    continue;
                }
                let norm = field.norms[fieldnorms[clause.field].fieldnorm_id(doc) as usize];
                *scores[i].get_or_insert(0.0) += score(clause.weight, norm, postings.term_freq());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tantivy::query::Bm25Weight;

    use super::*;

    /// The clause BM25 is tantivy's, bit for bit, for any document frequency, boost, length
    /// and term frequency.
    #[test]
    fn clause_scores_are_tantivys() {
        for (doc_freq, doc_count) in [(1u64, 10u64), (7, 155_000), (14_000, 155_000), (0, 3)] {
            for average in [1.0f32, 3.7, 152.25, 1234.5] {
                let cache = norms(average);
                for boost in [1.0f32, 0.3, 1.3, 0.09, 0.5 * 0.6] {
                    let reference =
                        Bm25Weight::for_one_term_without_explain(doc_freq, doc_count, average)
                            .boost_by(boost);
                    let weight = clause_weight(doc_freq, doc_count, boost);
                    for id in 0..=255u8 {
                        for tf in [1u32, 2, 3, 17, 400] {
                            let ours = score(weight, cache[id as usize], tf);
                            let theirs = reference.score(id, tf);
                            assert_eq!(ours.to_bits(), theirs.to_bits(), "{doc_freq} {id} {tf}");
                        }
                    }
                }
            }
        }
    }
}
