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
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use tantivy::directory::OwnedBytes;
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
    /// The average length BM25 sees (that `norms` were computed from).
    average: Score,
    /// `K1 * (1 - B + B * length / average length)` by fieldnorm id (tantivy's tf cache).
    norms: Box<[Score; 256]>,
    /// The field's inverted index in each segment.
    inverted: Vec<Arc<InvertedIndexReader>>,
    /// The field's fieldnorm ids in each segment, one byte a document: the bytes a
    /// `FieldNormReader` reads, read without its match on its kind at every posting (which
    /// took a fifth of the term-at-a-time loop's instructions).
    norm_ids: Vec<OwnedBytes>,
}

struct Clause {
    /// Index into `TermClauses::fields`.
    field: usize,
    /// idf × (1 + K1) × boost.
    weight: Score,
    /// The term in each segment, if there.
    infos: TermInfos,
    /// The term's postings decoded, in each segment where they are long ([`DecodedPostings`]):
    /// empty unless made by [`TermClauses::decoded`].
    decoded: Vec<Option<Arc<DecodedPostings>>>,
}

/// A term's postings in one segment, decoded, with each document's BM25 factor
/// `tf / (tf + norm)` for the field's average length then: what [`TermClauses::accumulate`]
/// otherwise decodes, looks the norm up for, and divides at every posting. A clause's score of
/// a document is its weight times the factor, the same float operations as [`score`].
///
/// Kept for terms of at least [`DECODED_MIN_DOCS`] documents, the common words of long questions
/// whose postings are most of a search's term-at-a-time pass (a question's rarer words cost
/// little), up to [`MAX_DECODED_POSTINGS`] postings in all, the terms met first staying.
///
/// Session 17, over the 60 slowest aliyun-faq dev queries searched twice (callgrind,
/// `search_with`, rerank pool 50): the term-at-a-time pass 198M → 118M instructions, the whole
/// search 777M → 715M (−8.0%); results byte-identical (`search_latency --dump` over the 1,747
/// dev queries); peak RSS of that run 144 → 154 MB. Decoding in every `TermClauses`, those of
/// the best sections too (which look documents up, reading few postings), cost more than it
/// saved there: 777M → 759M only.
pub struct DecodedPostings {
    /// The field's average length the factors were computed for (its bits).
    average: u32,
    docs: Box<[DocId]>,
    factors: Box<[Score]>,
}

/// Fewest documents of a term whose postings are kept decoded.
const DECODED_MIN_DOCS: u32 = 256;

/// Postings kept decoded, over all terms and segments (8 bytes each: 32 MB at most).
const MAX_DECODED_POSTINGS: usize = 4 << 20;

/// Calls `each(doc, term frequency)` for every posting of the term of `info` in segment `ord`
/// of `field`, in document order, block by block (a field indexed without frequencies counts
/// each match once).
#[inline]
fn for_each_posting(
    field: &FieldInfo,
    ord: usize,
    info: &TermInfo,
    mut each: impl FnMut(DocId, u32),
) -> tantivy::Result<()> {
    let mut block = field.inverted[ord]
        .read_block_postings_from_terminfo(info, IndexRecordOption::WithFreqs)?;
    loop {
        let docs = block.docs();
        if docs.is_empty() {
            return Ok(());
        }
        let freqs = block.freqs();
        if freqs.len() == docs.len() {
            for (&doc, &tf) in docs.iter().zip(freqs) {
                each(doc, tf);
            }
        } else {
            for (i, &doc) in docs.iter().enumerate() {
                each(doc, freqs.get(i).copied().unwrap_or(1));
            }
        }
        block.advance();
    }
}

/// The index of `field` in `fields`, added if missing.
fn field_index(
    fields: &mut Vec<FieldInfo>,
    field: Field,
    readers: &[SegmentReader],
    stats: &KindStatistics,
) -> tantivy::Result<usize> {
    if let Some(at) = fields.iter().position(|f| f.field == field) {
        return Ok(at);
    }
    let average = stats.total_num_tokens(field)? as Score / stats.total_num_docs()? as Score;
    let inverted = readers
        .iter()
        .map(|r| r.inverted_index(field))
        .collect::<tantivy::Result<_>>()?;
    let norm_ids = readers
        .iter()
        .map(|r| fieldnorm_ids(r, field))
        .collect::<tantivy::Result<_>>()?;
    fields.push(FieldInfo {
        field,
        average,
        norms: norms(average),
        inverted,
        norm_ids,
    });
    Ok(fields.len() - 1)
}

/// The fieldnorm ids of `field` in `reader`, one byte a document: the file
/// `SegmentReader::get_fieldnorms_reader` reads them from (its error if the field has none).
fn fieldnorm_ids(reader: &SegmentReader, field: Field) -> tantivy::Result<OwnedBytes> {
    let Some(file) = reader
        .fieldnorms_readers()
        .get_inner_file()
        .open_read(field)
    else {
        reader.get_fieldnorms_reader(field)?;
        return Err(tantivy::TantivyError::InternalError(format!(
            "no fieldnorms of {field:?}"
        )));
    };
    let ids = file.read_bytes()?;
    if ids.len() < reader.max_doc() as usize {
        return Err(tantivy::TantivyError::InternalError(format!(
            "fieldnorms of {field:?}: {} bytes for {} documents",
            ids.len(),
            reader.max_doc()
        )));
    }
    Ok(ids)
}

