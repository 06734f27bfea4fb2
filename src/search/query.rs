//! From the user's query string to tantivy queries, built from the analyzer's tokens (never
//! through tantivy's `QueryParser`, which turns unspaced Chinese into one phrase).
//!
//! Owns: the query syntax (`"quoted phrases"` must match, `-word` / `-"a phrase"` exclude),
//! sub-words as weaker alternatives, query-time synonyms (`models/synonyms.txt`), proximity
//! bonuses between neighbouring words, and the boosts of each field ([`RankParams`]).
//! Must never: panic on any input, or let an exclusion add results.
//!
//! ```
//! let q = kefu::search::query::ParsedQuery::parse("ECS 无法\"远程连接\" -windows");
//! assert!(q.terms.iter().any(|t| t.text == "ecs"));
//! assert_eq!(q.phrases.len(), 1);
//! assert_eq!(q.exclusions[0].terms[0].1, "window");
//! ```

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{LazyLock, OnceLock};

use tantivy::query::{BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Searcher, Term};

use crate::analyzer::analyzer;

/// Query-time synonym groups, one group per line, members separated by commas.
pub const SYNONYMS: &str = include_str!("../../models/synonyms.txt");

/// Weights of the ranking function; tuned on the dev sets (see `kefu eval search --params`).
#[derive(Debug, Clone)]
pub struct RankParams {
    /// Section-level field boosts.
    pub title: f32,
    pub heading: f32,
    pub body: f32,
    /// Article-level field boosts.
    pub atitle: f32,
    pub abody: f32,
    /// Weight of a jieba sub-word relative to the word it is part of.
    pub subword: f32,
    /// Weight of a synonym relative to the word it replaces.
    pub synonym: f32,
    /// Weight of the proximity bonus of two neighbouring query words, and its slop.
    pub proximity: f32,
    pub slop: u32,
    /// Final score = section × best section score + article × article score.
    pub section: f32,
    pub article: f32,
    /// Sections fetched before grouping per article (at least).
    pub candidates: usize,
    /// Bonus when the title holds at least `title_cover` of the query's words (a title that
    /// paraphrases the question), times the BM25 of those title words.
    pub title_bonus: f32,
    pub title_cover: f32,
    /// Extra boost of the title of a single-topic article (no headings; see `Fields::stitle`).
    pub stitle: f32,
    /// Weight of a question word (`how`, `what`, `如何`, `怎么`...; see [`QUESTION_WORDS`]) outside
    /// titles: the template of a question, not its topic. 0 matches them in titles only.
    pub question: f32,
    /// Weight of a dictionary term joining a Latin word and the Han word after it (`ssl证书` of
    /// `SSL证书`), whose parts are words of the query already.
    pub compound: f32,
    /// Factors on the average length BM25 assumes for the article-level fields (1 = their real
    /// average; see `rank::KindStatistics::with_length_scales`): above 1 softens length
    /// normalization and term-frequency saturation of that field.
    pub atitle_length: f32,
    pub stitle_length: f32,
    pub abody_length: f32,
    /// Weight of the correction of a misspelled word (one that no article holds) relative to
    /// the word (1: the correction stands in for it, as the word itself matches nothing); 0 turns
    /// typo tolerance off (see [`ParsedQuery::with_corrections`]). Also the weight of two
    /// neighbouring words written as one (`git hub` → `github`).
    pub spelling: f32,
}

