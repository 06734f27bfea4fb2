//! Paraphrase matching between one-sentence questions: when every article near the top is a
//! single short sentence (a bank of FAQ questions, not help pages), the short articles that a
//! BM25 over their characters finds join the pool (the character channel), and how alike the
//! query and an article are written, as that character score and the Dice coefficient of their
//! characters, joins the BM25 score.
//!
//! Owns: the form of a short article kept in the index (`Fields::short`: its normalized letters,
//! digits and ideographs) and its character grams (`Fields::chars`, [`grams`]), the character
//! channel, the character similarities and the reranking of the pool (the top [`POOL`] articles
//! and the channel's top [`CHANNEL_POOL`]). Must never: touch a ranking that holds an article
//! that is not one short sentence among its top [`POOL`] (help pages keep their BM25 order),
//! reorder anything beyond the pool, or add an article that the request's filters, exclusions or
//! quoted phrases rule out.
//!
//! Why: Chinese questions that mean the same are often segmented differently by jieba (one word
//! in one question, two words or a longer word in the other), so their words do not meet while
//! their characters do; and two wordings of one question share most of their characters.
//! On atec-faq dev (77,512 one-sentence Alipay questions), weights tuned on the first half of
//! the queries (a Python replay of the BM25 top 30) and checked on the second, MRR@10 by
//! `scripts/atec-halves.sh`: first half 0.0650 → 0.0692, second half 0.0627 → 0.0696 (bigrams
//! alone, in the replay: 0.0678 and 0.0672); aliyun-faq and stackfaq (pages with bodies) are
//! untouched. Nothing here is specific to Chinese, but only Chinese questions were measured.
//! With the character channel, the bigram Dice stopped paying (weight 0 best, see
//! [`CHAR_WEIGHT`]) and was dropped.
//! Tried and dropped (the replay, both halves lower or within ±0.001): bigrams weighted by idf
//! or as a BM25, trigrams, coverage of the query's words by the article and the other way,
//! length ratio, diversity (MMR), sentence vectors from the corpus' own PPMI word vectors
//! (SVD, SIF weights; as a rerank feature and fused with BM25), a hubness penalty.
//!
//! The character channel (`Fields::chars`, [`grams`]): the word ranking never retrieves many
//! partners at all (on atec-faq dev, 46% of the queries have no labelled partner in its top 200):
//! jieba writes 花呗 as 花 / 呗 in one question and inside 还花 in another. A BM25 over the short
//! articles' character unigrams and bigrams (and Latin words) finds them: its top
//! [`CHANNEL_POOL`] join the pool, and its score relative to its best joins the rescoring
//! ([`CHANNEL_WEIGHT`]). Grams in more than [`CHANNEL_MAX_SHARE`] of the short articles are left
//! out (呗 is in 99% of the Alipay questions): they find nothing the word ranking misses, and
//! their long postings cost the most. atec-faq dev, `kefu eval search --exclude-query-id`:
//! MRR@10 0.0694 → 0.0720, Recall@100 0.426 → 0.456 (halves, `scripts/atec-halves.sh`: first
//! 0.0692 → 0.0727, second 0.0696 → 0.0713); the same weights without the channel give 0.0680. Share cut-off, full
//! set: none 0.0713, 0.1 0.0720, 0.05 0.0709, 0.03 0.0711; rank_ids(10) least CPU per query on
//! 1,000 atec queries, without / with the channel: p50 1.17 / 1.67 ms, p99 1.77 / 4.56 ms at
//! 0.1, p99 2.77 ms at 0.03. Tried in the replay and dropped: bigrams only (0.059 alone against
//! 0.066 for unigrams and bigrams), idf-weighted Dice of characters or bigrams, how central an
//! article is among the pool's best (mean Dice to them), a deeper channel (100: same MRR@10).
//!
//! Sounds ([`sounds`], [`SOUND_WEIGHT`]): questions typed with a pinyin input method often hold
//! a homophone of the character meant (帐单 / 账单, 可以嘛 / 可以吗, 登陆 / 登录), so the Dice
//! coefficient of the characters' toneless syllables joins that of the characters. atec-faq dev,
//! `scripts/atec-halves.sh`: MRR@10 0.0761 → 0.0773 and 0.0756 → 0.0763. Tried in the replay and
//! dropped: Dice of sound bigrams (both halves lower), characters replaced by the homophones that
//! the bank writes in the same places (0.0765 / 0.0757 alone, nothing more with the sounds),
//! syllables with their tones (no better), Jaccard or overlap instead of Dice (lower), and, on
//! top of the sounds, the candidate's length, the idf share of the query's characters it lacks or
//! of its own the query lacks (fitted on one half, none helps the other).
//!
//! Contrasts ([`Contrasts`]): frequent units that a bank writes in the same places but never
//! together are its mutually exclusive topics (花 / 借 for 花呗 / 借呗, learned from the short
//! articles themselves); an article on the other side of a contrast the query names loses
//! [`CONTRAST_WEIGHT`] and is not looked for by the character channel. atec-faq dev, `kefu eval
//! search --exclude-query-id`: MRR@10 0.0711 → 0.0758, Recall@100 0.440 → 0.458 (halves 0.0712 →
//! 0.0761, 0.0710 → 0.0756); aliyun-faq and stackfaq unchanged (no short-article pools).
//!
//! Question words and order ([`CANONICAL`], [`ORDER_WEIGHT`]): the similarities compare the two
//! forms after their question words are written one way (如何 / 怎么, 为啥 / 为什么, 能否 /
//! 可以, 嘛 / 吗, ...), and the longest common subsequence of their characters joins them. atec-faq
//! dev, `scripts/atec-halves.sh`: MRR@10 0.0785 → 0.0818 and 0.0776 → 0.0806 (all: 0.0781 →
//! 0.0812, Recall@100 0.458 unchanged); aliyun-faq and stackfaq unchanged.
//!
//! ```
//! use kefu::search::paraphrase::{chars, dice, form};
//! let a = chars(&form("借呗还款为什么没有到帐"));
//! let b = chars(&form("借呗還款為什麼沒有到賬"));
//! assert!(dice(&a, &b) > 0.9);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, Searcher, Term};

