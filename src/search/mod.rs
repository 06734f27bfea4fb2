//! Search: the tantivy index of article sections, ranking, grouping per article and snippets.
//!
//! Owns: the index directory (schema, analyzer fingerprint, commits), turning requests into
//! ranked, grouped, highlighted results, and suggestions. Must never: hand raw user text to
//! tantivy's `QueryParser`, or open an index built by another analyzer.
//!
//! ```
//! use kefu::article::Article;
//! use kefu::search::{SearchEngine, SearchRequest};
//! let dir = tempfile::tempdir().unwrap();
//! let engine = SearchEngine::open_or_create(dir.path()).unwrap();
//! engine.upsert(&[Article::new("billing/refund.md", "如何申请退款", "## 到账时间 {#time}\n退款 3 个工作日到账")]).unwrap();
//! let found = engine.search(&SearchRequest { query: "退款多久到账".into(), limit: 10, ..Default::default() }).unwrap();
//! assert_eq!(found.hits[0].id, "billing/refund.md");
//! assert_eq!(found.hits[0].anchor.as_deref(), Some("time"));
//! ```
//!
//! Map: `index.rs` (schema, fingerprint, documents), `text.rs` (Markdown → indexed text),
//! `query.rs` (query syntax, synonyms, boosts), `rank.rs` (grouping sections per article, the two
//! ranking phases, per-segment caches), `paraphrase.rs` (the character channel and character similarity
//! between one-sentence questions), `taat.rs` (term and phrase clauses scored without tantivy's scorers,
//! same scores; cached term lookups), `snippet.rs` (highlighting, from the analyzed tokens each
//! section stores: no analysis at query time).

pub mod density;
pub mod index;
pub mod paraphrase;
pub mod query;
pub mod rank;
pub mod snippet;
mod taat;
pub mod text;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};
use utoipa::ToSchema;

use crate::analyzer::{KefuTokenizer, TOKENIZER_NAME};
use crate::article::Article;
use index::{Fields, KIND_ARTICLE, KIND_SECTION};
use query::{ParsedQuery, RankParams};
use rank::Candidates;

/// What can go wrong in search and indexing.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The caller's request is invalid (empty/oversized query, bad filter, bad id...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The index on disk was built by another analyzer: re-index.
    #[error("{0}")]
    AnalyzerMismatch(String),
    /// tantivy failed.
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// Reading or writing files failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A search request (CLI, HTTP and evaluation all build one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SearchRequest {
    pub query: String,
    pub lang: Option<String>,
    pub product: Option<String>,
    /// Only articles of this support category (see [`Article::category`]).
    #[serde(default)]
    pub category: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// One article in the results; its best section gives `anchor`, `section` and `snippet`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub id: String,
    pub title: String,
    pub lang: String,
    pub product: Option<String>,
    pub category: Option<String>,
    pub url: Option<String>,
    pub anchor: Option<String>,
    pub section: Option<String>,
    /// HTML-escaped text with `<em>`…`</em>` around matched terms.
    pub snippet: String,
    pub score: f32,
}

/// Results of one search.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub query: String,
    pub hits: Vec<SearchHit>,
    /// Number of matching articles (not sections).
    pub total: usize,
    /// `total` is a lower bound: counting stopped there. A query whose matches are checked one
    /// by one (a quoted phrase most articles hold, an excluded phrase) counts up to 1,000 of
    /// them and then checks only those that could make the page (the widget shows "1000+").
    #[serde(default)]
    pub total_is_lower_bound: bool,
    /// No article that the filters allow holds the query's quoted phrases (often a pasted error
    /// message worded a little differently from the article's), so the hits match the phrases'
    /// words instead, as if they were not quoted; exclusions and filters still hold.
    #[serde(default)]
    pub relaxed: bool,
    pub took_ms: f64,
}

/// A completion for search-as-you-type.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Suggestion {
    pub text: String,
    /// `title` (an article title) or `query` (a popular past query, added by the server).
    pub kind: String,
    pub id: Option<String>,
}

/// Size and freshness of the index, for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IndexStats {
    pub articles: u64,
    pub sections: u64,
    pub size_bytes: u64,
    /// RFC 3339 time of the last commit, if any.
    pub last_commit: Option<String>,
}

/// Outcome of an upsert batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpsertReport {
    pub upserted: usize,
}

/// Longest accepted query, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Most hits per page, and deepest offset.
pub const MAX_LIMIT: usize = 100;
pub const MAX_OFFSET: usize = 1000;
/// Hits per page when the request says 0.
pub const DEFAULT_LIMIT: usize = 10;
/// Writer memory budget (all indexing threads together).
const WRITER_MEMORY: usize = 256 * 1024 * 1024;
/// Doc-store block size of a new index (tantivy's default is 16 KB; an index keeps the size it
/// was created with, in its `meta.json`). Each hit decompresses the block of its section's
/// document, so a small block costs less per hit; an article's stored JSON, most of the store,
/// still fills a block of its own. With sections and article documents apart (see
/// `upsert_with_progress`), on the aliyun-faq dev queries (search top 10, CPU mean, interleaved
/// on a loaded machine): 16 KB 0.693/0.677 ms, 4 KB 0.657/0.637, 2 KB 0.648/0.606; the aliyun-faq
/// store grows 73 -> 90 MB (67 MB before the sections and article documents were apart). Alone,
/// without that, smaller blocks did not help (the JSON shared the blocks).
const DOCSTORE_BLOCK_SIZE: usize = 2048;
/// Articles analyzed per parallel chunk while upserting (bounds memory of pre-analyzed text).
const UPSERT_CHUNK: usize = 256;

/// How [`SearchEngine::search_with`] builds its response.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions {
    /// Compute highlighted snippets.
    pub snippets: bool,
    /// Largest accepted `limit`.
    pub max_limit: usize,
}

impl Default for SearchOptions {
    fn default() -> SearchOptions {
        SearchOptions {
            snippets: true,
            max_limit: MAX_LIMIT,
        }
    }
}

/// An open index: readers for search, one writer behind a lock for upserts and deletes.
/// `Send + Sync`; share it in an `Arc`.
pub struct SearchEngine {
    dir: PathBuf,
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// Created on the first write (it holds the index's writer lock file).
    writer: Mutex<Option<IndexWriter<index::IndexDoc>>>,
    params: RankParams,
    /// Article ids by segment, for `rank_ids`.
    ids: rank::IdCache,
    /// Term dictionary lookups by segment, across queries.
    terms: taat::TermInfoCache,
    /// Best sections found by scoring only the page's sections (`rank::best_sections`); off,
    /// by tantivy queries over all sections (the reference, for tests).
    probe_sections: bool,
    /// Articles ranked in two phases (`rank::two_phase_top`); off, by scoring every match with
    /// the whole query (the reference, for tests).
    two_phase: bool,
    /// Articles ranked by their term scores before the bonuses are added (`RERANK_POOL`).
    rerank_pool: usize,
    /// One-sentence questions reordered by how alike they are written (`paraphrase::rerank`);
    /// off, by their scores alone (tests).
    paraphrases: bool,
    /// Forms of short articles by segment, across queries.
    forms: paraphrase::FormCache,
    /// Whether each segment has short articles (`paraphrase::short_form`), across queries.
    shorts: rank::SegmentCache<bool>,
    /// Stored section documents of recent hits, across queries ([`HitDocs`]).
    hit_docs: HitDocs,
}

/// Stored documents of recent hits by segment and document, most recently used kept: a hit
/// reads a section's stored document (about 69k instructions: decompressing its doc-store block,
/// then copying and checking the UTF-8 of its text and marks), and popular sections are hits of
/// many queries (the 17,166 hits of the aliyun-faq dev queries are 6,888 sections). A segment's
/// stored documents never change; entries of segments no longer searched age out.
///
/// Measured (session 17, callgrind, instructions of `search_with`, the aliyun-faq dev queries
/// once each in order as `kefu eval search` runs them, after 50 `rank_ids` warm-up queries):
/// total 6,391M → 5,967M (−6.6%), per query p50 3.59M → 3.33M, p99 7.24M → 6.82M (−5.9%);
/// the 60 slowest queries alone (fewer repeats) 422.8M → 406.8M. Results byte-identical
/// (`search_latency --dump`). Largest resident set of `search_latency` over those queries
/// 143.5 → 152.1 MB. Share of hits found kept, replaying the dev queries' hits through
/// an LRU of sections: 50% with 512 documents, 54% with 1024, 56.5% with 2048, 59% with 4096, 60%
/// with any number (every repeat).
struct HitDocs {
    docs: Mutex<lru::LruCache<(tantivy::index::SegmentId, tantivy::DocId), Arc<index::IndexDoc>>>,
}

