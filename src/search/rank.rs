//! Grouping per article: a section's score and its article's score combine into one score per
//! article, the best section giving the snippet and anchor.
//!
//! Owns: the combination `section × best section score + article × article score`
//! ([`RankParams`]) and the order of results. Must never: return an article twice, or one whose
//! id matched an exclusion.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;

use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{
    BooleanQuery, BoostQuery, EnableScoring, Occur, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{
    DocAddress, DocId, DocSet, InvertedIndexReader, Score, Searcher, SeekDangerResult,
    SegmentReader, TERMINATED, Term,
};

use super::SearchError;
use super::query::{RankParams, SplitQuery, boosted_term};
use super::taat::{PhraseClauses, TermClauses, TermInfoCache, TermInfos};

/// One article in the running.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: u64,
    pub score: f32,
    /// Its best section, if a section matched among the candidates.
    pub section: Option<DocAddress>,
    /// Its article document, if it was among the article candidates.
    pub article: Option<DocAddress>,
    section_score: f32,
    article_score: f32,
}

/// Candidates of one search, keyed by article.
pub struct Candidates<'a> {
    searcher: &'a Searcher,
    key_field: Field,
    columns: Vec<Option<Column<u64>>>,
    ids: Vec<Option<StrColumn>>,
    by_key: FxHashMap<u64, Candidate>,
}

impl<'a> Candidates<'a> {
    pub fn new(searcher: &'a Searcher, key_field: Field) -> Candidates<'a> {
        Candidates {
            searcher,
            key_field,
            columns: vec![None; searcher.segment_readers().len()],
            ids: vec![None; searcher.segment_readers().len()],
            by_key: FxHashMap::default(),
        }
    }

    /// The article key of a document (fast field, no doc store read).
    pub fn key(&mut self, addr: DocAddress) -> Result<u64, SearchError> {
        let ord = addr.segment_ord as usize;
        if self.columns[ord].is_none() {
            let reader = self.searcher.segment_reader(addr.segment_ord);
            let name = self.searcher.schema().get_field_name(self.key_field);
            self.columns[ord] = Some(reader.fast_fields().u64(name)?);
        }
        let column = self.columns[ord].as_ref().expect("column loaded above");
        Ok(column.first(addr.doc_id).unwrap_or(0))
    }

    /// The article ids of documents, in order, from `cache`.
    pub fn ids(
        &mut self,
        cache: &IdCache,
        addrs: &[DocAddress],
    ) -> Result<Vec<String>, SearchError> {
        let mut out = Vec::with_capacity(addrs.len());
        let mut tables: HashMap<u32, Arc<Vec<String>>> = HashMap::new();
        for addr in addrs {
            let ord = addr.segment_ord as usize;
            if self.ids[ord].is_none() {
                let reader = self.searcher.segment_reader(addr.segment_ord);
                self.ids[ord] = reader.fast_fields().str("id")?;
            }
            let Some(column) = &self.ids[ord] else {
                out.push(String::new());
                continue;
            };
            let table = match tables.get(&addr.segment_ord) {
                Some(table) => table.clone(),
                None => {
                    let reader = self.searcher.segment_reader(addr.segment_ord);
                    let table =
                        cache.get_or_load(self.searcher, reader, || dictionary_terms(column))?;
                    tables.insert(addr.segment_ord, table.clone());
                    table
                }
            };
            let id = column
                .ords()
                .first(addr.doc_id)
                .and_then(|o| table.get(o as usize))
                .cloned()
                .unwrap_or_default();
            out.push(id);
        }
        Ok(out)
    }

    fn entry(&mut self, key: u64) -> &mut Candidate {
        self.by_key.entry(key).or_insert(Candidate {
            key,
            score: 0.0,
            section: None,
            article: None,
            section_score: 0.0,
            article_score: 0.0,
        })
    }

    /// Room for `more` candidates.
    pub fn reserve(&mut self, more: usize) {
        self.by_key.reserve(more);
    }

    pub fn add_article(&mut self, addr: DocAddress, score: f32) -> Result<(), SearchError> {
        let key = self.key(addr)?;
        let entry = self.entry(key);
        entry.article = Some(addr);
        entry.article_score = score;
        Ok(())
    }

    /// Sections arrive best first; the first one of an article is its best.
    pub fn add_section(
        &mut self,
        addr: DocAddress,
        score: f32,
        excluded: &HashSet<u64>,
    ) -> Result<(), SearchError> {
        let key = self.key(addr)?;
        if excluded.contains(&key) {
            return Ok(());
        }
        let entry = self.entry(key);
        if entry.section.is_none() {
            entry.section = Some(addr);
            entry.section_score = score;
        }
        Ok(())
    }

    /// Best first; ties broken by document order, so results are deterministic.
    pub fn ranked(&mut self, params: &RankParams) -> Vec<Candidate> {
        let mut all: Vec<Candidate> = std::mem::take(&mut self.by_key)
            .into_values()
            .map(|mut c| {
                c.score = params.section * c.section_score + params.article * c.article_score;
                c
            })
            .collect();
        all.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.article.cmp(&b.article))
                .then_with(|| a.section.cmp(&b.section))
        });
        all
    }
}

/// BM25 statistics per kind of document. Sections and articles share one index but not fields;
/// tantivy divides a field's token count by ALL documents, which would make the average article
/// look as short as a section and punish long articles (and mis-scale idf). This provider scales
/// each field's statistics to the documents that have it.
pub struct KindStatistics<'a> {
    searcher: &'a Searcher,
    all: u64,
    /// Fields of article documents; the others belong to section documents.
    article_fields: [Field; 3],
    articles: u64,
    sections: u64,
    /// Per field, a factor on its average length (see [`KindStatistics::with_length_scales`]).
    length_scales: Vec<(Field, f64)>,
    /// Document frequencies already looked up (a query asks for a term in several clauses and
    /// passes: its term clause, its proximity pairs, the best sections).
    doc_freqs: std::cell::RefCell<FxHashMap<Term, u64>>,
    /// Token counts already summed, per field.
    num_tokens: std::cell::RefCell<FxHashMap<Field, u64>>,
    /// Term lookups kept across queries, if any.
    term_cache: Option<&'a TermInfoCache>,
}

impl<'a> KindStatistics<'a> {
    pub fn new(
        searcher: &'a Searcher,
        kind: Field,
        article_fields: [Field; 3],
    ) -> tantivy::Result<KindStatistics<'a>> {
        use tantivy::query::Bm25StatisticsProvider;
        let count = |k: &str| searcher.doc_freq(&tantivy::Term::from_field_text(kind, k));
        Ok(KindStatistics {
            searcher,
            all: searcher.total_num_docs()?.max(1),
            article_fields,
            articles: count(super::index::KIND_ARTICLE)?.max(1),
            sections: count(super::index::KIND_SECTION)?.max(1),
            length_scales: Vec::new(),
            doc_freqs: Default::default(),
            num_tokens: Default::default(),
            term_cache: None,
        })
    }

    /// Looks terms up through `cache` (kept across queries).
    pub fn with_term_cache(mut self, cache: &'a TermInfoCache) -> KindStatistics<'a> {
        self.term_cache = Some(cache);
        self
    }

    /// The term cache, if there is one (it also keeps long postings decoded).
    pub fn term_cache(&self) -> Option<&'a TermInfoCache> {
        self.term_cache
    }

    /// `term` in each segment of `readers` (`inverted`: the term's field there), through the
    /// term cache if there is one.
    pub fn term_infos(
        &self,
        readers: &[SegmentReader],
        inverted: &[Arc<InvertedIndexReader>],
        term: &Term,
    ) -> std::io::Result<TermInfos> {
        match self.term_cache {
            Some(cache) => cache.lookup(readers, inverted, term),
            None => Ok(inverted
                .iter()
                .map(|i| i.get_term_info(term))
                .collect::<std::io::Result<Vec<_>>>()?
                .into()),
        }
    }

    /// Scales the average length BM25 sees for each field by its factor (1 = as indexed). Above 1,
    /// a document's length counts less against it and repeated terms saturate later: with
    /// tantivy's fixed k1 = 1.2 and b = 0.75, a factor c acts as k1 = 1.2 (0.25 + 0.75 / c) and
    /// b = (0.75 / c) / (0.25 + 0.75 / c) on that field.
    pub fn with_length_scales(mut self, scales: &[(Field, f32)]) -> KindStatistics<'a> {
        self.length_scales = scales
            .iter()
            .filter(|(_, s)| *s > 0.0 && *s != 1.0)
            .map(|&(f, s)| (f, f64::from(s)))
            .collect();
        self
    }

    /// [`Bm25StatisticsProvider::doc_freq`] of `term` from its document count over all
    /// segments, `raw` (what that method looks up), for a caller that looked the term up
    /// already. Not remembered: it is a function of `raw`, which a later lookup finds the same,
    /// and remembering cost each clause two hashings of its term and a copy (a query of a
    /// hundred clauses asks for each in two or three passes).
    ///
    /// [`Bm25StatisticsProvider::doc_freq`]: tantivy::query::Bm25StatisticsProvider::doc_freq
    pub fn doc_freq_counted(&self, term: &Term, raw: u64) -> u64 {
        self.scale(term.field(), raw).min(self.all)
    }

    fn scale(&self, field: Field, value: u64) -> u64 {
        let own = if self.article_fields.contains(&field) {
            self.articles
        } else {
            self.sections
        };
        ((value as f64) * (self.all as f64) / (own as f64)).round() as u64
    }
}