/// The idf part of a clause's BM25, times its boost, as `Bm25Weight::for_one_term(..).boost_by(..)`.
fn clause_weight(doc_freq: u64, doc_count: u64, boost: Score) -> Score {
    boosted(idf(doc_freq, doc_count) * (1.0 + K1), boost)
}

/// tantivy's `bm25::idf`.
fn idf(doc_freq: u64, doc_count: u64) -> Score {
    let x = ((doc_count - doc_freq) as Score + 0.5) / (doc_freq as Score + 0.5);
    (1.0 + x).ln()
}

/// `Bm25Weight::boost_by`.
fn boosted(weight: Score, boost: Score) -> Score {
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
///
/// Tried and dropped (session 11): looking `term_freq / (term_freq + norm)` up in a per-field
/// table (fieldnorm id × term frequencies 1 to 8, the same floats) instead of dividing, in the
/// term-at-a-time loop: that loop took 16% more CPU (perf samples over the 52 slowest aliyun-faq
/// dev queries, 1276 → 1478); the division was not what it waited on.
#[inline]
fn score(weight: Score, norm: Score, term_freq: u32) -> Score {
    weight * factor(norm, term_freq)
}

/// The part of [`score`] that is the document's: `tf / (tf + norm)` (what [`DecodedPostings`]
/// keeps).
#[inline]
fn factor(norm: Score, term_freq: u32) -> Score {
    let term_freq = term_freq as Score;
    term_freq / (term_freq + norm)
}

/// Term dictionary lookups of the searched segments, kept across queries: the terms of one
/// query are looked up in several passes (document frequencies, the term clauses, the best
/// sections) and queries share most of their words, while a lookup walks the dictionary's FST
/// and decodes a block of term infos (a tenth of a search's time). Segments never change, so an
/// entry stays right as long as its segments are searched; a term met again after the segments
/// changed is looked up again.
pub struct TermInfoCache {
    /// Per term, its info in each segment it was looked up in (those searched then).
    by_term: Mutex<FxHashMap<Term, SegmentTermInfos>>,
    decoded: Mutex<DecodedCache>,
    /// Fewest documents of a term whose postings are decoded ([`DECODED_MIN_DOCS`]).
    decoded_min_docs: u32,
}

impl Default for TermInfoCache {
    fn default() -> TermInfoCache {
        TermInfoCache {
            by_term: Mutex::default(),
            decoded: Mutex::default(),
            decoded_min_docs: DECODED_MIN_DOCS,
        }
    }
}

/// Long postings decoded, by term and segment (a term found costs no copy of it), and how many
/// postings they hold in all.
#[derive(Default)]
struct DecodedCache {
    by_term: FxHashMap<Term, Vec<(SegmentId, Arc<DecodedPostings>)>>,
    postings: usize,
    /// The segments searched last: when they change, the postings of the others leave.
    segments: Vec<SegmentId>,
}

/// Whether `segments` are those of `readers`, in their order.
fn same_segments(segments: &[SegmentId], readers: &[SegmentReader]) -> bool {
    segments.len() == readers.len()
        && segments
            .iter()
            .zip(readers)
            .all(|(s, r)| *s == r.segment_id())
}

/// A term's info in each of the segments it was looked up in, in their order: shared with the
/// callers, so that a term found here costs no allocation (one per lookup was about 1% of a
/// search, with its release).
struct SegmentTermInfos {
    segments: Box<[SegmentId]>,
    infos: TermInfos,
}

/// A term's info in each segment of a searcher, in its order (`None` where it is not).
pub type TermInfos = Arc<[Option<TermInfo>]>;

/// Terms kept (about 150 bytes each with two segments); past it, further terms are looked up
/// each time (the words met first, the common ones, stay: dropping the map at once would
/// stall the query that does it by a millisecond or more).
const MAX_CACHED_TERMS: usize = 50_000;

impl TermInfoCache {
    /// A cache that decodes the postings of terms of at least `min_docs` documents (tests:
    /// the sample knowledge base has no term of [`DECODED_MIN_DOCS`]).
    #[cfg(test)]
    pub fn decoding_from(min_docs: u32) -> TermInfoCache {
        TermInfoCache {
            decoded_min_docs: min_docs,
            ..TermInfoCache::default()
        }
    }

    /// The segments of the decoded postings kept (tests).
    #[cfg(test)]
    pub fn decoded_segments(&self) -> Vec<SegmentId> {
        let cache = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        let mut segments: Vec<SegmentId> =
            cache.by_term.values().flatten().map(|(s, _)| *s).collect();
        segments.sort();
        segments.dedup();
        segments
    }

    /// `term` in each segment of `readers` (`inverted`: the term's field there).
    pub fn lookup(
        &self,
        readers: &[SegmentReader],
        inverted: &[Arc<InvertedIndexReader>],
        term: &Term,
    ) -> std::io::Result<TermInfos> {
        if let Some(entry) = self
            .lock()
            .get(term)
            .filter(|e| same_segments(&e.segments, readers))
        {
            return Ok(Arc::clone(&entry.infos));
        }
        let infos: TermInfos = inverted
            .iter()
            .map(|i| i.get_term_info(term))
            .collect::<std::io::Result<Vec<_>>>()?
            .into();
        let entry = SegmentTermInfos {
            segments: readers.iter().map(|r| r.segment_id()).collect(),
            infos: Arc::clone(&infos),
        };
        let mut cache = self.lock();
        if cache.len() < MAX_CACHED_TERMS || cache.contains_key(term) {
            // Segments no longer searched leave with the entry they were in.
            cache.insert(term.clone(), entry);
        }
        Ok(infos)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<Term, SegmentTermInfos>> {
        self.by_term.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the decoded postings of segments no longer searched (merged or deleted away), when
    /// the segments of `readers` are not those searched last.
    fn follow_segments(&self, readers: &[SegmentReader]) {
        let mut cache = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        if same_segments(&cache.segments, readers) {
            return;
        }
        let segments: Vec<SegmentId> = readers.iter().map(|r| r.segment_id()).collect();
        cache.by_term.retain(|_, kept| {
            kept.retain(|(segment, _)| segments.contains(segment));
            !kept.is_empty()
        });
        cache.postings = cache
            .by_term
            .values()
            .flatten()
            .map(|(_, d)| d.docs.len())
            .sum();
        cache.segments = segments;
    }

    /// `term`'s postings in segment `ord` of `field` decoded, if they are long and fit (`None`:
    /// read them from the index).
    fn decoded(
        &self,
        reader: &SegmentReader,
        field: &FieldInfo,
        ord: usize,
        term: &Term,
        info: &TermInfo,
    ) -> tantivy::Result<Option<Arc<DecodedPostings>>> {
        if info.doc_freq < self.decoded_min_docs {
            return Ok(None);
        }
        let segment = reader.segment_id();
        let average = field.average.to_bits();
        let lock = || self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        {
            let cache = lock();
            if let Some((_, found)) = cache
                .by_term
                .get(term)
                .and_then(|kept| kept.iter().find(|(s, _)| *s == segment))
                .filter(|(_, d)| d.average == average)
            {
                return Ok(Some(Arc::clone(found)));
            }
            if cache.postings + info.doc_freq as usize > MAX_DECODED_POSTINGS {
                return Ok(None);
            }
        }
        let ids = field.norm_ids[ord].as_slice();
        let mut docs = Vec::with_capacity(info.doc_freq as usize);
        let mut factors = Vec::with_capacity(info.doc_freq as usize);
        for_each_posting(field, ord, info, |doc, tf| {
            docs.push(doc);
            factors.push(factor(field.norms[usize::from(ids[doc as usize])], tf));
        })?;
        let decoded = Arc::new(DecodedPostings {
            average,
            docs: docs.into(),
            factors: factors.into(),
        });
        let mut cache = lock();
        let kept = cache.by_term.entry(term.clone()).or_default();
        let replaced = match kept.iter_mut().find(|(s, _)| *s == segment) {
            Some((_, old)) => std::mem::replace(old, Arc::clone(&decoded)).docs.len(),
            None => {
                kept.push((segment, Arc::clone(&decoded)));
                0
            }
        };
        cache.postings = cache.postings + decoded.docs.len() - replaced;
        Ok(Some(decoded))
    }
}

/// A reusable accumulator, per thread: scores, and a byte per document scored (1) or not (0).
/// A byte is set with one store at each posting, a bit took six instructions (of about 23);
/// the bytes are read back by groups ([`drain_seen`]).
#[derive(Default)]
struct Scratch {
    scores: Vec<Score>,
    seen: Vec<u8>,
}

/// Calls `each(d)` for every document `d` whose byte of `seen` (whole groups of
/// [`SEEN_GROUP`]) is set, in document order, clearing the bytes. Most groups are all zero:
/// each is checked at once, then its set words of eight bytes one by one.
#[inline]
fn drain_seen(seen: &mut [u8], mut each: impl FnMut(usize)) {
    for (g, group) in seen.chunks_exact_mut(SEEN_GROUP).enumerate() {
        let half = |at: usize| u128::from_le_bytes(group[at..at + 16].try_into().expect("16"));
        if half(0) | half(16) == 0 {
            continue;
        }
        for (c, chunk) in group.chunks_exact_mut(8).enumerate() {
            let mut bytes = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            if bytes == 0 {
                continue;
            }
            chunk.fill(0);
            let base = g * SEEN_GROUP + c * 8;
            while bytes != 0 {
                each(base + bytes.trailing_zeros() as usize / 8);
                bytes &= bytes - 1;
            }
        }
    }
}

/// Bytes of [`Scratch::seen`] checked at once.
const SEEN_GROUP: usize = 32;

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
            let at = field_index(&mut fields, term.field(), readers, stats)?;
            let infos = stats.term_infos(readers, &fields[at].inverted, term)?;
            let raw: u64 = infos.iter().flatten().map(|i| u64::from(i.doc_freq)).sum();
            let doc_freq = stats.doc_freq_counted(term, raw);
            clauses.push(Clause {
                field: at,
                weight: clause_weight(doc_freq, doc_count, *boost),
                infos,
                decoded: Vec::new(),
            });
        }
        Ok(TermClauses { clauses, fields })
    }

    /// [`TermClauses::new`] with the long postings decoded through `stats`' term cache, kept
    /// there across queries ([`DecodedPostings`]): for clauses that score term at a time
    /// ([`TermClauses::for_each`], [`TermClauses::for_each_above`]); those that look documents up
    /// ([`TermClauses::add_scores_at`]) read few of their postings.
    pub fn decoded(
        searcher: &Searcher,
        stats: &KindStatistics,
        terms: &[(Term, f32)],
    ) -> tantivy::Result<TermClauses> {
        let mut clauses = TermClauses::new(searcher, stats, terms)?;
        let Some(cache) = stats.term_cache() else {
            return Ok(clauses);
        };
        let readers = searcher.segment_readers();
        cache.follow_segments(readers);
        for (clause, (term, _)) in clauses.clauses.iter_mut().zip(terms) {
            let field = &clauses.fields[clause.field];
            clause.decoded = readers
                .iter()
                .zip(clause.infos.iter())
                .enumerate()
                .map(|(ord, (reader, info))| match info {
                    Some(info) => cache.decoded(reader, field, ord, term, info),
                    None => Ok(None),
                })
                .collect::<tantivy::Result<_>>()?;
        }
        Ok(clauses)
    }

    /// Calls `found(doc, score)` for every document of segment `ord` that a clause matches, in
    /// document order, with the sum of its clauses' scores (deleted documents included).
    ///
    /// Tried and dropped (session 12): scoring only the documents that may enter the pool of
    /// the first phase (max-score style, exact: the clauses of the largest weights scored
    /// first, up to half the postings; the pool's floor taken from those scores; the other
    /// clauses' postings then only counted, and kept for the few documents that could still
    /// reach the floor, whose scores were summed again in clause order). The check rarely
    /// passed: over the 52 slowest aliyun-faq dev queries the other clauses' weights summed to
    /// about twice the floor (a pool of 100 or more documents sets a low floor, and a clause
    /// can add up to its whole weight), and even with the best split the postings whose scoring
    /// could be skipped were a median quarter of them. With the first pass wasted on a failed
    /// check, the term-at-a-time pass took 213M instructions instead of 130M (callgrind).
    pub fn for_each<F: FnMut(DocId, Score)>(
        &self,
        ord: usize,
        reader: &SegmentReader,
        found: &mut F,
    ) -> tantivy::Result<()> {
        self.with_scratch(ord, reader, |scratch, len| {
            let result = self.accumulate(ord, reader, scratch);
            let Scratch { scores, seen } = scratch;
            // Report (unless failed) and reset every document scored, in document order.
            drain_seen(&mut seen[..len], |d| {
                if result.is_ok() {
                    found(d as DocId, scores[d]);
                }
                scores[d] = 0.0;
            });
            result
        })
    }

    /// [`TermClauses::for_each`] for a caller that keeps only the documents scoring more than
    /// some floor: calls `found(doc, score)` only for those, in document order, starting from
    /// `floor` and then taking the floor each call returns; returns how many documents of
    /// segment `ord` a clause matches (deleted ones included), and sets each one's bit (bit
    /// `d % 64` of word `d / 64`) in `matched`, if given. Most documents score below the floor
    /// of a pool: offering each to it took 28M of the pass's 264M instructions over the 60
    /// slowest aliyun-faq dev queries (callgrind, session 16).
    pub fn for_each_above<F: FnMut(DocId, Score) -> Score>(
        &self,
        ord: usize,
        reader: &SegmentReader,
        mut floor: Score,
        matched: Option<&mut [u64]>,
        found: &mut F,
    ) -> tantivy::Result<usize> {
        self.with_scratch(ord, reader, |scratch, len| {
            let result = self.accumulate(ord, reader, scratch);
            let Scratch { scores, seen } = scratch;
            let (scores, seen) = (&mut scores[..len], &mut seen[..len]);
            let mut count = 0;
            // Three loops, so that the one run decides nothing at each document.
            match (&result, matched) {
                (Err(_), _) => drain_seen(seen, |d| scores[d] = 0.0),
                (Ok(()), None) => drain_seen(seen, |d| {
                    count += 1;
                    let score = std::mem::take(&mut scores[d]);
                    if score > floor {
                        floor = found(d as DocId, score);
                    }
                }),
                (Ok(()), Some(matched)) => drain_seen(seen, |d| {
                    count += 1;
                    matched[d / 64] |= 1 << (d % 64);
                    let score = std::mem::take(&mut scores[d]);
                    if score > floor {
                        floor = found(d as DocId, score);
                    }
                }),
            }
            result.map(|()| count)
        })
    }

    /// Calls `each` with this thread's scratch, sized for segment `ord`, and the length of its
    /// document bytes (`T::default()` when no clause is in the segment).
    fn with_scratch<T: Default>(
        &self,
        ord: usize,
        reader: &SegmentReader,
        each: impl FnOnce(&mut Scratch, usize) -> tantivy::Result<T>,
    ) -> tantivy::Result<T> {
        if self.clauses.iter().all(|c| c.infos[ord].is_none()) {
            return Ok(T::default());
        }
        let max_doc = reader.max_doc() as usize;
        // Whole groups.
        let len = max_doc.div_ceil(SEEN_GROUP) * SEEN_GROUP;
        let sized = |scratch: &mut Scratch| {
            // Kept all zero between calls: only the documents scored are reset.
            if scratch.scores.len() < len {
                scratch.scores.resize(len, 0.0);
            }
            if scratch.seen.len() < len {
                scratch.seen.resize(len, 0);
            }
        };
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                sized(&mut scratch);
                each(&mut scratch, len)
            }
            // Called again from inside a report: a scratch of its own.
            Err(_) => {
                let mut scratch = Scratch::default();
                sized(&mut scratch);
                each(&mut scratch, len)
            }
        })
    }

    /// Adds every clause's scores into `scratch` (sized for the segment), setting each scored
    /// document's byte; the caller reports and resets them.
    fn accumulate(
        &self,
        ord: usize,
        reader: &SegmentReader,
        scratch: &mut Scratch,
    ) -> tantivy::Result<()> {
        let max_doc = reader.max_doc() as usize;
        let Scratch { scores, seen } = scratch;
        let scores = &mut scores[..max_doc];
        let seen = &mut seen[..max_doc];
        for clause in &self.clauses {
            let Some(info) = &clause.infos[ord] else {
                continue;
            };
            if let Some(Some(decoded)) = clause.decoded.get(ord) {
                for (&doc, &factor) in decoded.docs.iter().zip(&decoded.factors) {
                    let d = doc as usize;
                    scores[d] += clause.weight * factor;
                    seen[d] = 1;
                }
                continue;
            }
            let field = &self.fields[clause.field];
            let ids = &field.norm_ids[ord].as_slice()[..max_doc];
            for_each_posting(field, ord, info, |doc, tf| {
                let d = doc as usize;
                let norm = field.norms[ids[d] as usize];
                scores[d] += score(clause.weight, norm, tf);
                seen[d] = 1;
            })?;
        }
        Ok(())
    }

    /// Adds each clause's score to the documents `docs` (segment `ord`, increasing order) it
    /// matches, in clause order: `scores[i]` becomes `Some` at its first matching clause.
    pub fn add_scores_at(
        &self,
        ord: usize,
        docs: &[DocId],
        scores: &mut [Option<Score>],
    ) -> tantivy::Result<()> {
        if docs.is_empty() || self.clauses.iter().all(|c| c.infos[ord].is_none()) {
            return Ok(());
        }
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
                let norm = field.norms[field.norm_ids[ord].as_slice()[doc as usize] as usize];
                *scores[i].get_or_insert(0.0) += score(clause.weight, norm, postings.term_freq());
            }
        }
        Ok(())
    }
}