/// Stored section documents [`HitDocs`] keeps (a hit's document is its section's text as far
/// as snippets read it, at most about 12 KB and mostly a few, and its marks: some MB in all).
const HIT_DOCS: usize = 2048;

impl Default for HitDocs {
    fn default() -> HitDocs {
        HitDocs {
            docs: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(HIT_DOCS).expect("HIT_DOCS > 0"),
            )),
        }
    }
}

impl HitDocs {
    /// The stored document at `addr`, read from the doc store the first time.
    fn get(
        &self,
        searcher: &Searcher,
        addr: DocAddress,
    ) -> Result<Arc<index::IndexDoc>, SearchError> {
        let key = (
            searcher.segment_reader(addr.segment_ord).segment_id(),
            addr.doc_id,
        );
        if let Some(doc) = self.lock().get(&key) {
            return Ok(doc.clone());
        }
        let doc: Arc<index::IndexDoc> = Arc::new(searcher.doc(addr)?);
        self.lock().put(key, doc.clone());
        Ok(doc)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        lru::LruCache<(tantivy::index::SegmentId, tantivy::DocId), Arc<index::IndexDoc>>,
    > {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Articles ranked by their term scores alone before their proximity bonuses are added (at least;
/// three times the page when that is more): see `rank::two_phase_top`. On the aliyun-faq dev
/// queries, against scoring every match with the whole query: MRR@10 of the top 10 equal (zh
/// 0.4857 vs 0.4854, en 0.4822 vs 0.4823), the same 10 articles for 98% of the queries (89% with
/// a pool of 50, 75% with 30); `rank_ids` of 101 (a pool of 303) gives the same MRR@10.
///
/// Session 17: 100 → 50, for the slowest queries' latency (issue 2's p99 ≤ 1 ms). The bonus
/// pass reads positions of the pool's articles, so the pool is what a long question pays
/// for. Top 10 of `SearchEngine::search` on the aliyun-faq dev queries (1,747; `search_latency
/// --pool N --dump`), pool 100 / 75 / 60 / 50 / 40 / 30: MRR@10 0.5021 / 0.5020 / 0.5014 /
/// 0.5007 / 0.4999 / 0.4993, the right article in the top 3 for 58.27% / 58.27% / 58.21% /
/// 58.16% / 58.10% of the queries; callgrind instructions of the 60 slowest queries 422.6M /
/// 407.9M / 398.6M / 391.8M / – / 375.3M. stackfaq (609) and atec-faq (8,481) top 10 the same
/// MRR@10 at 50 as at 100.
const RERANK_POOL: usize = 50;

/// The filters of one search: a document must carry every value given.
#[derive(Debug, Clone, Default)]
struct Filters {
    lang: Option<String>,
    product: Option<String>,
    category: Option<String>,
}

/// What [`SearchEngine::rank`] found.
struct Ranking {
    ranked: Vec<rank::Candidate>,
    /// Matching articles, with [`Wanted::Total`].
    total: usize,
    /// Whether `total` is a lower bound ([`rank::EXACT_COUNT`]).
    total_is_lower_bound: bool,
    /// The ids of the top articles, with [`Wanted::Ids`].
    ids: Vec<String>,
    /// Whether the query's quoted phrases were dropped ([`SearchEngine::rank_relaxing`]).
    relaxed: bool,
}

/// What [`SearchEngine::rank`] computes besides the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// The number of matching articles.
    Total,
    /// The ids of the top articles.
    Ids,
}

impl SearchEngine {
    /// Opens the index in `dir`, creating an empty one if there is none. Refuses an index built by
    /// another analyzer with [`SearchError::AnalyzerMismatch`].
    pub fn open_or_create(dir: &Path) -> Result<SearchEngine, SearchError> {
        std::fs::create_dir_all(dir)?;
        let index = if dir.join("meta.json").exists() {
            index::check_fingerprint(dir)?;
            Index::open_in_dir(dir)?
        } else {
            let (schema, _) = index::build_schema();
            let settings = tantivy::IndexSettings {
                docstore_blocksize: DOCSTORE_BLOCK_SIZE,
                ..Default::default()
            };
            let index = Index::builder()
                .schema(schema)
                .settings(settings)
                .create_in_dir(dir)?;
            index::write_fingerprint(dir)?;
            index
        };
        index.tokenizers().register(TOKENIZER_NAME, KefuTokenizer);
        let fields = Fields::from_schema(&index.schema())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        let engine = SearchEngine {
            dir: dir.to_path_buf(),
            index,
            fields,
            reader,
            writer: Mutex::new(None),
            params: RankParams::default(),
            ids: rank::IdCache::default(),
            terms: taat::TermInfoCache::default(),
            probe_sections: true,
            two_phase: true,
            rerank_pool: RERANK_POOL,
            paraphrases: true,
            forms: paraphrase::FormCache::default(),
            shorts: rank::SegmentCache::default(),
            hit_docs: HitDocs::default(),
        };
        engine.warm()?;
        Ok(engine)
    }

    /// Reloads the reader after one of this engine's commits and warms its caches.
    fn reload(&self) -> Result<(), SearchError> {
        self.reader.reload()?;
        self.warm()
    }

    /// Prepares what the first search over new segments would otherwise pay for: the short
    /// articles' forms, the contrasts learned from them and their density (about 4 s together
    /// over atec-faq's 77,512 questions on a loaded machine, the density's neighbour search most
    /// of it; see `paraphrase::Contrasts` and `density`). Segments merged in the background are
    /// picked up by the next search; contrasts and density are learned again only when the
    /// number of short articles moved.
    ///
    /// Checked (session 17) for a slow first search after opening: the first aliyun-faq dev
    /// query searched right after `open_or_create` of its index took 1.7 ms wall, and 4.4 and
    /// 0.5 ms in two runs that first ranked every dev query as `kefu eval search` does (load
    /// 3–4); the seven searches after it 0.5–5.6 ms: no 20 ms outlier, so nothing more is warmed
    /// here.
    pub fn warm(&self) -> Result<(), SearchError> {
        self.forms.warm(&self.reader.searcher(), self.fields.short)
    }

    /// Replaces the ranking weights (evaluation and tuning).
    pub fn set_rank_params(&mut self, params: RankParams) {
        self.params = params;
    }

    /// Finds the best sections of a page by plain tantivy queries (`false`: the slower
    /// reference that the default must agree with) or by scoring only the page's sections.
    pub fn set_probe_sections(&mut self, probe: bool) {
        self.probe_sections = probe;
    }

    /// Ranks articles in two phases (the default) or by scoring every match with the whole
    /// query (`false`: the slower reference).
    pub fn set_two_phase(&mut self, two_phase: bool) {
        self.two_phase = two_phase;
    }

    /// Reorders a top of one-sentence questions by how alike each is written to the query (the
    /// default, [`paraphrase`]) or not (`false`).
    pub fn set_paraphrases(&mut self, on: bool) {
        self.paraphrases = on;
    }

    /// Articles ranked by their term scores before their bonuses are added (tuning; at least
    /// three times the page is kept).
    pub fn set_rerank_pool(&mut self, pool: usize) {
        self.rerank_pool = pool;
    }

    /// Number of articles in the index.
    pub fn num_articles(&self) -> u64 {
        self.count_kind(KIND_ARTICLE)
    }

    fn count_kind(&self, kind: &str) -> u64 {
        let query = TermQuery::new(
            Term::from_field_text(self.fields.kind, kind),
            IndexRecordOption::Basic,
        );
        self.reader
            .searcher()
            .search(&query, &Count)
            .map_or(0, |n| n as u64)
    }

    /// Inserts or replaces articles by id in one commit; visible to search when this returns.
    pub fn upsert(&self, articles: &[Article]) -> Result<UpsertReport, SearchError> {
        self.upsert_with_progress(articles, &|_| {})
    }

    /// [`SearchEngine::upsert`], calling `progress(n)` as each chunk of `n` articles is indexed.
    pub fn upsert_with_progress(
        &self,
        articles: &[Article],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<UpsertReport, SearchError> {
        for article in articles {
            crate::ingest::validate(article).map_err(|message| {
                SearchError::InvalidRequest(format!("article {:?}: {message}", article.id))
            })?;
        }
        // The last version of an id in a batch wins.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, article) in articles.iter().enumerate() {
            last.insert(&article.id, i);
        }
        let unique: Vec<&Article> = articles
            .iter()
            .enumerate()
            .filter(|(i, a)| last[a.id.as_str()] == *i)
            .map(|(_, a)| a)
            .collect();
        let mut guard = self.lock_writer()?;
        let writer = guard.as_mut().expect("lock_writer creates the writer");
        let result = (|| {
            for chunk in unique.chunks(UPSERT_CHUNK) {
                let docs: Vec<Vec<index::IndexDoc>> = chunk
                    .par_iter()
                    .map(|a| index::article_documents(&self.fields, a))
                    .collect();
                for article in chunk {
                    writer.delete_term(index::id_term(&self.fields, &article.id));
                }
                // Every section of the chunk, then every article document: a hit reads its
                // section's doc-store block, which then rarely holds an article's stored JSON.
                let mut articles = Vec::with_capacity(docs.len());
                for mut docs in docs {
                    articles.extend(docs.pop());
                    for doc in docs {
                        writer.add_document(doc)?;
                    }
                }
                for doc in articles {
                    writer.add_document(doc)?;
                }
                progress(chunk.len());
            }
            commit(writer)
        })();
        if let Err(err) = result {
            // Nothing of a failed batch may reach a later commit.
            let _ = writer.rollback();
            return Err(err);
        }
        self.reload()?;
        Ok(UpsertReport {
            upserted: unique.len(),
        })
    }

    fn lock_writer(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, Option<IndexWriter<index::IndexDoc>>>, SearchError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            // One indexing thread: analysis, the costly part, already runs in parallel (rayon,
            // `upsert_with_progress`), and a batch then makes one segment rather than one per
            // thread; a query pays per segment (term lookups, postings opened), so searching
            // the whole aliyun KB in one segment instead of two took 7-15% less CPU time.
            *guard = Some(self.index.writer_with_num_threads(1, WRITER_MEMORY)?);
        }
        Ok(guard)
    }

    /// Waits for background segment merges and releases the writer (end of a CLI run).
    pub fn wait_merges(&self) -> Result<(), SearchError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            writer.wait_merging_threads()?;
            self.reload()?;
        }
        Ok(())
    }