impl Default for RankParams {
    /// Tuned on the dev sets (issue 2). Article-level BM25 (statistics per kind of document, see
    /// `rank::KindStatistics`) with a bigram proximity bonus ranks best; section scores only pick
    /// the snippet and anchor (adding them lowered aliyun-faq MRR@10 by 0.03–0.1). Titles: the
    /// title of a single-topic article (no headings, `stitle`) describes all of it (an FAQ
    /// entry's title IS its question), a long page's title only its broad subject, and on
    /// aliyun-faq (question headings removed) the titles of OTHER pages mislead; so the weight
    /// sits on `stitle` (1.3) and little on every title (`atitle` 0.1; at 0.5/0.7 as before:
    /// aliyun-faq lower by 0.04–0.07, stackfaq equal). Question words count fully in titles only
    /// (`question` 0.3 elsewhere; 0 everywhere lowered atec-faq 0.062 → 0.059), and a joined
    /// mixed term (`ssl证书`) is a weak extra next to its parts (`compound` 0.3; out of the
    /// proximity pairs). Measured with `kefu eval search` (MRR@10, dev):
    ///
    /// | setting | aliyun-faq zh | aliyun-faq en | stackfaq | atec-faq |
    /// |---|---|---|---|---|
    /// | before (atitle 0.5, stitle 0.7, proximity 0.5) | 0.446 | 0.410 | 0.868 | 0.062 |
    /// | session 2 defaults | 0.486 | 0.482 | 0.874 | 0.062 |
    /// | + everyday synonyms (`models/synonyms.txt`), `abody_length` 1.25 | 0.502 | 0.502 | 0.874 | 0.064 |
    /// | + typo tolerance (`spelling` 1; 0.5: stackfaq 0.877, 0.7: 0.878) | 0.502 | 0.502 | 0.879 | 0.064 |
    /// | + 15 everyday English and 4 colloquial Chinese synonym groups (session 4) | 0.502 | 0.502 | 0.895 | 0.064 |
    /// | + neighbouring words joined where the index spells them as one (`git hub`) | 0.502 | 0.502 | 0.897 | 0.064 |
    /// | session 14 (later changes in between): contraction pieces (`don`+`t`, `user`+`s`) as stop words, `专票`/`普票` | 0.5020 → 0.5020 | 0.5022 → 0.5023 | 0.8954 → 0.8987 | 0.0812 → 0.0812 |
    ///
    /// `abody_length` (session 3): articles' bodies scored as if 1.25× longer on average, so a
    /// long page that answers many questions is penalized less for its length (aliyun-faq
    /// rises steadily up to 3×: 0.486 → 0.550, but stackfaq falls: 0.875 → 0.857; 1.25 keeps
    /// stackfaq).
    fn default() -> RankParams {
        RankParams {
            title: 1.0,
            heading: 1.0,
            body: 1.0,
            atitle: 0.1,
            abody: 1.0,
            subword: 0.3,
            synonym: 0.5,
            proximity: 0.6,
            slop: 0,
            section: 0.0,
            article: 1.0,
            candidates: 300,
            title_bonus: 0.0,
            title_cover: 0.6,
            stitle: 1.3,
            question: 0.3,
            compound: 0.3,
            atitle_length: 1.0,
            stitle_length: 1.0,
            abody_length: 1.25,
            spelling: 1.0,
        }
    }
}

impl RankParams {
    /// Overrides from `key=value,key=value` (tuning runs).
    pub fn with_overrides(mut self, spec: &str) -> Result<RankParams, String> {
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {pair:?}"))?;
            let number: f32 = value
                .trim()
                .parse()
                .map_err(|_| format!("not a number: {value:?}"))?;
            match key.trim() {
                "title" => self.title = number,
                "heading" => self.heading = number,
                "body" => self.body = number,
                "atitle" => self.atitle = number,
                "abody" => self.abody = number,
                "subword" => self.subword = number,
                "synonym" => self.synonym = number,
                "proximity" => self.proximity = number,
                "slop" => self.slop = number as u32,
                "section" => self.section = number,
                "article" => self.article = number,
                "candidates" => self.candidates = number as usize,
                "title_bonus" => self.title_bonus = number,
                "title_cover" => self.title_cover = number,
                "stitle" => self.stitle = number,
                "question" => self.question = number,
                "compound" => self.compound = number,
                "atitle_length" => self.atitle_length = number,
                "stitle_length" => self.stitle_length = number,
                "abody_length" => self.abody_length = number,
                "spelling" => self.spelling = number,
                other => return Err(format!("unknown ranking parameter {other:?}")),
            }
        }
        Ok(self)
    }
}

/// One weighted query term (normalized, as in the index).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryTerm {
    pub text: String,
    pub weight: f32,
    /// A question word ([`QUESTION_WORDS`]): full weight in titles (a title phrased as a
    /// question), [`RankParams::question`] elsewhere (answers do not repeat the question).
    pub question: bool,
}

/// A sequence of terms with their relative positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub terms: Vec<(usize, String)>,
}

/// A parsed query: what to score, what must match, what must not.
#[derive(Debug, Clone, Default)]
pub struct ParsedQuery {
    /// Scored terms (words, sub-words, single-word synonyms), deduplicated.
    pub terms: Vec<QueryTerm>,
    /// Neighbouring words for the proximity bonus.
    pub pairs: Vec<Phrase>,
    /// Quoted phrases: every result matches each of them.
    pub phrases: Vec<Phrase>,
    /// Excluded words or phrases: no result contains any.
    pub exclusions: Vec<Phrase>,
    /// Multi-word synonyms of the query's words, scored as optional phrases.
    pub synonym_phrases: Vec<(Phrase, f32)>,
}

struct Synonyms {
    /// Groups of members, each member the sequence of its index terms.
    groups: Vec<Vec<Vec<String>>>,
}

/// The synonym groups in use: [`SYNONYMS`], unless [`use_synonyms`] replaced them first.
static SYNONYM_GROUPS: OnceLock<Synonyms> = OnceLock::new();

fn synonym_groups() -> &'static Synonyms {
    SYNONYM_GROUPS.get_or_init(|| Synonyms::parse(SYNONYMS))
}

