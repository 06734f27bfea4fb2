//! Grouping per article: a section's score and its article's score combine into one score per
//! article, the best section giving the snippet and anchor.
//!
//! Owns: the combination `section × best section score + article × article score`
//! ([`RankParams`]) and the order of results. Must never: return an article twice, or one whose
//! id matched an exclusion.

use std::collections::{HashMap, HashSet};

use tantivy::columnar::{Column, StrColumn};
use tantivy::schema::Field;
use tantivy::{DocAddress, Searcher};

use super::SearchError;
use super::query::RankParams;

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

    /// The article id of a document (fast field, no doc store read).
    pub fn id(&mut self, addr: DocAddress) -> Result<String, SearchError> {
        let ord = addr.segment_ord as usize;
        if self.ids[ord].is_none() {
            let reader = self.searcher.segment_reader(addr.segment_ord);
            self.ids[ord] = reader.fast_fields().str("id")?;
        }
        let mut id = String::new();
        if let Some(column) = &self.ids[ord]
            && let Some(term_ord) = column.ords().first(addr.doc_id)
        {
            column.ord_to_str(term_ord, &mut id)?;
        }
        Ok(id)
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
        })
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
        Ok(self.scale(field, self.searcher.total_num_tokens(field)?))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.all)
    }

    fn doc_freq(&self, term: &tantivy::Term) -> tantivy::Result<u64> {
        let df = self.searcher.doc_freq(term)?;
        Ok(self.scale(term.field(), df).min(self.all))
    }
}
