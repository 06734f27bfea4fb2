//! The index layout: tantivy schema, the analyzer fingerprint file, and turning an article into
//! documents (one per section, plus one per article).
//!
//! Owns: which fields exist and how they are analyzed; analysis happens here, in the caller's
//! (rayon) threads, and reaches tantivy as `PreTokenizedString`s so tantivy's indexing threads only
//! build postings. Each text is analyzed once: the title's tokens serve every section and the
//! article document, a heading's tokens serve its section and the article body. Documents are
//! [`IndexDoc`]s, which tantivy indexes in place (its own `TantivyDocument` would round-trip every
//! pre-tokenized field through JSON). Must never: analyze with anything but [`crate::analyzer`].
//!
//! Layout: every section is a document (`kind = s`) with `title`, `heading`, `body`; every article
//! has one more document (`kind = a`) with `atitle` and `abody` (the whole text) and the stored
//! article JSON. The fields of the two kinds are disjoint, so one query never mixes them. An
//! upsert adds a chunk's section documents before its article documents, so the small doc-store
//! blocks a hit reads seldom hold an article's JSON (`SearchEngine::upsert_with_progress`).

use std::path::Path;

use tantivy::Term;
use tantivy::schema::document::{DeserializeError, DocumentDeserialize, DocumentDeserializer};
use tantivy::schema::{
    Document, FAST, Field, INDEXED, IndexRecordOption, OwnedValue, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{PreTokenizedString, Token as TantivyToken};

use super::SearchError;
use super::text::plain_text;
use crate::analyzer::{TOKENIZER_NAME, analyzer};
use crate::article::Article;

/// Bump when the schema or what goes into the fields changes.
const SCHEMA_VERSION: &str = "kefu-schema-8";
/// File in the index directory recording which analyzer and schema built it.
pub const FINGERPRINT_FILE: &str = "kefu-fingerprint";

/// Position gap between sections in the article-level field, so phrases never span sections.
const SECTION_POSITION_GAP: usize = 100;

/// Handles to every field.
#[derive(Clone, Copy)]
pub struct Fields {
    pub kind: Field,
    pub id: Field,
    /// 64-bit hash of the id (fast field) to group sections per article without the doc store.
    pub key: Field,
    pub section: Field,
    pub lang: Field,
    pub product: Field,
    pub category: Field,
    pub title: Field,
    pub heading: Field,
    pub body: Field,
    /// Stored plain text of the section, as far as snippets read it (`snippet::encode_marks`).
    pub text: Field,
    /// Stored analyzed tokens of `text` (`snippet::encode_marks`): snippets without analysis.
    /// A text field (the marks are ASCII but for the terms they name): tantivy reads a stored
    /// string in one copy, a stored bytes value byte by byte.
    pub marks: Field,
    pub anchor: Field,
    pub url: Field,
    pub atitle: Field,
    pub abody: Field,
    pub article: Field,
    /// Normalized title, and its suffixes from each word start (search-as-you-type).
    pub suggest_full: Field,
    pub suggest_any: Field,
    /// The title again, only for a single-topic article (no headings): such a title describes
    /// all of the article (an FAQ entry's title IS its question), a long page's title only
    /// its broad subject.
    pub stitle: Field,
    /// The article's normalized text when it is one short sentence (`paraphrase::short_form`;
    /// fast field of article documents): paraphrase matching between questions.
    pub short: Field,
    /// The character grams of a short article's title (`paraphrase::grams`; indexed with
    /// frequencies, no positions): the character channel that finds questions segmented
    /// differently. Empty for every other document, so help pages pay nothing for it.
    pub chars: Field,
}

pub fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let analyzed = |stored: bool| {
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER_NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let options = TextOptions::default().set_indexing_options(indexing);
        if stored {
            options.set_stored()
        } else {
            options
        }
    };
    let fields = Fields {
        kind: b.add_text_field("kind", STRING),
        id: b.add_text_field("id", STRING | STORED | FAST),
        key: b.add_u64_field("key", FAST | INDEXED),
        section: b.add_u64_field("section", STORED),
        lang: b.add_text_field("lang", STRING | STORED),
        product: b.add_text_field("product", STRING | STORED),
        category: b.add_text_field("category", STRING | STORED),
        title: b.add_text_field("title", analyzed(true)),
        heading: b.add_text_field("heading", analyzed(true)),
        body: b.add_text_field("body", analyzed(false)),
        text: b.add_text_field("text", STORED),
        anchor: b.add_text_field("anchor", STORED),
        url: b.add_text_field("url", STORED),
        atitle: b.add_text_field("atitle", analyzed(false)),
        abody: b.add_text_field("abody", analyzed(false)),
        article: b.add_text_field("article", STORED),
        suggest_full: b.add_text_field("suggest_full", STRING),
        suggest_any: b.add_text_field("suggest_any", STRING),
        stitle: b.add_text_field("stitle", analyzed(false)),
        marks: b.add_text_field("marks", STORED),
        short: b.add_text_field("short", FAST),
        chars: b.add_text_field(
            "chars",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TOKENIZER_NAME)
                    .set_index_option(IndexRecordOption::WithFreqs),
            ),
        ),
    };
    (b.build(), fields)
}