/// Replaces the compiled-in synonyms by `text` (same format as `models/synonyms.txt`) for the
/// rest of the process, e.g. to measure an edited file with `kefu eval search --synonyms FILE`
/// without rebuilding. Only possible before the first query was parsed; returns whether it was.
pub fn use_synonyms(text: &str) -> bool {
    SYNONYM_GROUPS.set(Synonyms::parse(text)).is_ok()
}

/// Words that make a sentence a question (`how`, `what`, `如何`, `怎么`...) but say nothing of
/// its topic. The index keeps them (they are not stop words: titles phrased as questions hold
/// them); a query weighs them by [`RankParams::question`]. Contraction remnants (`don't` gives
/// `don` and `t`) belong here too.
pub const QUESTION_WORDS: &[&str] = &[
    "how",
    "what",
    "why",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "whether",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "s",
    "t",
    "d",
    "m",
    "ll",
    "ve",
    "re",
    "don",
    "doesn",
    "didn",
    "isn",
    "aren",
    "won",
    "如何",
    "怎么",
    "怎样",
    "怎么办",
    "怎么样",
    "什么",
    "为什么",
    "为何",
    "哪些",
    "哪个",
    "哪里",
    "是否",
    "能否",
    "可否",
    "可以",
    "有没有",
    "有何",
];

/// The title fields of the schema (see [`super::index::build_schema`]; an index of another
/// schema is refused when opened, so the field ids agree).
static TITLE_FIELDS: LazyLock<[Field; 3]> = LazyLock::new(|| {
    let (_, fields) = super::index::build_schema();
    [fields.title, fields.atitle, fields.stitle]
});

/// [`QUESTION_WORDS`] as index terms, unless [`use_question_words`] replaced them first.
static QUESTION_TERMS: OnceLock<HashSet<String>> = OnceLock::new();

fn question_terms() -> &'static HashSet<String> {
    QUESTION_TERMS.get_or_init(|| question_terms_of(QUESTION_WORDS.iter().copied()))
}

fn question_terms_of<'a>(words: impl Iterator<Item = &'a str>) -> HashSet<String> {
    words
        .flat_map(|w| analyzer().analyze(w))
        .filter(|t| !t.subword)
        .map(|t| t.text)
        .collect()
}

/// Replaces [`QUESTION_WORDS`] by the words of `text` (whitespace or commas between them) for
/// the rest of the process, e.g. to measure another list with `kefu eval search
/// --question-words FILE`. Only possible before the first query was parsed; returns whether it
/// was.
pub fn use_question_words(text: &str) -> bool {
    let words = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty());
    QUESTION_TERMS.set(question_terms_of(words)).is_ok()
}

impl Synonyms {
    fn parse(text: &str) -> Synonyms {
        let mut groups = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let members: Vec<Vec<String>> = line
                .split([',', '，'])
                .map(|m| {
                    main_terms(m)
                        .into_iter()
                        .map(|(_, t)| t)
                        .collect::<Vec<_>>()
                })
                .filter(|m| !m.is_empty())
                .collect();
            if members.len() > 1 {
                groups.push(members);
            }
        }
        Synonyms { groups }
    }
}

/// Words (not sub-words, not stop words) of `text` with their positions.
fn main_terms(text: &str) -> Vec<(usize, String)> {
    analyzer()
        .analyze(text)
        .into_iter()
        .filter(|t| !t.stop && !t.subword)
        .map(|t| (t.position, t.text))
        .collect()
}

fn phrase_of(text: &str) -> Option<Phrase> {
    let terms = main_terms(text);
    let first = terms.first()?.0;
    Some(Phrase {
        terms: terms.into_iter().map(|(p, t)| (p - first, t)).collect(),
    })
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '“' | '”' | '「' | '」' | '＂')
}