/// Optional phrase clauses (proximity pairs, multi-word synonyms: `query::Bonus`), scored at
/// given documents as tantivy's `PhraseQuery` (or `TermQuery`, for one term) under a
/// `BoostQuery` scores them: BM25 of the number of times the phrase occurs, with the sum of its
/// terms' idf. Exact phrases only (slop 0). Scored document at a time: each distinct term's
/// postings are read once for all the clauses it is in (neighbouring pairs share a word, and
/// each pair is asked in two fields), its positions at most once per document.
pub struct PhraseClauses {
    phrases: Vec<PhraseClause>,
    fields: Vec<FieldInfo>,
    /// The distinct terms of the clauses.
    slots: Vec<Slot>,
}

struct PhraseClause {
    field: usize,
    /// idf (summed over the terms) × (1 + K1) × boost.
    weight: Score,
    /// Each term's shift (the last offset minus its own) and its index in `slots`, in offset
    /// order.
    terms: Vec<(u32, usize)>,
}

/// A distinct term of the clauses.
struct Slot {
    field: usize,
    /// Its info in each segment, if there.
    infos: TermInfos,
    /// Whether a clause of several terms has it (its positions are read).
    positions: bool,
}

/// A slot's postings in one segment, and what they hold at the current document.
struct SlotCursor {
    postings: tantivy::postings::SegmentPostings,
    /// Its positions there, when `read`.
    positions: Vec<u32>,
    read: bool,
}

