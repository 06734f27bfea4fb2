//! Classifier features: the one analyzer's tokens looked up in the vocabulary (`tokenizer.json`),
//! plus word bigrams and character n-grams hashed into a fixed number of buckets, so typos, unseen
//! words and Chinese compounds still carry signal.
//!
//! Owns: text → feature ids (and, for explanations, which token each feature came from).
//! Must never: depend on anything but the text and the saved config/vocabulary (training and
//! inference must compute the very same features).
//!
//! Feature id layout: `0..vocab_size` are vocabulary ids (`[UNK]` = 0 is never emitted), then
//! `word_buckets` hashed word-bigram buckets (grouped layout only, else none), then `buckets`
//! hashed n-gram buckets.

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::analyzer::{Normalized, analyzer, is_han};

/// Only this many bytes of a ticket are analyzed: the opening of a ticket says what it is about,
/// and a 1 MB paste must not cost a second of jieba.
pub const MAX_ANALYZED_BYTES: usize = 8 * 1024;

/// How features are built; saved in the model config so inference matches training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureConfig {
    /// Number of hash buckets for bigrams and character n-grams.
    pub buckets: u32,
    /// Shortest character n-gram (over `<token>`).
    pub char_ngram_min: usize,
    /// Longest character n-gram.
    pub char_ngram_max: usize,
    /// Add word bigrams of consecutive whole words.
    pub word_bigrams: bool,
    /// Add Chinese character bigrams and trigrams that cross word boundaries (jieba's cut is not
    /// always the one that matters: 开发票 may come out as 开发 + 票).
    #[serde(default)]
    pub han_cross_ngrams: bool,
    /// Grouped layout when > 0 (what TF-IDF + logistic regression sees): word bigrams hash into
    /// their own `word_buckets`, so words and bigrams form one group and character n-grams
    /// another, each L2-normalized on its own by the pooling; the character n-grams are then
    /// scikit-learn's `char_wb` n-grams (`char_ngram_min..=char_ngram_max`, over each
    /// whitespace-separated word of the normalized text padded with spaces, so they also cross
    /// Chinese word boundaries), instead of n-grams inside each analyzer token.
    #[serde(default)]
    pub word_buckets: u32,
    /// Add the part-of-speech tags of a text that holds Chinese
    /// ([`crate::analyzer::Analyzer::pos_tags`]): each word's tag, and each run of two and of
    /// three consecutive tags (with the text's start and end), hashed with the word bigrams
    /// (each tag also with the character n-grams). The tags carry what jieba's dictionary knows of a word the training
    /// rows never had: 浦发银行 is an organisation (`nt`), 呼和浩特 a place (`ns`), so
    /// `从 ns 到 ns` reads as a trip whatever the cities. Texts without Chinese get none.
    #[serde(default)]
    pub pos_tags: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            buckets: 1 << 17,
            char_ngram_min: 1,
            char_ngram_max: 3,
            word_bigrams: true,
            han_cross_ngrams: true,
            word_buckets: 1 << 16,
            pos_tags: true,
        }
    }
}

impl FeatureConfig {
    /// The grouped layout (see [`FeatureConfig::word_buckets`]).
    pub fn grouped(&self) -> bool {
        self.word_buckets > 0
    }
}

/// Feature ids of one text, with the analyzer token each came from (for explanations).
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Feature ids (vocabulary ids, then bucket ids offset by the vocabulary size).
    pub ids: Vec<u32>,
    /// For each id, the index into `tokens` it belongs to.
    pub token_of: Vec<u32>,
    /// Original text of each whole-word token (what an agent reads in an explanation).
    pub tokens: Vec<String>,
}

/// The longest prefix of `text` no longer than `max` bytes, cut at a char boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// FNV-1a (64 bit): stable across runs and platforms, unlike std's `RandomState`.
fn fnv1a(kind: u8, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(kind);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            eat(0x1f);
        }
        for &b in p.as_bytes() {
            eat(b);
        }
    }
    h
}