impl ParsedQuery {
    /// The query without its quoted phrases (borrowed when it has none): what the term clauses
    /// score when the phrases are required clauses of their own.
    pub fn unquoted(&self) -> Cow<'_, ParsedQuery> {
        if self.phrases.is_empty() {
            Cow::Borrowed(self)
        } else {
            Cow::Owned(ParsedQuery {
                phrases: Vec::new(),
                ..self.clone()
            })
        }
    }

    /// Parses the query syntax and analyzes each part.
    pub fn parse(query: &str) -> ParsedQuery {
        ParsedQuery::parse_with(query, &RankParams::default())
    }

    /// [`ParsedQuery::parse`] with the sub-word and synonym weights of `params`.
    pub fn parse_with(query: &str, params: &RankParams) -> ParsedQuery {
        let mut free = String::new();
        let mut parsed = ParsedQuery::default();
        let chars: Vec<char> = query.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let at_word_start = i == 0 || chars[i - 1].is_whitespace();
            let exclude = (c == '-' || c == '－')
                && at_word_start
                && chars.get(i + 1).is_some_and(|n| !n.is_whitespace());
            let start = if exclude { i + 1 } else { i };
            if chars.get(start).copied().is_some_and(is_quote) {
                let end = (start + 1..chars.len())
                    .find(|&j| is_quote(chars[j]))
                    .unwrap_or(chars.len());
                let inner: String = chars[start + 1..end].iter().collect();
                if let Some(phrase) = phrase_of(&inner) {
                    if exclude {
                        parsed.exclusions.push(phrase);
                    } else {
                        parsed.phrases.push(phrase);
                        free.push(' ');
                        free.push_str(&inner);
                        free.push(' ');
                    }
                }
                i = end + 1;
            } else if exclude {
                let end = (start..chars.len())
                    .find(|&j| chars[j].is_whitespace())
                    .unwrap_or(chars.len());
                let word: String = chars[start..end].iter().collect();
                if let Some(phrase) = phrase_of(&word) {
                    parsed.exclusions.push(phrase);
                }
                i = end;
            } else {
                free.push(c);
                i += 1;
            }
        }
        parsed.add_free_text(&free, params);
        parsed
    }

    fn add_term(&mut self, text: &str, weight: f32) {
        match self.terms.iter_mut().find(|t| t.text == text) {
            Some(term) => term.weight = term.weight.max(weight),
            None => self.terms.push(QueryTerm {
                text: text.to_string(),
                weight,
                question: question_terms().contains(text),
            }),
        }
    }

    fn add_free_text(&mut self, text: &str, params: &RankParams) {
        let tokens = analyzer().analyze(text);
        let mut words: Vec<(usize, String)> = Vec::new();
        for token in tokens.iter().filter(|t| !t.stop) {
            let joined = !token.subword && words.last().is_some_and(|(p, _)| *p == token.position);
            if joined {
                if params.compound > 0.0 {
                    self.add_term(&token.text, params.compound);
                }
            } else if token.subword {
                self.add_term(&token.text, params.subword);
            } else {
                self.add_term(&token.text, 1.0);
                words.push((token.position, token.text.clone()));
            }
        }
        for pair in words.windows(2) {
            let (p0, t0) = &pair[0];
            let (p1, t1) = &pair[1];
            if t0 != t1 {
                self.pairs.push(Phrase {
                    terms: vec![(0, t0.clone()), (p1 - p0, t1.clone())],
                });
            }
        }
        // Synonyms: a member found in the query's words brings in the other members.
        let seq: Vec<&str> = words.iter().map(|(_, t)| t.as_str()).collect();
        let all: rustc_hash::FxHashSet<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        let mut added: Vec<(Vec<String>, f32)> = Vec::new();
        for group in &synonym_groups().groups {
            let present = group.iter().any(|member| match member.as_slice() {
                [single] => all.contains(single.as_str()),
                many => seq
                    .windows(many.len())
                    .any(|w| w.iter().zip(many).all(|(a, b)| *a == b)),
            });
            if present {
                for member in group {
                    added.push((member.clone(), params.synonym));
                }
            }
        }
        for (member, weight) in added {
            match member.as_slice() {
                [single] => {
                    if !self.terms.iter().any(|t| &t.text == single) {
                        self.add_term(single, weight);
                    }
                }
                many => {
                    let phrase = Phrase {
                        terms: many
                            .iter()
                            .enumerate()
                            .map(|(k, t)| (k, t.clone()))
                            .collect(),
                    };
                    if !seq
                        .windows(many.len())
                        .any(|w| w.iter().zip(many).all(|(a, b)| *a == b))
                    {
                        self.synonym_phrases.push((phrase, weight));
                    }
                }
            }
        }
    }

    /// Nothing to score and nothing required: the query has no searchable words.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty() && self.phrases.is_empty()
    }

    /// Every normalized term worth highlighting.
    pub fn highlight_terms(&self) -> rustc_hash::FxHashSet<String> {
        let mut set: rustc_hash::FxHashSet<String> =
            self.terms.iter().map(|t| t.text.clone()).collect();
        for phrase in self
            .phrases
            .iter()
            .chain(self.synonym_phrases.iter().map(|(p, _)| p))
        {
            set.extend(phrase.terms.iter().map(|(_, t)| t.clone()));
        }
        set
    }

    /// The scoring query over `fields` (field, boost): weighted terms, proximity pairs and
    /// synonym phrases on the phrase fields, required quoted phrases.
    pub fn build(
        &self,
        fields: &[(Field, f32)],
        phrase_fields: &[(Field, f32)],
        params: &RankParams,
    ) -> Box<dyn Query> {
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (term, boost) in self.weighted_terms(fields, params) {
            should.push((Occur::Should, boosted_term(term, boost)));
        }
        for bonus in self.bonuses(phrase_fields, params) {
            should.push((Occur::Should, boosted(bonus.query(), bonus.boost)));
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !should.is_empty() {
            clauses.push((Occur::Should, Box::new(BooleanQuery::new(should))));
        }
        for phrase in &self.phrases {
            clauses.push((Occur::Must, self.any_field(phrase, fields)));
        }
        if self.phrases.is_empty() {
            // Without a required clause, the scored alternatives are what must match.
            return match clauses.pop() {
                Some((_, query)) => query,
                None => Box::new(BooleanQuery::new(Vec::new())),
            };
        }
        Box::new(BooleanQuery::new(clauses))
    }

    /// Scores `field` only where it holds at least `cover` of the query's words.
    pub fn coverage(&self, field: Field, cover: f32, boost: f32) -> Option<Box<dyn Query>> {
        let words: Vec<&QueryTerm> = self.terms.iter().filter(|t| t.weight >= 1.0).collect();
        if words.len() < 2 || !self.phrases.is_empty() {
            return None;
        }
        let needed = ((words.len() as f32 * cover).ceil() as usize).clamp(1, words.len());
        let clauses = words
            .iter()
            .map(|t| {
                let query: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(field, &t.text),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, query)
            })
            .collect();
        Some(boosted(
            Box::new(BooleanQuery::with_minimum_required_clauses(clauses, needed)),
            boost,
        ))
    }

    /// Matches `phrase` in any of `fields`.
    pub fn any_field(&self, phrase: &Phrase, fields: &[(Field, f32)]) -> Box<dyn Query> {
        let alternatives = fields
            .iter()
            .map(|&(field, boost)| {
                (
                    Occur::Should,
                    boosted(phrase_query(field, phrase, 0), boost),
                )
            })
            .collect();
        Box::new(BooleanQuery::new(alternatives))
    }

    /// What [`ParsedQuery::any_field`] matches, field by field: for each field, `(words,
    /// phrase)`, where `phrase` (unscored) matches `phrase` in that field and `words` matches
    /// the documents holding all its words there (every match of `phrase`, and more), to go
    /// through cheaply before checking positions.
    pub fn any_field_parts(
        &self,
        phrase: &Phrase,
        fields: &[(Field, f32)],
    ) -> Vec<(Box<dyn Query>, Box<dyn Query>)> {
        fields
            .iter()
            .map(|&(field, _)| {
                let words = BooleanQuery::new(
                    phrase
                        .terms
                        .iter()
                        .map(|(_, text)| {
                            let word: Box<dyn Query> = Box::new(TermQuery::new(
                                Term::from_field_text(field, text),
                                IndexRecordOption::Basic,
                            ));
                            (Occur::Must, word)
                        })
                        .collect(),
                );
                let words: Box<dyn Query> = Box::new(words);
                (words, phrase_query(field, phrase, 0))
            })
            .collect()
    }

    /// Matches the documents holding every word of each quoted phrase in one of `fields` (each
    /// phrase's words in one field), checking no positions: every match of the phrases, and
    /// more.
    pub fn words_of_phrases(&self, fields: &[(Field, f32)]) -> Box<dyn Query> {
        Box::new(BooleanQuery::new(
            self.phrases
                .iter()
                .map(|phrase| {
                    let any_field: Box<dyn Query> = Box::new(BooleanQuery::new(
                        self.any_field_parts(phrase, fields)
                            .into_iter()
                            .map(|(words, _)| (Occur::Should, words))
                            .collect(),
                    ));
                    (Occur::Must, any_field)
                })
                .collect(),
        ))
    }

    /// [`ParsedQuery::build`] split into its clauses, to score a few known documents clause by
    /// clause (`search::rank::best_sections`): the same clauses with the same boosts, the score
    /// being the sum of the matching ones. `None` when the query has quoted phrases (required clauses), which only the
    /// whole query expresses. Must stay in step with `build` (the search tests compare both).
    pub fn build_split(
        &self,
        fields: &[(Field, f32)],
        phrase_fields: &[(Field, f32)],
        params: &RankParams,
    ) -> Option<SplitQuery> {
        if !self.phrases.is_empty() || self.terms.is_empty() {
            return None;
        }
        Some(SplitQuery {
            terms: self.weighted_terms(fields, params),
            bonuses: self.bonuses(phrase_fields, params),
        })
    }

    /// The scored term clauses of [`ParsedQuery::build`]: each term in each field, with its boost
    /// (question words weigh `params.question` outside titles; clauses of weight 0 are left out).
    fn weighted_terms(&self, fields: &[(Field, f32)], params: &RankParams) -> Vec<(Term, f32)> {
        let mut terms = Vec::with_capacity(self.terms.len() * fields.len());
        for term in &self.terms {
            for &(field, boost) in fields {
                let weight = if term.question && !TITLE_FIELDS.contains(&field) {
                    term.weight * params.question
                } else {
                    term.weight
                };
                if weight > 0.0 {
                    terms.push((Term::from_field_text(field, &term.text), boost * weight));
                }
            }
        }
        terms
    }

    /// The optional phrase clauses of [`ParsedQuery::build`]: proximity of neighbouring words and
    /// multi-word synonyms.
    fn bonuses(&self, phrase_fields: &[(Field, f32)], params: &RankParams) -> Vec<Bonus> {
        let mut bonuses = Vec::with_capacity(
            (self.pairs.len() + self.synonym_phrases.len()) * phrase_fields.len(),
        );
        if params.proximity > 0.0 {
            for pair in &self.pairs {
                for &(field, boost) in phrase_fields {
                    bonuses.push(Bonus::new(
                        field,
                        pair,
                        params.slop,
                        boost * params.proximity,
                    ));
                }
            }
        }
        for (phrase, weight) in &self.synonym_phrases {
            for &(field, boost) in phrase_fields {
                bonuses.push(Bonus::new(field, phrase, 0, boost * weight));
            }
        }
        bonuses
    }
}