impl SlotCursor {
    /// Its positions at the document, read on the first call there.
    fn positions(&mut self) -> &[u32] {
        if !self.read {
            self.postings.positions_with_offset(0, &mut self.positions);
            self.read = true;
        }
        &self.positions
    }
}

impl PhraseClauses {
    /// The clauses `(terms at offsets, boost)`; `None` if one has a slop (left to tantivy).
    pub fn new(
        searcher: &Searcher,
        stats: &KindStatistics,
        bonuses: &[super::query::Bonus],
    ) -> tantivy::Result<Option<PhraseClauses>> {
        if bonuses.iter().any(|b| b.slop != 0 || b.terms.is_empty()) {
            return Ok(None);
        }
        let readers = searcher.segment_readers();
        let doc_count = stats.total_num_docs()?;
        let mut fields: Vec<FieldInfo> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        // Each distinct term's slot (a long question has dozens: no search through them all).
        let mut slot_of: FxHashMap<&Term, usize> = FxHashMap::default();
        let mut phrases = Vec::with_capacity(bonuses.len());
        let mut terms: Vec<&(usize, Term)> = Vec::new();
        for bonus in bonuses {
            terms.clear();
            terms.extend(&bonus.terms);
            // As `PhraseQuery` orders them (a stable sort).
            terms.sort_by_key(|&&(offset, _)| offset);
            let field = terms[0].1.field();
            if terms.iter().any(|(_, t)| t.field() != field) {
                return Ok(None);
            }
            let at = field_index(&mut fields, field, readers, stats)?;
            let last = terms.last().map_or(0, |&&(offset, _)| offset);
            let mut idf_sum: Score = 0.0;
            let mut clause_terms = Vec::with_capacity(terms.len());
            let mut doc_freq = 0;
            for &(offset, ref term) in terms.iter().copied() {
                let slot = match slot_of.get(term) {
                    Some(&slot) => slot,
                    None => {
                        slots.push(Slot {
                            field: at,
                            infos: stats.term_infos(readers, &fields[at].inverted, term)?,
                            positions: false,
                        });
                        slot_of.insert(term, slots.len() - 1);
                        slots.len() - 1
                    }
                };
                slots[slot].positions |= terms.len() > 1;
                let infos = &slots[slot].infos;
                let raw: u64 = infos.iter().flatten().map(|i| u64::from(i.doc_freq)).sum();
                doc_freq = stats.doc_freq_counted(term, raw);
                idf_sum += idf(doc_freq, doc_count);
                clause_terms.push(((last - offset) as u32, slot));
            }
            let weight = if terms.len() == 1 {
                clause_weight(doc_freq, doc_count, bonus.boost)
            } else {
                boosted(idf_sum * (1.0 + K1), bonus.boost)
            };
            phrases.push(PhraseClause {
                field: at,
                weight,
                terms: clause_terms,
            });
        }
        Ok(Some(PhraseClauses {
            phrases,
            fields,
            slots,
        }))
    }