/// The analyzer's token texts of `text` (what the vocabulary is built from), and for each
/// whether it is a sub-word (covered by a longer token at the same position).
pub fn analyzed_tokens(text: &str) -> Vec<(String, bool, (usize, usize))> {
    let text = prefix(text, MAX_ANALYZED_BYTES);
    analyzer()
        .analyze(text)
        .into_iter()
        .filter(|t| !t.text.trim().is_empty())
        .map(|t| (t.text, t.subword, (t.offset_from, t.offset_to)))
        .collect()
}

/// A text's normalized form with its whole-word tokens (`starts`: each one's original start
/// offset and word index, sorted), for the features computed over the normalized text.
struct NormalizedWords<'a> {
    normalized: Normalized,
    starts: &'a [(usize, u32)],
}

impl NormalizedWords<'_> {
    /// The whole-word token at or before where normalized bytes `norm_from..norm_to` begin
    /// (`starts` not empty).
    fn owner(&self, norm_from: usize, norm_to: usize) -> u32 {
        let (from, _) = self.normalized.original_span(norm_from, norm_to);
        let i = self.starts.partition_point(|&(s, _)| s <= from);
        self.starts[i.saturating_sub(1)].1
    }
}

/// Turns text into feature ids with a vocabulary (`tokenizer.json`) and a [`FeatureConfig`].
pub struct Featurizer {
    tokenizer: Tokenizer,
    vocab_size: u32,
    config: FeatureConfig,
}

impl Featurizer {
    pub fn new(tokenizer: Tokenizer, config: FeatureConfig) -> Featurizer {
        let vocab_size = tokenizer.get_vocab_size(true) as u32;
        Featurizer {
            tokenizer,
            vocab_size,
            config,
        }
    }

    /// Vocabulary size (feature ids below it are words).
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// Total number of feature ids (rows of the embedding table).
    pub fn rows(&self) -> usize {
        self.vocab_size as usize + self.config.word_buckets as usize + self.config.buckets as usize
    }