/// Words of one to four letters are never corrected (too many neighbours, mostly abbreviations).
const MIN_CORRECTED_LEN: usize = 4;

impl ParsedQuery {
    /// Typo tolerance: each query word (Latin letters, at least [`MIN_CORRECTED_LEN`] long) that
    /// no document of `field` holds is joined by its most frequent neighbour at one edit
    /// (deletion, insertion, substitution or transposition of a letter) that the field does hold,
    /// weighing `weight` × the word's weight: `recieve` also finds `receive`, `downlad`
    /// `download`. Two neighbouring Latin words whose concatenation the fields hold are joined
    /// the same way (`git hub` also finds `github`, `drop box` `dropbox`, `web site` `website`).
    /// `None` when nothing needed correcting. Costs one dictionary lookup per word and per pair of
    /// neighbouring words; only an unknown word pays for its few hundred neighbours.
    pub fn with_corrections(
        &self,
        searcher: &Searcher,
        fields: &[Field],
        weight: f32,
    ) -> tantivy::Result<Option<ParsedQuery>> {
        if weight <= 0.0 {
            return Ok(None);
        }
        let candidates: Vec<&QueryTerm> = self
            .terms
            .iter()
            .filter(|t| {
                t.weight >= 1.0
                    && !t.question
                    && t.text.len() >= MIN_CORRECTED_LEN
                    && t.text.bytes().all(|b| b.is_ascii_lowercase())
            })
            .collect();
        let joins = self.joined_pairs();
        if candidates.is_empty() && joins.is_empty() {
            return Ok(None);
        }
        let mut dictionaries = Vec::new();
        for reader in searcher.segment_readers() {
            for &field in fields {
                dictionaries.push(reader.inverted_index(field)?);
            }
        }
        let doc_freq = |text: &str| -> tantivy::Result<u64> {
            let mut total = 0;
            for dictionary in &dictionaries {
                if let Some(info) = dictionary.terms().get(text.as_bytes())? {
                    total += u64::from(info.doc_freq);
                }
            }
            Ok(total)
        };
        let mut corrections: Vec<(String, f32)> = Vec::new();
        for term in candidates {
            if doc_freq(&term.text)? > 0 {
                continue;
            }
            let mut best: Option<(u64, String)> = None;
            for neighbour in one_edit_away(&term.text) {
                let count = doc_freq(&neighbour)?;
                // Ties go to the alphabetically first neighbour (deterministic).
                let better = match &best {
                    None => count > 0,
                    Some((c, text)) => count > *c || (count == *c && neighbour < *text),
                };
                if better {
                    best = Some((count, neighbour));
                }
            }
            if let Some((_, text)) = best {
                corrections.push((text, weight * term.weight));
            }
        }
        // A join stands in for its words only where it is the usual spelling: at least as
        // frequent as the rarer of them (`github` against `hub`, not `instanceid` against
        // `instance`, an API field name).
        for (joined, first, second) in joins {
            let found = doc_freq(&joined)?;
            if found > 0 && found >= doc_freq(&first)?.min(doc_freq(&second)?) {
                corrections.push((joined, weight));
            }
        }
        if corrections.is_empty() {
            return Ok(None);
        }
        let mut corrected = self.clone();
        for (text, weight) in corrections {
            if !corrected.terms.iter().any(|t| t.text == text) {
                corrected.add_term(&text, weight);
            }
        }
        Ok(Some(corrected))
    }
}