    /// Calls `add(i, score)` for each clause, in clause order, that matches `docs[i]` (segment
    /// `ord`, documents in increasing order).
    pub fn scores_at(
        &self,
        ord: usize,
        reader: &SegmentReader,
        docs: &[DocId],
        add: &mut dyn FnMut(usize, Score),
    ) -> tantivy::Result<()> {
        self.scores_at_bounded(ord, reader, docs, &mut |_, _| false, add)
    }

    /// [`PhraseClauses::scores_at`], except for the documents `docs[i]` for which
    /// `skip(i, bound)` is true, where `bound` is at least the sum of the scores the clauses
    /// would add to it (up to float rounding): first each clause's BM25 at the smallest
    /// frequency of its terms (which the phrase cannot occur more often than), known before any
    /// position is read; then, as the clauses of the largest such bounds are counted (in that
    /// order, without adding anything yet), their exact scores in place of their bounds, asked
    /// again each time the bound shrinks. The scores of a document not skipped are added in
    /// clause order once all are counted. `skip` is asked only about documents some clause may
    /// match.
    ///
    /// Tried and dropped (session 13): looking at each document's clauses through the slots
    /// found there (the live clauses listed by the slot of their first term, the matching ones
    /// sorted back into clause order) instead of computing every live clause's least frequency
    /// at every document: the same results, but this pass went from 84.7M to 86.1M
    /// instructions over the 52 slowest aliyun-faq dev queries (callgrind; its own code 39.8M
    /// to 40.0M). The per-clause loop was cheap; a document's cost is in counting the clauses
    /// that may match (positions read and merged: a third of this pass) and in moving the
    /// cursors.
    pub fn scores_at_bounded(
        &self,
        ord: usize,
        reader: &SegmentReader,
        docs: &[DocId],
        skip: &mut dyn FnMut(usize, Score) -> bool,
        add: &mut dyn FnMut(usize, Score),
    ) -> tantivy::Result<()> {
        // The clauses all of whose terms are in this segment.
        let live: Vec<&PhraseClause> = self
            .phrases
            .iter()
            .filter(|p| {
                p.terms
                    .iter()
                    .all(|&(_, s)| self.slots[s].infos[ord].is_some())
            })
            .collect();
        if docs.is_empty() || live.is_empty() {
            return Ok(());
        }
        let mut cursors: Vec<Option<SlotCursor>> = (0..self.slots.len()).map(|_| None).collect();
        for phrase in &live {
            for &(_, s) in &phrase.terms {
                if cursors[s].is_some() {
                    continue;
                }
                let slot = &self.slots[s];
                let info = slot.infos[ord]
                    .as_ref()
                    .expect("live clauses' terms are here");
                let option = if slot.positions {
                    IndexRecordOption::WithFreqsAndPositions
                } else {
                    IndexRecordOption::WithFreqs
                };
                let postings = self.fields[slot.field].inverted[ord]
                    .read_postings_from_terminfo(info, option)?;
                cursors[s] = Some(SlotCursor {
                    postings,
                    positions: position_buffer(),
                    read: false,
                });
            }
        }
        let fieldnorms: Vec<Option<FieldNormReader>> = (0..self.fields.len())
            .map(|f| {
                live.iter()
                    .any(|p| p.field == f)
                    .then(|| reader.get_fieldnorms_reader(self.fields[f].field))
                    .transpose()
            })
            .collect::<tantivy::Result<_>>()?;
        let mut norms: Vec<Score> = vec![0.0; self.fields.len()];
        // Each slot's term frequency at the document (0: not there, or no cursor), read by the
        // clauses from here rather than from their cursors (large, and optional).
        let mut tfs: Vec<u32> = vec![0; self.slots.len()];
        let mut left: Vec<u32> = Vec::new();
        let mut counts: Vec<u32> = vec![0; live.len()];
        let mut matching: Vec<(Score, usize)> = Vec::with_capacity(live.len());
        let mut rest: Vec<Score> = Vec::with_capacity(live.len());
        for (i, &doc) in docs.iter().enumerate() {
            let mut any = false;
            for (cursor, tf) in cursors.iter_mut().zip(&mut tfs) {
                let Some(cursor) = cursor else {
                    continue;
                };
                cursor.read = false;
                *tf = if seek(&mut cursor.postings, doc) {
                    any = true;
                    cursor.postings.term_freq()
                } else {
                    0
                };
            }
            if !any {
                continue;
            }
            for (f, fieldnorms) in fieldnorms.iter().enumerate() {
                if let Some(fieldnorms) = fieldnorms {
                    norms[f] = self.fields[f].norms[fieldnorms.fieldnorm_id(doc) as usize];
                }
            }
            let least = |phrase: &PhraseClause| {
                phrase.terms.iter().map(|&(_, s)| tfs[s]).min().unwrap_or(0)
            };
            // The clauses that may match, with the most each can add, largest first.
            matching.clear();
            let mut bound: Score = 0.0;
            for (c, phrase) in live.iter().enumerate() {
                counts[c] = 0;
                let tf = least(phrase);
                if tf > 0 {
                    let most = score(phrase.weight.max(0.0), norms[phrase.field], tf);
                    bound += most;
                    matching.push((most, c));
                }
            }
            if matching.is_empty() || skip(i, bound) {
                continue;
            }
            matching.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            // What the clauses not counted yet can add, after each.
            rest.clear();
            rest.resize(matching.len(), 0.0);
            for j in (0..matching.len().saturating_sub(1)).rev() {
                rest[j] = rest[j + 1] + matching[j + 1].0;
            }
            let mut counted: Score = 0.0;
            let mut skipped = false;
            for (j, &(most, c)) in matching.iter().enumerate() {
                let phrase = live[c];
                let count = if let [(_, s)] = phrase.terms.as_slice() {
                    tfs[*s]
                } else {
                    phrase_count(phrase, &mut cursors, &mut left)
                };
                counts[c] = count;
                let exact = if count > 0 {
                    score(phrase.weight.max(0.0), norms[phrase.field], count)
                } else {
                    0.0
                };
                counted += exact;
                // Less than its most: the bound shrinks, the document may be skipped now.
                if exact < most && j + 1 < matching.len() && skip(i, counted + rest[j]) {
                    skipped = true;
                    break;
                }
            }
            if skipped {
                continue;
            }
            // Added in clause order, as the whole query sums them.
            for (c, phrase) in live.iter().enumerate() {
                if counts[c] > 0 {
                    add(i, score(phrase.weight, norms[phrase.field], counts[c]));
                }
            }
        }
        recycle_positions(cursors);
        Ok(())
    }
}