use super::SearchError;
use super::density::Density;
use super::query::RankParams;
use super::rank::{Candidate, Candidates, SegmentCache, dictionary_terms};
use crate::analyzer::{Normalized, is_han};

/// Longest text (characters of the title, the body empty) that counts as one short sentence.
pub const SHORT_MAX_CHARS: usize = 64;
/// Articles reranked: the top of the BM25 ranking.
pub const POOL: usize = 30;
/// Weight of the Dice coefficient of characters, relative to the best BM25 score of the pool
/// (that of character bigrams, 0.5 before the character channel, came out best at 0 with it). Tuned on the first half of the atec-faq dev queries, without the character
/// channel (MRR@10 of characters / bigrams: 1 / 0.5 0.0698, 1 / 0 0.0696, 1 / 1 0.0683,
/// 1.5 / 0.5 0.0696, 2 / 0.5 0.0684, 0 / 1 0.0678; BM25 alone 0.0650), then again with it (the
/// replay, first half / second half: 1.5 / 0 0.0724 / 0.0726, 1 / 0.5 0.0707 / 0.0722,
/// 1 / 0 0.0719 / 0.0721; the channel's score weighs more than the bigrams). 1.5 until the
/// sounds joined ([`SOUND_WEIGHT`]); 1 with them.
pub const CHAR_WEIGHT: f32 = 1.0;
/// Weight of the Dice coefficient of sounds ([`sounds`]), relative to the best BM25 score of the
/// pool. Tuned with [`CHAR_WEIGHT`] on the first half of the atec-faq dev queries (a replay of
/// the pool, characters / sounds, first half / second half: 1.5 / 0 0.0760 / 0.0751, 1 / 0.5
/// 0.0767 / 0.0754, 1 / 1 0.0771 / 0.0758, 1.5 / 0.5 0.0769 / 0.0755, 0.5 / 1 0.0765 / 0.0753,
/// 0 / 1.5 0.0769 / 0.0752).
pub const SOUND_WEIGHT: f32 = 1.0;
/// Weight of [`order_dice`] of the two canonical forms ([`canonical`]), relative to the best
/// BM25 score of the pool: two wordings of one question mostly keep their words in the same
/// order, which the Dice coefficients of characters and sounds cannot see. See [`CANONICAL`]
/// for the numbers.
pub const ORDER_WEIGHT: f32 = 0.5;
/// Function words of a Chinese question that are written several ways for one meaning (how,
/// why, what, can, how long, the question particle, 帐 / 账, change), each rewritten to one
/// form, in this order (longer first), before the character, sound and order similarities of
/// the rescoring ([`rescore`]) compare a query and an article: 如何 and 怎么 then meet, where
/// their characters and sounds differ. Written by hand from general Chinese usage (not mined
/// from judgments). atec-faq dev, a replay of the pool's scores (first half / second half, as
/// `scripts/atec-halves.sh` cuts them): 0.0785 / 0.0776 before; the rewriting for the
/// characters' Dice 0.0801 / 0.0791; the order similarity alone ([`ORDER_WEIGHT`] 0.5, no
/// rewriting) 0.0799 / 0.0780; both 0.0817 / 0.0805. Tried and dropped: 没有 → 没, 不了 → 不
/// and dropping 的 too (0.0814 / 0.0797), leaving 能 as it is (0.0811 / 0.0797), the order weight at
/// 0.25 / 0.75 / 1 without rewriting (0.0796 / 0.0780, 0.0801 / 0.0770, 0.0800 / 0.0766), a
/// penalty for a mismatch in negation (不, 没, ...: 0.1 gave 0.0808 / 0.0787 over 0.0799 /
/// 0.0786, within noise on the second half), the order or Dice similarity with a list of
/// function characters left out (0.0803 / 0.0780, 0.0792 / 0.0779), bigram Dice (0.0781 /
/// 0.0775).
pub const CANONICAL: &[(&str, &str)] = &[
    ("怎么样", "怎么"),
    ("怎样", "怎么"),
    ("如何", "怎么"),
    ("咋样", "怎么"),
    ("咋", "怎么"),
    ("为啥", "为什么"),
    ("为何", "为什么"),
    ("啥", "什么"),
    ("可不可以", "可以"),
    ("能不能", "可以"),
    ("能否", "可以"),
    ("可否", "可以"),
    ("是否可以", "可以"),
    ("能", "可以"),
    ("多长时间", "多久"),
    ("嘛", "吗"),
    ("么", "吗"),
    ("呢", "吗"),
    ("帐", "账"),
    ("更改", "改"),
    ("修改", "改"),
    ("更换", "改"),
    ("变更", "改"),
];
/// Short articles found by their characters (`Fields::chars`) that join the pool.
pub const CHANNEL_POOL: usize = 50;
/// Grams in more than this share of the short articles are left out of the character channel.
/// 0.03 rather than the best-scoring 0.1 (MRR@10 0.0711 against 0.0720): the tail latency on
/// a FAQ bank is 2.77 ms instead of 4.56, well under the 5 ms ceiling. Checked again with the
/// sounds (`scripts/atec-halves.sh`): 0.1 gives halves 0.0779 / 0.0760 against 0.0773 / 0.0763
/// (Recall@100 0.480 / 0.469 against 0.462 / 0.454), no gain on both.
pub const CHANNEL_MAX_SHARE: f64 = 0.03;
/// Grams in at most this many short articles are always searched, whatever their share.
pub const CHANNEL_MIN_DF: u64 = 1000;
/// Weight of an article's character-channel score (relative to the channel's best).
pub const CHANNEL_WEIGHT: f32 = 1.0;
/// Weight of a short question's [`Density`] (a z-score over the bank), taken off its score
/// relative to the best BM25 score of the pool. atec-faq dev, the engine's own rankings (an
/// index of docs.jsonl, `rank_ids` of each dev query with its own id left out), MRR@10 first
/// half / second half / all: 0 0.0773 / 0.0763 / 0.0768, 0.02 0.0772 / 0.0765, 0.08 0.0785 /
/// 0.0776 / 0.0781, 0.12 0.0781 / 0.0777 / 0.0779.
pub const DENSITY_WEIGHT: f32 = 0.08;
/// Fewest short articles from which [`Contrasts`] are learned: over a handful of questions,
/// which units avoid each other says nothing.
pub const CONTRAST_MIN_ARTICLES: usize = 1000;
/// Units in at least this share of the short articles are the bank's frequent units, among which
/// [`Contrasts`] are looked for.
pub const CONTRAST_MIN_SHARE: f64 = 0.03;
/// Least cosine of two frequent units' neighbour counts for them to be substitutes.
pub const CONTRAST_MIN_COSINE: f64 = 0.85;
/// Most articles holding both units of a contrast, as a share of what independence predicts
/// (`df(a) df(b) / n`).
pub const CONTRAST_MAX_LIFT: f64 = 0.3;
/// Share by which the number of short articles must move for [`Contrasts`] to be learned again.
pub const CONTRAST_RELEARN_SHARE: f64 = 0.1;
/// Score taken off an article that names one side of a contrast the query does not while the
/// query names the other side (relative to the best BM25 score of the pool).
pub const CONTRAST_WEIGHT: f32 = 1.5;

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