impl ParsedQuery {
    /// The index terms of adjacent Latin word pairs written as one word (`git hub` → `github`),
    /// when that is a single word the query does not hold already.
    /// Each comes with the two words it joins.
    fn joined_pairs(&self) -> Vec<(String, String, String)> {
        let latin = |t: &str| t.bytes().all(|b| b.is_ascii_lowercase());
        let mut joins: Vec<(String, String, String)> = Vec::new();
        for pair in &self.pairs {
            let [(0, first), (1, second)] = pair.terms.as_slice() else {
                continue;
            };
            if !latin(first) || !latin(second) {
                continue;
            }
            let tokens = analyzer().analyze(&format!("{first}{second}"));
            let [token] = tokens.as_slice() else {
                continue;
            };
            if !token.stop
                && !self.terms.iter().any(|t| t.text == token.text)
                && !joins.iter().any(|(j, _, _)| *j == token.text)
            {
                joins.push((token.text.clone(), first.clone(), second.clone()));
            }
        }
        joins
    }
}

/// Every lower-case ASCII word one edit away from `word` (itself excluded).
fn one_edit_away(word: &str) -> HashSet<String> {
    let letters: Vec<u8> = word.bytes().collect();
    let mut out = HashSet::new();
    let mut push = |bytes: Vec<u8>| {
        if let Ok(text) = String::from_utf8(bytes) {
            out.insert(text);
        }
    };
    for i in 0..=letters.len() {
        if i < letters.len() {
            let mut deleted = letters.clone();
            deleted.remove(i);
            push(deleted);
        }
        if i + 1 < letters.len() {
            let mut swapped = letters.clone();
            swapped.swap(i, i + 1);
            push(swapped);
        }
        for c in b'a'..=b'z' {
            if i < letters.len() && letters[i] != c {
                let mut replaced = letters.clone();
                replaced[i] = c;
                push(replaced);
            }
            let mut inserted = letters.clone();
            inserted.insert(i, c);
            push(inserted);
        }
    }
    out.remove(word);
    out
}