thread_local! {
    /// Position buffers of [`SlotCursor`]s kept between calls, this thread's: a cursor's own
    /// grew from empty (a reallocation and a half per cursor, about 30 cursors a call).
    static POSITION_BUFFERS: RefCell<Vec<Vec<u32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept in [`POSITION_BUFFERS`], and the largest kept (positions).
const MAX_POSITION_BUFFERS: usize = 256;
const MAX_POSITION_BUFFER: usize = 4096;

/// An empty position buffer, kept from an earlier call if there is one.
fn position_buffer() -> Vec<u32> {
    POSITION_BUFFERS
        .with(|buffers| buffers.borrow_mut().pop())
        .unwrap_or_default()
}

/// Keeps the position buffers of `cursors` for later calls (up to the limits).
fn recycle_positions(cursors: Vec<Option<SlotCursor>>) {
    POSITION_BUFFERS.with(|buffers| {
        let mut buffers = buffers.borrow_mut();
        for cursor in cursors.into_iter().flatten() {
            let mut positions = cursor.positions;
            if buffers.len() < MAX_POSITION_BUFFERS && positions.capacity() <= MAX_POSITION_BUFFER {
                positions.clear();
                buffers.push(positions);
            }
        }
    });
}

/// How often `phrase` (two terms or more, all at the current document) occurs there: the
/// positions, each shifted onto the phrase's last term, that all its terms share.
fn phrase_count(
    phrase: &PhraseClause,
    cursors: &mut [Option<SlotCursor>],
    left: &mut Vec<u32>,
) -> u32 {
    if let &[(first_shift, first), (last_shift, last)] = phrase.terms.as_slice() {
        // A pair (most clauses): its occurrences counted on the two lists, none copied.
        for s in [first, last] {
            cursors[s]
                .as_mut()
                .expect("the clause's terms have cursors")
                .positions();
        }
        let positions = |s: usize| cursors[s].as_ref().map_or(&[][..], |c| &c.positions[..]);
        return count_shared(positions(first), first_shift, positions(last), last_shift);
    }
    left.clear();
    for (n, &(shift, s)) in phrase.terms.iter().enumerate() {
        let positions = cursors[s]
            .as_mut()
            .expect("the clause's terms have cursors")
            .positions();
        if n == 0 {
            left.extend(positions.iter().map(|&p| p + shift));
            continue;
        }
        let kept = retain_shared(left, positions, shift);
        left.truncate(kept);
        if left.is_empty() {
            return 0;
        }
    }
    left.len() as u32
}

/// How many values `a + a_shift` some `b + b_shift` equals (`a`, `b` sorted, without
/// repeats): what [`retain_shared`] keeps of `a` shifted, without writing. A list much shorter
/// than the other is looked up in it by binary search instead of a merge.
///
/// Tried and dropped (session 16): lists of 12 values or more meeting in a bitset (the shorter
/// list's values marked, the other's looked up, the marks cleared) instead of the merge: the
/// bonus pass took 222.0M instructions instead of 219.3M over the 60 slowest aliyun-faq dev
/// queries (callgrind), and 16 of the 1,747 dev queries ranked differently. The likely cause,
/// not checked further: a position list may repeat a value (two tokens of one term at one
/// position), which the merge pairs off once and a bitset counts as often as the other list
/// holds it; for the same reason the binary search above (which counts each repeat in the
/// shorter list) was left to lists eight times apart.
fn count_shared(a: &[u32], a_shift: u32, b: &[u32], b_shift: u32) -> u32 {
    let (short, short_shift, long, long_shift) = if a.len() <= b.len() {
        (a, a_shift, b, b_shift)
    } else {
        (b, b_shift, a, a_shift)
    };
    let mut count = 0;
    if short.len() * 8 < long.len() {
        let mut rest = long;
        for &p in short {
            let at = p + short_shift;
            rest = &rest[rest.partition_point(|&q| q + long_shift < at)..];
            let Some(&q) = rest.first() else { break };
            count += u32::from(q + long_shift == at);
        }
    } else {
        // Without branches on the values, as in `retain_shared`.
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i] + a_shift, b[j] + b_shift);
            count += u32::from(x == y);
            i += usize::from(x <= y);
            j += usize::from(y <= x);
        }
    }
    count
}

