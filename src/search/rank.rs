//! Grouping per article: a section's score and its article's score combine into one score per
//! article, the best section giving the snippet and anchor.
//!
//! Owns: the combination `section × best section score + article × article score`
//! ([`RankParams`]) and the order of results. Must never: return an article twice, or one whose
//! id matched an exclusion.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;

use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{BoostQuery, EnableScoring, Query, Scorer, TermQuery, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{
    DocAddress, DocId, DocSet, Score, Searcher, SeekDangerResult, SegmentReader, TERMINATED, Term,
};

use super::SearchError;
use super::query::{RankParams, SplitQuery};

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
    by_key: HashMap<u64, Candidate>,
}

impl<'a> Candidates<'a> {
    pub fn new(searcher: &'a Searcher, key_field: Field) -> Candidates<'a> {
        Candidates {
            searcher,
            key_field,
            columns: vec![None; searcher.segment_readers().len()],
            ids: vec![None; searcher.segment_readers().len()],
            by_key: HashMap::new(),
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
                    let table = cache.table(self.searcher, reader, column)?;
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
        })
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
        let tokens = self.scale(field, self.searcher.total_num_tokens(field)?);
        Ok(match self.length_scales.iter().find(|(f, _)| *f == field) {
            Some(&(_, factor)) => ((tokens as f64) * factor).round() as u64,
            None => tokens,
        })
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.all)
    }

    fn doc_freq(&self, term: &tantivy::Term) -> tantivy::Result<u64> {
        let df = self.searcher.doc_freq(term)?;
        Ok(self.scale(term.field(), df).min(self.all))
    }
}

/// Whether a query matches given documents, asked in increasing document order. Uses
/// tantivy's `seek_danger`, so a phrase is checked at the asked document only: a plain `seek`
/// (or creating the scorer) scans forward for the phrase's next match.
struct Probe<'w> {
    weight: &'w dyn Weight,
    /// Created at the first document asked.
    scorer: Option<Box<dyn Scorer>>,
    /// No match below this document.
    lower: DocId,
}

impl<'w> Probe<'w> {
    fn new(weight: &'w dyn Weight) -> Probe<'w> {
        Probe {
            weight,
            scorer: None,
            lower: 0,
        }
    }

    /// Whether `doc` matches; `doc` must be greater than the one asked before.
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

    /// The score of `doc` if it matches.
    fn score(&mut self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Option<Score>> {
        Ok(if self.matches(reader, doc)? {
            self.scorer.as_mut().map(|s| s.score())
        } else {
            None
        })
    }
}

/// For each article key, its best section under `split` (section documents only): the highest
/// full score, ties in document order; an article none of whose sections match gets its first
/// section. Reads only the postings of the keys, checking each clause at those documents.
pub fn best_sections(
    searcher: &Searcher,
    stats: &KindStatistics,
    split: &SplitQuery,
    key_field: Field,
    kind_field: Field,
    keys: &[u64],
) -> tantivy::Result<HashMap<u64, DocAddress>> {
    let scoring = EnableScoring::enabled_from_statistics_provider(stats, searcher);
    let mut clauses: Vec<Box<dyn Weight>> = Vec::new();
    for (term, boost) in &split.terms {
        let query = TermQuery::new(term.clone(), IndexRecordOption::WithFreqs);
        clauses.push(BoostQuery::new(Box::new(query), *boost).weight(scoring)?);
    }
    for bonus in &split.bonuses {
        clauses.push(BoostQuery::new(bonus.query.box_clone(), bonus.boost).weight(scoring)?);
    }
    let section_kind = Term::from_field_text(kind_field, super::index::KIND_SECTION);
    let is_section = TermQuery::new(section_kind, IndexRecordOption::Basic)
        .weight(EnableScoring::disabled_from_searcher(searcher))?;
    // (key → (score, address)), best so far.
    let mut best: HashMap<u64, (Option<Score>, DocAddress)> = HashMap::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let index = reader.inverted_index(key_field)?;
        let alive = reader.alive_bitset();
        // The documents of the keys, in document order (probes go forward only).
        let mut docs: Vec<(DocId, u64)> = Vec::new();
        for &key in keys {
            let term = Term::from_field_u64(key_field, key);
            if let Some(mut postings) = index.read_postings(&term, IndexRecordOption::Basic)? {
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
        let mut sections = Probe::new(is_section.as_ref());
        let mut probes = probes(&clauses);
        for (doc, key) in docs {
            if !sections.matches(reader, doc)? {
                continue;
            }
            let mut score: Option<Score> = None;
            for probe in &mut probes {
                if let Some(s) = probe.score(reader, doc)? {
                    *score.get_or_insert(0.0) += s;
                }
            }
            let addr = DocAddress::new(ord as u32, doc);
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

fn probes(weights: &[Box<dyn Weight>]) -> Vec<Probe<'_>> {
    weights.iter().map(|w| Probe::new(w.as_ref())).collect()
}

/// Every article id of a segment by its ordinal in the `id` column, read once per segment: a
/// lookup one by one decompresses and scans a dictionary block each time, the costliest part of
/// ranking 100 ids. About 100 bytes per article; segments no longer searched are dropped.
#[derive(Default)]
pub struct IdCache {
    by_segment: Mutex<HashMap<SegmentId, Arc<Vec<String>>>>,
}

impl IdCache {
    fn table(
        &self,
        searcher: &Searcher,
        reader: &SegmentReader,
        column: &StrColumn,
    ) -> Result<Arc<Vec<String>>, SearchError> {
        let segment = reader.segment_id();
        if let Some(table) = self.lock().get(&segment) {
            return Ok(table.clone());
        }
        let mut table = Vec::with_capacity(column.num_terms());
        let mut stream = column.dictionary().stream()?;
        while stream.advance() {
            table.push(String::from_utf8_lossy(stream.key()).into_owned());
        }
        let table = Arc::new(table);
        let mut cache = self.lock();
        let live: HashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        cache.retain(|id, _| live.contains(id));
        cache.insert(segment, table.clone());
        Ok(table)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<Vec<String>>>> {
        self.by_segment.lock().unwrap_or_else(|e| e.into_inner())
    }
}