/// [`ParsedQuery::build`] as weighted term clauses plus optional phrase bonuses.
pub struct SplitQuery {
    /// Term clauses (term, boost); WithFreqs term queries.
    pub terms: Vec<(Term, f32)>,
    /// Phrase (or proximity) bonuses.
    pub bonuses: Vec<Bonus>,
}

/// An optional phrase clause of a [`SplitQuery`].
pub struct Bonus {
    pub boost: f32,
    /// What the query matches: its terms at their offsets (one term: a term query), within
    /// `slop` (`search::taat` scores them without the query).
    pub terms: Vec<(usize, Term)>,
    pub slop: u32,
}

impl Bonus {
    fn new(field: Field, phrase: &Phrase, slop: u32, boost: f32) -> Bonus {
        Bonus {
            boost,
            terms: phrase
                .terms
                .iter()
                .map(|(offset, text)| (*offset, Term::from_field_text(field, text)))
                .collect(),
            slop,
        }
    }

    /// The unboosted query ([`phrase_query`] of the terms), made when asked: `search::taat`
    /// scores exact phrases without it.
    pub fn query(&self) -> Box<dyn Query> {
        match self.terms.as_slice() {
            [(_, term)] => Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
            terms => Box::new(PhraseQuery::new_with_offset_and_slop(
                terms.to_vec(),
                self.slop,
            )),
        }
    }
}

fn boosted(query: Box<dyn Query>, boost: f32) -> Box<dyn Query> {
    Box::new(BoostQuery::new(query, boost))
}

/// A term clause (scored with its frequencies) weighing `boost`: the query's unit of BM25.
pub(super) fn boosted_term(term: Term, boost: f32) -> Box<dyn Query> {
    boosted(
        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
        boost,
    )
}