    /// Deletes articles by id in one commit; returns how many existed.
    pub fn delete(&self, ids: &[String]) -> Result<usize, SearchError> {
        let searcher = self.reader.searcher();
        let mut existing = 0;
        for id in ids {
            if self.article_address(&searcher, id)?.is_some() {
                existing += 1;
            }
        }
        if existing == 0 {
            return Ok(0);
        }
        let mut guard = self.lock_writer()?;
        let writer = guard.as_mut().expect("lock_writer creates the writer");
        for id in ids {
            writer.delete_term(index::id_term(&self.fields, id));
        }
        if let Err(err) = commit(writer) {
            let _ = writer.rollback();
            return Err(err);
        }
        self.reload()?;
        Ok(existing)
    }

    fn article_address(
        &self,
        searcher: &Searcher,
        id: &str,
    ) -> Result<Option<DocAddress>, SearchError> {
        let query = BooleanQuery::new(vec![
            (Occur::Must, term_query(index::id_term(&self.fields, id))),
            (
                Occur::Must,
                term_query(Term::from_field_text(self.fields.kind, KIND_ARTICLE)),
            ),
        ]);
        let top = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        Ok(top.first().map(|(_, addr)| *addr))
    }

    /// The stored article, if present.
    pub fn get(&self, id: &str) -> Result<Option<Article>, SearchError> {
        let searcher = self.reader.searcher();
        let Some(addr) = self.article_address(&searcher, id)? else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(addr)?;
        let json = doc
            .get_first(self.fields.article)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        serde_json::from_str(json).map(Some).map_err(|err| {
            SearchError::Io(std::io::Error::other(format!(
                "stored article {id:?} is unreadable: {err}"
            )))
        })
    }