impl tantivy::query::Bm25StatisticsProvider for KindStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        if let Some(&n) = self.num_tokens.borrow().get(&field) {
            return Ok(n);
        }
        let tokens = self.scale(field, self.searcher.total_num_tokens(field)?);
        let n = match self.length_scales.iter().find(|(f, _)| *f == field) {
            Some(&(_, factor)) => ((tokens as f64) * factor).round() as u64,
            None => tokens,
        };
        self.num_tokens.borrow_mut().insert(field, n);
        Ok(n)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.all)
    }

    fn doc_freq(&self, term: &tantivy::Term) -> tantivy::Result<u64> {
        if let Some(&df) = self.doc_freqs.borrow().get(term) {
            return Ok(df);
        }
        let df = match self.term_cache {
            Some(cache) => {
                let readers = self.searcher.segment_readers();
                let inverted = readers
                    .iter()
                    .map(|r| r.inverted_index(term.field()))
                    .collect::<tantivy::Result<Vec<_>>>()?;
                let infos = cache.lookup(readers, &inverted, term)?;
                infos.iter().flatten().map(|i| u64::from(i.doc_freq)).sum()
            }
            None => self.searcher.doc_freq(term)?,
        };
        let df = self.scale(term.field(), df).min(self.all);
        self.doc_freqs.borrow_mut().insert(term.clone(), df);
        Ok(df)
    }
}

/// Whether a query matches given documents, asked in increasing document order. Uses
/// tantivy's `seek_danger`, so a phrase is checked at the asked document only: a plain `seek`
/// (or creating the scorer) scans forward for the phrase's next match.
///
/// A query is probed through its [`Alternatives`], each on its own: a document matches when one
/// does, scored the sum of those that match, in their order (as tantivy's union sums them).
struct Probe<'w> {
    parts: Vec<Part<'w>>,
}

/// One alternative of a [`Probe`].
struct Part<'w> {
    weight: &'w dyn Weight,
    /// Created at the first document asked.
    scorer: Option<Box<dyn Scorer>>,
    /// No match below this document.
    lower: DocId,
}

