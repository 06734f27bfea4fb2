//! Paraphrase matching between one-sentence questions: when every article near the top is a
//! single short sentence (a bank of FAQ questions, not help pages), how alike the query and an
//! article are written, as the Dice coefficients of their characters and of their character
//! bigrams, joins the BM25 score.
//!
//! Owns: the form of a short article kept in the index (`Fields::short`: its normalized letters,
//! digits and ideographs), the character similarities and the reranking of the top
//! [`POOL`] articles. Must never: touch a ranking that holds an article that is not one short
//! sentence (help pages keep their BM25 order), or reorder anything beyond the pool.
//!
//! Why: Chinese questions that mean the same are often segmented differently by jieba (one word
//! in one question, two words or a longer word in the other), so their words do not meet while
//! their characters do; and two wordings of one question share most of their characters.
//! On atec-faq dev (77,512 one-sentence Alipay questions), weights tuned on the first half of
//! the queries (a Python replay of the BM25 top 30) and checked on the second, MRR@10 by
//! `scripts/atec-halves.sh`: first half 0.0650 → 0.0692, second half 0.0627 → 0.0696 (bigrams
//! alone, in the replay: 0.0678 and 0.0672); aliyun-faq and stackfaq (pages with bodies) are
//! untouched. Nothing here is specific to Chinese, but only Chinese questions were measured.
//! Tried and dropped (the replay, both halves lower or within ±0.001): bigrams weighted by idf
//! or as a BM25, trigrams, coverage of the query's words by the article and the other way,
//! length ratio, diversity (MMR), sentence vectors from the corpus' own PPMI word vectors
//! (SVD, SIF weights; as a rerank feature and fused with BM25), a hubness penalty.
//!
//! ```
//! use kefu::search::paraphrase::{bigrams, dice, form};
//! let a = bigrams(&form("借呗还款为什么没有到帐"));
//! let b = bigrams(&form("借呗還款為什麼沒有到賬"));
//! assert!(dice(&a, &b) > 0.7);
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use tantivy::columnar::Column;
use tantivy::schema::Field;
use tantivy::{DocAddress, Searcher};

use super::SearchError;
use super::rank::{Candidate, SegmentCache, dictionary_terms};
use crate::analyzer::Normalized;

/// Longest text (characters of the title, the body empty) that counts as one short sentence.
pub const SHORT_MAX_CHARS: usize = 64;
/// Articles reranked: the top of the BM25 ranking.
pub const POOL: usize = 30;
/// Weights of the Dice coefficients of characters and of bigrams, relative to the best BM25 score
/// of the pool. Tuned on the first half of the atec-faq dev queries (MRR@10 of characters /
/// bigrams: 1 / 0.5 0.0698, 1 / 0 0.0696, 1 / 1 0.0683, 1.5 / 0.5 0.0696, 2 / 0.5 0.0684,
/// 0 / 1 0.0678; BM25 alone 0.0650).
pub const CHAR_WEIGHT: f32 = 1.0;
pub const BIGRAM_WEIGHT: f32 = 0.5;