    /// Ranked, grouped, highlighted results.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError> {
        self.search_with(request, SearchOptions::default())
    }

    /// [`SearchEngine::search`] with options (evaluation ranks 101 hits without snippets).
    ///
    /// One thread does all of a search. Session 14 built a page's hits (stored documents and
    /// snippets, about a third of a search: 225 µs of a page's mean, best sections 125 µs) on
    /// two cores, on a branch, not merged: the other core offered the next hit not taken yet
    /// (`rayon::spawn`, woken before the best sections were searched, the caller never waiting
    /// for it), results byte-identical over the 1,747 aliyun-faq dev queries; but interleaved
    /// wall-clock p50 / p99 (load 0.3–0.9) stayed within the machine's drift (sequential
    /// 0.750 / 1.740 and 0.675 / 1.547 ms, shared 0.753 / 1.746 and 0.799 / 1.923; over the
    /// 52 slowest queries p99 2.48 → 3.34). Handing over and waking cost about what they save,
    /// the two vCPUs slow each other (two sequential runs side by side: each 12% slower), and
    /// under load the pool seldom has a free core. Halves under `rayon::in_place_scope` search
    /// best sections per half (371M → 393M instructions over the 52 slowest) and a scope waits
    /// for its job even when nothing is left (p95 2.19 → 5.55 ms at load 5.5); a helper spinning
    /// instead of sleeping: p99 2.04 → 5.81 ms at load 1.8.
    pub fn search_with(
        &self,
        request: &SearchRequest,
        options: SearchOptions,
    ) -> Result<SearchResponse, SearchError> {
        let snippets = options.snippets;
        let started = Instant::now();
        let query = request.query.trim();
        if query.is_empty() {
            return Err(SearchError::InvalidRequest("empty query".into()));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(SearchError::InvalidRequest(format!(
                "query longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let limit = if request.limit == 0 {
            DEFAULT_LIMIT
        } else {
            request.limit
        };
        if limit > options.max_limit {
            return Err(SearchError::InvalidRequest(format!(
                "limit must be at most {}",
                options.max_limit
            )));
        }
        if request.offset > MAX_OFFSET {
            return Err(SearchError::InvalidRequest(format!(
                "offset must be at most {MAX_OFFSET}"
            )));
        }
        // A blank filter is no filter.
        let filter = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let filters = Filters {
            lang: filter(&request.lang),
            product: filter(&request.product),
            category: filter(&request.category),
        };
        if let Some(lang) = &filters.lang
            && !matches!(lang.as_str(), "zh" | "en")
        {
            return Err(SearchError::InvalidRequest(format!(
                "lang must be zh or en, not {lang:?}"
            )));
        }
        let parsed = ParsedQuery::parse_with(query, &self.params);
        let mut response = SearchResponse {
            query: request.query.clone(),
            hits: Vec::new(),
            total: 0,
            total_is_lower_bound: false,
            relaxed: false,
            took_ms: 0.0,
        };
        if !parsed.is_empty() {
            let searcher = self.reader.searcher();
            let stats = self.statistics(&searcher)?;
            // A corrected typo ranks, picks the best section and is highlighted like the rest.
            let corrected = self.corrected(&searcher, &parsed)?;
            let parsed = corrected.as_ref().unwrap_or(&parsed);
            let unquoted = parsed.unquoted();
            let Ranking {
                ranked,
                total,
                total_is_lower_bound,
                relaxed,
                ..
            } = self.rank_relaxing(
                &searcher,
                &stats,
                query,
                (parsed, &unquoted),
                &filters,
                request.offset + limit,
                Wanted::Total,
            )?;
            let parsed = if relaxed { &*unquoted } else { parsed };
            response.total = total;
            response.total_is_lower_bound = total_is_lower_bound;
            response.relaxed = relaxed;
            let highlight = parsed.highlight_terms();
            let mut page: Vec<rank::Candidate> = ranked
                .into_iter()
                .skip(request.offset)
                .take(limit)
                .collect();
            self.find_best_sections(&searcher, &stats, parsed, &mut page)?;
            for candidate in page {
                response
                    .hits
                    .push(self.hit(&searcher, parsed, candidate, &highlight, snippets)?);
            }
        }
        response.took_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(response)
    }

    /// `parsed` with each Latin word that no article holds joined by its most frequent neighbour
    /// one edit away (typo tolerance), or `None` when nothing needed correcting.
    fn corrected(
        &self,
        searcher: &Searcher,
        parsed: &ParsedQuery,
    ) -> Result<Option<ParsedQuery>, SearchError> {
        let f = &self.fields;
        Ok(parsed.with_corrections(searcher, &[f.abody, f.atitle], self.params.spelling)?)
    }

    /// [`SearchEngine::rank`] of `parsed`, or, when no article matches it and it has quoted
    /// phrases, of `unquoted` (`parsed` without them: its words alone) if that finds articles;
    /// [`Ranking::relaxed`] says whether it was `unquoted`.
    #[allow(clippy::too_many_arguments)]
    fn rank_relaxing(
        &self,
        searcher: &Searcher,
        stats: &rank::KindStatistics,
        text: &str,
        (parsed, unquoted): (&ParsedQuery, &ParsedQuery),
        filter: &Filters,
        needed: usize,
        wanted: Wanted,
    ) -> Result<Ranking, SearchError> {
        let ranking = self.rank(searcher, stats, text, parsed, filter, needed, wanted)?;
        if ranking.ranked.is_empty() && !parsed.phrases.is_empty() && !unquoted.is_empty() {
            let words = self.rank(searcher, stats, text, unquoted, filter, needed, wanted)?;
            if !words.ranked.is_empty() {
                return Ok(Ranking {
                    relaxed: true,
                    ..words
                });
            }
        }
        Ok(ranking)
    }

    /// Scores articles: best section + article-level score, exclusions applied.
    #[allow(clippy::too_many_arguments)]
    fn rank(
        &self,
        searcher: &Searcher,
        stats: &rank::KindStatistics,
        text: &str,
        parsed: &ParsedQuery,
        filter: &Filters,
        needed: usize,
        wanted: Wanted,
    ) -> Result<Ranking, SearchError> {
        let f = &self.fields;
        let p = &self.params;
        let mut filters: Vec<Box<dyn Query>> = Vec::new();
        for (field, value) in [
            (f.lang, &filter.lang),
            (f.product, &filter.product),
            (f.category, &filter.category),
        ] {
            if let Some(value) = value {
                filters.push(term_query(Term::from_field_text(field, value)));
            }
        }
        let exclusions: Vec<Box<dyn Query>> = parsed
            .exclusions
            .iter()
            .map(|e| parsed.any_field(e, &[(f.atitle, 1.0), (f.abody, 1.0)]))
            .collect();
        let article_fields = [
            (f.atitle, p.atitle),
            (f.stitle, p.stitle),
            (f.abody, p.abody),
        ];
        let article_phrase_fields = [(f.atitle, p.atitle), (f.abody, p.abody)];
        let mut candidates = Candidates::new(searcher, f.key);
        // Without section scores nothing is merged, so the page is all that is needed, or the
        // pool that paraphrase matching may reorder (`paraphrase::rerank`), which it leaves as
        // it is unless the pool is all short articles: with none in the index, the page.
        let article_limit = if p.section > 0.0 {
            p.candidates.max(needed * 2)
        } else if self.paraphrases && self.has_short_articles(searcher)? {
            needed.max(paraphrase::POOL)
        } else {
            needed
        };
        // Two phases (`rank::two_phase_top`) unless the query has clauses only the whole query
        // expresses (the title coverage bonus) or the reference is asked for. Quoted phrases
        // are required clauses, scored in the second phase: every document matching them is
        // matched by the term clauses when each phrase word is a term clause in every field
        // (else the whole query ranks).
        let (split, required) = if self.two_phase && p.title_bonus <= 0.0 {
            let scored = parsed.unquoted();
            match scored.build_split(&article_fields, &article_phrase_fields, p) {
                Some(split)
                    if parsed.phrases.iter().all(|phrase| {
                        phrase.terms.iter().all(|(_, text)| {
                            article_fields.iter().all(|&(field, _)| {
                                let term = Term::from_field_text(field, text);
                                split.terms.iter().any(|(t, _)| *t == term)
                            })
                        })
                    }) =>
                {
                    let required: Vec<Box<dyn Query>> = parsed
                        .phrases
                        .iter()
                        .map(|phrase| parsed.any_field(phrase, &article_fields))
                        .collect();
                    (Some(split), required)
                }
                _ => (None, Vec::new()),
            }
        } else {
            (None, Vec::new())
        };
        let (article_top, mut total, total_is_lower_bound) = match split {
            Some(split) => {
                // The articles that get their bonuses: a pool of term scores, at least 3 pages.
                let pool = self.rerank_pool.max(article_limit * 3);
                // Documents matched only by a multi-word synonym (no query term of their own).
                let extra = if parsed.synonym_phrases.is_empty() {
                    rank::Extra::Nothing
                } else if wanted == Wanted::Total {
                    // Counting visits every term match: the synonyms' other matches are known.
                    rank::Extra::Matches(
                        parsed
                            .synonym_phrases
                            .iter()
                            .flat_map(|(phrase, _)| {
                                parsed.any_field_parts(phrase, &article_phrase_fields)
                            })
                            .collect(),
                    )
                } else {
                    let synonyms: Box<dyn Query> = Box::new(BooleanQuery::new(
                        parsed
                            .synonym_phrases
                            .iter()
                            .map(|(phrase, _)| {
                                (
                                    Occur::Should,
                                    parsed.any_field(phrase, &article_phrase_fields),
                                )
                            })
                            .collect(),
                    ));
                    let required_too: Vec<Box<dyn Query>> = filters
                        .iter()
                        .chain(&required)
                        .map(|q| q.box_clone())
                        .collect();
                    let synonyms = filtered(
                        synonyms,
                        &required_too,
                        exclusions.iter().map(|q| q.box_clone()).collect(),
                    );
                    rank::Extra::Found(
                        searcher
                            .search(&synonyms, &TopDocs::with_limit(pool).order_by_score())?
                            .into_iter()
                            .map(|(_, addr)| addr)
                            .collect(),
                    )
                };
                let rank::TwoPhase {
                    top,
                    matched,
                    at_least,
                } = rank::two_phase_top(
                    searcher,
                    stats,
                    &split,
                    &filters,
                    &rank::Required {
                        queries: &required,
                        words: parsed.words_of_phrases(&article_fields).as_ref(),
                        most: self.most_matching(stats, &parsed.phrases, &article_fields)?,
                        driven_most: rank::DRIVEN_MOST,
                    },
                    &exclusions,
                    &extra,
                    article_limit,
                    pool,
                    wanted == Wanted::Total,
                )?;
                // Counting visits every match (checking quoted phrases at up to
                // `rank::EXACT_COUNT` of them): a proximity pair's words are terms of the query,
                // and the multi-word synonyms' own matches are added (`Extra::Matches`).
                let total = matched.unwrap_or(0);
                (top, total, at_least)
            }
            None => {
                let mut scored = parsed.build(&article_fields, &article_phrase_fields, p);
                if p.title_bonus > 0.0
                    && let Some(cover) = parsed.coverage(f.atitle, p.title_cover, p.title_bonus)
                {
                    scored = Box::new(BooleanQuery::new(vec![
                        (Occur::Should, scored),
                        (Occur::Should, cover),
                    ]));
                }
                let article_query = filtered(
                    scored,
                    &filters,
                    exclusions.iter().map(|q| q.box_clone()).collect(),
                );
                let top = TopDocs::with_limit(article_limit).order_by_score();
                // The query scores every match (its phrase clauses rule out tantivy's block-max
                // WAND), so counting rides along in the same pass.
                if wanted == Wanted::Total {
                    let (top, total) = searcher.search_with_statistics_provider(
                        &article_query,
                        &(top, Count),
                        stats,
                    )?;
                    (top, total, false)
                } else {
                    (
                        searcher.search_with_statistics_provider(&article_query, &top, stats)?,
                        0,
                        false,
                    )
                }
            }
        };
        candidates.reserve(article_top.len());
        for (score, addr) in article_top {
            candidates.add_article(addr, score)?;
        }
        if p.section > 0.0 {
            let excluded: HashSet<u64> = if exclusions.is_empty() {
                HashSet::new()
            } else {
                let any: Box<dyn Query> = Box::new(BooleanQuery::new(
                    exclusions
                        .iter()
                        .map(|q| (Occur::Should, q.box_clone()))
                        .collect(),
                ));
                let docs = searcher.search(&any, &DocSetCollector)?;
                docs.into_iter()
                    .map(|addr| candidates.key(addr))
                    .collect::<Result<_, _>>()?
            };
            let section_query = filtered(
                parsed.build(
                    &[(f.title, p.title), (f.heading, p.heading), (f.body, p.body)],
                    &[(f.body, p.body)],
                    p,
                ),
                &filters,
                Vec::new(),
            );
            let section_limit = p.candidates.max(needed * 3);
            let section_top = searcher.search_with_statistics_provider(
                &section_query,
                &TopDocs::with_limit(section_limit).order_by_score(),
                stats,
            )?;
            for (score, addr) in section_top {
                candidates.add_section(addr, score, &excluded)?;
            }
        }
        let mut ranked = candidates.ranked(p);
        if self.paraphrases {
            // Quoted phrases are required, which the character channel does not check.
            let channel = parsed.phrases.is_empty().then_some(paraphrase::Channel {
                field: f.chars,
                filters: &filters,
                exclusions: &exclusions,
                candidates: &mut candidates,
                params: p,
            });
            let ranked_before = ranked.len();
            paraphrase::rerank(&self.forms, searcher, f.short, text, channel, &mut ranked)?;
            // The character channel may add articles the term query did not count.
            if ranked.len() > ranked_before {
                total = total.max(ranked.len());
            }
        }
        let ids = if wanted == Wanted::Ids {
            let addrs: Vec<DocAddress> = ranked
                .iter()
                .take(needed)
                .map(|c| c.article.or(c.section).expect("a candidate has a document"))
                .collect();
            candidates.ids(&self.ids, &addrs)?
        } else {
            Vec::new()
        };
        Ok(Ranking {
            ranked,
            total,
            total_is_lower_bound,
            ids,
            relaxed: false,
        })
    }

    /// The most articles that may match all of `phrases` (the fewest holding one phrase's
    /// words in one of `fields`, summed over the fields), as `stats` count documents.
    fn most_matching(
        &self,
        stats: &rank::KindStatistics,
        phrases: &[query::Phrase],
        fields: &[(tantivy::schema::Field, f32)],
    ) -> Result<u64, SearchError> {
        use tantivy::query::Bm25StatisticsProvider;
        let mut most = u64::MAX;
        for phrase in phrases {
            let mut any_field = 0u64;
            for &(field, _) in fields {
                let mut fewest = u64::MAX;
                for (_, text) in &phrase.terms {
                    fewest = fewest.min(stats.doc_freq(&Term::from_field_text(field, text))?);
                }
                any_field = any_field.saturating_add(fewest);
            }
            most = most.min(any_field);
        }
        Ok(most)
    }

    /// Whether an article of the searcher is one short sentence (`Fields::short`, counting
    /// deleted ones): only then may `paraphrase::rerank` reorder a ranking.
    fn has_short_articles(&self, searcher: &Searcher) -> Result<bool, SearchError> {
        let name = searcher.schema().get_field_name(self.fields.short);
        for reader in searcher.segment_readers() {
            let has = self.shorts.get_or_load(searcher, reader, || {
                Ok(reader
                    .fast_fields()
                    .str(name)?
                    .is_some_and(|column| column.ords().values.num_vals() > 0))
            })?;
            if *has {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Ids and scores of the top `limit` articles, without building hits (evaluation).
    pub fn rank_ids(&self, query: &str, limit: usize) -> Result<Vec<(String, f32)>, SearchError> {
        let parsed = ParsedQuery::parse_with(query, &self.params);
        if parsed.is_empty() {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let stats = self.statistics(&searcher)?;
        let corrected = self.corrected(&searcher, &parsed)?;
        let parsed = corrected.as_ref().unwrap_or(&parsed);
        let Ranking { ranked, ids, .. } = self.rank_relaxing(
            &searcher,
            &stats,
            query,
            (parsed, &parsed.unquoted()),
            &Filters::default(),
            limit,
            Wanted::Ids,
        )?;
        Ok(ids
            .into_iter()
            .zip(ranked.iter().map(|c| c.score))
            .collect())
    }

    /// Gives each candidate found at the article level only its best section, with one query.
    fn find_best_sections(
        &self,
        searcher: &Searcher,
        stats: &rank::KindStatistics,
        parsed: &ParsedQuery,
        page: &mut [rank::Candidate],
    ) -> Result<(), SearchError> {
        let missing: Vec<u64> = page
            .iter()
            .filter(|c| c.section.is_none())
            .map(|c| c.key)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let f = &self.fields;
        let p = &self.params;
        let section_fields = [(f.title, p.title), (f.heading, p.heading), (f.body, p.body)];
        let body_fields = [(f.body, p.body)];
        // Quoted phrases are required clauses (`ParsedQuery::build`); the rest splits.
        let required: Vec<Box<dyn Query>> = parsed
            .phrases
            .iter()
            .map(|phrase| parsed.any_field(phrase, &section_fields))
            .collect();
        let optional = parsed.unquoted();
        let split = (self.probe_sections && required.len() <= rank::MAX_REQUIRED)
            .then(|| optional.build_split(&section_fields, &body_fields, p))
            .flatten();
        let best = match split {
            Some(split) => {
                rank::best_sections(searcher, stats, &split, &required, f.key, f.kind, &missing)?
            }
            _ => {
                let keys =
                    TermSetQuery::new(missing.iter().map(|&k| Term::from_field_u64(f.key, k)));
                let query = BooleanQuery::new(vec![
                    (Occur::Must, parsed.build(&section_fields, &body_fields, p)),
                    (
                        Occur::Must,
                        Box::new(ConstScoreQuery::new(Box::new(keys), 0.0)),
                    ),
                ]);
                let top = searcher.search_with_statistics_provider(
                    &query,
                    &TopDocs::with_limit(missing.len() * 40).order_by_score(),
                    stats,
                )?;
                let mut best: HashMap<u64, DocAddress> = HashMap::new();
                let mut candidates = Candidates::new(searcher, f.key);
                for (_, addr) in top {
                    best.entry(candidates.key(addr)?).or_insert(addr);
                }
                best
            }
        };
        for candidate in page.iter_mut() {
            if candidate.section.is_none() {
                candidate.section = best.get(&candidate.key).copied();
            }
        }
        Ok(())
    }

    /// BM25 statistics per kind of document (articles and sections each as their own corpus).
    fn statistics<'s>(
        &'s self,
        searcher: &'s Searcher,
    ) -> tantivy::Result<rank::KindStatistics<'s>> {
        let f = &self.fields;
        let p = &self.params;
        Ok(
            rank::KindStatistics::new(searcher, f.kind, [f.atitle, f.abody, f.stitle])?
                .with_length_scales(&[
                    (f.atitle, p.atitle_length),
                    (f.stitle, p.stitle_length),
                    (f.abody, p.abody_length),
                ])
                .with_term_cache(&self.terms),
        )
    }

    /// Builds the hit of one ranked article from its best section.
    fn hit(
        &self,
        searcher: &Searcher,
        parsed: &ParsedQuery,
        candidate: rank::Candidate,
        highlight: &rustc_hash::FxHashSet<String>,
        snippets: bool,
    ) -> Result<SearchHit, SearchError> {
        let f = &self.fields;
        let section = match candidate.section {
            Some(addr) => Some(addr),
            None => {
                // Found at the article level only: its best section for this query, else its first.
                let own = term_query(Term::from_field_u64(f.key, candidate.key));
                let sections = term_query(Term::from_field_text(f.kind, KIND_SECTION));
                let p = &self.params;
                let scored = parsed.build(
                    &[(f.title, p.title), (f.heading, p.heading), (f.body, p.body)],
                    &[(f.body, p.body)],
                    p,
                );
                let best = BooleanQuery::new(vec![
                    (Occur::Must, own.box_clone()),
                    (Occur::Must, sections.box_clone()),
                    (Occur::Should, scored),
                ]);
                searcher
                    .search(&best, &TopDocs::with_limit(1).order_by_score())?
                    .first()
                    .map(|(_, addr)| *addr)
            }
        };
        // An article's own document (a hit without sections) holds its whole JSON: not kept.
        let doc = match section {
            Some(addr) => self.hit_docs.get(searcher, addr)?,
            None => Arc::new(searcher.doc(candidate.article.unwrap_or(DocAddress::new(0, 0)))?),
        };
        // The body is only read in place, for the snippet.
        let body = snippets.then(|| doc.first_str(f.text)).flatten();
        let snippet = match body {
            Some(body) => match doc.first_str(f.marks) {
                Some(marks) => snippet::snippet_marked(
                    body,
                    marks.as_bytes(),
                    highlight,
                    snippet::SNIPPET_CHARS,
                ),
                None => snippet::snippet(body, highlight, snippet::SNIPPET_CHARS),
            },
            None => String::new(),
        };
        let text = |field| doc.first_str(field).map(str::to_string);
        Ok(SearchHit {
            id: text(f.id).unwrap_or_default(),
            title: text(f.title).unwrap_or_default(),
            lang: text(f.lang).unwrap_or_default(),
            product: text(f.product),
            category: text(f.category),
            url: text(f.url),
            anchor: text(f.anchor),
            section: text(f.heading),
            snippet,
            score: candidate.score,
        })
    }

    /// Article titles completing `prefix` (search-as-you-type).
    pub fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<Suggestion>, SearchError> {
        if prefix.chars().count() > MAX_QUERY_CHARS {
            return Err(SearchError::InvalidRequest(format!(
                "prefix longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let key = index::suggest_key(prefix);
        let limit = limit.clamp(1, MAX_LIMIT);
        if key.is_empty() {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let mut seen_ids = HashSet::new();
        let mut seen_titles = HashSet::new();
        let mut out = Vec::new();
        // Titles that start with the prefix first, then titles with a word starting with it.
        for field in [self.fields.suggest_full, self.fields.suggest_any] {
            let range = RangeQuery::new(
                std::ops::Bound::Included(Term::from_field_text(field, &key)),
                std::ops::Bound::Included(Term::from_field_text(
                    field,
                    &format!("{key}\u{10FFFF}"),
                )),
            );
            let mut found: Vec<(String, String)> = Vec::new();
            let top = searcher.search(&range, &TopDocs::with_limit(limit * 4).order_by_score())?;
            for (_, addr) in top {
                let doc: TantivyDocument = searcher.doc(addr)?;
                let get = |f| {
                    doc.get_first(f)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                let article: Option<Article> = serde_json::from_str(&get(self.fields.article)).ok();
                if let Some(article) = article {
                    found.push((article.title, get(self.fields.id)));
                }
            }
            // Shorter titles are the closer completions.
            found.sort_by(|a, b| a.0.chars().count().cmp(&b.0.chars().count()).then(a.cmp(b)));
            for (title, id) in found {
                if out.len() >= limit {
                    break;
                }
                if seen_ids.insert(id.clone()) && seen_titles.insert(title.clone()) {
                    out.push(Suggestion {
                        text: title,
                        kind: "title".into(),
                        id: Some(id),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Index size and last commit.
    pub fn stats(&self) -> IndexStats {
        let size_bytes = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let last_commit = self
            .index
            .load_metas()
            .ok()
            .and_then(|meta| meta.payload)
            .and_then(|payload| serde_json::from_str::<CommitPayload>(&payload).ok())
            .map(|p| p.committed_at);
        IndexStats {
            articles: self.num_articles(),
            sections: self.count_kind(KIND_SECTION),
            size_bytes,
            last_commit,
        }
    }
}

/// Recorded with every commit.
#[derive(Serialize, Deserialize)]
struct CommitPayload {
    committed_at: String,
    analyzer: String,
}

fn commit(writer: &mut IndexWriter<index::IndexDoc>) -> Result<(), SearchError> {
    let payload = CommitPayload {
        committed_at: rfc3339_now(),
        analyzer: index::fingerprint(),
    };
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&serde_json::to_string(&payload).expect("payload serializes"));
    prepared.commit()?;
    Ok(())
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// `query` restricted by `filters` (not scored) and without `exclusions`.
fn filtered(
    query: Box<dyn Query>,
    filters: &[Box<dyn Query>],
    exclusions: Vec<Box<dyn Query>>,
) -> Box<dyn Query> {
    if filters.is_empty() && exclusions.is_empty() {
        return query;
    }
    let mut clauses = vec![(Occur::Must, query)];
    for filter in filters {
        clauses.push((
            Occur::Must,
            Box::new(ConstScoreQuery::new(filter.box_clone(), 0.0)) as Box<dyn Query>,
        ));
    }
    for exclusion in exclusions {
        clauses.push((Occur::MustNot, exclusion));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// Current UTC time as RFC 3339 (seconds).
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine over the bundled sample KB (kept alive by the returned directory).
    fn kb_engine() -> (tempfile::TempDir, SearchEngine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let kb = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
        let ingested = crate::ingest::read_paths(&[kb]);
        engine.upsert(&ingested.articles).unwrap();
        (dir, engine)
    }

    /// An upsert batch stores its section documents before its article documents (so a hit's
    /// small doc-store block seldom holds an article's JSON), and every article still reads back.
    #[test]
    fn a_batch_stores_sections_before_articles() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SearchEngine::open_or_create(dir.path()).unwrap();
        assert_eq!(
            engine.index.settings().docstore_blocksize,
            DOCSTORE_BLOCK_SIZE
        );
        let articles: Vec<Article> = (0..5)
            .map(|i| {
                Article::new(
                    format!("a{i}.md"),
                    format!("Title {i}"),
                    format!("intro {i}\n\n## One\nfirst {i}\n\n## Two\nsecond {i}\n"),
                )
            })
            .collect();
        engine.upsert(&articles).unwrap();
        let searcher = engine.reader.searcher();
        let docs_of = |kind: &str| {
            searcher
                .search(
                    &term_query(Term::from_field_text(engine.fields.kind, kind)),
                    &DocSetCollector,
                )
                .unwrap()
        };
        let (sections, article_docs) = (docs_of(KIND_SECTION), docs_of(KIND_ARTICLE));
        assert_eq!((sections.len(), article_docs.len()), (15, 5));
        let last_section = sections.iter().max().unwrap();
        let first_article = article_docs.iter().min().unwrap();
        assert!(
            last_section < first_article,
            "{last_section:?} {first_article:?}"
        );
        for article in &articles {
            let stored = engine.get(&article.id).unwrap().expect("stored");
            assert_eq!(
                (stored.title, stored.body),
                (article.title.clone(), article.body.clone())
            );
        }
    }

    /// A top-10 request for each query: unfiltered, then for each language.
    fn requests_in_each_language(queries: &[&str]) -> Vec<SearchRequest> {
        let mut requests = Vec::new();
        for query in queries {
            for lang in [None, Some("zh"), Some("en")] {
                requests.push(SearchRequest {
                    query: (*query).into(),
                    lang: lang.map(Into::into),
                    limit: 10,
                    ..Default::default()
                });
            }
        }
        requests
    }

    /// What a page shows of its hits: article, section anchor and snippet.
    fn hit_view(response: &SearchResponse) -> Vec<(String, Option<String>, String)> {
        response
            .hits
            .iter()
            .map(|h| (h.id.clone(), h.anchor.clone(), h.snippet.clone()))
            .collect()
    }

    /// A misspelled word that no article holds finds what the word finds (typo tolerance), and
    /// nothing when corrections are off.
    #[test]
    fn misspelled_words_are_corrected() {
        let (_dir, mut engine) = kb_engine();
        let ids = |ranked: Vec<(String, f32)>| -> Vec<String> {
            ranked.into_iter().map(|(id, _)| id).collect()
        };
        let right = ids(engine.rank_ids("reset password", 3).unwrap());
        let typo = ids(engine.rank_ids("resett pasword", 3).unwrap());
        assert!(
            !typo.is_empty() && right.contains(&typo[0]),
            "{right:?} {typo:?}"
        );
        // The page of hits highlights the word the typo stood for.
        let page = engine
            .search(&SearchRequest {
                query: "resett pasword".into(),
                limit: 3,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.hits[0].id, typo[0]);
        assert!(
            page.hits[0]
                .snippet
                .to_lowercase()
                .contains("<em>password</em>"),
            "{:?}",
            page.hits[0].snippet
        );
        engine.set_rank_params(RankParams {
            spelling: 0.0,
            ..RankParams::default()
        });
        assert!(engine.rank_ids("resett pasword", 3).unwrap().is_empty());
    }

    /// Scoring only the page's sections, clause by clause, picks the same best sections as
    /// tantivy queries over all sections (`build` and `build_split` agree).
    #[test]
    fn probed_best_sections_equal_the_reference() {
        let (_dir, mut engine) = kb_engine();
        let queries = [
            "如何申请退款",
            "ECS实例无法启动",
            "ssh 连接失败 connection refused",
            "帳單查詢",
            "安全组规则怎么配置",
            "SSL证书 部署 nginx",
            "how to reset the instance password",
            "high network latency between regions",
            "DDoS blackhole -退款",
            "发票 开具 多久",
            "实名认证 失败",
            "P0 工单 响应时间",
            // Quoted phrases: required clauses, in one or two phrases (or more: the reference).
            "\"无法启动\" 实例",
            "\"security group\" inbound rules",
            "\"security group\" \"port\" ssh",
            "\"ssh\" \"port\" \"key\" connection",
        ];
        let mut compared = 0;
        for request in requests_in_each_language(&queries) {
            let query = &request.query;
            engine.set_probe_sections(true);
            let probed = engine.search(&request).unwrap();
            engine.set_probe_sections(false);
            let reference = engine.search(&request).unwrap();
            assert_eq!(probed.total, reference.total, "{query}");
            assert_eq!(hit_view(&probed), hit_view(&reference), "{request:?}");
            compared += probed.hits.len();
        }
        assert!(compared > 100, "only {compared} hits compared");
    }

    /// Ranking in two phases (term scores first, bonuses for the pool) finds the articles, order,
    /// scores and totals of scoring every match with the whole query when the pool holds every
    /// match (the bundled KB is small), with filters, exclusions, synonyms, and short (block-max
    /// WAND) and long (every match scored) queries.
    #[test]
    fn one_sentence_questions_are_reordered_by_wording_and_pages_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let questions = [
            "借呗什么时候到账",
            "借呗额度多久能恢复",
            "借呗多久到账呢",
            "花呗多久出账单",
            "借呗借款多久审核",
            "蚂蚁借呗的钱多久到",
        ];
        let articles: Vec<Article> = questions
            .iter()
            .enumerate()
            .map(|(i, q)| Article::new(format!("q{i}"), *q, ""))
            .collect();
        engine.upsert(&articles).unwrap();
        let query = "借呗多久到账";
        engine.set_paraphrases(false);
        let plain = engine.rank_ids(query, 10).unwrap();
        engine.set_paraphrases(true);
        let reranked = engine.rank_ids(query, 10).unwrap();
        assert_eq!(plain.len(), reranked.len());
        // Every score rises by the pool's best score times how alike the wording is, and more
        // for the articles the character channel finds too.
        let best = plain[0].1;
        for (id, score) in &reranked {
            let (_, before) = plain.iter().find(|(p, _)| p == id).unwrap();
            let i: usize = id[1..].parse().unwrap();
            let alike = paraphrase::rescore(
                query,
                &[*before, best],
                &[0.0, 0.0],
                &[Some(paraphrase::form(questions[i])), Some(String::new())],
            )
            .unwrap()[0]
                - before;
            let most = alike + paraphrase::CHANNEL_WEIGHT * best;
            let rise = score - before;
            assert!(
                alike > 0.0 && rise > alike - 1e-3 * best && rise < most + 1e-3 * best,
                "{id}"
            );
        }
        assert!(
            reranked.windows(2).all(|w| w[0].1 >= w[1].1),
            "{reranked:?}"
        );
        assert_eq!(reranked[0].0, "q2", "{reranked:?}");
        // An article with a body is a page, not a question: the ranking stays as scored.
        engine
            .upsert(&[Article::new(
                "page",
                "借呗到账说明",
                "借呗放款后多久到账，请查看说明。",
            )])
            .unwrap();
        engine.set_paraphrases(false);
        let plain = engine.rank_ids(query, 10).unwrap();
        engine.set_paraphrases(true);
        assert_eq!(engine.rank_ids(query, 10).unwrap(), plain);
    }

    #[test]
    fn two_phases_rank_like_the_whole_query() {
        let (_dir, mut engine) = kb_engine();
        let queries = [
            "如何申请退款",
            "ECS实例无法启动",
            "ssh 连接失败 connection refused",
            "帳單查詢",
            "DDoS blackhole -退款",
            "money back",
            "\"安全组\" 规则 配置",
            "\"reset\" the \"instance password\" now",
            // Required phrases and a multi-word synonym (`money back`).
            "\"refund\" money back",
            "how to reset the instance password",
            "我的云服务器实例昨天晚上突然无法通过SSH远程连接了，提示连接超时，安全组规则也检查过了，请问应该如何排查网络和防火墙的问题",
            "My instance cannot be reached over SSH since yesterday and the security group rules look fine, how do I check the firewall, the network ACL and the route table",
        ];
        let mut compared = 0;
        for request in requests_in_each_language(&queries) {
            let query = &request.query;
            engine.set_two_phase(true);
            let two = engine.search(&request).unwrap();
            let two_ids = engine.rank_ids(query, 50).unwrap();
            engine.set_two_phase(false);
            let one = engine.search(&request).unwrap();
            let one_ids = engine.rank_ids(query, 50).unwrap();
            assert_eq!(two.total, one.total, "{request:?}");
            assert_eq!(hit_view(&two), hit_view(&one), "{request:?}");
            assert_eq!(two_ids.len(), one_ids.len(), "{query}");
            for ((a, x), (b, y)) in two_ids.iter().zip(&one_ids) {
                assert_eq!(a, b, "{query}");
                assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{query}: {x} {y}");
            }
            compared += two.hits.len();
        }
        assert!(compared > 100, "only {compared} hits compared");
    }

    /// Term-at-a-time scores (`taat`) are those of tantivy's queries of the same clauses, bit
    /// for bit: the union of the boosted term clauses for every document it matches, and each
    /// proximity or synonym bonus (a boosted phrase or term query) alone.
    #[test]
    fn term_at_a_time_scores_are_tantivys() {
        let (_dir, engine) = kb_engine();
        let (f, p) = (&engine.fields, &engine.params);
        let searcher = engine.reader.searcher();
        let stats = engine.statistics(&searcher).unwrap();
        let article_fields = [
            (f.atitle, p.atitle),
            (f.stitle, p.stitle),
            (f.abody, p.abody),
        ];
        let section_fields = [(f.title, p.title), (f.heading, p.heading), (f.body, p.body)];
        let everything = TopDocs::with_limit(1_000_000).order_by_score();
        let (mut terms_compared, mut phrases_compared) = (0, 0);
        for query in [
            "如何申请退款",
            "ECS实例无法启动 安全组",
            "how to reset the instance password",
            "money back refund",
            "My instance cannot be reached over SSH since yesterday and the security group rules look fine",
        ] {
            let parsed = ParsedQuery::parse_with(query, p);
            for (fields, phrase_fields) in [
                (
                    &article_fields[..],
                    [(f.atitle, p.atitle), (f.abody, p.abody)],
                ),
                (&section_fields[..], [(f.body, p.body), (f.title, p.title)]),
            ] {
                let split = parsed.build_split(fields, &phrase_fields, p).unwrap();
                let union = BooleanQuery::new(
                    split
                        .terms
                        .iter()
                        .map(|(t, b)| (Occur::Should, query::boosted_term(t.clone(), *b)))
                        .collect(),
                );
                // Every match scored by the union (a top-k collector would prune with block-max
                // WAND, which sums in another order).
                let weight = union
                    .weight(
                        tantivy::query::EnableScoring::enabled_from_statistics_provider(
                            &stats, &searcher,
                        ),
                    )
                    .unwrap();
                let mut expected: Vec<(f32, DocAddress)> = Vec::new();
                for (ord, reader) in searcher.segment_readers().iter().enumerate() {
                    weight
                        .for_each(reader, &mut |doc, score| {
                            expected.push((score, DocAddress::new(ord as u32, doc)));
                        })
                        .unwrap();
                }
                // Postings read from the index, and decoded ahead (every term's, twice: the
                // second time from the cache).
                let decoding = taat::TermInfoCache::decoding_from(1);
                let decoding_stats = engine
                    .statistics(&searcher)
                    .unwrap()
                    .with_term_cache(&decoding);
                let plain = taat::TermClauses::new(&searcher, &stats, &split.terms).unwrap();
                let mut each = vec![plain];
                for _ in 0..2 {
                    each.push(
                        taat::TermClauses::decoded(&searcher, &decoding_stats, &split.terms)
                            .unwrap(),
                    );
                }
                for clauses in &each {
                    let mut found: HashMap<DocAddress, f32> = HashMap::new();
                    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
                        clauses
                            .for_each(ord, reader, &mut |doc, score| {
                                found.insert(DocAddress::new(ord as u32, doc), score);
                            })
                            .unwrap();
                    }
                    assert_eq!(found.len(), expected.len(), "{query}");
                    for (score, addr) in &expected {
                        assert_eq!(found[addr].to_bits(), score.to_bits(), "{query}");
                    }
                }
                terms_compared += expected.len();
                for bonus in &split.bonuses {
                    let boosted = tantivy::query::BoostQuery::new(bonus.query(), bonus.boost);
                    let expected = searcher
                        .search_with_statistics_provider(&boosted, &everything, &stats)
                        .unwrap();
                    let phrases =
                        taat::PhraseClauses::new(&searcher, &stats, std::slice::from_ref(bonus))
                            .unwrap()
                            .expect("no slop");
                    let mut found: HashMap<DocAddress, f32> = HashMap::new();
                    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
                        let docs: Vec<u32> = (0..reader.max_doc()).collect();
                        phrases
                            .scores_at(ord, reader, &docs, &mut |i, score| {
                                found.insert(DocAddress::new(ord as u32, docs[i]), score);
                            })
                            .unwrap();
                    }
                    assert_eq!(found.len(), expected.len(), "{query}");
                    for (score, addr) in &expected {
                        assert_eq!(found[addr].to_bits(), score.to_bits(), "{query}");
                    }
                    phrases_compared += expected.len();
                }
            }
        }
        assert!(
            terms_compared > 200,
            "only {terms_compared} term scores compared"
        );
        assert!(
            phrases_compared > 10,
            "only {phrases_compared} phrase scores compared"
        );
    }

    /// Counting: an article only a multi-word synonym matches (`退款` → `money back`) counts
    /// once, one holding the synonym's words apart does not, and a replaced version not at all,
    /// in two phases (the phrase checked only where no term matched) as in one.
    #[test]
    fn articles_only_a_synonym_phrase_matches_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let articles = [
            Article::new("refund", "退款说明", "退款将在三个工作日内到账。"),
            Article::new(
                "phrase",
                "Getting your money back",
                "Ask for your money back within seven days.",
            ),
            Article::new(
                "apart",
                "Money matters",
                "Keep the money and come back later.",
            ),
        ];
        engine.upsert(&articles).unwrap();
        engine.upsert(&articles[1..2]).unwrap();
        for two_phase in [true, false] {
            engine.set_two_phase(two_phase);
            for lang in [None, Some("en")] {
                let found = engine
                    .search(&SearchRequest {
                        query: "退款".into(),
                        lang: lang.map(Into::into),
                        limit: 10,
                        ..Default::default()
                    })
                    .unwrap();
                let ids: Vec<&str> = found.hits.iter().map(|h| h.id.as_str()).collect();
                let expected = if lang.is_some() { 1 } else { 2 };
                assert_eq!(found.total, expected, "{two_phase} {lang:?} {ids:?}");
                assert!(ids.contains(&"phrase"), "{two_phase} {lang:?} {ids:?}");
                assert!(!ids.contains(&"apart"), "{two_phase} {lang:?} {ids:?}");
            }
        }
    }

    /// Tantivy's scoring loops (used by the two phases) do not skip deleted documents: a
    /// replaced article's old version is neither ranked nor counted, on either path.
    /// Decoded postings are kept for the segments searched, and leave with a segment that
    /// re-indexing replaced.
    #[test]
    fn decoded_postings_follow_the_searched_segments() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let cache = taat::TermInfoCache::decoding_from(1);
        let decode = || {
            let searcher = engine.reader.searcher();
            let stats = engine
                .statistics(&searcher)
                .unwrap()
                .with_term_cache(&cache);
            let f = &engine.fields;
            let split = ParsedQuery::parse_with("zebra gateway", &engine.params)
                .build_split(&[(f.abody, 1.0)], &[(f.abody, 1.0)], &engine.params)
                .unwrap();
            taat::TermClauses::decoded(&searcher, &stats, &split.terms).unwrap();
            let mut segments: Vec<_> = searcher
                .segment_readers()
                .iter()
                .map(|r| r.segment_id())
                .collect();
            segments.sort();
            segments
        };
        engine
            .upsert(&[Article::new(
                "a.md",
                "Gateway",
                "configure the zebra gateway",
            )])
            .unwrap();
        let first = decode();
        assert_eq!(cache.decoded_segments(), first);
        engine
            .upsert(&[Article::new("a.md", "Gateway", "the zebra gateway, again")])
            .unwrap();
        engine.wait_merges().unwrap();
        let second = decode();
        assert!(first.iter().all(|s| !second.contains(s)), "replaced");
        assert_eq!(cache.decoded_segments(), second);
    }

    #[test]
    fn replaced_versions_are_neither_ranked_nor_counted() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let old = Article::new("a.md", "Gateway", "configure the zebra gateway");
        let other = Article::new("b.md", "Other", "zebra crossing rules");
        engine.upsert(&[old, other]).unwrap();
        engine
            .upsert(&[Article::new("a.md", "Giraffes", "now about giraffes")])
            .unwrap();
        let ids = |q: &str| -> Vec<String> {
            engine
                .rank_ids(q, 10)
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        // Short queries prune (block-max WAND), long ones score every match.
        let long = "zebra gateway configure rules crossing zebra gateway configure rules crossing";
        for query in ["zebra gateway", long] {
            assert_eq!(ids(query), vec!["b.md".to_string()], "{query}");
            let request = SearchRequest {
                query: query.into(),
                limit: 10,
                ..Default::default()
            };
            let found = engine.search(&request).unwrap();
            assert_eq!(found.total, 1, "{query}");
            assert_eq!(found.hits.len(), 1, "{query}");
        }
    }

    /// Hits keep recent stored sections across queries (`HitDocs`), by segment: a replaced
    /// article's hit shows its new text, also when its new document has the old one's address
    /// (the old segment, all deleted, is gone).
    #[test]
    fn kept_hit_documents_follow_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let snippets = || -> Vec<String> {
            let request = SearchRequest {
                query: "zebra".into(),
                limit: 10,
                ..Default::default()
            };
            let found = engine.search(&request).unwrap();
            found.hits.into_iter().map(|h| h.snippet).collect()
        };
        engine
            .upsert(&[Article::new("a.md", "Zebra", "the zebra gateway")])
            .unwrap();
        let first = snippets();
        assert_eq!(first.len(), 1);
        assert!(first[0].contains("gateway"), "{first:?}");
        assert_eq!(snippets(), first);
        engine
            .upsert(&[Article::new("a.md", "Zebra", "a zebra crossing")])
            .unwrap();
        let replaced = snippets();
        assert_eq!(replaced.len(), 1);
        assert!(
            replaced[0].contains("crossing") && !replaced[0].contains("gateway"),
            "{replaced:?}"
        );
    }

    /// `rank_ids` (ids from the per-segment id tables) names the articles `search` returns, also
    /// after a commit adds a segment.
    #[test]
    fn ranked_ids_match_the_hits() {
        let (_dir, engine) = kb_engine();
        let check = |query: &str| {
            let ids: Vec<String> = engine
                .rank_ids(query, 10)
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let request = SearchRequest {
                query: query.into(),
                limit: 10,
                ..Default::default()
            };
            let hits: Vec<String> = engine
                .search(&request)
                .unwrap()
                .hits
                .into_iter()
                .map(|h| h.id)
                .collect();
            assert!(!ids.is_empty(), "{query}");
            assert_eq!(ids, hits, "{query}");
        };
        check("如何申请退款");
        check("reset password");
        engine
            .upsert(&[Article::new(
                "extra/refund-fast.md",
                "退款加急",
                "如何申请退款加急处理，reset password 也可以",
            )])
            .unwrap();
        check("如何申请退款");
        check("reset password");
    }

    /// A page is the head of a longer page, whether its articles get their bonuses as the
    /// page's k best (no article of the index is one short sentence) or as paraphrase's pool
    /// (once one is).
    #[test]
    fn a_page_is_the_head_of_a_longer_page() {
        let (_dir, engine) = kb_engine();
        let view = |query: &str, limit: usize| {
            let request = SearchRequest {
                query: query.into(),
                limit,
                ..Default::default()
            };
            hit_view(&engine.search(&request).unwrap())
        };
        let check = || {
            for query in [
                "如何申请退款",
                "reset password",
                "instance fails to start after ssh login",
                "发票 开具 增值税 专用发票",
            ] {
                let page = view(query, 3);
                let longer = view(query, 30);
                assert!(!page.is_empty() && longer.len() >= page.len(), "{query}");
                assert_eq!(page[..], longer[..page.len()], "{query}");
            }
        };
        let has_short = || {
            engine
                .has_short_articles(&engine.reader.searcher())
                .unwrap()
        };
        assert!(!has_short());
        check();
        engine
            .upsert(&[Article::new("faq/refund-time.md", "退款多久到账", "")])
            .unwrap();
        assert!(has_short());
        check();
    }
}