impl Fields {
    pub fn from_schema(schema: &Schema) -> Result<Fields, SearchError> {
        let get = |name: &str| {
            schema.get_field(name).map_err(|_| {
                SearchError::AnalyzerMismatch(format!(
                    "the index has no field {name:?}: it was built by another kefu version; \
                     re-index with `kefu index --index NEW_DIR PATH...` into a fresh directory"
                ))
            })
        };
        Ok(Fields {
            kind: get("kind")?,
            id: get("id")?,
            key: get("key")?,
            section: get("section")?,
            lang: get("lang")?,
            product: get("product")?,
            category: get("category")?,
            title: get("title")?,
            heading: get("heading")?,
            body: get("body")?,
            text: get("text")?,
            marks: get("marks")?,
            anchor: get("anchor")?,
            url: get("url")?,
            atitle: get("atitle")?,
            abody: get("abody")?,
            article: get("article")?,
            suggest_full: get("suggest_full")?,
            suggest_any: get("suggest_any")?,
            stitle: get("stitle")?,
            short: get("short")?,
            chars: get("chars")?,
        })
    }
}

pub const KIND_SECTION: &str = "s";
pub const KIND_ARTICLE: &str = "a";

/// What this build of kefu writes into [`FINGERPRINT_FILE`].
pub fn fingerprint() -> String {
    format!("{}|{SCHEMA_VERSION}", analyzer().fingerprint())
}

/// Refuses an index built by another analyzer or schema.
pub fn check_fingerprint(dir: &Path) -> Result<(), SearchError> {
    let expected = fingerprint();
    let found = std::fs::read_to_string(dir.join(FINGERPRINT_FILE)).ok();
    match found {
        Some(found) if found.trim() == expected => Ok(()),
        found => Err(SearchError::AnalyzerMismatch(format!(
            "the index in {} was built by another analyzer ({}; this kefu uses {expected}): \
             re-index with `kefu index --index NEW_DIR PATH...` into a fresh directory \
             (or delete {} and index again)",
            dir.display(),
            found
                .as_deref()
                .map(str::trim)
                .unwrap_or("no fingerprint recorded"),
            dir.display(),
        ))),
    }
}

pub fn write_fingerprint(dir: &Path) -> Result<(), SearchError> {
    std::fs::write(dir.join(FINGERPRINT_FILE), fingerprint())?;
    Ok(())
}