/// How a character of a form sounds: an ideograph's Mandarin syllable without its tone (its first
/// reading), any other character itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sound {
    Syllable(&'static str),
    Char(char),
}

/// The distinct sounds of a form, sorted: two questions typed with a pinyin input method that
/// picked a homophone (帐单 / 账单, 可以吗 / 可以嘛, 登陆 / 登录) sound the same where their
/// characters differ.
pub fn sounds(form: &str) -> Vec<Sound> {
    use pinyin::ToPinyin;
    let mut out: Vec<Sound> = form
        .chars()
        .map(|c| match c.to_pinyin() {
            Some(syllable) => Sound::Syllable(syllable.plain()),
            None => Sound::Char(c),
        })
        .collect();
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

/// New scores for a pool ranked best first: `score + best score × (CHANNEL_WEIGHT × channel
/// score + CHAR_WEIGHT × dice of characters + SOUND_WEIGHT × dice of sounds)` between the query
/// and each form, where `channel[i]` is the article's character-channel score relative to the
/// channel's best (0 when it was not among the channel's top); or `None` when some article of
/// the pool is not one short sentence (`forms[i]` is `None`).
pub fn rescore(
    query: &str,
    scores: &[f32],
    channel: &[f32],
    forms: &[Option<String>],
) -> Option<Vec<f32>> {
    if scores.is_empty()
        || forms.len() != scores.len()
        || channel.len() != scores.len()
        || forms.iter().any(Option::is_none)
    {
        return None;
    }
    let best = scores.iter().copied().fold(f32::MIN, f32::max);
    let query: Vec<char> = canonical(&form(query)).chars().collect();
    let query_text: String = query.iter().collect();
    let query_chars = chars(&query_text);
    let query_sounds = sounds(&query_text);
    Some(
        scores
            .iter()
            .zip(channel)
            .zip(forms)
            .map(|((&score, &channel), form)| {
                let form = canonical(form.as_deref().unwrap_or_default());
                let sequence: Vec<char> = form.chars().collect();
                let alike = CHANNEL_WEIGHT * channel
                    + CHAR_WEIGHT * dice(&query_chars, &chars(&form))
                    + SOUND_WEIGHT * dice(&query_sounds, &sounds(&form))
                    + ORDER_WEIGHT * order_dice(&query, &sequence);
                score + best * alike
            })
            .collect(),
    )
}

/// A form with the question's function words written one way ([`CANONICAL`], in order).
pub fn canonical(form: &str) -> String {
    let mut out = form.to_string();
    for (from, to) in CANONICAL {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out
}

/// 2 × the length of the longest common subsequence of two sequences / the sum of their
/// lengths (0 when both are empty): like the Dice coefficient of their characters, but only
/// for characters in the same order.
pub fn order_dice<T: PartialEq>(a: &[T], b: &[T]) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let mut previous = vec![0u16; b.len() + 1];
    let mut current = vec![0u16; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y {
                previous[j] + 1
            } else {
                previous[j + 1].max(current[j])
            };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    2.0 * f32::from(previous[b.len()]) / (a.len() + b.len()) as f32
}

/// The units of a form: each ideograph, and each run of other letters and digits.
pub fn units(form: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut run: Option<usize> = None;
    for (i, c) in form.char_indices() {
        if is_han(c) {
            if let Some(start) = run.take() {
                out.push(&form[start..i]);
            }
            out.push(&form[i..i + c.len_utf8()]);
        } else if run.is_none() {
            run = Some(i);
        }
    }
    if let Some(start) = run {
        out.push(&form[start..]);
    }
    out
}

/// Pairs of frequent units that stand in for each other yet avoid each other, learned from a
/// bank's short articles: the bank's mutually exclusive topics (two products of one family, such
/// as 花呗 and 借呗 in a bank of Alipay questions, where they are the characters 花 and 借). A
/// question about one is seldom a paraphrase of a question about the other, however alike the
/// rest of their wording; an article naming the side the query does not, and lacking the side
/// the query names, loses [`CONTRAST_WEIGHT`].
///
/// Two units `a`, `b` make a contrast when both are in at least [`CONTRAST_MIN_SHARE`] of the
/// short articles, the counts of the units around them (two before, two after, by offset) have a
/// cosine of at least [`CONTRAST_MIN_COSINE`] (they are written in the same places), and at most
/// [`CONTRAST_MAX_LIFT`] of the articles that independence predicts hold both. Synonyms pass the
/// last two tests too (修改 / 更改), but rarely the first: a bank writes its topics in
/// thousands of questions, a variant wording in a few hundred.
///
/// Why: on atec-faq dev, many articles ranked above a query's labelled partner ask the same about
/// the other product (借呗 for 花呗); the wording's similarity cannot see it, since one character
/// differs. Learned on atec-faq's 77,512 questions, the only contrast is 花 / 借 (the same with
/// a least share of 0.02, a cosine of 0.8 or a lift of 0.5; a share of 0.01 adds 久 / 少, which
/// changes nothing; a cosine of 0.75 adds 怎 / 什 and costs 0.001). In a replay of the pool's
/// scores (first half / second half of the dev queries, as `scripts/atec-halves.sh` cuts them):
/// 0.0708 / 0.0709 without; with the article lacking the query's side and naming the other
/// only, weight 0.5 / 1 / 1.5 / 2: 0.0744 / 0.0740, 0.0751 / 0.0746, 0.0754 / 0.0746, 0.0754 /
/// 0.0746; with the rule of [`Contrasts::mismatch`], 1.5: 0.0762 / 0.0752. The channel's
/// exclusion then adds Recall@100 0.445 → 0.462 and 0.436 → 0.454 (MRR@10 0.0761 / 0.0752 →
/// 0.0761 / 0.0756, `scripts/atec-halves.sh`).
#[derive(Default, Debug, PartialEq)]
pub struct Contrasts {
    pairs: Vec<(String, String)>,
}

impl Contrasts {
    /// The contrasts of a collection of short articles' forms (none under
    /// [`CONTRAST_MIN_ARTICLES`]).
    pub fn learn<'a>(forms: impl IntoIterator<Item = &'a str>) -> Contrasts {
        let forms: Vec<Vec<&str>> = forms.into_iter().map(units).collect();
        let n = forms.len();
        if n < CONTRAST_MIN_ARTICLES {
            return Contrasts::default();
        }
        let mut df: FxHashMap<&str, u64> = FxHashMap::default();
        for form in &forms {
            let mut seen: Vec<&str> = form.clone();
            seen.sort_unstable();
            seen.dedup();
            for unit in seen {
                *df.entry(unit).or_default() += 1;
            }
        }
        let min_df = (n as f64 * CONTRAST_MIN_SHARE).ceil() as u64;
        let mut frequent: Vec<&str> = df
            .iter()
            .filter(|&(_, &count)| count >= min_df)
            .map(|(&unit, _)| unit)
            .collect();
        frequent.sort_unstable();
        if frequent.len() < 2 {
            return Contrasts::default();
        }
        let index: FxHashMap<&str, usize> =
            frequent.iter().enumerate().map(|(i, &u)| (u, i)).collect();
        // Neighbours of each frequent unit by (offset, unit), and how many articles hold each
        // pair of frequent units.
        let mut around: Vec<FxHashMap<(i8, &str), u64>> =
            vec![FxHashMap::default(); frequent.len()];
        let mut both = vec![0u64; frequent.len() * frequent.len()];
        for form in &forms {
            let mut held: Vec<usize> = Vec::new();
            for (j, unit) in form.iter().enumerate() {
                let Some(&a) = index.get(unit) else { continue };
                held.push(a);
                for offset in [-2i8, -1, 1, 2] {
                    let Some(k) = j.checked_add_signed(offset as isize) else {
                        continue;
                    };
                    if let Some(&neighbour) = form.get(k) {
                        *around[a].entry((offset, neighbour)).or_default() += 1;
                    }
                }
            }
            held.sort_unstable();
            held.dedup();
            for (x, &a) in held.iter().enumerate() {
                for &b in &held[x + 1..] {
                    both[a * frequent.len() + b] += 1;
                }
            }
        }
        let norms: Vec<f64> = around
            .iter()
            .map(|counts| counts.values().map(|&c| (c * c) as f64).sum::<f64>().sqrt())
            .collect();
        let mut pairs = Vec::new();
        for a in 0..frequent.len() {
            for b in a + 1..frequent.len() {
                let expected = (df[frequent[a]] * df[frequent[b]]) as f64 / n as f64;
                if both[a * frequent.len() + b] as f64 > CONTRAST_MAX_LIFT * expected
                    || norms[a] == 0.0
                    || norms[b] == 0.0
                {
                    continue;
                }
                let (small, large) = if around[a].len() <= around[b].len() {
                    (&around[a], &around[b])
                } else {
                    (&around[b], &around[a])
                };
                let dot: f64 = small
                    .iter()
                    .map(|(key, &c)| (c * large.get(key).copied().unwrap_or(0)) as f64)
                    .sum();
                if dot / (norms[a] * norms[b]) >= CONTRAST_MIN_COSINE {
                    pairs.push((frequent[a].to_string(), frequent[b].to_string()));
                }
            }
        }
        Contrasts { pairs }
    }

    /// The pairs of units, each pair sorted.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Whether a form names the other side of a contrast of which the query names one side,
    /// and the two differ on that contrast (the form lacks the query's side, or the query lacks
    /// the form's).
    pub fn mismatch(&self, query: &[&str], form: &[&str]) -> bool {
        let names = |units: &[&str], unit: &str| units.contains(&unit);
        let against = |a: &str, b: &str| {
            names(query, a) && names(form, b) && (!names(form, a) || !names(query, b))
        };
        self.pairs
            .iter()
            .any(|(a, b)| against(a, b) || against(b, a))
    }
}

/// The forms of a segment's short articles, read once per segment (a lookup one by one opens the
/// column and scans a dictionary block each time: the first version, doing so per query, took
/// atec-faq's search p50 from 1.2 to 2.0 ms). About 60 bytes per short article.
#[derive(Default)]
pub struct FormCache {
    segments: SegmentCache<SegmentForms>,
    /// The [`Contrasts`] of the short articles, and when they were learned.
    contrasts: Mutex<Option<LearnedContrasts>>,
}

/// [`Contrasts`] with the segments they were last used for and the number of short articles
/// they were learned from.
struct LearnedContrasts {
    segments: Vec<SegmentId>,
    articles: u64,
    contrasts: Arc<Learned>,
}

/// What is learned from a bank's short articles: its [`Contrasts`] and the [`Density`] of its
/// questions.
#[derive(Default)]
pub struct Learned {
    pub contrasts: Contrasts,
    pub density: Density,
}

/// One segment's column of form ordinals, the forms by ordinal and how many documents have one.
struct SegmentForms {
    ords: Option<Column<u64>>,
    forms: Vec<String>,
    count: u64,
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
                count: column
                    .as_ref()
                    .map_or(0, |c| u64::from(c.ords().values.num_vals())),
                ords: column.map(|c| c.ords().clone()),
            })
        })
    }

    /// The [`Contrasts`] (and density) of the searcher's short articles. They are learned again
    /// (about 4 s for atec-faq's 77,512 questions, mostly the density) only when the number of
    /// short articles moved by more than [`CONTRAST_RELEARN_SHARE`] since they were learned: a
    /// few upserts do not change which units a bank's questions avoid pairing, and a reader
    /// reload after each must not pay it.
    fn contrasts(&self, searcher: &Searcher, field: Field) -> Result<Arc<Learned>, SearchError> {
        let ids: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        let lock = || self.contrasts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(learned) = lock().as_ref()
            && learned.segments == ids
        {
            return Ok(learned.contrasts.clone());
        }
        let mut segments = Vec::with_capacity(ids.len());
        for segment_ord in 0..ids.len() {
            segments.push(self.segment(searcher, segment_ord as u32, field)?);
        }
        let articles: u64 = segments.iter().map(|segment| segment.count).sum();
        let mut cache = lock();
        if let Some(learned) = cache.as_mut()
            && learned.articles >= CONTRAST_MIN_ARTICLES as u64
            && learned.articles.abs_diff(articles) as f64
                <= CONTRAST_RELEARN_SHARE * learned.articles as f64
        {
            learned.segments = ids;
            return Ok(learned.contrasts.clone());
        }
        drop(cache);
        let forms = || {
            segments
                .iter()
                .flat_map(|segment| segment.forms.iter().map(String::as_str))
        };
        let contrasts = Arc::new(Learned {
            contrasts: Contrasts::learn(forms()),
            density: Density::learn(forms()),
        });
        *lock() = Some(LearnedContrasts {
            segments: ids,
            articles,
            contrasts: contrasts.clone(),
        });
        Ok(contrasts)
    }

    /// Reads the searcher's short-article forms and learns their [`Contrasts`] now, so that no
    /// search pays for it: the engine calls this after opening the index and after each of its
    /// own commits.
    pub fn warm(&self, searcher: &Searcher, field: Field) -> Result<(), SearchError> {
        self.contrasts(searcher, field).map(drop)
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

/// The character grams of a text, for the character channel (`Fields::chars`): after the
/// analyzer's normalization, every ideograph and every run of other letters and digits (a Latin
/// word, a number) is a unit, and two units written next to each other (no space or punctuation
/// between) also make a bigram. A unigram of one ideograph, a bigram and a Latin word never
/// spell the same gram.
pub fn grams(text: &str) -> Vec<String> {
    let normalized = Normalized::new(text);
    let mut out = Vec::new();
    let mut previous: Option<String> = None;
    let mut word = String::new();
    let mut push = |unit: String, previous: &mut Option<String>| {
        if let Some(before) = previous.take() {
            out.push(format!("{before}{unit}"));
        }
        out.push(unit.clone());
        *previous = Some(unit);
    };
    for c in normalized.text().chars() {
        if is_han(c) {
            if !word.is_empty() {
                push(std::mem::take(&mut word), &mut previous);
            }
            push(c.to_string(), &mut previous);
        } else if c.is_alphanumeric() {
            word.push(c);
        } else {
            if !word.is_empty() {
                push(std::mem::take(&mut word), &mut previous);
            }
            previous = None;
        }
    }
    if !word.is_empty() {
        push(word, &mut previous);
    }
    out
}

/// What the character channel needs from the search: the field of the grams, the request's
/// filters (each a required clause) and exclusions, and the candidates to add its articles to.
pub(super) struct Channel<'q, 's> {
    pub field: Field,
    pub filters: &'q [Box<dyn Query>],
    pub exclusions: &'q [Box<dyn Query>],
    pub candidates: &'q mut Candidates<'s>,
    pub params: &'q RankParams,
}

/// BM25 statistics of the gram field over the documents that have it (the short articles), not
/// over every document of the index as tantivy counts them.
struct GramStatistics<'a> {
    searcher: &'a Searcher,
    docs: u64,
}