    /// In the grouped layout, the first character n-gram id: ids below it are words and word
    /// bigrams, normalized as one group, ids from it on are the other group.
    pub fn group_split(&self) -> Option<u32> {
        self.config
            .grouped()
            .then(|| self.vocab_size + self.config.word_buckets)
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Hash bucket of a character n-gram (or, in the mixed layout, of any n-gram).
    fn bucket(&self, h: u64) -> u32 {
        self.vocab_size + self.config.word_buckets + (h % self.config.buckets as u64) as u32
    }

    /// Hash bucket of a word bigram.
    fn bigram_bucket(&self, h: u64) -> u32 {
        if self.config.grouped() {
            self.vocab_size + (h % self.config.word_buckets as u64) as u32
        } else {
            self.bucket(h)
        }
    }

    /// Features of `text` (analysis limited to its first [`MAX_ANALYZED_BYTES`]).
    pub fn features(&self, text: &str) -> Features {
        let text = prefix(text, MAX_ANALYZED_BYTES);
        self.features_of(text, &analyzed_tokens(text))
    }

    /// Features of `text` from its [`analyzed_tokens`] (computed once for several featurizers).
    pub fn features_of(&self, text: &str, tokens: &[(String, bool, (usize, usize))]) -> Features {
        let mut out = Features::default();
        if tokens.is_empty() {
            return out;
        }
        // Vocabulary lookup through the tokenizer, one token at a time: the vocabulary is a
        // `WordLevel` model whose unknown token is id 0, with no normalizer in front of it
        // ([`super::vocab::build`]; `Classifier::load` refuses a `tokenizer.json` with one), so
        // this is what encoding the tokens joined by spaces gives, without building the string,
        // splitting it again and computing offsets (nearly half of the features' cost).
        let word_ids: Vec<u32> = tokens
            .iter()
            .map(|(t, _, _)| self.tokenizer.token_to_id(t).unwrap_or(0))
            .collect();
        // Explanations are per whole word: sub-words report to the word that covers them.
        let mut word_index = 0u32;
        let mut last_whole: Option<(usize, usize)> = None;
        let mut prev_word: Option<&str> = None;
        let mut run: Vec<(char, u32)> = Vec::new();
        let mut run_end: Option<usize> = None;
        let grouped = self.config.grouped();
        let mut whole_starts: Vec<(usize, u32)> = Vec::new();
        for ((tok, subword, span), id) in tokens.iter().zip(&word_ids) {
            let covered =
                *subword && last_whole.is_some_and(|(from, to)| span.0 >= from && span.1 <= to);
            if !covered {
                out.tokens.push(text[span.0..span.1].to_string());
                word_index = (out.tokens.len() - 1) as u32;
                last_whole = Some(*span);
                whole_starts.push((span.0, word_index));
            }
            if *id != 0 {
                out.ids.push(*id);
                out.token_of.push(word_index);
            }
            if covered || *subword {
                continue;
            }
            if self.config.word_bigrams {
                if let Some(prev) = prev_word {
                    out.ids.push(self.bigram_bucket(fnv1a(b'b', &[prev, tok])));
                    out.token_of.push(word_index);
                }
                prev_word = Some(tok.as_str());
            }
            if grouped {
                continue;
            }
            self.char_ngrams(tok, word_index, &mut out);
            if self.config.han_cross_ngrams {
                let han = tok.chars().all(is_han);
                if !han || run_end != Some(span.0) {
                    self.flush_han_run(&mut run, &mut out);
                }
                if han {
                    run.extend(tok.chars().map(|c| (c, word_index)));
                    run_end = Some(span.1);
                } else {
                    run_end = None;
                }
            }
        }
        self.flush_han_run(&mut run, &mut out);
        let tagged = self.config.pos_tags && text.chars().any(is_han);
        if grouped || tagged {
            // Both work on the normalized text: normalized once.
            let normalized = NormalizedWords {
                normalized: Normalized::new(text),
                starts: &whole_starts,
            };
            if grouped {
                self.char_wb_ngrams(&normalized, &mut out);
            }
            if tagged {
                self.pos_tag_ngrams(&normalized, &mut out);
            }
        }
        out
    }

    /// [`FeatureConfig::pos_tags`]: tag unigrams, bigrams and trigrams (`^` and `$` for the
    /// text's start and end), each reporting to the whole-word token at or before where its
    /// (second) word begins.
    fn pos_tag_ngrams(&self, text: &NormalizedWords<'_>, out: &mut Features) {
        let Some(&(_, first)) = text.starts.first() else {
            return;
        };
        // The two tags before this one (`^` before the text's start).
        let (mut before, mut prev) = (String::from("^"), String::from("^"));
        let mut last = first;
        analyzer().pos_tags(text.normalized.text(), |tag, from, to| {
            let word = text.owner(from, to);
            out.ids.push(self.bigram_bucket(fnv1a(b'p', &[tag])));
            out.token_of.push(word);
            out.ids.push(self.bigram_bucket(fnv1a(b'q', &[&prev, tag])));
            out.token_of.push(word);
            // Tag trigrams: smp2017 dev (seeds 42/7/1234/1/2/3, --no-refit) 0.9299 → 0.9321 on
            // average; with 4-grams as well 0.9277, with the bigrams among the characters too
            // 0.9280.
            out.ids
                .push(self.bigram_bucket(fnv1a(b't', &[&before, &prev, tag])));
            out.token_of.push(word);
            // The tag among the characters as well: measured on smp2017 dev (6 seeds, before the
            // trigrams), the tags in the word group alone 0.9290, with the tag in both 0.9306.
            out.ids.push(self.bucket(fnv1a(b'p', &[tag])));
            out.token_of.push(word);
            std::mem::swap(&mut before, &mut prev);
            prev.clear();
            prev.push_str(tag);
            last = word;
        });
        out.ids.push(self.bigram_bucket(fnv1a(b'q', &[&prev, "$"])));
        out.token_of.push(last);
    }

    /// scikit-learn's `char_wb` n-grams over the normalized text: each whitespace-separated
    /// word padded with one space on both sides; each n-gram reports to the whole-word token at
    /// or before where it begins.
    fn char_wb_ngrams(&self, text: &NormalizedWords<'_>, out: &mut Features) {
        let (lo, hi) = (
            self.config.char_ngram_min.max(1),
            self.config.char_ngram_max,
        );
        if hi < lo || text.starts.is_empty() {
            return;
        }
        let norm = text.normalized.text();
        let mut chars: Vec<(char, usize, usize)> = Vec::new();
        let mut buf = String::new();
        let mut words = norm.char_indices().peekable();
        while let Some(&(start, c)) = words.peek() {
            if c.is_whitespace() {
                words.next();
                continue;
            }
            chars.clear();
            chars.push((' ', start, start));
            while let Some(&(i, c)) = words.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.push((c, i, i + c.len_utf8()));
                words.next();
            }
            let end = chars.last().map_or(start, |c| c.2);
            chars.push((' ', end, end));
            for n in lo..=hi {
                if n > chars.len() {
                    break;
                }
                for w in chars.windows(n) {
                    // A lone padding space carries nothing.
                    if n == 1 && w[0].0 == ' ' {
                        continue;
                    }
                    buf.clear();
                    buf.extend(w.iter().map(|c| c.0));
                    let from = w.iter().find(|c| c.0 != ' ').map_or(start, |c| c.1);
                    let to = w.iter().rev().find(|c| c.0 != ' ').map_or(end, |c| c.2);
                    out.ids.push(self.bucket(fnv1a(b'w', &[&buf])));
                    out.token_of.push(text.owner(from, to.max(from + 1)));
                }
            }
        }
    }