/// FNV-1a of the id: the grouping key of an article's documents.
pub fn article_key(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in id.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

pub fn id_term(fields: &Fields, id: &str) -> Term {
    Term::from_field_text(fields.id, id)
}

/// Analyzer tokens of `text` as tantivy tokens (stop words dropped, positions shifted).
fn tokens(text: &str, position_base: usize, out: &mut Vec<TantivyToken>) -> usize {
    let mut last = position_base;
    for t in analyzer().analyze(text) {
        last = position_base + t.position;
        if t.stop {
            continue;
        }
        out.push(TantivyToken {
            offset_from: t.offset_from,
            offset_to: t.offset_to,
            position: position_base + t.position,
            text: t.text,
            position_length: 1,
        });
    }
    last + 1
}

/// Tokens for a field whose text is not stored from it.
fn pre_tokenized(tokens: Vec<TantivyToken>) -> OwnedValue {
    OwnedValue::PreTokStr(PreTokenizedString {
        text: String::new(),
        tokens,
    })
}

/// Tokens for a stored field: tantivy stores `text` as a plain string, as if it had analyzed it.
fn pre_tokenized_stored(text: &str, tokens: Vec<TantivyToken>) -> OwnedValue {
    OwnedValue::PreTokStr(PreTokenizedString {
        text: text.to_string(),
        tokens,
    })
}

/// One document as handed to tantivy's writer: field values in insertion order.
///
/// tantivy indexes any [`Document`] in place; its default `TantivyDocument` instead packs every
/// value into a byte buffer, which for pre-tokenized text means a JSON round trip of every token
/// (a fifth of all indexing CPU when it was used).
#[derive(Debug, Clone, Default)]
pub struct IndexDoc {
    values: Vec<(Field, OwnedValue)>,
}

impl IndexDoc {
    fn add(&mut self, field: Field, value: OwnedValue) {
        self.values.push((field, value));
    }

    fn add_text(&mut self, field: Field, text: &str) {
        self.add(field, OwnedValue::Str(text.to_string()));
    }

    fn add_u64(&mut self, field: Field, value: u64) {
        self.add(field, OwnedValue::U64(value));
    }

    /// The values of `field`, in insertion order.
    pub fn get_all(&self, field: Field) -> impl Iterator<Item = &OwnedValue> {
        self.values
            .iter()
            .filter(move |(f, _)| *f == field)
            .map(|(_, v)| v)
    }

    /// The first text value of `field`, if any.
    pub fn first_str(&self, field: Field) -> Option<&str> {
        self.get_all(field).find_map(|v| match v {
            OwnedValue::Str(text) => Some(text.as_str()),
            _ => None,
        })
    }
}

/// A stored document read back as its values (`Searcher::doc`): tantivy's own
/// `TantivyDocument` deserializes each value and then copies it into its packed form, a second
/// copy of a section's stored text and marks on every hit.
impl DocumentDeserialize for IndexDoc {
    fn deserialize<'de, D: DocumentDeserializer<'de>>(
        mut deserializer: D,
    ) -> Result<Self, DeserializeError> {
        let mut values = Vec::with_capacity(deserializer.size_hint());
        while let Some(value) = deserializer.next_field::<OwnedValue>()? {
            values.push(value);
        }
        Ok(IndexDoc { values })
    }
}

type FieldValueRef<'a> = fn(&'a (Field, OwnedValue)) -> (Field, &'a OwnedValue);

impl Document for IndexDoc {
    type Value<'a> = &'a OwnedValue;
    type FieldsValuesIter<'a> =
        std::iter::Map<std::slice::Iter<'a, (Field, OwnedValue)>, FieldValueRef<'a>>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        self.values.iter().map(|(field, value)| (*field, value))
    }
}

/// The documents of one article: its sections, then the article document.
pub fn article_documents(fields: &Fields, article: &Article) -> Vec<IndexDoc> {
    let key = article_key(&article.id);
    let lang = article.lang().to_string();
    let sections = article.sections();
    let mut docs = Vec::with_capacity(sections.len() + 1);
    let mut title_tokens = Vec::new();
    tokens(&article.title, 0, &mut title_tokens);
    let mut abody = Vec::new();
    let mut position = 0;
    let common = |doc: &mut IndexDoc| {
        doc.add_text(fields.id, &article.id);
        doc.add_u64(fields.key, key);
        doc.add_text(fields.lang, &lang);
        if let Some(product) = &article.product {
            doc.add_text(fields.product, product);
        }
        if let Some(category) = &article.category {
            doc.add_text(fields.category, category);
        }
        if let Some(url) = &article.url {
            doc.add_text(fields.url, url);
        }
    };
    let mut heading_tokens = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        let mut doc = IndexDoc::default();
        doc.add_text(fields.kind, KIND_SECTION);
        common(&mut doc);
        doc.add_u64(fields.section, i as u64);
        doc.add(
            fields.title,
            pre_tokenized_stored(&article.title, title_tokens.clone()),
        );
        let text = plain_text(&section.text);
        let mut body = Vec::new();
        tokens(&text, 0, &mut body);
        if let Some(heading) = &section.heading {
            // Analyzed once: at position 0 for the section's heading field, shifted for the
            // article body.
            heading_tokens.clear();
            let end = tokens(heading, 0, &mut heading_tokens);
            abody.extend(heading_tokens.iter().map(|t| TantivyToken {
                position: t.position + position,
                ..t.clone()
            }));
            position += end + 1;
            doc.add(
                fields.heading,
                pre_tokenized_stored(heading, std::mem::take(&mut heading_tokens)),
            );
        }
        if let Some(anchor) = &section.anchor {
            doc.add_text(fields.anchor, anchor);
        }
        abody.extend(body.iter().map(|t| TantivyToken {
            position: t.position + position,
            ..t.clone()
        }));
        position += body.last().map_or(0, |t| t.position + 1) + SECTION_POSITION_GAP;
        let (marks, shown) = super::snippet::encode_marks(
            &text,
            body.iter()
                .map(|t| (t.offset_from, t.offset_to, t.text.as_str())),
        );
        doc.add(fields.body, pre_tokenized(body));
        // Only what snippets can show: each hit reads (and checks) its section's stored text.
        let mut text = text;
        text.truncate(shown);
        doc.add(fields.text, OwnedValue::Str(text));
        doc.add(fields.marks, OwnedValue::Str(marks));
        docs.push(doc);
    }
    let mut doc = IndexDoc::default();
    doc.add_text(fields.kind, KIND_ARTICLE);
    common(&mut doc);
    if sections.iter().all(|section| section.heading.is_none()) {
        doc.add(fields.stitle, pre_tokenized(title_tokens.clone()));
    }
    doc.add(fields.atitle, pre_tokenized(title_tokens));
    if let Some(short) = super::paraphrase::short_form(&article.title, &article.body) {
        doc.add_text(fields.short, &short);
        let grams = super::paraphrase::grams(&article.title)
            .into_iter()
            .enumerate()
            .map(|(position, text)| TantivyToken {
                offset_from: 0,
                offset_to: 0,
                position,
                text,
                position_length: 1,
            })
            .collect();
        doc.add(fields.chars, pre_tokenized(grams));
    }
    if !article.tags.is_empty() {
        tokens(&article.tags.join(" , "), position, &mut abody);
    }
    doc.add(fields.abody, pre_tokenized(abody));
    doc.add(
        fields.article,
        OwnedValue::Str(serde_json::to_string(article).expect("an article serializes")),
    );
    let normalized = suggest_key(&article.title);
    for (i, _) in normalized.char_indices() {
        let at_word_start = i == 0 || {
            let before = normalized[..i].chars().next_back();
            let here = normalized[i..].chars().next();
            match (before, here) {
                (Some(b), Some(h)) => {
                    crate::analyzer::is_han(h) || (!b.is_alphanumeric() && h.is_alphanumeric())
                }
                _ => false,
            }
        };
        if i == 0 {
            doc.add_text(fields.suggest_full, &normalized);
        } else if at_word_start {
            doc.add_text(fields.suggest_any, &normalized[i..]);
        }
    }
    docs.push(doc);
    docs
}