/// The analyzer's normalization of `text` (full-width, traditional → simplified, case), keeping
/// only letters, digits and ideographs.
pub fn form(text: &str) -> String {
    Normalized::new(text)
        .text()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// The form of an article that is one short sentence: a title of at most [`SHORT_MAX_CHARS`]
/// characters and no body.
pub fn short_form(title: &str, body: &str) -> Option<String> {
    if !body.trim().is_empty() || title.chars().count() > SHORT_MAX_CHARS {
        return None;
    }
    let form = form(title);
    (form.chars().count() >= 2).then_some(form)
}

/// The distinct characters of a form, sorted.
pub fn chars(form: &str) -> Vec<char> {
    let mut out: Vec<char> = form.chars().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The distinct character bigrams of a form, sorted.
pub fn bigrams(form: &str) -> Vec<(char, char)> {
    let chars: Vec<char> = form.chars().collect();
    let mut out: Vec<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Dice coefficient of two sorted sets: 2 |a ∩ b| / (|a| + |b|), 0 when both are empty.
pub fn dice<T: Ord>(a: &[T], b: &[T]) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * common as f32 / (a.len() + b.len()) as f32
}

/// New scores for a pool ranked best first: `score + best score × (CHAR_WEIGHT × dice of
/// characters + BIGRAM_WEIGHT × dice of bigrams)` between the query and each form, or `None`
/// when some article of the pool is not one short sentence (`forms[i]` is `None`).
pub fn rescore(query: &str, scores: &[f32], forms: &[Option<String>]) -> Option<Vec<f32>> {
    if scores.is_empty() || forms.len() != scores.len() || forms.iter().any(Option::is_none) {
        return None;
    }
    let best = scores.iter().copied().fold(f32::MIN, f32::max);
    let query = form(query);
    let (query_chars, query_bigrams) = (chars(&query), bigrams(&query));
    Some(
        scores
            .iter()
            .zip(forms)
            .map(|(&score, form)| {
                let form = form.as_deref().unwrap_or_default();
                let alike = CHAR_WEIGHT * dice(&query_chars, &chars(form))
                    + BIGRAM_WEIGHT * dice(&query_bigrams, &bigrams(form));
                score + best * alike
            })
            .collect(),
    )
}

/// The forms of a segment's short articles, read once per segment (a lookup one by one opens the
/// column and scans a dictionary block each time: the first version, doing so per query, took
/// atec-faq's search p50 from 1.2 to 2.0 ms). About 60 bytes per short article.
#[derive(Default)]
pub struct FormCache {
    segments: SegmentCache<SegmentForms>,
}

/// One segment's column of form ordinals and the forms by ordinal.
struct SegmentForms {
    ords: Option<Column<u64>>,
    forms: Vec<String>,
}

impl FormCache {
    fn segment(
        &self,
        searcher: &Searcher,
        segment_ord: u32,
        field: Field,
    ) -> Result<Arc<SegmentForms>, SearchError> {
        let reader = searcher.segment_reader(segment_ord);
        self.segments.get_or_load(searcher, reader, || {
            let name = searcher.schema().get_field_name(field);
            let column = reader.fast_fields().str(name)?;
            Ok(SegmentForms {
                forms: match &column {
                    Some(column) => dictionary_terms(column)?,
                    None => Vec::new(),
                },
                ords: column.map(|c| c.ords().clone()),
            })
        })
    }

    /// The form of each document, or `None` as soon as one is not a short article.
    fn forms(
        &self,
        searcher: &Searcher,
        field: Field,
        addrs: impl Iterator<Item = Option<DocAddress>>,
    ) -> Result<Option<Vec<Option<String>>>, SearchError> {
        let mut segments: HashMap<u32, Arc<SegmentForms>> = HashMap::new();
        let mut out = Vec::new();
        for addr in addrs {
            let Some(addr) = addr else {
                return Ok(None);
            };
            let segment = match segments.get(&addr.segment_ord) {
                Some(segment) => segment.clone(),
                None => {
                    let segment = self.segment(searcher, addr.segment_ord, field)?;
                    segments.insert(addr.segment_ord, segment.clone());
                    segment
                }
            };
            let form = segment
                .ords
                .as_ref()
                .and_then(|ords| ords.first(addr.doc_id))
                .and_then(|ord| segment.forms.get(ord as usize));
            match form {
                Some(form) => out.push(Some(form.clone())),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}

/// Reorders the top [`POOL`] of `ranked` (best first) by [`rescore`] when all of them are short
/// articles (their forms in `field`); any other ranking is left as it is.
pub(super) fn rerank(
    cache: &FormCache,
    searcher: &Searcher,
    field: Field,
    query: &str,
    ranked: &mut [Candidate],
) -> Result<(), SearchError> {
    let pool = ranked.len().min(POOL);
    if pool < 2 {
        return Ok(());
    }
    let Some(forms) = cache.forms(searcher, field, ranked[..pool].iter().map(|c| c.article))?
    else {
        return Ok(());
    };
    let scores: Vec<f32> = ranked[..pool].iter().map(|c| c.score).collect();
    if let Some(rescored) = rescore(query, &scores, &forms) {
        for (candidate, score) in ranked[..pool].iter_mut().zip(rescored) {
            candidate.score = score;
        }
        // Stable: equal scores keep their BM25 order.
        ranked[..pool].sort_by(|a, b| b.score.total_cmp(&a.score));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_normalized_and_keep_only_words() {
        assert_eq!(form("ＥＣＳ 實例，怎麼重啟？"), "ecs实例怎么重启");
        assert_eq!(short_form("花呗怎么还款", ""), Some("花呗怎么还款".into()));
        assert_eq!(short_form("花呗怎么还款", "先打开支付宝"), None);
        assert_eq!(short_form(&"长".repeat(SHORT_MAX_CHARS + 1), ""), None);
        assert_eq!(short_form("？", ""), None);
    }

    #[test]
    fn dice_counts_shared_bigrams() {
        let a = bigrams("abcd");
        assert_eq!(a, vec![('a', 'b'), ('b', 'c'), ('c', 'd')]);
        assert_eq!(dice(&a, &a), 1.0);
        assert_eq!(dice(&a, &bigrams("xyz")), 0.0);
        // ab, bc shared; 3 + 2 bigrams.
        assert!((dice(&a, &bigrams("abc")) - 0.8).abs() < 1e-6);
        assert_eq!(dice::<char>(&[], &[]), 0.0);
        assert_eq!(chars("abca"), vec!['a', 'b', 'c']);
        assert!((dice(&chars("abcd"), &chars("abxy")) - 0.5).abs() < 1e-6);
        // Repeated bigrams count once.
        assert_eq!(bigrams("aaa"), vec![('a', 'a')]);
    }

    #[test]
    fn rescoring_lifts_the_closer_wording() {
        let forms = vec![
            Some(form("借呗额度怎么提升")),
            Some(form("借呗什么时候到账")),
        ];
        let new = rescore("借呗多久到账", &[2.0, 1.9], &forms).unwrap();
        assert!(new[1] > new[0], "{new:?}");
        // Nothing changes for a pool with an article that is not one short sentence.
        assert_eq!(
            rescore("借呗多久到账", &[2.0, 1.9], &[forms[0].clone(), None]),
            None
        );
        assert_eq!(rescore("x", &[], &[]), None);
    }
}