impl Bm25StatisticsProvider for GramStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        self.searcher.total_num_tokens(field)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.docs.max(1))
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        Ok(self.searcher.doc_freq(term)?.min(self.docs.max(1)))
    }
}

/// The top [`CHANNEL_POOL`] short articles by BM25 over the query's [`grams`], best first,
/// with their scores.
fn channel_top(
    cache: &FormCache,
    searcher: &Searcher,
    short: Field,
    query: &str,
    channel: &Channel,
    contrasts: &Contrasts,
) -> Result<Vec<(f32, DocAddress)>, SearchError> {
    let mut grams = grams(query);
    grams.sort_unstable();
    grams.dedup();
    if grams.is_empty() {
        return Ok(Vec::new());
    }
    let mut docs = 0;
    for segment_ord in 0..searcher.segment_readers().len() {
        docs += cache.segment(searcher, segment_ord as u32, short)?.count;
    }
    // Grams in more than a share of the short articles (a bank of Alipay questions: 呗, 花,
    // 花呗) cost the most to score and find nothing the term ranking and the rescoring miss.
    let max_df = ((docs as f64 * CHANNEL_MAX_SHARE).ceil() as u64).max(CHANNEL_MIN_DF);
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for gram in &grams {
        let term = Term::from_field_text(channel.field, gram);
        let df = searcher.doc_freq(&term)?;
        if df == 0 || df > max_df {
            continue;
        }
        clauses.push((
            Occur::Should,
            Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
        ));
    }
    if clauses.is_empty() {
        return Ok(Vec::new());
    }
    // The articles naming the other side of a contrast the query names one side of lose
    // [`CONTRAST_WEIGHT`] in the rescoring: they are not looked for, so that the channel's top
    // holds the query's side (the grams of a bank's topics are too frequent to be searched).
    let mut exclusions: Vec<Box<dyn Query>> =
        channel.exclusions.iter().map(|q| q.box_clone()).collect();
    let form = form(query);
    let units = units(&form);
    for (a, b) in contrasts.pairs() {
        for (named, other) in [(a, b), (b, a)] {
            if units.contains(&named.as_str()) && !units.contains(&other.as_str()) {
                exclusions.push(Box::new(TermQuery::new(
                    Term::from_field_text(channel.field, other),
                    IndexRecordOption::Basic,
                )));
            }
        }
    }
    let query = super::filtered(
        Box::new(BooleanQuery::new(clauses)),
        channel.filters,
        exclusions,
    );
    let statistics = GramStatistics { searcher, docs };
    Ok(searcher.search_with_statistics_provider(
        &query,
        &TopDocs::with_limit(CHANNEL_POOL).order_by_score(),
        &statistics,
    )?)
}