/// Normalized form of a title or a typed prefix for suggestions: the analyzer's normalization
/// (full-width, traditional → simplified, case) with whitespace collapsed.
pub fn suggest_key(text: &str) -> String {
    let normalized = crate::analyzer::Normalized::new(text);
    normalized
        .text()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use tantivy::tokenizer::{TokenStream, Tokenizer};

    use super::*;
    use crate::analyzer::KefuTokenizer;

    /// What tantivy itself would index for `text` through the registered tokenizer.
    fn tokenizer_tokens(text: &str) -> Vec<TantivyToken> {
        let mut tokenizer = KefuTokenizer;
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().clone());
        }
        out
    }

    fn pre_tok(value: &OwnedValue) -> &PreTokenizedString {
        match value {
            OwnedValue::PreTokStr(p) => p,
            other => panic!("expected pre-tokenized text, got {other:?}"),
        }
    }

    #[test]
    fn shared_tokens_equal_what_the_tokenizer_gives_each_field() {
        let (_, fields) = build_schema();
        let article = Article::new(
            "a.md",
            "ECS实例無法啟動 and the SSH login",
            "intro 文字\n\n## 帳單 Billing {#bill}\n退款 3 个工作日到账\n\n## Second part\nmore text here\n",
        );
        let docs = article_documents(&fields, &article);
        assert_eq!(docs.len(), 4);
        let title = tokenizer_tokens(&article.title);
        assert!(!title.is_empty());
        let mut headings = Vec::new();
        for doc in &docs[..3] {
            let t = pre_tok(doc.get_all(fields.title).next().expect("title"));
            assert_eq!(t.text, article.title, "stored title text");
            assert_eq!(t.tokens, title);
            if let Some(h) = doc.get_all(fields.heading).next() {
                let h = pre_tok(h);
                assert_eq!(h.tokens, tokenizer_tokens(&h.text));
                headings.push(h.text.clone());
            }
        }
        assert_eq!(headings, ["帳單 Billing", "Second part"]);
        let article_doc = &docs[3];
        let atitle = pre_tok(article_doc.get_all(fields.atitle).next().expect("atitle"));
        assert_eq!(atitle.tokens, title);
        // The article body holds each heading's tokens then its body's, positions increasing.
        let abody = pre_tok(article_doc.get_all(fields.abody).next().expect("abody"));
        let texts: Vec<&str> = abody.tokens.iter().map(|t| t.text.as_str()).collect();
        let bill = texts
            .iter()
            .position(|t| *t == "账单")
            .expect("heading token");
        let refund = texts.iter().position(|t| *t == "退款").expect("body token");
        assert!(bill < refund);
        assert!(
            abody
                .tokens
                .windows(2)
                .all(|w| w[0].position <= w[1].position)
        );
    }
}