/// Keeps in `left` (sorted) the values some `position + shift` equals (`positions` sorted);
/// returns how many. A list much shorter than the other is looked up in it by binary search
/// instead of a merge.
fn retain_shared(left: &mut [u32], positions: &[u32], shift: u32) -> usize {
    let mut kept = 0;
    if left.len() * 8 < positions.len() {
        let mut rest = positions;
        for k in 0..left.len() {
            let at = left[k];
            let skip = rest.partition_point(|&p| p + shift < at);
            rest = &rest[skip..];
            let Some(&p) = rest.first() else { break };
            if p + shift == at {
                left[kept] = at;
                kept += 1;
                rest = &rest[1..];
            }
        }
    } else if positions.len() * 8 < left.len() {
        let mut from = 0;
        for &p in positions {
            let at = p + shift;
            from += left[from..].partition_point(|&l| l < at);
            if from == left.len() {
                break;
            }
            if left[from] == at {
                left[kept] = at;
                kept += 1;
                from += 1;
            }
        }
    } else {
        // A merge without branches on the values (which mispredict): each step keeps the
        // smaller value's list moving, and both on a shared value, kept.
        let (mut i, mut j) = (0, 0);
        while i < left.len() && j < positions.len() {
            let at = left[i];
            let p = positions[j] + shift;
            left[kept] = at;
            kept += usize::from(at == p);
            i += usize::from(at <= p);
            j += usize::from(p <= at);
        }
    }
    kept
}