/// A phrase (a single term query for one term).
fn phrase_query(field: Field, phrase: &Phrase, slop: u32) -> Box<dyn Query> {
    if let [(_, term)] = phrase.terms.as_slice() {
        return Box::new(TermQuery::new(
            Term::from_field_text(field, term),
            IndexRecordOption::WithFreqs,
        ));
    }
    let terms = phrase
        .terms
        .iter()
        .map(|(p, t)| (*p, Term::from_field_text(field, t)))
        .collect();
    Box::new(PhraseQuery::new_with_offset_and_slop(terms, slop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_words_are_weaker() {
        let q = ParsedQuery::parse("中国农业银行");
        let whole = q.terms.iter().find(|t| t.text == "中国农业银行").unwrap();
        let part = q.terms.iter().find(|t| t.text == "银行").unwrap();
        assert!(whole.weight > part.weight);
    }

    #[test]
    fn exclusions_and_phrases() {
        let q = ParsedQuery::parse("ssh -\"connection refused\" \"密钥 登录\" -windows");
        assert_eq!(q.exclusions.len(), 2);
        assert_eq!(q.phrases.len(), 1);
        assert!(!q.terms.iter().any(|t| t.text == "window"));
        assert!(q.terms.iter().any(|t| t.text == "密钥"));
        assert!(!q.terms.iter().any(|t| t.text == "refus"));
    }

    #[test]
    fn hyphenated_words_are_not_exclusions() {
        let q = ParsedQuery::parse("tls-1.2 e-mail");
        assert!(q.exclusions.is_empty());
        let q = ParsedQuery::parse("- 退款");
        assert!(q.exclusions.is_empty());
        assert!(q.terms.iter().any(|t| t.text == "退款"));
    }

    #[test]
    fn synonyms_expand() {
        for (query, term) in [
            ("怎么退费", "退款"),
            ("money back", "refund"),
            // Everyday paraphrases.
            ("how do I get rid of a card", "delet"),
            ("为啥还不了钱", "为什么"),
            ("how can I cross out text", "strikethrough"),
            ("find the earliest message", "oldest"),
            ("花呗是啥", "什么"),
        ] {
            let q = ParsedQuery::parse(query);
            assert!(
                q.terms.iter().any(|t| t.text == term),
                "{query}: {:?}",
                q.terms
            );
        }
    }

    #[test]
    fn question_words_are_marked() {
        let q = ParsedQuery::parse("How do I reset my password? 如何重置密码");
        let flag = |text: &str| q.terms.iter().find(|t| t.text == text).map(|t| t.question);
        assert_eq!(flag("how"), Some(true));
        assert_eq!(flag("如何"), Some(true));
        assert_eq!(flag("password"), Some(false));
        assert_eq!(flag("密码"), Some(false));
        // They still take part in the proximity pairs (they phrase titles).
        assert!(q.pairs.iter().any(|p| p.terms[0].1 == "how"));
    }

    #[test]
    fn joined_mixed_terms_are_weaker_than_their_parts() {
        let params = RankParams {
            compound: 0.3,
            ..RankParams::default()
        };
        let q = ParsedQuery::parse_with("SSL证书过期", &params);
        let weight = |text: &str| q.terms.iter().find(|t| t.text == text).map(|t| t.weight);
        assert_eq!(weight("ssl证书"), Some(0.3));
        assert_eq!(weight("ssl"), Some(1.0));
        assert_eq!(weight("证书"), Some(1.0));
        assert!(
            q.pairs
                .iter()
                .all(|p| p.terms.iter().all(|(_, t)| t != "ssl证书")),
            "{:?}",
            q.pairs
        );
        let q = ParsedQuery::parse_with(
            "SSL证书过期",
            &RankParams {
                compound: 0.0,
                ..params
            },
        );
        assert!(!q.terms.iter().any(|t| t.text == "ssl证书"));
    }

    #[test]
    fn length_overrides_parse() {
        let p = RankParams::default()
            .with_overrides("abody_length=2, stitle_length=0.5,atitle_length=3")
            .unwrap();
        assert_eq!(
            (p.abody_length, p.stitle_length, p.atitle_length),
            (2.0, 0.5, 3.0)
        );
        assert!(RankParams::default().with_overrides("abody_len=2").is_err());
    }

    #[test]
    fn neighbouring_words_are_joined() {
        let q = ParsedQuery::parse("cross out text on git hub drop box");
        let joins: Vec<String> = q.joined_pairs().into_iter().map(|(j, _, _)| j).collect();
        assert!(joins.contains(&"github".to_string()), "{joins:?}");
        assert!(joins.contains(&"dropbox".to_string()), "{joins:?}");
        // Not across a stop word (`text on git`), not with Han words, not a word the query holds
        // already (`web site` brings `website` as a synonym).
        assert!(!joins.contains(&"textgit".to_string()), "{joins:?}");
        assert!(ParsedQuery::parse("web site").joined_pairs().is_empty());
        assert!(ParsedQuery::parse("log in").joined_pairs().is_empty());
        assert!(ParsedQuery::parse("ssh 登录").joined_pairs().is_empty());
    }

    /// `git hub` finds the article about `GitHub` (the index's spelling) too, not only the one
    /// that holds `hub`; with corrections off it does not.
    #[test]
    fn a_pair_written_as_one_word_finds_that_word() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = crate::search::SearchEngine::open_or_create(dir.path()).unwrap();
        let articles: Vec<crate::article::Article> = [
            r#"{"id":"a","title":"Host a repository on GitHub","body":"GitHub keeps the history of your repository.","lang":"en"}"#,
            r#"{"id":"b","title":"A hub for teams","body":"The hub shows what your team does.","lang":"en"}"#,
        ]
        .iter()
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
        engine.upsert(&articles).unwrap();
        let found = |engine: &crate::search::SearchEngine| -> Vec<String> {
            let ranked = engine.rank_ids("git hub", 10).unwrap();
            ranked.into_iter().map(|(id, _)| id).collect()
        };
        assert!(found(&engine).contains(&"a".to_string()));
        engine.set_rank_params(RankParams {
            spelling: 0.0,
            ..RankParams::default()
        });
        assert_eq!(found(&engine), vec!["b".to_string()]);
    }

    #[test]
    fn neighbours_are_one_edit_away() {
        let all = one_edit_away("recieve");
        assert!(all.contains("receive"), "transposition");
        assert!(all.contains("recive"), "deletion");
        assert!(all.contains("recieved"), "insertion");
        assert!(all.contains("relieve"), "substitution");
        assert!(!all.contains("recieve") && !all.contains("receiver"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for q in ["\"", "-", "--", "-\"", "\"\"", "“未闭合", "- -x", "\u{0}"] {
            let _ = ParsedQuery::parse(q);
        }
    }
}