    /// Character 2- and 3-grams over a run of adjacent Chinese words that span a word boundary.
    fn flush_han_run(&self, run: &mut Vec<(char, u32)>, out: &mut Features) {
        let mut buf = String::new();
        for n in 2..=3 {
            for w in run.windows(n) {
                if w[0].1 == w[n - 1].1 {
                    continue; // inside one word: its own n-grams cover it
                }
                buf.clear();
                buf.extend(w.iter().map(|(c, _)| c));
                out.ids.push(self.bucket(fnv1a(b'r', &[&buf])));
                out.token_of.push(w[0].1);
            }
        }
        run.clear();
    }

    fn char_ngrams(&self, tok: &str, word_index: u32, out: &mut Features) {
        let (lo, hi) = (self.config.char_ngram_min, self.config.char_ngram_max);
        if hi == 0 || lo > hi {
            return;
        }
        let mut chars: Vec<char> = Vec::with_capacity(tok.len() + 2);
        chars.push('<');
        chars.extend(tok.chars());
        chars.push('>');
        let mut buf = String::new();
        for n in lo.max(1)..=hi {
            if n > chars.len() {
                break;
            }
            for w in chars.windows(n) {
                // `<x>` for a one-char token duplicates the word itself.
                if n == chars.len() && n > 2 {
                    continue;
                }
                buf.clear();
                buf.extend(w.iter());
                out.ids.push(self.bucket(fnv1a(b'c', &[&buf])));
                out.token_of.push(word_index);
            }
        }
        // Single Han characters: the strongest signal of an unseen Chinese compound.
        if tok.chars().count() > 1 {
            for c in tok.chars().filter(|&c| is_han(c)) {
                buf.clear();
                buf.push(c);
                out.ids.push(self.bucket(fnv1a(b'h', &[&buf])));
                out.token_of.push(word_index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::vocab;

    #[test]
    fn grouped_layout_keeps_words_and_char_ngrams_apart() {
        let texts = ["发票 怎么 开", "invoice please"];
        let tok = vocab::build(texts.iter().map(|t| analyzed_tokens(t)), 1).unwrap();
        let f = Featurizer::new(tok, FeatureConfig::default());
        let split = f.group_split().expect("grouped by default");
        assert_eq!(
            split,
            f.vocab_size() + FeatureConfig::default().word_buckets
        );
        let x = f.features("開發票, invoice");
        assert_eq!(x.ids.len(), x.token_of.len());
        assert!(x.token_of.iter().all(|&t| (t as usize) < x.tokens.len()));
        // Words (and bigrams) below the split, char_wb n-grams from it on.
        assert!(x.ids.iter().any(|&id| id < f.vocab_size()));
        assert!(x.ids.iter().any(|&id| id >= split));
        // char_wb n-grams cross jieba's cut of the normalized text: 开发票 ≠ 开 + 发票 alone.
        let joined = f.features("开发票");
        let apart = f.features("开 发票");
        let grams = |x: &Features| -> Vec<u32> {
            x.ids.iter().copied().filter(|&id| id >= split).collect()
        };
        assert!(grams(&joined).iter().any(|id| !grams(&apart).contains(id)));
        // Traditional and full-width input give the same features as simplified.
        assert_eq!(f.features("開發票").ids, f.features("开发票").ids);
    }

    #[test]
    fn part_of_speech_tags_carry_what_kind_of_word_it_is() {
        let texts = ["从 杭州 到 上海", "how do i get there"];
        let tok = vocab::build(texts.iter().map(|t| analyzed_tokens(t)), 1).unwrap();
        let on = Featurizer::new(tok.clone(), FeatureConfig::default());
        let off = Featurizer::new(
            tok,
            FeatureConfig {
                pos_tags: false,
                ..FeatureConfig::default()
            },
        );
        // The tags' features: what the tagged text has beyond the untagged one's.
        let tags = |text: &str| -> Vec<u32> {
            let (with, without) = (on.features(text), off.features(text));
            assert_eq!(with.tokens, without.tokens);
            assert_eq!(with.ids.len(), with.token_of.len());
            assert!(
                with.token_of
                    .iter()
                    .all(|&t| (t as usize) < with.tokens.len())
            );
            assert_eq!(with.ids[..without.ids.len()], without.ids[..]);
            let mut extra = with.ids[without.ids.len()..].to_vec();
            extra.sort_unstable();
            extra
        };
        // Cities training never saw read as places: the same tags as any other trip.
        let trip = tags("从武汉到呼和浩特");
        assert!(!trip.is_empty());
        assert_eq!(trip, tags("从北京到上海"));
        assert_ne!(trip, tags("打开浦发银行"));
        // Text without Chinese gets none, so English models are what they were.
        assert!(tags("how do I get to Hohhot from Wuhan").is_empty());
    }

    #[test]
    fn prefix_cuts_at_char_boundary() {
        assert_eq!(prefix("发票abc", 4), "发");
        assert_eq!(prefix("abc", 10), "abc");
    }

    #[test]
    fn unseen_words_still_get_ngram_features() {
        let texts = ["发票 怎么 开", "invoice please"];
        let tok = vocab::build(texts.iter().map(|t| analyzed_tokens(t)), 1).unwrap();
        let f = Featurizer::new(tok, FeatureConfig::default());
        let seen = f.features("invoice");
        let typo = f.features("invoise");
        assert!(seen.ids.iter().any(|&id| id < f.vocab_size()));
        assert!(typo.ids.iter().all(|&id| id >= f.vocab_size()));
        let shared = typo.ids.iter().filter(|id| seen.ids.contains(id)).count();
        assert!(shared >= 3, "typo shares {shared} n-grams");
        assert_eq!(typo.tokens, vec!["invoise"]);
        assert_eq!(f.features("").ids.len(), 0);
        // The mixed layout (in-word n-grams) as well.
        let mixed = FeatureConfig {
            word_buckets: 0,
            char_ngram_min: 2,
            char_ngram_max: 4,
            ..FeatureConfig::default()
        };
        let tok = vocab::build(texts.iter().map(|t| analyzed_tokens(t)), 1).unwrap();
        let m = Featurizer::new(tok, mixed);
        assert_eq!(m.group_split(), None);
        let shared = m
            .features("invoise")
            .ids
            .iter()
            .filter(|id| m.features("invoice").ids.contains(id))
            .count();
        assert!(shared >= 3, "typo shares {shared} n-grams");
        // Deterministic.
        assert_eq!(f.features("发票怎么开").ids, f.features("发票怎么开").ids);
    }
}