/// Whether `postings` holds `doc`, moving on to it (documents asked in increasing order).
fn seek(postings: &mut tantivy::postings::SegmentPostings, doc: DocId) -> bool {
    let at = postings.doc();
    if at == doc {
        return true;
    }
    at != TERMINATED && at < doc && postings.seek(doc) == doc
}

#[cfg(test)]
mod tests {
    use tantivy::query::Bm25Weight;

    use super::*;
    use crate::route::train::SplitMix;

    /// A random position list (sorted, without repeats): short half the time, so both the merge
    /// and the binary search are taken.
    fn position_list(rng: &mut SplitMix) -> Vec<u32> {
        let len = if rng.below(2) == 0 {
            rng.below(6)
        } else {
            rng.below(80)
        };
        let span = 1 + rng.below(200);
        let mut v: Vec<u32> = (0..len).map(|_| rng.below(span) as u32).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// `retain_shared` keeps exactly the shared values, by merge or by binary search.
    #[test]
    fn retain_shared_keeps_the_intersection() {
        let mut rng = SplitMix::new(3);
        for _ in 0..2000 {
            let (left, positions, shift) = (
                position_list(&mut rng),
                position_list(&mut rng),
                rng.below(4) as u32,
            );
            let expected: Vec<u32> = left
                .iter()
                .copied()
                .filter(|&at| positions.iter().any(|&p| p + shift == at))
                .collect();
            let mut got = left.clone();
            let kept = retain_shared(&mut got, &positions, shift);
            assert_eq!(
                &got[..kept],
                &expected[..],
                "{left:?} {positions:?} {shift}"
            );
        }
    }

    /// `count_shared` counts what `retain_shared` keeps, both ways round.
    #[test]
    fn count_shared_counts_the_intersection() {
        let mut rng = SplitMix::new(5);
        for _ in 0..2000 {
            let (a, b) = (position_list(&mut rng), position_list(&mut rng));
            let (a_shift, b_shift) = (rng.below(4) as u32, rng.below(4) as u32);
            let mut left: Vec<u32> = a.iter().map(|&p| p + a_shift).collect();
            let kept = retain_shared(&mut left, &b, b_shift);
            assert_eq!(count_shared(&a, a_shift, &b, b_shift), kept as u32);
            assert_eq!(count_shared(&b, b_shift, &a, a_shift), kept as u32);
        }
    }

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