/// Reorders the top [`POOL`] of `ranked` (best first) by how alike the articles are written to
/// the query when all of them are short articles (their forms in `short`); any other ranking is
/// left as it is. With a `channel`, the top [`CHANNEL_POOL`] short articles by their characters
/// join the pool (those not ranked yet are added, with no term score) and their character score
/// joins the rescoring ([`CHANNEL_WEIGHT`]).
pub(super) fn rerank(
    cache: &FormCache,
    searcher: &Searcher,
    short: Field,
    query: &str,
    channel: Option<Channel>,
    ranked: &mut Vec<Candidate>,
) -> Result<(), SearchError> {
    let top = ranked.len().min(POOL);
    if top == 0 || (top < 2 && channel.is_none()) {
        return Ok(());
    }
    if cache
        .forms(searcher, short, ranked[..top].iter().map(|c| c.article))?
        .is_none()
    {
        return Ok(());
    }
    let learned = cache.contrasts(searcher, short)?;
    let contrasts = &learned.contrasts;
    // The pool: the ranking's top, then the character channel's articles, with their character
    // scores.
    let mut pool: Vec<usize> = (0..top).collect();
    let mut channel_scores = vec![0.0f32; top];
    if let Some(channel) = channel {
        let hits = channel_top(cache, searcher, short, query, &channel, contrasts)?;
        let best = hits.first().map_or(0.0, |(score, _)| *score);
        if best > 0.0 {
            let mut at: HashMap<u64, usize> =
                ranked.iter().enumerate().map(|(i, c)| (c.key, i)).collect();
            let mut added = false;
            let mut unranked = Vec::new();
            for (score, addr) in hits {
                let key = channel.candidates.key(addr)?;
                match at.get(&key) {
                    Some(&i) if i < top => channel_scores[i] = score / best,
                    Some(&i) => {
                        pool.push(i);
                        channel_scores.push(score / best);
                    }
                    None => {
                        channel.candidates.add_article(addr, 0.0)?;
                        unranked.push((key, score / best));
                        added = true;
                    }
                }
            }
            if added {
                let first = ranked.len();
                ranked.extend(channel.candidates.ranked(channel.params));
                for (i, candidate) in ranked.iter().enumerate().skip(first) {
                    at.insert(candidate.key, i);
                }
                for (key, score) in unranked {
                    if let Some(&i) = at.get(&key) {
                        pool.push(i);
                        channel_scores.push(score);
                    }
                }
            }
        }
    }
    let Some(forms) = cache.forms(searcher, short, pool.iter().map(|&i| ranked[i].article))? else {
        return Ok(());
    };
    let scores: Vec<f32> = pool.iter().map(|&i| ranked[i].score).collect();
    let Some(mut rescored) = rescore(query, &scores, &channel_scores, &forms) else {
        return Ok(());
    };
    let best = scores.iter().copied().fold(f32::MIN, f32::max);
    if !learned.density.is_empty() {
        for (score, form) in rescored.iter_mut().zip(&forms) {
            *score -=
                DENSITY_WEIGHT * best * learned.density.of(form.as_deref().unwrap_or_default());
        }
    }
    if !contrasts.pairs().is_empty() {
        let query = form(query);
        let query = units(&query);
        for (score, form) in rescored.iter_mut().zip(&forms) {
            if contrasts.mismatch(&query, &units(form.as_deref().unwrap_or_default())) {
                *score -= CONTRAST_WEIGHT * best;
            }
        }
    }
    // The pool first, best first (stable: equal scores keep their order), then the rest of the
    // ranking as it was, no higher than the pool's last.
    let mut order: Vec<(usize, f32)> = pool.iter().copied().zip(rescored).collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    let in_pool: std::collections::HashSet<usize> = pool.iter().copied().collect();
    let floor = (0..ranked.len())
        .filter(|i| !in_pool.contains(i))
        .map(|i| ranked[i].score)
        .fold(f32::MIN, f32::max);
    let mut old: Vec<Option<Candidate>> = std::mem::take(ranked).into_iter().map(Some).collect();
    for (i, score) in order {
        let mut candidate = old[i].take().expect("a pool holds an article once");
        candidate.score = score.max(floor);
        ranked.push(candidate);
    }
    ranked.extend(old.into_iter().flatten());
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
    fn dice_counts_shared_characters() {
        let a = chars("abcd");
        assert_eq!(dice(&a, &a), 1.0);
        assert_eq!(dice(&a, &chars("xyz")), 0.0);
        // a, b shared; 4 + 4 characters.
        assert!((dice(&a, &chars("abxy")) - 0.5).abs() < 1e-6);
        assert_eq!(dice::<char>(&[], &[]), 0.0);
        // Repeated characters count once.
        assert_eq!(chars("abca"), vec!['a', 'b', 'c']);
    }

    #[test]
    fn homophones_sound_alike() {
        // 帐 / 账 and 嘛 / 吗: a pinyin input method's slips.
        let a = sounds(&form("花呗帐单可以分期嘛"));
        let b = sounds(&form("花呗账单可以分期吗"));
        assert_eq!(a, b);
        assert!(
            dice(
                &chars(&form("花呗帐单可以分期嘛")),
                &chars(&form("花呗账单可以分期吗"))
            ) < 1.0
        );
        assert_eq!(
            sounds("a花2"),
            [Sound::Syllable("hua"), Sound::Char('2'), Sound::Char('a')]
        );
        // Repeated sounds count once.
        assert_eq!(sounds("花华"), [Sound::Syllable("hua")]);
        assert!(sounds("").is_empty());
    }

    #[test]
    fn rescoring_lifts_the_closer_wording() {
        let forms = vec![
            Some(form("借呗额度怎么提升")),
            Some(form("借呗什么时候到账")),
        ];
        let new = rescore("借呗多久到账", &[2.0, 1.9], &[0.0, 0.0], &forms).unwrap();
        assert!(new[1] > new[0], "{new:?}");
        // Nothing changes for a pool with an article that is not one short sentence.
        assert_eq!(
            rescore(
                "借呗多久到账",
                &[2.0, 1.9],
                &[0.0, 0.0],
                &[forms[0].clone(), None]
            ),
            None
        );
        assert_eq!(rescore("x", &[], &[], &[]), None);
    }

    #[test]
    fn question_words_are_written_one_way() {
        assert_eq!(canonical("花呗如何还款"), canonical("花呗怎么还款"));
        assert_eq!(
            canonical("为啥借呗不能用了"),
            canonical("为什么借呗不能用了")
        );
        assert_eq!(canonical("帐单可以分期嘛"), canonical("账单能分期吗"));
        assert_ne!(canonical("花呗怎么还款"), canonical("借呗怎么还款"));
        assert_eq!(canonical(""), "");
    }

    #[test]
    fn order_dice_needs_the_same_order() {
        let a: Vec<char> = "abcd".chars().collect();
        let b: Vec<char> = "dcba".chars().collect();
        assert_eq!(order_dice(&a, &a), 1.0);
        assert!((order_dice(&a, &b) - 0.25).abs() < 1e-6);
        assert_eq!(dice(&chars("abcd"), &chars("dcba")), 1.0);
        let c: Vec<char> = "axbycz".chars().collect();
        assert!((order_dice(&a, &c) - 0.6).abs() < 1e-6);
        assert_eq!(order_dice::<char>(&[], &[]), 0.0);
        assert_eq!(order_dice(&a, &[]), 0.0);
    }

    #[test]
    fn rescoring_lifts_the_same_words_in_the_same_order() {
        let forms = vec![Some(form("分期花呗怎么还")), Some(form("花呗分期如何还"))];
        let new = rescore("花呗分期怎么还", &[2.0, 2.0], &[0.0, 0.0], &forms).unwrap();
        assert!(new[1] > new[0], "{new:?}");
    }

    #[test]
    fn grams_are_ideographs_words_and_their_neighbours() {
        assert_eq!(
            grams("ECS實例，怎麼 reset?"),
            [
                "ecs", "ecs实", "实", "实例", "例", "怎", "怎么", "么", "reset"
            ]
        );
        assert_eq!(grams("花呗"), ["花", "花呗", "呗"]);
        assert!(grams("？！ ").is_empty());
    }

    #[test]
    fn units_are_ideographs_and_runs_of_other_letters() {
        assert_eq!(units("ecs实例abc12"), ["ecs", "实", "例", "abc12"]);
        assert_eq!(units("花呗"), ["花", "呗"]);
        assert!(units("").is_empty());
    }

    /// A bank of questions about two products of one family, each asked the same ways: the
    /// products' names are frequent, written in the same places and never together.
    fn two_product_bank() -> Vec<String> {
        let asks = [
            "怎么还款",
            "额度多少",
            "能不能分期",
            "为何用不了",
            "逾期了咋办",
            "如何开通",
            "利息高吗",
            "可以提前还吗",
        ];
        let who = ["", "我的", "蚂蚁", "请问", "你好我的"];
        // Something different at the end of each question, none of it frequent.
        let tails: Vec<char> = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥东南西北春夏秋冬金木水火土山川日月星云风雨雪霜"
            .chars()
            .collect();
        let mut bank = Vec::new();
        for (n, tail) in tails.iter().enumerate() {
            for product in ["花呗", "借呗"] {
                for ask in asks {
                    for (i, prefix) in who.iter().enumerate() {
                        if (n + i) % 5 < 3 {
                            bank.push(format!("{prefix}{product}{ask}{tail}"));
                        }
                    }
                }
            }
        }
        bank
    }

    #[test]
    fn contrasts_are_frequent_substitutes_that_avoid_each_other() {
        let bank = two_product_bank();
        assert!(bank.len() >= CONTRAST_MIN_ARTICLES);
        let contrasts = Contrasts::learn(bank.iter().map(String::as_str));
        assert_eq!(contrasts.pairs(), [("借".to_string(), "花".to_string())]);
        let q = units("花呗怎么还款");
        assert!(contrasts.mismatch(&q, &units("借呗如何还款")));
        assert!(contrasts.mismatch(&q, &units("花呗和借呗怎么还款")));
        assert!(!contrasts.mismatch(&q, &units("花呗如何还款")));
        assert!(!contrasts.mismatch(&q, &units("如何还款")));
        assert!(!contrasts.mismatch(&units("怎么还款"), &units("借呗如何还款")));
        // Both sides in the query and the article: they do not differ.
        let both = units("花呗借呗有什么区别");
        assert!(!contrasts.mismatch(&both, &units("花呗和借呗的区别")));
        // Too few questions to learn from.
        let few = Contrasts::learn(bank[..CONTRAST_MIN_ARTICLES - 1].iter().map(String::as_str));
        assert_eq!(few, Contrasts::default());
    }

    /// In a bank large enough to learn from, a question about the other product ranks under
    /// one about the query's product, though it is written more like the query.
    #[test]
    fn a_question_about_the_other_product_ranks_lower() {
        use crate::article::Article;
        use crate::search::SearchEngine;
        let dir = tempfile::tempdir().unwrap();
        let engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let mut articles: Vec<Article> = two_product_bank()
            .iter()
            .enumerate()
            .map(|(i, q)| Article::new(format!("b{i}"), q.as_str(), ""))
            .collect();
        articles.push(Article::new("other", "借呗的账单日是哪天", ""));
        articles.push(Article::new("same", "花呗的账单日是几号", ""));
        engine.upsert(&articles).unwrap();
        let ids: Vec<String> = engine
            .rank_ids("花呗的账单日是哪天", 10)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let at = |id: &str| ids.iter().position(|x| x == id).unwrap_or(usize::MAX);
        assert!(at("same") < at("other"), "{ids:?}");
        assert_eq!(at("same"), 0, "{ids:?}");
    }

    /// jieba writes the query 提额 as one word and the question 额度提高的方法 as 额度 / 提高 /
    /// 方法: no word meets, so only the character channel finds that question.
    #[test]
    fn a_question_segmented_differently_is_found_by_its_characters() {
        use crate::article::Article;
        use crate::search::SearchEngine;
        let dir = tempfile::tempdir().unwrap();
        let mut engine = SearchEngine::open_or_create(dir.path()).unwrap();
        let questions = [
            ("q0", "花呗怎么提额"),
            ("q1", "额度提高的方法"),
            ("q2", "如何修改登录密码"),
            ("q3", "花呗怎么关闭"),
        ];
        let articles: Vec<Article> = questions
            .iter()
            .map(|(id, q)| {
                let mut article = Article::new(*id, *q, "");
                article.product = Some(if *id == "q1" { "limits" } else { "huabei" }.into());
                article
            })
            .collect();
        engine.upsert(&articles).unwrap();
        let ids = |engine: &SearchEngine| -> Vec<String> {
            engine
                .rank_ids("提额", 10)
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        engine.set_paraphrases(false);
        assert_eq!(ids(&engine), ["q0"]);
        engine.set_paraphrases(true);
        assert_eq!(ids(&engine), ["q0", "q1"]);
        // The channel keeps the request's filters.
        let request = crate::search::SearchRequest {
            query: "提额".into(),
            product: Some("huabei".into()),
            ..Default::default()
        };
        let found = engine.search(&request).unwrap();
        let found: Vec<&str> = found.hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(found, ["q0"]);
        // Quoted phrases are required: the channel does not add what lacks them.
        let quoted: Vec<String> = engine
            .rank_ids("\"提额\"", 10)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(quoted, ["q0"]);
    }
}