impl<'w> Probe<'w> {
    fn new(alternatives: &'w [Box<dyn Weight>]) -> Probe<'w> {
        Probe {
            parts: alternatives
                .iter()
                .map(|weight| Part {
                    weight: weight.as_ref(),
                    scorer: None,
                    lower: 0,
                })
                .collect(),
        }
    }

    /// Whether `doc` matches; `doc` must be greater than the one asked before.
    fn matches(&mut self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<bool> {
        for part in &mut self.parts {
            if part.matches(reader, doc)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The score of `doc` if it matches.
    fn score(&mut self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Option<Score>> {
        let mut sum: Option<Score> = None;
        for part in &mut self.parts {
            if part.matches(reader, doc)?
                && let Some(scorer) = &mut part.scorer
            {
                let score = scorer.score();
                sum = Some(sum.map_or(score, |s| s + score));
            }
        }
        Ok(sum)
    }
}

impl Part<'_> {
    fn matches(&mut self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<bool> {
        if doc < self.lower || self.lower == TERMINATED {
            return Ok(false);
        }
        let result = match &mut self.scorer {
            Some(scorer) => scorer.seek_danger(doc),
            None => {
                let (result, scorer) = self.weight.scorer_danger(reader, doc, 1.0)?;
                self.scorer = Some(scorer);
                result
            }
        };
        Ok(match result {
            SeekDangerResult::Found => {
                self.lower = doc;
                true
            }
            SeekDangerResult::SeekLowerBound(next) => {
                self.lower = next.max(doc + 1);
                false
            }
        })
    }
}

/// A query's weights to probe documents with ([`Probe`]): for a query that only ORs its clauses
/// (a quoted phrase in any field, [`super::query::ParsedQuery::any_field`]), its clauses'; else
/// its own. Probed as a whole, a union seeks by reading the next 4096 documents of every clause
/// (checking each phrase match there): a quoted phrase most documents hold was checked at every
/// document for each one asked.
struct Alternatives {
    weights: Vec<Box<dyn Weight>>,
    /// The clauses' terms, when each clause is one term (a filter, an excluded word).
    terms: Option<Vec<Term>>,
}

impl Alternatives {
    fn of(query: &dyn Query, scoring: EnableScoring) -> tantivy::Result<Alternatives> {
        let clauses = match query.downcast_ref::<BooleanQuery>() {
            Some(union)
                if !union.clauses().is_empty()
                    && union.get_minimum_number_should_match() <= 1
                    && union
                        .clauses()
                        .iter()
                        .all(|(occur, _)| *occur == Occur::Should) =>
            {
                union.clauses().iter().map(|(_, q)| q.as_ref()).collect()
            }
            _ => vec![query],
        };
        Ok(Alternatives {
            terms: clauses.iter().map(|q| single_term(*q)).collect(),
            weights: clauses
                .into_iter()
                .map(|q| q.weight(scoring))
                .collect::<tantivy::Result<_>>()?,
        })
    }

    fn one(weight: Box<dyn Weight>) -> Alternatives {
        Alternatives {
            weights: vec![weight],
            terms: None,
        }
    }
}

/// The term a query matches the documents of, if it is a term query (boosted or not).
fn single_term(query: &dyn Query) -> Option<Term> {
    if let Some(query) = query.downcast_ref::<TermQuery>() {
        return Some(query.term().clone());
    }
    query.downcast_ref::<BoostQuery>()?;
    let mut terms: Vec<(Term, bool)> = Vec::new();
    query.query_terms(&mut |term, positions| terms.push((term.clone(), positions)));
    match terms.as_slice() {
        [(term, false)] => Some(term.clone()),
        _ => None,
    }
}

/// The documents of segment `reader` that are alive, match every filter and no exclusion (bit
/// `d % 64` of word `d / 64`), when each filter and exclusion is made of terms: a pass that
/// checks every document reads their postings once instead of seeking them at each. `None`
/// when one is not (a quoted phrase).
fn admitted_bits(
    reader: &SegmentReader,
    filters: &[Alternatives],
    exclusions: &[Alternatives],
) -> tantivy::Result<Option<Vec<u64>>> {
    let max_doc = reader.max_doc() as usize;
    let holding = |terms: &[Term]| -> tantivy::Result<Vec<u64>> {
        let mut bits = vec![0u64; max_doc.div_ceil(64)];
        for term in terms {
            let index = reader.inverted_index(term.field())?;
            if let Some(mut postings) = index.read_postings(term, IndexRecordOption::Basic)? {
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    bits[doc as usize / 64] |= 1 << (doc % 64);
                    doc = postings.advance();
                }
            }
        }
        Ok(bits)
    };
    let (Some(filters), Some(exclusions)) = (
        filters
            .iter()
            .map(|f| f.terms.as_deref())
            .collect::<Option<Vec<_>>>(),
        exclusions
            .iter()
            .map(|e| e.terms.as_deref())
            .collect::<Option<Vec<_>>>(),
    ) else {
        return Ok(None);
    };
    let mut admitted: Vec<u64> = (0..max_doc.div_ceil(64))
        .map(|word| {
            let docs = max_doc - word * 64;
            if docs >= 64 {
                u64::MAX
            } else {
                (1u64 << docs) - 1
            }
        })
        .collect();
    if let Some(alive) = reader.alive_bitset() {
        for (word, bits) in admitted.iter_mut().enumerate() {
            for bit in 0..64 {
                let doc = word * 64 + bit;
                if doc < max_doc && alive.is_deleted(doc as DocId) {
                    *bits &= !(1 << bit);
                }
            }
        }
    }
    for terms in filters {
        for (a, b) in admitted.iter_mut().zip(holding(terms)?) {
            *a &= b;
        }
    }
    for terms in exclusions {
        for (a, b) in admitted.iter_mut().zip(holding(terms)?) {
            *a &= !b;
        }
    }
    Ok(Some(admitted))
}

/// For each article key, its best section under `split` (section documents only): the highest
/// full score, ties in document order; an article none of whose sections match gets its first
/// section, and an article of one section that one. Reads only the postings of the keys,
/// checking each clause at the documents of articles of several sections.
///
/// With `required` queries (quoted phrases, at most [`MAX_REQUIRED`]), the query is a
/// `BooleanQuery` of `split`'s clauses as one optional clause and `required` as required ones:
/// only sections matching every required query are in the running, scored the required
/// queries' sum plus the optional clauses' (as tantivy sums them), and an article none of whose
/// sections match them all gets no section here.
pub fn best_sections(
    searcher: &Searcher,
    stats: &KindStatistics,
    split: &SplitQuery,
    required: &[Box<dyn Query>],
    key_field: Field,
    kind_field: Field,
    keys: &[u64],
) -> tantivy::Result<HashMap<u64, DocAddress>> {
    assert!(
        required.len() <= MAX_REQUIRED,
        "at most {MAX_REQUIRED} required queries"
    );
    let section_kind = Term::from_field_text(kind_field, super::index::KIND_SECTION);
    let is_section = TermQuery::new(section_kind, IndexRecordOption::Basic)
        .weight(EnableScoring::disabled_from_searcher(searcher))?;
    // The section documents of the keys, per segment in document order (probes go forward).
    let mut by_segment: Vec<Vec<(DocId, u64)>> = Vec::new();
    let mut sections_of: FxHashMap<u64, usize> = FxHashMap::default();
    let readers = searcher.segment_readers();
    let key_indexes: Vec<Arc<InvertedIndexReader>> = readers
        .iter()
        .map(|r| r.inverted_index(key_field))
        .collect::<tantivy::Result<_>>()?;
    // Each key looked up once for every segment (through the term cache: an article met again
    // skips the dictionary).
    let key_infos: Vec<TermInfos> = keys
        .iter()
        .map(|&key| stats.term_infos(readers, &key_indexes, &Term::from_field_u64(key_field, key)))
        .collect::<std::io::Result<_>>()?;
    for (ord, reader) in readers.iter().enumerate() {
        let index = &key_indexes[ord];
        let alive = reader.alive_bitset();
        let mut docs: Vec<(DocId, u64)> = Vec::new();
        for (&key, infos) in keys.iter().zip(&key_infos) {
            if let Some(info) = &infos[ord] {
                let mut postings =
                    index.read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if !alive.is_some_and(|a| a.is_deleted(doc)) {
                        docs.push((doc, key));
                    }
                    doc = postings.advance();
                }
            }
        }
        docs.sort_unstable();
        let mut sections = Probe::new(std::slice::from_ref(&is_section));
        let mut kept = Vec::with_capacity(docs.len());
        for (doc, key) in docs {
            if sections.matches(reader, doc)? {
                *sections_of.entry(key).or_default() += 1;
                kept.push((doc, key));
            }
        }
        by_segment.push(kept);
    }
    // (key → (score, address)), best so far; an article of one section needs no scoring.
    let mut best: FxHashMap<u64, (Option<Score>, DocAddress)> = FxHashMap::default();
    let scoring = EnableScoring::enabled_from_statistics_provider(stats, searcher);
    let required = weights(required, scoring)?;
    // Every section is scored when some may not match the required queries.
    let scored_all = !required.is_empty();
    // The term clauses, then the bonuses, as the whole query sums them.
    let (terms, phrases, bonuses) = if scored_all || sections_of.values().any(|&n| n > 1) {
        let phrases = PhraseClauses::new(searcher, stats, &split.bonuses)?;
        let bonuses = match phrases {
            Some(_) => Vec::new(),
            None => bonus_weights(split, scoring)?,
        };
        (
            Some(TermClauses::new(searcher, stats, &split.terms)?),
            phrases,
            bonuses,
        )
    } else {
        (None, None, Vec::new())
    };
    for (ord, (reader, docs)) in searcher
        .segment_readers()
        .iter()
        .zip(by_segment)
        .enumerate()
    {
        let (scored, scored_keys): (Vec<DocId>, Vec<u64>) = docs
            .iter()
            .filter(|(_, key)| scored_all || sections_of[key] > 1)
            .copied()
            .unzip();
        // The sum of the required queries' scores at each scored section, if it matches them all
        // (an intersection sums its two clauses in either order: the same float).
        let mut required_scores: Vec<Option<Score>> = Vec::with_capacity(scored.len());
        if scored_all {
            let mut probes = probes(&required);
            for &doc in &scored {
                let mut sum: Option<Score> = Some(0.0);
                for probe in &mut probes {
                    let score = probe.score(reader, doc)?;
                    sum = sum.zip(score).map(|(a, b)| a + b);
                }
                required_scores.push(sum);
            }
        }
        let mut scores: Vec<Option<Score>> = vec![None; scored.len()];
        if let Some(terms) = &terms {
            terms.add_scores_at(ord, &scored, &mut scores)?;
        }
        if let Some(phrases) = &phrases {
            // A section whose bonuses cannot lift it to the term score of another section of
            // its article (which bonuses only raise) cannot be the best: left without them.
            let mut floors: FxHashMap<u64, Score> = FxHashMap::default();
            for (score, key) in scores.iter().zip(&scored_keys) {
                if let Some(score) = score {
                    let floor = floors.entry(*key).or_insert(*score);
                    *floor = floor.max(*score);
                }
            }
            let before: Vec<Score> = scores.iter().map(|s| s.unwrap_or(0.0)).collect();
            phrases.scores_at_bounded(
                ord,
                reader,
                &scored,
                &mut |i, bound| {
                    // (The required queries' scores differ between sections: no floor then.)
                    !scored_all
                        && floors
                            .get(&scored_keys[i])
                            .is_some_and(|&floor| cannot_reach(before[i], bound, f64::from(floor)))
                },
                &mut |i, s| {
                    *scores[i].get_or_insert(0.0) += s;
                },
            )?;
        }
        let mut scores = scores.into_iter();
        let mut required_scores = required_scores.into_iter();
        let mut probes = probes(&bonuses);
        for (doc, key) in docs {
            let addr = DocAddress::new(ord as u32, doc);
            if !scored_all && sections_of[&key] == 1 {
                best.insert(key, (None, addr));
                continue;
            }
            let mut score: Option<Score> = scores.next().flatten();
            for probe in &mut probes {
                if let Some(s) = probe.score(reader, doc)? {
                    *score.get_or_insert(0.0) += s;
                }
            }
            if scored_all {
                // Required first, then the optional clauses, as tantivy combines them.
                let Some(required) = required_scores.next().flatten() else {
                    continue;
                };
                score = Some(score.map_or(required, |optional| required + optional));
            }
            let entry = best.entry(key).or_insert((score, addr));
            // Documents arrive in address order: only a strictly better score replaces.
            let better = match (score, entry.0) {
                (Some(new), Some(old)) => new > old,
                (Some(_), None) => true,
                _ => false,
            };
            if better {
                *entry = (score, addr);
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|(key, (_, addr))| (key, addr))
        .collect())
}

/// Required queries up to which [`best_sections`] scores like tantivy does, bit for bit: an
/// intersection of two sums them in either order, of more in the order of their costs.
pub const MAX_REQUIRED: usize = 2;

fn probes(queries: &[Alternatives]) -> Vec<Probe<'_>> {
    queries.iter().map(|q| Probe::new(&q.weights)).collect()
}

/// What is read once per segment and kept while the segment is searched (segments no longer
/// searched are dropped when another is loaded).
pub struct SegmentCache<T> {
    by_segment: Mutex<HashMap<SegmentId, Arc<T>>>,
}

impl<T> Default for SegmentCache<T> {
    fn default() -> Self {
        SegmentCache {
            by_segment: Mutex::default(),
        }
    }
}

impl<T> SegmentCache<T> {
    /// The value of `reader`'s segment, from `load` the first time.
    pub fn get_or_load(
        &self,
        searcher: &Searcher,
        reader: &SegmentReader,
        load: impl FnOnce() -> Result<T, SearchError>,
    ) -> Result<Arc<T>, SearchError> {
        let segment = reader.segment_id();
        if let Some(value) = self.lock().get(&segment) {
            return Ok(value.clone());
        }
        let value = Arc::new(load()?);
        let mut cache = self.lock();
        let live: HashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        cache.retain(|id, _| live.contains(id));
        cache.insert(segment, value.clone());
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<T>>> {
        self.by_segment.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every term of a string column's dictionary, by ordinal: a lookup one by one decompresses and
/// scans a dictionary block each time.
pub fn dictionary_terms(column: &StrColumn) -> Result<Vec<String>, SearchError> {
    let mut terms = Vec::with_capacity(column.num_terms());
    let mut stream = column.dictionary().stream()?;
    while stream.advance() {
        terms.push(String::from_utf8_lossy(stream.key()).into_owned());
    }
    Ok(terms)
}

/// Every article id of a segment by its ordinal in the `id` column ([`dictionary_terms`]): the
/// costliest part of ranking 100 ids was looking them up one by one. About 100 bytes per article.
pub type IdCache = SegmentCache<Vec<String>>;

/// What [`two_phase_top`] found.
pub struct TwoPhase {
    /// (score, address), best first.
    pub top: Vec<(Score, DocAddress)>,
    /// Documents the query matches (filters and exclusions applied) when counting was asked:
    /// those of the term clauses, and those of [`Extra::Matches`].
    pub matched: Option<usize>,
    /// Whether counting stopped at [`EXACT_COUNT`] matches: `matched` is then a lower bound.
    pub at_least: bool,
}

/// Matches counted exactly when documents are checked one by one ([`two_phase_top`]: quoted
/// phrases, required or excluded); past it, only the documents that would enter the pool are
/// checked and the count is a lower bound, as a search engine's "1,000+ results"
/// (Elasticsearch's `track_total_hits` counts to 10,000 by default).
pub const EXACT_COUNT: usize = 1000;

/// Documents holding a quoted phrase's words up to which [`two_phase_top`] checks and scores
/// just those (past them, the term clauses' documents as they would enter the pool).
pub const DRIVEN_MOST: usize = 2000;

/// The documents `words` matches, per segment, unless they are more than `limit`.
fn holding_words(
    searcher: &Searcher,
    words: &dyn Weight,
    limit: usize,
) -> tantivy::Result<Option<Vec<Vec<DocId>>>> {
    let mut found = 0;
    let mut per_segment = Vec::with_capacity(searcher.segment_readers().len());
    for reader in searcher.segment_readers() {
        let mut docs = Vec::new();
        let mut scorer = words.scorer(reader, 1.0)?;
        let mut doc = scorer.doc();
        while doc != TERMINATED {
            if found == limit {
                return Ok(None);
            }
            found += 1;
            docs.push(doc);
            doc = scorer.advance();
        }
        per_segment.push(docs);
    }
    Ok(Some(per_segment))
}

/// Queries every document must match (quoted phrases), for [`two_phase_top`].
#[derive(Clone, Copy)]
pub struct Required<'q> {
    pub queries: &'q [Box<dyn Query>],
    /// Matches the documents holding each query's words in one field, and no other.
    pub words: &'q dyn Query,
    /// Documents holding the words up to which just those are checked and scored
    /// ([`DRIVEN_MOST`]).
    pub driven_most: usize,
    /// The most documents they may match together, as the statistics count them (for one of
    /// them, the fewest documents holding one of its words, summed over the fields).
    pub most: u64,
}

/// Documents matched by clauses without terms of their own (multi-word synonyms), for
/// [`two_phase_top`].
pub enum Extra {
    /// None.
    Nothing,
    /// These documents (the best of them by those clauses).
    Found(Vec<DocAddress>),
    /// Those any of these queries (unscored, unfiltered) matches, each `(candidates, query)`
    /// with `candidates` matching every document `query` matches (the words of a phrase, for
    /// the phrase): only the candidates no term clause matches are checked against `query`.
    /// Used when every term match is visited, else nothing is added.
    Matches(Vec<(Box<dyn Query>, Box<dyn Query>)>),
}

/// A document of a top-k heap: the lowest score first out, and of equal scores the later
/// document (results keep ties in document order).
#[derive(Clone, Copy)]
struct Ranked(Score, DocAddress);

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    /// Greater is better: higher score, then lower address.
    fn cmp(&self, other: &Ranked) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// The weights of boosted term clauses, or of boosted bonus clauses.
fn term_weights(
    terms: &[(Term, f32)],
    scoring: EnableScoring,
) -> tantivy::Result<Vec<Alternatives>> {
    terms
        .iter()
        .map(|(term, boost)| {
            Ok(Alternatives::one(
                boosted_term(term.clone(), *boost).weight(scoring)?,
            ))
        })
        .collect()
}

/// The weights of `queries`, to probe documents with.
fn weights(
    queries: &[Box<dyn Query>],
    scoring: EnableScoring,
) -> tantivy::Result<Vec<Alternatives>> {
    queries
        .iter()
        .map(|q| Alternatives::of(q.as_ref(), scoring))
        .collect()
}

fn bonus_weights(split: &SplitQuery, scoring: EnableScoring) -> tantivy::Result<Vec<Alternatives>> {
    split
        .bonuses
        .iter()
        .map(|bonus| {
            Ok(Alternatives::one(
                BoostQuery::new(bonus.query(), bonus.boost).weight(scoring)?,
            ))
        })
        .collect()
}

/// The top `k` documents of `split`, best first, among those matching every `filters` and
/// `required` query and no `exclusions` query, in two phases: the term clauses alone with tantivy's block-max WAND
/// (which skips the blocks of postings that cannot reach the k best; the phrase bonuses rule it
/// out, so scoring them over every match was most of a search), then each of those `pool`
/// documents gets its bonuses, checked at that document only. A document outside the pool of
/// the term scores is only missed if its bonuses lift it above the k best.
/// `extra` are documents matched by clauses without terms of their own (multi-word synonyms):
/// they get their full score, term clauses included. `required` (quoted phrases) are scored in
/// the second phase like the bonuses; the term clauses must match every document they match.
/// `count`: visit every match to count them
/// (those of `extra` too when it is [`Extra::Matches`]), exactly up to [`EXACT_COUNT`] when
/// they are checked document by document (quoted phrases, required or excluded:
/// [`TwoPhase::at_least`]; filters and excluded words are bits, [`admitted_bits`]).
#[allow(clippy::too_many_arguments)]
pub fn two_phase_top(
    searcher: &Searcher,
    stats: &KindStatistics,
    split: &SplitQuery,
    filters: &[Box<dyn Query>],
    required: &Required,
    exclusions: &[Box<dyn Query>],
    extra: &Extra,
    k: usize,
    pool: usize,
    count: bool,
) -> tantivy::Result<TwoPhase> {
    let Required {
        queries: required,
        words,
        most: required_most,
        driven_most,
    } = *required;
    let scoring = EnableScoring::enabled_from_statistics_provider(stats, searcher);
    let unscored = EnableScoring::disabled_from_searcher(searcher);
    let mut filters = weights(filters, unscored)?;
    filters.extend(weights(required, unscored)?);
    let exclusions = weights(exclusions, unscored)?;
    // The documents holding the required queries' words (no positions read), per segment, if
    // they are few (`DRIVEN_MOST`) or the statistics say they should be: those are the ones
    // checked and scored, not every document of every term. Else (a quoted word nearly every
    // document holds) the term clauses' documents are checked as they would enter the pool:
    // going through every match of `“花呗”` (each a check of positions in every field) was
    // 12 ms of a 13 ms atec-faq query, and three quoted words that few documents hold together
    // were checked at every document (8 ms).
    let driven = if !required.is_empty() {
        use tantivy::query::Bm25StatisticsProvider;
        let mut most_term_docs = 0;
        for (term, _) in &split.terms {
            most_term_docs = most_term_docs.max(stats.doc_freq(term)?);
        }
        let limit = if required_most < most_term_docs / 4 {
            usize::MAX
        } else {
            driven_most
        };
        holding_words(searcher, words.weight(unscored)?.as_ref(), limit)?
    } else {
        None
    };
    // Block-max WAND pays for skipping by keeping its clauses sorted after every document: with
    // many clauses (a long question) that costs more than scoring every match. Counting the
    // matches visits them all anyway, term at a time (`taat`: the same scores).
    let prune = !count && split.terms.len() <= WAND_MAX_CLAUSES && driven.is_none();
    // Phase 1: the pool, by term scores (WAND skips by the score to beat: kept up to date, as
    // when documents are checked as they enter it).
    let probed = !filters.is_empty() || !exclusions.is_empty();
    let mut top = TopPool::new(pool.max(k), !prune && !probed);
    let (terms, clauses) = if prune {
        let query = tantivy::query::BooleanQuery::new(
            split
                .terms
                .iter()
                .map(|(term, boost)| {
                    (
                        tantivy::query::Occur::Should,
                        boosted_term(term.clone(), *boost),
                    )
                })
                .collect(),
        );
        (Some(query.weight(scoring)?), None)
    } else {
        // Unless few documents are scored, every clause's postings are read whole.
        let clauses = if driven.is_none() {
            TermClauses::decoded(searcher, stats, &split.terms)?
        } else {
            TermClauses::new(searcher, stats, &split.terms)?
        };
        (None, Some(clauses))
    };
    let mut matched = 0usize;
    // Whether counting stopped at `EXACT_COUNT` (documents were left unchecked).
    let mut at_least = false;
    // Every document matching the required queries is matched by the term clauses (quoted
    // phrases' words are term clauses): the documents matched by `extra` alone are then none.
    let synonyms = match extra {
        Extra::Matches(parts) if !prune && required.is_empty() => Some(
            parts
                .iter()
                .map(|(candidates, query)| {
                    Ok((candidates.weight(unscored)?, query.weight(unscored)?))
                })
                .collect::<tantivy::Result<Vec<_>>>()?,
        ),
        _ => None,
    };
    let mut only_synonyms: Vec<DocId> = Vec::new();
    // Documents the synonyms alone match: no term clause matches them, so their bonuses are
    // their whole score.
    let mut bonus_only: Vec<(Score, DocAddress)> = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let mut admit = Admit::new(reader, &filters, &exclusions);
        let ord = ord as u32;
        if let Some(terms) = &terms {
            terms.for_each_pruning(top.threshold, reader, &mut |doc, score| {
                if admit.admits(doc) {
                    top.offer(score, DocAddress::new(ord, doc));
                }
                top.threshold
            })?;
        } else if let (Some(clauses), Some(driven)) = (&clauses, &driven) {
            let driven: Vec<DocId> = driven[ord as usize]
                .iter()
                .copied()
                .filter(|&doc| admit.admits(doc))
                .collect();
            let mut scores: Vec<Option<Score>> = vec![None; driven.len()];
            clauses.add_scores_at(ord as usize, &driven, &mut scores)?;
            for (&doc, score) in driven.iter().zip(scores) {
                if let Some(score) = score {
                    matched += 1;
                    top.offer(score, DocAddress::new(ord, doc));
                }
            }
        } else if let Some(clauses) = &clauses {
            // The documents a term clause matches (bit `d % 64` of word `d / 64`).
            let mut seen: Option<Vec<u64>> = synonyms
                .as_ref()
                .map(|_| vec![0; (reader.max_doc() as usize).div_ceil(64)]);
            if admit.is_trivial() {
                // Every match counts: only those that enter the pool are reported.
                matched += clauses.for_each_above(
                    ord as usize,
                    reader,
                    top.threshold,
                    seen.as_deref_mut(),
                    &mut |doc, score| {
                        top.enter(score, DocAddress::new(ord, doc));
                        top.threshold
                    },
                )?;
            } else if !admit.probes() {
                // Deleted documents only: a bit to look up.
                clauses.for_each(ord as usize, reader, &mut |doc, score| {
                    if let Some(seen) = &mut seen {
                        seen[doc as usize / 64] |= 1 << (doc % 64);
                    }
                    if admit.admits(doc) {
                        matched += 1;
                        top.offer(score, DocAddress::new(ord, doc));
                    }
                })?;
            } else if let Some(admitted) = if count {
                admitted_bits(reader, &filters, &exclusions)?
            } else {
                None
            } {
                // Filters and excluded words: every match counts, each checked by a bit.
                clauses.for_each(ord as usize, reader, &mut |doc, score| {
                    if let Some(seen) = &mut seen {
                        seen[doc as usize / 64] |= 1 << (doc % 64);
                    }
                    if admitted[doc as usize / 64] & (1 << (doc % 64)) != 0 {
                        matched += 1;
                        top.offer(score, DocAddress::new(ord, doc));
                    }
                })?;
            } else if count {
                // Each check reads postings (a phrase's positions in every field): the first
                // `EXACT_COUNT` matches are counted, and past them only the documents that
                // would enter the pool are checked.
                clauses.for_each(ord as usize, reader, &mut |doc, score| {
                    if let Some(seen) = &mut seen {
                        seen[doc as usize / 64] |= 1 << (doc % 64);
                    }
                    if matched < EXACT_COUNT {
                        if admit.admits(doc) {
                            matched += 1;
                            top.offer(score, DocAddress::new(ord, doc));
                        }
                    } else {
                        at_least = true;
                        if score > top.threshold && admit.admits(doc) {
                            top.enter(score, DocAddress::new(ord, doc));
                        }
                    }
                })?;
            } else {
                clauses.for_each_above(
                    ord as usize,
                    reader,
                    top.threshold,
                    seen.as_deref_mut(),
                    &mut |doc, score| {
                        if admit.admits(doc) {
                            top.enter(score, DocAddress::new(ord, doc));
                        }
                        top.threshold
                    },
                )?;
            }
            if let (Some(parts), Some(seen)) = (&synonyms, &mut seen) {
                // Positions are read only at the candidates no term clause matches (most are).
                only_synonyms.clear();
                for (candidates, query) in parts {
                    let mut probe = Probe::new(std::slice::from_ref(query));
                    let mut failed = None;
                    candidates.for_each_no_score(reader, &mut |docs| {
                        for &doc in docs {
                            let (word, bit) = (doc as usize / 64, 1 << (doc % 64));
                            if seen[word] & bit != 0 || failed.is_some() {
                                continue;
                            }
                            match probe.matches(reader, doc) {
                                Ok(true) => {
                                    seen[word] |= bit;
                                    only_synonyms.push(doc);
                                }
                                Ok(false) => {}
                                Err(err) => failed = Some(err),
                            }
                        }
                    })?;
                    if let Some(err) = failed {
                        return Err(err);
                    }
                }
                only_synonyms.sort_unstable();
                let mut admit = Admit::new(reader, &filters, &exclusions);
                for &doc in &only_synonyms {
                    if admit.admits(doc) {
                        matched += 1;
                        bonus_only.push((0.0, DocAddress::new(ord, doc)));
                    }
                }
                if let Some(err) = admit.failed {
                    return Err(err);
                }
            }
        }
        if let Some(err) = admit.failed {
            return Err(err);
        }
    }
    let (mut found, left_out_most) = top.finish();
    // Phase 2: the bonuses of the pool, and the full score of documents found otherwise.
    let phrases = PhraseClauses::new(searcher, stats, &split.bonuses)?;
    let bonuses = match phrases {
        Some(_) => Vec::new(),
        None => bonus_weights(split, scoring)?,
    };
    let pooled: FxHashSet<DocAddress> = found.iter().map(|(_, addr)| *addr).collect();
    let mut others: Vec<(Score, DocAddress)> = match extra {
        Extra::Found(docs) if synonyms.is_none() => docs
            .iter()
            .filter(|addr| !pooled.contains(addr))
            .map(|addr| (0.0, *addr))
            .collect(),
        _ => Vec::new(),
    };
    found.append(&mut bonus_only);
    match &phrases {
        // Quoted phrases add their scores after the bonuses: their most is not known, so every
        // document of the pool keeps its bonuses.
        Some(phrases) => {
            let wanted = if required.is_empty() { k } else { found.len() };
            add_phrase_scores(searcher, phrases, &mut found, wanted)?
        }
        None => add_scores(searcher, &bonuses, &mut found)?,
    }
    if !required.is_empty() {
        add_scores(searcher, &weights(required, scoring)?, &mut found)?;
    }
    if !others.is_empty() {
        match &phrases {
            Some(phrases) if required.is_empty() => {
                let made;
                let clauses = match &clauses {
                    Some(clauses) => clauses,
                    None => {
                        made = TermClauses::new(searcher, stats, &split.terms)?;
                        &made
                    }
                };
                let floor = kth_best(&found, k);
                add_full_scores(
                    searcher,
                    clauses,
                    phrases,
                    &mut others,
                    left_out_most,
                    floor,
                )?;
            }
            _ => {
                let mut all = term_weights(&split.terms, scoring)?;
                all.extend(bonus_weights(split, scoring)?);
                all.extend(weights(required, scoring)?);
                add_scores(searcher, &all, &mut others)?;
            }
        }
        found.extend(others);
    }
    let mut ranked: Vec<Ranked> = found.into_iter().map(|(s, a)| Ranked(s, a)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.truncate(k);
    Ok(TwoPhase {
        top: ranked.into_iter().map(|r| (r.0, r.1)).collect(),
        matched: count.then_some(matched),
        at_least,
    })
}

/// Adds to each document's score the scores of the `weights` that match it, in their order.
fn add_scores(
    searcher: &Searcher,
    weights: &[Alternatives],
    docs: &mut [(Score, DocAddress)],
) -> tantivy::Result<()> {
    by_segment(docs, |ord, segment| {
        let reader = searcher.segment_reader(ord);
        let mut probes = probes(weights);
        for (score, addr) in segment {
            for probe in &mut probes {
                if let Some(s) = probe.score(reader, addr.doc_id)? {
                    *score += s;
                }
            }
        }
        Ok(())
    })
}

/// Sorts `docs` by address and calls `each` with each segment's run of them.
fn by_segment(
    docs: &mut [(Score, DocAddress)],
    mut each: impl FnMut(u32, &mut [(Score, DocAddress)]) -> tantivy::Result<()>,
) -> tantivy::Result<()> {
    docs.sort_unstable_by_key(|(_, addr)| *addr);
    let runs: Vec<(u32, Range<usize>)> = segment_runs(docs).collect();
    for (ord, run) in runs {
        each(ord, &mut docs[run])?;
    }
    Ok(())
}

/// Each segment's run of `docs` (sorted by address): its ordinal and range.
fn segment_runs(docs: &[(Score, DocAddress)]) -> impl Iterator<Item = (u32, Range<usize>)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let ord = docs.get(start)?.1.segment_ord;
        let end = start + docs[start..].partition_point(|(_, a)| a.segment_ord == ord);
        let run = (ord, start..end);
        start = end;
        Some(run)
    })
}

/// Adds to each document's score the scores of the `phrases` that match it, in their order
/// ([`add_scores`] of their queries, without the queries), for the `k` best of `docs` by the
/// final score: a document whose score plus the most its bonuses can add
/// ([`PhraseClauses::scores_at_bounded`]) stays below the k-th best of what the documents are
/// sure to reach (their whole score once scored, else their score before the bonuses, which
/// bonuses never lower) is dropped from `docs` unscored: k documents reach more, so it cannot
/// be among the k best. The documents kept are scored exactly as without dropping, so the k
/// best and their order are the same.
///
/// Tried and dropped (session 11): scoring the k best before the bonuses first and the rest in
/// a second pass (postings opened again), so the rest meet a floor made of whole scores from the
/// start: the same results, but no measurable gain (phrase-scoring perf samples over the 52
/// slowest aliyun-faq dev queries -8% in one A/B pair, +1% and +6% in two others).
fn add_phrase_scores(
    searcher: &Searcher,
    phrases: &PhraseClauses,
    docs: &mut Vec<(Score, DocAddress)>,
    k: usize,
) -> tantivy::Result<()> {
    docs.sort_unstable_by_key(|(_, addr)| *addr);
    let prune = k > 0 && docs.len() > k;
    // What each document is sure to reach so far (its score, once scored).
    let reached: Vec<Cell<Score>> = docs.iter().map(|(s, _)| Cell::new(*s)).collect();
    let mut dropped = vec![false; docs.len()];
    let mut floor = if prune { kth_best(docs, k) } else { None };
    let mut scratch: Vec<Score> = Vec::with_capacity(docs.len());
    let mut refreshed = 0;
    let mut ids: Vec<DocId> = Vec::new();
    for (ord, run) in segment_runs(docs) {
        let start = run.start;
        ids.clear();
        ids.extend(docs[run.clone()].iter().map(|(_, addr)| addr.doc_id));
        let segment = &reached[run];
        let mut skip = |i: usize, bound: Score| {
            let Some(mut at_least) = floor else {
                return false;
            };
            // The documents scored since raise the floor.
            if start + i >= refreshed + FLOOR_REFRESH {
                refreshed = start + i;
                scratch.clear();
                scratch.extend(reached.iter().map(Cell::get));
                let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                at_least = at_least.max(f64::from(*kth));
                floor = Some(at_least);
            }
            let hopeless = cannot_reach(segment[i].get(), bound, at_least);
            dropped[start + i] = hopeless;
            hopeless
        };
        phrases.scores_at_bounded(
            ord as usize,
            searcher.segment_reader(ord),
            &ids,
            &mut skip,
            &mut |i, s| segment[i].set(segment[i].get() + s),
        )?;
    }
    for ((score, _), reached) in docs.iter_mut().zip(&reached) {
        *score = reached.get();
    }
    let mut gone = dropped.iter();
    docs.retain(|_| !gone.next().copied().unwrap_or(false));
    Ok(())
}

/// Documents scored between two updates of the floor of [`add_phrase_scores`].
const FLOOR_REFRESH: usize = 8;

/// The k-th best score of `docs`, if there are `k` (at least one).
fn kth_best(docs: &[(Score, DocAddress)], k: usize) -> Option<f64> {
    if k == 0 || docs.len() < k {
        return None;
    }
    let mut scores: Vec<Score> = docs.iter().map(|(s, _)| *s).collect();
    let (_, kth, _) = scores.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(f64::from(*kth))
}

/// Gives `docs` their whole score (the term clauses, then the bonuses, as [`add_scores`] of
/// their queries sums them), each known to score at most `term_most` on the term clauses;
/// drops those that cannot reach `floor` (a score k documents have already) with the most their
/// bonuses can add, before reading a term's postings or a position for them.
fn add_full_scores(
    searcher: &Searcher,
    terms: &TermClauses,
    phrases: &PhraseClauses,
    docs: &mut Vec<(Score, DocAddress)>,
    term_most: Score,
    floor: Option<f64>,
) -> tantivy::Result<()> {
    let mut ids: Vec<DocId> = Vec::new();
    if let Some(floor) = floor {
        let mut kept: Vec<DocAddress> = Vec::new();
        let mut bounds: Vec<Score> = Vec::new();
        by_segment(docs, |ord, segment| {
            ids.clear();
            ids.extend(segment.iter().map(|(_, addr)| addr.doc_id));
            bounds.clear();
            bounds.resize(segment.len(), 0.0);
            // Bounds only: every document is skipped.
            phrases.scores_at_bounded(
                ord as usize,
                searcher.segment_reader(ord),
                &ids,
                &mut |i, bound| {
                    bounds[i] = bound;
                    true
                },
                &mut |_, _| {},
            )?;
            for (&(_, addr), &bound) in segment.iter().zip(&bounds) {
                if !cannot_reach(term_most, bound, floor) {
                    kept.push(addr);
                }
            }
            Ok(())
        })?;
        // Both in address order.
        let mut next = kept.iter().peekable();
        docs.retain(|(_, addr)| {
            let keep = next.peek() == Some(&addr);
            if keep {
                next.next();
            }
            keep
        });
    }
    by_segment(docs, |ord, segment| {
        let reader = searcher.segment_reader(ord);
        ids.clear();
        ids.extend(segment.iter().map(|(_, addr)| addr.doc_id));
        let mut scores: Vec<Option<Score>> = vec![None; segment.len()];
        terms.add_scores_at(ord as usize, &ids, &mut scores)?;
        for ((score, _), term) in segment.iter_mut().zip(scores) {
            *score = term.unwrap_or(0.0);
        }
        phrases.scores_at(ord as usize, reader, &ids, &mut |i, s| segment[i].0 += s)
    })
}

/// Whether a document of score `score` plus at most `bound` stays below `floor`, by a margin
/// far above the rounding of float sums (a document that could tie is kept).
fn cannot_reach(score: Score, bound: Score, floor: f64) -> bool {
    let most = f64::from(score) + f64::from(bound);
    most + 1e-4 * (most.abs() + floor.abs()) + 1e-6 < floor
}

/// Term clauses up to which the first phase of [`two_phase_top`] skips with block-max WAND.
const WAND_MAX_CLAUSES: usize = 24;

/// The best `size` documents offered, and a score to beat to enter (documents offered in
/// address order: a later one of equal score ranks below).
struct TopPool {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>>,
    /// When buffered, documents not yet sorted out (the `size` best are among them).
    buffer: Vec<Ranked>,
    buffered: bool,
    size: usize,
    threshold: Score,
}

impl TopPool {
    /// `buffered`: the score to beat is updated once per `size` documents entered (each
    /// entering document costs a push instead of a heap's push and pop), not after each.
    fn new(size: usize, buffered: bool) -> TopPool {
        TopPool {
            heap: std::collections::BinaryHeap::with_capacity(if buffered { 0 } else { size + 1 }),
            buffer: Vec::with_capacity(if buffered { 2 * size } else { 0 }),
            buffered,
            size,
            threshold: Score::MIN,
        }
    }

    /// Inlined: most documents offered by a term-at-a-time pass are below the score to beat,
    /// and the call cost them more than the comparison (a million calls over the 52 slowest
    /// aliyun-faq dev queries).
    #[inline]
    fn offer(&mut self, score: Score, addr: DocAddress) {
        if score > self.threshold {
            self.enter(score, addr);
        }
    }

    fn enter(&mut self, score: Score, addr: DocAddress) {
        if self.buffered {
            self.buffer.push(Ranked(score, addr));
            if self.buffer.len() >= 2 * self.size.max(1) {
                self.sort_out();
            }
            return;
        }
        self.heap.push(std::cmp::Reverse(Ranked(score, addr)));
        if self.heap.len() > self.size {
            self.heap.pop();
        }
        if self.heap.len() == self.size {
            self.threshold = self.heap.peek().map_or(Score::MIN, |r| r.0.0);
        }
    }

    /// Keeps the `size` best of the buffer (when it holds more), their last one's score to beat.
    fn sort_out(&mut self) {
        if self.size == 0 {
            self.buffer.clear();
        } else if self.buffer.len() >= self.size {
            let size = self.size;
            self.buffer
                .select_nth_unstable_by(size - 1, |a, b| b.cmp(a));
            self.buffer.truncate(size);
            self.threshold = self.buffer[size - 1].0;
        }
    }

    /// The documents kept (in no order), and the most a document left out scores: the score to
    /// beat of a full pool, else 0 (every document offered is in).
    fn finish(mut self) -> (Vec<(Score, DocAddress)>, Score) {
        let docs: Vec<(Score, DocAddress)> = if self.buffered {
            self.sort_out();
            self.buffer.iter().map(|r| (r.0, r.1)).collect()
        } else {
            self.heap.iter().map(|r| (r.0.0, r.0.1)).collect()
        };
        let full = self.size > 0 && docs.len() >= self.size;
        (docs, if full { self.threshold } else { 0.0 })
    }
}

/// Whether documents of a segment, asked in increasing order, are alive (not deleted: tantivy's
/// scoring loops do not check, its collectors do), match every filter and no exclusion; the
/// first error is kept (the callbacks of tantivy's loops cannot return one).
struct Admit<'r, 'w> {
    reader: &'r SegmentReader,
    filters: Vec<Probe<'w>>,
    exclusions: Vec<Probe<'w>>,
    failed: Option<tantivy::TantivyError>,
}

impl<'r, 'w> Admit<'r, 'w> {
    fn new(
        reader: &'r SegmentReader,
        filters: &'w [Alternatives],
        exclusions: &'w [Alternatives],
    ) -> Admit<'r, 'w> {
        Admit {
            reader,
            filters: probes(filters),
            exclusions: probes(exclusions),
            failed: None,
        }
    }

    /// Whether a document is checked by reading postings (filters or exclusions), not only
    /// looked up among the deleted ones.
    fn probes(&self) -> bool {
        !self.filters.is_empty() || !self.exclusions.is_empty()
    }

    fn is_trivial(&self) -> bool {
        self.filters.is_empty()
            && self.exclusions.is_empty()
            && self.reader.alive_bitset().is_none()
    }

    fn admits(&mut self, doc: DocId) -> bool {
        let reader = self.reader;
        if reader
            .alive_bitset()
            .is_some_and(|alive| alive.is_deleted(doc))
        {
            return false;
        }
        let result = (|| -> tantivy::Result<bool> {
            for probe in &mut self.filters {
                if !probe.matches(reader, doc)? {
                    return Ok(false);
                }
            }
            for probe in &mut self.exclusions {
                if probe.matches(reader, doc)? {
                    return Ok(false);
                }
            }
            Ok(true)
        })();
        result.unwrap_or_else(|err| {
            self.failed.get_or_insert(err);
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::article::Article;
    use crate::route::train::SplitMix;
    use crate::search::query::ParsedQuery;
    use crate::search::{SearchEngine, SearchRequest};

    /// Made-up words (no English stop word, nothing the stemmer merges), the first ones the
    /// most frequent (Zipf-like), so that most documents match a query and share its pairs.
    fn vocabulary() -> Vec<String> {
        let (onsets, vowels) = (["k", "l", "m", "t", "z", "b"], ["a", "o", "i", "u"]);
        let mut words = Vec::new();
        for a in onsets {
            for v in vowels {
                for b in ["rp", "nd", "lk"] {
                    words.push(format!("{a}{v}{b}"));
                }
            }
        }
        words
    }

    fn draw<'a>(rng: &mut SplitMix, words: &'a [String]) -> &'a str {
        // Rank r drawn with weight about 1 / (r + 1).
        let r = (words.len() as f64).powf(rng.unit()) as usize - 1;
        &words[r.min(words.len() - 1)]
    }

    fn sentence(rng: &mut SplitMix, words: &[String], len: usize) -> String {
        (0..len)
            .map(|_| draw(rng, words))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Article `a{i}`, in English.
    fn english(i: usize, title: String, body: String) -> Article {
        Article {
            id: format!("a{i}"),
            title,
            body,
            lang: Some("en".into()),
            product: None,
            category: None,
            url: None,
            tags: Vec::new(),
            updated_at: None,
        }
    }

    /// An engine over `articles`, in a temporary folder (kept while the engine is used).
    fn engine_of(articles: &[Article]) -> (tempfile::TempDir, SearchEngine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = SearchEngine::open_or_create(dir.path()).unwrap();
        engine.upsert(articles).unwrap();
        (dir, engine)
    }

    /// An engine over generated articles, and generated queries of 2 to 12 words.
    fn generated() -> (tempfile::TempDir, SearchEngine, Vec<String>) {
        let words = vocabulary();
        let mut rng = SplitMix::new(7);
        let articles: Vec<Article> = (0..400)
            .map(|i| {
                let len = 2 + rng.below(4);
                let title = sentence(&mut rng, &words, len);
                let len = 10 + rng.below(150);
                english(i, title, sentence(&mut rng, &words, len))
            })
            .collect();
        let (dir, engine) = engine_of(&articles);
        let queries = (0..40)
            .map(|_| {
                let len = 2 + rng.below(11);
                sentence(&mut rng, &words, len)
            })
            .collect();
        (dir, engine, queries)
    }

    /// Best first, ties in address order: the order of the results.
    fn best(mut docs: Vec<(Score, DocAddress)>, k: usize) -> Vec<(u32, DocAddress)> {
        docs.sort_unstable_by_key(|&(s, a)| std::cmp::Reverse(Ranked(s, a)));
        docs.truncate(k);
        docs.into_iter().map(|(s, a)| (s.to_bits(), a)).collect()
    }

    /// The article term clauses and bonuses of `query`, every document they match with its term
    /// score, and the bonus clauses.
    fn term_scored(
        engine: &SearchEngine,
        searcher: &Searcher,
        stats: &KindStatistics,
        query: &str,
    ) -> (SplitQuery, Vec<(Score, DocAddress)>) {
        let (f, p) = (&engine.fields, &engine.params);
        let split = ParsedQuery::parse_with(query, p)
            .build_split(
                &[
                    (f.atitle, p.atitle),
                    (f.stitle, p.stitle),
                    (f.abody, p.abody),
                ],
                &[(f.atitle, p.atitle), (f.abody, p.abody)],
                p,
            )
            .unwrap();
        let clauses = TermClauses::new(searcher, stats, &split.terms).unwrap();
        let mut docs = Vec::new();
        for (ord, reader) in searcher.segment_readers().iter().enumerate() {
            clauses
                .for_each(ord, reader, &mut |doc, score| {
                    docs.push((score, DocAddress::new(ord as u32, doc)));
                })
                .unwrap();
        }
        (split, docs)
    }

    /// A buffered pool keeps the documents a heap keeps, and says the same most for those left
    /// out, over offers of many ties and sizes.
    #[test]
    fn buffered_pool_keeps_what_the_heap_keeps() {
        let mut rng = SplitMix::new(11);
        for size in [0, 1, 2, 5, 100] {
            for offers in [0, 1, 3, 10, 99, 100, 101, 1000] {
                let (mut heap, mut buffered) =
                    (TopPool::new(size, false), TopPool::new(size, true));
                for doc in 0..offers {
                    // Few distinct scores: many ties, which the address breaks.
                    let score = rng.below(20) as Score * 0.5;
                    let addr = DocAddress::new(doc / 400, doc % 400);
                    heap.offer(score, addr);
                    buffered.offer(score, addr);
                }
                let (mut a, most_a) = heap.finish();
                let (mut b, most_b) = buffered.finish();
                a.sort_unstable_by_key(|&(s, addr)| Ranked(s, addr));
                b.sort_unstable_by_key(|&(s, addr)| Ranked(s, addr));
                assert_eq!(a.len(), (offers as usize).min(size), "{size} {offers}");
                assert_eq!(a, b, "{size} {offers}");
                assert_eq!(most_a.to_bits(), most_b.to_bits(), "{size} {offers}");
            }
        }
    }

    /// The bonuses of only the documents that can still reach the k best: the same k best,
    /// scores bit for bit, as giving every document its bonuses; and some documents are
    /// dropped (else the test compares nothing).
    #[test]
    fn bonuses_skipped_for_hopeless_documents_keep_the_k_best() {
        let (_dir, engine, queries) = generated();
        let searcher = engine.reader.searcher();
        let stats = engine.statistics(&searcher).unwrap();
        let (mut dropped, mut compared) = (0, 0);
        for query in &queries {
            let (split, docs) = term_scored(&engine, &searcher, &stats, query);
            let phrases = PhraseClauses::new(&searcher, &stats, &split.bonuses)
                .unwrap()
                .expect("no slop");
            let mut all = docs.clone();
            add_phrase_scores(&searcher, &phrases, &mut all, docs.len()).unwrap();
            assert_eq!(all.len(), docs.len());
            for k in [1, 3, 10, 40] {
                let mut pruned = docs.clone();
                add_phrase_scores(&searcher, &phrases, &mut pruned, k).unwrap();
                dropped += docs.len() - pruned.len();
                assert_eq!(best(pruned, k), best(all.clone(), k), "{query} k={k}");
                compared += k.min(docs.len());
            }
        }
        assert!(dropped > 100, "only {dropped} documents dropped");
        assert!(compared > 1000, "only {compared} compared");
    }

    /// Documents found outside the pool get their whole score only when their bonuses can lift
    /// them to the k best: those kept are scored as tantivy's queries of every clause score them
    /// (bit for bit), and none of the k best is dropped.
    #[test]
    fn whole_scores_skipped_for_hopeless_documents_keep_the_k_best() {
        let (_dir, engine, queries) = generated();
        let searcher = engine.reader.searcher();
        let stats = engine.statistics(&searcher).unwrap();
        let scoring = EnableScoring::enabled_from_statistics_provider(&stats, &searcher);
        let (mut dropped, mut compared) = (0, 0);
        for query in &queries {
            let (split, docs) = term_scored(&engine, &searcher, &stats, query);
            let clauses = TermClauses::new(&searcher, &stats, &split.terms).unwrap();
            let phrases = PhraseClauses::new(&searcher, &stats, &split.bonuses)
                .unwrap()
                .expect("no slop");
            let most = docs.iter().map(|(s, _)| *s).fold(0.0, Score::max);
            let mut reference: Vec<(Score, DocAddress)> =
                docs.iter().map(|(_, a)| (0.0, *a)).collect();
            let mut weights = term_weights(&split.terms, scoring).unwrap();
            weights.extend(bonus_weights(&split, scoring).unwrap());
            add_scores(&searcher, &weights, &mut reference).unwrap();
            for k in [1, 5, 20] {
                let mut scored: Vec<(Score, DocAddress)> =
                    docs.iter().map(|(_, a)| (0.0, *a)).collect();
                let floor = kth_best(&reference, k);
                add_full_scores(&searcher, &clauses, &phrases, &mut scored, most, floor).unwrap();
                dropped += docs.len() - scored.len();
                let exact: HashMap<DocAddress, u32> =
                    reference.iter().map(|(s, a)| (*a, s.to_bits())).collect();
                for (score, addr) in &scored {
                    assert_eq!(score.to_bits(), exact[addr], "{query}");
                }
                assert_eq!(best(scored, k), best(reference.clone(), k), "{query} k={k}");
                compared += k.min(docs.len());
            }
        }
        assert!(dropped > 100, "only {dropped} documents dropped");
        assert!(compared > 500, "only {compared} compared");
    }

    /// The bounds `scores_at_bounded` gives a document are at least what its clauses add (up to
    /// float rounding).
    #[test]
    fn bonus_bounds_hold() {
        let (_dir, engine, queries) = generated();
        let searcher = engine.reader.searcher();
        let stats = engine.statistics(&searcher).unwrap();
        let mut checked = 0;
        for query in &queries {
            let (split, docs) = term_scored(&engine, &searcher, &stats, query);
            let phrases = PhraseClauses::new(&searcher, &stats, &split.bonuses)
                .unwrap()
                .expect("no slop");
            let mut docs = docs;
            by_segment(&mut docs, |ord, segment| {
                let ids: Vec<DocId> = segment.iter().map(|(_, a)| a.doc_id).collect();
                let mut bounds: Vec<Option<Score>> = vec![None; ids.len()];
                let mut sums: Vec<Score> = vec![0.0; ids.len()];
                phrases.scores_at_bounded(
                    ord as usize,
                    searcher.segment_reader(ord),
                    &ids,
                    &mut |i, bound| {
                        let least = bounds[i].map_or(bound, |b: Score| b.min(bound));
                        bounds[i] = Some(least);
                        false
                    },
                    &mut |i, s| sums[i] += s,
                )?;
                for (bound, sum) in bounds.iter().zip(&sums) {
                    let bound = bound.unwrap_or(0.0);
                    assert!(*sum <= bound * (1.0 + 1e-6), "{query}: {sum} > {bound}");
                    checked += usize::from(*sum > 0.0);
                }
                Ok(())
            })
            .unwrap();
        }
        assert!(checked > 1000, "only {checked} bonus sums checked");
    }

    /// Quoted phrases find the same pool and count, whether [`two_phase_top`] goes through the
    /// phrases' own matches (rare words) or checks them at the documents entering the pool
    /// (words most documents hold), counting or not, with few clauses and many; and the
    /// searches count what the whole query counts.
    #[test]
    fn checked_phrases_find_what_their_matches_find() {
        let (_dir, mut engine, queries) = generated();
        let words = vocabulary();
        let mut quoted: Vec<String> = queries
            .iter()
            .map(|query| {
                let mut words = query.split(' ');
                let (first, second) = (words.next().unwrap(), words.next().unwrap());
                format!(
                    "\"{first} {second}\" {}",
                    words.collect::<Vec<_>>().join(" ")
                )
            })
            .collect();
        for (a, b) in [(0, 1), (1, 0), (0, 2), (60, 61), (40, 3)] {
            let long = words[5..15].join(" ");
            quoted.push(format!("\"{} {}\" {}", words[a], words[b], words[4]));
            quoted.push(format!("{} \"{} {}\" {long}", words[7], words[a], words[b]));
        }
        let mut compared = 0;
        {
            let searcher = engine.reader.searcher();
            let stats = engine.statistics(&searcher).unwrap();
            let (f, p) = (&engine.fields, &engine.params);
            let fields = [
                (f.atitle, p.atitle),
                (f.stitle, p.stitle),
                (f.abody, p.abody),
            ];
            for query in &quoted {
                let parsed = ParsedQuery::parse_with(query, p);
                let split = parsed
                    .unquoted()
                    .build_split(&fields, &[(f.atitle, p.atitle), (f.abody, p.abody)], p)
                    .unwrap();
                let required: Vec<Box<dyn Query>> = parsed
                    .phrases
                    .iter()
                    .map(|phrase| parsed.any_field(phrase, &fields))
                    .collect();
                let words = parsed.words_of_phrases(&fields);
                for count in [false, true] {
                    let [through, checked] =
                        [(0, usize::MAX), (u64::MAX, 0)].map(|(most, driven_most)| {
                            let required = Required {
                                queries: &required,
                                words: words.as_ref(),
                                most,
                                driven_most,
                            };
                            let found = two_phase_top(
                                &searcher,
                                &stats,
                                &split,
                                &[],
                                &required,
                                &[],
                                &Extra::Nothing,
                                10,
                                30,
                                count,
                            )
                            .unwrap();
                            (found.top, found.matched, found.at_least)
                        });
                    // Block-max WAND (not counting, few clauses, the words not gone through)
                    // sums a document's term scores in its own order: the last bit may differ.
                    let addresses = |top: &[(Score, DocAddress)]| -> Vec<DocAddress> {
                        top.iter().map(|&(_, a)| a).collect()
                    };
                    assert_eq!(
                        addresses(&through.0),
                        addresses(&checked.0),
                        "{query} {count}"
                    );
                    for ((x, _), (y, _)) in through.0.iter().zip(&checked.0) {
                        assert!((x - y).abs() <= 1e-6 * y.abs(), "{query}: {x} {y}");
                    }
                    assert_eq!(
                        (through.1, through.2),
                        (checked.1, checked.2),
                        "{query} {count}"
                    );
                    compared += through.0.len();
                }
            }
        }
        // Exclusions of words most articles hold, with few clauses and many (more than block-max
        // WAND takes: every document is checked as it enters the pool).
        for (query, excluded) in queries.iter().zip(words.iter().cycle().skip(1)) {
            quoted.push(format!("{query} -{excluded} -{}", words[0]));
        }
        let (mut counted, mut excluding) = (0, 0);
        for query in &quoted {
            engine.set_two_phase(true);
            let request = SearchRequest {
                query: query.clone(),
                ..SearchRequest::default()
            };
            let two = engine.search(&request).unwrap();
            engine.set_two_phase(false);
            let one = engine.search(&request).unwrap();
            assert_eq!(
                (two.total, two.relaxed),
                (one.total, one.relaxed),
                "{query}"
            );
            assert!(!two.total_is_lower_bound && !one.total_is_lower_bound);
            if !query.contains('"') {
                let ids = |r: &crate::search::SearchResponse| -> Vec<String> {
                    r.hits.iter().map(|h| h.id.clone()).collect()
                };
                assert_eq!(ids(&two), ids(&one), "{query}");
                let [a, b] = [true, false].map(|two_phase| {
                    engine.set_two_phase(two_phase);
                    engine.rank_ids(query, 50).unwrap()
                });
                assert_eq!(
                    a.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                    b.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                    "{query}"
                );
                excluding += 1;
            }
            counted += two.total;
        }
        assert!(compared > 300, "only {compared} documents compared");
        assert!(counted > 1000, "only {counted} matches counted");
        assert_eq!(excluding, queries.len());
    }

    /// A quoted phrase more than [`DRIVEN_MOST`] articles hold is counted up to [`EXACT_COUNT`]
    /// and said to be a lower bound; the ranking is the whole query's, which counts them all.
    #[test]
    fn counting_a_phrase_most_articles_hold_stops_at_the_exact_count() {
        // More than the documents holding a phrase's words that are gone through (`DRIVEN_MOST`).
        let articles: Vec<Article> = (0..DRIVEN_MOST + 150)
            .map(|i| {
                let body = if i % 3 == 0 {
                    format!("The gateway timeout error shows after {i} seconds of waiting.")
                } else {
                    format!("A gateway timeout happens when upstream number {i} is slow.")
                };
                english(i, format!("Gateway note {i}"), body)
            })
            .collect();
        let (_dir, mut engine) = engine_of(&articles);
        let search_in = |engine: &SearchEngine, query: &str, lang: Option<&str>| {
            engine
                .search(&SearchRequest {
                    query: query.into(),
                    limit: 10,
                    lang: lang.map(str::to_string),
                    ..SearchRequest::default()
                })
                .unwrap()
        };
        let search = |engine: &SearchEngine, query: &str| search_in(engine, query, None);
        let quoted = "\"gateway timeout\" error seconds";
        let capped = search(&engine, quoted);
        assert_eq!(capped.total, EXACT_COUNT, "{quoted}");
        assert!(capped.total_is_lower_bound, "{quoted}");
        // Unquoted, the matches are counted as they are scored: exactly.
        let words = search(&engine, "gateway timeout error seconds");
        assert_eq!(
            (words.total, words.total_is_lower_bound),
            (articles.len(), false)
        );
        // A phrase fewer articles hold is counted exactly.
        let fewer = search(&engine, "\"timeout error\" gateway");
        let holding = (0..articles.len()).filter(|i| i % 3 == 0).count();
        assert_eq!((fewer.total, fewer.total_is_lower_bound), (holding, false));
        // Filters and excluded words are counted exactly, past `EXACT_COUNT` too; an excluded
        // phrase is checked document by document.
        let filtered = search_in(&engine, "gateway timeout error", Some("en"));
        assert_eq!(
            (filtered.total, filtered.total_is_lower_bound),
            (articles.len(), false)
        );
        let none = search_in(&engine, "gateway timeout error", Some("zh"));
        assert_eq!((none.total, none.total_is_lower_bound), (0, false));
        let excluding = search(&engine, "gateway timeout -upstream");
        assert_eq!(
            (excluding.total, excluding.total_is_lower_bound),
            (holding, false)
        );
        let many = search(&engine, "gateway timeout -seconds");
        assert_eq!(
            (many.total, many.total_is_lower_bound),
            (articles.len() - holding, false)
        );
        let phrase = search(&engine, "gateway -\"seconds of waiting\"");
        assert_eq!(
            (phrase.total, phrase.total_is_lower_bound),
            (EXACT_COUNT, true)
        );
        engine.set_two_phase(false);
        let whole = search(&engine, quoted);
        assert_eq!(
            (whole.total, whole.total_is_lower_bound),
            (articles.len(), false)
        );
        let ids = |r: &crate::search::SearchResponse| -> Vec<String> {
            r.hits.iter().map(|h| h.id.clone()).collect()
        };
        assert_eq!(ids(&capped), ids(&whole));
        assert_eq!(capped.hits.len(), 10);
    }
}
